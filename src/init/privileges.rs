//! Running as the right user: resolve the user postgres runs as, prepare the directories it
//! needs while we are still root, then drop the privileges of the whole process.
//!
//! Postgres refuses to run as root, and its data directory must be owned by the user it runs
//! as with mode 0700 or 0750. A container starts us as root with volumes owned by root, so
//! we (like the official image's entrypoint) create and fix the directories first, then
//! become the `postgres` user (configurable) for good. Where dropping is not wanted or not
//! possible, children are still started as that user through [`RunAs::apply_to`], and
//! postgres is never started as root ([`PrivilegeError::RootRefused`], exit 2).
//!
//! **Order matters:** [`drop_privileges`] must run while the process has a single thread —
//! before the tokio runtime and before [`crate::init::reaper::Reaper::install`] — so no
//! thread keeps root credentials. It checks this and refuses otherwise.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::unistd::{Gid, Uid, User};
use tracing::{info, warn};

use super::socket_dir::{Owner, ensure_dir};

/// Errors of this module. [`PrivilegeError::is_usage`] tells which are configuration errors.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("no user named {0:?} (set the run-as user to an existing account, e.g. postgres)")]
    UnknownUser(String),
    #[error("looking up user {user:?}: {source}")]
    Lookup { user: String, source: nix::Error },
    #[error(
        "refusing to run postgres as root (user {0:?} has uid 0); configure an unprivileged \
         user such as postgres"
    )]
    RootRefused(String),
    #[error(
        "running as uid {current} and cannot switch to user {wanted:?} (uid {wanted_uid}); \
         start manning as root or as {wanted:?}"
    )]
    CannotSwitch {
        current: u32,
        wanted: String,
        wanted_uid: u32,
    },
    #[error(
        "privileges must be dropped while the process is single-threaded ({0} threads \
         running); call drop_privileges before starting the runtime"
    )]
    NotSingleThreaded(usize),
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{op}: {source}")]
    Syscall {
        op: &'static str,
        source: nix::Error,
    },
    #[error("{0}")]
    Dir(String),
}

impl PrivilegeError {
    /// True for errors caused by configuration (exit code 2) rather than the system.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            PrivilegeError::UnknownUser(_)
                | PrivilegeError::RootRefused(_)
                | PrivilegeError::CannotSwitch { .. }
                | PrivilegeError::Dir(_)
        )
    }

    /// Convert for the edges: configuration errors become [`crate::error::usage`] (exit 2).
    pub fn into_anyhow(self) -> anyhow::Error {
        if self.is_usage() {
            crate::error::usage(self.to_string())
        } else {
            anyhow::Error::new(self)
        }
    }
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> PrivilegeError {
    let path = path.to_path_buf();
    move |source| PrivilegeError::Io { op, path, source }
}

/// The account postgres (and the supervisor, once dropped) runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
    /// Supplementary groups (e.g. `ssl-cert` for TLS keys), resolved while still root.
    pub groups: Vec<Gid>,
    /// Home directory, passed to children as `HOME` (libpq looks for `~/.pgpass`).
    pub home: PathBuf,
}

impl RunAs {
    /// Look up a user by name or numeric uid.
    pub fn resolve(user: &str) -> Result<RunAs, PrivilegeError> {
        let found = match user.parse::<u32>() {
            Ok(n) => User::from_uid(Uid::from_raw(n)),
            Err(_) => User::from_name(user),
        }
        .map_err(|source| PrivilegeError::Lookup {
            user: user.to_string(),
            source,
        })?;
        let Some(u) = found else {
            return Err(PrivilegeError::UnknownUser(user.to_string()));
        };
        let groups = supplementary_groups(&u);
        Ok(RunAs {
            name: u.name,
            uid: u.uid,
            gid: u.gid,
            groups,
            home: u.dir,
        })
    }

