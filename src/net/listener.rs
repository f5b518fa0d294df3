//! Listening on TCP or UNIX.
//!
//! UNIX socket files need care that TCP ports do not: a file left by a crashed process blocks
//! the bind, but removing a socket that another live process still serves would silently
//! steal its clients. So a leftover file is removed only when it is a socket and nothing
//! answers a connect on it; and our own file is removed when the listener is dropped.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::net::{TcpSocket, UnixListener};
use tracing::info;

use super::{Endpoint, StdStream, Stream};

/// Options for binding.
#[derive(Debug, Clone, Default)]
pub struct BindOptions {
    /// Permission bits for a UNIX socket file (default: as created under the umask).
    pub unix_mode: Option<u32>,
    /// Listen backlog (default 1024).
    pub backlog: Option<u32>,
}

/// A bound listener of either kind.
#[derive(Debug)]
pub enum Listener {
    /// Accepts are raw `accept4` calls (see [`Listener::accept_detached`]), hence `AsyncFd`
    /// around the std listeners rather than tokio's.
    Tcp(AsyncFd<std::net::TcpListener>),
    Unix {
        listener: AsyncFd<std::os::unix::net::UnixListener>,
        /// Removed on drop.
        path: PathBuf,
    },
    /// The hand-off socket next to a UNIX bind (see [`super::handoff`]): `accept` returns
    /// the client sockets that `manning forward` processes pass over it. A background task
    /// (aborted on drop) accepts the forwarders' connections and receives on each.
    Handoff {
        incoming: tokio::sync::Mutex<tokio::sync::mpsc::Receiver<StdStream>>,
        acceptor: tokio::task::AbortHandle,
        /// Removed on drop.
        path: PathBuf,
    },
}

