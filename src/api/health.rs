//! The read-only endpoints: health checks (`/`, `/primary`, `/replica?lag=…`, …), liveness
//! and readiness probes, and the documents `/patroni`, `/cluster`, `/history`, `/config`,
//! `/failsafe`, `/metrics`.
//!
//! [`evaluate`] is a pure function of (method, path, query, snapshot, now). It mirrors
//! Patroni's routing (`do_<METHOD>_<first path segment>`, else the generic health check) and
//! its generic check, including its substring matching on the path: `/replica-foo` is a
//! replica check and an unknown path is 503, as with Patroni. HEAD and OPTIONS always take
//! the generic check and answer with the status alone, which is what HAProxy's
//! `option httpchk` (`OPTIONS / HTTP/1.0`) reads: 200 only on the primary.

use std::time::{Duration, Instant};

use super::metrics;
use super::query::{BaseUnit, Query, parse_int};
use super::reply::{Reply, error};
use super::state::{PostgresState, Role, Snapshot};
use super::status::{
    NodeStatus, cluster_json, config_json, failsafe_json, history_json, node_status, status_json,
};

/// The methods served without authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMethod {
    Get,
    Head,
    Options,
}

/// The first path segment, which picks the handler (Patroni's `parse_request`).
pub fn first_segment(path: &str) -> &str {
    path.trim_start_matches('/').split('/').next().unwrap_or("")
}

/// Answer a GET, HEAD or OPTIONS request.
pub fn evaluate(
    method: ReadMethod,
    path: &str,
    query: &Query,
    snap: &Snapshot,
    now: Instant,
) -> Reply {
    if method != ReadMethod::Get {
        return Reply::status(health_check(path, query, snap, now).0);
    }
    match first_segment(path) {
        "liveness" => Reply::status(liveness(snap, now)),
        "readiness" => Reply::status(match readiness(query, snap, now) {
            Ok(()) => 200,
            Err(reason) => {
                tracing::debug!("readiness check failure: {reason}");
                503
            }
        }),
        "patroni" => {
            let st = node_status(snap, now);
            Reply::json(200, status_json(snap, &st))
        }
        "cluster" => match &snap.cluster {
            Some(c) => Reply::json(200, cluster_json(snap, c)),
            None => Reply::text(503, "cluster state is not known: DCS not reached yet"),
        },
        "history" => match &snap.cluster {
            Some(c) => Reply::json(200, history_json(c)),
            None => Reply::text(503, "cluster state is not known: DCS not reached yet"),
        },
        "config" => match snap.cluster.as_ref().and_then(config_json) {
            Some(j) => Reply::json(200, j),
            None => error(502),
        },
        "failsafe" => match snap.cluster.as_ref().and_then(failsafe_json) {
            Some(j) => Reply::json(200, j),
            None => error(502),
        },
        "metrics" => {
            let st = node_status(snap, now);
            Reply::plain(200, metrics::render(snap, &st))
        }
        _ => {
            let (status, st) = health_check(path, query, snap, now);
            Reply::json(status, status_json(snap, &st))
        }
    }
}