    /// The user we are running as now (falls back to numeric ids without a passwd entry,
    /// as with `docker run --user 1234`).
    pub fn current() -> RunAs {
        let uid = Uid::effective();
        let gid = Gid::effective();
        match User::from_uid(uid) {
            Ok(Some(u)) => RunAs {
                name: u.name,
                uid,
                gid,
                groups: nix::unistd::getgroups().unwrap_or_default(),
                home: u.dir,
            },
            _ => RunAs {
                name: uid.to_string(),
                uid,
                gid,
                groups: nix::unistd::getgroups().unwrap_or_default(),
                home: std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("/")),
            },
        }
    }

    /// The user postgres runs as. As root: `configured` (default `postgres`). Otherwise:
    /// ourselves (a configured name that is someone else is an error). Root is refused.
    pub fn for_postgres(configured: Option<&str>) -> Result<RunAs, PrivilegeError> {
        let wanted = configured.unwrap_or("postgres");
        let run_as = if Uid::effective().is_root() {
            RunAs::resolve(wanted)?
        } else {
            let me = RunAs::current();
            if let Some(name) = configured
                && name != me.name
                && name != me.uid.to_string()
            {
                let other = RunAs::resolve(name)?;
                if other.uid != me.uid {
                    return Err(PrivilegeError::CannotSwitch {
                        current: me.uid.as_raw(),
                        wanted: name.to_string(),
                        wanted_uid: other.uid.as_raw(),
                    });
                }
            }
            me
        };
        if run_as.uid.is_root() {
            return Err(PrivilegeError::RootRefused(run_as.name));
        }
        Ok(run_as)
    }

    /// Owner for [`ensure_dir`].
    pub fn owner(&self) -> Owner {
        Owner {
            uid: self.uid,
            gid: Some(self.gid),
        }
    }

    /// Make `cmd` run as this user: sets `HOME`, `USER`, `LOGNAME`, and — when we are root —
    /// switches groups and uid in the child between fork and exec. Errors if the child would
    /// run as root or we cannot switch.
    pub fn apply_to(&self, cmd: &mut Command) -> Result<(), PrivilegeError> {
        if self.uid.is_root() {
            return Err(PrivilegeError::RootRefused(self.name.clone()));
        }
        let euid = Uid::effective();
        if euid != self.uid {
            if !euid.is_root() {
                return Err(PrivilegeError::CannotSwitch {
                    current: euid.as_raw(),
                    wanted: self.name.clone(),
                    wanted_uid: self.uid.as_raw(),
                });
            }
            let uid = self.uid.as_raw();
            let gid = self.gid.as_raw();
            let groups: Vec<libc::gid_t> = self.groups.iter().map(|g| g.as_raw()).collect();
            // SAFETY: only async-signal-safe syscalls between fork and exec; `groups` was
            // allocated before the fork and is only read.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                        || libc::setgid(gid) != 0
                        || libc::setuid(uid) != 0
                    {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd.env("HOME", &self.home)
            .env("USER", &self.name)
            .env("LOGNAME", &self.name);
        Ok(())
    }
}

fn supplementary_groups(u: &User) -> Vec<Gid> {
    let Ok(name) = std::ffi::CString::new(u.name.as_bytes()) else {
        return vec![u.gid];
    };
    let mut groups = nix::unistd::getgrouplist(&name, u.gid).unwrap_or_else(|_| vec![u.gid]);
    groups.sort_by_key(|g| g.as_raw());
    groups.dedup();
    groups
}

/// Number of threads of this process (from /proc/self/status).
pub fn thread_count() -> io::Result<usize> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Threads: line"))
}

/// Become `run_as` for good: supplementary groups, gid, then uid. Only as root and only
/// while single-threaded; afterwards regaining root must be impossible (verified).
pub fn drop_privileges(run_as: &RunAs) -> Result<(), PrivilegeError> {
    if run_as.uid.is_root() {
        return Err(PrivilegeError::RootRefused(run_as.name.clone()));
    }
    if !Uid::effective().is_root() {
        if Uid::effective() == run_as.uid {
            return Ok(());
        }
        return Err(PrivilegeError::CannotSwitch {
            current: Uid::effective().as_raw(),
            wanted: run_as.name.clone(),
            wanted_uid: run_as.uid.as_raw(),
        });
    }
    let threads = thread_count().map_err(io_err("reading", Path::new("/proc/self/status")))?;
    if threads != 1 {
        return Err(PrivilegeError::NotSingleThreaded(threads));
    }
    let sys = |op| move |source| PrivilegeError::Syscall { op, source };
    nix::unistd::setgroups(&run_as.groups).map_err(sys("setgroups"))?;
    nix::unistd::setgid(run_as.gid).map_err(sys("setgid"))?;
    nix::unistd::setuid(run_as.uid).map_err(sys("setuid"))?;
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(PrivilegeError::Syscall {
            op: "verifying the privilege drop (setuid(0) still succeeds)",
            source: nix::Error::EPERM,
        });
    }
    info!(user = %run_as.name, uid = run_as.uid.as_raw(), gid = run_as.gid.as_raw(), "dropped root privileges");
    Ok(())
}