impl Listener {
    /// Bind `endpoint`. A wildcard TCP host (`*:port`, `:port`) binds all addresses
    /// (IPv6 and IPv4 when the system allows dual-stack, else IPv4).
    pub async fn bind(endpoint: &Endpoint, opts: &BindOptions) -> io::Result<Listener> {
        let backlog = opts.backlog.unwrap_or(1024);
        match endpoint {
            Endpoint::Tcp { host, port } => {
                let addrs: Vec<std::net::SocketAddr> = if host.is_empty() {
                    vec![
                        (std::net::Ipv6Addr::UNSPECIFIED, *port).into(),
                        (std::net::Ipv4Addr::UNSPECIFIED, *port).into(),
                    ]
                } else {
                    tokio::net::lookup_host((host.as_str(), *port))
                        .await?
                        .collect()
                };
                let mut last_err = None;
                for addr in addrs {
                    let socket = if addr.is_ipv6() {
                        TcpSocket::new_v6()
                    } else {
                        TcpSocket::new_v4()
                    }?;
                    socket.set_reuseaddr(true)?;
                    match socket.bind(addr).and_then(|_| socket.listen(backlog)) {
                        Ok(l) => return Ok(Listener::Tcp(register(l.into_std()?)?)),
                        Err(e) => last_err = Some(e),
                    }
                }
                Err(last_err.unwrap_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("{host} resolved to nothing"),
                    )
                }))
            }
            Endpoint::Unix(path) => {
                remove_stale_socket(path).await?;
                let listener = std::os::unix::net::UnixListener::bind(path)?;
                listener.set_nonblocking(true)?;
                if let Some(mode) = opts.unix_mode {
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
                }
                Ok(Listener::Unix {
                    listener: register(listener)?,
                    path: path.clone(),
                })
            }
        }
    }

    /// Bind the hand-off socket of the UNIX socket `unix_path` (`<unix_path>.handoff`).
    /// Must be called within a tokio runtime: the receiving task runs on it.
    pub async fn bind_handoff(unix_path: &Path, opts: &BindOptions) -> io::Result<Listener> {
        let path = super::handoff::path_for(unix_path);
        remove_stale_socket(&path).await?;
        let listener = UnixListener::bind(&path)?;
        if let Some(mode) = opts.unix_mode {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        }
        let (tx, rx) = tokio::sync::mpsc::channel(super::handoff::QUEUE);
        let acceptor = tokio::spawn(super::handoff::serve(listener, path.clone(), tx));
        Ok(Listener::Handoff {
            incoming: tokio::sync::Mutex::new(rx),
            acceptor: acceptor.abort_handle(),
            path,
        })
    }

    /// Accept one connection, registered with this thread's runtime (for serving it here).
    pub async fn accept(&self) -> io::Result<Stream> {
        Stream::from_std(self.accept_detached().await?)
    }

    /// Accept one TCP connection with its peer's address (an error on other listeners).
    pub async fn accept_tcp(&self) -> io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
        match self.accept_detached().await? {
            StdStream::Tcp(s) => {
                let peer = s.peer_addr()?;
                Ok((tokio::net::TcpStream::from_std(s)?, peer))
            }
            StdStream::Unix(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "not a TCP listener",
            )),
        }
    }

    /// The bound TCP address (`None` for UNIX and hand-off listeners).
    pub fn tcp_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Listener::Tcp(l) => l.get_ref().local_addr().ok(),
            _ => None,
        }
    }

    /// Accept one connection without registering it with this runtime's reactor, to be
    /// moved to a worker ([`super::Workers::spawn_session`]): registering here and
    /// deregistering again would cost two `epoll_ctl` calls per connection for nothing.
    /// TCP streams get `TCP_NODELAY` (Postgres is latency-bound). Cancel-safe.
    pub async fn accept_detached(&self) -> io::Result<StdStream> {
        match self {
            Listener::Tcp(l) => {
                let fd = l
                    .async_io(Interest::READABLE, |l| accept_raw(l.as_raw_fd()))
                    .await?;
                let s = std::net::TcpStream::from(fd);
                s.set_nodelay(true)?;
                Ok(StdStream::Tcp(s))
            }
            Listener::Unix { listener, .. } => {
                let fd = listener
                    .async_io(Interest::READABLE, |l| accept_raw(l.as_raw_fd()))
                    .await?;
                Ok(StdStream::Unix(std::os::unix::net::UnixStream::from(fd)))
            }
            Listener::Handoff { incoming, .. } => {
                incoming.lock().await.recv().await.ok_or_else(|| {
                    io::Error::new(io::ErrorKind::BrokenPipe, "hand-off socket closed")
                })
            }
        }
    }

    /// The bound address, with the real port when bound to port 0.
    pub fn local_endpoint(&self) -> io::Result<Endpoint> {
        match self {
            Listener::Tcp(l) => {
                let a = l.get_ref().local_addr()?;
                Ok(Endpoint::Tcp {
                    host: a.ip().to_string(),
                    port: a.port(),
                })
            }
            Listener::Unix { path, .. } | Listener::Handoff { path, .. } => {
                Ok(Endpoint::Unix(path.clone()))
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Handoff { acceptor, .. } = self {
            acceptor.abort();
        }
        if let Listener::Unix { path, .. } | Listener::Handoff { path, .. } = self {
            let _ = std::fs::remove_file(&*path);
        }
    }
}

/// Register a std listener with this runtime's reactor, for readability only.
fn register<T: AsRawFd>(listener: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: `T` is a std listener that owns its descriptor until it is dropped, and
    // `as_raw_fd` always returns that one descriptor.
    unsafe { AsyncFd::register_with_interest(listener, Interest::READABLE) }
        .map_err(io::Error::from)
}

/// `accept4` with the new socket non-blocking and close-on-exec, as tokio's own accept.
fn accept_raw(listener: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: plain system call on a descriptor we own; null address arguments are allowed.
    let fd = unsafe {
        libc::accept4(
            listener,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: accept4 just returned this new descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Remove a leftover socket file at `path` when nothing answers on it. A live socket, or a
/// path that is not a socket, is an error naming it; a missing file is fine.
pub async fn remove_stale_socket(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket; refusing to remove it",
                path.display()
            ),
        ));
    }
    match tokio::net::UnixStream::connect(path).await {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{} is in use by another live process", path.display()),
        )),
        Err(_) => {
            std::fs::remove_file(path)?;
            info!(path = %path.display(), "removed stale socket file (nothing was listening)");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stale_socket_is_replaced_live_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let ep = Endpoint::Unix(path.clone());
        // A live listener blocks a second bind.
        let first = Listener::bind(&ep, &BindOptions::default()).await.unwrap();
        let err = Listener::bind(&ep, &BindOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        drop(first);
        // A leftover file with nobody behind it (as a crashed process leaves it: std's
        // listener does not unlink on drop) is removed and re-bound.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let second = Listener::bind(
            &ep,
            &BindOptions {
                unix_mode: Some(0o660),
                backlog: None,
            },
        )
        .await
        .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        drop(second);
        assert!(!path.exists(), "socket file removed on drop");
    }

    #[tokio::test]
    async fn a_regular_file_is_never_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-a-socket");
        std::fs::write(&path, b"data").unwrap();
        let err = Listener::bind(&Endpoint::Unix(path.clone()), &BindOptions::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not a socket"));
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
    }
}
