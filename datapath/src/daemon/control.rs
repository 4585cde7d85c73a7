//! The control socket: a Unix stream socket where `oxvs-ctl` sends framed
//! requests ([`ctl::proto`]).
//!
//! The server owns no switch state. Each request becomes a [`Call`] sent to
//! the control thread, which answers it with [`super::handle::handle`]; so
//! requests from many clients are applied one at a time, in arrival order,
//! by the one thread that owns the bridge.
//!
//! Clients are untrusted input even though only root can connect: a thread
//! per client (at most [`MAX_CLIENTS`]), a read timeout per connection, a
//! frame size limit checked before reading a body, and any malformed frame
//! answered with an error and the connection closed. None of it can stop the
//! listener or reach the control thread except as a well-formed request.
//!
//! The socket is created mode 0600 without touching the process umask (which
//! other threads share): it is bound inside a fresh private directory, given
//! its mode, and then renamed into place, so it is never reachable with
//! looser permissions. A stale socket from a crashed daemon is removed; a
//! live one (something answers on it) is an error, as is any other kind of
//! file at the path. A missing parent directory is created.

use super::handle::Call;
use ctl::proto::{self, Failure, FailureKind, ProtoError, Response};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Clients served at once; more are told the daemon is busy.
pub const MAX_CLIENTS: usize = 32;

/// How long a connected client may take to send a whole request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the control socket could not be set up. The doc comment of each
/// variant is its message.
#[derive(Debug)]
pub enum ControlError {
    /// another oxvsd is listening on {0}
    InUse(PathBuf),
    /// {0} exists and is not a socket; not removing it
    NotSocket(PathBuf),
    /// cannot create the control socket {path}: {err}
    Create {
        /// The socket path.
        path: PathBuf,
        /// What failed.
        err: std::io::Error,
    },
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlError::InUse(p) => write!(f, "another oxvsd is listening on {}", p.display()),
            ControlError::NotSocket(p) => {
                write!(
                    f,
                    "{} exists and is not a socket; not removing it",
                    p.display()
                )
            }
            ControlError::Create { path, err } => write!(
                f,
                "cannot create the control socket {}: {err}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for ControlError {}

/// The running control socket; dropping it stops accepting and removes the
/// socket file. Connections already being served finish on their own.
pub struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    /// Creates the socket at `path` and starts accepting. Requests go to
    /// `calls`; `T` is whatever the control thread receives (its own
    /// message enum with a variant for [`Call`], or `Call` itself).
    pub fn start<T: From<Call> + Send + 'static>(
        path: &Path,
        calls: Sender<T>,
    ) -> Result<ControlServer, ControlError> {
        let create = |err| ControlError::Create {
            path: path.into(),
            err,
        };
        remove_stale(path)?;
        let listener = bind_private(path).map_err(create)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("oxvs-ctl-accept".into())
            .spawn(move || accept_loop(listener, calls, flag))
            .map_err(create)?;
        Ok(ControlServer {
            path: path.into(),
            stop,
            thread: Some(thread),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept call so the thread sees the flag; if even that
        // fails (the file was removed under us), leave the thread blocked
        // rather than hang the daemon's exit on it.
        let woken = UnixStream::connect(&self.path).is_ok();
        if let (true, Some(t)) = (woken, self.thread.take()) {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn remove_stale(path: &Path) -> Result<(), ControlError> {
    match std::fs::symlink_metadata(path) {
        Err(_) => Ok(()),
        Ok(m) if !m.file_type().is_socket() => Err(ControlError::NotSocket(path.into())),
        Ok(_) if UnixStream::connect(path).is_ok() => Err(ControlError::InUse(path.into())),
        Ok(_) => std::fs::remove_file(path).map_err(|err| ControlError::Create {
            path: path.into(),
            err,
        }),
    }
}

/// Binds in a new 0700 directory beside `path`, sets 0600, renames into place.
fn bind_private(path: &Path) -> std::io::Result<UnixListener> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // /run/oxvs does not survive a reboot; make it (world-readable like
    // /run itself: the socket's own mode is what keeps others out).
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)?;
    let private = dir.join(format!(".oxvsd-sock.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let inner = private.join("s");
    let bound = (|| {
        let l = UnixListener::bind(&inner)?;
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&inner, path)?;
        Ok(l)
    })();
    let _ = std::fs::remove_file(&inner);
    let _ = std::fs::remove_dir(&private);
    bound
}

fn accept_loop<T: From<Call> + Send + 'static>(
    listener: UnixListener,
    calls: Sender<T>,
    stop: Arc<AtomicBool>,
) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let Ok(mut conn) = conn else { continue };
        if active.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
            active.fetch_sub(1, Ordering::AcqRel);
            let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
            let busy = Failure::new(
                FailureKind::Busy,
                format!("oxvsd is serving {MAX_CLIENTS} clients already; try again"),
            );
            let _ = proto::write_frame(&mut conn, &Response::Err(busy));
            continue;
        }
        let calls = calls.clone();
        let counted = active.clone();
        let spawned = std::thread::Builder::new()
            .name("oxvs-ctl-client".into())
            .spawn(move || {
                serve(conn, &calls);
                counted.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Serves one connection: requests one after another until the client
/// closes, times out or sends something that is not a request.
fn serve<T: From<Call>>(mut conn: UnixStream, calls: &Sender<T>) {
    if conn.set_read_timeout(Some(READ_TIMEOUT)).is_err()
        || conn.set_write_timeout(Some(READ_TIMEOUT)).is_err()
    {
        return;
    }
    loop {
        let req = match proto::read_body(&mut conn).and_then(|b| proto::decode_request(&b)) {
            Ok(r) => r,
            Err(e) => {
                if let Some(f) = e.to_failure() {
                    let _ = proto::write_frame(&mut conn, &Response::Err(f));
                }
                if !matches!(e, ProtoError::Closed) {
                    tracing::debug!(error = %e, "control client dropped");
                }
                return;
            }
        };
        let (tx, rx) = sync_channel(1);
        let resp = if calls.send(Call { req, reply: tx }.into()).is_err() {
            None
        } else {
            rx.recv().ok()
        };
        let resp = resp.unwrap_or_else(|| {
            Response::Err(Failure::new(FailureKind::Internal, "oxvsd is stopping"))
        });
        if proto::write_frame(&mut conn, &resp).is_err() {
            return;
        }
    }
}
