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
//! The message is one byte, [`MAGIC`], carrying exactly one descriptor. The receiver
//! checks that it got exactly one descriptor and that it is a connected stream socket
//! before serving it; anything else is dropped (and closed).

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockType, SockaddrLike,
    SockaddrStorage, getsockname, getsockopt, recvmsg, sendmsg, sockopt,
};
use tokio::io::Interest;
use tokio::net::UnixStream;

use super::Stream;

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

/// Forwarder side: pass `client` to the proxy listening on `handoff`. On success the
/// proxy holds its own reference to the socket and the caller drops its copy.
pub async fn send(handoff: &Path, client: &Stream) -> io::Result<()> {
    let conn = UnixStream::connect(handoff).await?;
    let fds = [client.as_raw_fd()];
    let payload = [MAGIC];
    loop {
        conn.writable().await?;
        let sent = conn.try_io(Interest::WRITABLE, || {
            let iov = [IoSlice::new(&payload)];
            let cmsg = [ControlMessage::ScmRights(&fds)];
            sendmsg::<()>(conn.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None)
                .map_err(io::Error::from)
        });
        match sent {
            Ok(1) => return Ok(()),
            Ok(_) => return Err(io::Error::other("hand-off message not sent whole")),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Proxy side: receive one client socket on an accepted hand-off connection.
pub async fn receive(conn: &UnixStream) -> io::Result<Stream> {
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

/// Check that `fd` is a connected stream socket and wrap it.
fn into_stream(fd: OwnedFd) -> io::Result<Stream> {
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
            let std_stream = std::net::TcpStream::from(fd);
            std_stream.peer_addr()?; // connected?
            std_stream.set_nonblocking(true)?;
            let s = tokio::net::TcpStream::from_std(std_stream)?;
            s.set_nodelay(true)?;
            Ok(Stream::Tcp(s))
        }
        Some(AddressFamily::Unix) => {
            let std_stream = std::os::unix::net::UnixStream::from(fd);
            std_stream.set_nonblocking(true)?;
            Ok(Stream::Unix(UnixStream::from_std(std_stream)?))
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn handoff_path_is_next_to_the_socket() {
        assert_eq!(
            path_for(Path::new("/run/patroni/proxy.sock")),
            PathBuf::from("/run/patroni/proxy.sock.handoff")
        );
    }

    #[tokio::test]
    async fn a_tcp_client_is_handed_over_and_keeps_working() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.sock.handoff");
        let handoff = tokio::net::UnixListener::bind(&path).unwrap();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = tcp.accept().await.unwrap();
        let accepted = Stream::Tcp(accepted);

        let (sent, received) = tokio::join!(send(&path, &accepted), async {
            let (conn, _) = handoff.accept().await.unwrap();
            receive(&conn).await
        });
        sent.unwrap();
        drop(accepted); // the forwarder closes its copy
        let mut served = received.unwrap();
        assert!(matches!(served, Stream::Tcp(_)));
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        served.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        served.write_all(b"pong").await.unwrap();
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
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
