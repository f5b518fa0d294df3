//! The one owner of `waitpid` in the process: reaps every child and hands exit statuses to
//! the code that spawned it.
//!
//! Why this exists: as a container's PID 1 (or a subreaper) we inherit orphans — postgres
//! backends whose postmaster crashed, grandchildren of scripts — and must reap them or they
//! stay zombies forever. A reaper calling `waitpid(-1)` would steal the statuses that
//! `tokio::process` or `std::process::Child::wait` expect (they then fail with `ECHILD`), so
//! in manning *nothing else waits for children*: every child is started through
//! [`Reaper::spawn`] and its status arrives through [`ChildHandle::wait`].
//!
//! How it works:
//! - A dedicated OS thread (not a tokio task: it must keep reaping even if the runtime is busy
//!   or not started yet) sleeps until SIGCHLD arrives on a self-pipe, or at most one second
//!   (standard signals coalesce, so a periodic sweep catches anything missed), then calls
//!   `waitpid(-1, WNOHANG)` until nothing is left.
//! - Statuses of registered children are published on a `watch` channel per child; anything
//!   else is an orphan, reaped and logged at debug level.
//! - The race "child exits before it is registered" cannot happen: [`Reaper::spawn`] holds
//!   the registry lock across `fork`/`exec` and registration, and the reaper thread holds the
//!   same lock while it calls `waitpid`, so it cannot reap a child nobody has claimed yet.
//! - When we are not PID 1, [`Reaper::install`] sets `PR_SET_CHILD_SUBREAPER` so orphaned
//!   postgres backends are reparented to us (and reaped) instead of to the host's init.
//!
//! Every child also gets a clean environment for the things that belong to *us*:
//! `NOTIFY_SOCKET`, `WATCHDOG_*`, `LISTEN_*` (see [`crate::init::notify`]) and `PATRONI_*`
//! variables (they may carry secrets) are removed, and SIGTTIN/SIGTTOU, which PID 1 ignores,
//! are reset to their defaults before `exec`.

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;
use tracing::{debug, warn};

/// How often the reaper sweeps without a SIGCHLD (signals coalesce and can be missed).
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// At most this many bytes of each stream are kept by [`output`]; the rest is discarded
/// (callers of `pg_controldata`, `psql` and scripts need far less).
const MAX_CAPTURE: usize = 8 << 20;

/// Handle to the process-wide reaper. Cheap to clone; all clones share one registry.
#[derive(Clone)]
pub struct Reaper {
    shared: Arc<Shared>,
}

struct Shared {
    registry: Mutex<Registry>,
    /// Bumped after every sweep that reaped something; [`crate::init::pid1`] turns it into
    /// `Child` events so the supervisor wakes up after statuses are already dispatched.
    reaped: watch::Sender<u64>,
    /// Whether the subreaper bit was set (false when PID 1, where it is implied).
    subreaper: bool,
}

#[derive(Default)]
struct Registry {
    /// Children spawned through us that have not been reaped yet.
    children: HashMap<i32, watch::Sender<Option<ExitStatus>>>,
}

