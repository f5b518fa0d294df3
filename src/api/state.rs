//! What the REST API knows about this member and its cluster: a plain snapshot the
//! supervisor publishes through a `tokio::sync::watch` channel after each change.
//!
//! The API never queries postgres or etcd itself (Patroni's handlers run SQL per request);
//! it answers from the last snapshot. Two things keep that honest:
//! - the leader lock is published as the instant until which this member may act as leader
//!   ([`Snapshot::leader_until`]), so `/primary` turns 503 on its own when the HA loop stops
//!   renewing, even if no new snapshot arrives;
//! - the cluster view carries the instant it stops being valid ([`ClusterView::valid_until`],
//!   read time + `ttl`), which is Patroni's `dcs.cluster` rule: a stale view counts as "DCS not
//!   available" for health checks.
//!
//! These types are the API's own; the DCS and postgres modules convert their models into them.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;
use serde::ser::SerializeSeq;
use serde_json::{Map, Value};

use super::time::Timestamp;

/// The Patroni version manning reports (in `/patroni`, `/metrics` and member keys). Patroni
/// peers and patronictl compare it to enable features, so it must look like a Patroni
/// release that has the behaviour manning implements.
pub const PATRONI_COMPATIBLE_VERSION: &str = "4.1.4";

/// Patroni's `PostgresqlState`: what the supervisor is doing with postgres. The order is the
/// numeric value `/metrics` exports as `patroni_postgres_state` (fixed by Patroni).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PostgresState {
    Initdb,
    InitdbFailed,
    CustomBootstrap,
    CustomBootstrapFailed,
    CreatingReplica,
    Running,
    Starting,
    BootstrapStarting,
    StartFailed,
    Restarting,
    RestartFailed,
    Stopping,
    Stopped,
    StopFailed,
    Crashed,
}

impl PostgresState {
    /// Every state in metric order.
    pub const ALL: [PostgresState; 15] = [
        PostgresState::Initdb,
        PostgresState::InitdbFailed,
        PostgresState::CustomBootstrap,
        PostgresState::CustomBootstrapFailed,
        PostgresState::CreatingReplica,
        PostgresState::Running,
        PostgresState::Starting,
        PostgresState::BootstrapStarting,
        PostgresState::StartFailed,
        PostgresState::Restarting,
        PostgresState::RestartFailed,
        PostgresState::Stopping,
        PostgresState::Stopped,
        PostgresState::StopFailed,
        PostgresState::Crashed,
    ];

    /// The string Patroni writes in `/patroni` and member keys.
    pub fn as_str(self) -> &'static str {
        match self {
            PostgresState::Initdb => "initializing new cluster",
            PostgresState::InitdbFailed => "initdb failed",
            PostgresState::CustomBootstrap => "running custom bootstrap script",
            PostgresState::CustomBootstrapFailed => "custom bootstrap failed",
            PostgresState::CreatingReplica => "creating replica",
            PostgresState::Running => "running",
            PostgresState::Starting => "starting",
            PostgresState::BootstrapStarting => "starting after custom bootstrap",
            PostgresState::StartFailed => "start failed",
            PostgresState::Restarting => "restarting",
            PostgresState::RestartFailed => "restart failed",
            PostgresState::Stopping => "stopping",
            PostgresState::Stopped => "stopped",
            PostgresState::StopFailed => "stop failed",
            PostgresState::Crashed => "crashed",
        }
    }

    /// The enum name Patroni lists in the `# Values:` line of `/metrics`.
    pub fn metric_name(self) -> &'static str {
        match self {
            PostgresState::Initdb => "initdb",
            PostgresState::InitdbFailed => "initdb_failed",
            PostgresState::CustomBootstrap => "custom_bootstrap",
            PostgresState::CustomBootstrapFailed => "custom_bootstrap_failed",
            PostgresState::CreatingReplica => "creating_replica",
            PostgresState::Running => "running",
            PostgresState::Starting => "starting",
            PostgresState::BootstrapStarting => "bootstrap_starting",
            PostgresState::StartFailed => "start_failed",
            PostgresState::Restarting => "restarting",
            PostgresState::RestartFailed => "restart_failed",
            PostgresState::Stopping => "stopping",
            PostgresState::Stopped => "stopped",
            PostgresState::StopFailed => "stop_failed",
            PostgresState::Crashed => "crashed",
        }
    }

    /// The numeric value of `patroni_postgres_state`.
    pub fn metric_index(self) -> usize {
        PostgresState::ALL
            .iter()
            .position(|s| *s == self)
            .unwrap_or_default()
    }
}

