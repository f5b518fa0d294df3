//! One client connection through the proxy: get a server slot (maybe after queueing),
//! connect with retries, pump bytes until both sides are done, or cut the session when its
//! server is marked DOWN, the proxy stops, or both directions stay silent too long.
//!
//! Inactivity is HAProxy's rule for a tunnel: activity in either direction refreshes both
//! sides' timeouts, so a session closes when no byte has moved either way for
//! `timeout client` (reported `cD`) or `timeout server` (`sD`), whichever is shorter. The
//! silence and the live byte counts come from the server socket's `TCP_INFO`, so the byte
//! pump (which may use splice) needs no hooks.
//!
//! Termination codes in the debug log follow HAProxy's (first letter: who ended it, second:
//! in which phase): `--` normal, `SC` no server / connection failed, `sC` connect timeout,
//! `sQ` queue timeout, `cD`/`sD` inactivity, `DD` cut by `shutdown-sessions`, `KD` cut by
//! shutdown, `SD` transfer error.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::debug;

use super::backend::{Backend, Refused, Slot};
use super::frontend::{Frontend, Phase};
use super::haproxy_cfg::Timeouts;
use crate::net::Stream;
use crate::net::pump::pump;
use crate::net::tcp_info::tcp_activity;

/// How often a session refreshes its byte counters (and at most how long it sleeps
/// between inactivity checks).
pub const STATS_TICK: Duration = Duration::from_secs(1);

/// What a session needs from its `listen` section.
#[derive(Debug)]
pub struct Route {
    pub frontend: Arc<Frontend>,
    pub backend: Arc<Backend>,
    pub retries: u32,
    pub timeouts: Timeouts,
}

/// How a session ended.
#[derive(Debug)]
enum End {
    Done,
    NoServer,
    QueueTimeout(Duration),
    ConnectFailed(io::Error),
    Idle { client_side: bool, silent: Duration },
    Cut,
    Shutdown,
    TransferError(io::Error),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Done => f.write_str("both sides done"),
            End::NoServer => f.write_str("no server UP"),
            End::QueueTimeout(w) => write!(f, "no free server slot after {w:?} in the queue"),
            End::ConnectFailed(e) => write!(f, "connecting to the server failed: {e}"),
            End::Idle {
                client_side,
                silent,
            } => write!(
                f,
                "silent for {silent:?} (timeout {})",
                if *client_side { "client" } else { "server" }
            ),
            End::Cut => f.write_str("server marked DOWN (shutdown-sessions)"),
            End::Shutdown => f.write_str("proxy stopping"),
            End::TransferError(e) => write!(f, "transfer error: {e}"),
        }
    }
}

impl End {
    fn code(&self) -> &'static str {
        match self {
            End::Done => "--",
            End::NoServer => "SC",
            End::QueueTimeout(_) => "sQ",
            End::ConnectFailed(e) if e.kind() == io::ErrorKind::TimedOut => "sC",
            End::ConnectFailed(_) => "SC",
            End::Idle {
                client_side: true, ..
            } => "cD",
            End::Idle { .. } => "sD",
            End::Cut => "DD",
            End::Shutdown => "KD",
            End::TransferError(_) => "SD",
        }
    }
}

/// Serve one accepted client until it is done.
pub async fn serve(mut client: Stream, route: &Route, phase: watch::Receiver<Phase>) {
    let peer = client.peer();
    let accepted = Instant::now();
    let now = accepted;
    route.frontend.update(|c| c.session_started(now));
    let mut moved = (0u64, 0u64);
    let (end, server) = run(&mut client, route, phase, &mut moved).await;
    let lasted = accepted.elapsed();
    route.frontend.update(|c| {
        c.session_ended(lasted);
    });
    debug!(
        client = %peer,
        server = server.as_deref().unwrap_or("<NOSRV>"),
        code = end.code(),
        bytes_in = moved.0,
        bytes_out = moved.1,
        "session ended after {lasted:?}: {end}"
    );
}

