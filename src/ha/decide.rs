//! The HA decision: a pure function from an observed state to a plan.
//!
//! Patroni's `Ha._run_cycle` mixes reading state, deciding and acting in one long method.
//! Here the three are apart: the supervisor's shell observes (etcd, postgres, the clock),
//! [`decide`] chooses, and the shell executes the returned [`Plan`] in order, stopping at the
//! first action that fails (a lost lock race, say), so a later action never runs on a false
//! premise. The next cycle observes again and decides afresh.
//!
//! Safety rules encoded here (DESIGN.md, invariant 1):
//! - postgres runs as a primary only while we hold the leader lock: the lock is taken before
//!   a start as primary or a promotion, and a primary that sees another member's lock demotes;
//! - a primary that cannot renew its lock keeps serving only until its *fence deadline*,
//!   `last renewal sent + ttl − fence_margin`, and is stopped (immediate mode) when that
//!   passes, so it has stopped taking writes before etcd could hand the lock to anyone else.
//!   Patroni demotes after `loop_wait + retry_timeout` of DCS trouble; waiting for the real
//!   deadline rides out short etcd outages without giving up safety.

use std::time::{Duration, Instant};

/// Timing and policy knobs the decision needs (from the effective dynamic configuration).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Lease TTL of the leader lock.
    pub ttl: Duration,
    /// Safety margin subtracted from the lease TTL for the fence deadline (≥ 2 s).
    pub fence_margin: Duration,
    /// How long a primary that holds the lock may take to start before we give it up.
    pub primary_start_timeout: Duration,
    /// The `nofailover` tag: never take the lock, never bootstrap.
    pub nofailover: bool,
    /// Maintenance mode (`pause: true` in the dynamic config): never start, stop, promote or
    /// demote postgres; only keep or take the lock for a running primary.
    pub paused: bool,
    /// `use_pg_rewind`: a former primary rewinds from the leader before following it.
    pub use_pg_rewind: bool,
}

/// What etcd said this cycle (absent when etcd could not be read).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterView {
    /// Value of the `initialize` key: `None` when absent, `Some("")` while a bootstrap is
    /// in progress, else the system identifier.
    pub initialize: Option<String>,
    /// Holder of the `leader` key.
    pub leader: Option<String>,
    /// Whether the `config` key holds a valid dynamic configuration.
    pub has_config: bool,
    /// The member a switchover or failover request (the `failover` key) hands the lock to.
    pub failover_to: Option<String>,
}

/// State of the local data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataDir {
    /// Missing or empty: nothing to start.
    Empty,
    /// An initialised cluster.
    Initialized {
        /// Database system identifier from `pg_controldata`.
        sysid: String,
        /// The cluster was last a primary (no `standby.signal`), so it may start as one
        /// directly when we hold the lock, without a promotion.
        was_primary: bool,
    },
}

/// What the local postgres is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Postgres {
    /// Not running (never started, stopped cleanly, or stopped by us).
    Stopped,
    /// The postmaster died without being asked to.
    Crashed,
    /// Started, not yet accepting connections.
    Starting { as_primary: bool, since: Instant },
    /// Accepting connections.
    Running { primary: bool },
}

/// A long operation running in the background; while it runs, the loop only keeps the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    Bootstrapping,
    Stopping,
    Promoting,
}

impl std::fmt::Display for Activity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Activity::Bootstrapping => "bootstrap",
            Activity::Stopping => "stop",
            Activity::Promoting => "promotion",
        })
    }
}

/// What we know about our own hold on the leader lock, independent of this cycle's read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lock {
    /// When the last *successful* renewal (lease keepalive) or acquisition was sent.
    /// `None` when we do not hold the lock.
    pub renewed_sent_at: Option<Instant>,
}

impl Lock {
    /// Whether we believe we hold the lock.
    pub fn held(&self) -> bool {
        self.renewed_sent_at.is_some()
    }
}

/// What another member said about itself when asked during a leader race (`GET /patroni`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    /// It answered and is not in recovery: a primary is still alive.
    pub primary: bool,
    /// Its WAL position (primary: flush LSN; replica: max of received and replayed).
    pub wal: u64,
    /// The `nofailover` tag: it never takes the lock, so being ahead does not stop us.
    pub nofailover: bool,
}

/// What a replica knows when the leader lock is free, to decide whether it is the healthiest
/// member (Patroni's `is_healthiest_node`). Unreachable members are simply absent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Candidacy {
    /// Our WAL position: max of received and replayed.
    pub my_wal: u64,
    /// The last leader's WAL position from the `status` key (`optime`), 0 if unknown.
    pub cluster_optime: u64,
    /// `maximum_lag_on_failover` in bytes.
    pub max_lag: u64,
    pub peers: Vec<Peer>,
    /// With `synchronous_mode`, whether the `sync` key lists us (as a synchronous standby or
    /// as its leader): only those members are known to hold every acknowledged commit.
    /// Always true without synchronous mode.
    pub in_sync_key: bool,
}