/// Patroni's role strings (`PostgresqlRole`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Primary,
    Replica,
    StandbyLeader,
    Demoted,
    Uninitialized,
    Promoted,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::StandbyLeader => "standby_leader",
            Role::Demoted => "demoted",
            Role::Uninitialized => "uninitialized",
            Role::Promoted => "promoted",
        }
    }
}

/// How a replica gets WAL (Patroni's `replication_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplicationState {
    Streaming,
    InArchiveRecovery,
}

impl ReplicationState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicationState::Streaming => "streaming",
            ReplicationState::InArchiveRecovery => "in archive recovery",
        }
    }
}

/// WAL positions, as `/patroni`'s `xlog` object: a primary reports where it writes, a
/// replica what it received and replayed. LSNs are byte positions (`pg_wal_lsn_diff(x,
/// '0/0')`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Xlog {
    Primary {
        /// `pg_current_wal_flush_lsn()`.
        location: u64,
    },
    Replica {
        /// Written/received WAL (`written_lsn`, else `latest_end_lsn`, else replayed).
        received_location: Option<u64>,
        /// `pg_last_wal_replay_lsn()`.
        replayed_location: Option<u64>,
        /// `pg_last_xact_replay_timestamp()`.
        replayed_timestamp: Option<Timestamp>,
        /// `pg_is_wal_replay_paused()`.
        paused: bool,
    },
}

/// One walsender, from `pg_stat_get_wal_senders()` joined with the activity view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicationRow {
    pub usename: Option<String>,
    pub application_name: Option<String>,
    pub client_addr: Option<String>,
    pub state: Option<String>,
    pub sync_state: Option<String>,
    pub sync_priority: Option<i32>,
}

/// What the last status query against postgres returned. Absent when postgres is not
/// running or did not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresStatus {
    /// `pg_postmaster_start_time()`.
    pub postmaster_start_time: Option<Timestamp>,
    /// `server_version_num`, e.g. 150004.
    pub server_version: u32,
    pub xlog: Xlog,
    /// The timeline (a replica's cached one when it cannot read it from postgres).
    pub timeline: Option<u64>,
    /// The WAL receiver's `latest_end_lsn`: the leader's position as this replica last heard
    /// it. Used for lag checks, never shown.
    pub latest_end_lsn: Option<u64>,
    pub replication_state: Option<ReplicationState>,
    /// Walsenders on this node (empty on most replicas).
    pub replication: Vec<ReplicationRow>,
}

/// A parameter whose change waits for a restart (`pending_restart_reason`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingChange {
    pub old_value: String,
    pub new_value: String,
}

/// `synchronous_mode` from the dynamic configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    #[default]
    Off,
    On,
    Quorum,
}

/// The effective global (dynamic) settings the endpoints depend on. Patroni reads these from
/// the cluster's `/config`, falling back to local configuration when the DCS is unavailable;
/// the supervisor does that merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalConfig {
    /// `ttl` seconds: `/liveness` allows `ttl` (primary) or `2×ttl` (replica) since the HA
    /// loop's planned run.
    pub ttl: u32,
    /// `loop_wait` seconds.
    pub loop_wait: u32,
    /// Default `lag` for `/readiness`.
    pub maximum_lag_on_failover: u64,
    pub synchronous_mode: SyncMode,
    /// A `standby_cluster` section is configured: the leader is a standby leader.
    pub standby_cluster: bool,
    /// Maintenance mode (`pause: true`).
    pub paused: bool,
    /// `failsafe_mode: true`.
    pub failsafe_mode: bool,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        GlobalConfig {
            ttl: 30,
            loop_wait: 10,
            maximum_lag_on_failover: 1_048_576,
            synchronous_mode: SyncMode::Off,
            standby_cluster: false,
            paused: false,
            failsafe_mode: false,
        }
    }
}