static GLOBAL: Mutex<Option<Reaper>> = Mutex::new(None);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; if something ever did, the data (a map of
    // channels) is still consistent, so recover instead of propagating the poison.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Reaper {
    /// Install the process-wide reaper (idempotent) and return a handle to it.
    ///
    /// Sets `PR_SET_CHILD_SUBREAPER` when not PID 1, registers the SIGCHLD handler and starts
    /// the reaper thread. Call it early in `main` — before spawning anything and, when
    /// dropping privileges, after [`crate::init::privileges::drop_privileges`] (the drop
    /// requires a single-threaded process).
    pub fn install() -> io::Result<Reaper> {
        let mut global = lock(&GLOBAL);
        if let Some(r) = global.as_ref() {
            return Ok(r.clone());
        }
        let subreaper = if std::process::id() == 1 {
            false
        } else {
            // SAFETY: plain prctl with integer arguments.
            let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            true
        };
        let (mut rx, tx) = UnixStream::pair()?;
        rx.set_read_timeout(Some(SWEEP_INTERVAL))?;
        signal_hook::low_level::pipe::register(libc::SIGCHLD, tx)?;
        let (reaped, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            registry: Mutex::new(Registry::default()),
            reaped,
            subreaper,
        });
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("manning-reaper".into())
            .spawn(move || {
                let mut buf = [0u8; 64];
                loop {
                    thread_shared.sweep();
                    // Wakes on SIGCHLD (a byte on the pipe) or after SWEEP_INTERVAL.
                    let _ = rx.read(&mut buf);
                }
            })?;
        let reaper = Reaper { shared };
        *global = Some(reaper.clone());
        Ok(reaper)
    }

    /// The installed reaper, installing it on first use.
    pub fn global() -> io::Result<Reaper> {
        Reaper::install()
    }

    /// True when we set `PR_SET_CHILD_SUBREAPER` (we are not PID 1).
    pub fn is_subreaper(&self) -> bool {
        self.shared.subreaper
    }

    /// Start `cmd` as our child and register it. Its stdio pipes, if any were requested with
    /// `Stdio::piped()`, are closed; use [`Reaper::spawn_with_pipes`] to keep them.
    pub fn spawn(&self, cmd: Command) -> io::Result<ChildHandle> {
        self.spawn_with_pipes(cmd).map(|(h, _)| h)
    }

    /// Start `cmd` as our child, register it, and return its stdio pipes.
    pub fn spawn_with_pipes(&self, mut cmd: Command) -> io::Result<(ChildHandle, ChildPipes)> {
        sanitize_child(&mut cmd);
        // Holding the registry lock across fork/exec and registration is what makes the
        // "exited before registered" race impossible: the reaper thread needs this lock
        // to call waitpid.
        let mut registry = lock(&self.shared.registry);
        let mut child = cmd.spawn()?;
        let pid = child.id() as i32;
        let (tx, rx) = watch::channel(None);
        registry.children.insert(pid, tx);
        drop(registry);
        let pipes = ChildPipes {
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
        };
        // Dropping std's Child neither kills nor waits for the process.
        drop(child);
        Ok((
            ChildHandle {
                pid: Pid::from_raw(pid),
                status: rx,
                shared: self.shared.clone(),
            },
            pipes,
        ))
    }

    /// Pids of children spawned through us that have not exited yet.
    pub fn live_children(&self) -> Vec<Pid> {
        let registry = lock(&self.shared.registry);
        let mut pids: Vec<Pid> = registry
            .children
            .keys()
            .map(|&p| Pid::from_raw(p))
            .collect();
        pids.sort();
        pids
    }

    /// Resolves once no child spawned through us is alive. The supervisor awaits this
    /// before returning from `main`: as PID 1, exiting SIGKILLs everything left in the
    /// namespace, postgres included.
    pub async fn wait_all_children(&self) {
        let mut rx = self.shared.reaped.subscribe();
        loop {
            if lock(&self.shared.registry).children.is_empty() {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// A receiver whose value increases after every sweep that reaped at least one process.
    pub fn reaped_events(&self) -> watch::Receiver<u64> {
        self.shared.reaped.subscribe()
    }

    /// Reap now instead of waiting for SIGCHLD or the next sweep.
    pub fn sweep_now(&self) {
        self.shared.sweep();
    }
}

impl Shared {
    /// Reap everything that has exited; dispatch statuses of registered children.
    fn sweep(&self) {
        let mut registry = lock(&self.registry);
        let mut reaped = 0u64;
        loop {
            let mut raw: libc::c_int = 0;
            // SAFETY: waitpid with a valid out-pointer.
            let pid = unsafe { libc::waitpid(-1, &mut raw, libc::WNOHANG) };
            if pid > 0 {
                reaped += 1;
                let status = ExitStatus::from_raw(raw);
                match registry.children.remove(&pid) {
                    Some(tx) => {
                        debug!(pid, %status, "child exited");
                        tx.send_replace(Some(status));
                    }
                    None => debug!(pid, %status, "reaped orphan"),
                }
                continue;
            }
            if pid == 0 {
                break; // children exist, none has exited
            }
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ECHILD) => break,
                _ => {
                    warn!(error = %io::Error::last_os_error(), "waitpid failed");
                    break;
                }
            }
        }
        drop(registry);
        if reaped > 0 {
            self.reaped.send_modify(|n| *n += reaped);
        }
    }
}

/// Environment variables that belong to this process and must never reach a child:
/// systemd's notify socket and watchdog (postgres built with systemd support would talk to
/// it), socket activation, and Patroni's variables (they may hold passwords).
pub fn is_private_env(name: &str) -> bool {
    matches!(
        name,
        "NOTIFY_SOCKET"
            | "WATCHDOG_USEC"
            | "WATCHDOG_PID"
            | "LISTEN_PID"
            | "LISTEN_FDS"
            | "LISTEN_FDNAMES"
    ) || name.starts_with("PATRONI_")
}

