//! The dynamic configuration: `bootstrap.dcs` in the file and the `/config` key in etcd.
//!
//! Both have the same JSON shape. [`DynamicConfig`] keeps exactly what was written: every
//! field is optional (absent keys stay absent), and keys manning does not model are kept
//! in `extra`, so reading `/config` and writing it back loses nothing. Accessors such as
//! [`DynamicConfig::ttl`] apply Patroni's defaults (`patroni/config.py` `__DEFAULT_CONFIG`
//! and `GlobalConfig`):
//!
//! | key | default |
//! |---|---|
//! | `ttl` / `loop_wait` / `retry_timeout` | 30 / 10 / 10 (minimums 20 / 1 / 3) |
//! | `maximum_lag_on_failover` | 1048576 |
//! | `maximum_lag_on_syncnode` | -1 (off) |
//! | `primary_start_timeout` (`master_start_timeout`) | 300 |
//! | `primary_stop_timeout` (`master_stop_timeout`) | 0 |
//! | `primary_race_backoff` | 0 |
//! | `synchronous_mode` / `_strict` / `_node_count` | off / false / 1 |
//! | `failsafe_mode`, `check_timeline`, `pause` | false |
//! | `member_slots_ttl` | 1800 s |
//! | `max_timelines_history` | 0 (unlimited) |
//! | `postgresql.use_slots` / `use_pg_rewind` | true / false |
//! | `postgresql.remove_data_directory_on_*` | false |
//! | `postgresql.pg_ctl_timeout` | 60 |
//!
//! [`effective`] is Patroni's merge: defaults, then the DCS value (or `bootstrap.dcs` while
//! the DCS has none), then the local `postgresql` section, which overrides everything
//! except `use_slots` (global only) and the parameters PostgreSQL must get on its command
//! line (`max_connections`, `wal_level`, ...: dynamic only). The timeout rules of
//! [`DynamicConfig::adjust_timeouts`] are applied first, with Patroni's own messages.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::decode::{Cx, fields};
use super::problem::{Mark, Sources};
use super::yaml::{Entry, Kind, Node, Resolved, resolve_plain};

/// `synchronous_mode`: `false`, `true` or `"quorum"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SynchronousMode {
    #[default]
    Off,
    On,
    Quorum,
}

impl SynchronousMode {
    /// Synchronous replication of either kind is requested.
    pub fn is_enabled(self) -> bool {
        self != SynchronousMode::Off
    }
}

/// Written as Patroni writes it: `false`, `true`, `"quorum"`.
impl Serialize for SynchronousMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            SynchronousMode::Off => s.serialize_bool(false),
            SynchronousMode::On => s.serialize_bool(true),
            SynchronousMode::Quorum => s.serialize_str("quorum"),
        }
    }
}

/// Kind of a permanent replication slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotType {
    Physical,
    Logical,
}

/// An entry of `slots`: a permanent replication slot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PermanentSlot {
    #[serde(rename = "type")]
    pub slot_type: SlotType,
    /// Logical slots: the database the slot belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Logical slots: the output plugin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// `primary` or `standby`: only create the slot in that kind of cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_type: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An entry of `ignore_slots`: slots matching every given property are left alone.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct IgnoreSlot {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub slot_type: Option<SlotType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `postgresql` part of the dynamic configuration.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct DynamicPostgresql {
    /// GUCs, name → JSON scalar as written (`256`, `"replica"`, `true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<BTreeMap<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_pg_rewind: Option<bool>,
    /// Global only: a local `postgresql.use_slots` is ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_slots: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remove_data_directory_on_rewind_failure: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remove_data_directory_on_diverged_timelines: Option<bool>,
    /// Lines of `pg_hba.conf`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg_hba: Option<Vec<String>>,
    /// Lines of `pg_ident.conf`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg_ident: Option<Vec<String>>,
    /// Seconds `pg_ctl` may wait for start/stop/restart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg_ctl_timeout: Option<u64>,
    /// Extra settings for replicas' recovery configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_conf: Option<BTreeMap<String, Value>>,
    /// Everything else, kept verbatim (role-specific `parameters_primary`, `pg_hba_replica`,
    /// `pg_hosts`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl DynamicPostgresql {
    pub fn use_slots(&self) -> bool {
        self.use_slots.unwrap_or(true)
    }
    pub fn use_pg_rewind(&self) -> bool {
        self.use_pg_rewind.unwrap_or(false)
    }
    pub fn remove_data_directory_on_rewind_failure(&self) -> bool {
        self.remove_data_directory_on_rewind_failure
            .unwrap_or(false)
    }
    pub fn remove_data_directory_on_diverged_timelines(&self) -> bool {
        self.remove_data_directory_on_diverged_timelines
            .unwrap_or(false)
    }
    pub fn pg_ctl_timeout(&self) -> u64 {
        self.pg_ctl_timeout.unwrap_or(60)
    }
}

/// The dynamic configuration (see the module documentation for defaults).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct DynamicConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loop_wait: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_lag_on_failover: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_lag_on_syncnode: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_start_timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_stop_timeout: Option<u64>,
    /// Pre-3.0 name of `primary_start_timeout`, read when the new name is absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_start_timeout: Option<u64>,
    /// Pre-3.0 name of `primary_stop_timeout`, read when the new name is absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_stop_timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_race_backoff: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub synchronous_mode: Option<SynchronousMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub synchronous_mode_strict: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub synchronous_node_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failsafe_mode: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check_timeline: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause: Option<bool>,
    /// Seconds to keep the slot of a member that went away.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_slots_ttl: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_timelines_history: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgresql: Option<DynamicPostgresql>,
    /// Kept verbatim: manning does not run standby clusters (a file that sets it is
    /// rejected; a DCS value that has it is reported by the consumer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub standby_cluster: Option<Value>,
    /// Permanent replication slots by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slots: Option<BTreeMap<String, PermanentSlot>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignore_slots: Option<Vec<IgnoreSlot>>,
    /// Keys manning does not model, kept verbatim for writing back.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Patroni's `ConfigHandler.CMDLINE_OPTIONS` with their defaults (`None`: PostgreSQL's
