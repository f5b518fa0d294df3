//! `manning supervise` against real etcd and PostgreSQL 15, with the seed's patroni.yml.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;
use support::member::*;
use support::*;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// The seed's configuration bootstraps a primary that Patroni's tools recognise; SIGTERM
/// stops it cleanly and releases the lock.
#[test]
fn seed_config_bootstraps_a_primary_and_stops_cleanly() {
    require_root("the supervisor runs postgres as the postgres user");
    let etcd = Etcd::start();
    // The seed's settings unchanged, strict synchronous mode included.
    let m = MemberFiles::clustered(&etcd, "enterprises", "manager_abc123");
    let secrets: Vec<String> = [ADMIN_PASSWORD, REPLICATION_PASSWORD, SUPERUSER_PASSWORD]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let watch = SecretWatch::start(secrets.clone());
    let started = Instant::now();
    let mut sup = m.start();
    m.wait_leader(&etcd, Duration::from_secs(90));
    wait_for("postgres to answer", Duration::from_secs(30), || {
        m.psql("SELECT 1").ok()
    });
    // Alone in strict mode (as Patroni): commits wait for a standby that does not exist yet.
    wait_for("the strict placeholder", Duration::from_secs(10), || {
        (m.psql("SHOW synchronous_standby_names").ok()?
            == "__patroni_strict_sync_replica_placeholder__")
            .then_some(())
    });
    eprintln!("primary running {:?} after start", started.elapsed());
    let (samples, hits) = watch.finish();
    assert!(samples > 10);
    assert!(hits.is_empty(), "secrets visible in /proc: {hits:?}");

    // etcd holds Patroni's keys and shapes.
    let initialize = etcd.get(&m.key("initialize")).expect("initialize key");
    assert!(
        initialize.len() >= 10 && initialize.bytes().all(|b| b.is_ascii_digit()),
        "{initialize}"
    );
    let member = json(
        &etcd
            .get(&m.key("members/manager_abc123"))
            .expect("member key"),
    );
    assert_eq!(member["state"], "running");
    assert_eq!(member["role"], "primary");
    assert_eq!(
        member["conn_url"],
        format!("postgres://127.0.0.1:{}/postgres", m.pg_port)
    );
    assert_eq!(
        member["api_url"],
        format!("http://127.0.0.1:{}/patroni", m.api_port)
    );
    assert!(member["xlog_location"].as_u64().is_some());
    assert_eq!(member["timeline"], 1);
    wait_for("history [] on timeline 1", Duration::from_secs(10), || {
        (etcd.get(&m.key("history")).as_deref() == Some("[]")).then_some(())
    });
    let config = json(&etcd.get(&m.key("config")).expect("config key"));
    assert_eq!(config["ttl"], 20);
    assert_eq!(config["loop_wait"], 2);
    assert_eq!(config["retry_timeout"], 5);
    assert_eq!(config["synchronous_mode"], true);
    assert_eq!(config["synchronous_mode_strict"], true);
    assert_eq!(config["postgresql"]["parameters"]["max_connections"], 256);
    assert_eq!(config["postgresql"]["use_pg_rewind"], true);
    let sync = json(&etcd.get(&m.key("sync")).expect("sync key"));
    assert_eq!(sync["leader"], "manager_abc123");
    assert_eq!(sync["sync_standby"], Value::Null);

    // Patroni's own patronictl reads the cluster.
    let ctl = m.dir.path().join("patronictl.yml");
    std::fs::write(
        &ctl,
        format!(
            "scope: enterprises\nnamespace: /manning\netcd3:\n  host: {}\n",
            etcd.endpoint
        ),
    )
    .unwrap();
    let out = Command::new(patronictl())
        .args(["-c", ctl.to_str().unwrap(), "list", "-f", "json"])
        .output()
        .expect("patronictl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(list[0]["Member"], "manager_abc123");
    assert_eq!(list[0]["Role"], "Leader");
    assert_eq!(list[0]["State"], "running");
    assert_eq!(list[0]["TL"], 1);

    // The REST API answers as Patroni's does.
    assert_eq!(http_request(&m.api(), "OPTIONS", "/").unwrap().0, 200);
    assert_eq!(http_get(&m.api(), "/primary").unwrap().0, 200);
    assert_eq!(http_get(&m.api(), "/replica").unwrap().0, 503);
    let (status, body) = http_get(&m.api(), "/patroni").unwrap();
    assert_eq!(status, 200);
    let patroni = json(&body);
    assert_eq!(patroni["role"], "primary");
    assert_eq!(patroni["state"], "running");
    assert_eq!(patroni["database_system_identifier"], initialize.as_str());
    assert_eq!(patroni["patroni"]["name"], "manager_abc123");
    assert_eq!(patroni["patroni"]["scope"], "enterprises");
    assert!(patroni["xlog"]["location"].as_u64().is_some());

    // PostgreSQL is set up as the seed asks.
    assert_eq!(m.psql("SHOW data_checksums").unwrap(), "on");
    assert_eq!(m.psql("SHOW server_encoding").unwrap(), "UTF8");
    assert_eq!(m.psql("SHOW max_connections").unwrap(), "256");
    assert_eq!(
        m.psql(
            "SELECT rolcreaterole, rolcreatedb, rolcanlogin FROM pg_roles WHERE rolname = 'admin'"
        )
        .unwrap(),
        "t|t|t"
    );
    assert_eq!(
        m.psql("SELECT rolreplication FROM pg_roles WHERE rolname = 'replicator'")
            .unwrap(),
        "t"
    );
    assert_eq!(
        m.psql(
            "SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'pgadmin'"
        )
        .unwrap(),
        "pgadmin",
        "post_init created the pgadmin database"
    );
    // The seed's pg_hba lines were appended.
    let hba = std::fs::read_to_string(m.data.join("pg_hba.conf")).unwrap();
    assert!(
        hba.contains("host replication replicator 0.0.0.0/0 md5"),
        "{hba}"
    );
    assert!(hba.contains("host all all 0.0.0.0/0 md5"), "{hba}");

    // Passwords work over TCP: make loopback use passwords (initdb trusts it by default).
    std::fs::write(
        m.data.join("pg_hba.conf"),
        "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n\
         host replication replicator 127.0.0.1/32 scram-sha-256\n",
    )
    .unwrap();
    m.psql("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    psql(
        "127.0.0.1",
        m.pg_port,
        "admin",
        Some(ADMIN_PASSWORD),
        "SELECT 1",
    )
    .expect("admin logs in with its secret");
    psql(
        "127.0.0.1",
        m.pg_port,
        "postgres",
        Some(SUPERUSER_PASSWORD),
        "SELECT 1",
    )
    .expect("the superuser logs in with its secret");
    assert!(psql("127.0.0.1", m.pg_port, "admin", Some("wrong"), "SELECT 1").is_err());

    // The postmaster runs as postgres.
    let pm = m.postmaster_pid().expect("postmaster.pid");
    assert_eq!(process_uid(pm), Some(postgres_user().uid.as_raw()));

    // SIGTERM: exit 0, postgres shut down cleanly, leader key gone.
    let status = sup.stop().expect("manning exits after SIGTERM");
    assert!(status.success(), "exit status {status:?}\n{}", m.log_text());
    assert_eq!(m.cluster_state(), "shut down");
    assert_eq!(
        etcd.get(&m.key("leader")),
        None,
        "leader key deleted before exit"
    );
    assert!(!std::path::Path::new(&format!("/proc/{pm}")).exists());

    // No secret in any log line.
    let log = m.log_text();
    for s in &secrets {
        assert!(!log.contains(s.as_str()), "a secret is in the log");
    }
    assert!(log.contains("I am the leader with the lock"), "{log}");
}

/// kill -9 of the postmaster: postgres is restarted in place and the lock is kept.
#[test]
fn killed_postmaster_is_restarted_and_the_lock_kept() {
    require_root("the supervisor runs postgres as the postgres user");
    let etcd = Etcd::start();
    let m = MemberFiles::new(&etcd, "crash", "m1", "");
    let _sup = m.start();
    m.wait_leader(&etcd, Duration::from_secs(90));
    m.wait_writable(Duration::from_secs(30));
    let leader_rev = etcd.ctl(&["get", &m.key("leader"), "-w", "json"]);
    let create_rev = json(&leader_rev)["kvs"][0]["create_revision"].clone();
    let pm = m.postmaster_pid().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pm), Signal::SIGKILL).unwrap();
    let t = Instant::now();
    wait_for("a new postmaster", Duration::from_secs(30), || {
        m.postmaster_pid().filter(|p| *p != pm)
    });
    m.wait_writable(Duration::from_secs(30));
    eprintln!("writable again {:?} after kill -9", t.elapsed());
    let after = etcd.ctl(&["get", &m.key("leader"), "-w", "json"]);
    assert_eq!(
        json(&after)["kvs"][0]["create_revision"],
        create_rev,
        "the same leader key, never released"
    );
    assert_eq!(etcd.get(&m.key("leader")).as_deref(), Some("m1"));
    let log = m.log_text();
    assert!(log.contains("postgres exited unexpectedly"), "{log}");
    assert!(
        log.contains("postgres crashed and I hold the leader lock"),
        "{log}"
    );
}

