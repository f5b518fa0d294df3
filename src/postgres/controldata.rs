//! `pg_controldata`: the cluster's identity and state, read without a running server.
//!
//! The supervisor needs it before postgres starts: the system identifier (compared with the
//! DCS `initialize` key), whether the last shutdown was clean (crash recovery ahead?), the
//! timeline and checkpoint (rewind decisions), checksums / `wal_log_hints` (can we rewind?),
//! and the settings a hot standby must not go below. The program runs with `LANG=C` so the
//! labels are the English ones parsed here; the parser is pure and tested on captured output.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::{Lsn, PgBin};
use crate::init::privileges::RunAs;
use crate::init::reaper;

/// `Database cluster state:` values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterState {
    StartingUp,
    ShutDown,
    ShutDownInRecovery,
    ShuttingDown,
    InCrashRecovery,
    InArchiveRecovery,
    InProduction,
    /// A value this version of manning does not know, kept verbatim.
    Other(String),
}

impl ClusterState {
    fn parse(s: &str) -> ClusterState {
        match s {
            "starting up" => ClusterState::StartingUp,
            "shut down" => ClusterState::ShutDown,
            "shut down in recovery" => ClusterState::ShutDownInRecovery,
            "shutting down" => ClusterState::ShuttingDown,
            "in crash recovery" => ClusterState::InCrashRecovery,
            "in archive recovery" => ClusterState::InArchiveRecovery,
            "in production" => ClusterState::InProduction,
            other => ClusterState::Other(other.to_string()),
        }
    }

    /// True when the last stop was clean (no crash recovery needed on start).
    pub fn is_clean_shutdown(&self) -> bool {
        matches!(
            self,
            ClusterState::ShutDown | ClusterState::ShutDownInRecovery
        )
    }
}

/// The fields of `pg_controldata` the supervisor uses, plus every line verbatim in `raw`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlData {
    pub system_identifier: u64,
    pub state: ClusterState,
    pub pg_control_version: Option<u32>,
    pub catalog_version: Option<u64>,
    /// `Latest checkpoint location`.
    pub checkpoint_lsn: Lsn,
    /// `Latest checkpoint's REDO location`.
    pub redo_lsn: Option<Lsn>,
    /// `Latest checkpoint's TimeLineID`.
    pub timeline: u32,
    pub prev_timeline: Option<u32>,
    /// `Minimum recovery ending location` (0/0 when not in recovery).
    pub min_recovery_end_lsn: Option<Lsn>,
    pub min_recovery_end_timeline: Option<u32>,
    pub wal_level: Option<String>,
    pub wal_log_hints: Option<bool>,
    /// 0 = checksums off.
    pub data_checksum_version: Option<u32>,
    pub max_connections: Option<u32>,
    pub max_worker_processes: Option<u32>,
    pub max_wal_senders: Option<u32>,
    pub max_prepared_xacts: Option<u32>,
    pub max_locks_per_xact: Option<u32>,
    pub track_commit_timestamp: Option<bool>,
    /// `Bytes per WAL segment`.
    pub wal_segment_size: Option<u64>,
    /// `Time of latest checkpoint`, verbatim.
    pub checkpoint_time: Option<String>,
    /// Every `label: value` line.
    pub raw: BTreeMap<String, String>,
}

impl ControlData {
    /// True when data checksums are enabled.
    pub fn checksums_enabled(&self) -> bool {
        self.data_checksum_version.is_some_and(|v| v > 0)
    }

    /// pg_rewind needs data checksums or `wal_log_hints=on`.
    pub fn can_rewind(&self) -> bool {
        self.checksums_enabled() || self.wal_log_hints == Some(true)
    }
}