fn sanitize_child(cmd: &mut Command) {
    for name in [
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "LISTEN_PID",
        "LISTEN_FDS",
        "LISTEN_FDNAMES",
    ] {
        cmd.env_remove(name);
    }
    for (name, _) in std::env::vars_os() {
        if let Some(n) = name.to_str()
            && is_private_env(n)
        {
            cmd.env_remove(n);
        }
    }
    // SAFETY: only async-signal-safe calls (signal(2)) between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGTTIN, libc::SIG_DFL);
            libc::signal(libc::SIGTTOU, libc::SIG_DFL);
            Ok(())
        });
    }
}

/// The stdio pipes of a spawned child (those configured with `Stdio::piped()`).
#[derive(Debug, Default)]
pub struct ChildPipes {
    pub stdin: Option<ChildStdin>,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
}

/// A child spawned through the [`Reaper`]. Cheap to clone; every clone sees the same status.
#[derive(Clone)]
pub struct ChildHandle {
    pid: Pid,
    status: watch::Receiver<Option<ExitStatus>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ChildHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildHandle")
            .field("pid", &self.pid)
            .field("status", &*self.status.borrow())
            .finish()
    }
}

impl ChildHandle {
    /// The child's process id.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Wait for the child to exit and return its status (any number of callers may wait).
    pub async fn wait(&self) -> ExitStatus {
        let mut rx = self.status.clone();
        match rx.wait_for(|s| s.is_some()).await {
            Ok(s) => s.unwrap_or_else(|| ExitStatus::from_raw(0)),
            // The sender lives in the registry until the status is sent, and the registry is
            // never dropped, so this cannot happen; report "exited 255" rather than hang.
            Err(_) => ExitStatus::from_raw(255 << 8),
        }
    }

    /// Block the current (non-async) thread until the child exits.
    pub fn wait_blocking(&self) -> ExitStatus {
        let mut rx = self.status.clone();
        loop {
            if let Some(s) = *rx.borrow_and_update() {
                return s;
            }
            // A short poll keeps this free of runtime requirements.
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The exit status if the child has exited, without waiting.
    pub fn try_status(&self) -> Option<ExitStatus> {
        *self.status.borrow()
    }

    /// Send `sig` to the child unless it has already been reaped. Returns `Ok(false)` when
    /// it had exited. The registry lock is held while checking and signalling, so the pid
    /// cannot be reaped and reused by another process in between.
    pub fn signal(&self, sig: Signal) -> io::Result<bool> {
        let registry = lock(&self.shared.registry);
        if !registry.children.contains_key(&self.pid.as_raw()) {
            return Ok(false);
        }
        match nix::sys::signal::kill(self.pid, sig) {
            Ok(()) => Ok(true),
            Err(nix::errno::Errno::ESRCH) => Ok(false),
            Err(e) => Err(io::Error::from(e)),
        }
    }
}

/// Which stream a line of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// Result of [`output`]: status and captured bytes (each stream capped at 8 MiB).
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    /// The last `max_lines` lines of stderr, lossily decoded, for error messages.
    pub fn stderr_tail(&self, max_lines: usize) -> String {
        tail_lines(&self.stderr, max_lines)
    }
}

/// The last `max_lines` non-empty lines of `bytes`, lossily decoded.
pub fn tail_lines(bytes: &[u8], max_lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(max_lines);
    lines[start..].join("\n")
}

/// Why running a command to completion failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start {program}: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("{program} did not finish within {timeout:?} and was stopped")]
    Timeout {
        program: String,
        timeout: Duration,
        /// Output captured before the timeout.
        partial: Box<Output>,
    },
    #[error("reading output of {program}: {source}")]
    Io { program: String, source: io::Error },
}

/// Run `cmd` to completion through the global reaper, capturing stdout and stderr
/// (non-blocking pipes read by tokio). stdin is `/dev/null`. On timeout the command gets
/// SIGTERM, then SIGKILL two seconds later (for helper commands only — the postmaster is
/// never run through this), and [`RunError::Timeout`] is returned.
pub async fn output(cmd: Command, timeout: Duration) -> Result<Output, RunError> {
    output_lines(cmd, timeout, |_, _| {}).await
}

