//! The etcd v3 client: one lease per member, the leader lock, the bootstrap race, CAS writes
//! and the cluster snapshot, with Patroni's transactions (`shared/reference/patroni.md` §1.4).
//!
//! Every operation runs within `retry_timeout` in total, as Patroni's `Retry(deadline=
//! retry_timeout)`: each try gets `max(1 s, retry_timeout / endpoints)`, endpoints are tried
//! in turn starting from the last one that answered, with a short back-off after a full round.
//! A transport failure or timeout moves on to the next endpoint; an answer from etcd (a
//! failed compare, a missing lease, bad credentials) ends the operation at once.
//!
//! Safety notes for the supervisor:
//! - [`Dcs::keepalive`] returns the instant the keepalive was *sent*; etcd extends the lease
//!   from when it processes the request, which is later, so `sent_at + ttl` never overstates
//!   how long the lease (and with it the leader key) lives.
//! - [`Dcs::update_leader`] verifies in the same round trip that the leader key still holds our
//!   name on our lease (a read-only compare, no write): success means the lock is ours.
//! - Writes that may have been applied although the answer was lost are re-checked (a failed
//!   compare whose current value is what we wanted counts as success), so a retry after a
//!   lost answer does not misreport.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, Identity,
    LeaseKeepAliveStream, LeaseKeeper, PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse,
    TxnResponse,
};
use tokio::time::{Instant, sleep, timeout};

use super::keys::Keys;
use super::model::{Cluster, Failover, History, Kv, Member, Status, SyncState, Warning};
use super::settings::DcsSettings;

/// What went wrong with a DCS operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DcsError {
    /// No endpoint answered within the operation's budget (`retry_timeout`).
    #[error("etcd unreachable: {op} got no answer within {budget:?} ({detail})")]
    Unreachable {
        op: &'static str,
        budget: Duration,
        detail: String,
    },
    /// etcd says our lease does not exist (expired or revoked): the member and leader keys
    /// attached to it are gone.
    #[error("our etcd lease {lease:x} is gone (expired or revoked)")]
    LeaseLost { lease: i64 },
    /// The operation needs a lease and none has been granted (call `refresh_lease`).
    #[error("no etcd lease has been granted yet")]
    NoLease,
    /// The leader key holds another name (or is gone and someone else may take it).
    #[error("leader lock lost: {}", holder.as_deref().map(|h| format!("held by {h}")).unwrap_or_else(|| "no holder".into()))]
    LockLost { holder: Option<String> },
    /// A compare-and-swap failed: the key changed since `expected` was read.
    #[error("{key} changed concurrently (expected revision {expected}, found {})", found.map(|f| f.to_string()).unwrap_or_else(|| "no key".into()))]
    CasFailed {
        key: String,
        expected: i64,
        found: Option<i64>,
    },
    /// A value we were asked to write is not of the shape Patroni expects.
    #[error("refusing to write {key}: {reason}")]
    Malformed { key: String, reason: String },
    /// etcd refused our credentials (the password is never part of the message).
    #[error("etcd rejected the credentials of user {user:?}: {detail}")]
    Auth {
        user: Option<String>,
        detail: String,
    },
    /// etcd answered with an error that retrying will not fix.
    #[error("etcd refused {op}: {detail}")]
    Rejected { op: &'static str, detail: String },
    /// Settings or TLS files that cannot work.
    #[error("DCS settings: {0}")]
    Settings(String),
}

/// A successful lease renewal (keepalive or fresh grant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renewal {
    pub lease_id: i64,
    /// When the request that succeeded was sent. The lease lives at least until
    /// `sent_at + ttl`; fence writes at `sent_at + ttl - margin`.
    pub sent_at: Instant,
    /// TTL etcd reported for the lease.
    pub ttl: Duration,
    /// A new lease was granted (the previous one was lost or there was none): keys that were
    /// on the old lease are gone or were moved by the caller.
    pub regranted: bool,
}

/// How an etcd error should be handled.
enum Class {
    /// Transport trouble: try the next endpoint.
    Retry,
    LeaseNotFound,
    Auth,
    Fatal,
}

/// gRPC status codes (numeric, as on the wire; tonic is not a direct dependency).
mod code {
    pub const CANCELLED: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const DEADLINE_EXCEEDED: i32 = 4;
    pub const NOT_FOUND: i32 = 5;
    pub const PERMISSION_DENIED: i32 = 7;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const ABORTED: i32 = 10;
    pub const INTERNAL: i32 = 13;
    pub const UNAVAILABLE: i32 = 14;
    pub const UNAUTHENTICATED: i32 = 16;
}

fn classify(e: &etcd_client::Error) -> Class {
    use etcd_client::Error as E;
    match e {
        E::TransportError(_) | E::IoError(_) | E::WatchError(_) | E::EndpointError(_) => {
            Class::Retry
        }
        E::LeaseKeepAliveError(m) if m.contains("not found") => Class::LeaseNotFound,
        E::LeaseKeepAliveError(_) => Class::Retry,
        E::GRpcStatus(s) => match s.code() as i32 {
            code::NOT_FOUND if s.message().contains("lease not found") => Class::LeaseNotFound,
            code::UNAUTHENTICATED | code::PERMISSION_DENIED => Class::Auth,
            code::INVALID_ARGUMENT if s.message().contains("authentication failed") => Class::Auth,
            code::UNAVAILABLE
            | code::DEADLINE_EXCEEDED
            | code::UNKNOWN
            | code::CANCELLED
            | code::ABORTED
            | code::RESOURCE_EXHAUSTED
            | code::INTERNAL => Class::Retry,
            _ => Class::Fatal,
        },
        _ => Class::Fatal,
    }
}

