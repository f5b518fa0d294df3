//! Short-lived files holding a password, for programs that read secrets from files:
//! `initdb --pwfile`, and libpq's `PGPASSFILE` for scripts (`post_init`), `pg_basebackup`
//! and `pg_rewind`. Secrets never go into argv or the environment, where any user can read
//! them through `/proc`.
//!
//! Files are created with `O_EXCL | O_NOFOLLOW`, mode 0600 from the first byte, owned by
//! the user of the program that reads them, and removed when the [`SecretFile`] is dropped.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::init::privileges::RunAs;

/// A 0600 file removed on drop.
#[derive(Debug)]
pub struct SecretFile {
    path: PathBuf,
}

impl SecretFile {
    /// Create `<dir>/<prefix><random>` holding `contents`, owned by `owner` when we are root.
    pub fn create(
        dir: &Path,
        prefix: &str,
        contents: &[u8],
        owner: Option<&RunAs>,
    ) -> io::Result<SecretFile> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut last_err = None;
        for _ in 0..16 {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("{prefix}{}-{n}-{nanos:08x}", std::process::id()));
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path);
            let mut file = match file {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    last_err = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            // From here on the file is ours: remove it on any error.
            let secret = SecretFile { path };
            file.write_all(contents)?;
            file.flush()?;
            if let Some(o) = owner
                && nix::unistd::geteuid().is_root()
            {
                nix::unistd::fchown(&file, Some(o.uid), Some(o.gid)).map_err(io::Error::from)?;
            }
            return Ok(secret);
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("could not create a unique file")))
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SecretFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Escape a field of a `.pgpass` line (`:` and `\` are backslash-escaped).
pub fn pgpass_escape(field: &str) -> String {
    let mut s = String::with_capacity(field.len());
    for c in field.chars() {
        if c == ':' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

/// One `.pgpass` line: `host:port:database:user:password` (`*` matches anything; pass
/// `"*"` unescaped for a wildcard).
pub fn pgpass_line(host: &str, port: &str, database: &str, user: &str, password: &str) -> String {
    let field = |f: &str| {
        if f == "*" {
            "*".to_string()
        } else {
            pgpass_escape(f)
        }
    };
    format!(
        "{}:{}:{}:{}:{}\n",
        field(host),
        field(port),
        field(database),
        pgpass_escape(user),
        pgpass_escape(password)
    )
}

/// Write a persistent `.pgpass` (`postgresql.pgpass`, named by `passfile=` in a replica's
/// `primary_conninfo`): atomically, mode 0600, owned by `owner` when we are root.
pub fn write_pgpass(
    path: &Path,
    lines: &[String],
    owner: Option<&RunAs>,
) -> Result<(), super::conf::ConfError> {
    super::conf::write_file(path, lines.concat().as_bytes(), owner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn file_is_private_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path;
        {
            let f = SecretFile::create(dir.path(), "pw-", b"s3cret", None).unwrap();
            path = f.path().to_path_buf();
            let meta = std::fs::metadata(&path).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o600);
            assert_eq!(std::fs::read(&path).unwrap(), b"s3cret");
            let g = SecretFile::create(dir.path(), "pw-", b"other", None).unwrap();
            assert_ne!(g.path(), f.path());
        }
        assert!(!path.exists());
    }

    #[test]
    fn persistent_pgpass() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        write_pgpass(
            &path,
            &[pgpass_line("10.0.0.1", "5432", "*", "replicator", "p:w")],
            None,
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "10.0.0.1:5432:*:replicator:p\\:w\n"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn pgpass_escaping() {
        assert_eq!(
            pgpass_line("*", "*", "*", "admin", r"a:b\c'd"),
            "*:*:*:admin:a\\:b\\\\c'd\n"
        );
        assert_eq!(
            pgpass_line("/run/postgresql", "5432", "postgres", "u:x", "p"),
            "/run/postgresql:5432:postgres:u\\:x:p\n"
        );
    }
}