async fn run(
    client: &mut Stream,
    route: &Route,
    mut phase: watch::Receiver<Phase>,
    moved: &mut (u64, u64),
) -> (End, Option<String>) {
    let backend = &route.backend;
    let stopped = async {
        let _ = phase.wait_for(|p| *p == Phase::Stopped).await;
    };
    tokio::pin!(stopped);
    let slot = tokio::select! {
        s = backend.acquire() => s,
        _ = &mut stopped => return (End::Shutdown, None),
    };
    let slot = match slot {
        Ok(s) => s,
        Err(Refused::NoServer) => return (End::NoServer, None),
        Err(Refused::QueueTimeout(w)) => return (End::QueueTimeout(w), None),
    };
    let name = slot
        .spec()
        .map(|s| format!("{}/{}", backend.name, s.name))
        .unwrap_or_default();
    let cut = slot.cut();
    tokio::pin!(cut);
    let server = tokio::select! {
        r = connect_with_retries(&slot, route) => r,
        _ = &mut cut => return (End::Cut, Some(name)),
        _ = &mut stopped => return (End::Shutdown, Some(name)),
    };
    let tcp = match server {
        Ok(s) => s,
        Err(e) => {
            slot.update(|c| c.econ += 1);
            return (End::ConnectFailed(e), Some(name));
        }
    };
    let fd = Fd(tcp.as_raw_fd());
    let mut server = Stream::Tcp(tcp);
    // The shorter of the two inactivity timeouts decides (see the module doc).
    let idle_limit = match (route.timeouts.client, route.timeouts.server) {
        (Some(c), Some(s)) => Some((c.min(s), c <= s)),
        (Some(c), None) => Some((c, true)),
        (None, Some(s)) => Some((s, false)),
        (None, None) => None,
    };
    let mut reported = (0u64, 0u64);
    let report = |reported: &mut (u64, u64), total: (u64, u64)| {
        let d_in = total.0.saturating_sub(reported.0);
        let d_out = total.1.saturating_sub(reported.1);
        if d_in > 0 || d_out > 0 {
            slot.update(|c| {
                c.bin += d_in;
                c.bout += d_out;
            });
            route.frontend.update(|c| {
                c.bin += d_in;
                c.bout += d_out;
            });
            *reported = (reported.0.max(total.0), reported.1.max(total.1));
        }
    };
    let end = {
        let pumping = pump(client, &mut server);
        tokio::pin!(pumping);
        let mut tick = STATS_TICK;
        loop {
            tokio::select! {
                r = &mut pumping => break match r {
                    Ok(t) => {
                        report(&mut reported, (t.client_to_server, t.server_to_client));
                        End::Done
                    }
                    Err(e) => End::TransferError(e),
                },
                _ = &mut cut => break End::Cut,
                _ = &mut stopped => break End::Shutdown,
                _ = tokio::time::sleep(tick) => {
                    let Ok(a) = tcp_activity(&fd) else {
                        tick = STATS_TICK;
                        continue;
                    };
                    report(&mut reported, (a.bytes_acked, a.bytes_received));
                    tick = STATS_TICK;
                    if let Some((limit, client_side)) = idle_limit {
                        let silent = a.idle();
                        if silent >= limit {
                            break End::Idle { client_side, silent };
                        }
                        tick = tick.min(limit - silent);
                    }
                }
            }
        }
    };
    if !matches!(end, End::Done)
        && let Ok(a) = tcp_activity(&fd)
    {
        report(&mut reported, (a.bytes_acked, a.bytes_received));
    }
    *moved = reported;
    // `server` closes, then `slot` frees the server slot (reverse declaration order).
    (end, Some(name))
}

/// Connect to the slot's server, retrying `retries` times after `min(timeout connect, 1s)`.
async fn connect_with_retries(slot: &Slot, route: &Route) -> io::Result<TcpStream> {
    let Some(spec) = slot.spec() else {
        return Err(io::Error::other("backend gone"));
    };
    let connect_timeout = route.timeouts.connect;
    let pause = connect_timeout
        .unwrap_or(Duration::from_secs(1))
        .min(Duration::from_secs(1));
    let mut attempt = 0;
    loop {
        slot.update(|c| c.connect += 1);
        let started = Instant::now();
        let r = connect_once(slot.ip, &spec.host, spec.port, connect_timeout).await;
        match r {
            Ok(s) => {
                let ms = started.elapsed().as_millis() as u64;
                slot.update(|c| c.ctime.add(ms));
                return Ok(s);
            }
            Err(e) if attempt < route.retries => {
                debug!(
                    "connect to {}:{} failed ({e}); retry {} of {} in {pause:?}",
                    spec.host,
                    spec.port,
                    attempt + 1,
                    route.retries
                );
                attempt += 1;
                slot.update(|c| c.wretr += 1);
                tokio::time::sleep(pause).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn connect_once(
    ip: Option<IpAddr>,
    host: &str,
    port: u16,
    limit: Option<Duration>,
) -> io::Result<TcpStream> {
    let fut = async {
        let addr = match ip {
            Some(ip) => SocketAddr::new(ip, port),
            None => tokio::net::lookup_host((host, port))
                .await?
                .next()
                .ok_or_else(|| io::Error::other(format!("{host} resolved to no address")))?,
        };
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(s)
    };
    match limit {
        Some(t) => tokio::time::timeout(t, fut).await.unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect timed out after {t:?}"),
            ))
        }),
        None => fut.await,
    }
}

/// The server socket's descriptor, read (never closed) while the pump owns the socket.
struct Fd(RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}