/// The time budget of one public operation (which may make several requests): tries get
/// `per_try` each, and after every `n` consecutive failures (a full round of endpoints)
/// there is a short back-off, growing to 1 s.
pub(crate) struct Budget {
    deadline: Instant,
    total: Duration,
    per_try: Duration,
    n: usize,
    tries: usize,
    failures: usize,
    backed_off_at: usize,
    backoff: Duration,
}

impl Budget {
    fn new(total: Duration, endpoints: usize) -> Budget {
        let n = endpoints.max(1);
        Budget {
            deadline: Instant::now() + total,
            total,
            // Patroni: the budget split across nodes, at least 1 s each (never above total).
            per_try: (total / n as u32).max(Duration::from_secs(1)).min(total),
            n,
            tries: 0,
            failures: 0,
            backed_off_at: 0,
            backoff: Duration::from_millis(100),
        }
    }

    /// The timeout for the next try, or `None` when the budget is spent. The very first try
    /// always happens.
    async fn next_try(&mut self) -> Option<Duration> {
        if self.failures > 0 && self.failures % self.n == 0 && self.backed_off_at != self.failures {
            self.backed_off_at = self.failures;
            let remaining = self.deadline.saturating_duration_since(Instant::now());
            if remaining < Duration::from_millis(20) {
                return None;
            }
            sleep(self.backoff.min(remaining)).await;
            self.backoff = (self.backoff * 2).min(Duration::from_secs(1));
        }
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        if self.tries > 0 && remaining < Duration::from_millis(20) {
            return None;
        }
        self.tries += 1;
        Some(self.per_try.min(remaining.max(Duration::from_millis(20))))
    }

    /// The last try failed (transport error or timeout).
    fn failed(&mut self) {
        self.failures += 1;
    }
}

struct KeepAlive {
    endpoint: usize,
    keeper: LeaseKeeper,
    stream: LeaseKeepAliveStream,
}

#[derive(Default)]
struct LeaseState {
    id: Option<i64>,
    ttl: Duration,
    stream: Option<KeepAlive>,
}

/// What we last wrote to our member key (to skip unchanged writes, as Patroni does).
struct WrittenMember {
    member: Member,
    lease: i64,
    revision: i64,
}

pub(crate) struct Inner {
    pub(crate) settings: DcsSettings,
    pub(crate) keys: Keys,
    endpoints: Vec<String>,
    options: ConnectOptions,
    clients: Mutex<Vec<Option<Client>>>,
    current: AtomicUsize,
    reachable: AtomicBool,
    holding_lock: AtomicBool,
    lease: tokio::sync::Mutex<LeaseState>,
    /// Latest snapshot seen (from `get_cluster` or the watch).
    pub(crate) view: Mutex<Option<Arc<Cluster>>>,
    last_member: Mutex<Option<WrittenMember>>,
    last_status: Mutex<Option<Status>>,
    last_failsafe: Mutex<Option<std::collections::BTreeMap<String, String>>>,
    /// create_revision of the `initialize` key when we won the race (for a safe rollback).
    initialize_rev: Mutex<Option<i64>>,
    /// Warnings already logged, so each malformed value is reported once per revision.
    warned: Mutex<HashSet<(String, String)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A handle on the cluster's keys in etcd for one member. Cheap to clone; clones share the
/// lease and connections.
#[derive(Clone)]
pub struct Dcs {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Dcs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dcs")
            .field("settings", &self.inner.settings)
            .finish()
    }
}

fn read_file(what: &str, path: &std::path::Path) -> Result<Vec<u8>, DcsError> {
    std::fs::read(path).map_err(|e| {
        DcsError::Settings(format!("cannot read etcd3.{what} {}: {e}", path.display()))
    })
}