/// The directories and files postgres needs before it can start.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// `postgresql.data_dir`: created 0700 and owned by the run-as user.
    pub data_dir: PathBuf,
    /// `unix_socket_directories`: created, owned by the run-as user, mode below.
    pub socket_dirs: Vec<PathBuf>,
    /// Mode of the socket directories (Debian uses 02775).
    pub socket_dir_mode: u32,
    /// `postgresql.pgpass`: its directory must exist; an existing file is made the user's
    /// with mode 0600 (libpq ignores group- or world-readable password files).
    pub pgpass: Option<PathBuf>,
}

/// Prepare [`Dirs`] for `run_as`. Changes ownership only when we are root; as another user
/// it checks and reports what is wrong instead.
pub fn prepare_dirs(run_as: &RunAs, dirs: &Dirs) -> Result<(), PrivilegeError> {
    let root = Uid::effective().is_root();
    let data_dir = &dirs.data_dir;
    if !data_dir.is_absolute() {
        return Err(PrivilegeError::Dir(format!(
            "postgresql.data_dir {} must be an absolute path",
            data_dir.display()
        )));
    }
    if let Some(parent) = data_dir.parent() {
        prepare_parent(run_as, parent, data_dir, root)?;
    }
    match std::fs::symlink_metadata(data_dir) {
        Ok(m) if !m.is_dir() => {
            return Err(PrivilegeError::Dir(format!(
                "postgresql.data_dir {} exists and is not a directory",
                data_dir.display()
            )));
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir(data_dir).map_err(io_err("creating", data_dir))?;
            info!(path = %data_dir.display(), "created data directory");
        }
        Err(e) => return Err(io_err("inspecting", data_dir)(e)),
    }
    let meta = std::fs::metadata(data_dir).map_err(io_err("inspecting", data_dir))?;
    if meta.uid() != run_as.uid.as_raw() {
        if !root {
            return Err(PrivilegeError::Dir(format!(
                "data directory {} is owned by uid {}, not by {} (uid {}); fix its ownership",
                data_dir.display(),
                meta.uid(),
                run_as.name,
                run_as.uid
            )));
        }
        nix::unistd::chown(data_dir, Some(run_as.uid), Some(run_as.gid)).map_err(|e| {
            PrivilegeError::Io {
                op: "changing owner of",
                path: data_dir.clone(),
                source: e.into(),
            }
        })?;
        info!(path = %data_dir.display(), user = %run_as.name, "changed owner of data directory");
    }
    // Postgres accepts 0700 and 0750 (group access); anything else is corrected to 0700,
    // as CNPG and the official image do on every start.
    let mode = meta.permissions().mode() & 0o7777;
    if mode != 0o700 && mode != 0o750 {
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err("changing mode of", data_dir))?;
        info!(path = %data_dir.display(), from = %format!("{mode:04o}"), "set data directory mode to 0700");
    }
    for dir in &dirs.socket_dirs {
        if !root && dir.is_dir() {
            // Not ours to fix (e.g. a root-owned /run/postgresql from the image): only
            // check that postgres can create its socket there.
            let meta = std::fs::metadata(dir).map_err(io_err("inspecting", dir))?;
            if !writable_by(&meta, run_as) {
                return Err(PrivilegeError::Dir(format!(
                    "socket directory {} is not writable by {}; fix its owner or mode, or \
                     start manning as root",
                    dir.display(),
                    run_as.name
                )));
            }
            continue;
        }
        let owner = if root { Some(run_as.owner()) } else { None };
        ensure_dir(dir, dirs.socket_dir_mode, owner)
            .map_err(|e| PrivilegeError::Dir(format!("socket directory: {e:#}")))?;
    }
    if let Some(pgpass) = &dirs.pgpass {
        prepare_pgpass(run_as, pgpass, root)?;
    }
    Ok(())
}

