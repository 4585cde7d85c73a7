//! The client end of the control socket: connect, send one request, read
//! one response. Used by `oxvs-ctl` and by tests that drive a daemon.
//!
//! A timeout bounds every call so that a wedged daemon makes `oxvs-ctl` fail
//! with a message instead of hanging a script forever; it is generous because
//! replacing 100 k rules legitimately takes a while.

use crate::proto::{self, Command, Failure, ProtoError, Request, Response};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where `oxvsd` listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/oxvs/oxvsd.sock";

/// How long a call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a call failed. The doc comment of each variant is its message.
#[derive(Debug)]
pub enum ClientError {
    /// cannot connect to {path}: {err} (is oxvsd running?)
    Connect {
        /// The socket path.
        path: PathBuf,
        /// What connect said.
        err: std::io::Error,
    },
    /// {0}
    Proto(ProtoError),
    /// {0}
    Remote(Failure),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Connect { path, err } => write!(
                f,
                "cannot connect to {}: {err} (is oxvsd running?)",
                path.display()
            ),
            ClientError::Proto(e) => write!(f, "{e}"),
            ClientError::Remote(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// Sends `cmd` to the daemon at `socket` and returns the text it answered.
pub fn call(socket: &Path, cmd: Command) -> Result<String, ClientError> {
    let mut s = UnixStream::connect(socket).map_err(|err| ClientError::Connect {
        path: socket.into(),
        err,
    })?;
    let timeout = Some(CALL_TIMEOUT);
    s.set_read_timeout(timeout)
        .and_then(|()| s.set_write_timeout(timeout))
        .map_err(|e| ClientError::Proto(ProtoError::Io(e)))?;
    proto::write_frame(&mut s, &Request::new(cmd)).map_err(ClientError::Proto)?;
    let body = proto::read_body(&mut s).map_err(ClientError::Proto)?;
    match proto::decode_response(&body).map_err(ClientError::Proto)? {
        Response::Ok(text) => Ok(text),
        Response::Err(f) => Err(ClientError::Remote(f)),
    }
}