impl Dcs {
    /// Validate the settings and read the TLS files. No network traffic: connections are made
    /// on first use, so a member can start while etcd is down.
    pub fn new(settings: DcsSettings) -> Result<Dcs, DcsError> {
        let endpoints = settings
            .validate()
            .map_err(|e| DcsError::Settings(e.to_string()))?;
        let n = endpoints.len() as u32;
        let per_try = (settings.retry_timeout / n).max(Duration::from_secs(1));
        let mut options = ConnectOptions::new()
            .with_connect_timeout(per_try)
            // etcd refuses pings more often than every 5 s (GOAWAY too_many_pings).
            .with_keep_alive(
                Duration::from_secs(10),
                settings.retry_timeout.max(Duration::from_secs(1)),
            )
            .with_auto_token_refresh(true);
        if let Some(user) = &settings.username {
            options =
                options.with_user(user.clone(), settings.password.clone().unwrap_or_default());
        }
        if let Some(tls) = &settings.tls {
            let mut t = TlsOptions::new();
            if let Some(ca) = &tls.cacert {
                t = t.ca_certificate(Certificate::from_pem(read_file("cacert", ca)?));
            }
            if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
                t = t.identity(Identity::from_pem(
                    read_file("cert", cert)?,
                    read_file("key", key)?,
                ));
            }
            options = options.with_tls(t);
        }
        let keys = settings.keys();
        let clients = Mutex::new(vec![None; endpoints.len()]);
        Ok(Dcs {
            inner: Arc::new(Inner {
                settings,
                keys,
                endpoints,
                options,
                clients,
                current: AtomicUsize::new(0),
                reachable: AtomicBool::new(true),
                holding_lock: AtomicBool::new(false),
                lease: tokio::sync::Mutex::new(LeaseState::default()),
                view: Mutex::new(None),
                last_member: Mutex::new(None),
                last_status: Mutex::new(None),
                last_failsafe: Mutex::new(None),
                initialize_rev: Mutex::new(None),
                warned: Mutex::new(HashSet::new()),
            }),
        })
    }

    /// The cluster's keys.
    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    pub fn settings(&self) -> &DcsSettings {
        &self.inner.settings
    }

    /// Our current lease id, if one is granted.
    pub async fn lease_id(&self) -> Option<i64> {
        self.inner.lease.lock().await.id
    }

    // ----------------------------------------------------------------------------- lease

    /// Grant a new lease with TTL = `ttl` (dropping any previous one from our bookkeeping).
    pub async fn grant_lease(&self) -> Result<Renewal, DcsError> {
        let mut budget = self.inner.budget();
        let mut st = self.inner.lease.lock().await;
        self.inner.grant(&mut budget, &mut st).await
    }

    /// Renew our lease once. `Err(LeaseLost)` when etcd no longer knows it (the caller must
    /// assume its keys are gone), `Err(Unreachable)` when no endpoint answered in time,
    /// `Err(NoLease)` when none was granted.
    pub async fn keepalive(&self) -> Result<Renewal, DcsError> {
        let mut budget = self.inner.budget();
        let mut st = self.inner.lease.lock().await;
        self.inner.keepalive(&mut budget, &mut st).await
    }

    /// Keepalive if we have a lease, else grant one; a lost lease is replaced by a new one
    /// (`regranted` set). This is Patroni's `refresh_lease`.
    pub async fn refresh_lease(&self) -> Result<Renewal, DcsError> {
        let mut budget = self.inner.budget();
        let mut st = self.inner.lease.lock().await;
        self.inner.refresh(&mut budget, &mut st).await
    }

    /// Revoke our lease: the member key (and the leader key, if ours) disappear at once.
    pub async fn revoke_lease(&self) -> Result<(), DcsError> {
        let mut budget = self.inner.budget();
        let mut st = self.inner.lease.lock().await;
        let Some(id) = st.id else { return Ok(()) };
        st.stream = None;
        let res = self
            .inner
            .call(&mut budget, "revoke lease", |mut c| async move {
                c.lease_revoke(id).await
            })
            .await;
        match res {
            Ok(_) | Err(DcsError::LeaseLost { .. }) => {
                st.id = None;
                self.inner.holding_lock.store(false, Ordering::SeqCst);
                tracing::info!(lease = %format!("{id:x}"), "etcd lease revoked");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    // ----------------------------------------------------------------------------- member

    /// Write `members/<name>` on our lease (granted first if needed). Skipped, returning
    /// `Ok(false)`, when the value and lease are what we last wrote and the latest snapshot
    /// does not show the key changed since.
    pub async fn touch_member(&self, member: &Member) -> Result<bool, DcsError> {
        let mut budget = self.inner.budget();
        let mut st = self.inner.lease.lock().await;
        let lease = match st.id {
            Some(id) => id,
            None => self.inner.grant(&mut budget, &mut st).await?.lease_id,
        };
        if self.inner.member_unchanged(member, lease) {
            return Ok(false);
        }
        let key = self.inner.keys.member(&self.inner.settings.member_name);
        let value = member.to_json();
        let res = self
            .inner
            .call(&mut budget, "write member key", |mut c| {
                let (key, value) = (key.clone(), value.clone());
                async move {
                    c.put(key, value, Some(PutOptions::new().with_lease(lease)))
                        .await
                }
            })
            .await;
        match res {
            Ok(resp) => {
                let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
                *lock(&self.inner.last_member) = Some(WrittenMember {
                    member: member.clone(),
                    lease,
                    revision,
                });
                Ok(true)
            }
            Err(DcsError::LeaseLost { .. }) => Err(self.inner.lost_lease(&mut st, lease)),
            Err(e) => Err(e),
        }
    }

    /// Delete our member key (used by `ctl remove`-like flows and tests).
    pub async fn delete_member(&self) -> Result<bool, DcsError> {
        let key = self.inner.keys.member(&self.inner.settings.member_name);
        *lock(&self.inner.last_member) = None;
        let mut budget = self.inner.budget();
        let resp = self
            .inner
            .call(&mut budget, "delete member key", |mut c| {
                let key = key.clone();
                async move { c.delete(key, None).await }
            })
            .await?;
        Ok(resp.deleted() > 0)
    }

    // ----------------------------------------------------------------------------- leader lock

    /// Try to take the leader lock: create `leader` = our name on our lease if it does not
    /// exist (compare create_revision == 0). A missing lease is granted first, and a lease
    /// etcd no longer knows is replaced once. `Ok(false)`: someone else holds it.
    pub async fn attempt_acquire_leader(&self) -> Result<bool, DcsError> {
        let inner = &self.inner;
        let mut budget = inner.budget();
        let mut st = inner.lease.lock().await;
        if st.id.is_none() {
            inner.grant(&mut budget, &mut st).await?;
        }
        let key = inner.keys.leader();
        let name = inner.settings.member_name.clone();
        for second_try in [false, true] {
            let lease = st.id.ok_or(DcsError::NoLease)?;
            let txn = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(
                    key.clone(),
                    name.clone(),
                    Some(PutOptions::new().with_lease(lease)),
                )])
                .or_else([TxnOp::get(key.clone(), None)]);
            match inner.txn(&mut budget, "acquire leader lock", txn).await {
                Ok(resp) => {
                    let ours = resp.succeeded()
                        || first_get(&resp)
                            .is_some_and(|kv| kv.value == name.as_bytes() && kv.lease == lease);
                    if ours {
                        if !inner.holding_lock.swap(true, Ordering::SeqCst) {
                            tracing::info!(
                                member = %name,
                                lease = %format!("{lease:x}"),
                                "leader lock acquired"
                            );
                        }
                    } else {
                        inner.note_lock_lost(first_get(&resp).map(|kv| kv.value_string()));
                    }
                    return Ok(ours);
                }
                Err(DcsError::LeaseLost { .. }) if !second_try => {
                    inner.lost_lease(&mut st, lease);
                    inner.grant(&mut budget, &mut st).await?;
                }
                Err(e) => return Err(e),
            }
        }
        Err(DcsError::NoLease)
    }

    /// Keep the leader lock: renew the lease (a lost lease is replaced) and, in one
    /// transaction, check that `leader` still holds our name on our lease; if it holds our
    /// name on another lease, move it to ours; if it is gone, re-create it (Patroni's
    /// `_update_leader`). `Err(LockLost)` when someone else holds it.
    pub async fn update_leader(&self) -> Result<Renewal, DcsError> {
        let inner = &self.inner;
        let mut budget = inner.budget();
        let mut st = inner.lease.lock().await;
        let renewal = inner.refresh(&mut budget, &mut st).await?;
        let lease = renewal.lease_id;
        let key = inner.keys.leader();
        let name = inner.settings.member_name.clone();
        let put = || {
            TxnOp::put(
                key.clone(),
                name.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )
        };
        let create_if_absent = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([put()])
            .or_else([TxnOp::get(key.clone(), None)]);
        let move_to_our_lease = Txn::new()
            .when([Compare::value(key.clone(), CompareOp::Equal, name.clone())])
            .and_then([put()])
            .or_else([TxnOp::txn(create_if_absent)]);
        let txn = Txn::new()
            .when([
                Compare::value(key.clone(), CompareOp::Equal, name.clone()),
                Compare::lease(key.clone(), CompareOp::Equal, lease),
            ])
            .or_else([TxnOp::txn(move_to_our_lease)]);
        let resp = match inner.txn(&mut budget, "keep leader lock", txn).await {
            Ok(r) => r,
            Err(DcsError::LeaseLost { .. }) => return Err(inner.lost_lease(&mut st, lease)),
            Err(e) => return Err(e),
        };
        if resp.succeeded() {
            return Ok(renewal);
        }
        let moved = nested(&resp);
        if moved.as_ref().is_some_and(|t| t.succeeded()) {
            tracing::info!(lease = %format!("{lease:x}"), "leader key moved to our new lease");
            return Ok(renewal);
        }
        let created = moved.as_ref().and_then(nested);
        if created.as_ref().is_some_and(|t| t.succeeded()) {
            tracing::info!(
                lease = %format!("{lease:x}"),
                "leader key was gone and nobody had taken it: re-created it"
            );
            return Ok(renewal);
        }
        let holder = created
            .as_ref()
            .and_then(first_get)
            .map(|kv| kv.value_string());
        inner.note_lock_lost(holder.clone());
        Err(DcsError::LockLost { holder })
    }

    /// Release the lock: first record `last_lsn` in `status` (if given), then delete `leader`
    /// only if it holds our name. `Ok(false)` when it was not ours.
    pub async fn delete_leader(&self, last_lsn: Option<u64>) -> Result<bool, DcsError> {
        let inner = &self.inner;
        let mut budget = inner.budget();
        if let Some(lsn) = last_lsn {
            let mut status = lock(&inner.last_status).clone().unwrap_or_default();
            status.optime = lsn;
            inner.write_status(&mut budget, &status).await?;
        }
        let key = inner.keys.leader();
        let name = inner.settings.member_name.clone();
        let txn = Txn::new()
            .when([Compare::value(key.clone(), CompareOp::Equal, name.clone())])
            .and_then([TxnOp::delete(key.clone(), None)])
            .or_else([TxnOp::get(key.clone(), None)]);
        let resp = inner.txn(&mut budget, "release leader lock", txn).await?;
        let released = resp.succeeded();
        let was_holding = inner.holding_lock.swap(false, Ordering::SeqCst);
        if released {
            tracing::info!(member = %name, last_lsn, "leader lock released");
        } else if was_holding {
            tracing::warn!(
                holder = first_get(&resp).map(|kv| kv.value_string()),
                "leader lock was no longer ours when releasing it"
            );
        }
        Ok(released)
    }

    /// Put `leader` = our name on our lease unconditionally (right after our own bootstrap,
    /// when we won the initialize race).
    pub async fn take_leader(&self) -> Result<Renewal, DcsError> {
        let inner = &self.inner;
        let mut budget = inner.budget();
        let mut st = inner.lease.lock().await;
        let renewal = inner.refresh(&mut budget, &mut st).await?;
        let lease = renewal.lease_id;
        let key = inner.keys.leader();
        let name = inner.settings.member_name.clone();
        let res = inner
            .call(&mut budget, "take leader lock", |mut c| {
                let (key, name) = (key.clone(), name.clone());
                async move {
                    c.put(key, name, Some(PutOptions::new().with_lease(lease)))
                        .await
                }
            })
            .await;
        match res {
            Ok(_) => {
                inner.holding_lock.store(true, Ordering::SeqCst);
                tracing::info!(member = %name, lease = %format!("{lease:x}"), "leader lock taken after bootstrap");
                Ok(renewal)
            }
            Err(DcsError::LeaseLost { .. }) => Err(inner.lost_lease(&mut st, lease)),
            Err(e) => Err(e),
        }
    }

    // ----------------------------------------------------------------------------- initialize

    /// Race for the bootstrap: create `initialize` = `""` if absent. `Ok(true)`: we won and
    /// must bootstrap, then [`set_initialize`](Self::set_initialize) or
    /// [`cancel_initialize`](Self::cancel_initialize).
    pub async fn race_initialize(&self) -> Result<bool, DcsError> {
        let inner = &self.inner;
        let mut budget = inner.budget();
        let key = inner.keys.initialize();
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.clone(), "", None)]);
        let resp = inner.txn(&mut budget, "race for initialize", txn).await?;
        if resp.succeeded() {
            let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
            *lock(&inner.initialize_rev) = Some(rev);
            tracing::info!(
                revision = rev,
                "won the initialize race: this member bootstraps the cluster"
            );
        }
        Ok(resp.succeeded())
    }

    /// Record the cluster's system identifier in `initialize` after a successful bootstrap.
    pub async fn set_initialize(&self, sysid: &str) -> Result<(), DcsError> {
        let inner = &self.inner;
        let mut budget = inner.budget();
        let key = inner.keys.initialize();
        let sysid = sysid.to_string();
        inner
            .call(&mut budget, "write initialize", |mut c| {
                let (key, sysid) = (key.clone(), sysid.clone());
                async move { c.put(key, sysid, None).await }
            })
            .await?;
        Ok(())
    }

    /// Roll back a failed bootstrap: delete `initialize` only if it is still the key we
    /// created in [`race_initialize`](Self::race_initialize). `Ok(false)` when it is not ours
    /// (or we never won the race in this process).
    pub async fn cancel_initialize(&self) -> Result<bool, DcsError> {
        let inner = &self.inner;
        let Some(rev) = *lock(&inner.initialize_rev) else {
            return Ok(false);
        };
        let mut budget = inner.budget();
        let key = inner.keys.initialize();
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, rev)])
            .and_then([TxnOp::delete(key.clone(), None)]);
        let resp = inner.txn(&mut budget, "cancel initialize", txn).await?;
        *lock(&inner.initialize_rev) = None;
        if resp.succeeded() {
            tracing::info!("initialize key removed: bootstrap rolled back");
        }
        Ok(resp.succeeded())
    }

    // ----------------------------------------------------------------------------- CAS writes

    /// Write the dynamic configuration (a JSON object). With `version` (the `mod_revision`
    /// read with it) the write only happens if nobody changed it since. Returns the new
    /// mod_revision.
    pub async fn write_config(
        &self,
        config: &serde_json::Value,
        version: Option<i64>,
    ) -> Result<i64, DcsError> {
        let key = self.inner.keys.config();
        if !config.is_object() {
            return Err(DcsError::Malformed {
                key,
                reason: "the dynamic configuration must be a JSON object".into(),
            });
        }
        let value = serde_json::to_string(config).map_err(|e| DcsError::Malformed {
            key: key.clone(),
            reason: e.to_string(),
        })?;
        self.put_within_budget("write config", key, value, version)
            .await
    }

    /// One CAS put (unconditional without `version`) in its own `retry_timeout` budget.
    async fn put_within_budget(
        &self,
        op: &'static str,
        key: String,
        value: String,
        version: Option<i64>,
    ) -> Result<i64, DcsError> {
        let mut budget = self.inner.budget();
        self.inner
            .cas_put(&mut budget, op, key, value, version)
            .await
    }

    /// One CAS delete (unconditional without `version`) in its own `retry_timeout` budget.
    async fn delete_within_budget(
        &self,
        op: &'static str,
        key: String,
        version: Option<i64>,
    ) -> Result<bool, DcsError> {
        let mut budget = self.inner.budget();
        self.inner.cas_delete(&mut budget, op, key, version).await
    }

    /// Write `failover` (CAS by `version` when given). Returns the new mod_revision.
    pub async fn write_failover(
        &self,
        failover: &Failover,
        version: Option<i64>,
    ) -> Result<i64, DcsError> {
        let key = self.inner.keys.failover();
        self.put_within_budget("write failover", key, failover.to_json(), version)
            .await
    }

    /// Clear a failover request the way Patroni does: write `{}` (CAS by `version`).
    pub async fn clear_failover(&self, version: Option<i64>) -> Result<i64, DcsError> {
        self.write_failover(&Failover::default(), version).await
    }

    /// Delete the `failover` key (CAS by `version` when given). `Ok(false)` if absent.
    pub async fn delete_failover(&self, version: Option<i64>) -> Result<bool, DcsError> {
        let key = self.inner.keys.failover();
        self.delete_within_budget("delete failover", key, version)
            .await
    }

    /// Write `sync` (CAS by `version` when given). Returns the new mod_revision.
    pub async fn write_sync(
        &self,
        sync: &SyncState,
        version: Option<i64>,
    ) -> Result<i64, DcsError> {
        let key = self.inner.keys.sync();
        self.put_within_budget("write sync", key, sync.to_json(), version)
            .await
    }

    /// Delete `sync` (CAS by `version` when given).
    pub async fn delete_sync(&self, version: Option<i64>) -> Result<bool, DcsError> {
        let key = self.inner.keys.sync();
        self.delete_within_budget("delete sync", key, version).await
    }

    /// Write `status` unless it equals what we last wrote. `Ok(true)` when written.
    pub async fn write_status(&self, status: &Status) -> Result<bool, DcsError> {
        let mut budget = self.inner.budget();
        self.inner.write_status(&mut budget, status).await
    }

    /// Write `history`. Returns the new mod_revision.
    pub async fn write_history(&self, history: &History) -> Result<i64, DcsError> {
        let key = self.inner.keys.history();
        self.put_within_budget("write history", key, history.to_json(), None)
            .await
    }

    /// Write `failsafe` unless it equals what we last wrote. `Ok(true)` when written.
    pub async fn write_failsafe(
        &self,
        members: &std::collections::BTreeMap<String, String>,
    ) -> Result<bool, DcsError> {
        if lock(&self.inner.last_failsafe).as_ref() == Some(members) {
            return Ok(false);
        }
        let key = self.inner.keys.failsafe();
        let value = super::model::failsafe_to_json(members);
        self.put_within_budget("write failsafe", key, value, None)
            .await?;
        *lock(&self.inner.last_failsafe) = Some(members.clone());
        Ok(true)
    }

    /// Write the legacy `optime/leader` (only needed while Patroni < 2.1 members exist).
    pub async fn write_legacy_optime(&self, lsn: u64) -> Result<i64, DcsError> {
        let key = self.inner.keys.leader_optime();
        self.put_within_budget("write optime/leader", key, lsn.to_string(), None)
            .await
    }

    // ----------------------------------------------------------------------------- reads

    /// One linearizable range over the cluster prefix, as a snapshot. Malformed values are
    /// logged once each (per key and problem) and ignored.
    pub async fn get_cluster(&self) -> Result<Cluster, DcsError> {
        let (cluster, _) = self.get_cluster_checked().await?;
        Ok(cluster)
    }

    /// Like [`get_cluster`](Self::get_cluster), also returning every warning.
    pub async fn get_cluster_checked(&self) -> Result<(Cluster, Vec<Warning>), DcsError> {
        let mut budget = self.inner.budget();
        let (kvs, revision) = self.inner.range_prefix(&mut budget).await?;
        let (mut cluster, warnings) = Cluster::from_kvs(&self.inner.keys, &kvs);
        cluster.revision = revision;
        self.inner.log_warnings(&warnings);
        *lock(&self.inner.view) = Some(Arc::new(cluster.clone()));
        Ok((cluster, warnings))
    }
}

