//! A backend: its servers' UP/DOWN state, routing, connection limits and the queue.
//!
//! - Routing: a new connection goes to an UP server with a free slot, round robin.
//! - Limits: a server with `maxconn N` takes at most N sessions. When every UP server is
//!   full, the connection waits in the backend's queue (first come, first served) for up to
//!   `timeout queue`; a slot freed by an ending session goes to the head of the queue. With no
//!   UP server at all, a connection is refused at once, and queued connections are dropped
//!   when the last server goes DOWN (HAProxy's `pendconn_redistribute`).
//! - State: each server's state is published on a `tokio::sync::watch` channel. The health
//!   checker feeds check results in through [`Backend::record_check`] (rise/fall decides);
//!   any other source of truth (e.g. the leader key in etcd) can call
//!   [`Backend::set_server_up`] directly. Either way the transition is one function: it
//!   logs what and why, drops or serves the queue, and bumps the server's `down_count`,
//!   which sessions opened under `on-marked-down shutdown-sessions` watch to cut themselves.
//!
//! All mutable state sits behind one short-held mutex per backend (never held across an
//! await), so a routing decision and a transition can never interleave: a session is either
//! granted before a server goes DOWN (and then sees the cut) or not granted at all.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::check::CheckResult;
use super::counters::Counters;
use super::haproxy_cfg::{Listen, ServerSpec};
use super::health::Health;

/// What subscribers of a server see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerState {
    /// Routable.
    pub up: bool,
    /// How many times the server has been marked DOWN. A session remembers the value when
    /// it was granted; a change means "your server went DOWN since".
    pub down_count: u64,
}

/// A server: its configuration and its published state.
#[derive(Debug)]
pub struct Server {
    pub spec: ServerSpec,
    state_tx: watch::Sender<ServerState>,
}

/// Why a connection got no server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No server is UP (HAProxy logs `<NOSRV>`).
    #[error("no server is UP")]
    NoServer,
    /// Every UP server stayed full for `timeout queue` (HAProxy's `sQ`).
    #[error("queued for {0:?} without a free server slot (timeout queue)")]
    QueueTimeout(Duration),
}

/// A server slot handed to a queued connection.
#[derive(Debug, Clone, Copy)]
struct Grant {
    server: usize,
    down_count: u64,
    ip: Option<IpAddr>,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    since: Instant,
    tx: oneshot::Sender<Result<Grant, Refused>>,
}

/// Per-server mutable state.
#[derive(Debug)]
struct ServerRuntime {
    up: bool,
    /// `maxconn`, 0 = unlimited (copied here so routing needs only the locked state).
    maxconn: u64,
    down_count: u64,
    counters: Counters,
    /// Meaningful only when the server is checked.
    health: Health,
    last_check: CheckResult,
    /// Failed checks while not fully DOWN (`chkfail`).
    chkfail: u64,
    /// UP → DOWN transitions (`chkdown`).
    chkdown: u64,
    last_change: Instant,
    /// DOWN time before the current DOWN period.
    downtime: Duration,
    down_since: Option<Instant>,
    /// The address from the last name resolution (or the literal address).
    ip: Option<IpAddr>,
}

#[derive(Debug)]
struct State {
    /// Next server to try first (round robin).
    rr: usize,
    queue: VecDeque<Waiter>,
    next_waiter: u64,
    servers: Vec<ServerRuntime>,
    counters: Counters,
    up: bool,
    last_change: Instant,
    downtime: Duration,
    down_since: Option<Instant>,
    chkdown: u64,
}

/// A backend (the server half of a `listen` section).
#[derive(Debug)]
pub struct Backend {
    pub name: String,
    /// HAProxy's proxy id.
    pub id: u32,
    servers: Vec<Server>,
    /// `timeout queue` (or `timeout connect`); `None` waits as long as it takes.
    queue_timeout: Option<Duration>,
    state: Mutex<State>,
    /// To hand out `Slot`s that release themselves.
    me: Weak<Backend>,
}

