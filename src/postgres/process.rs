//! The postmaster as our direct child: start it, know when it is ready, notice when it
//! exits, and stop it with postgres' own shutdown modes only.
//!
//! - Started as `postgres -D <data> --config-file=<conf> --name=value ...` through the
//!   [`Reaper`] (never `pg_ctl`: we want its exit status and no intermediate process), as the
//!   run-as user, in its own session (a Ctrl-C on our terminal must not reach it directly),
//!   with our private environment removed.
//! - Before starting: a live postmaster in the data directory (or on the socket) refuses the
//!   start; a stale `postmaster.pid` or socket lock file is removed; backends orphaned by a
//!   killed postmaster are given time to exit (they notice their parent's death) and, if
//!   they linger, sent SIGQUIT — postgres' own "immediate" signal.
//! - Readiness is the status line of `postmaster.pid` (`ready`/`standby`), written by the
//!   postmaster itself when it accepts connections; no connection is needed.
//! - [`Postmaster::stop`] walks smart (SIGTERM) → fast (SIGINT) → immediate (SIGQUIT) with
//!   the plan's timeouts. SIGKILL is never sent: it would leave shared memory and orphaned
//!   backends behind. [`Postmaster::immediate`] is synchronous and cheap, for fencing from a
//!   timer task.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tracing::{info, warn};

use super::PgBin;
use super::pidfile::{self, PidFileState, PmStatus};
use crate::init::privileges::{PrivilegeError, RunAs};
use crate::init::reaper::{ChildHandle, Reaper, tail_lines};

/// A postgres shutdown mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StopMode {
    /// SIGTERM: no new connections, wait for sessions to end.
    Smart = 1,
    /// SIGINT: end sessions, shutdown checkpoint.
    Fast = 2,
    /// SIGQUIT: stop now; crash recovery at the next start.
    Immediate = 3,
}

impl StopMode {
    pub fn signal(self) -> Signal {
        match self {
            StopMode::Smart => Signal::SIGTERM,
            StopMode::Fast => Signal::SIGINT,
            StopMode::Immediate => Signal::SIGQUIT,
        }
    }

    fn next(self) -> StopMode {
        match self {
            StopMode::Smart => StopMode::Fast,
            _ => StopMode::Immediate,
        }
    }

    fn from_u8(v: u8) -> Option<StopMode> {
        match v {
            1 => Some(StopMode::Smart),
            2 => Some(StopMode::Fast),
            3 => Some(StopMode::Immediate),
            _ => None,
        }
    }
}

impl std::fmt::Display for StopMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopMode::Smart => "smart",
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        })
    }
}

/// How to stop: the first mode, and how long each escalating mode may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopPlan {
    pub first: StopMode,
    /// Time smart mode gets before fast is sent.
    pub smart_timeout: Duration,
    /// Time fast mode gets before immediate is sent.
    pub fast_timeout: Duration,
}

impl StopPlan {
    /// smart → fast after `smart_timeout` → immediate after `fast_timeout`.
    pub fn ladder(smart_timeout: Duration, fast_timeout: Duration) -> StopPlan {
        StopPlan {
            first: StopMode::Smart,
            smart_timeout,
            fast_timeout,
        }
    }

    /// fast → immediate after `fast_timeout` (switchover, demotion).
    pub fn fast(fast_timeout: Duration) -> StopPlan {
        StopPlan {
            first: StopMode::Fast,
            smart_timeout: Duration::ZERO,
            fast_timeout,
        }
    }

    /// immediate (fencing, SIGQUIT to us).
    pub fn immediate() -> StopPlan {
        StopPlan {
            first: StopMode::Immediate,
            smart_timeout: Duration::ZERO,
            fast_timeout: Duration::ZERO,
        }
    }
}

impl Default for StopPlan {
    /// smart for 5 s (sessions through a proxy rarely end on their own), then fast for
    /// 60 s, then immediate.
    fn default() -> StopPlan {
        StopPlan::ladder(Duration::from_secs(5), Duration::from_secs(60))
    }
}

/// How a stop went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopOutcome {
    /// The strongest mode sent before the postmaster exited; `None` if it had already exited.
    pub mode: Option<StopMode>,
    /// From the first signal to the exit.
    pub elapsed: Duration,
    pub status: ExitStatus,
}