/// The first key-value of the first range response in a txn response.
fn first_get(resp: &TxnResponse) -> Option<Kv> {
    resp.op_responses().into_iter().find_map(|r| match r {
        TxnOpResponse::Get(g) => g.kvs().first().map(to_kv),
        _ => None,
    })
}

/// The first nested txn response.
fn nested(resp: &TxnResponse) -> Option<TxnResponse> {
    resp.op_responses().into_iter().find_map(|r| match r {
        TxnOpResponse::Txn(t) => Some(t),
        _ => None,
    })
}

pub(crate) fn to_kv(kv: &etcd_client::KeyValue) -> Kv {
    Kv {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        lease: kv.lease(),
    }
}

impl Kv {
    fn value_string(&self) -> String {
        String::from_utf8_lossy(&self.value).into_owned()
    }
}

impl Inner {
    pub(crate) fn budget(&self) -> Budget {
        Budget::new(self.settings.retry_timeout, self.endpoints.len())
    }

    /// The client for endpoint `idx`, connecting (and authenticating) if needed.
    pub(crate) async fn client(&self, idx: usize) -> Result<Client, etcd_client::Error> {
        if let Some(c) = lock(&self.clients).get(idx).cloned().flatten() {
            return Ok(c);
        }
        let c = Client::connect([self.endpoints[idx].as_str()], Some(self.options.clone())).await?;
        if let Some(slot) = lock(&self.clients).get_mut(idx) {
            *slot = Some(c.clone());
        }
        Ok(c)
    }

