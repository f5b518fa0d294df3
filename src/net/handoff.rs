//! Connection hand-off from `manning forward` to a `manning proxy` on the same host.
//!
//! The seed stack moves every client byte twice: socat copies it from `localhost:5432` into
//! HAProxy's UNIX socket, HAProxy copies it again to the primary. When both ends are
//! manning, the forwarder does not need to stay in the path at all: it passes the accepted
//! client socket itself to the proxy over a UNIX socket (`SCM_RIGHTS`), and the proxy serves
//! that client as if it had accepted it. The two-hop path becomes one hop.
//!
//! Discovery is by convention and safe with other proxies: a manning proxy that listens on
//! the UNIX socket `P` also listens on `P.handoff`. The forwarder, when its target is the
//! UNIX socket `P` and `P.handoff` answers, hands connections off; otherwise (HAProxy on
//! `P`, an old proxy, or a failed hand-off) it copies bytes as before. Nothing but the
//! socket file's existence signals the feature, so no byte ever reaches a peer that would
//! not understand it.
//!
//! A forwarder keeps one connection to `P.handoff` open and sends one message per client
//! (one `sendmsg`, never blocking: see [`Sender`]); the proxy receives on each forwarder
//! connection in a background task and queues the clients for its accept loop ([`serve`]).
//! Connecting per client would cost a UNIX connect, accept and close for every client, which
//! showed up in `pgbench -C` (a new connection per transaction).
//!
//! The message is one byte, [`MAGIC`], carrying exactly one descriptor. The receiver
//! checks that it got exactly one descriptor and that it is a connected stream socket
//! before serving it; anything else is dropped (and closed).

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, SockaddrLike,
    SockaddrStorage, UnixAddr, connect, getsockname, getsockopt, recvmsg, sendmsg, socket, sockopt,
};
use tokio::io::Interest;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tracing::debug;

use super::StdStream;

/// Suffix of the hand-off socket next to a proxy's UNIX socket.
pub const SUFFIX: &str = ".handoff";

/// The one payload byte of a hand-off message.
pub const MAGIC: u8 = b'M';

/// The hand-off socket that belongs to the UNIX socket `socket`.
pub fn path_for(socket: &Path) -> PathBuf {
    let mut p = socket.as_os_str().to_owned();
    p.push(SUFFIX);
    PathBuf::from(p)
}

/// Capacity of the queue between the hand-off receivers and the proxy's accept loop. When it
/// is full the receivers stop reading, the forwarders' socket buffers fill, and a forwarder
/// whose send would block copies that client's bytes itself instead of waiting.
pub const QUEUE: usize = 128;

/// Most forwarder connections served at once (a forwarder keeps one); more are closed.
const MAX_PEERS: usize = 64;

/// Forwarder side: one long-lived connection to the proxy's hand-off socket, over which
/// each accepted client is passed with a single `sendmsg`. Never blocks: the socket is
/// non-blocking, and a full queue is reported as `WouldBlock` for the caller to copy that
/// client instead.
#[derive(Debug)]
pub struct Sender {
    path: PathBuf,
    conn: Option<std::os::unix::net::UnixStream>,
}

impl Sender {
    pub fn new(path: PathBuf) -> Sender {
        Sender { path, conn: None }
    }

    /// The hand-off socket this sends to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Pass `client` to the proxy. On success the proxy holds its own reference to the
    /// socket and the caller closes its copy. A connection the proxy has closed (it
    /// restarted) is replaced once, at once.
    pub fn send(&mut self, client: BorrowedFd<'_>) -> io::Result<()> {
        let reused = self.conn.is_some();
        match self.send_once(client) {
            Err(e) if reused && is_stale(&e) => self.send_once(client),
            result => result,
        }
    }