/// Where the postmaster's stdout and stderr go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostmasterOutput {
    /// Our own stdout/stderr (container logs, the journal).
    Inherit,
    /// Appended to this file (created 0600, owned by the run-as user).
    File(PathBuf),
}

/// What to start.
#[derive(Debug, Clone)]
pub struct PostmasterSpec {
    pub bin: PgBin,
    pub data_dir: PathBuf,
    /// `--config-file`; default `<data_dir>/postgresql.conf`.
    pub config_file: Option<PathBuf>,
    /// Parameters passed as `--name=value` ([`super::conf::ServerParams::cmdline`]).
    pub cmdline: BTreeMap<String, String>,
    /// The user to run as; `None` = ourselves (refused if that is root).
    pub run_as: Option<RunAs>,
    pub output: PostmasterOutput,
    /// How long backends orphaned by a previous postmaster get to exit on their own.
    pub orphan_wait: Duration,
    /// Stop postgres in immediate mode (SIGQUIT, its own mode) if the thread that starts it
    /// dies: a postmaster must not outlive its supervisor, or it would go on taking writes
    /// with nobody renewing the leader lock or arming the fence. Linux ties this to the
    /// *thread* that forks, so set it only when that thread lives as long as the process
    /// (the supervisor's main thread), never from a pool thread that may exit.
    pub stop_with_parent: bool,
}

impl PostmasterSpec {
    /// Defaults: config in the data directory, output inherited, 10 s for orphans.
    pub fn new(bin: PgBin, data_dir: impl Into<PathBuf>) -> PostmasterSpec {
        PostmasterSpec {
            bin,
            data_dir: data_dir.into(),
            config_file: None,
            cmdline: BTreeMap::new(),
            run_as: None,
            output: PostmasterOutput::Inherit,
            orphan_wait: Duration::from_secs(10),
            stop_with_parent: false,
        }
    }

    /// The postgres argv (without the program).
    pub fn arguments(&self) -> Vec<String> {
        let config = self
            .config_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join(super::conf::POSTGRESQL_CONF));
        let mut args = vec![
            "-D".to_string(),
            self.data_dir.display().to_string(),
            format!("--config-file={}", config.display()),
        ];
        args.extend(self.cmdline.iter().map(|(k, v)| format!("--{k}={v}")));
        args
    }

    fn socket_dirs(&self) -> Vec<PathBuf> {
        self.cmdline
            .get("unix_socket_directories")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|d| d.starts_with('/'))
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn port(&self) -> u16 {
        self.cmdline
            .get("port")
            .and_then(|p| p.parse().ok())
            .unwrap_or(5432)
    }
}

/// Why the postmaster could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    User(#[from] PrivilegeError),
    #[error("{} is not a postgres data directory (no PG_VERSION)", .0.display())]
    NoDataDir(PathBuf),
    #[error("a postmaster (pid {pid}) is already running in {}", data_dir.display())]
    AlreadyRunning { pid: Pid, data_dir: PathBuf },
    #[error("port {port} is in use by postgres pid {pid} (lock file {})", lock.display())]
    PortInUse { port: u16, pid: Pid, lock: PathBuf },
    #[error(
        "postgres processes {pids:?} of a previous postmaster still use {}; they did not \
         exit after SIGQUIT",
        data_dir.display()
    )]
    OrphansRemain { pids: Vec<Pid>, data_dir: PathBuf },
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
}

impl StartError {
    /// True for configuration errors (exit code 2).
    pub fn is_usage(&self) -> bool {
        matches!(self, StartError::User(e) if e.is_usage())
    }
}

/// Why waiting for readiness failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadyError {
    #[error("postgres exited during start-up ({status}){}", log_suffix(.log_tail))]
    Exited {
        status: ExitStatus,
        log_tail: Option<String>,
    },
    #[error("postgres did not accept connections within {timeout:?} (last status: {last:?})")]
    Timeout {
        timeout: Duration,
        last: Option<PmStatus>,
    },
}

fn log_suffix(tail: &Option<String>) -> String {
    match tail {
        Some(t) if !t.is_empty() => format!(":\n{t}"),
        _ => String::new(),
    }
}

/// A running (or exited) postmaster started by us. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Postmaster {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    child: ChildHandle,
    data_dir: PathBuf,
    output: PostmasterOutput,
    started: Instant,
    /// Strongest stop mode signalled so far (0 = none).
    strongest: AtomicU8,
}

