//! `/metrics`: Prometheus text exposition with Patroni's metric names, help texts, types
//! and `{scope="…",name="…"}` labels, so existing dashboards and alerts keep working.
//! Pure function of the node status.

use std::fmt::Write;

use super::state::{PostgresState, Role, Snapshot, Xlog};
use super::status::NodeStatus;

/// Escape a label value (`\`, `"` and newlines), as the exposition format requires.
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Patroni's version with each component zero-padded to two digits: `4.1.4` → `040104`.
fn padded_version(v: &str) -> String {
    v.split('.').map(|p| format!("{p:0>2}")).collect()
}

/// Render `/metrics`.
pub fn render(snap: &Snapshot, st: &NodeStatus<'_>) -> String {
    let labels = format!(
        "{{scope=\"{}\",name=\"{}\"}}",
        escape_label(&snap.scope),
        escape_label(&snap.name)
    );
    let mut out = String::with_capacity(4096);
    let mut metric = |name: &str, help: &str, kind: &str, value: &str| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name}{labels} {value}");
    };
    let flag = |b: bool| if b { "1" } else { "0" };
    let pg = st.pg;
    let (location, received, replayed, replayed_ts, paused) = match pg.map(|p| &p.xlog) {
        Some(Xlog::Primary { location }) => (*location, 0, 0, None, false),
        Some(Xlog::Replica {
            received_location,
            replayed_location,
            replayed_timestamp,
            paused,
        }) => (
            0,
            received_location.unwrap_or(0),
            replayed_location.unwrap_or(0),
            *replayed_timestamp,
            *paused,
        ),
        None => (0, 0, 0, None, false),
    };
    let running = st.state_enum == Some(PostgresState::Running);

    metric(
        "patroni_version",
        "Patroni semver without periods.",
        "gauge",
        &padded_version(&snap.version),
    );
    metric(
        "patroni_postgres_running",
        "Value is 1 if Postgres is running, 0 otherwise.",
        "gauge",
        flag(running),
    );
    let start = pg
        .and_then(|p| p.postmaster_start_time)
        .map_or_else(|| "0".to_string(), |t| t.epoch_seconds());
    metric(
        "patroni_postmaster_start_time",
        "Epoch seconds since Postgres started.",
        "gauge",
        &start,
    );
    metric(
        "patroni_primary",
        "Value is 1 if this node is the leader, 0 otherwise.",
        "gauge",
        flag(st.role == Role::Primary),
    );
    metric(
        "patroni_xlog_location",
        "Current location of the Postgres transaction log, 0 if this node is not the leader.",
        "counter",
        &location.to_string(),
    );
    metric(
        "patroni_standby_leader",
        "Value is 1 if this node is the standby_leader, 0 otherwise.",
        "gauge",
        flag(st.role == Role::StandbyLeader),
    );
    metric(
        "patroni_replica",
        "Value is 1 if this node is a replica, 0 otherwise.",
        "gauge",
        flag(st.role == Role::Replica),
    );
    metric(
        "patroni_sync_standby",
        "Value is 1 if this node is a sync standby, 0 otherwise.",
        "gauge",
        flag(st.sync_standby),
    );
    metric(
        "patroni_quorum_standby",
        "Value is 1 if this node is a quorum standby, 0 otherwise.",
        "gauge",
        flag(st.quorum_standby),
    );
    metric(
        "patroni_xlog_received_location",
        "Current location of the received Postgres transaction log, 0 if this node is not a replica.",
        "counter",
        &received.to_string(),
    );
    metric(
        "patroni_xlog_replayed_location",
        "Current location of the replayed Postgres transaction log, 0 if this node is not a replica.",
        "counter",
        &replayed.to_string(),
    );
    let replayed_ts = replayed_ts.map_or_else(|| "0".to_string(), |t| t.epoch_seconds());
    metric(
        "patroni_xlog_replayed_timestamp",
        "Current timestamp of the replayed Postgres transaction log, 0 if null.",
        "gauge",
        &replayed_ts,
    );
    metric(
        "patroni_xlog_paused",
        "Value is 1 if the Postgres xlog is paused, 0 otherwise.",
        "gauge",
        flag(paused),
    );
    let server_version = pg.map_or(0, |p| p.server_version);
    if server_version >= 90_600 {
        metric(
            "patroni_postgres_streaming",
            "Value is 1 if Postgres is streaming, 0 otherwise.",
            "gauge",
            flag(st.replication_state() == Some("streaming")),
        );
        metric(
            "patroni_postgres_in_archive_recovery",
            "Value is 1 if Postgres is replicating from archive, 0 otherwise.",
            "gauge",
            flag(st.replication_state() == Some("in archive recovery")),
        );
    }
    metric(
        "patroni_postgres_server_version",
        "Version of Postgres (if running), 0 otherwise.",
        "gauge",
        &server_version.to_string(),
    );
    metric(
        "patroni_cluster_unlocked",
        "Value is 1 if the cluster is unlocked, 0 if locked.",
        "gauge",
        flag(st.cluster_unlocked),
    );
    metric(
        "patroni_failsafe_mode_is_active",
        "Value is 1 if failsafe mode is active, 0 if inactive.",
        "gauge",
        flag(st.failsafe_mode_is_active),
    );
    let timeline = pg.and_then(|p| p.timeline).unwrap_or(0);
    metric(
        "patroni_postgres_timeline",
        "Postgres timeline of this node (if running), 0 otherwise.",
        "counter",
        &timeline.to_string(),
    );
    metric(
        "patroni_dcs_last_seen",
        "Epoch timestamp when DCS was last contacted successfully by Patroni.",
        "gauge",
        &st.dcs_last_seen.to_string(),
    );
    metric(
        "patroni_pending_restart",
        "Value is 1 if the node needs a restart, 0 otherwise.",
        "gauge",
        flag(!snap.pending_restart_reason.is_empty()),
    );
    metric(
        "patroni_is_paused",
        "Value is 1 if auto failover is disabled, 0 otherwise.",
        "gauge",
        flag(st.pause),
    );

    let _ = writeln!(
        out,
        "# HELP patroni_postgres_state Numeric representation of Postgres state."
    );
    let values: Vec<String> = PostgresState::ALL
        .iter()
        .map(|s| format!("{}={}", s.metric_index(), s.metric_name()))
        .collect();
    let _ = writeln!(out, "# Values: {}", values.join(", "));
    let _ = writeln!(out, "# TYPE patroni_postgres_state gauge");
    let state_value = st
        .state_enum
        .map_or_else(|| "-1".to_string(), |s| s.metric_index().to_string());
    let _ = writeln!(out, "patroni_postgres_state{labels} {state_value}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::state::{ReplicationState, SyncMode, SyncState};
    use crate::api::status::node_status;
    use crate::api::status::tests::{docs_primary, docs_replica};
    use std::time::Instant;

    fn value_of(text: &str, metric: &str) -> String {
        let prefix = format!("{metric}{{");
        let line = text
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("{metric} missing in\n{text}"));
        line.rsplit(' ').next().unwrap().to_string()
    }

    #[test]
    fn primary_metrics_match_the_documented_example() {
        let now = Instant::now();
        let mut s = docs_primary(now);
        s.scope = "batman".into();
        let text = render(&s, &node_status(&s, now));
        assert!(text.contains(
            "# HELP patroni_version Patroni semver without periods.\n# TYPE patroni_version gauge\npatroni_version{scope=\"batman\",name=\"patroni1\"} 040000\n"
        ));
        assert_eq!(value_of(&text, "patroni_postgres_running"), "1");
        assert_eq!(
            value_of(&text, "patroni_postmaster_start_time"),
            "1724873966.352526"
        );
        assert_eq!(value_of(&text, "patroni_primary"), "1");
        assert_eq!(value_of(&text, "patroni_xlog_location"), "67395656");
        assert_eq!(value_of(&text, "patroni_replica"), "0");
        assert_eq!(value_of(&text, "patroni_postgres_streaming"), "0");
        assert_eq!(value_of(&text, "patroni_postgres_server_version"), "160004");
        assert_eq!(value_of(&text, "patroni_cluster_unlocked"), "0");
        assert_eq!(value_of(&text, "patroni_postgres_timeline"), "1");
        assert_eq!(value_of(&text, "patroni_dcs_last_seen"), "1692356718");
        assert_eq!(value_of(&text, "patroni_is_paused"), "0");
        assert_eq!(value_of(&text, "patroni_postgres_state"), "5");
        assert!(text.contains(
            "# Values: 0=initdb, 1=initdb_failed, 2=custom_bootstrap, 3=custom_bootstrap_failed, 4=creating_replica, 5=running, 6=starting, 7=bootstrap_starting, 8=start_failed, 9=restarting, 10=restart_failed, 11=stopping, 12=stopped, 13=stop_failed, 14=crashed\n"
        ));
        assert!(text.contains("# TYPE patroni_xlog_location counter\n"));
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn replica_metrics() {
        let now = Instant::now();
        let mut s = docs_replica(now);
        s.config.synchronous_mode = SyncMode::On;
        s.config.paused = true;
        s.cluster.as_mut().unwrap().sync = SyncState {
            leader: Some("patroni0".into()),
            sync_standby: vec!["patroni1".into()],
            quorum: 0,
        };
        let text = render(&s, &node_status(&s, now));
        assert_eq!(value_of(&text, "patroni_replica"), "1");
        assert_eq!(value_of(&text, "patroni_primary"), "0");
        assert_eq!(value_of(&text, "patroni_sync_standby"), "1");
        assert_eq!(
            value_of(&text, "patroni_xlog_received_location"),
            "67419744"
        );
        assert_eq!(
            value_of(&text, "patroni_xlog_replayed_location"),
            "67419744"
        );
        assert_eq!(value_of(&text, "patroni_xlog_replayed_timestamp"), "0");
        assert_eq!(value_of(&text, "patroni_xlog_location"), "0");
        assert_eq!(value_of(&text, "patroni_postgres_streaming"), "1");
        assert_eq!(value_of(&text, "patroni_postgres_in_archive_recovery"), "0");
        assert_eq!(value_of(&text, "patroni_is_paused"), "1");

        s.postgres.as_mut().unwrap().replication_state = Some(ReplicationState::InArchiveRecovery);
        let text = render(&s, &node_status(&s, now));
        assert_eq!(value_of(&text, "patroni_postgres_streaming"), "0");
        assert_eq!(value_of(&text, "patroni_postgres_in_archive_recovery"), "1");
    }

    #[test]
    fn stopped_and_unknown_states() {
        let now = Instant::now();
        let mut s = docs_primary(now);
        s.postgres = None;
        s.postgres_state = PostgresState::Stopped;
        let text = render(&s, &node_status(&s, now));
        assert_eq!(value_of(&text, "patroni_postgres_running"), "0");
        assert_eq!(value_of(&text, "patroni_postgres_state"), "12");
        assert_eq!(value_of(&text, "patroni_postgres_server_version"), "0");
        assert_eq!(value_of(&text, "patroni_postmaster_start_time"), "0");
        assert!(
            !text.contains("patroni_postgres_streaming"),
            "needs a version"
        );
        s.postgres_state = PostgresState::Running;
        let text = render(&s, &node_status(&s, now));
        assert_eq!(value_of(&text, "patroni_postgres_state"), "-1");
        assert_eq!(value_of(&text, "patroni_postgres_running"), "0");
    }

    #[test]
    fn labels_are_escaped_and_versions_padded() {
        let now = Instant::now();
        let mut s = docs_primary(now);
        s.name = "we\"ird\\name".into();
        s.version = "4.1.4".into();
        let text = render(&s, &node_status(&s, now));
        assert!(
            text.contains("patroni_version{scope=\"demo\",name=\"we\\\"ird\\\\name\"} 040104\n")
        );
        assert_eq!(padded_version("10.2.13"), "100213");
    }
}