    fn drop_client(&self, idx: usize) {
        if let Some(slot) = lock(&self.clients).get_mut(idx) {
            *slot = None;
        }
    }

    pub(crate) fn endpoint(&self, idx: usize) -> &str {
        &self.endpoints[idx]
    }

    pub(crate) fn current_endpoint(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.endpoints.len().max(1)
    }

    pub(crate) fn mark_ok(&self, idx: usize) {
        tracing::trace!(endpoint = %self.endpoints[idx], "etcd answered");
        self.current.store(idx, Ordering::Relaxed);
        if !self.reachable.swap(true, Ordering::SeqCst) {
            tracing::info!(endpoint = %self.endpoints[idx], "etcd reachable again");
        }
    }

    pub(crate) fn mark_unreachable(&self, op: &str, detail: &str) {
        if self.reachable.swap(false, Ordering::SeqCst) {
            tracing::warn!(
                op,
                budget = ?self.settings.retry_timeout,
                detail,
                "etcd unreachable"
            );
        }
    }

    fn note_lock_lost(&self, holder: Option<String>) {
        if self.holding_lock.swap(false, Ordering::SeqCst) {
            tracing::warn!(holder, "leader lock lost");
        }
    }

    /// Forget a lease etcd no longer knows; returns the error to report.
    fn lost_lease(&self, st: &mut LeaseState, lease: i64) -> DcsError {
        if st.id == Some(lease) {
            st.id = None;
            st.stream = None;
            tracing::warn!(lease = %format!("{lease:x}"), "etcd lease lost (expired or revoked)");
        }
        if self.holding_lock.swap(false, Ordering::SeqCst) {
            tracing::warn!("leader lock lost with the lease");
        }
        DcsError::LeaseLost { lease }
    }