impl GlobalConfig {
    /// Patroni's `is_synchronous_mode`: on or quorum, and not a standby cluster.
    pub fn is_synchronous_mode(&self) -> bool {
        self.synchronous_mode != SyncMode::Off && !self.standby_cluster
    }

    /// Patroni's `is_quorum_commit_mode`.
    pub fn is_quorum_commit_mode(&self) -> bool {
        self.is_synchronous_mode() && self.synchronous_mode == SyncMode::Quorum
    }
}

/// The `/sync` key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncState {
    /// The leader that wrote it; `None` means synchronous replication is not active.
    pub leader: Option<String>,
    /// Synchronous standbys (or quorum voters).
    pub sync_standby: Vec<String>,
    pub quorum: u32,
}

impl SyncState {
    /// Patroni's `SyncState.matches`: `name` is a listed standby (case-insensitive).
    pub fn matches(&self, name: &str) -> bool {
        self.leader.as_deref().is_some_and(|l| !l.is_empty())
            && self
                .sync_standby
                .iter()
                .any(|s| s.eq_ignore_ascii_case(name))
    }
}

/// One line of the `/history` key: `[timeline, lsn, reason, timestamp?, new_leader?]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub timeline: u64,
    pub lsn: u64,
    pub reason: String,
    pub timestamp: Option<String>,
    pub new_leader: Option<String>,
}

impl Serialize for HistoryEntry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let len =
            3 + usize::from(self.timestamp.is_some()) + usize::from(self.new_leader.is_some());
        let mut seq = s.serialize_seq(Some(len))?;
        seq.serialize_element(&self.timeline)?;
        seq.serialize_element(&self.lsn)?;
        seq.serialize_element(&self.reason)?;
        if let Some(ts) = &self.timestamp {
            seq.serialize_element(ts)?;
            if let Some(l) = &self.new_leader {
                seq.serialize_element(l)?;
            }
        } else if let Some(l) = &self.new_leader {
            seq.serialize_element(&Value::Null)?;
            seq.serialize_element(l)?;
        }
        seq.end()
    }
}

/// The `/failover` key: a pending manual failover or (scheduled) switchover.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FailoverKey {
    /// The member to demote (switchover).
    pub leader: Option<String>,
    /// The member to promote.
    pub candidate: Option<String>,
    pub scheduled_at: Option<Timestamp>,
}

/// A member as its `members/<name>` key describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterMember {
    pub name: String,
    /// `api_url` (`http://host:8008/patroni`).
    pub api_url: Option<String>,
    /// Host and port from `conn_url`.
    pub host: Option<String>,
    pub port: Option<u16>,
    /// The `role` string the member wrote (`primary`, `replica`, `promoted`, ...).
    pub role: String,
    /// The `state` string the member wrote (`running`, ...).
    pub state: String,
    /// `streaming` / `in archive recovery`, as written.
    pub replication_state: Option<String>,
    pub timeline: Option<u64>,
    /// Tags as written (absent when empty).
    pub tags: Map<String, Value>,
    pub pending_restart: bool,
    pub pending_restart_reason: Option<Value>,
    pub scheduled_restart: Option<Value>,
    /// `xlog_location`.
    pub lsn: Option<u64>,
    pub receive_lsn: Option<u64>,
    pub replay_lsn: Option<u64>,
}

