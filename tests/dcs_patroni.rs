//! Compatibility with Patroni itself (installed from PyPI by `make deps`): what our `Dcs`
//! writes is read correctly by `patronictl` and Patroni's `Etcd3` class, and what Patroni's
//! own code paths write parses in our model without warnings.

mod support;

use std::process::Command;

use manning::dcs::{Dcs, History, HistoryEntry, Member, Role, State, Status};
use serde_json::{Value, json};
use support::*;

const SYSID: &str = "7301234567890123456";

/// Run a python snippet with Patroni importable; `DCS` is an `Etcd3` for member `name`.
fn run_patroni_python(etcd: &Etcd, name: &str, body: &str) -> String {
    let script = format!(
        "import json, sys\n\
         from patroni.dcs import get_dcs\n\
         DCS = get_dcs({{'etcd3': {{'hosts': ['{ep}']}}, 'scope': 'enterprises', \
         'namespace': '/manning', 'name': '{name}', 'ttl': 30, 'retry_timeout': 10, \
         'loop_wait': 10}})\n\
         {body}\n",
        ep = etcd.endpoint,
    );
    let out = Command::new(patroni_python())
        .arg("-c")
        .arg(&script)
        .output()
        .expect("run patroni python");
    assert!(
        out.status.success(),
        "patroni snippet failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn primary(lsn: u64) -> Member {
    Member {
        conn_url: Some("postgres://10.0.0.1:5432/postgres".into()),
        api_url: Some("http://10.0.0.1:8008/patroni".into()),
        state: Some(State::Running),
        role: Some(Role::Primary),
        version: Some("4.1.4".into()),
        xlog_location: Some(lsn),
        timeline: Some(2),
        ..Member::default()
    }
}

fn replica(lsn: u64) -> Member {
    let mut tags = serde_json::Map::new();
    tags.insert("clonefrom".into(), json!(true));
    Member {
        conn_url: Some("postgres://10.0.0.2:5432/postgres".into()),
        api_url: Some("http://10.0.0.2:8008/patroni".into()),
        state: Some(State::Running),
        role: Some(Role::Replica),
        version: Some("4.1.4".into()),
        tags,
        xlog_location: Some(lsn),
        replay_lsn: Some(lsn),
        receive_lsn: Some(lsn),
        replication_state: Some("streaming".into()),
        timeline: Some(2),
        ..Member::default()
    }
}

#[tokio::test]
async fn patronictl_reads_what_we_write() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = ctl_config(&etcd, dir.path());
    let n1 = Dcs::new(etcd.dcs_settings("node1", 30, 5)).unwrap();
    let n2 = Dcs::new(etcd.dcs_settings("node2", 30, 5)).unwrap();

    assert!(n1.race_initialize().await.unwrap());
    n1.write_config(
        &json!({"ttl": 20, "loop_wait": 2, "retry_timeout": 5,
                "postgresql": {"parameters": {"max_connections": 256}, "use_pg_rewind": true}}),
        None,
    )
    .await
    .unwrap();
    n1.set_initialize(SYSID).await.unwrap();
    n1.touch_member(&primary(50_331_808)).await.unwrap();
    n1.take_leader().await.unwrap();
    n1.write_status(&Status::with_optime(50_331_808))
        .await
        .unwrap();
    n1.write_history(&History {
        entries: vec![HistoryEntry {
            timeline: 1,
            lsn: 25_165_984,
            reason: "no recovery target specified".into(),
            timestamp: Some("2026-01-02T03:04:05.678901+00:00".into()),
            new_leader: Some("node1".into()),
        }],
        mod_revision: 0,
    })
    .await
    .unwrap();
    n2.touch_member(&replica(50_331_808)).await.unwrap();

    let list: Value = serde_json::from_str(&run_patronictl(&cfg, &["list", "-f", "json"]))
        .expect("patronictl list -f json");
    let rows = list.as_array().expect("list of members");
    assert_eq!(rows.len(), 2, "{list}");
    let row = |name: &str| {
        rows.iter()
            .find(|r| r["Member"] == name)
            .unwrap_or_else(|| panic!("{name} missing from {list}"))
            .clone()
    };
    let (r1, r2) = (row("node1"), row("node2"));
    assert_eq!(r1["Role"], "Leader");
    assert_eq!(r1["State"], "running");
    assert_eq!(r1["Host"], "10.0.0.1");
    assert_eq!(r1["TL"], 2);
    assert_eq!(r1["Cluster"], "enterprises");
    assert_eq!(r2["Role"], "Replica");
    assert_eq!(r2["State"], "streaming");
    assert_eq!(r2["TL"], 2);
    assert_eq!(r2["Receive Lag"], 0);

    // The pretty form shows the system identifier from `initialize`.
    let pretty = run_patronictl(&cfg, &["list"]);
    assert!(pretty.contains(SYSID), "{pretty}");

    let history: Value =
        serde_json::from_str(&run_patronictl(&cfg, &["history", "-f", "json"])).unwrap();
    assert_eq!(
        history,
        json!([{"TL": 1, "LSN": 25165984, "Reason": "no recovery target specified",
                "Timestamp": "2026-01-02T03:04:05.678901+00:00", "New Leader": "node1"}])
    );

    let shown = run_patronictl(&cfg, &["show-config"]);
    assert!(shown.contains("ttl: 20"), "{shown}");
    assert!(shown.contains("max_connections: 256"), "{shown}");

    // Patroni's own Etcd3 class sees our lock (and cannot take it) and our member data.
    let out = run_patroni_python(
        &etcd,
        "node3",
        "c = DCS.get_cluster()\n\
         print(json.dumps({'leader': c.leader.name, 'leader_session': str(c.leader.session),\n\
           'member_session': str(c.get_member('node1').session),\n\
           'acquired': bool(DCS.attempt_to_acquire_leader()), 'initialize': c.initialize,\n\
           'node2': c.get_member('node2').data, 'optime': c.status.last_lsn,\n\
           'history': c.history.lines, 'config_version': c.config.version,\n\
           'ttl': c.config.data['ttl']}))",
    );
    let seen: Value = serde_json::from_str(out.lines().last().unwrap_or("")).unwrap();
    assert_eq!(seen["leader"], "node1");
    assert_eq!(seen["leader_session"], seen["member_session"]);
    assert_eq!(seen["acquired"], false);
    assert_eq!(seen["initialize"], SYSID);
    assert_eq!(
        seen["node2"],
        serde_json::from_str::<Value>(&replica(50_331_808).to_json()).unwrap()
    );
    assert_eq!(seen["optime"], 50_331_808);
    assert_eq!(seen["history"][0][4], "node1");
    assert_eq!(seen["ttl"], 20);
}

