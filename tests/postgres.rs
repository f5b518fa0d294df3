//! The postgres layer against a real PostgreSQL 15 run as the `postgres` user: bootstrap
//! with the seed's settings, passwords with quotes and backslashes, post_init, crash and
//! restart, the stop ladder, stale and live `postmaster.pid`, and secrets never visible in
//! any process's argv or environment, nor in logs.
//!
//! Every child process in this test binary is started through the reaper (the process is a
//! subreaper, so orphaned backends of a killed postmaster are reaped here too).

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use manning::init::privileges::{self, Dirs, RunAs};
use manning::init::reaper::{self, Reaper};
use manning::postgres::bootstrap::{self, BootstrapSpec, HbaSetup};
use manning::postgres::conf::{self, ParamInputs, ServerParams};
use manning::postgres::controldata::{self, ClusterState};
use manning::postgres::initdb::{self, InitdbSpec};
use manning::postgres::pidfile::{self, PidFileState};
use manning::postgres::process::{
    Postmaster, PostmasterOutput, PostmasterSpec, StartError, StopMode, StopPlan,
};
use manning::postgres::sql::{self, LocalConn, RoleSpec};
use manning::postgres::{Credentials, PgBin, Secret};
use nix::sys::signal::Signal;

use support::*;

/// Passwords with every character that breaks naive quoting: `'`, `"`, `%`, `#`, `\`, `$$`.
const SUPERUSER_PW: &str = r#"Su'per"U%s#er\pw$$1"#;
const ADMIN_PW: &str = r#"ad'm"in%#\$$ pw"#;
const REPLICATION_PW: &str = r#"re"pl'i%c#a\tor$$"#;
const REWIND_PW: &str = r#"re'wi"nd\%#$$"#;

/// The seed's post_init script.
const PGADMIN_SCRIPT: &str = "#!/bin/bash\n\
psql -d \"$1\" -c \"CREATE USER pgadmin WITH PASSWORD 'access';\"\n\
psql -d \"$1\" -c \"CREATE DATABASE pgadmin OWNER pgadmin;\"\n";

// ---------------------------------------------------------------------------------------
// Log capture: everything manning logs (at DEBUG) goes into one buffer we can search.

#[derive(Clone)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = LogBuf(buf.clone());
        // The same cap on tokio_postgres as manning::logging applies in production.
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug,tokio_postgres=info")
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .try_init();
        buf
    })
    .clone()
}

fn logs_text() -> String {
    String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned()
}

// ---------------------------------------------------------------------------------------
// A cluster directory owned by postgres.

struct Cluster {
    dir: tempfile::TempDir,
    data: PathBuf,
    sock: PathBuf,
    port: u16,
    log: PathBuf,
    run_as: RunAs,
    bin: PgBin,
}

impl Cluster {
    fn new() -> Cluster {
        require_root("postgres runs as the postgres user");
        require_bin("postgres");
        captured_logs();
        Reaper::install().unwrap();
        let dir = postgres_tempdir();
        let run_as = RunAs::for_postgres(None).unwrap();
        let data = dir.path().join("data");
        let sock = dir.path().join("sock");
        privileges::prepare_dirs(
            &run_as,
            &Dirs {
                data_dir: data.clone(),
                socket_dirs: vec![sock.clone()],
                socket_dir_mode: 0o2775,
                pgpass: None,
            },
        )
        .unwrap();
        let log = dir.path().join("postgres.log");
        Cluster {
            data,
            sock,
            port: free_port(),
            log,
            run_as,
            bin: PgBin::new(PG_BIN_DIR),
            dir,
        }
    }

    fn params(&self, dynamic: &[(&str, &str)]) -> ServerParams {
        let mut local = BTreeMap::new();
        // Test speed only; nothing here depends on durability.
        local.insert("fsync".to_string(), "off".to_string());
        conf::server_parameters(&ParamInputs {
            dynamic: dynamic
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            local,
            listen: format!("127.0.0.1:{}", self.port),
            cluster_name: "enterprises".into(),
            default_socket_dir: self.sock.clone(),
        })
        .unwrap()
    }

    fn postmaster_spec(&self) -> PostmasterSpec {
        let mut spec = PostmasterSpec::new(self.bin.clone(), &self.data);
        spec.cmdline = self.params(&[]).cmdline;
        spec.run_as = Some(self.run_as.clone());
        spec.output = PostmasterOutput::File(self.log.clone());
        spec
    }