/// own default, not set by Patroni).
const CMDLINE_DEFAULTS: &[(&str, Option<CmdDefault>)] = &[
    ("listen_addresses", None),
    ("port", None),
    ("cluster_name", None),
    ("wal_level", Some(CmdDefault::Str("hot_standby"))),
    ("hot_standby", Some(CmdDefault::Str("on"))),
    ("max_connections", Some(CmdDefault::Int(100))),
    ("max_wal_senders", Some(CmdDefault::Int(10))),
    ("wal_keep_segments", None),
    ("wal_keep_size", None),
    ("max_prepared_transactions", Some(CmdDefault::Int(0))),
    ("max_locks_per_transaction", Some(CmdDefault::Int(64))),
    ("track_commit_timestamp", Some(CmdDefault::Str("off"))),
    ("max_replication_slots", Some(CmdDefault::Int(10))),
    ("max_worker_processes", Some(CmdDefault::Int(8))),
    ("wal_log_hints", Some(CmdDefault::Str("on"))),
];

#[derive(Debug, Clone, Copy)]
enum CmdDefault {
    Int(i64),
    Str(&'static str),
}

impl CmdDefault {
    fn json(self) -> Value {
        match self {
            CmdDefault::Int(i) => Value::from(i),
            CmdDefault::Str(s) => Value::from(s),
        }
    }
}

/// True for parameters PostgreSQL gets on its command line: they can only be set in the
/// dynamic configuration (a local value is ignored, as in Patroni).
pub fn is_cmdline_parameter(name: &str) -> bool {
    CMDLINE_DEFAULTS
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case(name))
}

/// Patroni's check of a command-line parameter set in the dynamic configuration. Returns
/// the value to use (integers normalised to numbers) or why it is refused.
pub fn check_cmdline_parameter(name: &str, value: &Value) -> Result<Value, String> {
    let lower = name.to_ascii_lowercase();
    let text = match value {
        Value::String(s) => s.trim().to_string(),
        other => other.to_string(),
    };
    let int_min = |min: i64| -> Result<Value, String> {
        match crate::config::yaml::parse_yaml11_int(&text) {
            Some(v) if v >= min => Ok(Value::from(v)),
            Some(_) => Err(format!("must be at least {min}")),
            None => Err("must be an integer".into()),
        }
    };
    let boolean = || -> Result<bool, String> {
        match value {
            Value::Bool(b) => Ok(*b),
            _ => super::decode::parse_bool(&text).ok_or_else(|| "must be on or off".to_string()),
        }
    };
    match lower.as_str() {
        "listen_addresses" | "port" => Err("is set by manning from postgresql.listen".into()),
        "cluster_name" => Err("is set by manning from scope".into()),
        "wal_level" => {
            if ["hot_standby", "replica", "logical"].contains(&text.to_ascii_lowercase().as_str()) {
                Ok(value.clone())
            } else {
                Err("must be replica (hot_standby) or logical".into())
            }
        }
        "hot_standby" => match boolean()? {
            true => Ok(value.clone()),
            false => Err("must be on: replicas serve reads".into()),
        },
        "track_commit_timestamp" | "wal_log_hints" => boolean().map(|_| value.clone()),
        "max_connections" => int_min(25),
        "max_wal_senders" => int_min(3),
        "wal_keep_segments" => int_min(1),
        "max_prepared_transactions" => int_min(0),
        "max_locks_per_transaction" => int_min(32),
        "max_replication_slots" => int_min(4),
        "max_worker_processes" => int_min(2),
        "wal_keep_size" => match size_in_mb(&text) {
            Some(mb) if mb >= 16 => Ok(value.clone()),
            Some(_) => Err("must be at least 16MB".into()),
            None => Err("must be a size such as 128MB".into()),
        },
        _ => Ok(value.clone()),
    }
}

/// Upper bounds from Patroni's validator for `bootstrap.dcs.postgresql.parameters`.
fn parameter_max(name: &str) -> Option<i64> {
    match name.to_ascii_lowercase().as_str() {
        "max_connections"
        | "max_prepared_transactions"
        | "max_replication_slots"
        | "max_wal_senders"
        | "max_worker_processes" => Some(262_143),
        "max_locks_per_transaction" => Some(2_147_483_647),
        _ => None,
    }
}

/// A PostgreSQL memory size in MB (`128MB`, `1GB`, `2048kB`, or a number of MB).
fn size_in_mb(text: &str) -> Option<i64> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let n: i64 = text[..split].parse().ok()?;
    let factor_kb: i64 = match text[split..].trim() {
        "" | "MB" => 1024,
        "kB" => 1,
        "GB" => 1024 * 1024,
        "TB" => 1024 * 1024 * 1024,
        _ => return None,
    };
    Some(n.checked_mul(factor_kb)? / 1024)
}

/// The default of a command-line parameter, for messages.
fn cmdline_default(name: &str) -> String {
    CMDLINE_DEFAULTS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .and_then(|(_, d)| *d)
        .map(|d| format!("the default {} is used", d.json()))
        .unwrap_or_else(|| "PostgreSQL's default is used".into())
}

/// Keys of the `postgresql` section that are local only; Patroni drops them from the
/// dynamic configuration.
const LOCAL_ONLY_PG_KEYS: &[&str] = &[
    "connect_address",
    "proxy_address",
    "listen",
    "config_dir",
    "data_dir",
    "pgpass",
    "authentication",
];

