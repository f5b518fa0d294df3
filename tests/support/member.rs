//! A `manning supervise` member for integration tests: the seed's `patroni.yml` verbatim
//! plus a second YAML file with the test's overrides (ports, paths, post_init), secrets in a
//! directory, and the compose file's `PATRONI_*` variables pointed at loopback.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::*;

/// The seed's patroni.yml, byte for byte.
pub const SEED_PATRONI_YML: &str = include_str!("../fixtures/config/seed-patroni.yml");

/// Secrets with characters that break naive YAML or SQL quoting.
pub const ADMIN_PASSWORD: &str = "adm#in: 'pw\" {x} *y %z \\w";
pub const REPLICATION_PASSWORD: &str = "rep%pw' $$ # \\";
pub const SUPERUSER_PASSWORD: &str = "su'pw\"\\% #$1";

/// The pgAdmin script of the seed.
pub const PGADMIN_SCRIPT: &str = "#!/bin/bash\n\
psql -d \"$1\" -c \"CREATE USER pgadmin WITH PASSWORD 'access';\"\n\
psql -d \"$1\" -c \"CREATE DATABASE pgadmin OWNER pgadmin;\"\n";

/// Files of one member (config dir, secrets, data) in a temp dir the postgres user can use.
pub struct MemberFiles {
    pub dir: tempfile::TempDir,
    pub name: String,
    pub scope: String,
    pub pg_port: u16,
    pub api_port: u16,
    /// `<dir>/conf`: `00-seed.yml` and `10-test.yml`.
    pub conf: PathBuf,
    pub data: PathBuf,
    pub sock: PathBuf,
    pub log: PathBuf,
    pub env: BTreeMap<String, String>,
}

impl MemberFiles {
    /// Prepare a lone member of `scope` talking to `etcd`. `extra_yaml` is appended to the
    /// test's override file. The seed's `synchronous_mode_strict` is turned off: a lone
    /// primary in strict mode makes every commit wait for a standby that never comes (as
    /// Patroni does); [`MemberFiles::clustered`] keeps it.
    pub fn new(etcd: &Etcd, scope: &str, name: &str, extra_yaml: &str) -> MemberFiles {
        MemberFiles::build(
            etcd,
            scope,
            name,
            "  dcs:\n    synchronous_mode_strict: false\n",
            extra_yaml,
        )
    }

    /// A member of a cluster of several, with the seed's dynamic settings unchanged
    /// (synchronous replication, strict).
    pub fn clustered(etcd: &Etcd, scope: &str, name: &str) -> MemberFiles {
        MemberFiles::build(etcd, scope, name, "", "")
    }

    fn build(
        etcd: &Etcd,
        scope: &str,
        name: &str,
        bootstrap_yaml: &str,
        extra_yaml: &str,
    ) -> MemberFiles {
        let dir = postgres_tempdir();
        let conf = dir.path().join("conf");
        let secrets = dir.path().join("secrets");
        let sock = dir.path().join("sock");
        std::fs::create_dir(&conf).unwrap();
        std::fs::create_dir(&secrets).unwrap();
        for (n, v) in [
            ("postgres_admin_password", ADMIN_PASSWORD),
            ("patroni_replication_password", REPLICATION_PASSWORD),
            ("patroni_superuser_password", SUPERUSER_PASSWORD),
        ] {
            std::fs::write(secrets.join(n), format!("{v}\n")).unwrap();
        }
        let script = dir.path().join("init-pgadmin-db.sh");
        std::fs::write(&script, PGADMIN_SCRIPT).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(conf.join("00-seed.yml"), SEED_PATRONI_YML).unwrap();
        let overrides = format!(
            "bootstrap:\n  post_init: {}\n{bootstrap_yaml}postgresql:\n  parameters:\n    \
             unix_socket_directories: {}\n    fsync: 'off'\n{extra_yaml}",
            script.display(),
            sock.display()
        );
        std::fs::write(conf.join("10-test.yml"), overrides).unwrap();
        let pg_port = free_port();
        let api_port = free_port();
        let data = dir.path().join("data");
        let mut env = BTreeMap::new();
        for (k, v) in [
            ("PATRONI_NAME", name.to_string()),
            ("PATRONI_NAMESPACE", "/manning".to_string()),
            ("PATRONI_SCOPE", scope.to_string()),
            (
                "PATRONI_POSTGRESQL_CONNECT_ADDRESS",
                format!("127.0.0.1:{pg_port}"),
            ),
            (
                "PATRONI_RESTAPI_CONNECT_ADDRESS",
                format!("127.0.0.1:{api_port}"),
            ),
            ("PATRONI_RESTAPI_LISTEN", format!("127.0.0.1:{api_port}")),
            ("PATRONI_POSTGRESQL_LISTEN", format!("127.0.0.1:{pg_port}")),
            ("PATRONI_POSTGRESQL_DATA_DIR", data.display().to_string()),
            ("PATRONI_ETCD3_HOST", etcd.endpoint.clone()),
            ("MANNING_SECRETS_DIR", secrets.display().to_string()),
        ] {
            env.insert(k.to_string(), v);
        }
        let log = dir.path().join("manning.log");
        MemberFiles {
            name: name.to_string(),
            scope: scope.to_string(),
            pg_port,
            api_port,
            conf,
            data,
            sock,
            log,
            env,
            dir,
        }
    }