/// A copy of one server's state and counters, for the status page.
#[derive(Debug, Clone)]
pub struct ServerStats {
    pub spec: ServerSpec,
    pub up: bool,
    pub counters: Counters,
    pub health: Health,
    pub last_check: CheckResult,
    pub chkfail: u64,
    pub chkdown: u64,
    pub since_change: Duration,
    /// Total DOWN time, the current DOWN period included.
    pub downtime: Duration,
    pub ip: Option<IpAddr>,
}

/// A copy of a backend's state, counters and servers, for the status page.
#[derive(Debug, Clone)]
pub struct BackendStats {
    pub name: String,
    pub id: u32,
    pub up: bool,
    pub counters: Counters,
    pub since_change: Duration,
    pub downtime: Duration,
    pub chkdown: u64,
    /// Servers UP now.
    pub active: u32,
    pub servers: Vec<ServerStats>,
}

impl Backend {
    /// Build the backend of `listen`. Checked servers start as their `init-state` says
    /// (manning's default: DOWN until the first check passes); unchecked servers are UP.
    pub fn new(listen: &Listen) -> Arc<Backend> {
        let now = Instant::now();
        let mut servers = Vec::new();
        let mut runtimes = Vec::new();
        for spec in &listen.servers {
            let health = Health::new(spec.rise, spec.fall, spec.init_state);
            let up = if spec.check { health.is_up() } else { true };
            runtimes.push(ServerRuntime {
                up,
                maxconn: u64::from(spec.maxconn),
                down_count: 0,
                counters: Counters::default(),
                health,
                last_check: CheckResult::initial(),
                chkfail: 0,
                chkdown: 0,
                last_change: now,
                downtime: Duration::ZERO,
                down_since: (!up).then_some(now),
                ip: spec.host.parse().ok(),
            });
            let (state_tx, _) = watch::channel(ServerState { up, down_count: 0 });
            servers.push(Server {
                spec: spec.clone(),
                state_tx,
            });
        }
        let up = runtimes.iter().any(|s| s.up);
        Arc::new_cyclic(|me| Backend {
            name: listen.name.clone(),
            id: listen.id,
            servers,
            queue_timeout: listen.timeouts.queue_or_connect(),
            state: Mutex::new(State {
                rr: 0,
                queue: VecDeque::new(),
                next_waiter: 0,
                servers: runtimes,
                counters: Counters::default(),
                up,
                last_change: now,
                downtime: Duration::ZERO,
                down_since: (!up).then_some(now),
                chkdown: 0,
            }),
            me: me.clone(),
        })
    }

    /// The servers, in configuration order (indexes are used by every other call).
    pub fn servers(&self) -> &[Server] {
        &self.servers
    }

    /// The index of the server called `name`.
    pub fn server_index(&self, name: &str) -> Option<usize> {
        self.servers.iter().position(|s| s.spec.name == name)
    }