    /// One attempt, connecting first when there is no connection. Any failure but a full
    /// queue drops the connection, so the next attempt starts a fresh one.
    fn send_once(&mut self, client: BorrowedFd<'_>) -> io::Result<()> {
        let conn = match &self.conn {
            Some(conn) => conn,
            None => self.conn.insert(connect_nonblocking(&self.path)?),
        };
        let fds = [client.as_raw_fd()];
        let iov = [IoSlice::new(&[MAGIC])];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        let flags = MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT;
        let result = match sendmsg::<()>(conn.as_raw_fd(), &iov, &cmsg, flags, None) {
            Ok(1) => return Ok(()),
            Err(Errno::EAGAIN) => return Err(io::ErrorKind::WouldBlock.into()),
            Ok(_) => Err(io::Error::other("hand-off message not sent whole")),
            Err(e) => Err(e.into()),
        };
        self.conn = None;
        result
    }
}

/// The proxy closed our connection (it restarted): worth one retry on a new one.
fn is_stale(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPIPE | libc::ECONNRESET | libc::ENOTCONN)
    )
}

/// A non-blocking connect: a proxy whose backlog is full (stopped, or hung) makes it fail
/// with `EAGAIN` at once instead of stalling the forwarder's accept loop.
fn connect_nonblocking(path: &Path) -> io::Result<std::os::unix::net::UnixStream> {
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    connect(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
    Ok(std::os::unix::net::UnixStream::from(fd))
}

/// Proxy side: accept forwarders on `listener` and pass every client socket they send into
/// `tx` until the receiving end is dropped. A peer that sends anything but well-formed
/// hand-off messages is disconnected.
pub async fn serve(listener: UnixListener, path: PathBuf, tx: mpsc::Sender<StdStream>) {
    // The receivers live in this set, so they end with this task (the proxy's listener
    // aborts it when dropped) and no client is taken by a proxy that stopped serving.
    let mut peers = tokio::task::JoinSet::new();
    loop {
        let conn = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((conn, _)) => conn,
                Err(e) => {
                    debug!(path = %path.display(), "hand-off accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            Some(_) = peers.join_next() => continue,
        };
        if peers.len() >= MAX_PEERS {
            debug!(path = %path.display(), "hand-off: {MAX_PEERS} forwarders connected already; closing a new one");
            continue;
        }
        let (tx, path) = (tx.clone(), path.clone());
        peers.spawn(async move {
            loop {
                match receive(&conn).await {
                    Ok(client) => {
                        if tx.send(client).await.is_err() {
                            return; // the proxy stopped accepting
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return,
                    Err(e) => {
                        debug!(path = %path.display(), "hand-off peer disconnected: {e}");
                        return;
                    }
                }
            }
        });
    }
}

/// Proxy side: receive one client socket on a forwarder's hand-off connection.
pub async fn receive(conn: &UnixStream) -> io::Result<StdStream> {
    loop {
        conn.readable().await?;
        let got = conn.try_io(Interest::READABLE, || receive_fd(conn.as_raw_fd()));
        match got {
            Ok(fd) => return into_stream(fd),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}
fn receive_fd(sock: RawFd) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 2]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(io::Error::from)?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(received) = c {
            // SAFETY: the kernel just installed these descriptors in our table for us;
            // wrapping them makes sure each is closed exactly once.
            fds.extend(
                received
                    .into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    let bytes = msg.bytes;
    if bytes == 0 && fds.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "hand-off peer closed without sending",
        ));
    }
    if bytes != 1 || byte[0] != MAGIC || fds.len() != 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "malformed hand-off: {bytes} byte(s), {} descriptor(s)",
                fds.len()
            ),
        ));
    }
    Ok(fds.remove(0))
}

