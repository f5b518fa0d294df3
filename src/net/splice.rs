//! Kernel-side copying with splice(2): socket → pipe → socket, bytes never enter user space.
//!
//! splice needs a pipe between the two sockets. A pipe is two file descriptors and a ring of
//! page references in the kernel, so holding one per direction per connection would cost
//! four descriptors for every idle client. Instead, a direction takes a pipe from a small
//! process-wide pool when data arrives and gives it back as soon as the pipe is empty again
//! (see [`crate::net::pump`]); idle connections hold no pipe at all. Only empty pipes go back
//! into the pool, so a pipe taken from it never carries bytes of another connection.
//!
//! Pipes are enlarged with `F_SETPIPE_SZ` so one splice call moves up to [`PIPE_SIZE`]
//! bytes. When the kernel refuses the size (an unprivileged user over
//! `/proc/sys/fs/pipe-user-pages-soft`), the pipe keeps its default size and still works.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl};

/// Wanted capacity of each pipe. 1 MiB lets one splice call take everything a loopback
/// TCP socket has buffered; the memory behind it is only the pages actually in flight
/// (spliced pages are references to the socket's pages, not copies).
pub const PIPE_SIZE: usize = 1024 * 1024;

/// Most empty pipes kept for reuse. Enough for the directions that are busy at the same
/// moment on a small machine; beyond it, pipes are closed when given back.
const POOL_MAX: usize = 64;

/// Empty pipes ready for reuse.
static POOL: Mutex<Vec<Pipe>> = Mutex::new(Vec::new());

/// How many times a direction had to fall back to copying (splice refused, or no pipe).
static FALLBACKS: AtomicU64 = AtomicU64::new(0);

/// Count one fallback from splice to copying.
pub fn note_fallback() {
    FALLBACKS.fetch_add(1, Ordering::Relaxed);
}

/// Fallbacks from splice to copying since the process started (for status pages and tests:
/// on Linux with sockets at both ends this stays 0).
pub fn fallbacks() -> u64 {
    FALLBACKS.load(Ordering::Relaxed)
}

/// A non-blocking pipe used as the splice buffer of one direction.
#[derive(Debug)]
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes the pipe holds at most (what `F_SETPIPE_SZ` granted).
    capacity: usize,
}

impl Pipe {
    /// Create a pipe and try to enlarge it to [`PIPE_SIZE`].
    pub fn new() -> io::Result<Pipe> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        let capacity = match fcntl(&write, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE as i32)) {
            Ok(n) if n > 0 => n as usize,
            // Refused (EPERM over the per-user limit): keep the default size.
            _ => match fcntl(&write, FcntlArg::F_GETPIPE_SZ) {
                Ok(n) if n > 0 => n as usize,
                _ => 64 * 1024,
            },
        };
        Ok(Pipe {
            read,
            write,
            capacity,
        })
    }

    /// Bytes the pipe can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Take an empty pipe from the pool, or create one.
    pub fn take() -> io::Result<Pipe> {
        if let Some(p) = POOL.lock().ok().and_then(|mut pool| pool.pop()) {
            return Ok(p);
        }
        Pipe::new()
    }

    /// Return an EMPTY pipe to the pool (the caller guarantees it holds no bytes).
    pub fn give_back(self) {
        if let Ok(mut pool) = POOL.lock() {
            if pool.len() < POOL_MAX {
                pool.push(self);
            }
        }
    }

    /// Move up to `len` bytes from the socket `src` into the pipe. `Ok(0)` is end of stream.
    pub fn fill_from(&self, src: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
        splice(src, self.write.as_fd(), len)
    }

    /// Move up to `len` bytes from the pipe to the socket `dst`.
    pub fn drain_to(&self, dst: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
        splice(self.read.as_fd(), dst, len)
    }

    /// Read bytes out of the pipe into `buf` (used when switching a direction to plain
    /// copying while the pipe still holds data).
    pub fn read_into(&self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(nix::unistd::read(&self.read, buf)?)
    }
}

fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    loop {
        match nix::fcntl::splice(
            from,
            None,
            to,
            None,
            len,
            SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK,
        ) {
            Ok(n) => return Ok(n),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// True when `err` means splice cannot be used for these descriptors at all (as opposed to
/// a failure of the connection), so the caller should copy through user space instead.
pub fn unsupported(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error().map(Errno::from_raw),
        Some(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn pipe_is_enlarged_or_keeps_a_usable_size() {
        let p = Pipe::new().unwrap();
        assert!(p.capacity() >= 4096, "capacity {}", p.capacity());
    }

    #[test]
    fn splice_moves_bytes_between_sockets_and_reports_eof() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let (c, mut d) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let pipe = Pipe::take().unwrap();
        a.write_all(b"hello").unwrap();
        let n = pipe.fill_from(b.as_fd(), pipe.capacity()).unwrap();
        assert_eq!(n, 5);
        assert_eq!(pipe.drain_to(c.as_fd(), n).unwrap(), 5);
        let mut got = [0u8; 5];
        d.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        // Nothing buffered: a non-blocking splice says so instead of waiting.
        let err = pipe.fill_from(b.as_fd(), 16).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        drop(a);
        assert_eq!(pipe.fill_from(b.as_fd(), 16).unwrap(), 0, "EOF");
        pipe.give_back();
    }

    #[test]
    fn only_descriptor_errors_count_as_unsupported() {
        assert!(unsupported(&io::Error::from_raw_os_error(libc::EINVAL)));
        assert!(unsupported(&io::Error::from_raw_os_error(libc::ENOSYS)));
        assert!(!unsupported(&io::Error::from_raw_os_error(
            libc::ECONNRESET
        )));
        assert!(!unsupported(&io::Error::from_raw_os_error(libc::EPIPE)));
        assert!(!unsupported(&io::Error::from(io::ErrorKind::WouldBlock)));
    }
}