/// Patroni's generic `do_GET`: the status code for `path`, and the node status for the body.
fn health_check<'a>(
    path: &str,
    query: &Query,
    snap: &'a Snapshot,
    now: Instant,
) -> (u16, NodeStatus<'a>) {
    let path = if path == "/" { "/primary" } else { path };
    let st = node_status(snap, now);
    let cluster = snap.fresh_cluster(now);

    let leader_optime = cluster.map_or(0, |c| c.last_lsn).max(st.latest_end_lsn());
    let max_lag = query
        .first("lag")
        .and_then(|l| parse_int(l, BaseUnit::Bytes))
        .unwrap_or(i128::MAX);
    let is_lagging = leader_optime != 0
        && i128::from(leader_optime) > i128::from(st.replayed_location()).saturating_add(max_lag);
    let matches_replication_state = match query.first("replication_state") {
        Some(wanted) => st.replication_state() == Some(wanted),
        None => true,
    };
    let replica = code(
        !snap.noloadbalance()
            && !is_lagging
            && st.role == Role::Replica
            && st.state == PostgresState::Running.as_str()
            && matches_replication_state,
    );

    let (leader, primary, standby_leader, replica) = if cluster.is_none() && st.pause {
        // DCS unreachable in maintenance mode: trust postgres' own role.
        (
            code(matches!(st.role, Role::Primary | Role::StandbyLeader)),
            code(st.role == Role::Primary),
            code(st.role == Role::StandbyLeader),
            replica,
        )
    } else if snap.is_leader(now) {
        if snap.config.standby_cluster {
            (
                200,
                503,
                code(matches!(st.role, Role::Replica | Role::StandbyLeader)),
                503,
            )
        } else {
            (200, 200, 503, replica)
        }
    } else {
        (503, 503, 503, replica)
    };

    let mut ignore_tags = false;
    let mut status = 503;
    if path.contains("standby_leader") || path.contains("standby-leader") {
        status = standby_leader;
        ignore_tags = true;
    } else if path.contains("leader") {
        status = leader;
        ignore_tags = true;
    } else if path.contains("master") || path.contains("primary") || path.contains("read-write") {
        status = primary;
        ignore_tags = true;
    } else if path.contains("replica") {
        status = replica;
    } else if path.contains("read-only") && !path.contains("sync") && !path.contains("quorum") {
        status = if primary == 200 || standby_leader == 200 {
            200
        } else {
            replica
        };
    } else if path.contains("health") {
        status = code(st.state == PostgresState::Running.as_str());
    } else if cluster.is_some() {
        let (sync, quorum) = (st.sync_standby, st.quorum_standby);
        let leading = primary == 200 || standby_leader == 200;
        status = match path {
            "/sync" | "/synchronous" if sync => replica,
            "/quorum" if quorum => replica,
            "/async" | "/asynchronous" if !sync && !quorum => replica,
            "/read-only-quorum" if leading => 200,
            "/read-only-quorum" if quorum => replica,
            "/read-only-sync" | "/read-only-synchronous" if leading => 200,
            "/read-only-sync" | "/read-only-synchronous" if sync => replica,
            _ => 503,
        };
    }

    if !ignore_tags && status == 200 && !tags_match(query, snap) {
        status = 503;
    }
    (status, st)
}

fn code(ok: bool) -> u16 {
    if ok { 200 } else { 503 }
}

/// `?tag_<key>=<value>` filters: every one must equal the node's tag. Non-string tag values
/// compare as Python prints them, lowercased (`true`, `1`); a missing tag fails.
fn tags_match(query: &Query, snap: &Snapshot) -> bool {
    query.iter_first().all(|(k, wanted)| {
        let Some(key) = k.strip_prefix("tag_") else {
            return true;
        };
        match snap.tags.get(key) {
            None | Some(serde_json::Value::Null) => false,
            Some(serde_json::Value::String(s)) => s == wanted,
            Some(other) => other.to_string().to_lowercase() == wanted,
        }
    })
}

/// `/liveness`: 200 when paused or the HA loop's planned run is less than `ttl` (primary) or
/// `2×ttl` (otherwise) in the past. No SQL, no DCS.
fn liveness(snap: &Snapshot, now: Instant) -> u16 {
    if snap.config.paused {
        return 200;
    }
    let is_primary = snap.role == Role::Primary && snap.postgres_state == PostgresState::Running;
    let threshold =
        Duration::from_secs(u64::from(snap.config.ttl) * if is_primary { 1 } else { 2 });
    code(snap.ha_next_run.is_some_and(|next| next + threshold > now))
}

