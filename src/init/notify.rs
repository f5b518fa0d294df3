//! systemd's notify protocol (`sd_notify(3)`), in a few lines of std.
//!
//! Under `Type=notify` systemd passes `NOTIFY_SOCKET` (a path, or `@name` for an abstract
//! socket) and, with `WatchdogSec=`, `WATCHDOG_USEC` and `WATCHDOG_PID`. We send `READY=1`
//! once postgres really accepts connections, `STATUS=` lines with the member's role,
//! `WATCHDOG=1` from the main loop at half the watchdog interval, `EXTEND_TIMEOUT_USEC=` while
//! a long crash recovery runs, and `STOPPING=1` when shutting down.
//!
//! None of these variables may reach a child: postgres built with systemd support would
//! notify on its own and confuse the unit's state. [`crate::init::reaper`] removes them
//! from every child's environment ([`crate::init::reaper::is_private_env`]).
//!
//! Without `NOTIFY_SOCKET` every call is a cheap no-op, so callers never need to check.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// A connection to systemd's notify socket, or nothing when not run by systemd.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Read `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from our environment.
    /// An unusable `NOTIFY_SOCKET` is reported as an error (systemd would otherwise wait
    /// for a READY that never comes, and time the unit out).
    pub fn from_env() -> io::Result<Notifier> {
        let socket = std::env::var("NOTIFY_SOCKET").ok();
        let watchdog_usec = std::env::var("WATCHDOG_USEC").ok();
        let watchdog_pid = std::env::var("WATCHDOG_PID").ok();
        Notifier::from_values(
            socket.as_deref(),
            watchdog_usec.as_deref(),
            watchdog_pid.as_deref(),
            std::process::id(),
        )
    }

    /// [`Notifier::from_env`] with explicit values (testable without touching the
    /// process environment).
    pub fn from_values(
        notify_socket: Option<&str>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
        our_pid: u32,
    ) -> io::Result<Notifier> {
        let target = match notify_socket.filter(|s| !s.is_empty()) {
            None => None,
            Some(path) => {
                let addr = match path.strip_prefix('@') {
                    Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
                    None if path.starts_with('/') => SocketAddr::from_pathname(path)?,
                    None => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!(
                                "NOTIFY_SOCKET={path:?} is neither an absolute path nor @abstract"
                            ),
                        ));
                    }
                };
                Some((UnixDatagram::unbound()?, addr))
            }
        };
        Ok(Notifier {
            target,
            watchdog: watchdog_interval(watchdog_usec, watchdog_pid, our_pid),
        })
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier {
            target: None,
            watchdog: None,
        }
    }

    /// True when run under systemd with a notify socket.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// How often to call [`Notifier::watchdog`]: half of `WATCHDOG_USEC`, or `None` when no
    /// watchdog is configured for this process.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Send raw `KEY=VALUE` lines (no-op without a socket).
    pub fn send(&self, message: &str) -> io::Result<()> {
        match &self.target {
            Some((sock, addr)) => sock.send_to_addr(message.as_bytes(), addr).map(|_| ()),
            None => Ok(()),
        }
    }

    /// `READY=1` plus a status line.
    pub fn ready(&self, status: &str) -> io::Result<()> {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)))
    }

    /// `STATUS=…` (shown by `systemctl status`).
    pub fn status(&self, status: &str) -> io::Result<()> {
        self.send(&format!("STATUS={}", one_line(status)))
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) -> io::Result<()> {
        self.send("WATCHDOG=1")
    }

    /// `STOPPING=1` plus a status line.
    pub fn stopping(&self, status: &str) -> io::Result<()> {
        self.send(&format!("STOPPING=1\nSTATUS={}", one_line(status)))
    }

    /// `EXTEND_TIMEOUT_USEC=…`: the current start/stop timeout is extended to at least
    /// `by` from now. Repeat it while the long operation lasts.
    pub fn extend_timeout(&self, by: Duration) -> io::Result<()> {
        self.send(&format!("EXTEND_TIMEOUT_USEC={}", by.as_micros()))
    }
}

/// A status must stay on one line: a newline would start a new `KEY=VALUE` assignment.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, our_pid: u32) -> Option<Duration> {
    // WATCHDOG_PID, when set, names the process meant to ping; a child that inherited the
    // variables must not ping on its parent's behalf.
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok() != Some(our_pid)
    {
        return None;
    }
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    Some(Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_interval_is_half_and_respects_pid() {
        assert_eq!(
            watchdog_interval(Some("10000000"), None, 7),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            watchdog_interval(Some("10000000"), Some("7"), 7),
            Some(Duration::from_secs(5))
        );
        assert_eq!(watchdog_interval(Some("10000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("x"), None, 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
    }

    #[test]
    fn disabled_without_socket() {
        let n = Notifier::from_values(None, None, None, 1).unwrap();
        assert!(!n.enabled());
        n.ready("x").unwrap();
        let n = Notifier::from_values(Some(""), None, None, 1).unwrap();
        assert!(!n.enabled());
        assert!(Notifier::from_values(Some("relative/path"), None, None, 1).is_err());
    }

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::from_values(path.to_str(), None, None, 1).unwrap();
        assert!(n.enabled());
        n.ready("primary\nrunning").unwrap();
        n.extend_timeout(Duration::from_secs(90)).unwrap();
        let mut buf = [0u8; 256];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=primary running");
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"EXTEND_TIMEOUT_USEC=90000000");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        let name = format!("manning-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::from_values(Some(&format!("@{name}")), None, None, 1).unwrap();
        n.watchdog().unwrap();
        n.stopping("stopping postgres").unwrap();
        let mut buf = [0u8; 256];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STOPPING=1\nSTATUS=stopping postgres");
    }
}
