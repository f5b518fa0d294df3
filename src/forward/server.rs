//! The forwarder's accept loop, its connections, and the drain on shutdown.
//!
//! One task per client: connect to the target, then [`pump_with`] until both directions are
//! done. A semaphore holds the connection limit; a permit is taken *before* `accept`, so at
//! the limit the forwarder simply stops accepting and new clients wait in the kernel's
//! listen backlog (as with socat's `max-children` and HAProxy's `maxconn`) instead of being
//! refused: a burst of Postgres clients then gets served a moment later rather than failing.
//! A client whose target connect fails is closed at once; [`OutageLog`] decides what of that
//! is worth a log line.
//!
//! On SIGTERM/SIGINT the listener is closed first (a UNIX socket file is removed with it),
//! open connections get the grace period to finish, and whatever is still open then is cut.
//! A second signal during the grace period cuts at once.

use std::future::Future;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::report::{OutageLog, Report, Throttle};
use crate::net::pump::{PumpOptions, pump_with};
use crate::net::runtime::Workers;
use crate::net::{Endpoint, Listener, StdStream, Stream, handoff};
use crate::signals::Shutdown;

/// How the forwarder runs, after the command line has been checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where each client is sent.
    pub target: Endpoint,
    /// How long one connect to the target may take before the client is closed.
    pub connect_timeout: Duration,
    /// Concurrent connections at most; beyond it new clients wait in the listen backlog.
    pub max_connections: usize,
    /// How long open connections may go on after SIGTERM/SIGINT.
    pub grace: Duration,
    /// Pump settings (splice on or off, half-close timeout).
    pub pump: PumpOptions,
    /// The hand-off socket of a manning proxy behind a UNIX target (`<target>.handoff`):
    /// clients are passed over it instead of copied (see `net::handoff`). `None`: always copy.
    pub handoff: Option<std::path::PathBuf>,
}

/// After a failed hand-off, copy bytes for this long before trying again (the target may
/// be HAProxy, or a proxy restarting).
const HANDOFF_RETRY: Duration = Duration::from_secs(5);

/// How long the cut connections get to wind down after the grace period (they only have
/// to notice the cut and close their sockets).
const CUT_WAIT: Duration = Duration::from_secs(5);

/// Pause after an accept error that is not about one client (out of descriptors or
/// memory), so the loop does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// State shared by the accept loop and every connection task.
struct Shared {
    cfg: Config,
    /// The target's availability as seen by connects, and what was logged about it.
    outage: Mutex<OutageLog>,
    /// Connections cut at the end of the grace period.
    cut: AtomicU64,
}

/// The forwarder's end of the hand-off (see `net::handoff`), owned by the accept loop.
struct HandOff {
    sender: handoff::Sender,
    /// `None` untried, `Some(Ok)` working, `Some(Err(t))` failed at `t` (copy until
    /// `t + HANDOFF_RETRY`).
    state: Option<Result<(), Instant>>,
}

impl HandOff {
    /// Pass `client` to the local proxy if its hand-off socket works. `true`: the proxy
    /// serves it now and our copy can be closed. Never waits.
    fn pass(&mut self, client: &StdStream) -> bool {
        if let Some(Err(failed)) = self.state
            && failed.elapsed() < HANDOFF_RETRY
        {
            return false;
        }
        let result = self.sender.send(client.as_fd());
        let path = || self.sender.path().display();
        match result {
            Ok(()) => {
                if self.state != Some(Ok(())) {
                    info!(
                        "handing connections over to the manning proxy at {} (the proxy \
                         serves them directly; no bytes are copied here)",
                        path()
                    );
                }
                self.state = Some(Ok(()));
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // The proxy is behind on taking clients: copy this one, keep handing off.
                debug!(
                    "hand-off queue to {} full; copying this client's bytes",
                    path()
                );
                false
            }
            Err(e) => {
                match self.state {
                    Some(Ok(())) => info!(
                        "hand-off to {} failed ({e}); copying bytes to the target instead",
                        path()
                    ),
                    None => debug!("no hand-off at {} ({e}); copying bytes", path()),
                    Some(Err(_)) => {}
                }
                self.state = Some(Err(Instant::now()));
                false
            }
        }
    }
}

impl Shared {
    fn log(&self, report: Option<Report>) {
        match report {
            Some(r) if r.is_fault() => {
                warn!(target_addr = %self.cfg.target, "target {} {r}", self.cfg.target)
            }
            Some(r) => info!(target_addr = %self.cfg.target, "target {} {r}", self.cfg.target),
            None => {}
        }
    }