    /// Run `f` against endpoints in turn within `budget`.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        budget: &mut Budget,
        op: &'static str,
        f: F,
    ) -> Result<T, DcsError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut last = String::from("no try was possible");
        let start = self.current_endpoint();
        let mut k = 0;
        while let Some(t) = budget.next_try().await {
            let idx = (start + k) % self.endpoints.len();
            k += 1;
            let attempt = async {
                let client = self.client(idx).await?;
                f(client).await
            };
            match timeout(t, attempt).await {
                Ok(Ok(v)) => {
                    self.mark_ok(idx);
                    return Ok(v);
                }
                Ok(Err(e)) => match classify(&e) {
                    Class::Retry => {
                        last = format!("{}: {e}", self.endpoints[idx]);
                        tracing::debug!(op, "etcd try failed: {last}");
                        self.drop_client(idx);
                        budget.failed();
                    }
                    Class::LeaseNotFound => {
                        self.mark_ok(idx);
                        return Err(DcsError::LeaseLost { lease: 0 });
                    }
                    Class::Auth => {
                        self.mark_ok(idx);
                        return Err(DcsError::Auth {
                            user: self.settings.username.clone(),
                            detail: e.to_string(),
                        });
                    }
                    Class::Fatal => {
                        self.mark_ok(idx);
                        return Err(DcsError::Rejected {
                            op,
                            detail: e.to_string(),
                        });
                    }
                },
                Err(_) => {
                    last = format!("{}: no answer within {t:?}", self.endpoints[idx]);
                    tracing::debug!(op, "etcd try failed: {last}");
                    self.drop_client(idx);
                    budget.failed();
                }
            }
        }
        self.mark_unreachable(op, &last);
        Err(DcsError::Unreachable {
            op,
            budget: budget.total,
            detail: last,
        })
    }

    async fn txn(
        &self,
        budget: &mut Budget,
        op: &'static str,
        txn: Txn,
    ) -> Result<TxnResponse, DcsError> {
        self.call(budget, op, |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await
    }

    async fn grant(&self, budget: &mut Budget, st: &mut LeaseState) -> Result<Renewal, DcsError> {
        let ttl = self.settings.ttl.as_secs().max(1) as i64;
        let (resp, sent_at) = self
            .call(budget, "grant lease", |mut c| async move {
                let sent_at = Instant::now();
                let resp = c.lease_grant(ttl, None).await?;
                Ok((resp, sent_at))
            })
            .await?;
        let granted_ttl = Duration::from_secs(resp.ttl().max(0) as u64);
        st.id = Some(resp.id());
        st.ttl = granted_ttl;
        st.stream = None;
        tracing::info!(lease = %format!("{:x}", resp.id()), ttl = ?granted_ttl, "etcd lease granted");
        Ok(Renewal {
            lease_id: resp.id(),
            sent_at,
            ttl: granted_ttl,
            regranted: true,
        })
    }

    async fn keepalive(
        &self,
        budget: &mut Budget,
        st: &mut LeaseState,
    ) -> Result<Renewal, DcsError> {
        let id = st.id.ok_or(DcsError::NoLease)?;
        let mut last = String::from("no try was possible");
        let start = self.current_endpoint();
        let mut k = 0;
        while let Some(t) = budget.next_try().await {
            let idx = (start + k) % self.endpoints.len();
            k += 1;
            let sent_at = Instant::now();
            let attempt = keepalive_once(self, idx, id, st);
            match timeout(t, attempt).await {
                Ok(Ok(ttl)) => {
                    self.mark_ok(idx);
                    return Ok(Renewal {
                        lease_id: id,
                        sent_at,
                        ttl,
                        regranted: false,
                    });
                }
                Ok(Err(e)) => {
                    st.stream = None;
                    match classify(&e) {
                        Class::LeaseNotFound => {
                            self.mark_ok(idx);
                            return Err(self.lost_lease(st, id));
                        }
                        Class::Retry => {
                            last = format!("{}: {e}", self.endpoints[idx]);
                            tracing::debug!("etcd keepalive try failed: {last}");
                            self.drop_client(idx);
                            budget.failed();
                        }
                        Class::Auth => {
                            return Err(DcsError::Auth {
                                user: self.settings.username.clone(),
                                detail: e.to_string(),
                            });
                        }
                        Class::Fatal => {
                            return Err(DcsError::Rejected {
                                op: "lease keepalive",
                                detail: e.to_string(),
                            });
                        }
                    }
                }
                Err(_) => {
                    st.stream = None;
                    last = format!("{}: no answer within {t:?}", self.endpoints[idx]);
                    tracing::debug!("etcd keepalive try failed: {last}");
                    self.drop_client(idx);
                    budget.failed();
                }
            }
        }
        self.mark_unreachable("lease keepalive", &last);
        Err(DcsError::Unreachable {
            op: "lease keepalive",
            budget: budget.total,
            detail: last,
        })
    }

    async fn refresh(&self, budget: &mut Budget, st: &mut LeaseState) -> Result<Renewal, DcsError> {
        if st.id.is_none() {
            return self.grant(budget, st).await;
        }
        match self.keepalive(budget, st).await {
            Err(DcsError::LeaseLost { .. }) => self.grant(budget, st).await,
            other => other,
        }
    }

    fn member_unchanged(&self, member: &Member, lease: i64) -> bool {
        let last = lock(&self.last_member);
        let Some(w) = last.as_ref() else {
            return false;
        };
        if w.lease != lease || &w.member != member {
            return false;
        }
        // What we wrote is what we want; make sure nothing newer shows the key changed.
        match lock(&self.view).as_ref() {
            Some(view) if view.revision >= w.revision => view
                .member(&self.settings.member_name)
                .is_some_and(|m| m.lease == lease && &m.data == member),
            _ => true,
        }
    }

    async fn write_status(&self, budget: &mut Budget, status: &Status) -> Result<bool, DcsError> {
        if lock(&self.last_status).as_ref() == Some(status) {
            return Ok(false);
        }
        self.cas_put(
            budget,
            "write status",
            self.keys.status(),
            status.to_json(),
            None,
        )
        .await?;
        *lock(&self.last_status) = Some(status.clone());
        Ok(true)
    }

    async fn cas_put(
        &self,
        budget: &mut Budget,
        op: &'static str,
        key: String,
        value: String,
        version: Option<i64>,
    ) -> Result<i64, DcsError> {
        let Some(version) = version else {
            let resp = self
                .call(budget, op, |mut c| {
                    let (key, value) = (key.clone(), value.clone());
                    async move { c.put(key, value, None).await }
                })
                .await?;
            return Ok(resp.header().map(|h| h.revision()).unwrap_or(0));
        };
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                version,
            )])
            .and_then([TxnOp::put(key.clone(), value.clone(), None)])
            .or_else([TxnOp::get(key.clone(), None)]);
        let resp = self.txn(budget, op, txn).await?;
        if resp.succeeded() {
            return Ok(resp.header().map(|h| h.revision()).unwrap_or(0));
        }
        match first_get(&resp) {
            // Our own earlier try landed although its answer was lost.
            Some(kv) if kv.value == value.as_bytes() => Ok(kv.mod_revision),
            current => Err(DcsError::CasFailed {
                key,
                expected: version,
                found: current.map(|kv| kv.mod_revision),
            }),
        }
    }

    async fn cas_delete(
        &self,
        budget: &mut Budget,
        op: &'static str,
        key: String,
        version: Option<i64>,
    ) -> Result<bool, DcsError> {
        let Some(version) = version else {
            let resp = self
                .call(budget, op, |mut c| {
                    let key = key.clone();
                    async move { c.delete(key, None).await }
                })
                .await?;
            return Ok(resp.deleted() > 0);
        };
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                version,
            )])
            .and_then([TxnOp::delete(key.clone(), None::<DeleteOptions>)])
            .or_else([TxnOp::get(key.clone(), None)]);
        let resp = self.txn(budget, op, txn).await?;
        if resp.succeeded() {
            return Ok(true);
        }
        match first_get(&resp) {
            None => Ok(false),
            Some(kv) => Err(DcsError::CasFailed {
                key,
                expected: version,
                found: Some(kv.mod_revision),
            }),
        }
    }

    /// All key-values under the prefix and the revision they reflect.
    pub(crate) async fn range_prefix(
        &self,
        budget: &mut Budget,
    ) -> Result<(Vec<Kv>, i64), DcsError> {
        let prefix = self.keys.prefix().to_string();
        let resp = self
            .call(budget, "read cluster", |mut c| {
                let prefix = prefix.clone();
                async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        Ok((resp.kvs().iter().map(to_kv).collect(), revision))
    }

    pub(crate) fn log_warnings(&self, warnings: &[Warning]) {
        if warnings.is_empty() {
            return;
        }
        let mut seen = lock(&self.warned);
        if seen.len() > 10_000 {
            seen.clear();
        }
        for w in warnings {
            if seen.insert((w.key.clone(), w.message.clone())) {
                tracing::warn!(key = %w.key, "ignoring malformed DCS value: {}", w.message);
            }
        }
    }
}

/// One keepalive on endpoint `idx`, reusing the open keepalive stream when it is on that
/// endpoint. Returns the lease TTL etcd reported.
async fn keepalive_once(
    inner: &Inner,
    idx: usize,
    id: i64,
    st: &mut LeaseState,
) -> Result<Duration, etcd_client::Error> {
    match st.stream.as_mut() {
        Some(ka) if ka.endpoint == idx => {
            ka.keeper.keep_alive().await?;
            match ka.stream.message().await? {
                Some(resp) if resp.ttl() > 0 => Ok(Duration::from_secs(resp.ttl() as u64)),
                Some(_) => Err(etcd_client::Error::LeaseKeepAliveError(
                    "lease not found".into(),
                )),
                None => Err(etcd_client::Error::WatchError(
                    "keepalive stream closed by etcd".into(),
                )),
            }
        }
        _ => {
            st.stream = None;
            let client = inner.client(idx).await?;
            // Opening the stream sends one keepalive and checks its answer (TTL > 0); etcd
            // resets a lease to its granted TTL on every keepalive.
            let (keeper, stream) = client.lease_client().keep_alive(id).await?;
            st.stream = Some(KeepAlive {
                endpoint: idx,
                keeper,
                stream,
            });
            Ok(st.ttl)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn budget_gives_each_endpoint_a_share_and_stops_at_the_deadline() {
        // Three endpoints that never answer: three tries of total/3 each, then nothing.
        let mut b = Budget::new(Duration::from_secs(10), 3);
        let start = Instant::now();
        let mut tries = 0;
        while let Some(t) = b.next_try().await {
            assert!(t <= Duration::from_millis(3334), "{t:?}");
            tokio::time::advance(t).await;
            b.failed();
            tries += 1;
        }
        assert_eq!(tries, 3);
        assert!(start.elapsed() <= Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn budget_backs_off_after_each_failed_round() {
        // One endpoint that refuses at once: tries are spaced 0.1, 0.2, 0.4, 0.8, 1, 1 s...
        let mut b = Budget::new(Duration::from_secs(3), 1);
        let start = Instant::now();
        let mut at = Vec::new();
        while let Some(t) = b.next_try().await {
            assert!(t <= Duration::from_secs(3));
            at.push(start.elapsed().as_millis());
            b.failed();
        }
        assert_eq!(at, vec![0, 100, 300, 700, 1500, 2500]);
        assert!(start.elapsed() <= Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn budget_shares_one_deadline_across_requests() {
        // A short budget: tries never exceed it, and once spent no new request starts.
        let mut b = Budget::new(Duration::from_millis(500), 2);
        assert_eq!(b.next_try().await, Some(Duration::from_millis(500)));
        tokio::time::advance(Duration::from_millis(400)).await;
        // A second request of the same operation gets what is left.
        assert_eq!(b.next_try().await, Some(Duration::from_millis(100)));
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(b.next_try().await, None);
    }
}
