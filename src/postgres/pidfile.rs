//! `postmaster.pid`: what a running server writes into its data directory, and how to tell
//! a live server from a leftover file.
//!
//! Format (PostgreSQL ≥ 10, `src/include/utils/pidfile.h`), one value per line:
//! 1. PID (negative for a single-user backend), 2. data directory, 3. start time (epoch),
//! 4. port, 5. first socket directory, 6. first listen address, 7. shared memory key and id,
//! 8. status: `starting`, `stopping`, `ready`, `standby` (space-padded).
//!
//! Lines 4+ appear while the server starts, so a short file is normal early on.
//!
//! A file is *stale* when the process it names is not a postgres serving this data
//! directory. After a container restart pids start low again, so the pid may belong to an
//! unrelated live process; we only call the file live if the pid exists, is not us or our
//! parent, is not a zombie, its executable is `postgres`, and (where readable) its working
//! directory is this data directory (the postmaster `chdir`s there). `EPERM` from
//! `kill(pid, 0)` counts as stale, as in postgres itself: a postmaster always runs as the
//! data directory's owner, and we run as root or as that owner. An empty or unparsable file
//! (a crash during start-up) is stale unless some postgres process still works in the data
//! directory.

use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::Pid;

/// File name inside the data directory.
pub const PIDFILE: &str = "postmaster.pid";

/// The status line (line 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PmStatus {
    /// Starting up, in crash recovery, or waiting for consistency.
    Starting,
    /// Shutting down.
    Stopping,
    /// Accepting connections in normal operation (a primary).
    Ready,
    /// A hot standby accepting read-only connections.
    Standby,
}

impl PmStatus {
    fn parse(s: &str) -> Option<PmStatus> {
        match s.trim() {
            "starting" => Some(PmStatus::Starting),
            "stopping" => Some(PmStatus::Stopping),
            "ready" => Some(PmStatus::Ready),
            "standby" => Some(PmStatus::Standby),
            _ => None,
        }
    }

    /// True when the server accepts connections.
    pub fn accepts_connections(self) -> bool {
        matches!(self, PmStatus::Ready | PmStatus::Standby)
    }
}

/// A parsed `postmaster.pid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidFile {
    /// The postmaster's pid; negative for a single-user backend (`postgres --single`).
    pub pid: i32,
    pub data_dir: PathBuf,
    /// Start time, seconds since the epoch.
    pub start_time: Option<i64>,
    pub port: Option<u16>,
    /// First UNIX socket directory (empty line when sockets are disabled).
    pub socket_dir: Option<PathBuf>,
    /// First listen address (`*`, an address, or empty).
    pub listen_address: Option<String>,
    /// Shared memory key line, kept verbatim (`  5432001    32768`).
    pub shmem_key: Option<String>,
    /// Status line; absent on old servers and early in start-up.
    pub status: Option<PmStatus>,
}

impl PidFile {
    /// The process that holds the lock (the absolute value of the pid).
    pub fn process(&self) -> Pid {
        Pid::from_raw(self.pid.abs())
    }
}

/// Why a file could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("postmaster.pid is empty (a server is starting or a start-up crashed)")]
    Empty,
    #[error("postmaster.pid: line 1 {0:?} is not a process id")]
    BadPid(String),
    #[error("postmaster.pid has no data directory line")]
    Truncated,
}

/// Parse the text of a `postmaster.pid` (or a socket lock file, same layout).
pub fn parse(text: &str) -> Result<PidFile, ParseError> {
    if text.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    let lines: Vec<&str> = text.split('\n').collect();
    let first = lines[0].trim();
    let pid: i32 = first
        .parse()
        .ok()
        .filter(|&p: &i32| p != 0)
        .ok_or_else(|| ParseError::BadPid(first.to_string()))?;
    let data_dir = lines
        .get(1)
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty())
        .ok_or(ParseError::Truncated)?;
    let line = |i: usize| {
        lines
            .get(i)
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .map(str::to_string)
    };
    Ok(PidFile {
        pid,
        data_dir: PathBuf::from(data_dir),
        start_time: line(2).and_then(|s| s.parse().ok()),
        port: line(3).and_then(|s| s.parse().ok()),
        socket_dir: line(4).map(PathBuf::from),
        listen_address: line(5),
        shmem_key: lines
            .get(6)
            .map(|l| l.to_string())
            .filter(|l| !l.is_empty()),
        status: line(7).and_then(|s| PmStatus::parse(&s)),
    })
}

