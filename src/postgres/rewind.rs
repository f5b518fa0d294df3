//! `pg_rewind`: make a former primary's data directory follow the new leader again.
//!
//! After a crash or a kill, an old primary may hold WAL the new leader never received (in
//! strict synchronous mode: commits written locally and still waiting for a standby's
//! confirmation, never acknowledged). It cannot stream from the new timeline until those
//! changes are undone. `pg_rewind` copies back from the leader what changed since the
//! timelines forked; when nothing diverged it says so and changes nothing, so running it for
//! every former primary that is to follow someone else is safe.
//!
//! PostgreSQL 13+ runs crash recovery on an unclean data directory itself (single-user
//! mode) before rewinding. Credentials: `postgresql.authentication.rewind`, else the
//! superuser, through a temporary `PGPASSFILE` as for the other client programs.

use std::path::PathBuf;
use std::time::Duration;

use super::basebackup::{BasebackupError, Source, dsn, run_client};
use crate::config::CmdOption;

/// What to rewind and from where.
#[derive(Debug, Clone)]
pub struct RewindSpec {
    /// The leader, with the rewind user's (or superuser's) credentials.
    pub source: Source,
    /// `postgresql.bin_name.pg_rewind`.
    pub program: String,
    pub data_dir: PathBuf,
    /// `postgresql.rewind` (validated when the configuration is loaded).
    pub options: Vec<CmdOption>,
    pub timeout: Duration,
}

/// The argv pg_rewind gets (without the program).
pub fn arguments(spec: &RewindSpec) -> Vec<String> {
    let mut args = vec![
        format!("--target-pgdata={}", spec.data_dir.display()),
        format!("--source-server={}", dsn(&spec.source).render()),
        "--progress".to_string(),
    ];
    args.extend(spec.options.iter().map(CmdOption::to_arg));
    args
}

/// Run pg_rewind once; its progress lines are logged.
pub async fn run(spec: &RewindSpec) -> Result<(), BasebackupError> {
    run_client(&spec.source, &spec.program, arguments(spec), spec.timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::privileges::RunAs;
    use crate::postgres::{Credentials, PgBin};

    #[test]
    fn argv_names_the_source_without_its_password() {
        let spec = RewindSpec {
            source: Source {
                bin: PgBin::new("/usr/lib/postgresql/15/bin"),
                host: "10.0.0.2".into(),
                port: 5432,
                credentials: Credentials {
                    username: "postgres".into(),
                    password: Some(crate::config::Secret::new("top-secret")),
                },
                run_as: RunAs::current(),
                secret_dir: "/tmp".into(),
            },
            program: "pg_rewind".into(),
            data_dir: "/data/pg".into(),
            options: vec![CmdOption::Flag("debug".into())],
            timeout: Duration::from_secs(60),
        };
        let args = arguments(&spec);
        assert_eq!(
            args,
            [
                "--target-pgdata=/data/pg",
                "--source-server=dbname='postgres' host='10.0.0.2' port='5432' user='postgres'",
                "--progress",
                "--debug",
            ]
        );
        assert!(!args.join(" ").contains("top-secret"));
    }
}
