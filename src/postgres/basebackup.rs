//! Building a replica's data directory with `pg_basebackup` from a running member (Patroni's
//! `basebackup` replica method).
//!
//! The command is Patroni's: `pg_basebackup --pgdata=DIR -X stream --dbname=DSN` plus the
//! options of `postgresql.basebackup` (validated when the configuration is loaded). The DSN
//! names the replication user but no password: the password goes into a 0600 `PGPASSFILE`
//! that exists only while the program runs, so it never reaches argv or the environment.
//! `--verbose` makes pg_basebackup say what it is doing (checkpoint, WAL start, streaming,
//! end); each of those lines is logged as progress.
//!
//! Unlike Patroni, `--checkpoint=fast` is the default (a `checkpoint` option in
//! `postgresql.basebackup` wins): with the server's spread checkpoint a copy waits up to
//! `checkpoint_completion_target × checkpoint_timeout` (4.5 min by default) before the first
//! byte moves, and a new replica should be streaming in seconds. The price is one burst of
//! writes on the source.
//!
//! A failed attempt leaves a half-copied directory behind; it is emptied (not removed: its
//! owner and mode were set up as root before the privilege drop) before the next attempt.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::conf::ConnInfo;
use super::secret_file::{SecretFile, pgpass_line};
use super::{Credentials, PgBin};
use crate::config::CmdOption;
use crate::init::privileges::{PrivilegeError, RunAs};
use crate::init::reaper::{self, RunError};

/// A member to connect to (replication protocol for pg_basebackup and pg_receivewal, a
/// normal connection for pg_rewind), and as whom.
#[derive(Debug, Clone)]
pub struct Source {
    pub bin: PgBin,
    pub host: String,
    pub port: u16,
    /// `postgresql.authentication.replication` (copies, slots) or the rewind user.
    pub credentials: Credentials,
    /// The user the client programs run as.
    pub run_as: RunAs,
    /// Where the temporary password file is made.
    pub secret_dir: PathBuf,
}