/// Role-specific variants (Patroni 4.1): parameter maps and line lists per role.
const ROLE_PARAMETER_KEYS: &[&str] = &[
    "parameters_primary",
    "parameters_replica",
    "parameters_standby_leader",
];
const ROLE_LINE_KEYS: &[&str] = &[
    "pg_hba_primary",
    "pg_hba_replica",
    "pg_hba_standby_leader",
    "pg_ident_primary",
    "pg_ident_replica",
    "pg_ident_standby_leader",
    "pg_hosts",
    "pg_hosts_primary",
    "pg_hosts_replica",
    "pg_hosts_standby_leader",
];

impl DynamicConfig {
    pub fn ttl(&self) -> u64 {
        self.ttl.unwrap_or(30)
    }
    pub fn loop_wait(&self) -> u64 {
        self.loop_wait.unwrap_or(10)
    }
    pub fn retry_timeout(&self) -> u64 {
        self.retry_timeout.unwrap_or(10)
    }
    pub fn maximum_lag_on_failover(&self) -> u64 {
        self.maximum_lag_on_failover.unwrap_or(1_048_576)
    }
    pub fn maximum_lag_on_syncnode(&self) -> i64 {
        self.maximum_lag_on_syncnode.unwrap_or(-1)
    }
    pub fn primary_start_timeout(&self) -> u64 {
        self.primary_start_timeout
            .or(self.master_start_timeout)
            .unwrap_or(300)
    }
    pub fn primary_stop_timeout(&self) -> u64 {
        self.primary_stop_timeout
            .or(self.master_stop_timeout)
            .unwrap_or(0)
    }
    pub fn primary_race_backoff(&self) -> u64 {
        self.primary_race_backoff.unwrap_or(0)
    }
    pub fn synchronous_mode(&self) -> SynchronousMode {
        self.synchronous_mode.unwrap_or_default()
    }
    pub fn synchronous_mode_strict(&self) -> bool {
        self.synchronous_mode_strict.unwrap_or(false)
    }
    /// At least 1 when strict mode is on, as Patroni's `GlobalConfig`.
    pub fn synchronous_node_count(&self) -> u32 {
        let min = u32::from(self.synchronous_mode_strict());
        self.synchronous_node_count.unwrap_or(1).max(min)
    }
    pub fn failsafe_mode(&self) -> bool {
        self.failsafe_mode.unwrap_or(false)
    }
    pub fn check_timeline(&self) -> bool {
        self.check_timeline.unwrap_or(false)
    }
    pub fn pause(&self) -> bool {
        self.pause.unwrap_or(false)
    }
    pub fn member_slots_ttl(&self) -> u64 {
        self.member_slots_ttl.unwrap_or(1800)
    }
    pub fn max_timelines_history(&self) -> u64 {
        self.max_timelines_history.unwrap_or(0)
    }
    /// The `postgresql` part (empty when absent).
    pub fn pg(&self) -> DynamicPostgresql {
        self.postgresql.clone().unwrap_or_default()
    }

    /// True when nothing at all is set (Patroni treats an empty `/config` as missing).
    pub fn is_empty(&self) -> bool {
        *self == DynamicConfig::default()
    }

    /// Every setting at its default, including the command-line parameters Patroni
    /// always passes to PostgreSQL.
    pub fn defaults() -> DynamicConfig {
        let parameters = CMDLINE_DEFAULTS
            .iter()
            .filter_map(|(n, d)| d.map(|d| (n.to_string(), d.json())))
            .collect();
        DynamicConfig {
            ttl: Some(30),
            loop_wait: Some(10),
            retry_timeout: Some(10),
            maximum_lag_on_failover: Some(1_048_576),
            maximum_lag_on_syncnode: Some(-1),
            primary_start_timeout: Some(300),
            primary_stop_timeout: Some(0),
            master_start_timeout: None,
            master_stop_timeout: None,
            primary_race_backoff: Some(0),
            synchronous_mode: Some(SynchronousMode::Off),
            synchronous_mode_strict: Some(false),
            synchronous_node_count: Some(1),
            failsafe_mode: Some(false),
            check_timeline: Some(false),
            pause: Some(false),
            member_slots_ttl: Some(1800),
            max_timelines_history: Some(0),
            postgresql: Some(DynamicPostgresql {
                parameters: Some(parameters),
                use_pg_rewind: Some(false),
                use_slots: Some(true),
                remove_data_directory_on_rewind_failure: Some(false),
                remove_data_directory_on_diverged_timelines: Some(false),
                pg_hba: None,
                pg_ident: None,
                pg_ctl_timeout: Some(60),
                recovery_conf: None,
                extra: Map::new(),
            }),
            standby_cluster: None,
            slots: None,
            ignore_slots: None,
            extra: Map::new(),
        }
    }