    fn outage<T>(&self, f: impl FnOnce(&mut OutageLog) -> T) -> T {
        // A poisoned lock only means a panic elsewhere mid-update; the log state is still
        // usable for deciding what to print.
        let mut guard = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

/// Accept clients on `listener` and forward each to the target until `shutdown` resolves,
/// then drain. Returns when every connection is finished or cut.
pub async fn serve(
    listener: Listener,
    cfg: Config,
    workers: Workers,
    shutdown: impl Future<Output = Shutdown>,
) -> anyhow::Result<()> {
    let max = cfg.max_connections.clamp(1, u32::MAX as usize);
    let limit = Arc::new(Semaphore::new(max));
    let (cut_tx, cut_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        cfg,
        outage: Mutex::new(OutageLog::default()),
        cut: AtomicU64::new(0),
    });
    let local = listener
        .local_endpoint()
        .map(|e| e.to_string())
        .unwrap_or_else(|_| "?".into());
    info!(
        "listening on {local}, forwarding to {} (at most {max} connections, {})",
        shared.cfg.target,
        if shared.cfg.pump.splice {
            "splice"
        } else {
            "copy"
        },
    );

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut limit_note = Throttle::new(Duration::from_secs(60));
    let mut accept_note = Throttle::new(Duration::from_secs(10));
    let mut shutdown = std::pin::pin!(shutdown);
    let mut hand_off = shared.cfg.handoff.clone().map(|path| HandOff {
        sender: handoff::Sender::new(path),
        state: None,
    });

    let signal = loop {
        if limit.available_permits() == 0 {
            if let Some(more) = limit_note.allow(Instant::now()) {
                warn!(
                    "connection limit of {max} reached: new clients wait in the listen backlog \
                     until a connection closes{}",
                    held_back(more, "time")
                );
            }
        }
        let accept = async {
            let permit = limit.clone().acquire_owned().await;
            (permit, listener.accept_detached().await)
        };
        tokio::select! {
            biased;
            sig = &mut shutdown => break sig,
            _ = tick.tick() => {
                let report = shared.outage(|o| o.tick(Instant::now()));
                shared.log(report);
            }
            (permit, accepted) = accept => {
                let permit = permit.context("connection limit closed")?;
                match accepted {
                    Ok(client) => {
                        if let Some(h) = &mut hand_off
                            && h.pass(&client)
                        {
                            continue; // the proxy has it; our copy and the permit go
                        }
                        let (shared, cut) = (shared.clone(), cut_rx.clone());
                        workers.spawn_session(client, move |client| {
                            handle(shared, client, cut, permit)
                        });
                    }
                    Err(e) if per_client_accept_error(&e) => {
                        debug!(error = %e, "accept: client gone before it was accepted");
                    }
                    Err(e) => {
                        if let Some(more) = accept_note.allow(Instant::now()) {
                            warn!(
                                "accept on {local} failed: {e}; pausing {ACCEPT_BACKOFF:?}{}",
                                held_back(more, "failure")
                            );
                        }
                        drop(permit);
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                }
            }
        }
    };

    // Stop accepting: closing the listener also removes a UNIX socket file.
    drop(listener);
    let open = max - limit.available_permits();
    let started = Instant::now();
    let grace = shared.cfg.grace;
    if open == 0 {
        info!("{signal}: stopped accepting on {local}; no connections open");
    } else {
        info!(
            "{signal}: stopped accepting on {local}; draining {open} open connections \
             (grace {grace:?}, a second signal cuts them at once)"
        );
        let again = crate::signals::shutdown_signal().context("installing signal handlers")?;
        let drained = tokio::select! {
            r = tokio::time::timeout(grace, limit.acquire_many(max as u32)) => matches!(r, Ok(Ok(_))),
            sig = again => {
                info!("{sig} during the grace period: cutting open connections now");
                false
            }
        };
        if drained {
            info!(
                "drained: all {open} connections finished after {:.1?}",
                started.elapsed()
            );
        } else {
            let _ = cut_tx.send(true);
            let all_closed = tokio::time::timeout(CUT_WAIT, limit.acquire_many(max as u32))
                .await
                .is_ok();
            let cut = shared.cut.load(Ordering::Relaxed);
            warn!(
                "cut {cut} connections still open after {:.1?} ({} finished during the grace period){}",
                started.elapsed(),
                (open as u64).saturating_sub(cut),
                if all_closed {
                    ""
                } else {
                    "; some did not close in time"
                }
            );
        }
    }
    info!("stopped");
    Ok(())
}

/// `; N more times since the last message` when some lines were held back.
fn held_back(n: u64, what: &str) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} more {what}s since the last message)")
    }
}

/// Accept errors that concern one client only (it gave up before we took it): skip it.
fn per_client_accept_error(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNABORTED | libc::EPROTO | libc::EPERM | libc::EINTR | libc::ECONNRESET)
    )
}

/// One client: connect to the target, pump until done, unless cut by the drain.
async fn handle(
    shared: Arc<Shared>,
    mut client: Stream,
    mut cut: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let peer = if tracing::enabled!(tracing::Level::DEBUG) {
        client.peer()
    } else {
        String::new()
    };
    let started = Instant::now();
    let work = async {
        let mut server = match Stream::connect(&shared.cfg.target, shared.cfg.connect_timeout).await
        {
            Ok(s) => s,
            Err(e) => {
                let report = shared.outage(|o| o.failure(Instant::now(), &e.to_string()));
                shared.log(report);
                debug!(peer, error = %e, "client closed: target did not answer");
                return;
            }
        };
        let report = shared.outage(|o| o.success(Instant::now()));
        shared.log(report);
        debug!(peer, "connected to the target");
        match pump_with(&mut client, &mut server, &shared.cfg.pump).await {
            Ok(t) => debug!(
                peer,
                "connection closed after {:.1?}: {} bytes to the target, {} bytes back",
                started.elapsed(),
                t.client_to_server,
                t.server_to_client
            ),
            Err(e) => debug!(
                peer,
                "connection ended after {:.1?} by an error on the {e} ({} bytes to the target, {} back)",
                started.elapsed(),
                e.transferred.client_to_server,
                e.transferred.server_to_client
            ),
        }
    };
    tokio::select! {
        () = work => {}
        _ = cut.wait_for(|c| *c) => {
            shared.cut.fetch_add(1, Ordering::Relaxed);
            debug!(peer, "connection cut at the end of the grace period");
        }
    }
}