/// A supervisor killed with SIGKILL cannot stop postgres itself; the postmaster's
/// parent-death signal (SIGQUIT, postgres' immediate mode) stops it at once, so no primary
/// goes on taking writes with nobody renewing its lock.
#[test]
fn postgres_stops_immediately_when_its_supervisor_is_killed() {
    require_root("the supervisor runs postgres as the postgres user");
    let etcd = Etcd::start();
    let m = MemberFiles::new(&etcd, "orphan", "m1", "");
    let mut sup = m.start();
    m.wait_leader(&etcd, Duration::from_secs(90));
    m.wait_writable(Duration::from_secs(30));
    let pm = m.postmaster_pid().expect("postmaster.pid");
    sup.signal(Signal::SIGKILL);
    let _ = sup.wait(Duration::from_secs(10));
    let t = Instant::now();
    wait_for(
        "the orphaned postmaster to exit",
        Duration::from_secs(10),
        || {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pm), None)
                .is_err()
                .then_some(())
        },
    );
    eprintln!("postmaster gone {:?} after its supervisor", t.elapsed());
    assert!(m.psql("SELECT 1").is_err(), "nothing answers any more");
    // Immediate mode: no shutdown checkpoint, crash recovery at the next start.
    assert_eq!(m.cluster_state(), "in production");
}