    /// Follow server `i`'s state.
    pub fn subscribe(&self, i: usize) -> watch::Receiver<ServerState> {
        self.servers[i].state_tx.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the counters unusable; keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mark server `i` UP or DOWN because of `why` (e.g. a check result or "leader key
    /// moved to member-2"). Returns false when it already was in that state.
    pub fn set_server_up(&self, i: usize, up: bool, why: &str) -> bool {
        let now = Instant::now();
        let mut st = self.lock();
        st.servers[i].health.force(up);
        if st.servers[i].up == up {
            return false;
        }
        let log = self.transition(&mut st, i, up, why, now);
        drop(st);
        log.emit();
        true
    }

    /// Feed one check result (and the address the name resolved to) into server `i`'s
    /// rise/fall counter; a crossing of the threshold marks it UP or DOWN. Returns the
    /// wait before the next check (`inter`, `fastinter` or `downinter`).
    pub fn record_check(&self, i: usize, result: CheckResult, ip: Option<IpAddr>) -> Duration {
        let now = Instant::now();
        let spec = &self.servers[i].spec;
        let mut st = self.lock();
        let s = &mut st.servers[i];
        if ip.is_some() {
            s.ip = ip;
        }
        let step = s.health.observe(result.status.passed());
        if step.counted_failure {
            s.chkfail += 1;
        }
        let summary = result.summary();
        s.last_check = result;
        let was_up = s.up;
        let next = s
            .health
            .next_interval(spec.inter, spec.fastinter, spec.downinter);
        let status = s.health.status_text(was_up);
        let log = match step.crossed {
            Some(up) if up != was_up => Some(self.transition(&mut st, i, up, &summary, now)),
            _ => None,
        };
        drop(st);
        match log {
            Some(log) => log.emit(),
            None if step.moved => {
                let verb = if step.counted_failure {
                    "failed"
                } else {
                    "passed"
                };
                info!(
                    "server {}/{} health check {verb}: {summary}, now {status}",
                    self.name, spec.name
                );
            }
            None => debug!(
                "server {}/{} check: {summary}, {status}",
                self.name, spec.name
            ),
        }
        next
    }

    /// Change server `i`'s state (it differs) under the lock; returns the log to emit.
    fn transition(
        &self,
        st: &mut State,
        i: usize,
        up: bool,
        why: &str,
        now: Instant,
    ) -> TransitionLog {
        let spec = &self.servers[i].spec;
        let s = &mut st.servers[i];
        s.up = up;
        s.last_change = now;
        let mut cut = 0;
        if up {
            if let Some(d) = s.down_since.take() {
                s.downtime += now.saturating_duration_since(d);
            }
        } else {
            s.down_since = Some(now);
            s.chkdown += 1;
            s.down_count += 1;
            if spec.shutdown_sessions_on_down {
                cut = s.counters.scur;
            }
        }
        let published = ServerState {
            up,
            down_count: s.down_count,
        };
        self.servers[i].state_tx.send_replace(published);
        let active = st.servers.iter().filter(|s| s.up).count();
        let mut dropped = 0;
        let mut backend_change = None;
        if up {
            if !st.up {
                st.up = true;
                st.last_change = now;
                if let Some(d) = st.down_since.take() {
                    st.downtime += now.saturating_duration_since(d);
                }
                backend_change = Some(true);
            }
            st.dispatch(now);
        } else if active == 0 {
            if st.up {
                st.up = false;
                st.last_change = now;
                st.down_since = Some(now);
                st.chkdown += 1;
                backend_change = Some(false);
            }
            dropped = st.fail_queue();
        }
        TransitionLog {
            backend: self.name.clone(),
            server: spec.name.clone(),
            up,
            why: why.to_string(),
            active,
            cut,
            dropped,
            queued: st.queue.len(),
            backend_change,
        }
    }

    /// Get a server slot for a new connection: at once when an UP server has room,
    /// refused at once when no server is UP, else after waiting in the queue.
    pub async fn acquire(&self) -> Result<Slot, Refused> {
        let now = Instant::now();
        let (id, rx) = {
            let mut st = self.lock();
            if let Some(i) = st.pick() {
                let g = st.assign(i, now);
                return Ok(self.slot(g, now));
            }
            if !st.servers.iter().any(|s| s.up) {
                st.counters.econ += 1;
                return Err(Refused::NoServer);
            }
            let (tx, rx) = oneshot::channel();
            let id = st.next_waiter;
            st.next_waiter += 1;
            st.queue.push_back(Waiter { id, since: now, tx });
            st.counters.queued();
            (id, rx)
        };
        let mut wait = QueueWait {
            backend: self,
            id,
            rx: Some(rx),
        };
        let result = match self.queue_timeout {
            Some(t) => tokio::time::timeout(t, wait.recv()).await,
            None => Ok(wait.recv().await),
        };
        let waited = now.elapsed();
        match result {
            Ok(Ok(g)) => {
                wait.rx = None;
                Ok(self.slot(g, now))
            }
            Ok(Err(r)) => {
                wait.rx = None;
                Err(r)
            }
            Err(_) => {
                // Timed out; but a grant may have been sent just now.
                let mut st = self.lock();
                if st.remove_waiter(id) {
                    st.counters.dequeued(Some(waited));
                    st.counters.econ += 1;
                    wait.rx = None;
                    return Err(Refused::QueueTimeout(waited));
                }
                let granted = wait.rx.take().and_then(|mut rx| rx.try_recv().ok());
                drop(st);
                match granted {
                    Some(Ok(g)) => Ok(self.slot(g, now)),
                    Some(Err(r)) => Err(r),
                    None => Err(Refused::QueueTimeout(waited)),
                }
            }
        }
    }

    fn slot(&self, g: Grant, since: Instant) -> Slot {
        Slot {
            backend: self.me.upgrade(),
            server: g.server,
            down_count: g.down_count,
            ip: g.ip,
            started: since,
        }
    }

    fn release(&self, i: usize, lasted: Duration) {
        let now = Instant::now();
        let mut st = self.lock();
        st.servers[i].counters.session_ended(lasted);
        st.counters.session_ended(lasted);
        st.dispatch(now);
    }

    /// Update server `i`'s (and the backend's) counters.
    pub fn update(&self, i: usize, f: impl Fn(&mut Counters)) {
        let mut st = self.lock();
        f(&mut st.servers[i].counters);
        f(&mut st.counters);
    }

    /// Copy the state and counters for the status page.
    pub fn stats(&self) -> BackendStats {
        let now = Instant::now();
        let st = self.lock();
        let servers: Vec<ServerStats> = st
            .servers
            .iter()
            .zip(&self.servers)
            .map(|(s, srv)| ServerStats {
                spec: srv.spec.clone(),
                up: s.up,
                counters: s.counters,
                health: s.health,
                last_check: s.last_check.clone(),
                chkfail: s.chkfail,
                chkdown: s.chkdown,
                since_change: now.saturating_duration_since(s.last_change),
                downtime: s.downtime
                    + s.down_since
                        .map(|d| now.saturating_duration_since(d))
                        .unwrap_or_default(),
                ip: s.ip,
            })
            .collect();
        BackendStats {
            name: self.name.clone(),
            id: self.id,
            up: st.up,
            counters: st.counters,
            since_change: now.saturating_duration_since(st.last_change),
            downtime: st.downtime
                + st.down_since
                    .map(|d| now.saturating_duration_since(d))
                    .unwrap_or_default(),
            chkdown: st.chkdown,
            active: servers.iter().filter(|s| s.up).count() as u32,
            servers,
        }
    }
}

impl State {
    /// The next UP server with a free slot, round robin.
    fn pick(&mut self) -> Option<usize> {
        let n = self.servers.len();
        for k in 0..n {
            let i = (self.rr + k) % n;
            let s = &self.servers[i];
            if s.up && (s.maxconn == 0 || s.counters.scur < s.maxconn) {
                self.rr = (i + 1) % n;
                return Some(i);
            }
        }
        None
    }

    fn assign(&mut self, i: usize, now: Instant) -> Grant {
        let s = &mut self.servers[i];
        s.counters.session_started(now);
        s.counters.lbtot += 1;
        self.counters.session_started(now);
        self.counters.lbtot += 1;
        Grant {
            server: i,
            down_count: s.down_count,
            ip: s.ip,
        }
    }

    /// Take back a grant nobody received.
    fn unassign(&mut self, i: usize) {
        for c in [&mut self.servers[i].counters, &mut self.counters] {
            c.scur = c.scur.saturating_sub(1);
            c.stot = c.stot.saturating_sub(1);
            c.lbtot = c.lbtot.saturating_sub(1);
        }
    }

    /// Hand free slots to queued connections, oldest first.
    fn dispatch(&mut self, now: Instant) {
        while !self.queue.is_empty() {
            let Some(i) = self.pick() else {
                return;
            };
            let Some(w) = self.queue.pop_front() else {
                return;
            };
            self.counters
                .dequeued(Some(now.saturating_duration_since(w.since)));
            let g = self.assign(i, now);
            if w.tx.send(Ok(g)).is_err() {
                self.unassign(i);
            }
        }
    }

    /// Refuse every queued connection (no server left). Returns how many.
    fn fail_queue(&mut self) -> usize {
        let n = self.queue.len();
        while let Some(w) = self.queue.pop_front() {
            self.counters.dequeued(None);
            self.counters.econ += 1;
            let _ = w.tx.send(Err(Refused::NoServer));
        }
        n
    }

    fn remove_waiter(&mut self, id: u64) -> bool {
        match self.queue.iter().position(|w| w.id == id) {
            Some(pos) => {
                self.queue.remove(pos);
                true
            }
            None => false,
        }
    }
}

/// A connection waiting in the queue. Dropped early (client gone, shutdown), it leaves
/// the queue, or gives back a slot that was granted but never received.
struct QueueWait<'a> {
    backend: &'a Backend,
    id: u64,
    rx: Option<oneshot::Receiver<Result<Grant, Refused>>>,
}

impl QueueWait<'_> {
    async fn recv(&mut self) -> Result<Grant, Refused> {
        match self.rx.as_mut() {
            Some(rx) => rx.await.unwrap_or(Err(Refused::NoServer)),
            None => Err(Refused::NoServer),
        }
    }
}