/// Like [`output`], and calls `on_line` for each line as it arrives (progress reporting).
pub async fn output_lines(
    mut cmd: Command,
    timeout: Duration,
    mut on_line: impl FnMut(OutputStream, &str),
) -> Result<Output, RunError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let reaper = Reaper::global().map_err(|source| RunError::Spawn {
        program: program.clone(),
        source,
    })?;
    let (child, pipes) = reaper
        .spawn_with_pipes(cmd)
        .map_err(|source| RunError::Spawn {
            program: program.clone(),
            source,
        })?;
    let io_err = |source| RunError::Io {
        program: program.clone(),
        source,
    };
    let stdout = pipes.stdout.map(pipe_reader).transpose().map_err(io_err)?;
    let stderr = pipes.stderr.map(pipe_reader).transpose().map_err(io_err)?;
    let mut out = LineCollector::new(stdout);
    let mut err = LineCollector::new(stderr);

    let deadline = tokio::time::Instant::now() + timeout;
    let mut status = None;
    let mut timed_out = false;
    // Phase 1: read while the child runs (or until the deadline).
    while status.is_none() && !timed_out {
        tokio::select! {
            s = child.wait() => status = Some(s),
            line = out.next_line(), if !out.done => {
                if let Some(l) = line.map_err(io_err)? { on_line(OutputStream::Stdout, &l) }
            }
            line = err.next_line(), if !err.done => {
                if let Some(l) = line.map_err(io_err)? { on_line(OutputStream::Stderr, &l) }
            }
            _ = tokio::time::sleep_until(deadline) => timed_out = true,
        }
    }
    if timed_out {
        let _ = child.signal(Signal::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(2), child.wait())
            .await
            .is_err()
        {
            let _ = child.signal(Signal::SIGKILL);
        }
        status = Some(child.wait().await);
    }
    // Phase 2: drain what is left; a grandchild may hold the pipes open, so give up after
    // a short grace period instead of waiting for EOF forever.
    let grace = tokio::time::Instant::now() + Duration::from_secs(2);
    while !(out.done && err.done) {
        tokio::select! {
            line = out.next_line(), if !out.done => {
                if let Some(l) = line.map_err(io_err)? { on_line(OutputStream::Stdout, &l) }
            }
            line = err.next_line(), if !err.done => {
                if let Some(l) = line.map_err(io_err)? { on_line(OutputStream::Stderr, &l) }
            }
            _ = tokio::time::sleep_until(grace) => break,
        }
    }
    let output = Output {
        status: status.unwrap_or_else(|| ExitStatus::from_raw(255 << 8)),
        stdout: out.captured,
        stderr: err.captured,
    };
    if timed_out {
        return Err(RunError::Timeout {
            program,
            timeout,
            partial: Box::new(output),
        });
    }
    Ok(output)
}

type PipeReader = BufReader<tokio::net::unix::pipe::Receiver>;

fn pipe_reader(fd: impl Into<OwnedFd>) -> io::Result<PipeReader> {
    Ok(BufReader::new(
        tokio::net::unix::pipe::Receiver::from_owned_fd(fd.into())?,
    ))
}

/// Reads one stream line by line, keeping a capped copy of everything read.
struct LineCollector<R> {
    reader: Option<BufReader<R>>,
    captured: Vec<u8>,
    buf: Vec<u8>,
    done: bool,
}

impl<R: AsyncRead + Unpin> LineCollector<R> {
    fn new(reader: Option<BufReader<R>>) -> Self {
        let done = reader.is_none();
        LineCollector {
            reader,
            captured: Vec::new(),
            buf: Vec::new(),
            done,
        }
    }

    /// The next complete line (without its newline); `None` when a read ended without one.
    async fn next_line(&mut self) -> io::Result<Option<String>> {
        let Some(reader) = self.reader.as_mut() else {
            self.done = true;
            return Ok(None);
        };
        // read_until is cancel-safe for our use: bytes already read stay in `self.buf`.
        let n = reader.read_until(b'\n', &mut self.buf).await?;
        if n == 0 {
            self.done = true;
            if self.buf.is_empty() {
                return Ok(None);
            }
        } else if self.buf.last() != Some(&b'\n') {
            return Ok(None);
        }
        let line = std::mem::take(&mut self.buf);
        let room = MAX_CAPTURE.saturating_sub(self.captured.len());
        self.captured
            .extend_from_slice(&line[..line.len().min(room)]);
        let text = String::from_utf8_lossy(&line);
        Ok(Some(text.trim_end_matches(['\n', '\r']).to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_env_names() {
        assert!(is_private_env("NOTIFY_SOCKET"));
        assert!(is_private_env("WATCHDOG_USEC"));
        assert!(is_private_env("LISTEN_FDS"));
        assert!(is_private_env("PATRONI_SUPERUSER_PASSWORD"));
        assert!(!is_private_env("PATH"));
        assert!(!is_private_env("PGPASSFILE"));
    }

    #[test]
    fn tails() {
        assert_eq!(tail_lines(b"a\nb\n\nc\n", 2), "b\nc");
        assert_eq!(tail_lines(b"", 3), "");
        assert_eq!(tail_lines(b"only", 3), "only");
    }
}
