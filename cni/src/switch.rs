//! The plugin's side of oxvsd's control socket: add-port, del-port and
//! list-ports through `ctl::client` (the same protocol `oxvs-ctl` speaks).
//!
//! An oxvsd that cannot be reached, closes the connection mid-answer, or
//! says it is busy or failing is a transient condition for the runtime:
//! CNI code 11, "try again later". A refusal is our error (code 103) with
//! oxvsd's message.

#![forbid(unsafe_code)]

use crate::error::{CniError, Code};
use ctl::client::{call, ClientError};
use ctl::proto::{Command, FailureKind, PortInfo};
use std::collections::BTreeMap;
use std::path::Path;

/// A port to add.
pub struct NewPort<'a> {
    /// The interface (the host veth).
    pub name: &'a str,
    /// `auto`, `afxdp` or `af_packet`; `None` lets oxvsd choose.
    pub kind: Option<&'a str>,
    /// External ids.
    pub external_ids: BTreeMap<String, String>,
}

fn map_err(what: &str, e: ClientError) -> CniError {
    match e {
        ClientError::Remote(f)
            if f.kind == FailureKind::Rejected || f.kind == FailureKind::Parse =>
        {
            CniError::new(Code::Switch, format!("oxvsd refused {what}"), f.message)
        }
        ClientError::Remote(f) => CniError::new(
            Code::TryAgainLater,
            format!("oxvsd could not {what}"),
            f.message,
        ),
        other => CniError::new(
            Code::TryAgainLater,
            format!("oxvsd is not answering ({what})"),
            other.to_string(),
        ),
    }
}

/// Adds the port; returns its OpenFlow number.
pub fn add_port(socket: &Path, p: &NewPort) -> Result<u32, CniError> {
    let text = call(
        socket,
        Command::AddPort {
            name: p.name.to_string(),
            no: None,
            kind: p.kind.map(str::to_string),
            mtu: None,
            external_ids: p.external_ids.clone(),
        },
    )
    .map_err(|e| map_err("add-port", e))?;
    text.trim().parse().map_err(|_| {
        CniError::new(
            Code::Switch,
            "oxvsd answered add-port without a port number",
            text.clone(),
        )
    })
}

/// Every port oxvsd has.
pub fn list_ports(socket: &Path) -> Result<Vec<PortInfo>, CniError> {
    let text =
        call(socket, Command::ListPorts { json: true }).map_err(|e| map_err("list-ports", e))?;
    serde_json::from_str(&text).map_err(|e| {
        CniError::new(
            Code::Switch,
            "cannot decode oxvsd's list-ports answer",
            e.to_string(),
        )
    })
}

/// Removes the port `name`; success if it is already gone.
pub fn del_port(socket: &Path, name: &str) -> Result<(), CniError> {
    match call(
        socket,
        Command::DelPort {
            port: name.to_string(),
        },
    ) {
        Ok(_) => Ok(()),
        Err(ClientError::Remote(f)) if f.kind == FailureKind::Rejected => {
            // Refused: fine if because there is no such port, which only a
            // listing can tell without parsing the message.
            if list_ports(socket)?.iter().any(|p| p.name == name) {
                Err(CniError::new(
                    Code::Switch,
                    "oxvsd refused del-port",
                    f.message,
                ))
            } else {
                Ok(())
            }
        }
        Err(e) => Err(map_err("del-port", e)),
    }
}
