//! The CNI error object (`{cniVersion, code, msg, details}`) and the codes
//! the spec reserves (CNI spec 1.1.0 §5 "Error").
//!
//! Every failure of the plugin ends as one [`CniError`] printed on stdout
//! with a non-zero exit, because that is where runtimes (libcni) read it;
//! stderr carries only log lines. Codes below 100 are the spec's; 100 and up
//! are ours and are named here so a runtime's log can be matched to a cause.

#![forbid(unsafe_code)]

use serde::Serialize;

/// The spec's well-known codes and ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// Incompatible CNI version.
    IncompatibleVersion,
    /// Unsupported field in the network configuration.
    UnsupportedField,
    /// Container unknown or does not exist (no cleanup needed).
    UnknownContainer,
    /// Invalid necessary environment variables.
    InvalidEnv,
    /// I/O failure (reading stdin).
    Io,
    /// Failed to decode content (JSON).
    Decode,
    /// Invalid network config.
    InvalidConfig,
    /// Try again later (oxvsd unreachable).
    TryAgainLater,
    /// STATUS: the plugin cannot service ADD requests.
    NotAvailable,
    /// The attachment (host veth or container interface) already exists.
    AlreadyExists,
    /// A kernel request (netlink, ethtool, setns) failed.
    Kernel,
    /// The delegated IPAM plugin failed or could not be run.
    Ipam,
    /// oxvsd answered with an error.
    Switch,
    /// CHECK found the attachment not as ADD left it.
    CheckFailed,
    /// A delegated plugin's own code, passed through.
    Delegated(u32),
}

impl Code {
    /// The number on the wire.
    pub fn number(self) -> u32 {
        match self {
            Code::IncompatibleVersion => 1,
            Code::UnsupportedField => 2,
            Code::UnknownContainer => 3,
            Code::InvalidEnv => 4,
            Code::Io => 5,
            Code::Decode => 6,
            Code::InvalidConfig => 7,
            Code::TryAgainLater => 11,
            Code::NotAvailable => 50,
            Code::AlreadyExists => 100,
            Code::Kernel => 101,
            Code::Ipam => 102,
            Code::Switch => 103,
            Code::CheckFailed => 104,
            Code::Delegated(n) => n,
        }
    }
}

/// A CNI error: what the runtime reads from stdout when the plugin fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CniError {
    /// The code (see [`Code`]).
    pub code: Code,
    /// A short message characterizing the error.
    pub msg: String,
    /// A longer message describing the error.
    pub details: String,
}

impl CniError {
    /// An error with `code`, a short `msg` and longer `details`.
    pub fn new(code: Code, msg: impl Into<String>, details: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// The JSON object the spec prescribes, for `cni_version`.
    pub fn to_json(&self, cni_version: &str) -> String {
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(rename = "cniVersion")]
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        serde_json::to_string(&Wire {
            cni_version,
            code: self.code.number(),
            msg: &self.msg,
            details: &self.details,
        })
        .unwrap_or_else(|_| String::from("{}"))
    }
}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {})", self.msg, self.code.number())?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}

/// Shorthand for a kernel failure during `what`.
pub fn kernel(what: &str, e: std::io::Error) -> CniError {
    CniError::new(Code::Kernel, what.to_string(), e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_object_has_the_spec_fields() {
        let e = CniError::new(Code::InvalidConfig, "Invalid Configuration", "no name");
        let v: serde_json::Value = serde_json::from_str(&e.to_json("1.1.0")).unwrap();
        assert_eq!(v["cniVersion"], "1.1.0");
        assert_eq!(v["code"], 7);
        assert_eq!(v["msg"], "Invalid Configuration");
        assert_eq!(v["details"], "no name");
    }
}
