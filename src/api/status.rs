//! JSON documents of the read-only endpoints: the node status (`/patroni` and the body of
//! every health check), `/cluster`, `/history`, `/config`, `/failsafe`.
//!
//! Field names, types, presence rules and key order follow Patroni's
//! `get_postgresql_status` + `_write_status_response` (api.py) and `cluster_as_json`
//! (utils.py), because Patroni peers read `/patroni` during the leader race and patronictl
//! reads `/cluster`. Pure functions of the snapshot.

use std::time::Instant;

use serde::Serialize;
use serde_json::{Map, Value};

use super::state::{ClusterView, PostgresState, PostgresStatus, Role, Snapshot, Xlog};

/// The node status as Patroni's `get_postgresql_status` computes it: what the health checks
/// decide on and what `/patroni` and `/metrics` print.
#[derive(Debug, Clone)]
pub struct NodeStatus<'a> {
    /// The state string; `unknown` when postgres should be running but did not answer.
    pub state: &'static str,
    /// The state as an enum (`None` for `unknown`).
    pub state_enum: Option<PostgresState>,
    pub role: Role,
    /// The postgres query result, when there is one.
    pub pg: Option<&'a PostgresStatus>,
    /// Listed in `/sync` in synchronous (non-quorum) mode.
    pub sync_standby: bool,
    /// Listed in `/sync` in quorum mode.
    pub quorum_standby: bool,
    pub pause: bool,
    /// No fresh cluster view, or nobody holds the leader key.
    pub cluster_unlocked: bool,
    pub failsafe_mode_is_active: bool,
    pub dcs_last_seen: u64,
}

impl NodeStatus<'_> {
    /// `xlog.replayed_location`, 0 when absent (as Patroni's `.get(..., 0)`).
    pub fn replayed_location(&self) -> u64 {
        match self.pg.map(|p| &p.xlog) {
            Some(Xlog::Replica {
                replayed_location, ..
            }) => replayed_location.unwrap_or(0),
            _ => 0,
        }
    }

    /// `xlog.received_location`, 0 when absent.
    pub fn received_location(&self) -> u64 {
        match self.pg.map(|p| &p.xlog) {
            Some(Xlog::Replica {
                received_location, ..
            }) => received_location.unwrap_or(0),
            _ => 0,
        }
    }

    /// The WAL receiver's `latest_end_lsn`, 0 when absent.
    pub fn latest_end_lsn(&self) -> u64 {
        self.pg.and_then(|p| p.latest_end_lsn).unwrap_or(0)
    }

    /// `replication_state` string, if known.
    pub fn replication_state(&self) -> Option<&'static str> {
        self.pg
            .and_then(|p| p.replication_state)
            .map(|r| r.as_str())
    }
}

/// Compute the node status at `now` (which decides whether the cluster view is fresh).
pub fn node_status(snap: &Snapshot, now: Instant) -> NodeStatus<'_> {
    let cluster = snap.fresh_cluster(now);
    let (state, state_enum) = match (&snap.postgres, snap.postgres_state) {
        (None, PostgresState::Running) => ("unknown", None),
        (_, s) => (s.as_str(), Some(s)),
    };
    let pg = snap.postgres.as_ref();
    let listed = pg.is_some()
        && snap.role == Role::Replica
        && snap.config.is_synchronous_mode()
        && cluster.is_some_and(|c| c.sync.matches(&snap.name));
    let quorum = snap.config.is_quorum_commit_mode();
    NodeStatus {
        state,
        state_enum,
        role: snap.role,
        pg,
        sync_standby: listed && !quorum,
        quorum_standby: listed && quorum,
        pause: snap.config.paused,
        cluster_unlocked: cluster.is_none_or(ClusterView::is_unlocked),
        failsafe_mode_is_active: snap.failsafe_active,
        dcs_last_seen: snap.dcs_last_seen,
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum XlogJson {
    Primary {
        location: u64,
    },
    Replica {
        received_location: Option<u64>,
        replayed_location: Option<u64>,
        replayed_timestamp: Option<String>,
        paused: bool,
    },
}

#[derive(Serialize)]
struct PatroniInfo<'a> {
    version: &'a str,
    scope: &'a str,
    name: &'a str,
}

