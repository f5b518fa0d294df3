//! Replicas and failover with real members and the seed's dynamic settings (synchronous
//! replication, strict): a second `manning supervise` copies the leader with pg_basebackup,
//! streams from it through its replication slot as its synchronous standby, answers
//! Patroni's replica health checks, and takes over when the leader stops or dies without
//! losing an acknowledged commit; the old leader then comes back as a replica of the new one.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::member::*;
use support::*;

/// Start `psql` running `sql` on `m` in the background (to see whether it blocks).
fn psql_in_background(m: &MemberFiles, sql: &str) -> std::process::Child {
    std::process::Command::new(require_bin("psql"))
        .args(["-X", "-A", "-t", "-w", "-h"])
        .arg(&m.sock)
        .args([
            "-p",
            &m.pg_port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .args(["-c", sql])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run psql")
}

/// Strict synchronous mode with no standby: a commit waits (it has not returned after 2 s).
/// The backend goes on waiting after psql is killed, and commits once a standby confirms.
fn assert_commit_waits(m: &MemberFiles, sql: &str) {
    let mut insert = psql_in_background(m, sql);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        insert.try_wait().unwrap().is_none(),
        "a commit returned on {} with no synchronous standby",
        m.name
    );
    let _ = insert.kill();
    let _ = insert.wait();
}

/// `manning ctl -c <m's configuration> ARGS...` with m's environment; its stdout.
fn manning_ctl(m: &MemberFiles, args: &[&str]) -> String {
    let mut cmd = std::process::Command::new(manning_bin());
    cmd.arg("ctl").arg("-c").arg(&m.conf).args(args);
    m.configure(&mut cmd);
    let out = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run manning ctl");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "manning ctl {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

/// `application_name|state` rows of `pg_stat_replication` on `m`.
fn replication(m: &MemberFiles) -> String {
    m.psql("SELECT application_name || '|' || state FROM pg_stat_replication ORDER BY 1")
        .unwrap_or_default()
}

/// Wait until `replica` streams from `primary`; on timeout, fail with the replica's log.
fn wait_streaming(primary: &MemberFiles, replica: &MemberFiles, timeout: Duration) {
    let want = format!("{}|streaming", replica.name);
    let deadline = Instant::now() + timeout;
    while !replication(primary).lines().any(|l| l == want) {
        assert!(
            Instant::now() < deadline,
            "{} does not stream from {} after {timeout:?}; its log:\n{}",
            replica.name,
            primary.name,
            replica.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// node_a leads, node_b streams from it and is published as its synchronous standby, and
/// node_a takes writes.
fn synchronous_pair(etcd: &Etcd) -> (MemberFiles, MemberFiles, Supervisor, Supervisor) {
    let a = MemberFiles::clustered(etcd, "enterprises", "node_a");
    let b = MemberFiles::clustered(etcd, "enterprises", "node_b");
    let sa = a.start();
    a.wait_leader(etcd, Duration::from_secs(90));
    let sb = b.start();
    wait_streaming(&a, &b, Duration::from_secs(60));
    wait_for("node_b in the sync key", Duration::from_secs(20), || {
        let sync = json(&etcd.get(&a.key("sync"))?);
        (sync["sync_standby"] == "node_b").then_some(())
    });
    a.wait_writable(Duration::from_secs(30));
    (a, b, sa, sb)
}

#[test]
fn a_second_member_becomes_a_streaming_replica_and_takes_over() {
    require_root("the supervisor runs postgres as the postgres user");
    let etcd = Etcd::start();
    let a = MemberFiles::clustered(&etcd, "enterprises", "node_a");
    let b = MemberFiles::clustered(&etcd, "enterprises", "node_b");
    let mut sa = a.start();
    a.wait_leader(&etcd, Duration::from_secs(90));
    // Alone in strict mode, node_a makes commits wait (this one completes once node_b is
    // its synchronous standby).
    wait_for(
        "node_a to accept connections",
        Duration::from_secs(30),
        || a.psql("SELECT 1").ok(),
    );
    assert_commit_waits(&a, "CREATE TABLE t(x int)");

    // The replication password goes to pg_basebackup and postgres only through files.
    let watch = SecretWatch::start(vec![REPLICATION_PASSWORD.to_string()]);
    let started = Instant::now();
    let mut sb = b.start();
    wait_streaming(&a, &b, Duration::from_secs(60));
    eprintln!(
        "node_b streaming from node_a {:?} after its start",
        started.elapsed()
    );
    // node_b becomes the synchronous standby and is published in the sync key.
    wait_for("node_b in the sync key", Duration::from_secs(20), || {
        let sync = json(&etcd.get(&a.key("sync"))?);
        (sync["leader"] == "node_a" && sync["sync_standby"] == "node_b").then_some(())
    });
    assert_eq!(
        a.psql("SELECT sync_state FROM pg_stat_replication WHERE application_name = 'node_b'")
            .unwrap(),
        "sync"
    );
    wait_for(
        "the waiting CREATE TABLE to commit",
        Duration::from_secs(10),
        || a.psql("INSERT INTO t VALUES (1)").ok(),
    );
    let (samples, hits) = watch.finish();
    assert!(samples > 5);
    assert!(hits.is_empty(), "secret visible in /proc: {hits:?}");

    // It holds the data, streams through its slot, and says it is a replica everywhere.
    wait_for(
        "the replica to have the table",
        Duration::from_secs(10),
        || (b.psql("SELECT x FROM t").ok()? == "1").then_some(()),
    );
    assert_eq!(b.psql("SELECT pg_is_in_recovery()").unwrap(), "t");
    assert_eq!(
        a.psql("SELECT active FROM pg_replication_slots WHERE slot_name = 'node_b'")
            .unwrap(),
        "t",
        "node_b streams through its slot"
    );
    a.psql("INSERT INTO t VALUES (2)").unwrap();
    wait_for(
        "the new row on the replica",
        Duration::from_secs(10),
        || (b.psql("SELECT count(*) FROM t").ok()? == "2").then_some(()),
    );
    wait_for(
        "node_b's REST API to say replica",
        Duration::from_secs(10),
        || (http_get(&b.api(), "/replica").ok()?.0 == 200).then_some(()),
    );
    assert_eq!(http_get(&b.api(), "/primary").unwrap().0, 503);
    assert_eq!(http_get(&a.api(), "/replica").unwrap().0, 503);
    wait_for("node_b's member key", Duration::from_secs(10), || {
        let m = json(&etcd.get(&b.key("members/node_b"))?);
        (m["role"] == "replica" && m["state"] == "running" && m["replication_state"] == "streaming")
            .then_some(())
    });
    let dir = tempfile::tempdir().unwrap();
    let ctl = ctl_config(&etcd, dir.path());
    let list = json(&run_patronictl(&ctl, &["list", "-f", "json"]));
    let rows = list.as_array().expect("patronictl list rows");
    let row = |name: &str| {
        rows.iter()
            .find(|r| r["Member"] == name)
            .unwrap_or_else(|| panic!("{name} missing from {list}"))
    };
    assert_eq!(row("node_a")["Role"], "Leader");
    assert_eq!(row("node_b")["Role"], "Sync Standby");
    assert_eq!(row("node_b")["State"], "streaming");
    // manning's own `ctl list` says the same.
    let list = manning_ctl(&b, &["list"]);
    let line = |name: &str| {
        list.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{list}"))
            .to_string()
    };
    assert!(line("node_a").contains("| Leader "), "{list}");
    assert!(
        line("node_b").contains("| Sync Standby | streaming"),
        "{list}"
    );
    let log = b.log_text();
    assert!(
        log.contains("building a replica from the leader node_a"),
        "{log}"
    );
    assert!(log.contains("pg_basebackup:"), "progress is logged: {log}");

    // The leader stops cleanly: it releases the lock and node_b takes over with every row.
    let stopped = Instant::now();
    assert!(sa.stop().is_some_and(|s| s.success()));
    b.wait_leader(&etcd, Duration::from_secs(30));
    wait_for("node_b to be promoted", Duration::from_secs(30), || {
        (b.psql("SELECT pg_is_in_recovery()").ok()? == "f").then_some(())
    });
    eprintln!(
        "node_b promoted {:?} after node_a was asked to stop",
        stopped.elapsed()
    );
    assert_eq!(b.psql("SELECT count(*) FROM t").unwrap(), "2");
    // Strict: alone now, node_b makes commits wait until a standby is back.
    assert_commit_waits(&b, "INSERT INTO t VALUES (-1)");
    let log = b.log_text();
    assert!(
        log.contains("I am the healthiest member: taking it and promoting"),
        "{log}"
    );

    // The old leader comes back as a replica of the new one, on the new timeline.
    let _sa = a.start();
    wait_streaming(&b, &a, Duration::from_secs(60));
    b.wait_writable(Duration::from_secs(30));
    b.psql("DELETE FROM t WHERE x < 0; INSERT INTO t VALUES (3)")
        .unwrap();
    wait_for(
        "the old leader to replay the new row",
        Duration::from_secs(10),
        || (a.psql("SELECT count(*) FROM t").ok()? == "3").then_some(()),
    );
    assert_eq!(a.psql("SELECT pg_is_in_recovery()").unwrap(), "t");
    assert!(sb.stop().is_some_and(|s| s.success()));
}

/// A replica does not race for a free lock while a member that still runs as a primary
/// answers its status request.
#[test]
fn a_replica_does_not_take_over_from_a_live_primary() {
    require_root("the supervisor runs postgres as the postgres user");
    let etcd = Etcd::start();
    let a = MemberFiles::clustered(&etcd, "enterprises", "node_a");
    let b = MemberFiles::clustered(&etcd, "enterprises", "node_b");
    let _sa = a.start();
    a.wait_leader(&etcd, Duration::from_secs(90));
    let _sb = b.start();
    wait_streaming(&a, &b, Duration::from_secs(60));
    // An operator deletes the leader key by mistake: node_a's postgres still runs as a
    // primary (its supervisor puts the key back on its next cycle), and node_b, woken by
    // the watch, must see that from node_a's REST API and stay a replica.
    wait_for(
        "node_b to decline the race",
        Duration::from_secs(30),
        || {
            etcd.ctl(&["del", &a.key("leader")]);
            std::thread::sleep(Duration::from_millis(500));
            b.log_text()
                .contains("node_a still runs as a primary")
                .then_some(())
        },
    );
    a.wait_leader(&etcd, Duration::from_secs(10));
    assert_ne!(etcd.get(&a.key("leader")).as_deref(), Some("node_b"));
}

/// The leader's node dies (its supervisor is killed; postgres follows it through the
/// parent-death signal) while a client writes: nobody releases the lock, so the
/// synchronous standby takes over once the lease expires, `ttl` (20 s in the seed) after the
/// last renewal, and every commit the client saw acknowledged is there (invariant 2).
#[test]
fn the_synchronous_standby_takes_over_when_the_leader_node_dies_and_loses_nothing() {
    require_root("the supervisor runs postgres as the postgres user");
    let etcd = Etcd::start();
    let (a, b, mut sa, _sb) = synchronous_pair(&etcd);
    a.psql("CREATE TABLE t(x int)").unwrap();

    // A client inserts 1, 2, 3, ... one commit at a time and remembers the last one
    // acknowledged.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let sock = a.sock.display().to_string();
        let port = a.pg_port;
        std::thread::spawn(move || {
            let mut acked = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let next = acked + 1;
                let sql = format!("INSERT INTO t VALUES ({next})");
                match psql(&sock, port, "postgres", None, &sql) {
                    Ok(_) => acked = next,
                    Err(_) => break,
                }
            }
            acked
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    sa.signal(nix::sys::signal::Signal::SIGKILL);
    let killed = Instant::now();
    let _ = sa.wait(Duration::from_secs(10));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = writer.join().unwrap();
    assert!(acked > 5, "the client wrote before the kill: {acked}");

    b.wait_leader(&etcd, Duration::from_secs(40));
    wait_for("node_b to be promoted", Duration::from_secs(10), || {
        (b.psql("SELECT pg_is_in_recovery()").ok()? == "f").then_some(())
    });
    let took = killed.elapsed();
    eprintln!("node_b primary {took:?} after node_a was killed (ttl 20 s)");
    assert!(
        took >= Duration::from_secs(10),
        "the lock cannot have been free before its lease expired: {took:?}"
    );
    let have: u32 = b
        .psql(&format!("SELECT count(*) FROM t WHERE x <= {acked}"))
        .unwrap()
        .parse()
        .unwrap();
    eprintln!("{acked} commits acknowledged before the kill, {have} of them on node_b");
    assert_eq!(have, acked, "an acknowledged commit was lost");
    let log = b.log_text();
    assert!(
        log.contains("I am the healthiest member: taking it and promoting"),
        "{log}"
    );

    // The dead node comes back: its data directory was a primary's, possibly with commits
    // that were never acknowledged; it is rewound from node_b and follows it.
    let started = Instant::now();
    let _sa = a.start();
    wait_streaming(&b, &a, Duration::from_secs(60));
    eprintln!(
        "node_a rewound and streaming {:?} after its restart",
        started.elapsed()
    );
    b.wait_writable(Duration::from_secs(30));
    b.psql("INSERT INTO t VALUES (100000)").unwrap();
    wait_for(
        "node_a to replay node_b's new row",
        Duration::from_secs(10),
        || (a.psql("SELECT count(*) FROM t WHERE x = 100000").ok()? == "1").then_some(()),
    );
    assert_eq!(
        a.psql("SELECT count(*) FROM t").unwrap(),
        b.psql("SELECT count(*) FROM t").unwrap(),
        "node_a holds exactly node_b's rows"
    );
    let log = a.log_text();
    assert!(
        log.contains("rewinding the data directory with pg_rewind"),
        "{log}"
    );
}

/// `patronictl switchover` (Patroni's own tool, against manning's REST API): the leader
/// stops, hands the lock to the synchronous standby, and comes back as its replica.
#[test]
fn patronictl_switchover_hands_over_to_the_synchronous_standby() {
    require_root("the supervisor runs postgres as the postgres user");
    let etcd = Etcd::start();
    let (a, b, _sa, _sb) = synchronous_pair(&etcd);
    a.psql("CREATE TABLE t(x int); INSERT INTO t VALUES (1)")
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let ctl = ctl_config(&etcd, dir.path());
    let started = Instant::now();
    let out = try_patronictl(
        &ctl,
        &[
            "switchover",
            "--leader",
            "node_a",
            "--candidate",
            "node_b",
            "--force",
        ],
    );
    let answered = started.elapsed();
    let out = out.unwrap_or_else(|e| e);
    assert!(
        out.contains("Successfully switched over to \"node_b\""),
        "{out}\nnode_a:\n{}\nnode_b:\n{}",
        a.log_text(),
        b.log_text()
    );
    b.wait_leader(&etcd, Duration::from_secs(5));
    // The answer comes once node_b holds the lock; its promotion may still be finishing.
    wait_for("node_b to be promoted", Duration::from_secs(10), || {
        (b.psql("SELECT pg_is_in_recovery()").ok()? == "f").then_some(())
    });
    eprintln!("patronictl switchover answered after {answered:?}");
    // The new leader checkpoints after its promotion and then drops the `false` marker
    // from its member key (Patroni's checkpoint_after_promote).
    wait_for(
        "node_b's checkpoint after promotion",
        Duration::from_secs(10),
        || {
            let m = json(&etcd.get(&b.key("members/node_b"))?);
            (m["role"] == "primary" && m.get("checkpoint_after_promote").is_none()).then_some(())
        },
    );
    assert!(b.log_text().contains("checkpoint after promotion done"));
    assert_eq!(b.psql("SELECT count(*) FROM t").unwrap(), "1");
    // The old leader follows the new one and becomes its synchronous standby.
    wait_streaming(&b, &a, Duration::from_secs(30));
    b.wait_writable(Duration::from_secs(30));
    eprintln!("node_b writable {:?} after the request", started.elapsed());
    assert_eq!(a.psql("SELECT pg_is_in_recovery()").unwrap(), "t");
    assert!(
        etcd.get(&a.key("failover")).is_none(),
        "the request is removed once done"
    );
    let log = a.log_text();
    assert!(
        log.contains("stopping postgres and handing over the leader lock"),
        "{log}"
    );
}

/// `manning proxy --etcd` routes by the leader key: during a switchover no client write
/// reaches the old leader restarted as a read-only replica, and new sessions go to the new
/// leader as soon as it runs as primary.
#[test]
fn the_proxy_following_etcd_moves_writes_to_the_new_leader_and_never_to_a_replica() {
    require_root("the supervisor runs postgres as the postgres user");
    let etcd = Etcd::start();
    let (a, b, _sa, _sb) = synchronous_pair(&etcd);
    a.psql("CREATE TABLE t(x int)").unwrap();

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "defaults\n    mode tcp\n    timeout connect 4s\n    timeout client 30m\n    \
             timeout server 30m\nlisten pg\n    bind 127.0.0.1:{port}\n    \
             default-server on-marked-down shutdown-sessions\n    \
             server node_a 127.0.0.1:{} check port {}\n    \
             server node_b 127.0.0.1:{} check port {}\n",
            a.pg_port, a.api_port, b.pg_port, b.api_port
        ),
    )
    .unwrap();
    let log = dir.path().join("proxy.log");
    let file = std::fs::File::create(&log).unwrap();
    let _proxy = Proc {
        child: std::process::Command::new(manning_bin())
            .arg("proxy")
            .arg("-f")
            .arg(&cfg)
            .args(["--etcd", &etcd.endpoint, "--scope", "enterprises"])
            .args(["--namespace", "/manning"])
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap(),
        name: "manning proxy".into(),
    };
    let through_proxy =
        |sql: &str| psql("127.0.0.1", port, "postgres", Some(SUPERUSER_PASSWORD), sql);
    wait_for(
        "the proxy to route to node_a",
        Duration::from_secs(10),
        || {
            (through_proxy("SELECT inet_server_port()").ok()? == a.pg_port.to_string())
                .then_some(())
        },
    );

    // A client writes through the proxy, one connection per write, during the switchover.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut ok, mut refused) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match psql(
                    "127.0.0.1",
                    port,
                    "postgres",
                    Some(SUPERUSER_PASSWORD),
                    "INSERT INTO t VALUES (1)",
                ) {
                    Ok(_) => ok += 1,
                    Err(e) if e.contains("read-only") => refused.push(e),
                    Err(_) => {}
                }
            }
            (ok, refused)
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let out = manning_ctl(
        &a,
        &["switchover", "--leader", "node_a", "--candidate", "node_b"],
    );
    assert!(
        out.contains("Successfully switched over to \"node_b\""),
        "{out}"
    );
    wait_for(
        "the proxy to route to node_b",
        Duration::from_secs(10),
        || {
            (through_proxy("SELECT inet_server_port()").ok()? == b.pg_port.to_string())
                .then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, refused) = writer.join().unwrap();
    assert!(ok > 5, "writes went through: {ok}");
    assert!(
        refused.is_empty(),
        "writes reached a read-only node: {refused:?}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("etcd: node_b is the primary"), "{text}");
}