impl Drop for QueueWait<'_> {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else {
            return;
        };
        let now = Instant::now();
        let mut st = self.backend.lock();
        if st.remove_waiter(self.id) {
            st.counters.dequeued(None);
            return;
        }
        if let Ok(Ok(g)) = rx.try_recv() {
            st.unassign(g.server);
            st.dispatch(now);
        }
    }
}

/// A server slot held by one session; dropping it frees the slot (and serves the queue).
#[derive(Debug)]
pub struct Slot {
    /// `None` only if the backend is being dropped.
    backend: Option<Arc<Backend>>,
    /// Index of the server.
    pub server: usize,
    down_count: u64,
    /// The server's address as last resolved.
    pub ip: Option<IpAddr>,
    started: Instant,
}

impl Slot {
    /// The server's configuration.
    pub fn spec(&self) -> Option<&ServerSpec> {
        self.backend.as_ref().map(|b| &b.servers[self.server].spec)
    }

    /// Resolves when the session must be cut: its server was marked DOWN after the slot was
    /// granted and has `on-marked-down shutdown-sessions`. Never resolves otherwise.
    pub async fn cut(&self) {
        let Some(b) = &self.backend else {
            return std::future::pending().await;
        };
        let srv = &b.servers[self.server];
        if !srv.spec.shutdown_sessions_on_down {
            return std::future::pending().await;
        }
        let mut rx = srv.state_tx.subscribe();
        let mine = self.down_count;
        if rx.wait_for(|s| s.down_count != mine).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Update this server's (and its backend's) counters.
    pub fn update(&self, f: impl Fn(&mut Counters)) {
        if let Some(b) = &self.backend {
            b.update(self.server, f);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(b) = self.backend.take() {
            b.release(self.server, self.started.elapsed());
        }
    }
}

/// A transition, logged after the lock is released.
struct TransitionLog {
    backend: String,
    server: String,
    up: bool,
    why: String,
    active: usize,
    cut: u64,
    dropped: usize,
    queued: usize,
    backend_change: Option<bool>,
}

impl TransitionLog {
    fn emit(&self) {
        let plural = |n: usize, one: &str, many: &str| {
            if n == 1 {
                format!("{n} {one}")
            } else {
                format!("{n} {many}")
            }
        };
        if self.up {
            info!(
                "server {}/{} is UP: {}, {} online, {} in queue",
                self.backend,
                self.server,
                self.why,
                plural(self.active, "active server", "active servers"),
                self.queued
            );
        } else {
            let mut line = format!(
                "server {}/{} is DOWN: {}, {} left, {} cut",
                self.backend,
                self.server,
                self.why,
                plural(self.active, "active server", "active servers"),
                plural(self.cut as usize, "session", "sessions")
            );
            if self.dropped > 0 {
                line.push_str(&format!(
                    ", {} dropped",
                    plural(self.dropped, "queued connection", "queued connections")
                ));
            }
            warn!("{line}");
        }
        match self.backend_change {
            Some(false) => error!(
                "backend {} has no server available: new connections are refused",
                self.backend
            ),
            Some(true) => info!("backend {} has a server available", self.backend),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::haproxy_cfg::parse;

    fn backend(servers: &str, extra: &str) -> Arc<Backend> {
        let text = format!(
            "defaults\n timeout connect 4s\n{extra}\nlisten px\n bind :1\n option httpchk\n default-server inter 2500ms fall 4 rise 2 on-marked-down shutdown-sessions\n{servers}"
        );
        let cfg = parse("t", &text, &|_| None).unwrap();
        Backend::new(&cfg.listens[0])
    }

    fn result(pass: bool) -> CheckResult {
        CheckResult::http(pass, Duration::from_millis(1))
    }

    const TWO: &str =
        " server a 127.0.0.1:1 maxconn 2 check\n server b 127.0.0.1:2 maxconn 2 check\n";

    #[tokio::test]
    async fn servers_start_down_and_nothing_is_routed() {
        let b = backend(TWO, "");
        assert!(!b.stats().up);
        assert_eq!(b.acquire().await.unwrap_err(), Refused::NoServer);
        // One passed check (init-state down) brings a server UP.
        b.record_check(0, result(true), None);
        let s = b.acquire().await.unwrap();
        assert_eq!(s.server, 0);
        assert_eq!(b.stats().servers[0].counters.scur, 1);
        drop(s);
        assert_eq!(b.stats().servers[0].counters.scur, 0);
    }

    #[tokio::test]
    async fn round_robin_among_up_servers_only() {
        let b = backend(
            " server a 127.0.0.1:1 check\n server b 127.0.0.1:2 check\n server c 127.0.0.1:3 check\n",
            "",
        );
        b.record_check(0, result(true), None);
        b.record_check(2, result(true), None);
        let mut picks = Vec::new();
        let mut held = Vec::new();
        for _ in 0..4 {
            let s = b.acquire().await.unwrap();
            picks.push(s.server);
            held.push(s);
        }
        assert_eq!(picks, [0, 2, 0, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn queue_waits_for_a_slot_then_times_out() {
        let b = backend(
            " server a 127.0.0.1:1 maxconn 1 check\n",
            " timeout queue 500ms",
        );
        b.record_check(0, result(true), None);
        let first = b.acquire().await.unwrap();
        // Second waits; freeing the first slot within the queue time serves it.
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.acquire().await.map(|s| s.server) });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(b.stats().counters.qcur, 1);
        drop(first);
        assert_eq!(waiter.await.unwrap(), Ok(0));
        // Now a slot is held for good: the next waits 500 ms and is refused.
        let _held = b.acquire().await.unwrap();
        let t0 = Instant::now();
        let r = b.acquire().await.unwrap_err();
        assert_eq!(r, Refused::QueueTimeout(Duration::from_millis(500)));
        assert_eq!(t0.elapsed(), Duration::from_millis(500));
        let st = b.stats();
        assert_eq!((st.counters.qcur, st.counters.qmax), (0, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn queue_timeout_defaults_to_timeout_connect() {
        let b = backend(" server a 127.0.0.1:1 maxconn 1 check\n", "");
        b.record_check(0, result(true), None);
        let _held = b.acquire().await.unwrap();
        let t0 = Instant::now();
        assert!(matches!(b.acquire().await, Err(Refused::QueueTimeout(_))));
        assert_eq!(t0.elapsed(), Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn last_server_down_drops_the_queue_and_cuts_sessions() {
        let b = backend(" server a 127.0.0.1:1 maxconn 1 check\n", "");
        b.record_check(0, result(true), None);
        let held = b.acquire().await.unwrap();
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.acquire().await.map(|s| s.server) });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let cut = tokio::spawn(async move {
            held.cut().await;
        });
        for _ in 0..3 {
            b.record_check(0, result(false), None);
        }
        assert!(b.stats().up, "fall 4: three failures keep it UP");
        assert!(!cut.is_finished());
        b.record_check(0, result(false), None);
        assert_eq!(waiter.await.unwrap(), Err(Refused::NoServer));
        tokio::time::timeout(Duration::from_secs(1), cut)
            .await
            .expect("session cut at once")
            .unwrap();
        let st = b.stats();
        assert!(!st.up);
        assert_eq!((st.servers[0].chkfail, st.servers[0].chkdown), (4, 1));
        assert_eq!(st.servers[0].counters.scur, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn coming_up_serves_the_queue() {
        let b = backend(TWO, "");
        b.record_check(0, result(true), None);
        let _s1 = b.acquire().await.unwrap();
        let _s2 = b.acquire().await.unwrap();
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.acquire().await.map(|s| s.server) });
        tokio::time::sleep(Duration::from_millis(10)).await;
        b.record_check(1, result(true), None);
        assert_eq!(waiter.await.unwrap(), Ok(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_waiter_leaves_the_queue() {
        let b = backend(" server a 127.0.0.1:1 maxconn 1 check\n", "");
        b.record_check(0, result(true), None);
        let held = b.acquire().await.unwrap();
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.acquire().await.map(|s| s.server) });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(b.stats().counters.qcur, 1);
        waiter.abort();
        let _ = waiter.await;
        assert_eq!(b.stats().counters.qcur, 0);
        drop(held);
        let st = b.stats();
        assert_eq!(
            st.servers[0].counters.scur, 0,
            "no slot leaked to the dead waiter"
        );
    }

    #[tokio::test]
    async fn second_source_drives_state_and_subscribers_see_it() {
        let b = backend(TWO, "");
        let mut rx = b.subscribe(1);
        assert!(b.set_server_up(1, true, "leader key says so"));
        assert!(!b.set_server_up(1, true, "again"));
        assert!(rx.borrow_and_update().up);
        let s = b.acquire().await.unwrap();
        assert_eq!(s.server, 1);
        assert!(b.set_server_up(1, false, "leader key moved"));
        assert_eq!(b.lock().servers[1].health.status_text(false), "DOWN");
        tokio::time::timeout(Duration::from_secs(1), s.cut())
            .await
            .expect("cut");
        assert_eq!(
            *rx.borrow(),
            ServerState {
                up: false,
                down_count: 1
            }
        );
    }

    #[tokio::test]
    async fn sessions_without_shutdown_sessions_survive_down() {
        let text = "listen px\n bind :1\n server a 127.0.0.1:1 check rise 1 fall 1\n";
        let cfg = parse("t", text, &|_| None).unwrap();
        let b = Backend::new(&cfg.listens[0]);
        b.record_check(0, result(true), None);
        let s = b.acquire().await.unwrap();
        b.record_check(0, result(false), None);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), s.cut())
                .await
                .is_err()
        );
    }

    #[test]
    fn downtime_and_last_change_are_tracked() {
        let b = backend(TWO, "");
        let st = b.stats();
        assert!(!st.servers[0].up && st.servers[0].ip.is_some());
        assert_eq!(st.active, 0);
        b.record_check(0, result(true), None);
        let st = b.stats();
        assert_eq!(st.active, 1);
        assert!(st.up);
        assert_eq!(st.servers[0].health.status_text(true), "UP");
    }
}
