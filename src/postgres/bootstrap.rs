//! The local half of bootstrapping a new cluster (the supervisor races for the DCS
//! `initialize` key before, and writes `initialize`, `config` and the leader key after):
//!
//! 1. `initdb` with `bootstrap.initdb` options, superuser password through `--pwfile`;
//! 2. `pg_hba.conf`: `bootstrap.pg_hba` appended (or `postgresql.pg_hba` written whole);
//!    initdb's `postgresql.conf` kept as `postgresql.base.conf`, ours written;
//! 3. start postgres and wait until it accepts connections;
//! 4. over the UNIX socket as superuser: the superuser's password (Patroni re-sets it), the
//!    replication user (`REPLICATION`), the rewind user with its function grants, the
//!    `bootstrap.users` with their options (dropped by Patroni 4, kept by manning);
//! 5. `bootstrap.post_init` with the connection URL.
//!
//! On failure after initdb the server is stopped (fast, then immediate) and the data
//! directory is moved aside to `<data_dir>_<YYYY-MM-DD-HH-MM-SS>` like Patroni does, and the
//! error says where it went.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{error, info};

use super::Credentials;
use super::conf::{self, ConfError, ServerParams};
use super::initdb::{self, InitdbError, InitdbSpec};
use super::post_init::{self, PostInitError, PostInitSpec};
use super::process::{Postmaster, PostmasterSpec, ReadyError, StartError, StopPlan};
use super::sql::{self, LocalConn, Probe, RoleSpec, SqlError};

/// `pg_hba` handling at bootstrap.
#[derive(Debug, Clone, Default)]
pub struct HbaSetup {
    /// `bootstrap.pg_hba`: appended to initdb's file.
    pub append: Vec<String>,
    /// `postgresql.pg_hba`: when given, replaces the whole file instead.
    pub replace: Option<Vec<String>>,
}

/// Everything the local bootstrap needs.
#[derive(Debug, Clone)]
pub struct BootstrapSpec {
    /// initdb: binaries, data directory, options, superuser, run-as user, secret dir.
    pub initdb: InitdbSpec,
    pub hba: HbaSetup,
    /// From [`conf::server_parameters`]: `conf` goes to postgresql.conf, `cmdline` to the
    /// postmaster (copied into `postmaster.cmdline`).
    pub params: ServerParams,
    /// How to start postgres (`cmdline` is overwritten with `params.cmdline`).
    pub postmaster: PostmasterSpec,
    /// How long the fresh server may take to accept connections.
    pub ready_timeout: Duration,
    /// `postgresql.authentication.replication`.
    pub replication: Option<Credentials>,
    /// `postgresql.authentication.rewind` (when different from the superuser).
    pub rewind: Option<Credentials>,
    /// `bootstrap.users`.
    pub users: Vec<RoleSpec>,
    /// `bootstrap.post_bootstrap` or `bootstrap.post_init`.
    pub post_init: Option<String>,
    pub post_init_timeout: Duration,
}

/// A successful bootstrap: postgres runs as a primary.
#[derive(Debug)]
pub struct Bootstrapped {
    pub postmaster: Postmaster,
    pub system_identifier: u64,
    pub probe: Probe,
}