/// Errors of reading or parsing `pg_controldata` output.
#[derive(Debug, thiserror::Error)]
pub enum ControlDataError {
    #[error("pg_controldata output lacks {0:?}")]
    Missing(&'static str),
    #[error("pg_controldata: {key:?} has an unexpected value {value:?}")]
    BadValue { key: &'static str, value: String },
    #[error(transparent)]
    Run(#[from] reaper::RunError),
    #[error("pg_controldata -D {data_dir} failed ({status}): {stderr}")]
    Failed {
        data_dir: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error(transparent)]
    User(#[from] crate::init::privileges::PrivilegeError),
}

/// Parse the text `pg_controldata` prints with `LANG=C`.
pub fn parse(text: &str) -> Result<ControlData, ControlDataError> {
    let raw: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let get = |key: &'static str| raw.get(key).map(String::as_str);
    let need = |key: &'static str| get(key).ok_or(ControlDataError::Missing(key));
    fn num<T: std::str::FromStr>(key: &'static str, v: &str) -> Result<T, ControlDataError> {
        v.parse().map_err(|_| ControlDataError::BadValue {
            key,
            value: v.to_string(),
        })
    }
    let lsn = |key: &'static str, v: &str| {
        v.parse::<Lsn>().map_err(|_| ControlDataError::BadValue {
            key,
            value: v.to_string(),
        })
    };
    let opt_num = |key: &'static str| get(key).map(|v| num::<u32>(key, v)).transpose();
    let opt_bool = |key: &'static str| {
        get(key)
            .map(|v| match v {
                "on" => Ok(true),
                "off" => Ok(false),
                other => Err(ControlDataError::BadValue {
                    key,
                    value: other.to_string(),
                }),
            })
            .transpose()
    };

    const SYSID: &str = "Database system identifier";
    const STATE: &str = "Database cluster state";
    const CKPT: &str = "Latest checkpoint location";
    const TLI: &str = "Latest checkpoint's TimeLineID";
    const REDO: &str = "Latest checkpoint's REDO location";
    const MINREC: &str = "Minimum recovery ending location";
    Ok(ControlData {
        system_identifier: num(SYSID, need(SYSID)?)?,
        state: ClusterState::parse(need(STATE)?),
        pg_control_version: opt_num("pg_control version number")?,
        catalog_version: get("Catalog version number")
            .map(|v| num("Catalog version number", v))
            .transpose()?,
        checkpoint_lsn: lsn(CKPT, need(CKPT)?)?,
        redo_lsn: get(REDO).map(|v| lsn(REDO, v)).transpose()?,
        timeline: num(TLI, need(TLI)?)?,
        prev_timeline: opt_num("Latest checkpoint's PrevTimeLineID")?,
        min_recovery_end_lsn: get(MINREC).map(|v| lsn(MINREC, v)).transpose()?,
        min_recovery_end_timeline: opt_num("Min recovery ending loc's timeline")?,
        wal_level: get("wal_level setting").map(str::to_string),
        wal_log_hints: opt_bool("wal_log_hints setting")?,
        data_checksum_version: opt_num("Data page checksum version")?,
        max_connections: opt_num("max_connections setting")?,
        max_worker_processes: opt_num("max_worker_processes setting")?,
        max_wal_senders: opt_num("max_wal_senders setting")?,
        max_prepared_xacts: opt_num("max_prepared_xacts setting")?,
        max_locks_per_xact: opt_num("max_locks_per_xact setting")?,
        track_commit_timestamp: opt_bool("track_commit_timestamp setting")?,
        wal_segment_size: get("Bytes per WAL segment")
            .map(|v| num("Bytes per WAL segment", v))
            .transpose()?,
        checkpoint_time: get("Time of latest checkpoint").map(str::to_string),
        raw: raw.clone(),
    })
}

/// Run `pg_controldata` on `data_dir` (as `run_as` when given and we are root) and parse it.
pub async fn read(
    bin: &PgBin,
    data_dir: &Path,
    run_as: Option<&RunAs>,
) -> Result<ControlData, ControlDataError> {
    let mut cmd = Command::new(bin.program("pg_controldata"));
    cmd.arg("-D")
        .arg(data_dir)
        .env("LANG", "C")
        .env("LC_ALL", "C");
    if let Some(user) = run_as {
        user.apply_to(&mut cmd)?;
    }
    let out = reaper::output(cmd, Duration::from_secs(30)).await?;
    if !out.status.success() {
        return Err(ControlDataError::Failed {
            data_dir: data_dir.display().to_string(),
            status: out.status,
            stderr: out.stderr_tail(5),
        });
    }
    parse(&String::from_utf8_lossy(&out.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PG15: &str = include_str!("../../tests/data/controldata-15-shutdown.txt");

    #[test]
    fn parses_pg15_output() {
        let cd = parse(PG15).unwrap();
        assert_eq!(cd.system_identifier, 7710774176081862551);
        assert_eq!(cd.state, ClusterState::ShutDown);
        assert!(cd.state.is_clean_shutdown());
        assert_eq!(cd.pg_control_version, Some(1300));
        assert_eq!(cd.catalog_version, Some(202209061));
        assert_eq!(cd.checkpoint_lsn, "0/17414F8".parse().unwrap());
        assert_eq!(cd.redo_lsn, Some("0/17414F8".parse().unwrap()));
        assert_eq!(cd.timeline, 1);
        assert_eq!(cd.prev_timeline, Some(1));
        assert_eq!(cd.min_recovery_end_lsn, Some(Lsn(0)));
        assert_eq!(cd.min_recovery_end_timeline, Some(0));
        assert_eq!(cd.wal_level.as_deref(), Some("replica"));
        assert_eq!(cd.wal_log_hints, Some(false));
        assert_eq!(cd.data_checksum_version, Some(1));
        assert!(cd.checksums_enabled());
        assert!(cd.can_rewind());
        assert_eq!(cd.max_connections, Some(100));
        assert_eq!(cd.max_worker_processes, Some(8));
        assert_eq!(cd.max_wal_senders, Some(10));
        assert_eq!(cd.max_prepared_xacts, Some(0));
        assert_eq!(cd.max_locks_per_xact, Some(64));
        assert_eq!(cd.track_commit_timestamp, Some(false));
        assert_eq!(cd.wal_segment_size, Some(16 * 1024 * 1024));
        assert_eq!(
            cd.checkpoint_time.as_deref(),
            Some("Sat Nov 21 23:41:56 2026")
        );
        assert_eq!(
            cd.raw
                .get("Latest checkpoint's NextXID")
                .map(String::as_str),
            Some("0:724")
        );
    }

    #[test]
    fn states() {
        for (text, state, clean) in [
            ("in production", ClusterState::InProduction, false),
            (
                "shut down in recovery",
                ClusterState::ShutDownInRecovery,
                true,
            ),
            ("in crash recovery", ClusterState::InCrashRecovery, false),
            (
                "in archive recovery",
                ClusterState::InArchiveRecovery,
                false,
            ),
            ("shutting down", ClusterState::ShuttingDown, false),
            ("starting up", ClusterState::StartingUp, false),
        ] {
            let out = PG15.replace(
                "Database cluster state:               shut down",
                &format!("Database cluster state:               {text}"),
            );
            let cd = parse(&out).unwrap();
            assert_eq!(cd.state, state);
            assert_eq!(cd.state.is_clean_shutdown(), clean);
        }
    }

    #[test]
    fn no_checksums_no_hints_cannot_rewind() {
        let out = PG15.replace(
            "Data page checksum version:           1",
            "Data page checksum version:           0",
        );
        let cd = parse(&out).unwrap();
        assert!(!cd.checksums_enabled());
        assert!(!cd.can_rewind());
    }

    #[test]
    fn missing_and_bad_values_are_named() {
        let out = PG15.replace("Database system identifier", "Something else");
        let err = parse(&out).unwrap_err();
        assert!(
            err.to_string().contains("Database system identifier"),
            "{err}"
        );
        let out = PG15.replace(
            "0/17414F8\nLatest checkpoint's REDO location",
            "garbage\nLatest checkpoint's REDO location",
        );
        let err = parse(&out).unwrap_err();
        assert!(
            err.to_string().contains("Latest checkpoint location"),
            "{err}"
        );
        assert!(parse("").is_err());
    }
}