/// Key order is Patroni's insertion order.
#[derive(Serialize)]
struct StatusJson<'a> {
    state: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    postmaster_start_time: Option<Option<String>>,
    role: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    xlog: Option<XlogJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sync_standby: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quorum_standby: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeline: Option<Option<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replication_state: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replication: Option<&'a [super::state::ReplicationRow]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pause: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_unlocked: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failsafe_mode_is_active: Option<bool>,
    dcs_last_seen: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<&'a Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    database_system_identifier: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending_restart: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending_restart_reason:
        Option<&'a std::collections::BTreeMap<String, super::state::PendingChange>>,
    patroni: PatroniInfo<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scheduled_restart: Option<&'a Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    watchdog_failed: Option<bool>,
}

fn some_if(b: bool) -> Option<bool> {
    b.then_some(true)
}

/// The `/patroni` document (also the body of GET health checks).
pub fn status_json(snap: &Snapshot, st: &NodeStatus<'_>) -> String {
    let pg = st.pg;
    let body = StatusJson {
        state: st.state,
        postmaster_start_time: pg.map(|p| p.postmaster_start_time.map(|t| t.python_str())),
        role: st.role.as_str(),
        server_version: pg.map(|p| p.server_version),
        xlog: pg.map(|p| match &p.xlog {
            Xlog::Primary { location } => XlogJson::Primary {
                location: *location,
            },
            Xlog::Replica {
                received_location,
                replayed_location,
                replayed_timestamp,
                paused,
            } => XlogJson::Replica {
                received_location: *received_location,
                replayed_location: *replayed_location,
                replayed_timestamp: replayed_timestamp.map(|t| t.python_str()),
                paused: *paused,
            },
        }),
        sync_standby: some_if(st.sync_standby),
        quorum_standby: some_if(st.quorum_standby),
        timeline: pg.map(|p| p.timeline),
        replication_state: st.replication_state(),
        replication: pg
            .filter(|p| !p.replication.is_empty())
            .map(|p| p.replication.as_slice()),
        pause: some_if(st.pause),
        cluster_unlocked: some_if(st.cluster_unlocked),
        failsafe_mode_is_active: some_if(st.failsafe_mode_is_active),
        dcs_last_seen: st.dcs_last_seen,
        tags: Some(&snap.tags).filter(|t| !t.is_empty()),
        database_system_identifier: snap.database_system_identifier.as_deref(),
        pending_restart: some_if(!snap.pending_restart_reason.is_empty()),
        pending_restart_reason: Some(&snap.pending_restart_reason).filter(|r| !r.is_empty()),
        patroni: PatroniInfo {
            version: &snap.version,
            scope: &snap.scope,
            name: &snap.name,
        },
        scheduled_restart: snap.scheduled_restart.as_ref(),
        watchdog_failed: some_if(snap.watchdog_failed),
    };
    to_json(&body)
}

/// Serialize; our types cannot fail to serialize (string keys, finite numbers), but never
/// panic on a request path: fall back to an empty object.
fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".to_string())
}

/// Lag or LSN value in `/cluster`: a number or the string `unknown`.
#[derive(Serialize)]
#[serde(untagged)]
enum LsnField {
    Text(String),
    Bytes(u64),
}

#[derive(Serialize)]
struct ClusterMemberJson<'a> {
    name: &'a str,
    role: &'static str,
    state: &'a str,
    api_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeline: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending_restart: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending_restart_reason: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scheduled_restart: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<&'a Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    receive_lsn: Option<LsnField>,
    #[serde(skip_serializing_if = "Option::is_none")]
    receive_lag: Option<LsnField>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replay_lsn: Option<LsnField>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replay_lag: Option<LsnField>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lsn: Option<LsnField>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lag: Option<LsnField>,
}

#[derive(Serialize)]
struct ScheduledSwitchover<'a> {
    at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'a str>,
}

#[derive(Serialize)]
struct ClusterJson<'a> {
    members: Vec<ClusterMemberJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pause: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scheduled_switchover: Option<ScheduledSwitchover<'a>>,
    scope: &'a str,
}

/// PostgreSQL's `X/Y` LSN notation (no zero padding, as Patroni's `format_lsn`).
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// `(lsn, lag)` for one position of a non-leader member, relative to the leader's optime.
fn lsn_and_lag(pos: Option<u64>, cluster_lsn: u64) -> (LsnField, LsnField) {
    match pos {
        None | Some(0) => (
            LsnField::Text("unknown".into()),
            LsnField::Text("unknown".into()),
        ),
        Some(p) => (
            LsnField::Text(format_lsn(p)),
            LsnField::Bytes(cluster_lsn.saturating_sub(p)),
        ),
    }
}

