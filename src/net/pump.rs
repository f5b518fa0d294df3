//! The byte pump: join two streams and copy both ways until both directions are done.
//!
//! Both roles (`forward`, `proxy`) spend nearly all their time here, so this is the fast
//! path. Each direction starts by copying through a pooled buffer (`recv`/`send`): for
//! PostgreSQL's small request/response messages that is the cheapest way. When a read fills
//! the whole buffer the direction is carrying bulk data (COPY, large results), and from then
//! on it moves bytes with splice(2) through a pipe (socket → pipe → socket), so payload never
//! crosses into user space; if splice is refused for a pair of descriptors (`EINVAL` and the
//! like) the direction goes back to copying. Everything is non-blocking and driven by
//! tokio's readiness (`poll_*_ready` + `try_io`), so no runtime thread ever blocks.
//!
//! Memory for idle connections: a direction holds its pipe (or copy buffer) only while bytes
//! are in flight. When the source has nothing more to read and the pipe is empty, the pipe
//! goes back to a process-wide pool ([`super::splice`]), so an idle client costs two sockets
//! and a small task, nothing else.
//!
//! Half-close is carried through: when one side finishes sending (EOF), the other side's
//! write half is shut down (`shutdown(SHUT_WR)`) and the opposite direction keeps flowing.
//! The pump ends when both directions are done, or at the first error on either side (the
//! caller then drops both streams, which closes them), or on the optional idle and
//! half-close timeouts of [`PumpOptions`]. Dropping the pump future at any point leaks
//! nothing: pipes that still hold bytes are closed, empty ones are pooled.
//!
//! Writes to a peer that has gone away rely on SIGPIPE being ignored, which the Rust
//! runtime does at start-up; splice cannot pass `MSG_NOSIGNAL`.

use std::future::poll_fn;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, recv, send};
use tokio::io::Interest;
use tokio::time::{Instant, Sleep};
use tracing::debug;

use super::Stream;
use super::splice::{self, Pipe};

/// Bytes moved by a finished pump.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transferred {
    /// From the client to the server.
    pub client_to_server: u64,
    /// From the server to the client.
    pub server_to_client: u64,
}

/// Copy buffer per direction. A read that fills it marks the direction as bulk (splice from
/// then on); smaller messages stay in copy mode. Held only while bytes are in flight, and
/// taken from a pool so a busy session neither allocates nor zeroes memory per message.
pub const BUF_SIZE: usize = 32 * 1024;

/// Copy buffers kept for reuse (2 MiB at most).
const BUF_POOL_MAX: usize = 64;

static BUF_POOL: std::sync::Mutex<Vec<Box<[u8]>>> = std::sync::Mutex::new(Vec::new());

fn take_buf() -> Box<[u8]> {
    BUF_POOL
        .lock()
        .ok()
        .and_then(|mut pool| pool.pop())
        .unwrap_or_else(|| vec![0u8; BUF_SIZE].into_boxed_slice())
}

fn give_back_buf(buf: Box<[u8]>) {
    if buf.len() == BUF_SIZE
        && let Ok(mut pool) = BUF_POOL.lock()
        && pool.len() < BUF_POOL_MAX
    {
        pool.push(buf);
    }
}

/// Byte counters that the pump updates as bytes move, for status pages that show sessions
/// while they run (the totals are also returned when the pump ends).
#[derive(Debug, Default)]
pub struct Counters {
    pub client_to_server: AtomicU64,
    pub server_to_client: AtomicU64,
}

/// How a pump runs. `PumpOptions::default()` is what [`pump`] uses: splice on, no timeouts.
#[derive(Debug, Clone)]
pub struct PumpOptions {
    /// Move bytes with splice(2) (the default). Off forces the user-space copy, for
    /// comparison and as an escape hatch on kernels where splice misbehaves.
    pub splice: bool,
    /// End the session with [`PumpErrorKind::Idle`] when no byte has moved in either
    /// direction for this long (HAProxy's `timeout client` / `timeout server` in TCP mode).
    pub idle_timeout: Option<Duration>,
    /// After one direction has finished, end the session normally if the other has not
    /// finished within this long (socat's `-t`). `None` waits for both directions.
    pub half_close_timeout: Option<Duration>,
    /// Live counters to update while bytes move.
    pub counters: Option<Arc<Counters>>,
}

impl Default for PumpOptions {
    fn default() -> Self {
        PumpOptions {
            splice: true,
            idle_timeout: None,
            half_close_timeout: None,
            counters: None,
        }
    }
}