    /// Patroni's `_validate_and_adjust_timeouts`: values below the minimums (loop_wait 1,
    /// retry_timeout 3, ttl 20) are raised; then if `loop_wait + 2 × retry_timeout > ttl`,
    /// loop_wait is lowered to fit, or, when even loop_wait 1 does not fit, loop_wait
    /// becomes 1 and retry_timeout `(ttl − 1) / 2`. Returns `(key, message)` for each
    /// adjustment, with Patroni's wording.
    pub fn adjust_timeouts(&mut self) -> Vec<(&'static str, String)> {
        fn raise(
            field: &mut Option<u64>,
            name: &'static str,
            default: u64,
            min: u64,
            out: &mut Vec<(&'static str, String)>,
        ) -> u64 {
            let v = field.unwrap_or(default);
            if v < min {
                out.push((
                    name,
                    format!("{name}={v} can't be smaller than {min}, adjusting..."),
                ));
                *field = Some(min);
                min
            } else {
                v
            }
        }
        let mut out = Vec::new();
        let loop_wait = raise(&mut self.loop_wait, "loop_wait", 10, 1, &mut out);
        let retry = raise(&mut self.retry_timeout, "retry_timeout", 10, 3, &mut out);
        let ttl = raise(&mut self.ttl, "ttl", 30, 20, &mut out);
        if 1 + 2 * retry > ttl {
            let new_retry = (ttl - 1) / 2;
            self.loop_wait = Some(1);
            self.retry_timeout = Some(new_retry);
            out.push((
                "retry_timeout",
                format!(
                    "Violated the rule \"loop_wait + 2*retry_timeout <= ttl\", where ttl={ttl}. Adjusting loop_wait from {loop_wait} to 1 and retry_timeout from {retry} to {new_retry}"
                ),
            ));
        } else if loop_wait + 2 * retry > ttl {
            let new_loop = ttl - 2 * retry;
            self.loop_wait = Some(new_loop);
            out.push((
                "loop_wait",
                format!(
                    "Violated the rule \"loop_wait + 2*retry_timeout <= ttl\", where ttl={ttl} and retry_timeout={retry}. Adjusting loop_wait from {loop_wait} to {new_loop}"
                ),
            ));
        }
        out
    }

    /// Read the `/config` value from the DCS. Never fails: invalid JSON or a non-object is
    /// treated as empty, and a malformed setting as absent (its raw value is kept in
    /// `extra` so writing back loses nothing), each with a warning, as Patroni does.
    pub fn from_dcs_json(text: &str) -> (DynamicConfig, Vec<String>) {
        match serde_json::from_str::<Value>(text) {
            Ok(v) => DynamicConfig::from_json_value(&v),
            Err(e) => (
                DynamicConfig::default(),
                vec![format!(
                    "/config is not valid JSON ({e}); treated as empty, as Patroni does"
                )],
            ),
        }
    }

    /// [`DynamicConfig::from_dcs_json`] for an already parsed value.
    pub fn from_json_value(value: &Value) -> (DynamicConfig, Vec<String>) {
        if !value.is_object() {
            return (
                DynamicConfig::default(),
                vec!["/config is not a JSON object; treated as empty, as Patroni does".into()],
            );
        }
        let mut sources = Sources::new();
        let id = sources.add("DCS /config");
        let node = Node::from_json(value, Mark::whole(id));
        let mut cx = Cx::new(&sources, true);
        let config = decode(&mut cx, &node);
        let warnings = cx
            .problems
            .iter()
            .map(|p| format!("/config {}: {}", p.key_path, p.message))
            .collect();
        (config, warnings)
    }
}

/// Deserializes leniently, exactly like [`DynamicConfig::from_json_value`] (warnings are
/// dropped; use that function to see them).
impl<'de> Deserialize<'de> for DynamicConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(DynamicConfig::from_json_value(&v).0)
    }
}

/// Run a reader; in lenient mode keep the raw value in `extra` when it fails, so a value
/// we cannot read is still written back unchanged.
fn keep<T>(
    cx: &mut Cx,
    e: &Entry,
    extra: &mut Map<String, Value>,
    read: impl FnOnce(&mut Cx) -> Option<T>,
) -> Option<T> {
    let before = cx.problems.len();
    let r = read(cx);
    if r.is_none() && cx.lenient && cx.problems.len() > before && !e.value.is_null() {
        extra.insert(e.key.clone(), e.value.to_json());
    }
    r
}

/// `synchronous_mode`: a boolean (YAML 1.1 or Patroni's `parse_bool`) or `quorum`.
fn sync_mode(cx: &mut Cx, node: &Node) -> Option<SynchronousMode> {
    let mode = match &node.kind {
        Kind::Null => return None,
        Kind::Scalar(s) if s.text.trim().eq_ignore_ascii_case("quorum") => {
            Some(SynchronousMode::Quorum)
        }
        Kind::Scalar(s) if s.plain => match resolve_plain(&s.text) {
            Resolved::Bool(b) => Some(if b {
                SynchronousMode::On
            } else {
                SynchronousMode::Off
            }),
            _ => super::decode::parse_bool(&s.text).map(|b| {
                if b {
                    SynchronousMode::On
                } else {
                    SynchronousMode::Off
                }
            }),
        },
        Kind::Scalar(s) => super::decode::parse_bool(&s.text).map(|b| {
            if b {
                SynchronousMode::On
            } else {
                SynchronousMode::Off
            }
        }),
        _ => None,
    };
    if mode.is_none() {
        cx.invalid(node, "true, false or \"quorum\"");
    }
    mode
}

fn slot_type(cx: &mut Cx, node: &Node) -> Option<SlotType> {
    cx.choice(
        node,
        &[
            ("physical", SlotType::Physical),
            ("logical", SlotType::Logical),
        ],
        false,
    )
}

fn permanent_slot(cx: &mut Cx, node: &Node) -> Option<PermanentSlot> {
    if node.is_null() {
        return Some(PermanentSlot {
            slot_type: SlotType::Physical,
            database: None,
            plugin: None,
            cluster_type: None,
            extra: Map::new(),
        });
    }
    let mut slot_type_v = None;
    let mut database = None;
    let mut plugin = None;
    let mut cluster_type = None;
    let mut extra = Map::new();
    fields!(cx, node, |e| {
        "type" => slot_type_v = slot_type(cx, &e.value),
        "database" => database = cx.nonempty(&e.value),
        "plugin" => plugin = cx.nonempty(&e.value),
        "cluster_type" => cluster_type = cx.choice(&e.value, &[("primary", "primary"), ("standby", "standby")], false).map(String::from),
    } else |known| {
        cx.unknown(e, known);
        extra.insert(e.key.clone(), e.value.to_json());
    });
    let slot_type_v = match slot_type_v {
        Some(t) => t,
        None if node.get("type").is_none() && node.get("database").is_none() => SlotType::Physical,
        None => {
            if node.get("type").is_none() {
                let at = cx.here(node);
                cx.error(at, "a slot with a database needs `type: logical`");
            }
            return None;
        }
    };
    if slot_type_v == SlotType::Logical && (database.is_none() || plugin.is_none()) {
        let at = cx.here(node);
        cx.error(at, "a logical slot needs `database` and `plugin`");
        return None;
    }
    Some(PermanentSlot {
        slot_type: slot_type_v,
        database,
        plugin,
        cluster_type,
        extra,
    })
}