/// `/readiness?lag=&mode=apply|write`: the leader is ready; a replica is ready when postgres
/// runs, streams, and is within `lag` (default `maximum_lag_on_failover`) of the leader.
fn readiness(query: &Query, snap: &Snapshot, now: Instant) -> Result<(), String> {
    if snap.is_leader(now) {
        return Ok(());
    }
    if snap.postgres_state != PostgresState::Running {
        return Err("PostgreSQL is not running".into());
    }
    let st = node_status(snap, now);
    if st.replication_state() != Some("streaming") {
        return Err("PostgreSQL replication state is not streaming".into());
    }
    let cluster = snap.fresh_cluster(now);
    let latest_end_lsn = st.latest_end_lsn();
    if cluster.is_none() && latest_end_lsn == 0 {
        if snap.failsafe_active {
            return Ok(());
        }
        return Err("DCS is not accessible".into());
    }
    let leader_optime = cluster.map_or(0, |c| c.last_lsn).max(latest_end_lsn);
    let (mode, location) = if query.first("mode") == Some("write") {
        ("write", st.received_location())
    } else {
        ("apply", st.replayed_location())
    };
    let lag = i128::from(leader_optime) - i128::from(location);
    let max_lag = query
        .first("lag")
        .and_then(|l| parse_int(l, BaseUnit::Bytes))
        .unwrap_or_else(|| i128::from(snap.config.maximum_lag_on_failover));
    if lag > max_lag {
        return Err(format!(
            "Replication {mode} lag {lag} exceeds maximum allowable {max_lag}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::reply::Body;
    use crate::api::state::*;
    use crate::api::status::tests::{docs_primary, docs_replica};
    use serde_json::json;

    fn get(path_and_query: &str, snap: &Snapshot, now: Instant) -> u16 {
        run(ReadMethod::Get, path_and_query, snap, now).status
    }

    fn run(method: ReadMethod, pq: &str, snap: &Snapshot, now: Instant) -> Reply {
        let (path, q) = pq.split_once('?').unwrap_or((pq, ""));
        evaluate(method, path, &Query::parse(q), snap, now)
    }

    const LEADER_PATHS: [&str; 5] = ["/", "/primary", "/read-write", "/master", "/leader"];

    #[test]
    fn primary_with_lock() {
        let now = Instant::now();
        let s = docs_primary(now);
        for p in LEADER_PATHS {
            assert_eq!(get(p, &s, now), 200, "{p}");
        }
        for p in [
            "/standby-leader",
            "/standby_leader",
            "/replica",
            "/sync",
            "/synchronous",
            "/async",
            "/asynchronous",
            "/quorum",
        ] {
            assert_eq!(get(p, &s, now), 503, "{p}");
        }
        for p in [
            "/read-only",
            "/read-only-sync",
            "/read-only-synchronous",
            "/read-only-quorum",
            "/health",
        ] {
            assert_eq!(get(p, &s, now), 200, "{p}");
        }
    }

    #[test]
    fn the_lock_deadline_is_checked_at_request_time() {
        let now = Instant::now();
        let s = docs_primary(now);
        let later = now + Duration::from_secs(21);
        for p in LEADER_PATHS {
            assert_eq!(get(p, &s, later), 503, "{p} after the lock deadline");
        }
        assert_eq!(get("/health", &s, later), 200, "postgres itself still runs");
    }

    #[test]
    fn haproxy_options_and_head_carry_no_body() {
        let now = Instant::now();
        let primary = docs_primary(now);
        let replica = docs_replica(now);
        for m in [ReadMethod::Options, ReadMethod::Head] {
            let r = run(m, "/", &primary, now);
            assert_eq!((r.status, r.body.clone()), (200, None));
            let r = run(m, "/", &replica, now);
            assert_eq!((r.status, r.body.clone()), (503, None));
            assert_eq!(run(m, "/replica", &replica, now), Reply::status(200));
            // Patroni routes HEAD/OPTIONS to the generic check even for /patroni.
            assert_eq!(run(m, "/patroni", &primary, now), Reply::status(503));
        }
    }

    #[test]
    fn get_health_checks_carry_the_status_document() {
        let now = Instant::now();
        let s = docs_replica(now);
        let r = run(ReadMethod::Get, "/primary", &s, now);
        assert_eq!(r.status, 503);
        let Some(Body::Json(j)) = r.body else {
            panic!("json body expected")
        };
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["role"], "replica");
        assert_eq!(v["patroni"]["scope"], "demo");
    }

    #[test]
    fn streaming_replica() {
        let now = Instant::now();
        let s = docs_replica(now);
        for p in LEADER_PATHS {
            assert_eq!(get(p, &s, now), 503, "{p}");
        }
        for p in [
            "/replica",
            "/read-only",
            "/health",
            "/async",
            "/asynchronous",
        ] {
            assert_eq!(get(p, &s, now), 200, "{p}");
        }
        for p in [
            "/sync",
            "/quorum",
            "/read-only-sync",
            "/read-only-quorum",
            "/foo",
            "/patronix",
        ] {
            assert_eq!(get(p, &s, now), 503, "{p}");
        }
        assert_eq!(get("/replica?replication_state=streaming", &s, now), 200);
        assert_eq!(
            get("/replica?replication_state=in+archive+recovery", &s, now),
            503
        );
        // Substring routing, as Patroni: anything containing "replica" is a replica check.
        assert_eq!(get("/replicas/x", &s, now), 200);
    }

    #[test]
    fn replica_lag_in_bytes_and_units() {
        let now = Instant::now();
        let mut s = docs_replica(now);
        // The leader is 20 MiB ahead of what we replayed.
        let replayed = 67_419_744u64;
        s.cluster.as_mut().unwrap().last_lsn = replayed + 20 * 1_048_576;
        assert_eq!(get("/replica", &s, now), 200, "no lag limit given");
        assert_eq!(get("/replica?lag=10MB", &s, now), 503);
        assert_eq!(get("/replica?lag=16kB", &s, now), 503);
        assert_eq!(get("/replica?lag=64MB", &s, now), 200);
        assert_eq!(get("/replica?lag=1GB", &s, now), 200);
        assert_eq!(
            get("/replica?lag=20971520", &s, now),
            200,
            "exactly at the limit"
        );
        assert_eq!(get("/replica?lag=20971519", &s, now), 503);
        assert_eq!(
            get("/replica?lag=garbage", &s, now),
            200,
            "unreadable: no limit"
        );
        assert_eq!(get("/async?lag=10MB", &s, now), 503);
        assert_eq!(get("/read-only?lag=10MB", &s, now), 503);
        // The WAL receiver's latest_end_lsn counts when it is ahead of the DCS optime.
        s.cluster.as_mut().unwrap().last_lsn = 0;
        assert_eq!(get("/replica?lag=10MB", &s, now), 200);
        s.postgres.as_mut().unwrap().latest_end_lsn = Some(replayed + 20 * 1_048_576);
        assert_eq!(get("/replica?lag=10MB", &s, now), 503);
        // Without any optime, no lag can be computed: never lagging.
        s.postgres.as_mut().unwrap().latest_end_lsn = None;
        s.cluster = None;
        assert_eq!(get("/replica?lag=0", &s, now), 200);
    }

    #[test]
    fn tag_filters() {
        let now = Instant::now();
        let mut s = docs_replica(now);
        s.tags.insert("zone".into(), json!("eu-1"));
        s.tags.insert("nosync".into(), json!(true));
        s.tags.insert("weight".into(), json!(3));
        s.tags.insert("none".into(), serde_json::Value::Null);
        assert_eq!(get("/replica?tag_zone=eu-1", &s, now), 200);
        assert_eq!(get("/replica?tag_zone=eu-2", &s, now), 503);
        assert_eq!(get("/replica?tag_nosync=true&tag_weight=3", &s, now), 200);
        assert_eq!(get("/replica?tag_nosync=True", &s, now), 503, "lowercased");
        assert_eq!(get("/replica?tag_missing=x", &s, now), 503);
        assert_eq!(get("/replica?tag_none=None", &s, now), 503);
        assert_eq!(get("/read-only?tag_zone=eu-2", &s, now), 503);
        assert_eq!(get("/health?tag_zone=eu-2", &s, now), 503);
        // Ignored for leader checks.
        let mut p = docs_primary(now);
        p.tags.insert("zone".into(), json!("eu-1"));
        for path in [
            "/?tag_zone=x",
            "/primary?tag_zone=x",
            "/leader?tag_zone=x",
            "/read-write?tag_zone=x",
        ] {
            assert_eq!(get(path, &p, now), 200, "{path}");
        }
        // A failing check stays failed whatever the tags say.
        assert_eq!(get("/replica?tag_zone=eu-1", &p, now), 503);
    }

    #[test]
    fn noloadbalance_replicas_are_out() {
        let now = Instant::now();
        let mut s = docs_replica(now);
        s.tags.insert("noloadbalance".into(), json!(true));
        assert_eq!(get("/replica", &s, now), 503);
        assert_eq!(get("/read-only", &s, now), 503);
        assert_eq!(get("/health", &s, now), 200);
    }

    #[test]
    fn stopped_or_unknown_postgres() {
        let now = Instant::now();
        let mut s = docs_replica(now);
        s.postgres = None;
        s.postgres_state = PostgresState::Stopped;
        for p in ["/replica", "/health", "/read-only", "/async"] {
            assert_eq!(get(p, &s, now), 503, "{p}");
        }
        s.postgres_state = PostgresState::Running; // but not answering: "unknown"
        assert_eq!(get("/health", &s, now), 503);
        assert_eq!(get("/replica", &s, now), 503);
        // A leader whose postgres is down still holds the lock: /leader says so.
        let mut p = docs_primary(now);
        p.postgres = None;
        p.postgres_state = PostgresState::Starting;
        assert_eq!(get("/leader", &p, now), 200);
        assert_eq!(get("/health", &p, now), 503);
    }

    #[test]
    fn synchronous_and_quorum_standbys() {
        let now = Instant::now();
        let mut s = docs_replica(now);
        s.config.synchronous_mode = SyncMode::On;
        s.cluster.as_mut().unwrap().sync = SyncState {
            leader: Some("patroni0".into()),
            sync_standby: vec!["patroni1".into()],
            quorum: 1,
        };
        for p in [
            "/sync",
            "/synchronous",
            "/read-only-sync",
            "/read-only-synchronous",
            "/replica",
        ] {
            assert_eq!(get(p, &s, now), 200, "{p}");
        }
        for p in ["/async", "/asynchronous", "/quorum", "/read-only-quorum"] {
            assert_eq!(get(p, &s, now), 503, "{p}");
        }
        s.config.synchronous_mode = SyncMode::Quorum;
        for p in ["/quorum", "/read-only-quorum"] {
            assert_eq!(get(p, &s, now), 200, "{p}");
        }
        for p in ["/sync", "/async", "/read-only-sync"] {
            assert_eq!(get(p, &s, now), 503, "{p}");
        }
        // Sync checks need a fresh DCS view.
        let stale = now + Duration::from_secs(31);
        s.postgres.as_mut().unwrap().latest_end_lsn = None;
        assert_eq!(get("/quorum", &s, stale), 503);
        assert_eq!(get("/replica", &s, stale), 200);
    }

    #[test]
    fn standby_cluster_leader() {
        let now = Instant::now();
        let mut s = docs_replica(now);
        s.config.standby_cluster = true;
        s.role = Role::StandbyLeader;
        s.leader_until = Some(now + Duration::from_secs(10));
        assert_eq!(get("/standby-leader", &s, now), 200);
        assert_eq!(get("/standby_leader", &s, now), 200);
        assert_eq!(get("/leader", &s, now), 200);
        assert_eq!(get("/primary", &s, now), 503);
        assert_eq!(get("/", &s, now), 503);
        assert_eq!(get("/replica", &s, now), 503);
        assert_eq!(get("/read-only", &s, now), 200);
        assert_eq!(get("/read-only-sync", &s, now), 200);
    }

    #[test]
    fn paused_without_dcs_trusts_the_postgres_role() {
        let now = Instant::now();
        let mut s = docs_primary(now);
        s.config.paused = true;
        s.leader_until = None; // no lock (DCS gone)
        s.cluster = None;
        assert_eq!(get("/primary", &s, now), 200);
        assert_eq!(get("/leader", &s, now), 200);
        assert_eq!(get("/standby-leader", &s, now), 503);
        // Not paused: no lock, no primary.
        s.config.paused = false;
        assert_eq!(get("/primary", &s, now), 503);
        // Paused but the view is fresh: the lock decides.
        s.config.paused = true;
        s.cluster = Some(ClusterView::empty(now + Duration::from_secs(30)));
        assert_eq!(get("/primary", &s, now), 503);
    }

    #[test]
    fn liveness_timing() {
        let now = Instant::now();
        let mut s = docs_primary(now); // ttl 30
        s.ha_next_run = Some(now);
        assert_eq!(get("/liveness", &s, now + Duration::from_secs(29)), 200);
        assert_eq!(get("/liveness", &s, now + Duration::from_secs(30)), 503);
        let r = run(ReadMethod::Get, "/liveness", &s, now);
        assert_eq!(r.body, None, "status only");
        // Replicas get 2×ttl.
        let mut r = docs_replica(now);
        r.ha_next_run = Some(now);
        assert_eq!(get("/liveness", &r, now + Duration::from_secs(59)), 200);
        assert_eq!(get("/liveness", &r, now + Duration::from_secs(60)), 503);
        // A primary whose postgres is not running counts as a replica here.
        s.postgres_state = PostgresState::Crashed;
        assert_eq!(get("/liveness", &s, now + Duration::from_secs(59)), 200);
        // Paused: always alive. Never ran: not alive.
        s.ha_next_run = None;
        assert_eq!(get("/liveness", &s, now), 503);
        s.config.paused = true;
        assert_eq!(get("/liveness", &s, now + Duration::from_secs(3600)), 200);
        // HEAD /liveness is the generic check (Patroni has no do_HEAD_liveness).
        s.config.paused = false;
        s.ha_next_run = Some(now);
        assert_eq!(run(ReadMethod::Head, "/liveness", &s, now).status, 503);
    }

    #[test]
    fn readiness_rules() {
        let now = Instant::now();
        let leader = docs_primary(now);
        assert_eq!(
            run(ReadMethod::Get, "/readiness", &leader, now),
            Reply::status(200)
        );

        let mut s = docs_replica(now);
        let replayed = 67_419_744u64;
        assert_eq!(get("/readiness", &s, now), 200);
        // 2 MiB behind: over maximum_lag_on_failover (1 MiB) by default.
        s.cluster.as_mut().unwrap().last_lsn = replayed + 2 * 1_048_576;
        assert_eq!(get("/readiness", &s, now), 503);
        assert_eq!(get("/readiness?lag=4MB", &s, now), 200);
        s.config.maximum_lag_on_failover = 4 * 1_048_576;
        assert_eq!(get("/readiness", &s, now), 200);
        s.config.maximum_lag_on_failover = 1_048_576;
        // mode=write measures received WAL instead of replayed WAL.
        if let Some(Xlog::Replica {
            received_location, ..
        }) = s.postgres.as_mut().map(|p| &mut p.xlog)
        {
            *received_location = Some(replayed + 2 * 1_048_576);
        }
        assert_eq!(get("/readiness?mode=write", &s, now), 200);
        assert_eq!(get("/readiness?mode=apply", &s, now), 503);

        let mut archive = docs_replica(now);
        archive.postgres.as_mut().unwrap().replication_state =
            Some(ReplicationState::InArchiveRecovery);
        assert_eq!(get("/readiness", &archive, now), 503);

        let mut stopped = docs_replica(now);
        stopped.postgres_state = PostgresState::Starting;
        assert_eq!(get("/readiness", &stopped, now), 503);

        // No DCS view and no WAL receiver position: only failsafe makes it ready.
        let mut nodcs = docs_replica(now);
        nodcs.cluster = None;
        nodcs.postgres.as_mut().unwrap().latest_end_lsn = None;
        assert_eq!(get("/readiness", &nodcs, now), 503);
        nodcs.failsafe_active = true;
        assert_eq!(get("/readiness", &nodcs, now), 200);
        // With a receiver position the lag is measured against it.
        let mut rx = docs_replica(now);
        rx.cluster = None;
        rx.postgres.as_mut().unwrap().latest_end_lsn = Some(replayed + 2 * 1_048_576);
        assert_eq!(get("/readiness", &rx, now), 503);
        assert_eq!(get("/readiness?lag=3MB", &rx, now), 200);
    }

    #[test]
    fn documents() {
        let now = Instant::now();
        let mut s = docs_primary(now);
        let r = run(ReadMethod::Get, "/patroni", &s, now);
        assert_eq!(r.status, 200);
        assert!(matches!(r.body, Some(Body::Json(_))));
        // /patroni is 200 even when nothing is healthy.
        let mut down = s.clone();
        down.postgres = None;
        down.postgres_state = PostgresState::Crashed;
        down.leader_until = None;
        assert_eq!(get("/patroni", &down, now), 200);

        assert_eq!(get("/cluster", &s, now), 200);
        assert_eq!(get("/history", &s, now), 200);
        assert_eq!(get("/config", &s, now), 502, "no config in DCS");
        assert_eq!(get("/failsafe", &s, now), 502);
        s.cluster.as_mut().unwrap().config = json!({"ttl": 30}).as_object().cloned();
        let r = run(ReadMethod::Get, "/config", &s, now);
        assert_eq!((r.status, r.body_str()), (200, r#"{"ttl":30}"#));
        // /cluster and /history use the last view even when it is stale.
        assert_eq!(get("/cluster", &s, now + Duration::from_secs(3600)), 200);
        s.cluster = None;
        assert_eq!(get("/cluster", &s, now), 503);
        assert_eq!(get("/history", &s, now), 503);
        assert_eq!(get("/config", &s, now), 502);

        let r = run(ReadMethod::Get, "/metrics", &s, now);
        assert_eq!(r.status, 200);
        assert!(matches!(r.body, Some(Body::Plain(ref t)) if t.contains("patroni_primary{")));
    }

    /// Arbitrary request lines never panic any parser or decision on the read path.
    #[test]
    fn arbitrary_paths_and_queries_never_panic() {
        let now = Instant::now();
        let s = docs_replica(now);
        let alphabet: Vec<char> = "/?&=%+-_.:0123456789abcdefxXkMGTBEe €\u{0}\"'tag_lagmode"
            .chars()
            .collect();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..10_000 {
            let len = (next() % 40) as usize;
            let text: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let (path, q) = text.split_once('?').unwrap_or((&text, ""));
            let query = Query::parse(q);
            for m in [ReadMethod::Get, ReadMethod::Head] {
                let r = evaluate(m, path, &query, &s, now);
                assert!(r.status == 200 || r.status == 502 || r.status == 503);
            }
            let _ = parse_int(&text, BaseUnit::Bytes);
            let _ = parse_int(&text, BaseUnit::Seconds);
            let _ = crate::api::time::Timestamp::parse(&text);
            let _ = crate::api::control::postgres_version_to_int(&text);
        }
    }

    #[test]
    fn first_segment_routing() {
        assert_eq!(first_segment("/"), "");
        assert_eq!(first_segment("/patroni"), "patroni");
        assert_eq!(first_segment("//cluster/x"), "cluster");
        let now = Instant::now();
        let s = docs_primary(now);
        assert_eq!(get("/liveness/extra", &s, now), 503, "never ran");
        assert_eq!(get("/patroni/anything", &s, now), 200);
    }
}
