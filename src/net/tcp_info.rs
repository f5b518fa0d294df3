//! What the kernel knows about a TCP connection's traffic (`TCP_INFO`): bytes each way and
//! how long each direction has been silent.
//!
//! The proxy uses this on the server-side socket to enforce inactivity timeouts and to keep
//! its byte counters live without touching the byte pump (which may move data with
//! splice(2) and never see it).

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Traffic on one TCP socket, as the kernel counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpActivity {
    /// Bytes sent and acknowledged by the peer (`tcpi_bytes_acked`, Linux ≥ 4.1, less the
    /// one the kernel counts for the SYN). A FIN, once acknowledged, counts one more.
    pub bytes_acked: u64,
    /// Bytes received from the peer (`tcpi_bytes_received`, Linux ≥ 4.1); a received FIN
    /// counts one more.
    pub bytes_received: u64,
    /// Time since data was last sent.
    pub since_sent: Duration,
    /// Time since data was last received.
    pub since_received: Duration,
}

impl TcpActivity {
    /// Time since data moved in either direction.
    pub fn idle(&self) -> Duration {
        self.since_sent.min(self.since_received)
    }
}

// Offsets in the kernel's `struct tcp_info` (include/uapi/linux/tcp.h); a fixed ABI.
const LAST_DATA_SENT: usize = 44;
const LAST_DATA_RECV: usize = 52;
const BYTES_ACKED: usize = 120;
const BYTES_RECEIVED: usize = 128;

/// Read `TCP_INFO` of a TCP socket.
pub fn tcp_activity(sock: &impl AsRawFd) -> io::Result<TcpActivity> {
    let mut buf = [0u8; 256];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: the fd is borrowed from a live socket for the duration of the call, and the
    // kernel writes at most `len` bytes into `buf`, reporting how many in `len`.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let len = len as usize;
    let u32_at = |o: usize| -> u32 {
        if len >= o + 4 {
            u32::from_ne_bytes([buf[o], buf[o + 1], buf[o + 2], buf[o + 3]])
        } else {
            0
        }
    };
    let u64_at = |o: usize| -> u64 {
        if len >= o + 8 {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[o..o + 8]);
            u64::from_ne_bytes(b)
        } else {
            0
        }
    };
    if len < LAST_DATA_RECV + 4 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the kernel's TCP_INFO is too short",
        ));
    }
    Ok(TcpActivity {
        bytes_acked: u64_at(BYTES_ACKED).saturating_sub(1),
        bytes_received: u64_at(BYTES_RECEIVED),
        since_sent: Duration::from_millis(u64::from(u32_at(LAST_DATA_SENT))),
        since_received: Duration::from_millis(u64::from(u32_at(LAST_DATA_RECV))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn counts_bytes_and_silence_on_loopback() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut b, _) = l.accept().unwrap();
        a.write_all(&[7u8; 1000]).unwrap();
        let mut got = [0u8; 1000];
        b.read_exact(&mut got).unwrap();
        b.write_all(&[1u8; 300]).unwrap();
        let mut back = [0u8; 300];
        a.read_exact(&mut back).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        let info = tcp_activity(&a).unwrap();
        assert_eq!(info.bytes_acked, 1000);
        assert_eq!(info.bytes_received, 300);
        assert!(info.idle() >= Duration::from_millis(50), "{info:?}");
        assert!(info.idle() < Duration::from_secs(5), "{info:?}");
    }
}