/// Why a pump ended early, with what had been moved until then.
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct PumpError {
    pub kind: PumpErrorKind,
    pub transferred: Transferred,
}

/// Which side failed, so logs and termination codes can say who ended the session.
#[derive(Debug, thiserror::Error)]
pub enum PumpErrorKind {
    /// Reading from or writing to the client failed.
    #[error("client side: {0}")]
    Client(#[source] io::Error),
    /// Reading from or writing to the server failed.
    #[error("server side: {0}")]
    Server(#[source] io::Error),
    /// Nothing moved in either direction for the idle timeout.
    #[error("no data in either direction for {0:?}")]
    Idle(Duration),
}

impl From<PumpError> for io::Error {
    fn from(e: PumpError) -> io::Error {
        match e.kind {
            PumpErrorKind::Client(e) | PumpErrorKind::Server(e) => e,
            PumpErrorKind::Idle(d) => io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no data in either direction for {d:?}"),
            ),
        }
    }
}

/// Copy bytes between `client` and `server` until both directions reach EOF.
pub async fn pump(client: &mut Stream, server: &mut Stream) -> io::Result<Transferred> {
    Ok(pump_with(client, server, &PumpOptions::default()).await?)
}

/// [`pump`] with options: timeouts, live counters, splice on or off.
pub async fn pump_with(
    client: &mut Stream,
    server: &mut Stream,
    opts: &PumpOptions,
) -> Result<Transferred, PumpError> {
    let (client, server) = (&*client, &*server);
    let mut up = Half::new(opts.splice);
    let mut down = Half::new(opts.splice);
    let mut idle: Option<(Duration, Pin<Box<Sleep>>)> = opts
        .idle_timeout
        .map(|d| (d, Box::pin(tokio::time::sleep(d))));
    let mut last_activity = Instant::now();
    let mut half_close: Option<Pin<Box<Sleep>>> = None;

    poll_fn(|cx| {
        let before = up.moved + down.moved;
        let transferred = |up: &Half, down: &Half| Transferred {
            client_to_server: up.moved,
            server_to_client: down.moved,
        };
        let fail = |kind, up: &Half, down: &Half| {
            Poll::Ready(Err(PumpError {
                kind,
                transferred: transferred(up, down),
            }))
        };
        let up_counter = opts.counters.as_deref().map(|c| &c.client_to_server);
        let down_counter = opts.counters.as_deref().map(|c| &c.server_to_client);
        if !up.done {
            if let Poll::Ready(Err(e)) = up.poll(cx, client, server, up_counter) {
                let kind = match e {
                    HalfError::Read(e) => PumpErrorKind::Client(e),
                    HalfError::Write(e) => PumpErrorKind::Server(e),
                };
                return fail(kind, &up, &down);
            }
        }
        if !down.done {
            if let Poll::Ready(Err(e)) = down.poll(cx, server, client, down_counter) {
                let kind = match e {
                    HalfError::Read(e) => PumpErrorKind::Server(e),
                    HalfError::Write(e) => PumpErrorKind::Client(e),
                };
                return fail(kind, &up, &down);
            }
        }
        if up.done && down.done {
            return Poll::Ready(Ok(transferred(&up, &down)));
        }
        if let Some(limit) = opts.half_close_timeout {
            if up.done || down.done {
                let timer = half_close.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                if timer.as_mut().poll(cx).is_ready() {
                    debug!(?limit, "half-close timeout: ending the session");
                    return Poll::Ready(Ok(transferred(&up, &down)));
                }
            }
        }
        if let Some((limit, timer)) = idle.as_mut() {
            if up.moved + down.moved != before {
                last_activity = Instant::now();
            }
            // The timer is not pushed back on every byte (that would cost a timer-wheel
            // update per system call); when it fires early, it is re-armed from the last
            // activity instead.
            while timer.as_mut().poll(cx).is_ready() {
                let deadline = last_activity + *limit;
                if deadline <= Instant::now() {
                    return fail(PumpErrorKind::Idle(*limit), &up, &down);
                }
                timer.as_mut().reset(deadline);
            }
        }
        Poll::Pending
    })
    .await
}

/// A failure in one direction: reading its source or writing its destination.
enum HalfError {
    Read(io::Error),
    Write(io::Error),
}

/// One direction of the pump: from `src` to `dst`.
struct Half {
    /// The splice pipe, held only while bytes are in flight (or about to be).
    pipe: Option<Pipe>,
    /// The copy buffer in copy mode, held only while bytes are in flight.
    buf: Option<Box<[u8]>>,
    /// Bytes in flight: in the pipe (splice mode), or `buf[start..end]` (copy mode).
    start: usize,
    end: usize,
    /// splice(2) allowed; turned off for good when the kernel refuses it.
    splice: bool,
    /// A read filled the copy buffer: this direction carries bulk data and splices.
    bulk: bool,
    /// The source reached end of stream.
    eof: bool,
    /// EOF seen, everything written, and the destination's write half shut down.
    done: bool,
    /// Bytes written to the destination.
    moved: u64,
}

impl Half {
    fn new(splice: bool) -> Half {
        Half {
            pipe: None,
            buf: None,
            start: 0,
            end: 0,
            splice,
            bulk: false,
            eof: false,
            done: false,
            moved: 0,
        }
    }