/// The `/cluster` document from a cluster view (Patroni's `cluster_as_json` + `scope`).
pub fn cluster_json(snap: &Snapshot, cluster: &ClusterView) -> String {
    let cfg = &snap.config;
    let leader = cluster.leader.as_deref().filter(|l| !l.is_empty());
    let sync_role = if cfg.is_quorum_commit_mode() {
        "quorum_standby"
    } else {
        "sync_standby"
    };
    let mut members: Vec<ClusterMemberJson<'_>> = cluster
        .members
        .iter()
        .map(|m| {
            let is_leader = leader == Some(m.name.as_str());
            let role = if is_leader {
                if cfg.standby_cluster {
                    "standby_leader"
                } else if m.role == Role::Promoted.as_str() {
                    "promoted"
                } else {
                    "leader"
                }
            } else if cfg.is_synchronous_mode() && cluster.sync.matches(&m.name) {
                sync_role
            } else {
                "replica"
            };
            let state = match m.replication_state.as_deref() {
                Some(r) if role != "leader" && !r.is_empty() => r,
                _ => m.state.as_str(),
            };
            let mut j = ClusterMemberJson {
                name: &m.name,
                role,
                state,
                api_url: m.api_url.as_deref(),
                host: m.host.as_deref().filter(|h| !h.is_empty()),
                port: m.host.as_deref().filter(|h| !h.is_empty()).and(m.port),
                timeline: m.timeline,
                pending_restart: some_if(m.pending_restart),
                pending_restart_reason: m.pending_restart_reason.as_ref(),
                scheduled_restart: m.scheduled_restart.as_ref(),
                tags: Some(&m.tags).filter(|t| !t.is_empty()),
                receive_lsn: None,
                receive_lag: None,
                replay_lsn: None,
                replay_lag: None,
                lsn: None,
                lag: None,
            };
            if !is_leader {
                let (a, b) = lsn_and_lag(m.receive_lsn, cluster.last_lsn);
                j.receive_lsn = Some(a);
                j.receive_lag = Some(b);
                let (a, b) = lsn_and_lag(m.replay_lsn, cluster.last_lsn);
                j.replay_lsn = Some(a);
                j.replay_lag = Some(b);
                let (a, b) = lsn_and_lag(m.lsn, cluster.last_lsn);
                j.lsn = Some(a);
                j.lag = Some(b);
            }
            j
        })
        .collect();
    members.sort_by(|a, b| a.name.cmp(b.name));
    let scheduled_switchover = cluster.failover.as_ref().and_then(|f| {
        f.scheduled_at.map(|at| ScheduledSwitchover {
            at: at.isoformat(),
            from: f.leader.as_deref(),
            to: f.candidate.as_deref(),
        })
    });
    to_json(&ClusterJson {
        members,
        pause: some_if(cfg.paused),
        scheduled_switchover,
        scope: &snap.scope,
    })
}

/// The `/history` document.
pub fn history_json(cluster: &ClusterView) -> String {
    to_json(&cluster.history)
}

/// The `/config` document, `None` when there is no valid configuration (Patroni: 502).
pub fn config_json(cluster: &ClusterView) -> Option<String> {
    cluster.config.as_ref().map(to_json)
}