    fn initdb_spec(&self, password: Option<&str>) -> InitdbSpec {
        InitdbSpec {
            bin: self.bin.clone(),
            data_dir: self.data.clone(),
            options: initdb::parse_options(&serde_json::json!([
                {"encoding": "UTF8"},
                "data-checksums"
            ]))
            .unwrap(),
            superuser: Credentials {
                username: "postgres".into(),
                password: password.map(Secret::new),
            },
            run_as: Some(self.run_as.clone()),
            secret_dir: self.dir.path().to_path_buf(),
            timeout: Duration::from_secs(120),
        }
    }

    /// A bare-bones bootstrap (no passwords, no post_init) for process-level tests.
    fn simple_spec(&self) -> BootstrapSpec {
        BootstrapSpec {
            initdb: self.initdb_spec(None),
            hba: HbaSetup::default(),
            params: self.params(&[]),
            postmaster: self.postmaster_spec(),
            ready_timeout: Duration::from_secs(60),
            replication: None,
            rewind: None,
            users: Vec::new(),
            post_init: None,
            post_init_timeout: Duration::from_secs(60),
        }
    }

    fn conn(&self, password: Option<&str>) -> LocalConn {
        LocalConn::new(&self.sock, self.port, "postgres", password.map(Secret::new))
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn start(&self) -> Postmaster {
        let pm = Postmaster::start(&self.postmaster_spec()).await.unwrap();
        pm.wait_ready(Duration::from_secs(60)).await.unwrap();
        pm
    }
}

/// psql over TCP to 127.0.0.1 with an explicit password (PGPASSWORD is fine in a test).
async fn psql_tcp(
    port: u16,
    user: &str,
    db: &str,
    password: &str,
    sql: &str,
) -> Result<String, String> {
    let mut cmd = Command::new(require_bin("psql"));
    cmd.args(["-X", "-A", "-t", "-w", "-h", "127.0.0.1"])
        .args(["-p", &port.to_string(), "-U", user, "-d", db, "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "5")
        .env_remove("PGPASSFILE");
    let out = reaper::output(cmd, Duration::from_secs(30))
        .await
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

async fn query_one_string(client: &tokio_postgres::Client, q: &str) -> String {
    client.query_one(q, &[]).await.unwrap().get(0)
}

async fn query_bool(client: &tokio_postgres::Client, q: &str) -> bool {
    client.query_one(q, &[]).await.unwrap().get(0)
}

// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_with_the_seed_configuration() {
    let c = Cluster::new();
    let script = c.dir.path().join("init-pgadmin-db.sh");
    std::fs::write(&script, PGADMIN_SCRIPT).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

    let seed_hba = vec![
        "host replication replicator 0.0.0.0/0 md5".to_string(),
        "host all all 0.0.0.0/0 md5".to_string(),
    ];
    let spec = BootstrapSpec {
        initdb: c.initdb_spec(Some(SUPERUSER_PW)),
        hba: HbaSetup {
            append: seed_hba.clone(),
            replace: None,
        },
        params: c.params(&[("max_connections", "256")]),
        postmaster: c.postmaster_spec(),
        ready_timeout: Duration::from_secs(60),
        replication: Some(Credentials {
            username: "replicator".into(),
            password: Some(Secret::new(REPLICATION_PW)),
        }),
        rewind: Some(Credentials {
            username: "rewind_user".into(),
            password: Some(Secret::new(REWIND_PW)),
        }),
        users: vec![
            RoleSpec::new(
                "admin",
                Some(Secret::new(ADMIN_PW)),
                &["createrole".into(), "createdb".into()],
            )
            .unwrap(),
        ],
        post_init: Some(script.display().to_string()),
        post_init_timeout: Duration::from_secs(60),
    };
    let secrets: Vec<String> = [SUPERUSER_PW, ADMIN_PW, REPLICATION_PW, REWIND_PW]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let watch = SecretWatch::start(secrets.clone());
    let started = Instant::now();
    let done = bootstrap::bootstrap(&spec).await.unwrap();
    let took = started.elapsed();
    let (samples, hits) = watch.finish();
    eprintln!("bootstrap took {took:?}; /proc swept {samples} times");
    eprintln!("{}", logs_text());
    assert!(samples > 20, "the /proc sampler ran while bootstrap ran");
    assert!(hits.is_empty(), "secrets visible in /proc: {hits:?}");
    // The temporary --pwfile and PGPASSFILE are gone.
    let leftovers: Vec<_> = std::fs::read_dir(c.dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("manning-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let pm = done.postmaster.clone();
    // The postmaster runs as postgres.
    assert_eq!(
        process_uid(pm.pid().as_raw()),
        Some(postgres_user().uid.as_raw())
    );
    assert_ne!(done.system_identifier, 0);
    assert!(!done.probe.in_recovery);
    assert_eq!(done.probe.timeline, Some(1));
    assert!(done.probe.server_version >= 150000);

    // Files: initdb's conf kept as base, ours includes it; seed lines appended to pg_hba.
    let ours = std::fs::read_to_string(c.data.join("postgresql.conf")).unwrap();
    assert!(ours.contains("include 'postgresql.base.conf'"));
    assert!(c.data.join("postgresql.base.conf").is_file());
    let hba = std::fs::read_to_string(c.data.join("pg_hba.conf")).unwrap();
    assert!(
        hba.ends_with("host replication replicator 0.0.0.0/0 md5\nhost all all 0.0.0.0/0 md5\n")
    );

    // Cluster settings as the seed asks.
    let cd = controldata::read(&c.bin, &c.data, Some(&c.run_as))
        .await
        .unwrap();
    assert_eq!(cd.system_identifier, done.system_identifier);
    assert!(cd.checksums_enabled());
    assert_eq!(cd.state, ClusterState::InProduction);
    let client = c.conn(Some(SUPERUSER_PW)).connect().await.unwrap();
    assert_eq!(
        query_one_string(&client, "SHOW max_connections").await,
        "256"
    );
    assert_eq!(
        query_one_string(&client, "SHOW server_encoding").await,
        "UTF8"
    );
    assert_eq!(query_one_string(&client, "SHOW data_checksums").await, "on");
    assert_eq!(query_one_string(&client, "SHOW wal_level").await, "replica");
    assert_eq!(query_one_string(&client, "SHOW wal_log_hints").await, "on");
    assert_eq!(
        query_one_string(&client, "SHOW cluster_name").await,
        "enterprises"
    );
    // Command-line parameters cannot be overridden by ALTER SYSTEM.
    let src: String = client
        .query_one(
            "SELECT source FROM pg_settings WHERE name = 'max_connections'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(src, "command line");
    assert!(query_bool(&client, "SELECT rolcreaterole AND rolcreatedb AND rolcanlogin AND NOT rolsuper FROM pg_roles WHERE rolname = 'admin'").await);
    assert!(
        query_bool(
            &client,
            "SELECT rolreplication AND rolcanlogin FROM pg_roles WHERE rolname = 'replicator'"
        )
        .await
    );
    assert!(query_bool(&client, "SELECT has_function_privilege('rewind_user', 'pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)', 'EXECUTE') AND has_function_privilege('rewind_user', 'pg_catalog.pg_ls_dir(text, boolean, boolean)', 'EXECUTE')").await);
    // post_init made the pgadmin user and database.
    assert!(query_bool(&client, "SELECT EXISTS (SELECT 1 FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname = 'pgadmin' AND r.rolname = 'pgadmin')").await);
    // Passwords are stored as SCRAM verifiers.
    assert!(
        query_bool(
            &client,
            "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'admin'"
        )
        .await
    );

    // A role hashed with md5 (server set to md5 in this session), for a real md5 login.
    client
        .batch_execute("SET password_encryption = 'md5'")
        .await
        .unwrap();
    sql::ensure_role(
        &client,
        &RoleSpec::new("md5user", Some(Secret::new(ADMIN_PW)), &[]).unwrap(),
    )
    .await
    .unwrap();
    assert!(
        query_bool(
            &client,
            "SELECT rolpassword LIKE 'md5%' FROM pg_authid WHERE rolname = 'md5user'"
        )
        .await
    );
    client
        .batch_execute("RESET password_encryption")
        .await
        .unwrap();
    // Ensuring again alters, and quoting of identifiers holds for odd names too.
    assert_eq!(
        sql::ensure_role(
            &client,
            &RoleSpec::new(
                "admin",
                Some(Secret::new(ADMIN_PW)),
                &["createrole".into(), "createdb".into()]
            )
            .unwrap()
        )
        .await
        .unwrap(),
        sql::RoleChange::Altered
    );
    let odd = r#"We"ird'Na%me"#;
    sql::ensure_role(
        &client,
        &RoleSpec::new(odd, Some(Secret::new(ADMIN_PW)), &[]).unwrap(),
    )
    .await
    .unwrap();
    assert!(sql::ensure_database(&client, odd, Some(odd)).await.unwrap());
    assert!(!sql::ensure_database(&client, odd, Some(odd)).await.unwrap());
    let lit: String = client
        .query_one(&format!("SELECT {}", sql::quote_literal(ADMIN_PW)), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(lit, ADMIN_PW);
    drop(client);

    // initdb trusts 127.0.0.1; replace pg_hba (postgresql.pg_hba) so passwords are checked.
    conf::write_hba(
        &c.data,
        &[
            "local all all trust".into(),
            "host all md5user 127.0.0.1/32 md5".into(),
            "host all admin 127.0.0.1/32 md5".into(),
            "host all all 127.0.0.1/32 scram-sha-256".into(),
        ],
        Some(&c.run_as),
    )
    .unwrap();
    assert!(pm.reload().unwrap());
    wait_for_async(Duration::from_secs(10), || async {
        psql_tcp(c.port, "admin", "postgres", "wrong", "select 1")
            .await
            .is_err()
    })
    .await;
    for (user, db, pw) in [
        ("admin", "postgres", ADMIN_PW),
        ("md5user", "postgres", ADMIN_PW),
        ("replicator", "postgres", REPLICATION_PW),
        ("rewind_user", "postgres", REWIND_PW),
        ("postgres", "postgres", SUPERUSER_PW),
        ("pgadmin", "pgadmin", "access"),
        (odd, odd, ADMIN_PW),
    ] {
        let who = psql_tcp(c.port, user, db, pw, "select current_user").await;
        assert_eq!(who.as_deref(), Ok(user), "{user} logs in with its password");
        let bad = psql_tcp(c.port, user, db, "not-the-password", "select 1").await;
        assert!(bad.is_err(), "{user} with a wrong password must fail");
    }

    // Nothing logged the passwords: not manning's logs, not postgres' log.
    let pg_log = c.log_text();
    let our_log = logs_text();
    for s in &secrets {
        assert!(
            !pg_log.contains(s.as_str()),
            "postgres log contains a password"
        );
        assert!(
            !our_log.contains(s.as_str()),
            "manning's log contains a password"
        );
    }
    assert!(
        !pg_log.contains("SCRAM-SHA-256$"),
        "postgres log contains a verifier"
    );
    assert!(
        !our_log.contains("SCRAM-SHA-256$"),
        "manning's log contains a verifier"
    );
    assert!(
        our_log.contains("initdb: "),
        "initdb progress lines are logged"
    );

    let out = pm
        .stop(StopPlan::ladder(
            Duration::from_secs(5),
            Duration::from_secs(30),
        ))
        .await;
    assert_eq!(out.mode, Some(StopMode::Smart));
    assert!(out.status.success());
}

async fn wait_for_async<F, Fut>(timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(
            Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_restart_and_stop_modes() {
    let c = Cluster::new();
    let done = bootstrap::bootstrap(&c.simple_spec()).await.unwrap();
    let pm = done.postmaster;

    // kill -9 of the postmaster: exited() reports it.
    let t = Instant::now();
    nix::sys::signal::kill(pm.pid(), Signal::SIGKILL).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), pm.exited())
        .await
        .expect("exit noticed");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    eprintln!("postmaster exit noticed {:?} after kill -9", t.elapsed());
    let cd = controldata::read(&c.bin, &c.data, Some(&c.run_as))
        .await
        .unwrap();
    assert_eq!(cd.state, ClusterState::InProduction, "an unclean stop");

    // Restart: stale postmaster.pid, orphaned backends dealt with, crash recovery.
    let t = Instant::now();
    let pm = c.start().await;
    eprintln!(
        "restart after kill -9 (incl. crash recovery) took {:?}",
        t.elapsed()
    );
    assert!(
        c.log_text()
            .contains("not properly shut down; automatic recovery in progress"),
        "{}",
        c.log_text()
    );

    // Stop ladder: an idle session keeps smart mode waiting; fast finishes it.
    let idle = c.conn(None).connect().await.unwrap();
    idle.batch_execute("SELECT 1").await.unwrap();
    let out = pm
        .stop(StopPlan::ladder(
            Duration::from_secs(1),
            Duration::from_secs(30),
        ))
        .await;
    eprintln!("smart(1s) -> fast with an idle session: {out:?}");
    assert_eq!(out.mode, Some(StopMode::Fast));
    assert!(out.elapsed >= Duration::from_secs(1));
    assert!(out.elapsed < Duration::from_secs(15));
    assert!(out.status.success());
    let log = c.log_text();
    assert!(log.contains("received smart shutdown request"));
    assert!(log.contains("received fast shutdown request"));
    drop(idle);
    let cd = controldata::read(&c.bin, &c.data, Some(&c.run_as))
        .await
        .unwrap();
    assert!(cd.state.is_clean_shutdown());

    // Immediate.
    let pm = c.start().await;
    let out = pm.stop(StopPlan::immediate()).await;
    eprintln!("immediate: {out:?}");
    assert_eq!(out.mode, Some(StopMode::Immediate));
    assert!(out.elapsed < Duration::from_secs(10));

    // Fencing from a timer task while a smart stop waits on an idle session.
    let pm = c.start().await;
    assert!(
        c.log_text()
            .matches("automatic recovery in progress")
            .count()
            >= 2
    );
    let idle = c.conn(None).connect().await.unwrap();
    idle.batch_execute("SELECT 1").await.unwrap();
    let fencer = pm.clone();
    let timer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t = Instant::now();
        let sent = fencer.immediate().unwrap();
        (sent, t.elapsed())
    });
    let out = pm
        .stop(StopPlan::ladder(
            Duration::from_secs(30),
            Duration::from_secs(30),
        ))
        .await;
    let (sent, call_took) = timer.await.unwrap();
    assert!(sent);
    assert!(
        call_took < Duration::from_millis(50),
        "immediate() is cheap: {call_took:?}"
    );
    assert_eq!(out.mode, Some(StopMode::Immediate));
    assert!(out.elapsed < Duration::from_secs(10), "{out:?}");
    drop(idle);

    // A stop of an exited postmaster says so.
    let again = pm.stop(StopPlan::default()).await;
    assert_eq!(again.mode, None);
    assert!(!pm.immediate().unwrap());

    let pm = c.start().await;
    pm.stop(StopPlan::fast(Duration::from_secs(30))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_pidfiles_and_live_postmasters() {
    let c = Cluster::new();
    let done = bootstrap::bootstrap(&c.simple_spec()).await.unwrap();
    let pm = done.postmaster;

    // A live postmaster blocks a second start (data directory and socket).
    match Postmaster::start(&c.postmaster_spec()).await {
        Err(StartError::AlreadyRunning { pid, .. }) => assert_eq!(pid, pm.pid()),
        other => panic!("expected AlreadyRunning, got {other:?}"),
    }
    assert_eq!(
        pidfile::check(&c.data).unwrap(),
        PidFileState::Live { pid: pm.pid() }
    );
    let text = std::fs::read_to_string(c.data.join("postmaster.pid")).unwrap();
    let pf = pidfile::parse(&text).unwrap();
    assert_eq!(pf.pid, pm.pid().as_raw());
    assert_eq!(pf.port, Some(c.port));
    assert_eq!(pf.socket_dir.as_deref(), Some(c.sock.as_path()));
    assert_eq!(pf.status, Some(pidfile::PmStatus::Ready));
    // Even with its postmaster.pid deleted, a live postmaster is recognised (after the
    // patience given to exiting backends) and never signalled by the start attempt.
    std::fs::remove_file(c.data.join("postmaster.pid")).unwrap();
    let mut impatient = c.postmaster_spec();
    impatient.orphan_wait = Duration::from_millis(500);
    match Postmaster::start(&impatient).await {
        // The socket lock file names it first.
        Err(StartError::PortInUse { pid, .. }) => assert_eq!(pid, pm.pid()),
        other => panic!("expected PortInUse, got {other:?}"),
    }
    // Without the socket lock as well, the /proc scan still finds it.
    std::fs::remove_file(pidfile::socket_lock_path(&c.sock, c.port)).unwrap();
    match Postmaster::start(&impatient).await {
        Err(StartError::AlreadyRunning { pid, .. }) => assert_eq!(pid, pm.pid()),
        other => panic!("expected AlreadyRunning, got {other:?}"),
    }
    assert!(pm.is_running());
    pm.stop(StopPlan::fast(Duration::from_secs(30))).await;
    assert_eq!(pidfile::check(&c.data).unwrap(), PidFileState::Absent);

    let write_pidfile = |pid: i32| {
        let path = c.data.join("postmaster.pid");
        std::fs::write(
            &path,
            format!(
                "{pid}\n{}\n1700000000\n{}\n{}\n127.0.0.1\n  1 2\nready   \n",
                c.data.display(),
                c.port,
                c.sock.display()
            ),
        )
        .unwrap();
        let u = postgres_user();
        nix::unistd::chown(&path, Some(u.uid), Some(u.gid)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    };

    // 1. The pid of a dead process.
    let reaper = Reaper::install().unwrap();
    let dead = reaper.spawn(Command::new("/bin/true")).unwrap();
    dead.wait().await;
    write_pidfile(dead.pid().as_raw());
    assert!(matches!(
        pidfile::check(&c.data).unwrap(),
        PidFileState::Stale { .. }
    ));
    let pm = c.start().await;
    pm.stop(StopPlan::fast(Duration::from_secs(30))).await;

    // 2. The pid of a live process of the postgres user that is not postgres (pid reuse in
    //    a fresh container) — postgres alone would refuse this one — in postmaster.pid and
    //    in the socket lock file.
    let mut sleep = Command::new("/bin/sleep");
    sleep.arg("60");
    c.run_as.apply_to(&mut sleep).unwrap();
    let sleeper = reaper.spawn(sleep).unwrap();
    write_pidfile(sleeper.pid().as_raw());
    let lock = pidfile::socket_lock_path(&c.sock, c.port);
    std::fs::write(&lock, format!("{}\n{}\n", sleeper.pid(), c.data.display())).unwrap();
    let u = postgres_user();
    nix::unistd::chown(&lock, Some(u.uid), Some(u.gid)).unwrap();
    match pidfile::check(&c.data).unwrap() {
        PidFileState::Stale { reason } => assert!(reason.contains("not postgres"), "{reason}"),
        other => panic!("expected stale, got {other:?}"),
    }
    let pm = c.start().await;
    assert!(pm.is_running());
    sleeper.signal(Signal::SIGTERM).unwrap();
    sleeper.wait().await;
    pm.stop(StopPlan::fast(Duration::from_secs(30))).await;

    // 3. An empty file (a crash during start-up).
    std::fs::write(c.data.join("postmaster.pid"), "").unwrap();
    let pm = c.start().await;
    pm.stop(StopPlan::fast(Duration::from_secs(30))).await;

    // 4. Our own pid (reused after a restart).
    write_pidfile(std::process::id() as i32);
    let pm = c.start().await;
    pm.stop(StopPlan::fast(Duration::from_secs(30))).await;
    let log = c.log_text();
    assert!(!log.contains("FATAL:  lock file"), "{log}");
}

#[tokio::test]
async fn postgres_is_never_started_as_root() {
    Reaper::install().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("PG_VERSION"), "15\n").unwrap();
    let mut spec = PostmasterSpec::new(PgBin::new(PG_BIN_DIR), dir.path());
    spec.run_as = Some(RunAs::resolve("root").unwrap());
    let err = Postmaster::start(&spec).await.unwrap_err();
    assert!(err.is_usage());
    assert!(
        err.to_string().contains("refusing to run postgres as root"),
        "{err}"
    );
    let err = manning::init::privileges::PrivilegeError::RootRefused("root".into()).into_anyhow();
    assert_eq!(manning::error::exit_code_for(&err), 2);
    // Not a data directory.
    let mut spec = PostmasterSpec::new(PgBin::new(PG_BIN_DIR), dir.path().join("nope"));
    spec.run_as = Some(RunAs::for_postgres(None).unwrap());
    assert!(matches!(
        Postmaster::start(&spec).await,
        Err(StartError::NoDataDir(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_bootstrap_is_rolled_back() {
    let c = Cluster::new();
    let mut spec = c.simple_spec();
    spec.post_init = Some("/bin/sh -c 'echo something broke >&2; exit 3'".into());
    let err = bootstrap::bootstrap(&spec).await.unwrap_err();
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(msg.contains("post_init"), "{msg}");
    assert!(
        msg.contains("something broke"),
        "stderr tail in the error: {msg}"
    );
    let moved = err.moved_to.clone().expect("data directory moved aside");
    assert!(moved.join("PG_VERSION").is_file());
    assert!(!c.data.exists());
    // Nothing keeps running.
    assert!(pidfile::postgres_processes_in(&moved).is_empty());
    assert_eq!(pidfile::check(&moved).unwrap(), PidFileState::Absent);
}
