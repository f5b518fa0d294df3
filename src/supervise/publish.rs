//! What the supervisor tells others about this member: the `members/<name>` value in etcd
//! (Patroni's JSON, read by patronictl and peers) and the REST API snapshot. Both are built
//! from the node's state by plain functions; no IO here.

use std::time::{Duration, Instant};

use crate::api::Snapshot;
use crate::api::state::{
    ClusterMember as ApiMember, ClusterView as ApiCluster, GlobalConfig, HistoryEntry,
    PostgresState, PostgresStatus, Role as ApiRole, SyncMode, SyncState as ApiSync, Xlog,
};
use crate::api::time::Timestamp;
use crate::config::dynamic::SynchronousMode;
use crate::dcs::model::{Member, Role, State};
use crate::ha::decide;

use super::layout;
use super::node::{Node, PgRun};

impl Node {
    fn pg_state(&self) -> (State, PostgresState) {
        match self.pg {
            PgRun::Running => (State::Running, PostgresState::Running),
            PgRun::Starting { .. } => (State::Starting, PostgresState::Starting),
            PgRun::Crashed => (State::Crashed, PostgresState::Crashed),
            PgRun::Stopped => (State::Stopped, PostgresState::Stopped),
        }
    }

    pub(super) fn is_primary(&self) -> bool {
        self.pg == PgRun::Running && self.probe.as_ref().is_some_and(|p| !p.in_recovery)
    }

    /// The `members/<name>` value.
    pub(super) fn member(&self) -> Member {
        let (state, _) = self.pg_state();
        let role = if self.sysid.is_none() && self.pm.is_none() {
            Role::Uninitialized
        } else if self.is_primary() {
            Role::Primary
        } else {
            Role::Replica
        };
        let mut m = Member {
            conn_url: Some(layout::conn_url(&self.cfg)),
            api_url: Some(layout::api_url(&self.cfg)),
            state: Some(state),
            role: Some(role),
            version: Some(crate::api::state::PATRONI_COMPATIBLE_VERSION.to_string()),
            tags: layout::tags(&self.cfg),
            pause: self.dynamic.pause().then_some(true),
            ..Member::default()
        };
        if let (PgRun::Running, Some(p)) = (self.pg, &self.probe) {
            m.timeline = p.timeline.map(u64::from);
            if p.in_recovery {
                m.receive_lsn = p.receive_lsn.map(|l| l.0);
                m.replay_lsn = p.replay_lsn.map(|l| l.0);
                m.xlog_location = m.receive_lsn.max(m.replay_lsn);
                m.replication_state = replication_state(p).map(|r| r.as_str().to_string());
            } else {
                m.xlog_location = p.flush_wal_lsn.or(p.current_wal_lsn).map(|l| l.0);
                // `false` while the checkpoint after a promotion runs; absent once done.
                m.checkpoint_after_promote = self
                    .checkpoint_after_promote
                    .as_ref()
                    .filter(|done| !done.load(std::sync::atomic::Ordering::SeqCst))
                    .map(|_| false);
            }
        }
        m.extra.insert(
            "manning".into(),
            serde_json::Value::String(env!("CARGO_PKG_VERSION").into()),
        );
        m
    }