/// Read and parse `<data_dir>/postmaster.pid`; `Ok(None)` when there is none.
pub fn read(data_dir: &Path) -> io::Result<Option<Result<PidFile, ParseError>>> {
    match std::fs::read_to_string(data_dir.join(PIDFILE)) {
        Ok(text) => Ok(Some(parse(&text))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// What the `postmaster.pid` of a data directory says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PidFileState {
    /// No file: no server owns the directory.
    Absent,
    /// A live postgres owns the directory: do not start another.
    Live { pid: Pid },
    /// A leftover file; safe to remove. `reason` is for the log.
    Stale { reason: String },
}

/// Decide whether the data directory's `postmaster.pid` belongs to a live server.
pub fn check(data_dir: &Path) -> io::Result<PidFileState> {
    let parsed = match read(data_dir)? {
        None => return Ok(PidFileState::Absent),
        Some(p) => p,
    };
    match parsed {
        Ok(pf) => Ok(check_pid(pf.process(), Some(data_dir))),
        Err(e) => {
            // A start-up in progress writes the file in one go, but a crash can leave it
            // empty or torn. Only a postgres actually working in this directory makes it live.
            match postgres_processes_in(data_dir).first() {
                Some(p) => Ok(PidFileState::Live { pid: p.pid }),
                None => Ok(PidFileState::Stale {
                    reason: format!("{e}, and no postgres process works in the data directory"),
                }),
            }
        }
    }
}

/// Decide about one pid claimed to be a postgres (serving `data_dir`, when given).
pub fn check_pid(pid: Pid, data_dir: Option<&Path>) -> PidFileState {
    let me = Pid::this();
    if pid == me || pid == Pid::parent() {
        return PidFileState::Stale {
            reason: format!("pid {pid} is this process or its parent (pid reused after a restart)"),
        };
    }
    match nix::sys::signal::kill(pid, None) {
        Err(Errno::ESRCH) => {
            return PidFileState::Stale {
                reason: format!("no process {pid}"),
            };
        }
        Err(Errno::EPERM) => {
            return PidFileState::Stale {
                reason: format!(
                    "process {pid} belongs to another user, so it is not our postmaster"
                ),
            };
        }
        _ => {}
    }
    let Some(info) = ProcInfo::read(pid) else {
        return PidFileState::Stale {
            reason: format!("process {pid} vanished"),
        };
    };
    if info.state == 'Z' {
        return PidFileState::Stale {
            reason: format!("process {pid} is a zombie (it has exited)"),
        };
    }
    if !info.is_postgres() {
        return PidFileState::Stale {
            reason: format!(
                "process {pid} is {:?}, not postgres (pid reused)",
                info.comm
            ),
        };
    }
    if let (Some(cwd), Some(data_dir)) = (&info.cwd, data_dir)
        && !same_dir(cwd, data_dir)
    {
        return PidFileState::Stale {
            reason: format!(
                "process {pid} is a postgres working in {}, not in this data directory",
                cwd.display()
            ),
        };
    }
    PidFileState::Live { pid }
}

/// Remove a stale `postmaster.pid` (only after [`check`] said so).
pub fn remove(data_dir: &Path) -> io::Result<()> {
    match std::fs::remove_file(data_dir.join(PIDFILE)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Path of the lock file postgres keeps next to a UNIX socket.
pub fn socket_lock_path(socket_dir: &Path, port: u16) -> PathBuf {
    socket_dir.join(format!(".s.PGSQL.{port}.lock"))
}

/// Check the socket lock file for `port` in `socket_dir` the same way; `Absent` when none.
pub fn check_socket_lock(socket_dir: &Path, port: u16) -> io::Result<PidFileState> {
    let path = socket_lock_path(socket_dir, port);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(PidFileState::Absent),
        Err(e) => return Err(e),
    };
    Ok(match parse(&text) {
        // Any live postgres holding the lock has the port, whatever its data directory.
        Ok(pf) => check_pid(pf.process(), None),
        Err(e) => PidFileState::Stale {
            reason: format!("socket lock file: {e}"),
        },
    })
}

fn same_dir(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// What /proc tells about one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: Pid,
    pub ppid: Pid,
    /// State letter from /proc/PID/stat (`R`, `S`, `Z`, ...).
    pub state: char,
    /// Short command name (`/proc/PID/comm`), unaffected by postgres' process titles.
    pub comm: String,
    /// Executable, when readable (needs the same uid or root).
    pub exe: Option<PathBuf>,
    /// Working directory, when readable.
    pub cwd: Option<PathBuf>,
}

impl ProcInfo {
    /// Read /proc/PID; `None` when the process does not exist.
    pub fn read(pid: Pid) -> Option<ProcInfo> {
        let base = PathBuf::from(format!("/proc/{pid}"));
        let stat = std::fs::read_to_string(base.join("stat")).ok()?;
        let (open, close) = (stat.find('(')?, stat.rfind(')')?);
        let mut rest = stat.get(close + 1..)?.split_whitespace();
        let state = rest.next()?.chars().next()?;
        let ppid = rest.next()?.parse().ok()?;
        let comm = stat.get(open + 1..close)?.to_string();
        Some(ProcInfo {
            pid,
            ppid: Pid::from_raw(ppid),
            state,
            comm,
            exe: std::fs::read_link(base.join("exe")).ok(),
            cwd: std::fs::read_link(base.join("cwd")).ok(),
        })
    }

    /// True for a postgres server process (postmaster or any of its children).
    pub fn is_postgres(&self) -> bool {
        let named = |n: &str| n == "postgres" || n == "postmaster";
        match &self.exe {
            Some(exe) => {
                let name = exe
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                // After a package upgrade the link reads "postgres (deleted)".
                named(name.trim_end_matches(" (deleted)"))
            }
            None => named(&self.comm),
        }
    }
}

/// Live (non-zombie) postgres processes whose working directory is `data_dir`: a running
/// server, or backends orphaned by a postmaster that was killed.
pub fn postgres_processes_in(data_dir: &Path) -> Vec<ProcInfo> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = Pid::this();
    let mut found: Vec<ProcInfo> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .map(Pid::from_raw)
        .filter(|&p| p != me)
        .filter_map(ProcInfo::read)
        .filter(|p| p.state != 'Z' && p.is_postgres())
        .filter(|p| p.cwd.as_deref().is_some_and(|c| same_dir(c, data_dir)))
        .collect();
    found.sort_by_key(|p| p.pid);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const READY: &str = "12345\n/var/lib/postgresql/15/main\n1700000000\n5432\n/var/run/postgresql\n*\n  5432001    32768\nready   \n";

    #[test]
    fn parses_a_ready_primary() {
        let pf = parse(READY).unwrap();
        assert_eq!(pf.pid, 12345);
        assert_eq!(pf.data_dir, PathBuf::from("/var/lib/postgresql/15/main"));
        assert_eq!(pf.start_time, Some(1_700_000_000));
        assert_eq!(pf.port, Some(5432));
        assert_eq!(pf.socket_dir, Some(PathBuf::from("/var/run/postgresql")));
        assert_eq!(pf.listen_address.as_deref(), Some("*"));
        assert_eq!(pf.shmem_key.as_deref(), Some("  5432001    32768"));
        assert_eq!(pf.status, Some(PmStatus::Ready));
        assert!(pf.status.unwrap().accepts_connections());
    }

    #[test]
    fn parses_padded_statuses() {
        for (line, want) in [
            ("starting", PmStatus::Starting),
            ("stopping", PmStatus::Stopping),
            ("standby ", PmStatus::Standby),
            ("ready   ", PmStatus::Ready),
        ] {
            let text = READY.replace("ready   ", line);
            assert_eq!(parse(&text).unwrap().status, Some(want));
        }
        assert!(!PmStatus::Starting.accepts_connections());
    }

    #[test]
    fn parses_early_and_odd_files() {
        // Early in start-up only the first lines exist.
        let pf = parse("777\n/data\n1700000000\n").unwrap();
        assert_eq!(pf.pid, 777);
        assert_eq!(pf.port, None);
        assert_eq!(pf.status, None);
        // Sockets disabled: empty line 5.
        let pf = parse("777\n/data\n1\n5432\n\n127.0.0.1\n  1 2\nready   \n").unwrap();
        assert_eq!(pf.socket_dir, None);
        assert_eq!(pf.listen_address.as_deref(), Some("127.0.0.1"));
        // Single-user backend: negative pid.
        let pf = parse("-4242\n/data\n").unwrap();
        assert_eq!(pf.process(), Pid::from_raw(4242));
    }

    #[test]
    fn rejects_broken_files() {
        assert_eq!(parse(""), Err(ParseError::Empty));
        assert_eq!(parse("\n\n"), Err(ParseError::Empty));
        assert_eq!(parse("abc\n/data\n"), Err(ParseError::BadPid("abc".into())));
        assert_eq!(parse("0\n/data\n"), Err(ParseError::BadPid("0".into())));
        assert_eq!(parse("123\n"), Err(ParseError::Truncated));
    }

    #[test]
    fn own_pid_and_parent_are_stale() {
        let dir = Path::new("/nonexistent-data");
        assert!(matches!(
            check_pid(Pid::this(), Some(dir)),
            PidFileState::Stale { .. }
        ));
        assert!(matches!(
            check_pid(Pid::parent(), Some(dir)),
            PidFileState::Stale { .. }
        ));
    }

    #[test]
    fn dead_and_non_postgres_pids_are_stale() {
        let dir = tempfile::tempdir().unwrap();
        // pid_max is at most 2^22, so this pid cannot exist.
        std::fs::write(dir.path().join(PIDFILE), "4194399\n/x\n").unwrap();
        match check(dir.path()).unwrap() {
            PidFileState::Stale { reason } => assert!(reason.contains("no process"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // pid 1 exists (init, or the container's entrypoint) and is not a postgres here.
        std::fs::write(dir.path().join(PIDFILE), "1\n/x\n").unwrap();
        assert!(matches!(
            check(dir.path()).unwrap(),
            PidFileState::Stale { .. }
        ));
        std::fs::write(dir.path().join(PIDFILE), "").unwrap();
        match check(dir.path()).unwrap() {
            PidFileState::Stale { reason } => assert!(reason.contains("empty"), "{reason}"),
            other => panic!("{other:?}"),
        }
        remove(dir.path()).unwrap();
        assert_eq!(check(dir.path()).unwrap(), PidFileState::Absent);
        remove(dir.path()).unwrap();
    }

    #[test]
    fn proc_info_of_self() {
        let me = ProcInfo::read(Pid::this()).unwrap();
        assert_eq!(me.ppid, Pid::parent());
        assert!(!me.is_postgres());
        let fake = ProcInfo {
            exe: Some(PathBuf::from(
                "/usr/lib/postgresql/15/bin/postgres (deleted)",
            )),
            ..me.clone()
        };
        assert!(fake.is_postgres());
        let by_comm = ProcInfo {
            exe: None,
            comm: "postgres".into(),
            ..me
        };
        assert!(by_comm.is_postgres());
    }
}
