//! What wakes the node role's loop before its next check: the manifest
//! directory changed (inotify), or oxvs-cni asked for a pod's address, so
//! that pod's port is about to appear on the switch.
//!
//! The loop still looks at the directory and the switch's ports on its own
//! timers (`--watch`, `--interval`): inotify can overflow, the directory
//! can be replaced, and a port can be added by hand. The wake-ups only take
//! the waiting out of the common case: a `kubectl apply` (a file renamed
//! into the directory) reaches the compiler in the time of one read, not
//! after the rest of a polling period; a pod's rules follow its port as soon
//! as the port exists, not at the next port poll.

use inotify::{EventMask, Inotify, WatchMask};
use std::io;
use std::path::Path;
use std::sync::mpsc::Sender;

/// Why the loop was woken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wake {
    /// Something in the manifest directory was created, written, renamed
    /// or removed.
    Manifests,
    /// oxvs-cni asked for this pod's (namespace, name) address: its ADD is
    /// under way and `add-port` follows.
    Attaching(String, String),
}

/// Watches `dir` with inotify from a thread of its own, sending
/// [`Wake::Manifests`] for each batch of events. The thread ends when the
/// receiver is gone or the watch is removed (the directory deleted); the
/// caller's own polling covers what comes after.
pub fn watch_dir(dir: &Path, tx: Sender<Wake>) -> io::Result<()> {
    let mut inotify = Inotify::init()?;
    inotify.watches().add(
        dir,
        WatchMask::CLOSE_WRITE
            | WatchMask::MOVED_TO
            | WatchMask::MOVED_FROM
            | WatchMask::DELETE
            | WatchMask::CREATE
            | WatchMask::ATTRIB
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF,
    )?;
    std::thread::Builder::new()
        .name("manifest-watch".into())
        .spawn(move || {
            // Room for many events: each is 16 bytes and a padded name.
            let mut buf = [0u8; 8192];
            loop {
                let gone = match inotify.read_events_blocking(&mut buf) {
                    // IN_IGNORED: the watch is gone with its directory.
                    Ok(events) => events
                        .into_iter()
                        .any(|e| e.mask.contains(EventMask::IGNORED)),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => true,
                };
                if tx.send(Wake::Manifests).is_err() || gone {
                    break;
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;
    use std::time::Duration;

    #[test]
    fn a_file_renamed_into_the_directory_wakes_the_loop_and_removing_it_ends_the_watch() {
        let dir = std::env::temp_dir().join(format!("oxvs-agent-wake-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (tx, rx) = channel();
        watch_dir(&dir, tx).unwrap();
        // Nothing happened yet: nothing arrives.
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
        std::fs::write(dir.join(".tmp"), "kind: Namespace\n").unwrap();
        std::fs::rename(dir.join(".tmp"), dir.join("ns.yaml")).unwrap();
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            Wake::Manifests
        );
        std::fs::remove_dir_all(&dir).unwrap();
        // The watch ends with its directory: the sender is dropped, so the
        // channel disconnects once the events before it are read.
        let mut ended = false;
        for _ in 0..100 {
            match rx.recv_timeout(Duration::from_secs(5)) {
                Ok(_) => continue,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    ended = true;
                    break;
                }
                Err(e) => panic!("the watch thread did not end: {e:?}"),
            }
        }
        assert!(ended);
    }

    #[test]
    fn a_directory_that_does_not_exist_is_an_error() {
        let (tx, _rx) = channel();
        assert!(watch_dir(Path::new("/nonexistent/oxvs-agent-wake"), tx).is_err());
    }
}