/// etcd frozen for longer than ttl: the primary keeps taking writes for a while (short etcd
/// trouble costs nothing), stops before the lease can expire, and is primary again once etcd
/// is back.
#[test]
fn frozen_etcd_fences_the_primary_before_the_lease_can_expire() {
    require_root("the supervisor runs postgres as the postgres user");
    let etcd = Etcd::start();
    let m = MemberFiles::new(&etcd, "fence", "m1", "");
    let _sup = m.start();
    m.wait_leader(&etcd, Duration::from_secs(90));
    m.wait_writable(Duration::from_secs(30));
    m.psql("CREATE TABLE w(at timestamptz default now())")
        .unwrap();

    // A writer on its own connection, one insert every 100 ms, recording successes.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let last_ok = std::sync::Arc::new(std::sync::Mutex::new(None::<Instant>));
    let writer = {
        let (stop, last_ok) = (stop.clone(), last_ok.clone());
        let port = m.pg_port;
        std::thread::spawn(move || {
            let mut child = Command::new(require_bin("psql"))
                .args([
                    "-X",
                    "-q",
                    "-A",
                    "-t",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                ])
                .args(["-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=0"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            use std::io::{BufRead, Write};
            let mut stdin = child.stdin.take().unwrap();
            let stdout = child.stdout.take().unwrap();
            let reader = std::thread::spawn(move || {
                for line in std::io::BufReader::new(stdout)
                    .lines()
                    .map_while(Result::ok)
                {
                    if line.trim() == "ok" {
                        *last_ok.lock().unwrap() = Some(Instant::now());
                    }
                }
            });
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if writeln!(stdin, "INSERT INTO w DEFAULT VALUES RETURNING 'ok';").is_err() {
                    break;
                }
                let _ = stdin.flush();
                std::thread::sleep(Duration::from_millis(100));
            }
            drop(stdin);
            let _ = child.wait();
            let _ = reader.join();
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        last_ok.lock().unwrap().is_some(),
        "the writer works before the freeze"
    );

    // A lower bound of when etcd could expire our lease: its remaining TTL, minus rounding.
    let lease = json(&etcd.ctl(&["get", &m.key("leader"), "-w", "json"]))["kvs"][0]["lease"]
        .as_i64()
        .expect("leader key on a lease");
    let asked = Instant::now();
    let ttl = etcd.ctl(&["lease", "timetolive", &format!("{lease:x}")]);
    let remaining: u64 = ttl
        .split("remaining(")
        .nth(1)
        .and_then(|r| r.split('s').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected timetolive output: {ttl}"));
    let earliest_expiry = asked + Duration::from_secs(remaining.saturating_sub(1));
    etcd.freeze();
    let frozen = Instant::now();

    // Wait until postgres has been fenced (writes fail) and a little more.
    std::thread::sleep(Duration::from_secs(24));
    let last_write = last_ok.lock().unwrap().expect("some write succeeded");
    eprintln!(
        "last write {:?} after the freeze; earliest lease expiry {:?} after it",
        last_write.duration_since(frozen),
        earliest_expiry.duration_since(frozen)
    );
    assert!(
        last_write < earliest_expiry,
        "a write was accepted after the lease could have expired"
    );
    assert!(
        last_write.duration_since(frozen) > Duration::from_secs(10),
        "writes should continue through a short etcd outage (Patroni demotes after \
         loop_wait + retry_timeout = 7 s)"
    );
    let log = m.log_text();
    assert!(log.contains("fence deadline reached"), "{log}");

    // etcd back: leader again, writes accepted; the promotion started timeline 2 and the
    // history key says so, as Patroni writes it.
    etcd.thaw();
    m.wait_leader(&etcd, Duration::from_secs(60));
    m.wait_writable(Duration::from_secs(60));
    let history = wait_for("the history key", Duration::from_secs(20), || {
        etcd.get(&m.key("history"))
            .map(|h| json(&h))
            .filter(|h| h.as_array().is_some_and(|a| !a.is_empty()))
    });
    assert_eq!(history[0][0], 1, "{history}");
    assert!(history[0][1].as_u64().is_some(), "{history}");
    assert_eq!(history[0][4], "m1", "{history}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = writer.join();
}

/// As PID 1 in its own PID namespace: orphans are reaped and SIGTERM stops everything.
#[test]
fn runs_as_pid_1_reaps_orphans_and_stops_on_sigterm() {
    require_root("unshare --pid needs root");
    let etcd = Etcd::start();
    // post_init leaves an orphan behind (a double-forked sleep) that PID 1 must reap.
    let m = MemberFiles::new(&etcd, "pid1", "m1", "");
    let orphan_marker = m.dir.path().join("orphan.pid");
    let script = m.dir.path().join("init-pgadmin-db.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/bash\n( sleep 3 & echo $! > {} )\nexit 0\n",
            orphan_marker.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(require_bin("unshare"));
    cmd.args(["--pid", "--fork", "--mount-proc"])
        .arg(manning_bin())
        .arg("supervise")
        .arg(&m.conf);
    m.configure(&mut cmd);
    let mut unshare = Supervisor {
        child: Some(cmd.spawn().expect("spawn unshare")),
    };
    m.wait_leader(&etcd, Duration::from_secs(90));
    let manning_pid = wait_for("manning as PID 1", Duration::from_secs(10), || {
        children_of(unshare.pid().as_raw()).first().map(|(p, _)| *p)
    });
    let ns_pid = std::fs::read_to_string(format!("/proc/{manning_pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:").map(str::to_string))
        .unwrap();
    assert!(
        ns_pid.split_whitespace().last() == Some("1"),
        "manning is PID 1 in its namespace: NSpid {ns_pid}"
    );
    // The orphan's pid was written from inside the namespace; find it from outside as a
    // `sleep` child of manning, and wait until it is gone (reaped, not a zombie).
    wait_for("the orphan to be adopted", Duration::from_secs(10), || {
        orphan_marker.exists().then_some(())
    });
    std::thread::sleep(Duration::from_secs(4));
    let zombies: Vec<_> = children_of(manning_pid)
        .into_iter()
        .filter(|(_, s)| *s == 'Z')
        .collect();
    assert!(zombies.is_empty(), "zombies left under PID 1: {zombies:?}");

    // SIGTERM to PID 1: postgres stopped cleanly, lock released, exit 0.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(manning_pid), Signal::SIGTERM).unwrap();
    let status = unshare
        .wait(Duration::from_secs(90))
        .expect("PID 1 exits after SIGTERM");
    assert!(status.success(), "{status:?}\n{}", m.log_text());
    assert_eq!(m.cluster_state(), "shut down");
    assert_eq!(etcd.get(&m.key("leader")), None);
}

/// A failing post_init rolls the bootstrap back: no initialize key, data moved aside.
#[test]
fn failed_bootstrap_rolls_back() {
    require_root("the supervisor runs postgres as the postgres user");
    let etcd = Etcd::start();
    let m = MemberFiles::new(&etcd, "rollback", "m1", "");
    std::fs::write(
        m.dir.path().join("init-pgadmin-db.sh"),
        "#!/bin/bash\necho 'cannot create pgadmin' >&2\nexit 3\n",
    )
    .unwrap();
    let mut sup = m.start();
    let status = sup
        .wait(Duration::from_secs(90))
        .expect("manning exits after a failed bootstrap");
    assert!(!status.success());
    let log = m.log_text();
    assert!(log.contains("bootstrap failed"), "{log}");
    assert!(log.contains("cannot create pgadmin"), "{log}");
    assert_eq!(etcd.get(&m.key("initialize")), None, "initialize removed");
    assert_eq!(etcd.get(&m.key("leader")), None);
    assert!(
        !m.data.join("PG_VERSION").exists(),
        "data directory moved aside"
    );
    let moved = std::fs::read_dir(m.dir.path())
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("data_"));
    assert!(
        moved,
        "the failed data directory is kept aside for inspection"
    );
}

/// A data directory from another cluster is refused, not joined.
#[test]
fn system_id_mismatch_is_refused() {
    require_root("the supervisor runs postgres as the postgres user");
    let etcd = Etcd::start();
    let m = MemberFiles::new(&etcd, "mismatch", "m1", "");
    let mut sup = m.start();
    m.wait_leader(&etcd, Duration::from_secs(90));
    assert!(sup.stop().expect("stops").success());
    etcd.ctl(&["put", &m.key("initialize"), "7000000000000000001"]);
    let mut sup = m.start();
    let status = sup
        .wait(Duration::from_secs(60))
        .expect("manning exits on a system ID mismatch");
    assert!(!status.success());
    assert!(
        m.log_text().contains("system ID mismatch"),
        "{}",
        m.log_text()
    );
    assert_eq!(m.cluster_state(), "shut down", "postgres was never started");
}

/// Bad configuration exits 2 before anything starts.
#[test]
fn bad_configuration_exits_2() {
    let etcd = Etcd::start();
    let m = MemberFiles::new(&etcd, "bad", "m1", "");
    std::fs::write(
        m.conf.join("20-bad.yml"),
        "bootstrap:\n  dcs:\n    synchronus_mode: true\n",
    )
    .unwrap();
    let out = m.command().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let log = m.log_text();
    assert!(log.contains("20-bad.yml:3"), "{log}");
    assert!(log.contains("synchronous_mode"), "{log}");
    assert!(!m.data.exists());
}

/// Under systemd: READY and STATUS reach NOTIFY_SOCKET, postgres never inherits it, and
/// SIGHUP re-reads the configuration and reloads postgres.
#[test]
fn notifies_systemd_keeps_notify_socket_from_postgres_and_reloads_on_hup() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    require_root("the supervisor runs postgres as the postgres user");
    let etcd = Etcd::start();
    let mut m = MemberFiles::new(&etcd, "notify", "m1", "");
    let name = format!("manning-test-notify-{}", std::process::id());
    let socket =
        UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    m.env.insert("NOTIFY_SOCKET".into(), format!("@{name}"));
    let sup = m.start();
    m.wait_leader(&etcd, Duration::from_secs(90));
    m.wait_writable(Duration::from_secs(30));

    let mut messages = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    while !messages.contains("READY=1") && Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            messages.push_str(&String::from_utf8_lossy(&buf[..n]));
            messages.push('\n');
        }
    }
    assert!(messages.contains("READY=1"), "{messages}");
    assert!(messages.contains("STATUS="), "{messages}");

    let pm = m.postmaster_pid().expect("postmaster.pid");
    let environ = std::fs::read(format!("/proc/{pm}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(
        !environ.contains("NOTIFY_SOCKET"),
        "postgres got NOTIFY_SOCKET"
    );
    assert!(
        !environ.contains("PATRONI_"),
        "postgres got PATRONI_* variables"
    );

    // SIGHUP: a changed parameter reaches postgres without a restart.
    assert_eq!(m.psql("SHOW work_mem").unwrap(), "4MB");
    std::fs::write(
        m.conf.join("20-reload.yml"),
        "postgresql:\n  parameters:\n    work_mem: 7MB\n",
    )
    .unwrap();
    sup.signal(Signal::SIGHUP);
    wait_for(
        "work_mem to change after SIGHUP",
        Duration::from_secs(20),
        || (m.psql("SHOW work_mem").ok().as_deref() == Some("7MB")).then_some(()),
    );
    assert_eq!(m.postmaster_pid(), Some(pm), "reloaded, not restarted");
}