/// Check that `fd` is a connected stream socket and wrap it (non-blocking, `TCP_NODELAY`).
fn into_stream(fd: OwnedFd) -> io::Result<StdStream> {
    let ty = getsockopt(&fd, sockopt::SockType).map_err(io::Error::from)?;
    if ty != SockType::Stream {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "handed-off descriptor is not a stream socket",
        ));
    }
    let family = getsockname::<SockaddrStorage>(fd.as_raw_fd())
        .map_err(io::Error::from)?
        .family();
    match family {
        Some(AddressFamily::Inet | AddressFamily::Inet6) => {
            let s = std::net::TcpStream::from(fd);
            s.peer_addr()?; // connected?
            s.set_nonblocking(true)?;
            s.set_nodelay(true)?;
            Ok(StdStream::Tcp(s))
        }
        Some(AddressFamily::Unix) => {
            let s = std::os::unix::net::UnixStream::from(fd);
            s.set_nonblocking(true)?;
            Ok(StdStream::Unix(s))
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "handed-off descriptor is not a TCP or UNIX socket",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn handoff_path_is_next_to_the_socket() {
        assert_eq!(
            path_for(Path::new("/run/patroni/proxy.sock")),
            PathBuf::from("/run/patroni/proxy.sock.handoff")
        );
    }

    #[tokio::test]
    async fn tcp_clients_are_handed_over_on_one_connection_and_keep_working() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.sock.handoff");
        let (tx, mut rx) = mpsc::channel(4);
        let server = tokio::spawn(serve(UnixListener::bind(&path).unwrap(), path.clone(), tx));
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let mut sender = Sender::new(path.clone());
        for round in 0..3u8 {
            let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (accepted, _) = tcp.accept().await.unwrap();
            sender.send(accepted.as_fd()).unwrap();
            drop(accepted); // the forwarder closes its copy
            let served = rx.recv().await.unwrap();
            let StdStream::Tcp(served) = served else {
                panic!("not TCP")
            };
            let mut served = tokio::net::TcpStream::from_std(served).unwrap();
            client.write_all(&[b'p', round]).await.unwrap();
            let mut buf = [0u8; 2];
            served.read_exact(&mut buf).await.unwrap();
            assert_eq!(buf, [b'p', round]);
            served.write_all(b"ok").await.unwrap();
            client.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ok");
        }
        server.abort();
    }

    #[tokio::test]
    async fn a_restarted_proxy_gets_a_new_connection_and_a_gone_one_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h");
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = tcp.accept().await.unwrap();
        let mut sender = Sender::new(path.clone());
        assert!(
            sender.send(accepted.as_fd()).is_err(),
            "nothing listens yet"
        );

        let (tx, mut rx) = mpsc::channel(4);
        let first = tokio::spawn(serve(UnixListener::bind(&path).unwrap(), path.clone(), tx));
        sender.send(accepted.as_fd()).unwrap();
        rx.recv().await.unwrap();
        // The proxy restarts: its listener and the accepted connection go away.
        first.abort();
        let _ = first.await;
        drop(rx);
        std::fs::remove_file(&path).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let (tx, mut rx) = mpsc::channel(4);
        let _second = tokio::spawn(serve(UnixListener::bind(&path).unwrap(), path.clone(), tx));
        sender.send(accepted.as_fd()).unwrap();
        rx.recv().await.unwrap();
    }

    /// A proxy that stops taking clients must never stall the forwarder's accept loop:
    /// once the socket buffer is full, `send` says `WouldBlock` (and the forwarder copies).
    #[test]
    fn a_proxy_that_takes_nothing_makes_send_would_block_not_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(tcp.local_addr().unwrap()).unwrap();
        let (accepted, _) = tcp.accept().unwrap();
        let mut sender = Sender::new(path);
        let _peer = {
            sender.send(accepted.as_fd()).unwrap();
            listener.accept().unwrap() // accepted, never read
        };
        let started = std::time::Instant::now();
        let mut sent = 1;
        let err = loop {
            match sender.send(accepted.as_fd()) {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
            assert!(sent < 100_000, "the socket buffer never filled");
        };
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err} after {sent}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[tokio::test]
    async fn garbage_on_the_handoff_socket_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h");
        let handoff = tokio::net::UnixListener::bind(&path).unwrap();
        let mut peer = UnixStream::connect(&path).await.unwrap();
        let (conn, _) = handoff.accept().await.unwrap();
        peer.write_all(b"\0\0\0\x08\x04\xd2\x16\x2f").await.unwrap(); // an SSLRequest
        let err = receive(&conn).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        drop(peer);
        let mut peer = UnixStream::connect(&path).await.unwrap();
        let (conn, _) = handoff.accept().await.unwrap();
        peer.shutdown().await.unwrap();
        let err = receive(&conn).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