impl Postmaster {
    /// Check the data directory, clean up stale state, and start postgres.
    pub async fn start(spec: &PostmasterSpec) -> Result<Postmaster, StartError> {
        let run_as = match &spec.run_as {
            Some(r) => r.clone(),
            None => RunAs::for_postgres(None)?,
        };
        if run_as.uid.is_root() {
            return Err(PrivilegeError::RootRefused(run_as.name).into());
        }
        let data_dir = &spec.data_dir;
        if !data_dir.join("PG_VERSION").is_file() {
            return Err(StartError::NoDataDir(data_dir.clone()));
        }
        prepare_start(spec).await?;

        let mut cmd = Command::new(spec.bin.program("postgres"));
        cmd.args(spec.arguments()).stdin(Stdio::null());
        match &spec.output {
            PostmasterOutput::Inherit => {
                cmd.stdout(Stdio::inherit()).stderr(Stdio::inherit());
            }
            PostmasterOutput::File(path) => {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|source| StartError::Io {
                        op: "opening the postgres log",
                        path: path.clone(),
                        source,
                    })?;
                if nix::unistd::geteuid().is_root() {
                    let _ = nix::unistd::fchown(&file, Some(run_as.uid), Some(run_as.gid));
                }
                let err = file.try_clone().map_err(|source| StartError::Io {
                    op: "duplicating the postgres log handle",
                    path: path.clone(),
                    source,
                })?;
                cmd.stdout(file).stderr(err);
            }
        }
        run_as.apply_to(&mut cmd)?;
        let stop_with_parent = spec.stop_with_parent;
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: setsid, prctl and getppid are async-signal-safe. A new session keeps
        // terminal signals (Ctrl-C in `manning demo`) away from postgres: only we decide how
        // it stops. The parent-death signal is set after the uid change (which would clear
        // it); the getppid check covers a parent that died before prctl ran.
        unsafe {
            cmd.pre_exec(move || {
                libc::setsid();
                if stop_with_parent {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT as libc::c_ulong) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    if libc::getppid() != parent {
                        return Err(std::io::Error::other("the supervisor exited"));
                    }
                }
                Ok(())
            });
        }
        let program = spec.bin.program("postgres").display().to_string();
        let reaper = Reaper::global().map_err(|source| StartError::Spawn {
            program: program.clone(),
            source,
        })?;
        let child = reaper
            .spawn(cmd)
            .map_err(|source| StartError::Spawn { program, source })?;
        info!(pid = %child.pid(), data_dir = %data_dir.display(), user = %run_as.name, "postmaster started");
        Ok(Postmaster {
            inner: Arc::new(Inner {
                child,
                data_dir: data_dir.clone(),
                output: spec.output.clone(),
                started: Instant::now(),
                strongest: AtomicU8::new(0),
            }),
        })
    }

    pub fn pid(&self) -> Pid {
        self.inner.child.pid()
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// Time since the process was started.
    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// The exit status, if it has exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.inner.child.try_status()
    }

    pub fn is_running(&self) -> bool {
        self.exit_status().is_none()
    }

    /// Resolves when the postmaster has exited (crash, stop, kill -9 ...). Any number of
    /// tasks may wait.
    pub async fn exited(&self) -> ExitStatus {
        self.inner.child.wait().await
    }

    /// The status line of `postmaster.pid`, if the file is ours and has one.
    pub fn status(&self) -> Option<PmStatus> {
        if !self.is_running() {
            return None;
        }
        match pidfile::read(&self.inner.data_dir) {
            Ok(Some(Ok(pf))) if pf.pid == self.pid().as_raw() => pf.status,
            _ => None,
        }
    }

    /// Wait until postgres accepts connections (`ready` or `standby`), exits, or the timeout
    /// passes. Crash recovery happens in here; call it again (after `EXTEND_TIMEOUT_USEC`,
    /// say) to keep waiting.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<PmStatus, ReadyError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = None;
        loop {
            if let Some(status) = self.exit_status() {
                return Err(ReadyError::Exited {
                    status,
                    log_tail: self.log_tail(20),
                });
            }
            if let Some(s) = self.status() {
                if s.accepts_connections() {
                    return Ok(s);
                }
                last = Some(s);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ReadyError::Timeout { timeout, last });
            }
            tokio::select! {
                _ = self.exited() => {}
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    }

    /// The last lines of the postgres log file (when output goes to a file).
    pub fn log_tail(&self, lines: usize) -> Option<String> {
        match &self.inner.output {
            PostmasterOutput::File(p) => std::fs::read(p).ok().map(|b| tail_lines(&b, lines)),
            PostmasterOutput::Inherit => None,
        }
    }

    /// SIGHUP: re-read the configuration files. `Ok(false)` if it had exited.
    pub fn reload(&self) -> std::io::Result<bool> {
        self.inner.child.signal(Signal::SIGHUP)
    }

    /// Send one shutdown mode's signal now. `Ok(false)` if it had already exited.
    pub fn signal_mode(&self, mode: StopMode) -> std::io::Result<bool> {
        self.inner.strongest.fetch_max(mode as u8, Ordering::SeqCst);
        self.inner.child.signal(mode.signal())
    }

    /// Immediate shutdown now (SIGQUIT), without waiting: for fencing from a timer task.
    pub fn immediate(&self) -> std::io::Result<bool> {
        self.signal_mode(StopMode::Immediate)
    }

    /// Stop with postgres' own modes, escalating per `plan`; never SIGKILL. Returns when the
    /// postmaster has exited.
    pub async fn stop(&self, plan: StopPlan) -> StopOutcome {
        let started = Instant::now();
        if let Some(status) = self.exit_status() {
            return StopOutcome {
                mode: None,
                elapsed: Duration::ZERO,
                status,
            };
        }
        let mut mode = plan.first;
        loop {
            match self.signal_mode(mode) {
                Ok(true) => {
                    info!(pid = %self.pid(), mode = %mode, "stopping postgres ({mode} shutdown)")
                }
                Ok(false) => {}
                Err(e) => {
                    warn!(pid = %self.pid(), mode = %mode, error = %e, "could not signal postgres")
                }
            }
            let budget = match mode {
                StopMode::Smart => Some(plan.smart_timeout),
                StopMode::Fast => Some(plan.fast_timeout),
                StopMode::Immediate => None,
            };
            let exited = match budget {
                Some(t) => tokio::time::timeout(t, self.exited()).await.ok(),
                None => Some(self.wait_after_immediate().await),
            };
            if let Some(status) = exited {
                let outcome = StopOutcome {
                    mode: StopMode::from_u8(self.inner.strongest.load(Ordering::SeqCst)),
                    elapsed: started.elapsed(),
                    status,
                };
                info!(
                    pid = %self.pid(),
                    mode = ?outcome.mode,
                    elapsed_ms = outcome.elapsed.as_millis() as u64,
                    status = %status,
                    "postgres stopped"
                );
                return outcome;
            }
            let next = mode.next();
            warn!(
                pid = %self.pid(),
                "postgres did not finish the {mode} shutdown within {:?}; escalating to {next}",
                budget.unwrap_or_default()
            );
            mode = next;
        }
    }

    /// After SIGQUIT postgres SIGKILLs its own children after 5 s and exits; we wait as long
    /// as it takes (never SIGKILL), saying so every 10 s.
    async fn wait_after_immediate(&self) -> ExitStatus {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.exited()).await {
                Ok(status) => return status,
                Err(_) => {
                    warn!(pid = %self.pid(), "postgres has not exited 10 s after immediate shutdown; still waiting")
                }
            }
        }
    }
}

