//! The postgres layer under `manning supervise`: everything that touches the server's
//! files and processes, none of the HA decisions.
//!
//! - [`pidfile`]: `postmaster.pid` parsing and safe stale detection.
//! - [`controldata`]: `pg_controldata` parsed into a struct.
//! - [`conf`]: the `postgresql.conf` manning owns, Patroni's enforced parameters, `pg_hba`,
//!   standby/recovery helpers.
//! - [`process`]: the postmaster as our child: start, readiness, exit, the stop ladder.
//! - [`initdb`]: `initdb` with `bootstrap.initdb` options, password through a file.
//! - [`sql`]: the superuser connection over the UNIX socket, probes, roles, quoting.
//! - [`post_init`]: the `bootstrap.post_init` script.
//! - [`bootstrap`]: the local steps of bootstrapping a new cluster, in Patroni's order.
//! - [`secret_file`]: short-lived 0600 files for passwords (`--pwfile`, `PGPASSFILE`).
//!
//! All external programs run through [`crate::init::reaper`]; postgres programs run as the
//! configured user ([`crate::init::privileges::RunAs`]).

pub mod basebackup;
pub mod bootstrap;
pub mod conf;
pub mod controldata;
pub mod initdb;
pub mod pidfile;
pub mod post_init;
pub mod process;
pub mod rewind;
pub mod secret_file;
pub mod slots;
pub mod sql;
pub mod timeline;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Passwords are the configuration module's [`crate::config::Secret`]: one type whose
/// `Debug`/`Display`/`Serialize` never show the value, from the YAML file to the pwfile.
pub use crate::config::Secret;

/// A user name with an optional password (`postgresql.authentication.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: Option<Secret>,
}

/// A WAL position. Displayed and parsed as postgres does (`16/B374D848`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = String;
    fn from_str(s: &str) -> Result<Lsn, String> {
        let bad = || format!("{s:?} is not a WAL position such as 0/16B3748");
        let (hi, lo) = s.trim().split_once('/').ok_or_else(bad)?;
        let hi = u32::from_str_radix(hi, 16).map_err(|_| bad())?;
        let lo = u32::from_str_radix(lo, 16).map_err(|_| bad())?;
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

/// Where the postgres programs live (`postgresql.bin_dir`; Debian:
/// `/usr/lib/postgresql/15/bin`). An empty path means "find them on PATH".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBin {
    pub dir: PathBuf,
}

impl PgBin {
    pub fn new(dir: impl Into<PathBuf>) -> PgBin {
        PgBin { dir: dir.into() }
    }

    /// Path of one program (`postgres`, `initdb`, `pg_controldata`, ...).
    pub fn program(&self, name: &str) -> PathBuf {
        if self.dir.as_os_str().is_empty() {
            PathBuf::from(name)
        } else {
            self.dir.join(name)
        }
    }

    /// The directory, if one was configured.
    pub fn dir(&self) -> Option<&Path> {
        (!self.dir.as_os_str().is_empty()).then_some(self.dir.as_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(format!("{s}"), "<redacted>");
        let c = Credentials {
            username: "admin".into(),
            password: Some(s.clone()),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn lsn_round_trip() {
        let l: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(l.0, (0x16 << 32) | 0xB374D848);
        assert_eq!(l.to_string(), "16/B374D848");
        assert_eq!("0/0".parse::<Lsn>().unwrap(), Lsn(0));
        assert!("0/".parse::<Lsn>().is_err());
        assert!("xyz".parse::<Lsn>().is_err());
        assert!("1/100000000".parse::<Lsn>().is_err());
        assert!(Lsn(1) < Lsn(2));
    }

    #[test]
    fn bin_paths() {
        assert_eq!(
            PgBin::new("/usr/lib/postgresql/15/bin").program("initdb"),
            PathBuf::from("/usr/lib/postgresql/15/bin/initdb")
        );
        assert_eq!(PgBin::new("").program("initdb"), PathBuf::from("initdb"));
    }
}