/// The cluster as last read from the DCS.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterView {
    /// Read time + `ttl`: after this the view is too old for health decisions (Patroni's
    /// `dcs.cluster` returns nothing then). Set it to the read time when a read fails.
    pub valid_until: Instant,
    /// Holder of the leader key.
    pub leader: Option<String>,
    pub members: Vec<ClusterMember>,
    pub sync: SyncState,
    /// `status.optime`: the leader's last reported WAL position.
    pub last_lsn: u64,
    pub history: Vec<HistoryEntry>,
    /// The dynamic configuration (`config` key) when present and valid.
    pub config: Option<Map<String, Value>>,
    pub failover: Option<FailoverKey>,
    /// The `failsafe` key (only with `failsafe_mode`).
    pub failsafe: Option<Map<String, Value>>,
}

impl ClusterView {
    /// An empty, valid-until-`valid_until` view (tests and bootstrap).
    pub fn empty(valid_until: Instant) -> ClusterView {
        ClusterView {
            valid_until,
            leader: None,
            members: Vec::new(),
            sync: SyncState::default(),
            last_lsn: 0,
            history: Vec::new(),
            config: None,
            failover: None,
            failsafe: None,
        }
    }

    /// No member holds the leader key.
    pub fn is_unlocked(&self) -> bool {
        self.leader.as_deref().is_none_or(str::is_empty)
    }
}

/// Everything the REST API answers from. The supervisor publishes a new one whenever any of
/// it changes (`watch::Sender::send_replace`).
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// `name` (member name).
    pub name: String,
    /// `scope` (cluster name).
    pub scope: String,
    /// Patroni-compatible version string, see [`PATRONI_COMPATIBLE_VERSION`].
    pub version: String,

    /// What the supervisor is doing with postgres.
    pub postgres_state: PostgresState,
    /// The role `/patroni` reports: from `pg_is_in_recovery()` when postgres answers
    /// (`primary`/`replica`, or `standby_leader` for a standby cluster's leader), otherwise
    /// the role the supervisor last set.
    pub role: Role,
    /// The last status query; `None` when postgres is not running or did not answer (then
    /// `/patroni` shows only state and role, and state `unknown` if it should be running).
    pub postgres: Option<PostgresStatus>,
    /// `Database system identifier` from `pg_controldata`.
    pub database_system_identifier: Option<String>,
    /// Parameters waiting for a restart (non-empty means `pending_restart`).
    pub pending_restart_reason: BTreeMap<String, PendingChange>,
    /// A scheduled restart as Patroni shows it: `{"schedule": iso, ...filters}`.
    pub scheduled_restart: Option<Map<String, Value>>,
    /// Effective tags (configured tags plus dynamic ones such as `nosync`).
    pub tags: Map<String, Value>,
    /// The watchdog is required but not working.
    pub watchdog_failed: bool,

    /// `Some(t)` while this member holds the leader lock: it may act as leader until `t`
    /// (last successful renewal + ttl − safety margin). Compared with the request's time, so
    /// a stalled supervisor stops being reported as leader by itself.
    pub leader_until: Option<Instant>,
    /// When the HA loop plans its next cycle (Patroni's `next_run`); `/liveness` fails once
    /// this is more than `ttl` (primary) or `2×ttl` (replica) in the past.
    pub ha_next_run: Option<Instant>,
    /// DCS failsafe mode is active (leader kept without DCS by asking all members).
    pub failsafe_active: bool,
    /// Epoch seconds of the last successful DCS contact.
    pub dcs_last_seen: u64,
    /// Effective dynamic settings.
    pub config: GlobalConfig,
    /// The last cluster view read from the DCS; `None` before the first successful read.
    pub cluster: Option<ClusterView>,
}

impl Snapshot {
    /// A member that has not started postgres or talked to the DCS yet.
    pub fn new(name: impl Into<String>, scope: impl Into<String>) -> Snapshot {
        Snapshot {
            name: name.into(),
            scope: scope.into(),
            version: PATRONI_COMPATIBLE_VERSION.to_string(),
            postgres_state: PostgresState::Stopped,
            role: Role::Uninitialized,
            postgres: None,
            database_system_identifier: None,
            pending_restart_reason: BTreeMap::new(),
            scheduled_restart: None,
            tags: Map::new(),
            watchdog_failed: false,
            leader_until: None,
            ha_next_run: None,
            failsafe_active: false,
            dcs_last_seen: 0,
            config: GlobalConfig::default(),
            cluster: None,
        }
    }