/// The `/failsafe` document, `None` when failsafe mode is off (Patroni: 502).
pub fn failsafe_json(cluster: &ClusterView) -> Option<String> {
    cluster.failsafe.as_ref().map(to_json)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::state::*;
    use crate::api::time::Timestamp;
    use serde_json::json;
    use std::time::Duration;

    /// The primary of Patroni's docs example ("A healthy cluster").
    pub(crate) fn docs_primary(now: Instant) -> Snapshot {
        let mut s = Snapshot::new("patroni1", "demo");
        s.version = "4.0.0".into();
        s.postgres_state = PostgresState::Running;
        s.role = Role::Primary;
        s.postgres = Some(PostgresStatus {
            postmaster_start_time: Some(Timestamp {
                unix_micros: 1_724_873_966_352_526,
                offset_secs: 0,
            }),
            server_version: 160_004,
            xlog: Xlog::Primary {
                location: 67_395_656,
            },
            timeline: Some(1),
            latest_end_lsn: None,
            replication_state: None,
            replication: ["patroni2", "patroni3"]
                .iter()
                .zip(["10.89.0.6", "10.89.0.2"])
                .map(|(app, addr)| ReplicationRow {
                    usename: Some("replicator".into()),
                    application_name: Some(app.to_string()),
                    client_addr: Some(addr.into()),
                    state: Some("streaming".into()),
                    sync_state: Some("async".into()),
                    sync_priority: Some(0),
                })
                .collect(),
        });
        s.dcs_last_seen = 1_692_356_718;
        s.tags.insert("clonefrom".into(), json!(true));
        s.database_system_identifier = Some("7268616322854375442".into());
        s.leader_until = Some(now + Duration::from_secs(20));
        let mut c = ClusterView::empty(now + Duration::from_secs(30));
        c.leader = Some("patroni1".into());
        s.cluster = Some(c);
        s
    }

    /// A streaming replica of the same cluster.
    pub(crate) fn docs_replica(now: Instant) -> Snapshot {
        let mut s = docs_primary(now);
        s.role = Role::Replica;
        s.leader_until = None;
        if let Some(pg) = s.postgres.as_mut() {
            pg.xlog = Xlog::Replica {
                received_location: Some(67_419_744),
                replayed_location: Some(67_419_744),
                replayed_timestamp: None,
                paused: false,
            };
            pg.latest_end_lsn = Some(67_419_744);
            pg.replication_state = Some(ReplicationState::Streaming);
            pg.replication.clear();
        }
        if let Some(c) = s.cluster.as_mut() {
            c.leader = Some("patroni0".into());
            c.last_lsn = 67_419_744;
        }
        s
    }

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn primary_status_matches_patronis_documented_example() {
        let now = Instant::now();
        let s = docs_primary(now);
        let got = parse(&status_json(&s, &node_status(&s, now)));
        let expected = json!({
          "state": "running",
          "postmaster_start_time": "2024-08-28 19:39:26.352526+00:00",
          "role": "primary",
          "server_version": 160004,
          "xlog": {"location": 67395656},
          "timeline": 1,
          "replication": [
            {"usename": "replicator", "application_name": "patroni2", "client_addr": "10.89.0.6",
             "state": "streaming", "sync_state": "async", "sync_priority": 0},
            {"usename": "replicator", "application_name": "patroni3", "client_addr": "10.89.0.2",
             "state": "streaming", "sync_state": "async", "sync_priority": 0}
          ],
          "dcs_last_seen": 1692356718,
          "tags": {"clonefrom": true},
          "database_system_identifier": "7268616322854375442",
          "patroni": {"version": "4.0.0", "scope": "demo", "name": "patroni1"}
        });
        assert_eq!(got, expected);
    }

    #[test]
    fn key_order_follows_patroni() {
        let now = Instant::now();
        let s = docs_primary(now);
        let text = status_json(&s, &node_status(&s, now));
        let pos = |k: &str| text.find(&format!("\"{k}\"")).unwrap();
        assert!(pos("state") < pos("postmaster_start_time"));
        assert!(pos("role") < pos("server_version"));
        assert!(pos("xlog") < pos("timeline"));
        assert!(pos("dcs_last_seen") < pos("tags"));
        assert!(pos("database_system_identifier") < pos("patroni"));
    }

    #[test]
    fn unlocked_replica_matches_documented_example() {
        let now = Instant::now();
        let mut s = docs_replica(now);
        s.cluster.as_mut().unwrap().leader = None;
        if let Some(pg) = s.postgres.as_mut() {
            pg.replication_state = None;
        }
        let got = parse(&status_json(&s, &node_status(&s, now)));
        assert_eq!(got["role"], "replica");
        assert_eq!(
            got["xlog"],
            json!({"received_location": 67419744, "replayed_location": 67419744,
                   "replayed_timestamp": null, "paused": false})
        );
        assert_eq!(got["cluster_unlocked"], true);
        assert!(got.get("replication").is_none(), "no walsenders, no key");
        assert!(got.get("latest_end_lsn").is_none(), "never shown");
    }

    #[test]
    fn paused_failsafe_pending_restart_and_flags() {
        let now = Instant::now();
        let mut s = docs_replica(now);
        s.config.paused = true;
        s.failsafe_active = true;
        s.watchdog_failed = true;
        s.pending_restart_reason.insert(
            "max_connections".into(),
            PendingChange {
                old_value: "100".into(),
                new_value: "101".into(),
            },
        );
        let mut sched = Map::new();
        sched.insert("schedule".into(), json!("2030-01-01T00:00:00+00:00"));
        s.scheduled_restart = Some(sched);
        let got = parse(&status_json(&s, &node_status(&s, now)));
        assert_eq!(got["pause"], true);
        assert_eq!(got["failsafe_mode_is_active"], true);
        assert_eq!(got["watchdog_failed"], true);
        assert_eq!(got["pending_restart"], true);
        assert_eq!(
            got["pending_restart_reason"],
            json!({"max_connections": {"old_value": "100", "new_value": "101"}})
        );
        assert_eq!(
            got["scheduled_restart"],
            json!({"schedule": "2030-01-01T00:00:00+00:00"})
        );
        assert_eq!(got["replication_state"], "streaming");
    }

    #[test]
    fn postgres_down_shows_state_and_role_only() {
        let now = Instant::now();
        let mut s = docs_primary(now);
        s.postgres = None;
        s.postgres_state = PostgresState::Stopped;
        s.role = Role::Demoted;
        let got = parse(&status_json(&s, &node_status(&s, now)));
        assert_eq!(got["state"], "stopped");
        assert_eq!(got["role"], "demoted");
        for k in [
            "xlog",
            "server_version",
            "timeline",
            "postmaster_start_time",
        ] {
            assert!(got.get(k).is_none(), "{k} must be absent");
        }
        assert_eq!(got["patroni"]["name"], "patroni1");

        // Running but the query failed: Patroni says "unknown".
        s.postgres_state = PostgresState::Running;
        let got = parse(&status_json(&s, &node_status(&s, now)));
        assert_eq!(got["state"], "unknown");
        // Starting and not answering yet stays "starting".
        s.postgres_state = PostgresState::Starting;
        let got = parse(&status_json(&s, &node_status(&s, now)));
        assert_eq!(got["state"], "starting");
    }

    #[test]
    fn sync_and_quorum_flags_need_sync_mode_a_fresh_view_and_replica_role() {
        let now = Instant::now();
        let mut s = docs_replica(now);
        s.cluster.as_mut().unwrap().sync = SyncState {
            leader: Some("patroni0".into()),
            sync_standby: vec!["patroni1".into()],
            quorum: 1,
        };
        assert!(!node_status(&s, now).sync_standby, "sync mode off");
        s.config.synchronous_mode = SyncMode::On;
        let st = node_status(&s, now);
        assert!(st.sync_standby && !st.quorum_standby);
        let got = parse(&status_json(&s, &st));
        assert_eq!(got["sync_standby"], true);
        assert!(got.get("quorum_standby").is_none());
        s.config.synchronous_mode = SyncMode::Quorum;
        let st = node_status(&s, now);
        assert!(!st.sync_standby && st.quorum_standby);
        // A stale view means "no DCS": no flag, and the cluster counts as unlocked.
        let later = now + Duration::from_secs(31);
        let st = node_status(&s, later);
        assert!(!st.quorum_standby);
        assert!(st.cluster_unlocked);
        // Standby clusters never report sync.
        s.config.synchronous_mode = SyncMode::On;
        s.config.standby_cluster = true;
        assert!(!node_status(&s, now).sync_standby);
    }

    fn member(name: &str, role: &str, lsn: Option<u64>) -> ClusterMember {
        ClusterMember {
            name: name.into(),
            api_url: Some(format!("http://10.89.0.{}:8008/patroni", name.len())),
            host: Some("10.89.0.4".into()),
            port: Some(5432),
            role: role.into(),
            state: "running".into(),
            replication_state: (role == "replica").then(|| "streaming".into()),
            timeline: Some(5),
            tags: Map::new(),
            lsn,
            receive_lsn: lsn,
            replay_lsn: lsn,
            ..ClusterMember::default()
        }
    }

    #[test]
    fn cluster_matches_documented_example() {
        let now = Instant::now();
        let mut s = docs_primary(now);
        let mut c = ClusterView::empty(now + Duration::from_secs(30));
        c.leader = Some("patroni1".into());
        c.last_lsn = 0x400_0060;
        let mut m1 = member("patroni1", "primary", Some(0x400_0060));
        m1.tags.insert("clonefrom".into(), json!(true));
        let mut m2 = member("patroni2", "replica", Some(0x400_0060));
        m2.host = Some("10.89.0.6".into());
        m2.port = Some(5433);
        m2.api_url = Some("http://10.89.0.6:8008/patroni".into());
        m2.tags.insert("clonefrom".into(), json!(true));
        m1.api_url = Some("http://10.89.0.4:8008/patroni".into());
        c.members = vec![m2, m1];
        c.failover = Some(FailoverKey {
            leader: Some("patroni1".into()),
            candidate: Some("patroni3".into()),
            scheduled_at: Some(Timestamp::parse("2023-09-24T10:36:00+02:00").unwrap()),
        });
        s.cluster = Some(c.clone());
        let got = parse(&cluster_json(&s, &c));
        let expected = json!({
          "members": [
            {"name": "patroni1", "role": "leader", "state": "running",
             "api_url": "http://10.89.0.4:8008/patroni", "host": "10.89.0.4", "port": 5432,
             "timeline": 5, "tags": {"clonefrom": true}},
            {"name": "patroni2", "role": "replica", "state": "streaming",
             "api_url": "http://10.89.0.6:8008/patroni", "host": "10.89.0.6", "port": 5433,
             "timeline": 5, "tags": {"clonefrom": true},
             "receive_lag": 0, "receive_lsn": "0/4000060", "replay_lag": 0,
             "replay_lsn": "0/4000060", "lag": 0, "lsn": "0/4000060"}
          ],
          "scope": "demo",
          "scheduled_switchover": {"at": "2023-09-24T10:36:00+02:00", "from": "patroni1", "to": "patroni3"}
        });
        assert_eq!(got, expected);
    }

    #[test]
    fn cluster_roles_lags_and_pause() {
        let now = Instant::now();
        let mut s = docs_primary(now);
        s.config.synchronous_mode = SyncMode::On;
        s.config.paused = true;
        let mut c = ClusterView::empty(now);
        c.leader = Some("a".into());
        c.last_lsn = 1000;
        c.sync = SyncState {
            leader: Some("a".into()),
            sync_standby: vec!["b".into()],
            quorum: 0,
        };
        let mut lagging = member("c", "replica", Some(400));
        lagging.receive_lsn = None;
        lagging.replay_lsn = Some(2000);
        c.members = vec![
            member("a", "promoted", Some(1000)),
            member("b", "replica", Some(1000)),
            lagging,
        ];
        let got = parse(&cluster_json(&s, &c));
        let m = &got["members"];
        assert_eq!(m[0]["role"], "promoted");
        assert_eq!(m[0]["state"], "running");
        assert_eq!(m[1]["role"], "sync_standby");
        assert_eq!(m[2]["role"], "replica");
        assert_eq!(m[2]["lag"], 600);
        assert_eq!(m[2]["lsn"], "0/190");
        assert_eq!(m[2]["receive_lsn"], "unknown");
        assert_eq!(m[2]["receive_lag"], "unknown");
        assert_eq!(m[2]["replay_lag"], 0, "ahead of the optime counts as 0");
        assert_eq!(got["pause"], true);
        assert!(got.get("scheduled_switchover").is_none());
        s.config.synchronous_mode = SyncMode::Quorum;
        let got = parse(&cluster_json(&s, &c));
        assert_eq!(got["members"][1]["role"], "quorum_standby");
        s.config.standby_cluster = true;
        let got = parse(&cluster_json(&s, &c));
        assert_eq!(got["members"][0]["role"], "standby_leader");
        assert_eq!(got["members"][1]["role"], "replica");
    }

    #[test]
    fn lsn_formatting() {
        assert_eq!(format_lsn(0x400_0060), "0/4000060");
        assert_eq!(format_lsn((0x16 << 32) | 0xB374_D848), "16/B374D848");
        assert_eq!(format_lsn(0), "0/0");
    }

    #[test]
    fn history_config_and_failsafe_documents() {
        let now = Instant::now();
        let mut c = ClusterView::empty(now);
        assert_eq!(history_json(&c), "[]");
        assert_eq!(config_json(&c), None);
        assert_eq!(failsafe_json(&c), None);
        c.history.push(HistoryEntry {
            timeline: 1,
            lsn: 25_623_960,
            reason: "no recovery target specified".into(),
            timestamp: Some("2019-09-23T16:57:57+02:00".into()),
            new_leader: None,
        });
        assert_eq!(
            parse(&history_json(&c)),
            json!([[
                1,
                25623960,
                "no recovery target specified",
                "2019-09-23T16:57:57+02:00"
            ]])
        );
        let cfg = json!({"ttl": 30, "loop_wait": 10, "postgresql": {"use_slots": true}});
        c.config = cfg.as_object().cloned();
        assert_eq!(parse(&config_json(&c).unwrap()), cfg);
        c.failsafe = json!({"a": "http://a:8008/patroni"}).as_object().cloned();
        assert_eq!(
            parse(&failsafe_json(&c).unwrap()),
            json!({"a": "http://a:8008/patroni"})
        );
    }
}