impl Source {
    fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Where to copy from and how.
#[derive(Debug, Clone)]
pub struct BasebackupSpec {
    pub source: Source,
    /// `postgresql.bin_name.pg_basebackup`.
    pub program: String,
    pub data_dir: PathBuf,
    /// Our replication slot on the source (`use_slots`): the copy streams its WAL through
    /// it, so the WAL the new replica needs next is kept from the first byte.
    pub slot: Option<String>,
    /// `postgresql.basebackup`.
    pub options: Vec<CmdOption>,
    pub timeout: Duration,
}

/// Errors of one attempt.
#[derive(Debug, thiserror::Error)]
pub enum BasebackupError {
    #[error("cannot write the replication password file in {}: {source}", dir.display())]
    PassFile {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    User(#[from] PrivilegeError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("{program} against {source_addr} failed ({status}): {stderr}")]
    Failed {
        program: String,
        source_addr: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("emptying {} after a failed attempt: {source}", dir.display())]
    Clean {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// The connection string (no password: it comes from the pass file). No
/// `application_name`: the copy must not look like the replica's own walreceiver in
/// `pg_stat_replication`.
pub fn dsn(source: &Source) -> ConnInfo {
    ConnInfo::new()
        .set("dbname", "postgres")
        .set("host", source.host.clone())
        .set("port", source.port.to_string())
        .set("user", source.credentials.username.clone())
}

/// The argv pg_basebackup gets (without the program).
pub fn arguments(spec: &BasebackupSpec) -> Vec<String> {
    let mut args = vec![
        format!("--pgdata={}", spec.data_dir.display()),
        "-X".to_string(),
        "stream".to_string(),
        format!("--dbname={}", dsn(&spec.source).render()),
        "--verbose".to_string(),
    ];
    if let Some(slot) = &spec.slot {
        args.push(format!("--slot={slot}"));
    }
    if !spec.options.iter().any(|o| o.name() == "checkpoint") {
        args.push("--checkpoint=fast".to_string());
    }
    args.extend(spec.options.iter().map(CmdOption::to_arg));
    args
}

/// Run one client program against the source with the replication password in a
/// temporary `PGPASSFILE`; its output lines are logged as progress.
pub(super) async fn run_client(
    source: &Source,
    program: &str,
    args: Vec<String>,
    timeout: Duration,
) -> Result<(), BasebackupError> {
    let pass = match &source.credentials.password {
        Some(pw) => Some(
            SecretFile::create(
                &source.secret_dir,
                "manning-replication-pass-",
                pgpass_line("*", "*", "*", &source.credentials.username, pw.expose()).as_bytes(),
                Some(&source.run_as),
            )
            .map_err(|source_err| BasebackupError::PassFile {
                dir: source.secret_dir.clone(),
                source: source_err,
            })?,
        ),
        None => None,
    };
    let mut cmd = Command::new(source.bin.program(program));
    cmd.args(args)
        .env("LANG", "C")
        .env("LC_ALL", "C")
        .env("PGCONNECT_TIMEOUT", "5");
    if let Some(p) = &pass {
        cmd.env("PGPASSFILE", p.path());
    }
    source.run_as.apply_to(&mut cmd)?;
    let prefix = format!("{program}: ");
    // --verbose prints its progress on stderr, each line prefixed with the program's name.
    let out = reaper::output_lines(cmd, timeout, |_, line| {
        let line = line.trim();
        if !line.is_empty() {
            let line = line.strip_prefix(prefix.as_str()).unwrap_or(line);
            info!(target: "manning::postgres::basebackup", "{program}: {line}");
        }
    })
    .await;
    drop(pass);
    let out = out?;
    if !out.status.success() {
        return Err(BasebackupError::Failed {
            program: program.to_string(),
            source_addr: source.address(),
            status: out.status,
            stderr: out.stderr_tail(5),
        });
    }
    Ok(())
}

/// Make sure our physical slot exists on the source (`pg_receivewal --create-slot
/// --if-not-exists`, over the replication protocol, so the replication user is enough).
/// The leader creates members' slots too, but only on its next cycle; a replica that
/// starts streaming before that would be refused and retry only after
/// `wal_retrieve_retry_interval`.
pub async fn ensure_slot(source: &Source, slot: &str) -> Result<(), BasebackupError> {
    let args = vec![
        "--create-slot".to_string(),
        "--if-not-exists".to_string(),
        format!("--slot={slot}"),
        format!("--dbname={}", dsn(source).render()),
    ];
    run_client(source, "pg_receivewal", args, Duration::from_secs(15)).await
}

/// Run pg_basebackup once; the data directory must be empty (or absent).
pub async fn run_once(spec: &BasebackupSpec) -> Result<(), BasebackupError> {
    run_client(&spec.source, &spec.program, arguments(spec), spec.timeout).await
}

/// Remove everything inside `dir` (the directory itself stays, with its owner and mode).
pub fn empty_dir(dir: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Patroni's policy: two attempts, 5 s apart, the directory emptied after each failure.
/// Returns how long the copy took, or the second attempt's error.
pub async fn run(spec: &BasebackupSpec) -> Result<Duration, BasebackupError> {
    let started = Instant::now();
    let mut attempt = 1;
    loop {
        info!(
            source = %spec.source.address(),
            data_dir = %spec.data_dir.display(),
            attempt,
            "copying the data directory with pg_basebackup"
        );
        let result = run_once(spec).await;
        let Err(e) = result else {
            return Ok(started.elapsed());
        };
        warn!(attempt, "pg_basebackup failed: {e}");
        empty_dir(&spec.data_dir).map_err(|source| BasebackupError::Clean {
            dir: spec.data_dir.clone(),
            source,
        })?;
        if attempt == 2 {
            return Err(e);
        }
        attempt += 1;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> BasebackupSpec {
        BasebackupSpec {
            source: Source {
                bin: PgBin::new("/usr/lib/postgresql/15/bin"),
                host: "10.0.0.1".into(),
                port: 5432,
                credentials: Credentials {
                    username: "replicator".into(),
                    password: Some(crate::config::Secret::new("s3cret'pw")),
                },
                run_as: RunAs::current(),
                secret_dir: "/tmp".into(),
            },
            program: "pg_basebackup".into(),
            data_dir: "/data/pg".into(),
            slot: Some("node_b".into()),
            options: vec![CmdOption::Value("max-rate".into(), "100M".into())],
            timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn argv_has_the_source_but_never_the_password() {
        let args = arguments(&spec());
        assert_eq!(args[0], "--pgdata=/data/pg");
        assert_eq!(&args[1..3], ["-X", "stream"]);
        assert_eq!(
            args[3],
            "--dbname=dbname='postgres' host='10.0.0.1' port='5432' user='replicator'"
        );
        assert!(args.contains(&"--slot=node_b".to_string()));
        assert!(args.contains(&"--max-rate=100M".to_string()));
        assert!(!args.join(" ").contains("s3cret"));
    }

    #[test]
    fn fast_checkpoint_unless_configured() {
        let mut s = spec();
        s.options.clear();
        assert!(arguments(&s).contains(&"--checkpoint=fast".to_string()));
        s.options = vec![CmdOption::Value("checkpoint".into(), "spread".into())];
        let args = arguments(&s);
        assert!(args.contains(&"--checkpoint=spread".to_string()));
        assert!(!args.contains(&"--checkpoint=fast".to_string()));
    }

    #[test]
    fn empty_dir_keeps_the_directory() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("base/1")).unwrap();
        std::fs::write(d.path().join("base/1/x"), b"x").unwrap();
        std::fs::write(d.path().join("PG_VERSION"), b"15").unwrap();
        empty_dir(d.path()).unwrap();
        assert!(d.path().is_dir());
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
        empty_dir(&d.path().join("missing")).unwrap();
    }
}