    /// Patroni's `ha.is_leader()`: the lock is held and not past its deadline.
    pub fn is_leader(&self, now: Instant) -> bool {
        self.leader_until.is_some_and(|t| now < t)
    }

    /// Patroni's `dcs.cluster`: the cluster view if it is still fresh.
    pub fn fresh_cluster(&self, now: Instant) -> Option<&ClusterView> {
        self.cluster.as_ref().filter(|c| now < c.valid_until)
    }

    /// The `noloadbalance` tag is set (Patroni's `parse_bool` on the tag value).
    pub fn noloadbalance(&self) -> bool {
        self.tags
            .get("noloadbalance")
            .and_then(super::query::parse_bool)
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn state_strings_and_metric_indexes_are_patronis() {
        assert_eq!(PostgresState::Initdb.metric_index(), 0);
        assert_eq!(PostgresState::Running.metric_index(), 5);
        assert_eq!(PostgresState::Stopped.metric_index(), 12);
        assert_eq!(PostgresState::Crashed.metric_index(), 14);
        assert_eq!(PostgresState::Running.as_str(), "running");
        assert_eq!(PostgresState::Initdb.as_str(), "initializing new cluster");
        assert_eq!(
            PostgresState::BootstrapStarting.metric_name(),
            "bootstrap_starting"
        );
        assert_eq!(Role::StandbyLeader.as_str(), "standby_leader");
        assert_eq!(
            ReplicationState::InArchiveRecovery.as_str(),
            "in archive recovery"
        );
    }

    #[test]
    fn leader_lock_expires_by_itself() {
        let now = Instant::now();
        let mut s = Snapshot::new("a", "c");
        assert!(!s.is_leader(now));
        s.leader_until = Some(now + Duration::from_secs(5));
        assert!(s.is_leader(now));
        assert!(!s.is_leader(now + Duration::from_secs(5)));
    }

    #[test]
    fn cluster_view_goes_stale() {
        let now = Instant::now();
        let mut s = Snapshot::new("a", "c");
        assert!(s.fresh_cluster(now).is_none());
        s.cluster = Some(ClusterView::empty(now + Duration::from_secs(30)));
        assert!(s.fresh_cluster(now).is_some());
        assert!(s.fresh_cluster(now + Duration::from_secs(30)).is_none());
    }

    #[test]
    fn sync_matching_is_case_insensitive_and_needs_a_leader() {
        let mut sync = SyncState {
            leader: None,
            sync_standby: vec!["Node1".into()],
            quorum: 0,
        };
        assert!(!sync.matches("node1"));
        sync.leader = Some("node0".into());
        assert!(sync.matches("node1"));
        assert!(!sync.matches("node2"));
    }

    #[test]
    fn noloadbalance_tag_parsed_like_patroni() {
        let mut s = Snapshot::new("a", "c");
        assert!(!s.noloadbalance());
        s.tags
            .insert("noloadbalance".into(), Value::String("yes".into()));
        assert!(s.noloadbalance());
        s.tags.insert("noloadbalance".into(), Value::Bool(false));
        assert!(!s.noloadbalance());
    }

    #[test]
    fn history_lines_serialize_as_arrays() {
        let full = HistoryEntry {
            timeline: 1,
            lsn: 25_623_960,
            reason: "no recovery target specified".into(),
            timestamp: Some("2019-09-23T16:57:57+02:00".into()),
            new_leader: Some("pg1".into()),
        };
        assert_eq!(
            serde_json::to_string(&full).unwrap(),
            r#"[1,25623960,"no recovery target specified","2019-09-23T16:57:57+02:00","pg1"]"#
        );
        let short = HistoryEntry {
            timestamp: None,
            new_leader: None,
            ..full
        };
        assert_eq!(
            serde_json::to_string(&short).unwrap(),
            r#"[1,25623960,"no recovery target specified"]"#
        );
    }
}