#[tokio::test]
async fn what_patroni_writes_parses_in_our_model() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = ctl_config(&etcd, dir.path());
    let ours = Dcs::new(etcd.dcs_settings("node2", 30, 5)).unwrap();

    // Patroni's code paths: initialize race, config, member, lock, sync, failover, status,
    // history, failsafe.
    run_patroni_python(
        &etcd,
        "py1",
        "assert DCS.initialize(create_new=True, sysid='')\n\
         assert DCS.initialize(create_new=False, sysid='7301234567890123456')\n\
         assert DCS.set_config_value(json.dumps({'ttl': 30, 'loop_wait': 10, \
           'postgresql': {'parameters': {'max_connections': 100}}}, separators=(',', ':')))\n\
         assert DCS.touch_member({'conn_url': 'postgres://10.0.0.9:5432/postgres', \
           'api_url': 'http://10.0.0.9:8008/patroni', 'state': 'running', 'role': 'primary', \
           'version': '4.1.5', 'checkpoint_after_promote': False, \
           'tags': {'nofailover': False, 'failover_priority': 2}, 'xlog_location': 1234, \
           'timeline': 3, 'pending_restart': True, \
           'pending_restart_reason': {'max_connections': {'old_value': '100', 'new_value': '200'}}})\n\
         assert DCS.attempt_to_acquire_leader()\n\
         assert DCS.write_sync_state('py1', ['node2', 'node1'], 0)\n\
         import datetime\n\
         assert DCS.manual_failover('py1', 'node2', scheduled_at=datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc))\n\
         DCS.write_status({'optime': 1234, 'slots': {'node2': 1200}, 'retain_slots': ['node2']})\n\
         assert DCS.set_history_value(json.dumps([[1, 100, 'no recovery target specified'], \
           [2, 200, 'no recovery target specified', '2030-01-01T00:00:00+00:00', 'py1']], separators=(',', ':')))\n\
         DCS.write_failsafe({'py1': 'http://10.0.0.9:8008/patroni', 'node2': 'http://10.0.0.2:8008/patroni'})\n\
         print('ok')",
    );
    // And patronictl edit-config (CAS by mod_revision in Patroni).
    run_patronictl(
        &cfg,
        &[
            "edit-config",
            "--force",
            "-s",
            "loop_wait=5",
            "-p",
            "max_connections=200",
        ],
    );

    let (c, warnings) = ours.get_cluster_checked().await.unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(c.sysid(), Some(SYSID));
    let config = c.config.as_ref().unwrap();
    assert_eq!(config.data["loop_wait"], 5);
    assert_eq!(config.data["ttl"], 30);
    assert_eq!(
        config.data["postgresql"]["parameters"]["max_connections"],
        200
    );
    let leader = c.leader.as_ref().unwrap();
    assert_eq!(leader.name, "py1");
    let m = c.member("py1").unwrap();
    assert_eq!(m.lease, leader.lease, "member and leader on one lease");
    assert_eq!(m.data.role, Some(Role::Primary));
    assert_eq!(m.data.state, Some(State::Running));
    assert_eq!(m.data.checkpoint_after_promote, Some(false));
    assert_eq!(m.data.xlog_location, Some(1234));
    assert_eq!(m.data.timeline, Some(3));
    assert_eq!(m.data.pending_restart, Some(true));
    assert_eq!(m.data.tag("failover_priority"), Some(&json!(2)));
    assert!(!m.data.tag_bool("nofailover"));
    assert!(m.data.extra.is_empty(), "{:?}", m.data.extra);
    assert_eq!(c.sync.leader.as_deref(), Some("py1"));
    assert_eq!(c.sync.voters(), vec!["node1", "node2"]);
    let f = c.failover.as_ref().unwrap();
    assert_eq!(f.leader.as_deref(), Some("py1"));
    assert_eq!(f.member.as_deref(), Some("node2"));
    assert_eq!(f.scheduled_at.as_deref(), Some("2030-01-02T03:04:05+00:00"));
    assert_eq!(c.status.optime, 1234);
    assert_eq!(c.status.slots.as_ref().unwrap()["node2"], 1200);
    assert_eq!(c.status.retain_slots, vec!["node2"]);
    let h = &c.history.as_ref().unwrap().entries;
    assert_eq!(h.len(), 2);
    assert_eq!(h[0].timestamp, None);
    assert_eq!(h[1].new_leader.as_deref(), Some("py1"));
    assert_eq!(c.failsafe.as_ref().unwrap().len(), 2);

    // Our lock logic against Patroni's holder: we cannot take it; our CAS on config with
    // the revision we read succeeds and Patroni sees the result.
    assert!(!ours.attempt_acquire_leader().await.unwrap());
    let mut data = config.data.clone();
    data["ttl"] = json!(25);
    ours.write_config(&data, Some(config.mod_revision))
        .await
        .unwrap();
    let shown = run_patronictl(&cfg, &["show-config"]);
    assert!(shown.contains("ttl: 25"), "{shown}");
    // Serialising what Patroni wrote gives back the same JSON (nothing dropped).
    let raw = etcd.get("/manning/enterprises/members/py1").unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&m.data.to_json()).unwrap(),
        serde_json::from_str::<Value>(&raw).unwrap()
    );
}
