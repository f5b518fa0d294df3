//! The DCS client against a real etcd started by the harness: lease, leader lock, the
//! initialize race, CAS writes, the watch, unreachable etcd and malformed values (etcd auth is in
//! `dcs_secrets.rs`).

mod support;

use std::time::Duration;

use manning::dcs::{
    Dcs, DcsError, DcsSettings, Etcd3Section, Failover, History, HistoryEntry, Member, Role, State,
    Status, SyncState,
};
use serde_json::json;
use support::*;
use tokio::time::Instant;

fn dcs(etcd: &Etcd, name: &str) -> Dcs {
    Dcs::new(etcd.dcs_settings(name, 30, 5)).expect("dcs")
}

const LEADER: &str = "/manning/enterprises/leader";

/// `etcdctl` prints lease ids in hex.
fn lease_hex(id: i64) -> String {
    format!("{id:x}")
}

fn leader_lease(etcd: &Etcd) -> Option<i64> {
    let out = etcd.ctl(&["get", LEADER, "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("etcdctl json");
    v["kvs"][0]["lease"].as_i64()
}

fn member(role: Role, lsn: u64) -> Member {
    Member {
        conn_url: Some("postgres://127.0.0.1:5432/postgres".into()),
        api_url: Some("http://127.0.0.1:8008/patroni".into()),
        state: Some(State::Running),
        role: Some(role),
        version: Some("4.1.4".into()),
        xlog_location: Some(lsn),
        timeline: Some(1),
        ..Member::default()
    }
}

#[tokio::test]
async fn lease_grant_and_keepalive() {
    let etcd = Etcd::start();
    let d = Dcs::new(etcd.dcs_settings("n1", 3, 5)).unwrap();
    assert!(matches!(d.keepalive().await, Err(DcsError::NoLease)));

    let before = Instant::now();
    let granted = d.refresh_lease().await.expect("grant");
    assert!(granted.regranted);
    assert_eq!(granted.ttl, Duration::from_secs(3));
    assert!(granted.sent_at >= before);

    for _ in 0..3 {
        let before = Instant::now();
        let r = d.keepalive().await.expect("keepalive");
        let after = Instant::now();
        assert_eq!(r.lease_id, granted.lease_id);
        assert!(!r.regranted);
        assert_eq!(r.ttl, Duration::from_secs(3));
        // The timestamp is taken before the request leaves.
        assert!(before <= r.sent_at && r.sent_at <= after);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // etcd agrees the lease is alive with our TTL.
    let out = etcd.ctl(&["lease", "timetolive", &lease_hex(granted.lease_id)]);
    assert!(out.contains("granted with TTL(3s)"), "{out}");

    // A lease revoked behind our back is reported as lost, not as unreachable.
    etcd.ctl(&["lease", "revoke", &lease_hex(granted.lease_id)]);
    match d.keepalive().await {
        Err(DcsError::LeaseLost { lease }) => assert_eq!(lease, granted.lease_id),
        other => panic!("expected LeaseLost, got {other:?}"),
    }
    // refresh_lease replaces it.
    let again = d.refresh_lease().await.unwrap();
    assert!(again.regranted);
    assert_ne!(again.lease_id, granted.lease_id);
}

#[tokio::test]
async fn two_members_race_for_the_lock_and_exactly_one_wins() {
    let etcd = Etcd::start();
    let (a, b) = (dcs(&etcd, "n1"), dcs(&etcd, "n2"));
    for round in 0..5 {
        let (ra, rb) = tokio::join!(a.attempt_acquire_leader(), b.attempt_acquire_leader());
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert!(ra ^ rb, "round {round}: exactly one must win ({ra}, {rb})");
        let (winner, loser, wname, lname) = if ra {
            (&a, &b, "n1", "n2")
        } else {
            (&b, &a, "n2", "n1")
        };
        assert_eq!(etcd.get(LEADER).as_deref(), Some(wname));
        assert_eq!(leader_lease(&etcd), winner.lease_id().await);
        // The loser can neither keep nor take it.
        match loser.update_leader().await {
            Err(DcsError::LockLost { holder }) => assert_eq!(holder.as_deref(), Some(wname)),
            other => panic!("{lname} kept a lock it does not hold: {other:?}"),
        }
        assert!(!loser.attempt_acquire_leader().await.unwrap());
        // Retaking it is idempotent for the holder.
        assert!(winner.attempt_acquire_leader().await.unwrap());
        winner.update_leader().await.expect("winner keeps the lock");
        assert!(winner.delete_leader(None).await.unwrap());
    }
}

#[tokio::test]
async fn keep_moves_the_lock_to_a_regranted_lease() {
    let etcd = Etcd::start();
    let d = dcs(&etcd, "n1");
    assert!(d.attempt_acquire_leader().await.unwrap());
    let old = d.lease_id().await.unwrap();

    // 1. Our lease vanishes (revoked): the leader key goes with it. update_leader grants a
    //    new lease and re-creates the key, since nobody else took it.
    etcd.ctl(&["lease", "revoke", &lease_hex(old)]);
    assert_eq!(etcd.get(LEADER), None);
    let r = d.update_leader().await.expect("keep after lease loss");
    assert!(r.regranted);
    assert_ne!(r.lease_id, old);
    assert_eq!(etcd.get(LEADER).as_deref(), Some("n1"));
    assert_eq!(leader_lease(&etcd), Some(r.lease_id));

    // 2. The leader key holds our name on another lease (e.g. written by an older process
    //    of ours): it is moved to our current lease.
    let out = etcd.ctl(&["lease", "grant", "60"]);
    let other = out.split_whitespace().nth(1).expect("lease id").to_string();
    etcd.ctl(&["put", &format!("--lease={other}"), LEADER, "n1"]);
    let r2 = d.update_leader().await.expect("keep moves the key");
    assert!(!r2.regranted);
    assert_eq!(leader_lease(&etcd), Some(r2.lease_id));

    // 3. Someone else holds it: lock lost, and we do not overwrite it.
    etcd.ctl(&["put", LEADER, "intruder"]);
    match d.update_leader().await {
        Err(DcsError::LockLost { holder }) => assert_eq!(holder.as_deref(), Some("intruder")),
        other => panic!("expected LockLost, got {other:?}"),
    }
    assert_eq!(etcd.get(LEADER).as_deref(), Some("intruder"));
}

#[tokio::test]
async fn release_only_deletes_our_own_value_and_records_the_last_lsn() {
    let etcd = Etcd::start();
    let (a, b) = (dcs(&etcd, "n1"), dcs(&etcd, "n2"));
    assert!(a.attempt_acquire_leader().await.unwrap());
    assert!(!b.delete_leader(None).await.unwrap());
    assert_eq!(etcd.get(LEADER).as_deref(), Some("n1"));

    assert!(a.delete_leader(Some(67_419_744)).await.unwrap());
    assert_eq!(etcd.get(LEADER), None);
    assert_eq!(
        etcd.get("/manning/enterprises/status").as_deref(),
        Some(r#"{"optime":67419744}"#)
    );
    // Releasing twice is harmless.
    assert!(!a.delete_leader(None).await.unwrap());
}

#[tokio::test]
async fn lock_expires_about_ttl_after_keepalives_stop() {
    let etcd = Etcd::start();
    let a = Dcs::new(etcd.dcs_settings("n1", 2, 3)).unwrap();
    let b = Dcs::new(etcd.dcs_settings("n2", 2, 3)).unwrap();
    assert!(a.attempt_acquire_leader().await.unwrap());
    let r = a.update_leader().await.unwrap();
    // No more keepalives from `a`.
    let gone = loop {
        if etcd.get(LEADER).is_none() {
            break r.sent_at.elapsed();
        }
        assert!(
            r.sent_at.elapsed() < Duration::from_secs(15),
            "lock never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("leader key expired {gone:?} after the last keepalive was sent (ttl 2 s)");
    // Never before the TTL counted from the send time: that is what the fence relies on.
    assert!(gone >= Duration::from_secs(2), "expired after {gone:?}");
    assert!(b.attempt_acquire_leader().await.unwrap());
    assert!(matches!(
        a.update_leader().await,
        Err(DcsError::LockLost { holder: Some(h) }) if h == "n2"
    ));
}

#[tokio::test]
async fn frozen_etcd_reports_unreachable_within_the_budget_and_recovers() {
    let etcd = Etcd::start();
    let d = Dcs::new(etcd.dcs_settings("n1", 20, 2)).unwrap();
    assert!(d.attempt_acquire_leader().await.unwrap());
    d.keepalive().await.unwrap();

    etcd.freeze();
    let start = Instant::now();
    let err = d.keepalive().await.unwrap_err();
    let took = start.elapsed();
    eprintln!("keepalive against frozen etcd failed after {took:?} (retry_timeout 2 s): {err}");
    assert!(matches!(err, DcsError::Unreachable { .. }), "{err:?}");
    assert!(took <= Duration::from_millis(2600), "took {took:?}");

    let start = Instant::now();
    let err = d.update_leader().await.unwrap_err();
    assert!(matches!(err, DcsError::Unreachable { .. }), "{err:?}");
    assert!(start.elapsed() <= Duration::from_millis(2600));
    let start = Instant::now();
    assert!(matches!(
        d.get_cluster().await,
        Err(DcsError::Unreachable { .. })
    ));
    assert!(start.elapsed() <= Duration::from_millis(2600));

    etcd.thaw();
    // Back within a try or two (the connection may need to be re-established).
    let start = Instant::now();
    let r = loop {
        match d.update_leader().await {
            Ok(r) => break r,
            Err(DcsError::Unreachable { .. }) if start.elapsed() < Duration::from_secs(10) => {}
            Err(e) => panic!("after thaw: {e}"),
        }
    };
    eprintln!("lock kept again {:?} after thaw", start.elapsed());
    assert!(!r.regranted, "the lease outlived the short freeze");
    assert_eq!(etcd.get(LEADER).as_deref(), Some("n1"));
}

#[tokio::test]
async fn endpoints_are_tried_in_turn() {
    let etcd = Etcd::start();
    let dead = format!("127.0.0.1:{}", free_port());
    let mut s = etcd.dcs_settings("n1", 20, 3);
    s.endpoints = vec![dead.clone(), etcd.endpoint.clone()];
    let d = Dcs::new(s).unwrap();
    let start = Instant::now();
    d.get_cluster().await.expect("second endpoint answers");
    assert!(d.attempt_acquire_leader().await.unwrap());
    assert!(start.elapsed() < Duration::from_secs(3));

    // Nothing answers: the error comes within the budget and names the endpoints' failures.
    let mut s = etcd.dcs_settings("n1", 20, 2);
    s.endpoints = vec![dead.clone(), format!("127.0.0.1:{}", free_port())];
    let d = Dcs::new(s).unwrap();
    let start = Instant::now();
    let err = d.get_cluster().await.unwrap_err();
    assert!(start.elapsed() <= Duration::from_millis(2600));
    match err {
        DcsError::Unreachable { detail, .. } => assert!(detail.contains("127.0.0.1"), "{detail}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn initialize_race_and_rollback() {
    let etcd = Etcd::start();
    let (a, b) = (dcs(&etcd, "n1"), dcs(&etcd, "n2"));
    let key = "/manning/enterprises/initialize";
    let (ra, rb) = tokio::join!(a.race_initialize(), b.race_initialize());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(ra ^ rb);
    let (winner, loser) = if ra { (&a, &b) } else { (&b, &a) };
    assert_eq!(etcd.get(key).as_deref(), Some(""));
    assert!(winner.get_cluster().await.unwrap().is_initializing());

    // The loser cannot roll back someone else's bootstrap.
    assert!(!loser.cancel_initialize().await.unwrap());
    assert_eq!(etcd.get(key).as_deref(), Some(""));
    // The winner's failed bootstrap is rolled back.
    assert!(winner.cancel_initialize().await.unwrap());
    assert_eq!(etcd.get(key), None);

    // Next race; this time the bootstrap succeeds and records the system identifier.
    assert!(loser.race_initialize().await.unwrap());
    assert!(!winner.race_initialize().await.unwrap());
    loser.set_initialize("7301234567890123456").await.unwrap();
    let c = winner.get_cluster().await.unwrap();
    assert_eq!(c.sysid(), Some("7301234567890123456"));

    // A claim that was replaced by someone else's is not deleted.
    etcd.ctl(&["del", key]);
    assert!(winner.race_initialize().await.unwrap());
    etcd.ctl(&["del", key]);
    etcd.ctl(&["put", key, ""]);
    assert!(!winner.cancel_initialize().await.unwrap());
    assert_eq!(etcd.get(key).as_deref(), Some(""));
}

#[tokio::test]
async fn cas_writes_detect_concurrent_changes() {
    let etcd = Etcd::start();
    let (a, b) = (dcs(&etcd, "n1"), dcs(&etcd, "n2"));
    let v1 = json!({"ttl": 20, "loop_wait": 2});
    let rev1 = a.write_config(&v1, None).await.unwrap();
    let c = b.get_cluster().await.unwrap();
    let cfg = c.config.unwrap();
    assert_eq!(cfg.data, v1);
    assert_eq!(cfg.mod_revision, rev1);

    // b edits with the version it read; a's edit based on the same version then fails.
    let v2 = json!({"ttl": 30});
    let rev2 = b.write_config(&v2, Some(rev1)).await.unwrap();
    assert!(rev2 > rev1);
    match a.write_config(&json!({"ttl": 40}), Some(rev1)).await {
        Err(DcsError::CasFailed {
            key,
            expected,
            found,
        }) => {
            assert_eq!(key, "/manning/enterprises/config");
            assert_eq!(expected, rev1);
            assert_eq!(found, Some(rev2));
        }
        other => panic!("expected CasFailed, got {other:?}"),
    }
    assert_eq!(a.get_cluster().await.unwrap().config.unwrap().data, v2);
    // Writing the value that is already there with the old version counts as done (our own
    // earlier try landed although its answer was lost).
    assert_eq!(b.write_config(&v2, Some(rev1)).await.unwrap(), rev2);
    assert!(matches!(
        a.write_config(&json!([1]), None).await,
        Err(DcsError::Malformed { .. })
    ));

    // failover: write, clear as Patroni does ({}), delete with a stale version fails.
    let f = Failover {
        leader: Some("n1".into()),
        member: Some("n2".into()),
        ..Failover::default()
    };
    let frev = a.write_failover(&f, None).await.unwrap();
    assert_eq!(
        etcd.get("/manning/enterprises/failover").as_deref(),
        Some(r#"{"leader":"n1","member":"n2"}"#)
    );
    let crev = b.clear_failover(Some(frev)).await.unwrap();
    assert_eq!(
        etcd.get("/manning/enterprises/failover").as_deref(),
        Some("{}")
    );
    assert!(matches!(
        a.delete_failover(Some(frev)).await,
        Err(DcsError::CasFailed { .. })
    ));
    assert!(a.delete_failover(Some(crev)).await.unwrap());
    assert!(!a.delete_failover(None).await.unwrap());

    // sync: CAS by version, then delete.
    let s1 = SyncState::new("n1", ["n2"], 0);
    let srev = a.write_sync(&s1, None).await.unwrap();
    assert_eq!(
        etcd.get("/manning/enterprises/sync").as_deref(),
        Some(r#"{"leader":"n1","quorum":0,"sync_standby":"n2"}"#)
    );
    let none: [&str; 0] = [];
    let srev2 = a
        .write_sync(&SyncState::new("n1", none, 0), Some(srev))
        .await
        .unwrap();
    assert!(matches!(
        b.write_sync(&s1, Some(srev)).await,
        Err(DcsError::CasFailed { .. })
    ));
    assert!(a.delete_sync(Some(srev2)).await.unwrap());
}

#[tokio::test]
async fn member_status_and_history_are_written_as_patroni_writes_them() {
    let etcd = Etcd::start();
    let d = dcs(&etcd, "n1");
    let m = member(Role::Primary, 100);
    assert!(d.touch_member(&m).await.unwrap());
    let key = "/manning/enterprises/members/n1";
    assert_eq!(etcd.get(key).as_deref(), Some(m.to_json().as_str()));
    // Attached to our lease.
    let out = etcd.ctl(&["get", key, "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["kvs"][0]["lease"].as_i64(), d.lease_id().await);

    // Unchanged data on an unchanged lease is not rewritten.
    assert!(!d.touch_member(&m).await.unwrap());
    let m2 = member(Role::Primary, 200);
    assert!(d.touch_member(&m2).await.unwrap());
    // Deleted behind our back and seen in a snapshot: written again.
    etcd.ctl(&["del", key]);
    d.get_cluster().await.unwrap();
    assert!(d.touch_member(&m2).await.unwrap());
    assert!(etcd.get(key).is_some());

    let status = Status {
        optime: 500,
        slots: Some([("n2".to_string(), 400u64)].into_iter().collect()),
        retain_slots: vec!["n2".into()],
    };
    assert!(d.write_status(&status).await.unwrap());
    assert!(!d.write_status(&status).await.unwrap());
    assert_eq!(
        etcd.get("/manning/enterprises/status").as_deref(),
        Some(r#"{"optime":500,"slots":{"n2":400},"retain_slots":["n2"]}"#)
    );
    // Releasing the lock keeps the slots and updates the optime.
    assert!(d.attempt_acquire_leader().await.unwrap());
    d.delete_leader(Some(600)).await.unwrap();
    assert_eq!(
        etcd.get("/manning/enterprises/status").as_deref(),
        Some(r#"{"optime":600,"slots":{"n2":400},"retain_slots":["n2"]}"#)
    );

    let h = History {
        entries: vec![HistoryEntry {
            timeline: 1,
            lsn: 25_165_984,
            reason: "no recovery target specified".into(),
            timestamp: Some("2026-01-01T00:00:00+00:00".into()),
            new_leader: Some("n1".into()),
        }],
        mod_revision: 0,
    };
    d.write_history(&h).await.unwrap();
    assert_eq!(
        etcd.get("/manning/enterprises/history").as_deref(),
        Some(r#"[[1,25165984,"no recovery target specified","2026-01-01T00:00:00+00:00","n1"]]"#)
    );
    d.revoke_lease().await.unwrap();
    assert_eq!(etcd.get(key), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_the_leader_and_resyncs_after_etcd_stalls() {
    let etcd = Etcd::start();
    let a = Dcs::new(etcd.dcs_settings("n1", 30, 2)).unwrap();
    let b = dcs(&etcd, "n2");
    let mut w = b.watch();
    let wait_for_cluster = |w: &mut manning::dcs::ClusterWatch,
                            what: &'static str,
                            pred: fn(&manning::dcs::Cluster) -> bool| {
        let rx = w.receiver();
        async move {
            let mut rx = rx;
            tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    if pred(&rx.borrow_and_update()) {
                        return;
                    }
                    rx.changed().await.expect("watch task alive");
                }
            })
            .await
            .unwrap_or_else(|_| panic!("watch never showed {what}"));
        }
    };
    wait_for_cluster(&mut w, "the first sync", |c| c.revision > 0).await;
    assert!(w.is_synced());

    let start = Instant::now();
    assert!(a.attempt_acquire_leader().await.unwrap());
    wait_for_cluster(&mut w, "leader n1", |c| c.leader_name() == Some("n1")).await;
    eprintln!(
        "watch saw the new leader {:?} after the write",
        start.elapsed()
    );
    a.delete_leader(None).await.unwrap();
    wait_for_cluster(&mut w, "no leader", |c| c.leader.is_none()).await;

    // etcd stops answering: the watch notices (progress request unanswered) and re-syncs
    // once etcd is back, picking up what changed meanwhile.
    etcd.freeze();
    let start = Instant::now();
    while w.is_synced() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "stall never noticed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("watch noticed the frozen etcd after {:?}", start.elapsed());
    etcd.thaw();
    // Written with etcdctl, so the change can only reach the watch through etcd.
    etcd.ctl(&["put", LEADER, "n9"]);
    wait_for_cluster(&mut w, "leader n9 after thaw", |c| {
        c.leader_name() == Some("n9")
    })
    .await;
    let start = Instant::now();
    while !w.is_synced() {
        assert!(start.elapsed() < Duration::from_secs(10), "never re-synced");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Member changes are visible too, and changes_since tells them apart.
    let before = w.latest();
    a.touch_member(&member(Role::Replica, 1)).await.unwrap();
    wait_for_cluster(&mut w, "member n1", |c| c.member("n1").is_some()).await;
    let ch = w.latest().changes_since(&before);
    assert!(ch.members && !ch.leader && !ch.config);
}

#[tokio::test]
async fn malformed_values_from_others_are_ignored_with_a_warning() {
    let etcd = Etcd::start();
    let p = "/manning/enterprises/";
    etcd.ctl(&["put", &format!("{p}config"), "{not json"]);
    etcd.ctl(&["put", &format!("{p}members/junk"), "[1,2,3]"]);
    etcd.ctl(&[
        "put",
        &format!("{p}members/typo"),
        r#"{"role":"replica","timeline":"one"}"#,
    ]);
    etcd.ctl(&["put", &format!("{p}status"), "yesterday"]);
    etcd.ctl(&["put", &format!("{p}history"), r#"{"a":1}"#]);
    etcd.ctl(&["put", &format!("{p}sync"), "42"]);
    etcd.ctl(&["put", &format!("{p}failover"), "[]"]);
    etcd.ctl(&["put", &format!("{p}failsafe"), "nope"]);
    let d = dcs(&etcd, "n1");
    let (c, warnings) = d.get_cluster_checked().await.expect("never fatal");
    for k in [
        "config",
        "members/junk",
        "members/typo",
        "status",
        "history",
        "sync",
        "failover",
        "failsafe",
    ] {
        assert!(
            warnings.iter().any(|w| w.key == format!("{p}{k}")),
            "no warning for {k}: {warnings:?}"
        );
    }
    assert_eq!(c.config.as_ref().unwrap().data, json!({}));
    assert_eq!(c.member("typo").unwrap().data.role, Some(Role::Replica));
    assert_eq!(c.status.optime, 0);
    assert!(c.sync.is_empty());
    // The member can still work normally, and even repair the config with a CAS write.
    assert!(d.attempt_acquire_leader().await.unwrap());
    let rev = c.config.unwrap().mod_revision;
    d.write_config(&json!({"ttl": 20}), Some(rev))
        .await
        .unwrap();
    assert_eq!(
        d.get_cluster().await.unwrap().config.unwrap().data,
        json!({"ttl": 20})
    );
}

#[tokio::test]
async fn a_frozen_member_of_a_three_member_cluster_is_skipped() {
    let cluster = EtcdCluster::start(3);
    let mut s = cluster.members[0].dcs_settings("n1", 20, 3);
    s.endpoints = cluster.endpoints();
    let d = Dcs::new(s).unwrap();
    // The first endpoint answers, so it becomes the one tried first.
    assert!(d.attempt_acquire_leader().await.unwrap());
    cluster.members[0].freeze();
    let start = Instant::now();
    // If the frozen member was raft's leader the others elect a new one first; a call may
    // then spend its whole budget, but the lock must be kept well within the lease's TTL.
    let r = loop {
        match d.update_leader().await {
            Ok(r) => break r,
            Err(DcsError::Unreachable { .. }) if start.elapsed() < Duration::from_secs(12) => {}
            Err(e) => panic!("with one of three members frozen: {e}"),
        }
    };
    eprintln!(
        "with the first endpoint frozen the lock was kept after {:?} (retry_timeout 3 s)",
        start.elapsed()
    );
    assert!(!r.regranted);
    // From now on the live member that answered is tried first: no more waiting.
    let start = Instant::now();
    d.update_leader().await.expect("kept via a live member");
    assert!(
        start.elapsed() < Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(cluster.members[1].get(LEADER).as_deref(), Some("n1"));
    cluster.members[0].thaw();
}

#[tokio::test]
async fn tls_with_a_client_certificate() {
    let t = TlsEtcd::start(true);
    let section = Etcd3Section {
        host: Some(t.etcd.endpoint.clone()),
        protocol: Some("https".into()),
        cacert: Some(t.cacert.clone()),
        cert: Some(t.cert.clone()),
        key: Some(t.key.clone()),
        ..Default::default()
    };
    let make = |section: &Etcd3Section| {
        DcsSettings::from_etcd3(
            section,
            Some("/manning"),
            "enterprises",
            "n1",
            Duration::from_secs(30),
            Duration::from_secs(2),
        )
        .unwrap()
    };
    let d = Dcs::new(make(&section)).unwrap();
    assert!(d.attempt_acquire_leader().await.unwrap());
    d.update_leader().await.unwrap();
    let got = t.ctl(&["get", LEADER, "--print-value-only"]).unwrap();
    assert_eq!(got.trim(), "n1");

    // Without the client certificate etcd refuses us: an error within the budget.
    let no_cert = Etcd3Section {
        cert: None,
        key: None,
        ..section.clone()
    };
    let d = Dcs::new(make(&no_cert)).unwrap();
    let start = Instant::now();
    assert!(d.get_cluster().await.is_err());
    assert!(start.elapsed() < Duration::from_millis(2600));

    // A missing CA file is a settings error naming the file.
    let missing = Etcd3Section {
        cacert: Some("/nonexistent/ca.pem".into()),
        ..section
    };
    match Dcs::new(make(&missing)) {
        Err(DcsError::Settings(m)) => assert!(m.contains("/nonexistent/ca.pem"), "{m}"),
        other => panic!("{other:?}"),
    }
}