/// Everything one decision looks at.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub now: Instant,
    /// Our member name.
    pub me: String,
    pub settings: Settings,
    /// `None` when etcd could not be read this cycle.
    pub cluster: Option<ClusterView>,
    pub lock: Lock,
    pub data: DataDir,
    pub postgres: Postgres,
    pub activity: Option<Activity>,
    /// The member a running replica streams from (whose address is in `primary_conninfo`).
    pub upstream: Option<String>,
    /// Filled by the shell only for a running replica while the leader lock is free.
    pub candidacy: Option<Candidacy>,
}

/// Role to start postgres in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAs {
    Primary,
    /// Read-only standby (`standby.signal`), following `leader` when there is one.
    Replica,
}

/// One step of a plan. The shell executes them in order and stops at the first failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Renew our lock (lease keepalive; re-attach the leader key if its lease changed).
    /// Fails when the lock is lost or etcd is unreachable.
    KeepLock,
    /// Take the free lock (create the leader key if absent). Fails when someone else won.
    AcquireLock,
    /// Race for `initialize`; if won, initdb and set up a new cluster, write `initialize`,
    /// `config` and take the lock. Fails (and rolls back) on any error.
    Bootstrap,
    /// Write our system identifier into `initialize` (adopting an existing data dir).
    WriteInitialize,
    /// Write the dynamic configuration (from `bootstrap.dcs`) into the empty `config` key.
    WriteConfig,
    /// Copy the data directory from this member (pg_basebackup) to become its replica.
    CreateReplica {
        from: String,
    },
    /// Point the running replica's `primary_conninfo` at this member and reload.
    Follow {
        leader: String,
    },
    /// pg_rewind the (stopped) former primary's data directory from this member.
    Rewind {
        from: String,
    },
    StartPostgres(StartAs),
    /// Promote the running standby to primary.
    Promote,
    /// Stop postgres in immediate mode and start it again read-only: we are primary without
    /// the lock (another member holds it, or ours is about to expire).
    Demote,
    /// Immediate stop because the fence deadline passed while etcd was unreachable.
    Fence,
    /// Stop postgres (immediate) and release the lock: a primary that failed to start in
    /// `primary_start_timeout` gives the cluster a chance to fail over.
    GiveUpLock,
    /// Unrecoverable: stop postgres if running and exit the supervisor with this message.
    Fatal(String),
}

/// The outcome of one decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// What we are and why we act, one sentence; logged when it changes between cycles.
    pub message: String,
}

impl Plan {
    fn new(actions: Vec<Action>, message: impl Into<String>) -> Plan {
        Plan {
            actions,
            message: message.into(),
        }
    }
    fn wait(message: impl Into<String>) -> Plan {
        Plan::new(Vec::new(), message)
    }
}

/// The instant by which a primary must have stopped taking writes if its lock is not
/// renewed: `renewal sent + ttl − margin`. `None` when we do not hold the lock.
pub fn fence_deadline(lock: &Lock, s: &Settings) -> Option<Instant> {
    lock.renewed_sent_at
        .map(|t| t + s.ttl.saturating_sub(s.fence_margin))
}