/// Everything before the spawn: stale files, live servers, orphans.
async fn prepare_start(spec: &PostmasterSpec) -> Result<(), StartError> {
    let data_dir = &spec.data_dir;
    let io = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| StartError::Io { op, path, source }
    };
    match pidfile::check(data_dir).map_err(io("reading postmaster.pid in", data_dir))? {
        PidFileState::Live { pid } => {
            return Err(StartError::AlreadyRunning {
                pid,
                data_dir: data_dir.clone(),
            });
        }
        PidFileState::Stale { reason } => {
            warn!(data_dir = %data_dir.display(), %reason, "removing stale postmaster.pid");
            pidfile::remove(data_dir).map_err(io("removing postmaster.pid in", data_dir))?;
        }
        PidFileState::Absent => {}
    }
    let port = spec.port();
    for dir in spec.socket_dirs() {
        let lock = pidfile::socket_lock_path(&dir, port);
        match pidfile::check_socket_lock(&dir, port).map_err(io("reading", &lock))? {
            PidFileState::Live { pid } => return Err(StartError::PortInUse { port, pid, lock }),
            PidFileState::Stale { reason } => {
                warn!(lock = %lock.display(), %reason, "removing stale socket lock file");
                match std::fs::remove_file(&lock) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(io("removing", &lock)(e));
                    }
                    _ => {}
                }
            }
            PidFileState::Absent => {}
        }
    }
    wait_for_orphans(data_dir, spec.orphan_wait).await
}