fn ignore_slot(cx: &mut Cx, node: &Node) -> Option<IgnoreSlot> {
    let mut s = IgnoreSlot::default();
    if !matches!(node.kind, Kind::Map(_)) {
        cx.invalid(
            node,
            "a mapping of slot properties (name, type, database, plugin)",
        );
        return None;
    }
    fields!(cx, node, |e| {
        "name" => s.name = cx.nonempty(&e.value),
        "type" => s.slot_type = slot_type(cx, &e.value),
        "database" => s.database = cx.nonempty(&e.value),
        "plugin" => s.plugin = cx.nonempty(&e.value),
    } else |known| {
        cx.unknown(e, known);
        s.extra.insert(e.key.clone(), e.value.to_json());
    });
    Some(s)
}

/// Decode `postgresql` of a dynamic configuration.
pub(crate) fn decode_pg(cx: &mut Cx, node: &Node) -> DynamicPostgresql {
    let mut pg = DynamicPostgresql::default();
    let mut extra = Map::new();
    fields!(cx, node, |e| {
        "parameters" => pg.parameters = parameters(cx, &e.value, false),
        "use_pg_rewind" => pg.use_pg_rewind = keep(cx, e, &mut extra, |cx| cx.bool(&e.value)),
        "use_slots" => pg.use_slots = keep(cx, e, &mut extra, |cx| cx.bool(&e.value)),
        "remove_data_directory_on_rewind_failure" => pg.remove_data_directory_on_rewind_failure = keep(cx, e, &mut extra, |cx| cx.bool(&e.value)),
        "remove_data_directory_on_diverged_timelines" => pg.remove_data_directory_on_diverged_timelines = keep(cx, e, &mut extra, |cx| cx.bool(&e.value)),
        "pg_hba" => pg.pg_hba = keep(cx, e, &mut extra, |cx| hba_lines(cx, &e.value)),
        "pg_ident" => pg.pg_ident = keep(cx, e, &mut extra, |cx| cx.string_list(&e.value)),
        "pg_ctl_timeout" => pg.pg_ctl_timeout = keep(cx, e, &mut extra, |cx| cx.uint(&e.value, 0)),
        "recovery_conf" => pg.recovery_conf = keep(cx, e, &mut extra, |cx| cx.json_map(&e.value)),
    } else |known| {
        let key = e.key.as_str();
        if ROLE_PARAMETER_KEYS.contains(&key) {
            let _ = cx.scalar_map(&e.value);
            extra.insert(e.key.clone(), cx.json(&e.value));
        } else if ROLE_LINE_KEYS.contains(&key) {
            let _ = cx.string_list(&e.value);
            extra.insert(e.key.clone(), cx.json(&e.value));
        } else if LOCAL_ONLY_PG_KEYS.contains(&key) {
            cx.warn(e.key_mark, format!("`{key}` is a local setting: put it in the top-level `postgresql` section (ignored in the dynamic configuration, as in Patroni)"));
            extra.insert(e.key.clone(), cx.json(&e.value));
        } else {
            let all: Vec<&str> = known.iter().chain(ROLE_PARAMETER_KEYS).chain(ROLE_LINE_KEYS).copied().collect();
            cx.unknown(e, &all);
            extra.insert(e.key.clone(), cx.json(&e.value));
        }
    });
    pg.extra = extra;
    pg
}

/// `pg_hba` lines: strings whose first word is a connection type PostgreSQL knows.
pub(crate) fn hba_lines(cx: &mut Cx, node: &Node) -> Option<Vec<String>> {
    let lines = cx.string_list(node)?;
    if let Kind::Seq(items) = &node.kind {
        for (i, (line, item)) in lines.iter().zip(items).enumerate() {
            let first = line.split_whitespace().next().unwrap_or("");
            let known = [
                "local",
                "host",
                "hostssl",
                "hostnossl",
                "hostgssenc",
                "hostnogssenc",
                "include",
                "include_if_exists",
                "include_dir",
            ];
            if !first.is_empty() && !first.starts_with('#') && !known.contains(&first) {
                let hint = super::suggest::did_you_mean(first, known);
                cx.at(format!("[{i}]"), |cx| {
                    cx.warn(
                        item.mark,
                        format!("`{first}` is not a pg_hba.conf connection type{hint}"),
                    )
                });
            }
        }
    }
    Some(lines)
}