fn prepare_parent(
    run_as: &RunAs,
    parent: &Path,
    data_dir: &Path,
    root: bool,
) -> Result<(), PrivilegeError> {
    let created = !parent.exists();
    if created {
        std::fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
        info!(path = %parent.display(), "created data directory parent");
    }
    let meta = std::fs::metadata(parent).map_err(io_err("inspecting", parent))?;
    if writable_by(&meta, run_as) {
        return Ok(());
    }
    // The user must be able to create, rename (a failed bootstrap is moved aside) and
    // re-create the data directory, so it needs write access to the parent. Take over the
    // parent only when that is clearly ours to take: we created it, or it is an empty volume
    // mount (nothing in it but the data directory).
    let only_data_dir = std::fs::read_dir(parent)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .all(|e| Some(e.file_name().as_os_str()) == data_dir.file_name())
        })
        .unwrap_or(false);
    if root && (created || only_data_dir) {
        nix::unistd::chown(parent, Some(run_as.uid), Some(run_as.gid)).map_err(|e| {
            PrivilegeError::Io {
                op: "changing owner of",
                path: parent.to_path_buf(),
                source: e.into(),
            }
        })?;
        info!(path = %parent.display(), user = %run_as.name, "changed owner of data directory parent");
    } else {
        warn!(
            path = %parent.display(),
            user = %run_as.name,
            "data directory parent is not writable by the postgres user; a failed bootstrap \
             cannot be moved aside and a replica cannot re-create its data directory"
        );
    }
    Ok(())
}

fn prepare_pgpass(run_as: &RunAs, pgpass: &Path, root: bool) -> Result<(), PrivilegeError> {
    if let Some(dir) = pgpass.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
            if root {
                nix::unistd::chown(dir, Some(run_as.uid), Some(run_as.gid)).map_err(|e| {
                    PrivilegeError::Io {
                        op: "changing owner of",
                        path: dir.to_path_buf(),
                        source: e.into(),
                    }
                })?;
            }
        }
        let meta = std::fs::metadata(dir).map_err(io_err("inspecting", dir))?;
        if !writable_by(&meta, run_as) {
            return Err(PrivilegeError::Dir(format!(
                "postgresql.pgpass: directory {} is not writable by {}",
                dir.display(),
                run_as.name
            )));
        }
    }
    match std::fs::symlink_metadata(pgpass) {
        Ok(m) if m.is_dir() => Err(PrivilegeError::Dir(format!(
            "postgresql.pgpass {} exists and is a directory",
            pgpass.display()
        ))),
        Ok(m) => {
            if m.uid() != run_as.uid.as_raw() && root {
                nix::unistd::chown(pgpass, Some(run_as.uid), Some(run_as.gid)).map_err(|e| {
                    PrivilegeError::Io {
                        op: "changing owner of",
                        path: pgpass.to_path_buf(),
                        source: e.into(),
                    }
                })?;
            }
            if m.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(pgpass, std::fs::Permissions::from_mode(0o600))
                    .map_err(io_err("changing mode of", pgpass))?;
            }
            Ok(())
        }
        Err(_) => Ok(()),
    }
}

/// Whether `run_as` may create entries in a directory with this metadata.
fn writable_by(meta: &std::fs::Metadata, run_as: &RunAs) -> bool {
    let mode = meta.permissions().mode();
    if run_as.uid.is_root() {
        return true;
    }
    if meta.uid() == run_as.uid.as_raw() {
        return mode & 0o200 != 0;
    }
    let in_group =
        meta.gid() == run_as.gid.as_raw() || run_as.groups.iter().any(|g| g.as_raw() == meta.gid());
    if in_group {
        return mode & 0o020 != 0;
    }
    mode & 0o002 != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_root_and_refuses_it_for_postgres() {
        let root = RunAs::resolve("root").unwrap();
        assert!(root.uid.is_root());
        let by_uid = RunAs::resolve("0").unwrap();
        assert_eq!(by_uid.name, "root");
        let mut cmd = Command::new("true");
        let err = root.apply_to(&mut cmd).unwrap_err();
        assert!(matches!(err, PrivilegeError::RootRefused(_)));
        assert!(err.is_usage());
        assert!(err.to_string().contains("refusing to run postgres as root"));
        assert!(matches!(
            drop_privileges(&root),
            Err(PrivilegeError::RootRefused(_))
        ));
    }

    #[test]
    fn unknown_user_is_a_usage_error() {
        let err = RunAs::resolve("no-such-user-manning").unwrap_err();
        assert!(err.is_usage());
        assert!(err.to_string().contains("no-such-user-manning"));
        assert_eq!(crate::error::exit_code_for(&err.into_anyhow()), 2);
    }

    #[test]
    fn threads_are_counted() {
        assert!(thread_count().unwrap() >= 1);
    }

    #[test]
    fn relative_data_dir_is_rejected() {
        let err = prepare_dirs(
            &RunAs::current(),
            &Dirs {
                data_dir: PathBuf::from("data"),
                socket_dirs: vec![],
                socket_dir_mode: 0o2775,
                pgpass: None,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("absolute"));
    }
}