/// True when `pid` looks like a postmaster: a non-empty command line without a postgres
/// process title (`postgres: checkpointer` ...). Backends that are exiting (empty command
/// line) or were forked a moment ago (still the postmaster's argv) can look like one too,
/// so callers only trust this after giving such transients time to go away.
fn looks_like_postmaster(pid: Pid) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| !c.is_empty() && !c.starts_with(b"postgres: "))
        .unwrap_or(false)
}

/// Wait for postgres processes left in `data_dir` by a previous postmaster (killed, so its
/// backends are exiting on their own). After `patience`: a process that still looks like a
/// postmaster means a live server (no `postmaster.pid`, but running) — refuse; lingering
/// backends get SIGQUIT, postgres' own immediate-shutdown signal, and 5 more seconds.
async fn wait_for_orphans(data_dir: &Path, patience: Duration) -> Result<(), StartError> {
    let deadline = Instant::now() + patience;
    let mut quit_sent = false;
    let mut announced = false;
    loop {
        let found = pidfile::postgres_processes_in(data_dir);
        if found.is_empty() {
            return Ok(());
        }
        if !announced {
            info!(
                pids = ?found.iter().map(|p| p.pid.as_raw()).collect::<Vec<_>>(),
                "waiting for postgres processes of the previous postmaster to exit"
            );
            announced = true;
        }
        let now = Instant::now();
        if !quit_sent && now >= deadline {
            if let Some(pm) = found.iter().find(|p| looks_like_postmaster(p.pid)) {
                return Err(StartError::AlreadyRunning {
                    pid: pm.pid,
                    data_dir: data_dir.to_path_buf(),
                });
            }
            for p in &found {
                warn!(pid = %p.pid, "orphaned postgres process did not exit; sending SIGQUIT");
                let _ = nix::sys::signal::kill(p.pid, Signal::SIGQUIT);
            }
            quit_sent = true;
        } else if quit_sent && now >= deadline + Duration::from_secs(5) {
            return Err(StartError::OrphansRemain {
                pids: found.iter().map(|p| p.pid).collect(),
                data_dir: data_dir.to_path_buf(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_signals() {
        assert_eq!(StopMode::Smart.signal(), Signal::SIGTERM);
        assert_eq!(StopMode::Fast.signal(), Signal::SIGINT);
        assert_eq!(StopMode::Immediate.signal(), Signal::SIGQUIT);
        assert_eq!(StopMode::Smart.next(), StopMode::Fast);
        assert_eq!(StopMode::Fast.next(), StopMode::Immediate);
        assert_eq!(StopMode::Immediate.next(), StopMode::Immediate);
        assert!(StopMode::Immediate > StopMode::Fast);
        assert_eq!(StopMode::from_u8(0), None);
        assert_eq!(StopMode::from_u8(2), Some(StopMode::Fast));
        assert_eq!(StopMode::Fast.to_string(), "fast");
    }

    #[test]
    fn plans() {
        let p = StopPlan::default();
        assert_eq!(p.first, StopMode::Smart);
        assert_eq!(StopPlan::fast(Duration::from_secs(3)).first, StopMode::Fast);
        assert_eq!(StopPlan::immediate().first, StopMode::Immediate);
    }

    #[test]
    fn argv() {
        let mut spec = PostmasterSpec::new(PgBin::new("/usr/lib/postgresql/15/bin"), "/data");
        spec.cmdline.insert("port".into(), "15432".into());
        spec.cmdline
            .insert("listen_addresses".into(), "0.0.0.0".into());
        spec.cmdline
            .insert("unix_socket_directories".into(), "/run/pg, @abs".into());
        assert_eq!(
            spec.arguments(),
            [
                "-D",
                "/data",
                "--config-file=/data/postgresql.conf",
                "--listen_addresses=0.0.0.0",
                "--port=15432",
                "--unix_socket_directories=/run/pg, @abs"
            ]
        );
        assert_eq!(spec.port(), 15432);
        assert_eq!(spec.socket_dirs(), [PathBuf::from("/run/pg")]);
    }
}