/// `parameters`: a mapping of scalars. In the dynamic configuration the command-line
/// parameters are checked as Patroni checks them (a refused value gets a warning; it is
/// kept as written and dropped by [`effective`], where the default applies); in the local
/// section (`local`) they are removed with a warning, since Patroni only takes them from
/// the dynamic configuration.
pub(crate) fn parameters(cx: &mut Cx, node: &Node, local: bool) -> Option<BTreeMap<String, Value>> {
    let mut params = cx.scalar_map(node)?;
    for e in cx.entries(node) {
        let Some(value) = params.get(&e.key).cloned() else {
            continue;
        };
        if !is_cmdline_parameter(&e.key) {
            continue;
        }
        cx.enter(&e.key);
        if local {
            cx.warn(
                e.key_mark,
                format!(
                    "`{}` can only be set in the dynamic configuration (bootstrap.dcs.postgresql.parameters); the local value is ignored, as in Patroni",
                    e.key
                ),
            );
            params.remove(&e.key);
        } else if !cx.lenient {
            // Kept as written (it is what gets written to the DCS); the merge drops it.
            let too_big = parameter_max(&e.key).and_then(|max| {
                let n = match &value {
                    Value::Number(n) => n.as_i64(),
                    Value::String(s) => crate::config::yaml::parse_yaml11_int(s.trim()),
                    _ => None,
                }?;
                (n > max).then_some(max)
            });
            if let Some(max) = too_big {
                cx.error(
                    e.value.mark,
                    format!(
                        "must be at most {max} (Patroni's validator and PostgreSQL refuse more)"
                    ),
                );
            } else if let Err(why) = check_cmdline_parameter(&e.key, &value) {
                let shown = if e.value.contains_secret() {
                    String::new()
                } else {
                    format!("={value}")
                };
                cx.warn(
                    e.value.mark,
                    format!(
                        "{}{shown} {why}; {}, as in Patroni",
                        e.key,
                        cmdline_default(&e.key)
                    ),
                );
            }
        }
        cx.leave();
    }
    Some(params)
}

/// Decode a dynamic configuration (`bootstrap.dcs` or `/config`).
pub(crate) fn decode(cx: &mut Cx, node: &Node) -> DynamicConfig {
    let mut d = DynamicConfig::default();
    let mut extra = Map::new();
    fields!(cx, node, |e| {
        "ttl" => d.ttl = keep(cx, e, &mut extra, |cx| cx.uint(&e.value, 0)),
        "loop_wait" => d.loop_wait = keep(cx, e, &mut extra, |cx| cx.uint(&e.value, 0)),
        "retry_timeout" => d.retry_timeout = keep(cx, e, &mut extra, |cx| cx.uint(&e.value, 0)),
        "maximum_lag_on_failover" => d.maximum_lag_on_failover = keep(cx, e, &mut extra, |cx| cx.uint(&e.value, 0)),
        "maximum_lag_on_syncnode" => d.maximum_lag_on_syncnode = keep(cx, e, &mut extra, |cx| cx.int(&e.value, Some(-1), None)),
        "primary_start_timeout" => d.primary_start_timeout = keep(cx, e, &mut extra, |cx| cx.uint(&e.value, 0)),
        "primary_stop_timeout" => d.primary_stop_timeout = keep(cx, e, &mut extra, |cx| cx.uint(&e.value, 0)),
        "master_start_timeout" => d.master_start_timeout = keep(cx, e, &mut extra, |cx| cx.uint(&e.value, 0)),
        "master_stop_timeout" => d.master_stop_timeout = keep(cx, e, &mut extra, |cx| cx.uint(&e.value, 0)),
        "primary_race_backoff" => d.primary_race_backoff = keep(cx, e, &mut extra, |cx| cx.uint(&e.value, 0)),
        "synchronous_mode" => d.synchronous_mode = keep(cx, e, &mut extra, |cx| sync_mode(cx, &e.value)),
        "synchronous_mode_strict" => d.synchronous_mode_strict = keep(cx, e, &mut extra, |cx| cx.bool(&e.value)),
        "synchronous_node_count" => d.synchronous_node_count = keep(cx, e, &mut extra, |cx| cx.int(&e.value, Some(1), Some(i64::from(u32::MAX))).map(|v| v as u32)),
        "failsafe_mode" => d.failsafe_mode = keep(cx, e, &mut extra, |cx| cx.bool(&e.value)),
        "check_timeline" => d.check_timeline = keep(cx, e, &mut extra, |cx| cx.bool(&e.value)),
        "pause" => d.pause = keep(cx, e, &mut extra, |cx| cx.bool(&e.value)),
        "member_slots_ttl" => d.member_slots_ttl = keep(cx, e, &mut extra, |cx| cx.seconds(&e.value, 0)),
        "max_timelines_history" => d.max_timelines_history = keep(cx, e, &mut extra, |cx| cx.uint(&e.value, 0)),
        "postgresql" => d.postgresql = Some(decode_pg(cx, &e.value)),
        "standby_cluster" => {
            if !e.value.is_null() {
                cx.error(e.key_mark, "standby clusters (replicating from a remote primary) are not supported by manning");
                d.standby_cluster = Some(cx.json(&e.value));
            }
        },
        "slots" => d.slots = keep(cx, e, &mut extra, |cx| {
            if e.value.is_null() { return None; }
            let mut out = BTreeMap::new();
            for s in cx.entries(&e.value) {
                cx.enter(&s.key);
                cx.record(s.key_mark);
                if let Some(slot) = permanent_slot(cx, &s.value) {
                    out.insert(s.key.clone(), slot);
                }
                cx.leave();
            }
            Some(out)
        }),
        "ignore_slots" => d.ignore_slots = keep(cx, e, &mut extra, |cx| {
            match &e.value.kind {
                Kind::Null => None,
                Kind::Seq(items) => {
                    let mut out = Vec::new();
                    for (i, item) in items.iter().enumerate() {
                        if let Some(s) = cx.at(format!("[{i}]"), |cx| ignore_slot(cx, item)) {
                            out.push(s);
                        }
                    }
                    Some(out)
                }
                _ => { cx.invalid(&e.value, "a list"); None }
            }
        }),
    } else |known| {
        match e.key.as_str() {
            "permanent_slots" | "permanent_replication_slots" => {
                cx.warn(e.key_mark, format!("`{}` is an old name of `slots`; kept as written", e.key));
            }
            _ => cx.unknown(e, known),
        }
        extra.insert(e.key.clone(), cx.json(&e.value));
    });
    d.extra = extra;
    d
}