    /// `/manning/<scope>/<key>`.
    pub fn key(&self, key: &str) -> String {
        format!("/manning/{}/{key}", self.scope)
    }

    pub fn api(&self) -> String {
        format!("127.0.0.1:{}", self.api_port)
    }

    /// The `manning supervise` command for these files (output appended to `log`).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(manning_bin());
        cmd.arg("supervise").arg(&self.conf);
        self.configure(&mut cmd);
        cmd
    }

    /// Environment and output redirection for a command running this member.
    pub fn configure(&self, cmd: &mut Command) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
    }

    /// Start `manning supervise`.
    pub fn start(&self) -> Supervisor {
        let child = self.command().spawn().expect("spawn manning supervise");
        Supervisor { child: Some(child) }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// psql as the superuser over the member's UNIX socket (trust), one statement.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        psql(
            &self.sock.display().to_string(),
            self.pg_port,
            "postgres",
            None,
            sql,
        )
    }

    /// Wait until etcd says this member holds the leader lock.
    pub fn wait_leader(&self, etcd: &Etcd, timeout: Duration) {
        let key = self.key("leader");
        wait_for(
            &format!("{} to hold the leader lock", self.name),
            timeout,
            || (etcd.get(&key).as_deref() == Some(self.name.as_str())).then_some(()),
        );
    }

    /// Wait until the member's postgres accepts a write.
    pub fn wait_writable(&self, timeout: Duration) {
        wait_for("postgres to accept writes", timeout, || {
            self.psql("CREATE TABLE IF NOT EXISTS manning_probe(x int); INSERT INTO manning_probe VALUES (1)")
                .ok()
        });
    }

    /// The postmaster's pid from postmaster.pid.
    pub fn postmaster_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// `pg_controldata`'s "Database cluster state".
    pub fn cluster_state(&self) -> String {
        let out = Command::new(require_bin("pg_controldata"))
            .arg(&self.data)
            .env("LC_ALL", "C")
            .output()
            .expect("run pg_controldata");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("Database cluster state:"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }
}

/// psql with an optional password; `host` may be a socket directory.
pub fn psql(
    host: &str,
    port: u16,
    user: &str,
    password: Option<&str>,
    sql: &str,
) -> Result<String, String> {
    let mut cmd = Command::new(require_bin("psql"));
    cmd.args(["-X", "-A", "-t", "-w", "-h", host, "-p", &port.to_string()])
        .args(["-U", user, "-d", "postgres", "-c", sql])
        .env("PGCONNECT_TIMEOUT", "5")
        .env_remove("PGPASSFILE");
    match password {
        Some(p) => cmd.env("PGPASSWORD", p),
        None => cmd.env_remove("PGPASSWORD"),
    };
    let out = cmd.output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A running `manning supervise`; SIGTERM and wait on drop (it stops postgres itself).
pub struct Supervisor {
    pub child: Option<Child>,
}

impl Supervisor {
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0))
    }

    pub fn signal(&self, sig: Signal) {
        let _ = kill(self.pid(), sig);
    }

    /// Wait for exit, up to `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.signal(Signal::SIGTERM);
        self.wait(Duration::from_secs(90))
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal(Signal::SIGTERM);
            if self.wait(Duration::from_secs(60)).is_none() {
                // Last resort for a hung test: SIGQUIT makes it stop postgres immediately.
                self.signal(Signal::SIGQUIT);
                let _ = self.wait(Duration::from_secs(30));
            }
        }
    }
}

/// Every process whose parent is `ppid` (from /proc), with its state letter.
pub fn children_of(ppid: i32) -> Vec<(i32, char)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let parent: i32 = fields.next().and_then(|s| s.parse().ok()).unwrap_or(-1);
        if parent == ppid {
            out.push((pid, state));
        }
    }
    out
}