    /// The REST API's view of this member and its cluster.
    pub(super) fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot::new(self.cfg.name.clone(), self.cfg.scope.clone());
        let (_, pg_state) = self.pg_state();
        s.postgres_state = pg_state;
        s.role = if self.sysid.is_none() && self.pm.is_none() {
            ApiRole::Uninitialized
        } else if self.is_primary() {
            ApiRole::Primary
        } else {
            ApiRole::Replica
        };
        if let (PgRun::Running, Some(p)) = (self.pg, &self.probe) {
            let xlog = if p.in_recovery {
                Xlog::Replica {
                    received_location: p.receive_lsn.map(|l| l.0),
                    replayed_location: p.replay_lsn.map(|l| l.0),
                    replayed_timestamp: None,
                    paused: p.replay_paused.unwrap_or(false),
                }
            } else {
                Xlog::Primary {
                    location: p
                        .flush_wal_lsn
                        .or(p.current_wal_lsn)
                        .map(|l| l.0)
                        .unwrap_or(0),
                }
            };
            s.postgres = Some(PostgresStatus {
                postmaster_start_time: Some(Timestamp::from_unix_secs(
                    p.postmaster_start_epoch as i64,
                )),
                server_version: p.server_version,
                xlog,
                timeline: p.timeline.map(u64::from),
                latest_end_lsn: None,
                replication_state: replication_state(p),
                replication: if p.in_recovery {
                    Vec::new()
                } else {
                    self.walsenders
                        .iter()
                        .map(|w| crate::api::ReplicationRow {
                            usename: w.usename.clone(),
                            application_name: w.application_name.clone(),
                            client_addr: w.client_addr.clone(),
                            state: w.state.clone(),
                            sync_state: w.sync_state.clone(),
                            sync_priority: w.sync_priority,
                        })
                        .collect()
                },
            });
        }
        s.database_system_identifier = self.sysid.map(|x| x.to_string());
        s.tags = layout::tags(&self.cfg);
        // /primary answers 200 only until the fence deadline: a loop that stopped renewing
        // turns this member's health check red by itself.
        s.leader_until = if self.is_primary() {
            decide::fence_deadline(&self.lock, &self.settings())
        } else {
            None
        };
        s.ha_next_run = Some(self.next_run);
        s.dcs_last_seen = self.dcs_last_seen;
        s.config = GlobalConfig {
            ttl: self.dynamic.ttl() as u32,
            loop_wait: self.dynamic.loop_wait() as u32,
            maximum_lag_on_failover: self.dynamic.maximum_lag_on_failover(),
            synchronous_mode: match self.dynamic.synchronous_mode() {
                SynchronousMode::Off => SyncMode::Off,
                SynchronousMode::On => SyncMode::On,
                SynchronousMode::Quorum => SyncMode::Quorum,
            },
            standby_cluster: false,
            paused: self.dynamic.pause(),
            failsafe_mode: self.dynamic.failsafe_mode(),
        };
        s.cluster = self.cluster.as_ref().map(|c| {
            let valid_until = Instant::now() + Duration::from_secs(self.dynamic.ttl());
            let leader = c.leader.as_ref().map(|l| l.name.clone());
            ApiCluster {
                valid_until,
                leader: leader.clone(),
                members: c
                    .members
                    .iter()
                    .map(|m| {
                        let d = &m.data;
                        let (host, port) = d
                            .conn_url
                            .as_deref()
                            .and_then(host_port_of_url)
                            .map(|(h, p)| (Some(h), Some(p)))
                            .unwrap_or((None, None));
                        let is_leader = leader.as_deref() == Some(m.name.as_str());
                        ApiMember {
                            name: m.name.clone(),
                            api_url: d.api_url.clone(),
                            host,
                            port,
                            role: if is_leader {
                                "leader".into()
                            } else {
                                "replica".into()
                            },
                            state: d
                                .state
                                .as_ref()
                                .map(|s| s.as_str().to_string())
                                .unwrap_or_default(),
                            replication_state: d.replication_state.clone(),
                            timeline: d.timeline,
                            tags: d.tags.clone(),
                            pending_restart: d.pending_restart.unwrap_or(false),
                            pending_restart_reason: None,
                            scheduled_restart: None,
                            lsn: if is_leader { d.xlog_location } else { None },
                            receive_lsn: d.receive_lsn,
                            replay_lsn: d.replay_lsn,
                        }
                    })
                    .collect(),
                sync: ApiSync {
                    leader: c.sync.leader.clone(),
                    sync_standby: c.sync.voters().iter().map(|s| s.to_string()).collect(),
                    quorum: c.sync.quorum as u32,
                },
                last_lsn: c.status.optime,
                history: c
                    .history
                    .as_ref()
                    .map(|h| {
                        h.entries
                            .iter()
                            .map(|l| HistoryEntry {
                                timeline: l.timeline,
                                lsn: l.lsn,
                                reason: l.reason.clone(),
                                timestamp: l.timestamp.clone(),
                                new_leader: l.new_leader.clone(),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                config: c
                    .config
                    .as_ref()
                    .and_then(|cc| cc.data.as_object().cloned()),
                failover: None,
                failsafe: None,
            }
        });
        s
    }
}

/// The `history` key for a primary on a timeline with history file `switches` (modified at
/// `switched_at`): one entry per ended timeline, as Patroni writes them. The last switch is
/// ours (promoted at the file's time); earlier entries keep the time and leader already in
/// etcd for the same timeline.
pub(super) fn history_entries(
    switches: &[crate::postgres::timeline::Switch],
    switched_at: &str,
    me: &str,
    existing: &[crate::dcs::model::HistoryEntry],
) -> Vec<crate::dcs::model::HistoryEntry> {
    let last = switches.len().saturating_sub(1);
    switches
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let known = existing
                .iter()
                .find(|e| e.timeline == u64::from(s.timeline));
            let (timestamp, new_leader) = if i == last {
                (Some(switched_at.to_string()), Some(me.to_string()))
            } else {
                (
                    known.and_then(|k| k.timestamp.clone()),
                    known.and_then(|k| k.new_leader.clone()),
                )
            };
            crate::dcs::model::HistoryEntry {
                timeline: u64::from(s.timeline),
                lsn: s.lsn.0,
                reason: s.reason.clone(),
                timestamp,
                new_leader,
            }
        })
        .collect()
}

/// `("host", port)` of `postgres://host:port/db`.
/// A replica streams while its WAL receiver runs (Patroni reads `pg_stat_get_wal_receiver`);
/// otherwise it replays what it has. `None` on a primary.
fn replication_state(p: &crate::postgres::sql::Probe) -> Option<crate::api::ReplicationState> {
    use crate::api::ReplicationState;
    p.in_recovery.then(|| {
        if p.received_timeline.is_some() {
            ReplicationState::Streaming
        } else {
            ReplicationState::InArchiveRecovery
        }
    })
}

pub(super) fn host_port_of_url(url: &str) -> Option<(String, u16)> {
    crate::api::client::split_url(url).map(|(host, port, _)| (host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_marks_the_last_switch_as_ours_and_keeps_older_entries() {
        use crate::dcs::model::HistoryEntry;
        use crate::postgres::{Lsn, timeline::Switch};
        let switches = vec![
            Switch {
                timeline: 1,
                lsn: Lsn(100),
                reason: "no recovery target specified".into(),
            },
            Switch {
                timeline: 2,
                lsn: Lsn(200),
                reason: "no recovery target specified".into(),
            },
        ];
        let existing = vec![HistoryEntry {
            timeline: 1,
            lsn: 100,
            reason: "x".into(),
            timestamp: Some("2026-01-01T00:00:00+00:00".into()),
            new_leader: Some("m0".into()),
        }];
        let h = history_entries(&switches, "2026-11-22T01:00:00+00:00", "m1", &existing);
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].new_leader.as_deref(), Some("m0"));
        assert_eq!(h[0].timestamp.as_deref(), Some("2026-01-01T00:00:00+00:00"));
        assert_eq!(h[1].timeline, 2);
        assert_eq!(h[1].lsn, 200);
        assert_eq!(h[1].new_leader.as_deref(), Some("m1"));
        assert_eq!(h[1].timestamp.as_deref(), Some("2026-11-22T01:00:00+00:00"));
    }

    #[test]
    fn host_and_port_of_conn_url() {
        assert_eq!(
            host_port_of_url("postgres://10.0.0.2:5432/postgres"),
            Some(("10.0.0.2".into(), 5432))
        );
        assert_eq!(
            host_port_of_url("postgres://[::1]:15432/postgres"),
            Some(("::1".into(), 15432))
        );
        assert_eq!(host_port_of_url("garbage"), None);
    }
}