    /// Move bytes until the source has nothing more for now (Pending), the direction is
    /// finished (Ready(Ok)), or a side fails.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        src: &Stream,
        dst: &Stream,
        counter: Option<&AtomicU64>,
    ) -> Poll<Result<(), HalfError>> {
        loop {
            // 1. Write out whatever is in flight.
            if self.end > self.start {
                ready!(dst.poll_write_ready(cx)).map_err(HalfError::Write)?;
                let r = match (&self.pipe, &self.buf) {
                    (Some(pipe), _) if self.splice => dst.try_io(Interest::WRITABLE, || {
                        pipe.drain_to(dst.as_fd(), self.end - self.start)
                    }),
                    (_, Some(buf)) => dst.try_io(Interest::WRITABLE, || {
                        send_all_flags(dst, &buf[self.start..self.end])
                    }),
                    // Bytes in flight always have a pipe or a buffer holding them.
                    _ => Err(io::Error::other("pump: bytes in flight without a buffer")),
                };
                match r {
                    Ok(n) => {
                        self.start += n;
                        self.moved += n as u64;
                        if let Some(c) = counter {
                            c.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        if self.start == self.end {
                            self.start = 0;
                            self.end = 0;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if self.splice && self.pipe.is_some() && splice::unsupported(&e) => {
                        self.switch_to_copy().map_err(HalfError::Write)?;
                    }
                    Err(e) => return Poll::Ready(Err(HalfError::Write(e))),
                }
                continue;
            }

            // 2. Nothing in flight: finish after EOF, else read more.
            if self.eof {
                self.release();
                dst.shutdown_write().map_err(HalfError::Write)?;
                self.done = true;
                return Poll::Ready(Ok(()));
            }
            match src.poll_read_ready(cx) {
                Poll::Pending => {
                    // Idle: hand the pipe or buffer back while waiting.
                    self.release();
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(HalfError::Read(e))),
                Poll::Ready(Ok(())) => {}
            }
            if self.splice && self.bulk {
                if let Some(b) = self.buf.take() {
                    give_back_buf(b);
                }
                let pipe = match self.pipe.take() {
                    Some(p) => p,
                    None => match Pipe::take() {
                        Ok(p) => p,
                        Err(e) => {
                            // Out of descriptors for pipes: this direction copies instead.
                            debug!(error = %e, "no pipe for splice; copying instead");
                            splice::note_fallback();
                            self.splice = false;
                            continue;
                        }
                    },
                };
                let want = pipe.capacity();
                let r = src.try_io(Interest::READABLE, || pipe.fill_from(src.as_fd(), want));
                self.pipe = Some(pipe);
                match r {
                    Ok(0) => self.eof = true,
                    Ok(n) => {
                        self.end = n;
                        if n < want {
                            drained(src);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if splice::unsupported(&e) => {
                        debug!(error = %e, "splice refused for this stream; copying instead");
                        splice::note_fallback();
                        self.release();
                        self.splice = false;
                    }
                    Err(e) => return Poll::Ready(Err(HalfError::Read(e))),
                }
            } else {
                let buf = self.buf.get_or_insert_with(take_buf);
                let want = buf.len();
                match src.try_io(Interest::READABLE, || recv_flags(src, buf)) {
                    Ok(0) => self.eof = true,
                    Ok(n) => {
                        self.start = 0;
                        self.end = n;
                        if n < want {
                            drained(src);
                        } else if self.splice {
                            // A full buffer: bulk data, worth splicing from the next read.
                            self.bulk = true;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Poll::Ready(Err(HalfError::Read(e))),
                }
            }
        }
    }

    /// Give back the pipe (it is empty here) and free the copy buffer.
    fn release(&mut self) {
        debug_assert_eq!(self.start, self.end);
        if let Some(p) = self.pipe.take() {
            p.give_back();
        }
        if let Some(b) = self.buf.take() {
            give_back_buf(b);
        }
    }

    /// splice out was refused while the pipe holds bytes: read them into a buffer and go on
    /// in copy mode.
    fn switch_to_copy(&mut self) -> io::Result<()> {
        debug!("splice refused for this stream; copying instead");
        splice::note_fallback();
        let pending = self.end - self.start;
        let mut buf = vec![0u8; pending.max(BUF_SIZE)].into_boxed_slice();
        if let Some(pipe) = self.pipe.take() {
            let mut got = 0;
            while got < pending {
                match pipe.read_into(&mut buf[got..pending]) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) => return Err(e),
                }
            }
            if got < pending {
                return Err(io::Error::other("pump: pipe held fewer bytes than spliced"));
            }
            // `pipe` is dropped (closed) here; it was just emptied but is not reused.
        }
        self.buf = Some(buf);
        self.start = 0;
        self.end = pending;
        self.splice = false;
        Ok(())
    }
}

impl Drop for Half {
    fn drop(&mut self) {
        // An empty pipe can serve another connection; one with bytes in it is closed.
        if self.end == self.start {
            if let Some(p) = self.pipe.take() {
                p.give_back();
            }
        }
    }
}

/// A read returned less than asked: the socket's receive queue is empty now. Clear its read
/// readiness without another system call, so the next poll waits for the reactor's next
/// edge instead of trying a read that can only fail with EAGAIN (two wasted syscalls per
/// Postgres round trip otherwise). tokio clears only the readiness it observed before the
/// read, and never the "closed" readiness, so neither new data nor a FIN can be missed.
fn drained(src: &Stream) {
    let _ = src.try_io(Interest::READABLE, || {
        Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock))
    });
}

fn recv_flags(src: &Stream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match recv(src.as_raw_fd(), buf, MsgFlags::empty()) {
            Err(Errno::EINTR) => continue,
            r => return Ok(r?),
        }
    }
}

fn send_all_flags(dst: &Stream, buf: &[u8]) -> io::Result<usize> {
    loop {
        match send(dst.as_raw_fd(), buf, MsgFlags::MSG_NOSIGNAL) {
            Err(Errno::EINTR) => continue,
            r => return Ok(r?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hasher;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream, UnixStream};

    /// A connected pair of TCP streams on loopback.
    async fn tcp_pair() -> (Stream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(addr), l.accept());
        (Stream::Tcp(b.unwrap().0), a.unwrap())
    }

    fn unix_pair() -> (Stream, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        (Stream::Unix(a), b)
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    fn hash(b: &[u8]) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        h.write(b);
        h.finish()
    }

    /// Client ⇄ pump ⇄ server: both sides send a few MB at once, then half-close; each must
    /// receive exactly what the other sent.
    async fn both_ways(splice: bool, tcp_client: bool, tcp_server: bool) {
        async fn side(tcp: bool) -> (Stream, Box<dyn Io>) {
            if tcp {
                let (s, peer) = tcp_pair().await;
                (s, Box::new(peer))
            } else {
                let (s, peer) = unix_pair();
                (s, Box::new(peer))
            }
        }
        let (mut c, client) = side(tcp_client).await;
        let (mut s, server) = side(tcp_server).await;
        let opts = PumpOptions {
            splice,
            ..Default::default()
        };
        let pump = tokio::spawn(async move { pump_with(&mut c, &mut s, &opts).await });
        let up = pattern(3 << 20, 1);
        let down = pattern(5 << 20, 7);
        let (got_at_server, got_at_client) =
            tokio::join!(exchange(server, down.clone()), exchange(client, up.clone()));
        assert_eq!(hash(&got_at_server), hash(&up));
        assert_eq!(hash(&got_at_client), hash(&down));
        let t = pump.await.unwrap().unwrap();
        assert_eq!(t.client_to_server, up.len() as u64);
        assert_eq!(t.server_to_client, down.len() as u64);
    }

    trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
    impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

    /// Send `data` then shut down writing, while reading everything the peer sends.
    async fn exchange(io: Box<dyn Io>, data: Vec<u8>) -> Vec<u8> {
        let (mut r, mut w) = tokio::io::split(io);
        let send = async move {
            w.write_all(&data).await.unwrap();
            w.shutdown().await.unwrap();
        };
        let receive = async move {
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.unwrap();
            got
        };
        tokio::join!(send, receive).1
    }

    #[tokio::test]
    async fn splice_moves_megabytes_both_ways_for_every_combination() {
        for (c, s) in [(true, true), (true, false), (false, true), (false, false)] {
            both_ways(true, c, s).await;
        }
        assert_eq!(
            splice::fallbacks(),
            0,
            "splice was used, not the copy fallback"
        );
    }

    #[tokio::test]
    async fn copy_mode_moves_megabytes_both_ways() {
        for (c, s) in [(true, false), (false, true)] {
            both_ways(false, c, s).await;
        }
    }

    async fn half_close(splice: bool) {
        let (mut c, mut client) = tcp_pair().await;
        let (mut s, mut server) = unix_pair();
        let opts = PumpOptions {
            splice,
            ..Default::default()
        };
        let pump = tokio::spawn(async move { pump_with(&mut c, &mut s, &opts).await });
        // The client says everything and shuts its write half...
        client.write_all(b"question").await.unwrap();
        client.shutdown().await.unwrap();
        // ...the server sees EOF and answers afterwards...
        let mut q = Vec::new();
        server.read_to_end(&mut q).await.unwrap();
        assert_eq!(q, b"question");
        server.write_all(b"answer").await.unwrap();
        // ...and the client still gets the answer.
        let mut a = [0u8; 6];
        client.read_exact(&mut a).await.unwrap();
        assert_eq!(&a, b"answer");
        assert!(!pump.is_finished(), "one direction is still open");
        drop(server);
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        let t = pump.await.unwrap().unwrap();
        assert_eq!((t.client_to_server, t.server_to_client), (8, 6));
    }

    #[tokio::test]
    async fn half_close_is_carried_through_with_splice() {
        half_close(true).await;
    }

    #[tokio::test]
    async fn half_close_is_carried_through_with_copy() {
        half_close(false).await;
    }

    #[tokio::test]
    async fn a_reset_ends_the_pump_with_the_side_named() {
        let (mut c, client) = tcp_pair().await;
        let (mut s, mut server) = unix_pair();
        let pump =
            tokio::spawn(async move { pump_with(&mut c, &mut s, &Default::default()).await });
        // SO_LINGER 0 makes close send RST instead of FIN.
        nix::sys::socket::setsockopt(
            &client,
            nix::sys::socket::sockopt::Linger,
            &libc::linger {
                l_onoff: 1,
                l_linger: 0,
            },
        )
        .unwrap();
        drop(client);
        let err = pump.await.unwrap().unwrap_err();
        assert!(matches!(err.kind, PumpErrorKind::Client(_)), "{err}");
        // The server side saw no bytes, and its stream is closed with the pump's task.
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_timeout_ends_a_silent_session() {
        let (mut c, mut client) = tcp_pair().await;
        let (mut s, mut server) = unix_pair();
        let opts = PumpOptions {
            idle_timeout: Some(Duration::from_secs(30 * 60)),
            ..Default::default()
        };
        let pump = tokio::spawn(async move { pump_with(&mut c, &mut s, &opts).await });
        client.write_all(b"ping").await.unwrap();
        let mut b = [0u8; 4];
        server.read_exact(&mut b).await.unwrap();
        let started = Instant::now();
        let err = pump.await.unwrap().unwrap_err();
        assert!(matches!(err.kind, PumpErrorKind::Idle(_)), "{err}");
        assert_eq!(err.transferred.client_to_server, 4);
        assert!(started.elapsed() >= Duration::from_secs(29 * 60));
    }

    #[tokio::test(start_paused = true)]
    async fn half_close_timeout_ends_the_other_direction() {
        let (mut c, mut client) = tcp_pair().await;
        let (mut s, _server) = unix_pair();
        let opts = PumpOptions {
            half_close_timeout: Some(Duration::from_millis(500)),
            ..Default::default()
        };
        let pump = tokio::spawn(async move { pump_with(&mut c, &mut s, &opts).await });
        client.shutdown().await.unwrap();
        // The server never closes; the pump still ends, normally, after 0.5 s.
        let t = pump.await.unwrap().unwrap();
        assert_eq!(t, Transferred::default());
    }

    #[tokio::test]
    async fn live_counters_follow_the_bytes() {
        let (mut c, mut client) = tcp_pair().await;
        let (mut s, mut server) = unix_pair();
        let counters = Arc::new(Counters::default());
        let opts = PumpOptions {
            counters: Some(counters.clone()),
            ..Default::default()
        };
        let pump = tokio::spawn(async move { pump_with(&mut c, &mut s, &opts).await });
        client.write_all(&[1u8; 1000]).await.unwrap();
        let mut b = vec![0u8; 1000];
        server.read_exact(&mut b).await.unwrap();
        assert_eq!(counters.client_to_server.load(Ordering::Relaxed), 1000);
        drop(client);
        drop(server);
        let _ = pump.await.unwrap();
    }
}