/// The step that failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("initdb: {0}")]
    Initdb(#[from] InitdbError),
    #[error("configuration files: {0}")]
    Conf(#[from] ConfError),
    #[error("starting postgres: {0}")]
    Start(#[from] StartError),
    #[error("waiting for postgres: {0}")]
    Ready(#[from] ReadyError),
    #[error("{0}")]
    Sql(#[from] SqlError),
    #[error("{0}")]
    PostInit(#[from] PostInitError),
    #[error("{0}")]
    Invalid(String),
}

impl BootstrapError {
    /// True for configuration errors (exit code 2).
    pub fn is_usage(&self) -> bool {
        match self {
            BootstrapError::Initdb(e) => e.is_usage(),
            BootstrapError::Start(e) => e.is_usage(),
            BootstrapError::Sql(e) => e.is_usage(),
            BootstrapError::PostInit(e) => e.is_usage(),
            BootstrapError::Conf(ConfError::Io { .. }) => false,
            BootstrapError::Conf(_) | BootstrapError::Invalid(_) => true,
            BootstrapError::Ready(_) => false,
        }
    }
}

/// A failed bootstrap, after rollback.
#[derive(Debug, thiserror::Error)]
#[error("bootstrap failed: {error}{}", moved_suffix(.moved_to))]
pub struct BootstrapFailure {
    pub error: BootstrapError,
    /// Where the half-made data directory was moved, if it was.
    pub moved_to: Option<PathBuf>,
}

fn moved_suffix(p: &Option<PathBuf>) -> String {
    match p {
        Some(p) => format!(" (the data directory was moved aside to {})", p.display()),
        None => String::new(),
    }
}

/// Run the local bootstrap; on failure, roll back (stop postgres, move the data directory
/// aside) before returning.
pub async fn bootstrap(spec: &BootstrapSpec) -> Result<Bootstrapped, BootstrapFailure> {
    let data_dir = spec.initdb.data_dir.clone();
    let started = std::time::Instant::now();
    let mut postmaster: Option<Postmaster> = None;
    let mut initdb_ran = false;
    let result = steps(spec, &mut postmaster, &mut initdb_ran).await;
    match result {
        Ok(ok) => {
            info!(
                system_identifier = ok.system_identifier,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "bootstrap finished: new cluster running as primary"
            );
            Ok(ok)
        }
        Err(error) => {
            error!(error = %error, "bootstrap failed; rolling back");
            if let Some(pm) = postmaster {
                pm.stop(StopPlan::fast(Duration::from_secs(30))).await;
            }
            let moved_to = if initdb_ran || data_dir_has_content(&data_dir) {
                match move_aside(&data_dir) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        error!(data_dir = %data_dir.display(), error = %e, "could not move the data directory aside");
                        None
                    }
                }
            } else {
                None
            };
            Err(BootstrapFailure { error, moved_to })
        }
    }
}

async fn steps(
    spec: &BootstrapSpec,
    postmaster_slot: &mut Option<Postmaster>,
    initdb_ran: &mut bool,
) -> Result<Bootstrapped, BootstrapError> {
    let data_dir = &spec.initdb.data_dir;
    let owner = spec.initdb.run_as.as_ref();
    let socket_dir = spec.params.socket_dir().ok_or_else(|| {
        BootstrapError::Invalid(
            "unix_socket_directories has no absolute directory; manning connects through it".into(),
        )
    })?;
    let port = spec.params.port();
    let superuser = &spec.initdb.superuser;

    info!(step = "initdb", "bootstrap: creating a new cluster");
    *initdb_ran = true;
    initdb::run(&spec.initdb).await?;

    info!(step = "configure", "bootstrap: writing configuration files");
    match &spec.hba.replace {
        Some(lines) => conf::write_hba(data_dir, lines, owner)?,
        None => conf::append_hba(data_dir, &spec.hba.append, owner)?,
    }
    conf::write_postgresql_conf(data_dir, &spec.params.conf, None, owner)?;
    conf::remove_recovery_signals(data_dir)?;

    info!(step = "start", "bootstrap: starting postgres");
    let mut pm_spec = spec.postmaster.clone();
    pm_spec.cmdline = spec.params.cmdline.clone();
    pm_spec.data_dir = data_dir.clone();
    if pm_spec.run_as.is_none() {
        pm_spec.run_as = spec.initdb.run_as.clone();
    }
    let pm = Postmaster::start(&pm_spec).await?;
    *postmaster_slot = Some(pm.clone());
    pm.wait_ready(spec.ready_timeout).await?;

    info!(step = "roles", "bootstrap: creating roles");
    let client = LocalConn::new(
        &socket_dir,
        port,
        &superuser.username,
        superuser.password.clone(),
    )
    .connect()
    .await?;
    if superuser.password.is_some() {
        let su = RoleSpec {
            name: superuser.username.clone(),
            password: superuser.password.clone(),
            attrs: vec![sql::RoleAttr::Keyword("SUPERUSER")],
        };
        sql::ensure_role(&client, &su).await?;
    }
    if let Some(repl) = &spec.replication {
        let r = RoleSpec::new(
            &repl.username,
            repl.password.clone(),
            &["REPLICATION".into()],
        )?;
        sql::ensure_role(&client, &r).await?;
    }
    if let Some(rw) = &spec.rewind
        && rw.username != superuser.username
    {
        let r = RoleSpec::new(&rw.username, rw.password.clone(), &[])?;
        sql::ensure_role(&client, &r).await?;
        sql::grant_rewind(&client, &rw.username).await?;
    }
    let reserved = [
        Some(superuser.username.as_str()),
        spec.replication.as_ref().map(|c| c.username.as_str()),
        spec.rewind.as_ref().map(|c| c.username.as_str()),
    ];
    for user in &spec.users {
        if reserved.contains(&Some(user.name.as_str())) {
            info!(role = %user.name, "bootstrap.users: skipping a user that postgresql.authentication manages");
            continue;
        }
        sql::ensure_role(&client, user).await?;
    }

    if let Some(command) = &spec.post_init {
        info!(step = "post_init", "bootstrap: running post_init");
        post_init::run(&PostInitSpec {
            command: command.clone(),
            superuser: superuser.clone(),
            host: socket_dir.display().to_string(),
            port,
            dbname: "postgres".into(),
            run_as: spec.initdb.run_as.clone(),
            secret_dir: spec.initdb.secret_dir.clone(),
            timeout: spec.post_init_timeout,
        })
        .await?;
    }
    let probe = sql::probe(&client).await?;
    drop(client);
    Ok(Bootstrapped {
        postmaster: pm,
        system_identifier: probe.system_identifier,
        probe,
    })
}

fn data_dir_has_content(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
}

/// `YYYY-MM-DD-HH-MM-SS` (UTC) for a time since the epoch.
pub fn timestamp_suffix(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}-{:02}-{:02}-{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Rename the data directory to `<data_dir>_<timestamp>` (with a counter if taken).
pub fn move_aside(data_dir: &Path) -> std::io::Result<PathBuf> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let base = format!("{}_{}", data_dir.display(), timestamp_suffix(secs));
    let mut target = PathBuf::from(&base);
    let mut n = 1;
    while target.exists() {
        target = PathBuf::from(format!("{base}_{n}"));
        n += 1;
    }
    std::fs::rename(data_dir, &target)?;
    info!(from = %data_dir.display(), to = %target.display(), "moved data directory aside");
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(timestamp_suffix(0), "1970-01-01-00-00-00");
        assert_eq!(timestamp_suffix(951_782_400), "2000-02-29-00-00-00");
        assert_eq!(timestamp_suffix(1_700_000_000), "2023-11-14-22-13-20");
        assert_eq!(timestamp_suffix(4_107_542_399), "2100-02-28-23-59-59");
    }

    #[test]
    fn moves_aside_without_clobbering() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("PG_VERSION"), "15\n").unwrap();
        let first = move_aside(&data).unwrap();
        assert!(!data.exists());
        assert!(first.join("PG_VERSION").exists());
        assert!(
            first
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("data_20")
        );
        std::fs::create_dir(&data).unwrap();
        let second = move_aside(&data).unwrap();
        assert_ne!(first, second);
    }

    #[test]
    fn error_kinds() {
        let e = BootstrapError::Invalid("x".into());
        assert!(e.is_usage());
        let f = BootstrapFailure {
            error: e,
            moved_to: Some(PathBuf::from("/d_1")),
        };
        assert_eq!(
            f.to_string(),
            "bootstrap failed: x (the data directory was moved aside to /d_1)"
        );
    }
}