/// A system identifier is valid when it is all digits and at least 10 long (Patroni's rule).
pub fn valid_sysid(s: &str) -> bool {
    s.len() >= 10 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Why a replica must not race for the free lock, if it must not (Patroni's
/// `_is_healthiest_node`): a primary still answers, we lag the last leader by more than
/// `maximum_lag_on_failover`, or an eligible member has more WAL. Members that did not
/// answer are ignored; several members may each think they are healthiest, and the lock's
/// compare-and-set decides among them.
///
/// The member a switchover names (`chosen`) does not defer to members with more WAL: the
/// operator picked it, and the old leader stopped only once it had everything.
pub fn not_healthiest(me: &str, c: &Candidacy, chosen: bool) -> Option<String> {
    if !c.in_sync_key {
        return Some(
            "synchronous_mode is on and the sync key does not list me as a synchronous standby"
                .into(),
        );
    }
    if let Some(p) = c.peers.iter().find(|p| p.primary && p.name != me) {
        return Some(format!("{} still runs as a primary", p.name));
    }
    let lag = c.cluster_optime.saturating_sub(c.my_wal);
    if lag > c.max_lag {
        return Some(format!(
            "I lag the last leader by {lag} bytes, more than maximum_lag_on_failover ({})",
            c.max_lag
        ));
    }
    if let Some(p) = c
        .peers
        .iter()
        .filter(|_| !chosen)
        .find(|p| !p.nofailover && p.name != me && p.wal > c.my_wal)
    {
        return Some(format!(
            "{} has more WAL ({} > {} bytes)",
            p.name, p.wal, c.my_wal
        ));
    }
    None
}

/// Decide what to do this cycle.
pub fn decide(o: &Observation) -> Plan {
    let s = &o.settings;
    let running_primary = matches!(o.postgres, Postgres::Running { primary: true })
        || matches!(
            o.postgres,
            Postgres::Starting {
                as_primary: true,
                ..
            }
        );

    // The fence deadline is checked first and regardless of anything else: nothing may
    // keep a primary taking writes past it.
    if running_primary && o.lock.held() && !s.paused {
        if let Some(deadline) = fence_deadline(&o.lock, s) {
            if o.now >= deadline && o.cluster.is_none() {
                return Plan::new(
                    vec![Action::Fence],
                    "lock not renewed and its lease may expire soon (fence deadline passed, \
                     etcd unreachable): stopping postgres in immediate mode to stop writes",
                );
            }
        }
    }

    // etcd unreachable: keep doing what we do; a primary keeps its writes until the deadline.
    let Some(c) = &o.cluster else {
        return match (running_primary, fence_deadline(&o.lock, s)) {
            (true, Some(_)) => Plan::wait(format!(
                "etcd unreachable; still primary until the fence deadline ({} s after the \
                 last lock renewal)",
                s.ttl.saturating_sub(s.fence_margin).as_secs()
            )),
            (true, None) if !s.paused => Plan::new(
                vec![Action::Fence],
                "etcd unreachable and running as primary without a renewed lock: stopping writes",
            ),
            _ if matches!(o.postgres, Postgres::Stopped | Postgres::Crashed)
                && !s.paused
                && matches!(o.data, DataDir::Initialized { .. }) =>
            {
                Plan::new(
                    vec![Action::StartPostgres(StartAs::Replica)],
                    "etcd unreachable: starting postgres read-only until the cluster can be seen",
                )
            }
            _ => Plan::wait("etcd unreachable; not primary, nothing to do"),
        };
    };

    let leader_is_me = c.leader.as_deref() == Some(o.me.as_str());
    let leader_other = c.leader.as_deref().filter(|l| *l != o.me);
    // A switchover or failover names another member: never race it for a free lock.
    let handed_to_other = c
        .failover_to
        .as_deref()
        .filter(|m| *m != o.me && c.leader.is_none());
    let handed_to_me = c.failover_to.as_deref() == Some(o.me.as_str());

    // A long operation is running: only keep the lock meanwhile.
    if let Some(activity) = o.activity {
        return if leader_is_me {
            Plan::new(
                vec![Action::KeepLock],
                format!("{activity} in progress; keeping the leader lock"),
            )
        } else {
            Plan::wait(format!("{activity} in progress"))
        };
    }

    // No data yet: bootstrap a new cluster, or wait for the one being bootstrapped.
    let (sysid, was_primary) = match &o.data {
        DataDir::Empty => {
            return match (&c.initialize, &c.leader) {
                (None, None) if s.nofailover => {
                    Plan::wait("no cluster in etcd, but the nofailover tag forbids bootstrapping")
                }
                (None, None) => Plan::new(
                    vec![Action::Bootstrap],
                    "no cluster in etcd and an empty data directory: bootstrapping a new cluster",
                ),
                (Some(v), None) if v.is_empty() => {
                    Plan::wait("another member is bootstrapping the cluster; waiting")
                }
                (Some(v), Some(l)) if valid_sysid(v) && *l != o.me => Plan::new(
                    vec![
                        Action::CreateReplica { from: l.clone() },
                        Action::StartPostgres(StartAs::Replica),
                    ],
                    format!(
                        "the cluster exists and this member has no data: building a replica \
                         from the leader {l}"
                    ),
                ),
                (_, Some(l)) if *l == o.me => Plan::wait(
                    "etcd says I hold the leader lock but my data directory is empty; waiting \
                     for the lock to expire",
                ),
                _ => Plan::wait(
                    "the cluster exists and this member has no data; waiting for a leader to \
                     copy it from",
                ),
            };
        }
        DataDir::Initialized { sysid, was_primary } => (sysid, *was_primary),
    };

    // The data directory must belong to the cluster in etcd.
    if let Some(init) = c.initialize.as_deref().filter(|v| valid_sysid(v)) {
        if init != sysid {
            return Plan::new(
                vec![Action::Fatal(format!(
                    "system ID mismatch: the data directory belongs to cluster {sysid} but \
                     etcd's initialize key says {init}; refusing to start (move the data \
                     directory aside or fix the scope/namespace)"
                ))],
                "system identifier mismatch",
            );
        }
    }
    let adopt = c.initialize.as_deref().is_none_or(|v| !valid_sysid(v));

    // Maintenance mode: never touch postgres; keep the lock of a running primary.
    if s.paused {
        return match (running_primary, leader_is_me, c.leader.is_none()) {
            (true, true, _) => Plan::new(vec![Action::KeepLock], "paused; primary keeps the lock"),
            (true, false, true) => Plan::new(
                vec![Action::AcquireLock],
                "paused; running primary takes the free lock",
            ),
            _ => Plan::wait("paused (maintenance mode): not managing postgres"),
        };
    }

    let mut leader_extras = Vec::new();
    if adopt {
        leader_extras.push(Action::WriteInitialize);
    }
    if !c.has_config {
        leader_extras.push(Action::WriteConfig);
    }

    match o.postgres {
        Postgres::Stopped | Postgres::Crashed => {
            let why = if o.postgres == Postgres::Crashed {
                "postgres crashed"
            } else {
                "postgres is not running"
            };
            if leader_is_me {
                let mut actions = vec![Action::KeepLock];
                actions.extend(leader_extras);
                actions.push(Action::StartPostgres(StartAs::Primary));
                Plan::new(
                    actions,
                    format!("{why} and I hold the leader lock: starting it as primary"),
                )
            } else if let Some(other) = leader_other {
                if was_primary && s.use_pg_rewind {
                    Plan::new(
                        vec![
                            Action::Rewind {
                                from: other.to_string(),
                            },
                            Action::StartPostgres(StartAs::Replica),
                        ],
                        format!(
                            "{why}; {other} holds the leader lock and this data directory was \
                             a primary: rewinding it from {other}, then starting as a replica"
                        ),
                    )
                } else {
                    Plan::new(
                        vec![Action::StartPostgres(StartAs::Replica)],
                        format!("{why}; {other} holds the leader lock: starting as a replica"),
                    )
                }
            } else if s.nofailover {
                Plan::new(
                    vec![Action::StartPostgres(StartAs::Replica)],
                    format!("{why}; no leader, but the nofailover tag forbids taking the lock"),
                )
            } else if let Some(to) = handed_to_other {
                Plan::new(
                    vec![Action::StartPostgres(StartAs::Replica)],
                    format!("{why}; the lock is being handed to {to}: starting as a replica"),
                )
            } else if was_primary {
                let mut actions = vec![Action::AcquireLock];
                actions.extend(leader_extras);
                actions.push(Action::StartPostgres(StartAs::Primary));
                Plan::new(
                    actions,
                    format!("{why} and the lock is free: taking it and starting as primary"),
                )
            } else {
                Plan::new(
                    vec![Action::StartPostgres(StartAs::Replica)],
                    format!("{why}; starting as a replica before racing for the free lock"),
                )
            }
        }
        Postgres::Starting { as_primary, since } => {
            if as_primary && leader_is_me {
                if o.now.saturating_duration_since(since) > s.primary_start_timeout {
                    Plan::new(
                        vec![Action::GiveUpLock],
                        format!(
                            "primary did not start within primary_start_timeout ({} s): \
                             stopping it and releasing the lock",
                            s.primary_start_timeout.as_secs()
                        ),
                    )
                } else {
                    Plan::new(
                        vec![Action::KeepLock],
                        "postgres is starting as primary; keeping the leader lock",
                    )
                }
            } else if as_primary {
                // Started as primary but the lock is not ours (lost while starting).
                Plan::new(
                    vec![Action::Demote],
                    "postgres is starting as primary without the leader lock: demoting",
                )
            } else {
                Plan::wait("postgres is starting as a replica")
            }
        }
        Postgres::Running { primary: true } => {
            if leader_is_me {
                let mut actions = vec![Action::KeepLock];
                actions.extend(leader_extras);
                Plan::new(actions, "I am the leader with the lock")
            } else if let Some(other) = leader_other {
                Plan::new(
                    vec![Action::Demote],
                    format!("{other} holds the leader lock while I run as primary: demoting"),
                )
            } else if s.nofailover {
                Plan::new(
                    vec![Action::Demote],
                    "running as primary without the lock and the nofailover tag forbids \
                     taking it: demoting",
                )
            } else if let Some(to) = handed_to_other {
                Plan::new(
                    vec![Action::Demote],
                    format!("running as primary without the lock, which goes to {to}: demoting"),
                )
            } else {
                let mut actions = vec![Action::AcquireLock];
                actions.extend(leader_extras);
                Plan::new(
                    actions,
                    "the leader lock is free and I run as primary: taking it",
                )
            }
        }
        Postgres::Running { primary: false } => {
            if leader_is_me {
                Plan::new(
                    vec![Action::KeepLock, Action::Promote],
                    "I hold the leader lock and run as a replica: promoting",
                )
            } else if let Some(other) = leader_other {
                if o.upstream.as_deref() == Some(other) {
                    Plan::wait(format!("a replica, following the leader {other}"))
                } else {
                    Plan::new(
                        vec![Action::Follow {
                            leader: other.to_string(),
                        }],
                        format!("{other} is the leader: pointing replication at it"),
                    )
                }
            } else if s.nofailover {
                Plan::wait("no leader, and the nofailover tag forbids taking the lock")
            } else if let Some(to) = handed_to_other {
                Plan::wait(format!("the leader lock is being handed to {to}; waiting"))
            } else if let Some(why) = o
                .candidacy
                .as_ref()
                .and_then(|c| not_healthiest(&o.me, c, handed_to_me))
            {
                Plan::wait(format!(
                    "the leader lock is free, but {why}; not racing for it"
                ))
            } else {
                let mut actions = vec![Action::AcquireLock];
                actions.extend(leader_extras);
                actions.push(Action::Promote);
                Plan::new(
                    actions,
                    "the leader lock is free and I am the healthiest member: taking it and \
                     promoting",
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYSID: &str = "7300000000000000001";

    fn settings() -> Settings {
        Settings {
            ttl: Duration::from_secs(20),
            fence_margin: Duration::from_secs(3),
            primary_start_timeout: Duration::from_secs(300),
            nofailover: false,
            paused: false,
            use_pg_rewind: true,
        }
    }

    fn cluster(leader: Option<&str>) -> ClusterView {
        ClusterView {
            initialize: Some(SYSID.into()),
            leader: leader.map(str::to_string),
            has_config: true,
            failover_to: None,
        }
    }

    /// A healthy leader: running primary, lock held and renewed just now.
    fn leader_obs() -> Observation {
        let now = Instant::now();
        Observation {
            now,
            me: "m1".into(),
            settings: settings(),
            cluster: Some(cluster(Some("m1"))),
            lock: Lock {
                renewed_sent_at: Some(now),
            },
            data: DataDir::Initialized {
                sysid: SYSID.into(),
                was_primary: true,
            },
            postgres: Postgres::Running { primary: true },
            activity: None,
            upstream: None,
            candidacy: None,
        }
    }

    #[test]
    fn healthy_leader_keeps_the_lock() {
        let p = decide(&leader_obs());
        assert_eq!(p.actions, vec![Action::KeepLock]);
        assert_eq!(p.message, "I am the leader with the lock");
    }

    #[test]
    fn leader_writes_missing_initialize_and_config() {
        let mut o = leader_obs();
        o.cluster = Some(ClusterView {
            initialize: None,
            leader: Some("m1".into()),
            has_config: false,
            failover_to: None,
        });
        assert_eq!(
            decide(&o).actions,
            vec![
                Action::KeepLock,
                Action::WriteInitialize,
                Action::WriteConfig
            ]
        );
    }

    #[test]
    fn empty_cluster_bootstraps() {
        let mut o = leader_obs();
        o.cluster = Some(ClusterView::default());
        o.data = DataDir::Empty;
        o.postgres = Postgres::Stopped;
        o.lock = Lock::default();
        assert_eq!(decide(&o).actions, vec![Action::Bootstrap]);
    }

    #[test]
    fn nofailover_never_bootstraps() {
        let mut o = leader_obs();
        o.cluster = Some(ClusterView::default());
        o.data = DataDir::Empty;
        o.postgres = Postgres::Stopped;
        o.settings.nofailover = true;
        assert!(decide(&o).actions.is_empty());
    }

    #[test]
    fn someone_else_bootstrapping_means_wait() {
        let mut o = leader_obs();
        o.cluster = Some(ClusterView {
            initialize: Some(String::new()),
            leader: None,
            has_config: false,
            failover_to: None,
        });
        o.data = DataDir::Empty;
        o.postgres = Postgres::Stopped;
        let p = decide(&o);
        assert!(p.actions.is_empty());
        assert!(p.message.contains("another member is bootstrapping"));
    }

    #[test]
    fn existing_cluster_and_empty_data_builds_a_replica_from_the_leader() {
        let mut o = leader_obs();
        o.cluster = Some(cluster(Some("m2")));
        o.data = DataDir::Empty;
        o.postgres = Postgres::Stopped;
        o.lock = Lock::default();
        assert_eq!(
            decide(&o).actions,
            vec![
                Action::CreateReplica { from: "m2".into() },
                Action::StartPostgres(StartAs::Replica)
            ]
        );
    }

    #[test]
    fn no_leader_to_copy_from_means_wait() {
        let mut o = leader_obs();
        o.cluster = Some(cluster(None));
        o.data = DataDir::Empty;
        o.postgres = Postgres::Stopped;
        o.lock = Lock::default();
        let p = decide(&o);
        assert!(p.actions.is_empty());
        assert!(p.message.contains("waiting for a leader"), "{}", p.message);
        // Nor while a bootstrap is still going on.
        o.cluster = Some(ClusterView {
            initialize: Some(String::new()),
            leader: Some("m2".into()),
            has_config: false,
            failover_to: None,
        });
        assert!(decide(&o).actions.is_empty());
    }

    /// A running replica of `leader` (`None`: the lock is free).
    fn replica_obs(leader: Option<&str>, upstream: Option<&str>) -> Observation {
        let mut o = leader_obs();
        o.cluster = Some(cluster(leader));
        o.lock = Lock::default();
        o.postgres = Postgres::Running { primary: false };
        o.data = DataDir::Initialized {
            sysid: SYSID.into(),
            was_primary: false,
        };
        o.upstream = upstream.map(str::to_string);
        o
    }

    #[test]
    fn a_replica_follows_a_new_leader() {
        let o = replica_obs(Some("m2"), Some("m2"));
        let p = decide(&o);
        assert!(p.actions.is_empty());
        assert!(
            p.message.contains("following the leader m2"),
            "{}",
            p.message
        );
        let o = replica_obs(Some("m3"), Some("m2"));
        assert_eq!(
            decide(&o).actions,
            vec![Action::Follow {
                leader: "m3".into()
            }]
        );
        let o = replica_obs(Some("m3"), None);
        assert_eq!(
            decide(&o).actions,
            vec![Action::Follow {
                leader: "m3".into()
            }]
        );
    }

    fn peer(name: &str, primary: bool, wal: u64) -> Peer {
        Peer {
            name: name.into(),
            primary,
            wal,
            nofailover: false,
        }
    }

    #[test]
    fn the_healthiest_replica_races_for_a_free_lock() {
        let mut o = replica_obs(None, Some("m2"));
        o.candidacy = Some(Candidacy {
            my_wal: 1000,
            cluster_optime: 1000,
            max_lag: 1 << 20,
            peers: vec![peer("m3", false, 1000), peer("m4", false, 900)],
            in_sync_key: true,
        });
        assert_eq!(
            decide(&o).actions,
            vec![Action::AcquireLock, Action::Promote]
        );
    }

    #[test]
    fn a_former_primary_rewinds_before_following_another_leader() {
        let mut o = leader_obs();
        o.lock = Lock::default();
        o.cluster = Some(cluster(Some("m2")));
        o.postgres = Postgres::Crashed;
        assert_eq!(
            decide(&o).actions,
            vec![
                Action::Rewind { from: "m2".into() },
                Action::StartPostgres(StartAs::Replica)
            ]
        );
        // Already a standby, or rewinding disabled: just start as a replica.
        o.data = DataDir::Initialized {
            sysid: SYSID.into(),
            was_primary: false,
        };
        assert_eq!(
            decide(&o).actions,
            vec![Action::StartPostgres(StartAs::Replica)]
        );
        o.data = DataDir::Initialized {
            sysid: SYSID.into(),
            was_primary: true,
        };
        o.settings.use_pg_rewind = false;
        assert_eq!(
            decide(&o).actions,
            vec![Action::StartPostgres(StartAs::Replica)]
        );
    }

    #[test]
    fn a_switchover_hands_the_free_lock_to_its_candidate_only() {
        let candidacy = Candidacy {
            my_wal: 1000,
            cluster_optime: 1000,
            max_lag: 1 << 20,
            peers: vec![peer("m3", false, 2000)],
            in_sync_key: true,
        };
        // The chosen member races even though m3 has more WAL.
        let mut o = replica_obs(None, Some("m2"));
        o.cluster.as_mut().unwrap().failover_to = Some("m1".into());
        o.candidacy = Some(candidacy.clone());
        assert_eq!(
            decide(&o).actions,
            vec![Action::AcquireLock, Action::Promote]
        );
        // Another member waits, whatever its WAL.
        let mut o = replica_obs(None, Some("m2"));
        o.cluster.as_mut().unwrap().failover_to = Some("m3".into());
        o.candidacy = Some(Candidacy {
            peers: vec![],
            ..candidacy
        });
        let p = decide(&o);
        assert!(p.actions.is_empty());
        assert!(p.message.contains("handed to m3"), "{}", p.message);
        // The old primary, stopped or still running, never takes the lock back.
        let mut o = leader_obs();
        o.lock = Lock::default();
        o.cluster = Some(ClusterView {
            failover_to: Some("m3".into()),
            ..cluster(None)
        });
        o.postgres = Postgres::Stopped;
        assert_eq!(
            decide(&o).actions,
            vec![Action::StartPostgres(StartAs::Replica)]
        );
        o.postgres = Postgres::Running { primary: true };
        assert_eq!(decide(&o).actions, vec![Action::Demote]);
    }

    #[test]
    fn a_replica_behind_others_or_a_live_primary_does_not_race() {
        let base = Candidacy {
            my_wal: 1000,
            cluster_optime: 1000,
            max_lag: 1 << 20,
            peers: vec![],
            in_sync_key: true,
        };
        for (c, why) in [
            (
                Candidacy {
                    peers: vec![peer("m2", true, 900)],
                    ..base.clone()
                },
                "m2 still runs as a primary",
            ),
            (
                Candidacy {
                    peers: vec![peer("m3", false, 1001)],
                    ..base.clone()
                },
                "m3 has more WAL",
            ),
            (
                Candidacy {
                    cluster_optime: 1000 + (1 << 20) + 1,
                    ..base.clone()
                },
                "more than maximum_lag_on_failover",
            ),
            (
                Candidacy {
                    in_sync_key: false,
                    ..base.clone()
                },
                "does not list me as a synchronous standby",
            ),
        ] {
            let mut o = replica_obs(None, Some("m2"));
            o.candidacy = Some(c);
            let p = decide(&o);
            assert!(p.actions.is_empty(), "{why}: {p:?}");
            assert!(p.message.contains(why), "{}", p.message);
        }
        // A member with the nofailover tag being ahead does not stop us.
        let mut o = replica_obs(None, Some("m2"));
        o.candidacy = Some(Candidacy {
            peers: vec![Peer {
                nofailover: true,
                ..peer("m3", false, 5000)
            }],
            ..base
        });
        assert_eq!(
            decide(&o).actions,
            vec![Action::AcquireLock, Action::Promote]
        );
    }

    #[test]
    fn sysid_mismatch_is_fatal() {
        let mut o = leader_obs();
        o.cluster = Some(ClusterView {
            initialize: Some("7399999999999999999".into()),
            ..cluster(Some("m1"))
        });
        let p = decide(&o);
        assert!(matches!(&p.actions[..], [Action::Fatal(m)] if m.contains("system ID mismatch")));
    }

    #[test]
    fn crashed_postgres_with_lock_restarts_as_primary() {
        let mut o = leader_obs();
        o.postgres = Postgres::Crashed;
        let p = decide(&o);
        assert_eq!(
            p.actions,
            vec![Action::KeepLock, Action::StartPostgres(StartAs::Primary)]
        );
        assert!(p.message.contains("crashed"));
    }

    #[test]
    fn stopped_former_primary_takes_free_lock_before_starting() {
        let mut o = leader_obs();
        o.cluster = Some(cluster(None));
        o.postgres = Postgres::Stopped;
        o.lock = Lock::default();
        assert_eq!(
            decide(&o).actions,
            vec![Action::AcquireLock, Action::StartPostgres(StartAs::Primary)]
        );
    }

    #[test]
    fn stopped_former_replica_starts_read_only_first() {
        let mut o = leader_obs();
        o.cluster = Some(cluster(None));
        o.postgres = Postgres::Stopped;
        o.lock = Lock::default();
        o.data = DataDir::Initialized {
            sysid: SYSID.into(),
            was_primary: false,
        };
        assert_eq!(
            decide(&o).actions,
            vec![Action::StartPostgres(StartAs::Replica)]
        );
    }

    #[test]
    fn stopped_with_another_leader_starts_as_replica() {
        let mut o = leader_obs();
        o.cluster = Some(cluster(Some("m2")));
        o.postgres = Postgres::Stopped;
        o.lock = Lock::default();
        o.data = DataDir::Initialized {
            sysid: SYSID.into(),
            was_primary: false,
        };
        assert_eq!(
            decide(&o).actions,
            vec![Action::StartPostgres(StartAs::Replica)]
        );
    }

    #[test]
    fn primary_seeing_another_leader_demotes() {
        let mut o = leader_obs();
        o.cluster = Some(cluster(Some("m2")));
        let p = decide(&o);
        assert_eq!(p.actions, vec![Action::Demote]);
        assert!(p.message.contains("m2 holds the leader lock"));
    }

    #[test]
    fn primary_with_free_lock_takes_it() {
        let mut o = leader_obs();
        o.cluster = Some(cluster(None));
        assert_eq!(decide(&o).actions, vec![Action::AcquireLock]);
    }

    #[test]
    fn primary_with_nofailover_and_free_lock_demotes() {
        let mut o = leader_obs();
        o.cluster = Some(cluster(None));
        o.settings.nofailover = true;
        assert_eq!(decide(&o).actions, vec![Action::Demote]);
    }

    #[test]
    fn replica_with_free_lock_races_and_promotes() {
        let mut o = leader_obs();
        o.cluster = Some(cluster(None));
        o.postgres = Postgres::Running { primary: false };
        o.lock = Lock::default();
        assert_eq!(
            decide(&o).actions,
            vec![Action::AcquireLock, Action::Promote]
        );
    }

    #[test]
    fn replica_holding_the_lock_promotes() {
        let mut o = leader_obs();
        o.postgres = Postgres::Running { primary: false };
        assert_eq!(decide(&o).actions, vec![Action::KeepLock, Action::Promote]);
    }

    #[test]
    fn etcd_outage_before_deadline_keeps_primary() {
        let mut o = leader_obs();
        o.cluster = None;
        o.now += Duration::from_secs(10);
        let p = decide(&o);
        assert!(p.actions.is_empty(), "{p:?}");
        // The sentence stays the same from cycle to cycle (it is logged on change only).
        assert!(
            p.message.contains("17 s after the last lock renewal"),
            "{}",
            p.message
        );
    }

    #[test]
    fn etcd_outage_past_deadline_fences() {
        let mut o = leader_obs();
        o.cluster = None;
        // ttl 20 − margin 3 = 17 s after the last renewal was sent.
        o.now += Duration::from_secs(17);
        assert_eq!(decide(&o).actions, vec![Action::Fence]);
    }

    #[test]
    fn fence_deadline_is_renewal_plus_ttl_minus_margin() {
        let o = leader_obs();
        let sent = o.lock.renewed_sent_at.unwrap();
        assert_eq!(
            fence_deadline(&o.lock, &o.settings),
            Some(sent + Duration::from_secs(17))
        );
        assert_eq!(fence_deadline(&Lock::default(), &o.settings), None);
    }

    #[test]
    fn etcd_outage_for_a_primary_without_lock_fences_at_once() {
        let mut o = leader_obs();
        o.cluster = None;
        o.lock = Lock::default();
        assert_eq!(decide(&o).actions, vec![Action::Fence]);
    }

    #[test]
    fn etcd_outage_after_fence_restarts_read_only() {
        let mut o = leader_obs();
        o.cluster = None;
        o.lock = Lock::default();
        o.postgres = Postgres::Stopped;
        assert_eq!(
            decide(&o).actions,
            vec![Action::StartPostgres(StartAs::Replica)]
        );
    }

    #[test]
    fn etcd_outage_for_a_replica_does_nothing() {
        let mut o = leader_obs();
        o.cluster = None;
        o.lock = Lock::default();
        o.postgres = Postgres::Running { primary: false };
        assert!(decide(&o).actions.is_empty());
    }

    #[test]
    fn activity_in_progress_only_keeps_the_lock() {
        let mut o = leader_obs();
        o.activity = Some(Activity::Stopping);
        assert_eq!(decide(&o).actions, vec![Action::KeepLock]);
        o.cluster = Some(cluster(Some("m2")));
        assert!(decide(&o).actions.is_empty());
    }

    #[test]
    fn starting_primary_keeps_lock_then_gives_up_after_timeout() {
        let mut o = leader_obs();
        o.postgres = Postgres::Starting {
            as_primary: true,
            since: o.now,
        };
        assert_eq!(decide(&o).actions, vec![Action::KeepLock]);
        o.now += Duration::from_secs(301);
        o.lock.renewed_sent_at = Some(o.now);
        assert_eq!(decide(&o).actions, vec![Action::GiveUpLock]);
    }

    #[test]
    fn starting_primary_without_lock_demotes() {
        let mut o = leader_obs();
        o.cluster = Some(cluster(Some("m2")));
        o.postgres = Postgres::Starting {
            as_primary: true,
            since: o.now,
        };
        assert_eq!(decide(&o).actions, vec![Action::Demote]);
    }

    #[test]
    fn paused_cluster_never_touches_postgres() {
        let mut o = leader_obs();
        o.settings.paused = true;
        assert_eq!(decide(&o).actions, vec![Action::KeepLock]);
        o.postgres = Postgres::Crashed;
        assert!(decide(&o).actions.is_empty());
        // Even past the fence deadline with etcd down, a paused primary is left alone.
        let mut o = leader_obs();
        o.settings.paused = true;
        o.cluster = None;
        o.now += Duration::from_secs(60);
        assert!(decide(&o).actions.is_empty());
    }

    #[test]
    fn sysid_validity() {
        assert!(valid_sysid(SYSID));
        assert!(!valid_sysid(""));
        assert!(!valid_sysid("123"));
        assert!(!valid_sysid("73000000000000000x1"));
    }
}