/// Patroni's merge of the dynamic configuration with the local `postgresql` section:
/// defaults < `source` (timeouts adjusted) < local overrides. Returns the merged
/// configuration (every field set) and warnings about adjusted or refused values.
pub fn effective(
    source: Option<&DynamicConfig>,
    local: Option<&super::model::Postgresql>,
) -> (DynamicConfig, Vec<String>) {
    let mut warnings = Vec::new();
    let mut src = source.cloned().unwrap_or_default();
    warnings.extend(src.adjust_timeouts().into_iter().map(|(_, m)| m));
    let mut out = DynamicConfig::defaults();
    macro_rules! take {
        ($($f:ident),*) => { $( if src.$f.is_some() { out.$f = src.$f.clone(); } )* };
    }
    take!(
        ttl,
        loop_wait,
        retry_timeout,
        maximum_lag_on_failover,
        maximum_lag_on_syncnode,
        master_start_timeout,
        master_stop_timeout,
        primary_race_backoff,
        synchronous_mode,
        synchronous_mode_strict,
        synchronous_node_count,
        failsafe_mode,
        check_timeline,
        pause,
        member_slots_ttl,
        max_timelines_history,
        standby_cluster,
        slots,
        ignore_slots
    );
    out.primary_start_timeout = Some(src.primary_start_timeout());
    out.primary_stop_timeout = Some(src.primary_stop_timeout());
    out.extra = src.extra.clone();

    let mut pg = out.postgresql.take().unwrap_or_default();
    if let Some(spg) = &src.postgresql {
        if let Some(params) = &spg.parameters {
            let target = pg.parameters.get_or_insert_with(BTreeMap::new);
            for (name, value) in params {
                if is_cmdline_parameter(name) {
                    match check_cmdline_parameter(name, value) {
                        Ok(v) => {
                            target.retain(|k, _| !k.eq_ignore_ascii_case(name));
                            target.insert(name.clone(), v);
                        }
                        Err(why) => warnings.push(format!(
                            "postgresql parameter {name}={value} {why}; {}",
                            cmdline_default(name)
                        )),
                    }
                } else {
                    target.insert(name.clone(), value.clone());
                }
            }
        }
        macro_rules! take_pg {
            ($($f:ident),*) => { $( if spg.$f.is_some() { pg.$f = spg.$f.clone(); } )* };
        }
        take_pg!(
            use_pg_rewind,
            use_slots,
            remove_data_directory_on_rewind_failure,
            remove_data_directory_on_diverged_timelines,
            pg_hba,
            pg_ident,
            pg_ctl_timeout,
            recovery_conf
        );
        for (k, v) in &spg.extra {
            if !LOCAL_ONLY_PG_KEYS.contains(&k.as_str()) {
                pg.extra.insert(k.clone(), v.clone());
            }
        }
    }
    if let Some(local) = local {
        let target = pg.parameters.get_or_insert_with(BTreeMap::new);
        for (name, value) in &local.parameters {
            if !is_cmdline_parameter(name) {
                target.insert(name.clone(), value.clone());
            }
        }
        macro_rules! local_pg {
            ($($f:ident),*) => { $( if local.$f.is_some() { pg.$f = local.$f.clone(); } )* };
        }
        local_pg!(
            use_pg_rewind,
            remove_data_directory_on_rewind_failure,
            remove_data_directory_on_diverged_timelines,
            pg_hba,
            pg_ident,
            pg_ctl_timeout,
            recovery_conf
        );
        for (k, v) in &local.role_specific {
            pg.extra.insert(k.clone(), v.clone());
        }
    }
    out.postgresql = Some(pg);
    (out, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adjusted(
        ttl: Option<u64>,
        loop_wait: Option<u64>,
        retry: Option<u64>,
    ) -> (u64, u64, u64, Vec<String>) {
        let mut d = DynamicConfig {
            ttl,
            loop_wait,
            retry_timeout: retry,
            ..Default::default()
        };
        let msgs = d.adjust_timeouts().into_iter().map(|(_, m)| m).collect();
        (d.ttl(), d.loop_wait(), d.retry_timeout(), msgs)
    }

    #[test]
    fn timeout_rules_match_patroni() {
        // the seed: nothing to adjust
        let (t, l, r, m) = adjusted(Some(20), Some(2), Some(5));
        assert_eq!((t, l, r), (20, 2, 5));
        assert!(m.is_empty());
        // defaults are fine and stay unwritten
        let mut d = DynamicConfig::default();
        assert!(d.adjust_timeouts().is_empty());
        assert_eq!(d.ttl, None);
        // below minimums
        let (t, l, r, m) = adjusted(Some(10), Some(0), Some(1));
        assert_eq!((t, l, r), (20, 1, 3));
        assert_eq!(m[0], "loop_wait=0 can't be smaller than 1, adjusting...");
        assert_eq!(
            m[1],
            "retry_timeout=1 can't be smaller than 3, adjusting..."
        );
        assert_eq!(m[2], "ttl=10 can't be smaller than 20, adjusting...");
        // loop_wait shrinks
        let (t, l, r, m) = adjusted(Some(20), Some(10), Some(5));
        assert_eq!((t, l, r), (20, 10, 5));
        assert!(m.is_empty());
        let (t, l, r, m) = adjusted(Some(20), Some(12), Some(5));
        assert_eq!((t, l, r), (20, 10, 5));
        assert_eq!(
            m[0],
            "Violated the rule \"loop_wait + 2*retry_timeout <= ttl\", where ttl=20 and retry_timeout=5. Adjusting loop_wait from 12 to 10"
        );
        // even loop_wait 1 does not fit: retry_timeout shrinks too
        let (t, l, r, m) = adjusted(Some(20), Some(5), Some(10));
        assert_eq!((t, l, r), (20, 1, 9));
        assert_eq!(
            m[0],
            "Violated the rule \"loop_wait + 2*retry_timeout <= ttl\", where ttl=20. Adjusting loop_wait from 5 to 1 and retry_timeout from 10 to 9"
        );
        // ttl default 30 with a big retry
        let (t, l, r, _) = adjusted(None, None, Some(15));
        assert_eq!((t, l, r), (30, 1, 14));
    }

    #[test]
    fn dcs_json_round_trips_unknown_keys() {
        let text = r#"{"ttl":30,"loop_wait":10,"retry_timeout":10,"maximum_lag_on_failover":1048576,"postgresql":{"use_pg_rewind":true,"parameters":{"max_connections":256,"wal_level":"replica","hot_standby":"on"},"custom_key":{"a":[1,2]}},"synchronous_mode":"quorum","some_future_key":{"x":1},"slots":{"s1":{"type":"logical","database":"db","plugin":"pgoutput"}},"ignore_slots":[{"name":"x","type":"physical"}]}"#;
        let (d, warnings) = DynamicConfig::from_dcs_json(text);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(d.synchronous_mode(), SynchronousMode::Quorum);
        assert_eq!(d.ttl(), 30);
        let back = serde_json::to_value(&d).unwrap();
        let orig: Value = serde_json::from_str(text).unwrap();
        assert_eq!(back, orig);
        let via_serde: DynamicConfig = serde_json::from_str(text).unwrap();
        assert_eq!(via_serde, d);
    }

    #[test]
    fn dcs_json_is_lenient() {
        let (d, w) = DynamicConfig::from_dcs_json("not json");
        assert!(d.is_empty());
        assert_eq!(w.len(), 1);
        let (d, w) = DynamicConfig::from_dcs_json("[1,2]");
        assert!(d.is_empty());
        assert_eq!(w.len(), 1);
        let (d, w) = DynamicConfig::from_dcs_json(
            r#"{"ttl":"abc","loop_wait":"5","synchronous_mode":"maybe","pause":"yes","unknown":1}"#,
        );
        assert_eq!(d.ttl, None);
        assert_eq!(d.ttl(), 30);
        assert_eq!(d.loop_wait, Some(5));
        assert_eq!(d.synchronous_mode, None);
        assert_eq!(d.pause, Some(true));
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w.iter()
                .any(|w| w.starts_with("/config ttl: must be an integer")),
            "{w:?}"
        );
        // the malformed raw values survive a write-back
        let back = serde_json::to_value(&d).unwrap();
        assert_eq!(back["ttl"], "abc");
        assert_eq!(back["synchronous_mode"], "maybe");
        assert_eq!(back["unknown"], 1);
    }

    #[test]
    fn synchronous_mode_forms() {
        for (json, mode) in [
            ("true", SynchronousMode::On),
            ("false", SynchronousMode::Off),
            ("\"on\"", SynchronousMode::On),
            ("\"off\"", SynchronousMode::Off),
            ("\"quorum\"", SynchronousMode::Quorum),
            ("\"QUORUM\"", SynchronousMode::Quorum),
        ] {
            let (d, w) = DynamicConfig::from_dcs_json(&format!("{{\"synchronous_mode\":{json}}}"));
            assert!(w.is_empty());
            assert_eq!(d.synchronous_mode(), mode, "{json}");
        }
        assert_eq!(
            serde_json::to_string(&SynchronousMode::Quorum).unwrap(),
            "\"quorum\""
        );
        assert_eq!(serde_json::to_string(&SynchronousMode::On).unwrap(), "true");
    }

    #[test]
    fn strict_mode_implies_one_sync_node() {
        let d = DynamicConfig {
            synchronous_mode_strict: Some(true),
            synchronous_node_count: None,
            ..Default::default()
        };
        assert_eq!(d.synchronous_node_count(), 1);
        let (d, _) = DynamicConfig::from_dcs_json(r#"{"master_start_timeout": 12}"#);
        assert_eq!(d.primary_start_timeout(), 12);
    }

    #[test]
    fn merge_precedence() {
        let dcs = DynamicConfig::from_dcs_json(
            r#"{"ttl":40,"postgresql":{"use_slots":false,"use_pg_rewind":false,"parameters":{"max_connections":300,"work_mem":"4MB","wal_level":"minimal","port":5433},"data_dir":"/x"}}"#,
        )
        .0;
        let mut local = crate::config::model::Postgresql::for_tests();
        local
            .parameters
            .insert("work_mem".into(), Value::from("8MB"));
        local
            .parameters
            .insert("shared_buffers".into(), Value::from("1GB"));
        local.use_pg_rewind = Some(true);
        let (e, warnings) = effective(Some(&dcs), Some(&local));
        assert_eq!(e.ttl(), 40);
        assert_eq!(e.loop_wait(), 10, "default");
        let pg = e.pg();
        let params = pg.parameters.unwrap();
        assert_eq!(params["max_connections"], 300, "dynamic beats default");
        assert_eq!(params["work_mem"], "8MB", "local beats dynamic");
        assert_eq!(params["shared_buffers"], "1GB");
        assert_eq!(
            params["wal_level"], "hot_standby",
            "refused value: default kept"
        );
        assert!(!params.contains_key("port"));
        assert_eq!(params["max_wal_senders"], 10, "cmdline default");
        assert_eq!(pg.use_pg_rewind, Some(true), "local beats dynamic");
        assert_eq!(pg.use_slots, Some(false), "use_slots is global only");
        assert!(!pg.extra.contains_key("data_dir"), "local-only key dropped");
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        // no DCS value: defaults only
        let (e, _) = effective(None, None);
        assert_eq!(e, DynamicConfig::defaults());
    }
}
