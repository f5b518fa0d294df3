//! The values Patroni keeps in the DCS, as Rust types: parsing and writing, no IO.
//!
//! Every value here may have been written by someone else (a real Patroni member, `patronictl`,
//! an operator with `etcdctl`), so parsing is lenient in exactly the ways Patroni is: legacy
//! forms parse, a malformed value becomes a [`Warning`] and is ignored, and nothing here ever
//! fails the caller. Unknown fields of a member are kept, so what another member wrote is never
//! dropped. Writing produces compact JSON with Patroni's field names and order
//! (`json.dumps(..., separators=(',', ':'))`), and `leader`/`initialize` as plain strings.
//! Facts: `shared/reference/patroni.md` §1 and Patroni's `patroni/dcs/__init__.py`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use super::keys::{KeyKind, Keys};

/// A value in the DCS that could not be used as it is. The key names where it is; the value
/// itself is never included (a legacy member value may carry a password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// One key-value pair as etcd returned it, copied out so the model does no IO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    /// Lease id the key is attached to, 0 for none.
    pub lease: i64,
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $var:ident => $s:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $var,)*
            /// A value this version does not know (kept verbatim, never an error).
            Other(String),
        }

        impl $name {
            /// The string Patroni writes.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$var => $s,)*
                    Self::Other(s) => s,
                }
            }

            /// Parse a string; unknown values become [`Self::Other`].
            pub fn parse(s: &str) -> Self {
                match s {
                    $($s => Self::$var,)*
                    other => Self::Other(other.to_string()),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum! {
    /// A member's `role` (`PostgresqlRole` in Patroni).
    Role {
        Primary => "primary",
        StandbyLeader => "standby_leader",
        Replica => "replica",
        Demoted => "demoted",
        Uninitialized => "uninitialized",
        Promoted => "promoted",
        /// Written by Patroni < 4.0 for the primary.
        Master => "master",
    }
}

impl Role {
    /// `primary` or the legacy `master`.
    pub fn is_primary(&self) -> bool {
        matches!(self, Role::Primary | Role::Master)
    }
}

string_enum! {
    /// A member's `state` (`PostgresqlState` in Patroni, in its order).
    State {
        InitializingNewCluster => "initializing new cluster",
        InitdbFailed => "initdb failed",
        RunningCustomBootstrap => "running custom bootstrap script",
        CustomBootstrapFailed => "custom bootstrap failed",
        CreatingReplica => "creating replica",
        Running => "running",
        Starting => "starting",
        StartingAfterCustomBootstrap => "starting after custom bootstrap",
        StartFailed => "start failed",
        Restarting => "restarting",
        RestartFailed => "restart failed",
        Stopping => "stopping",
        Stopped => "stopped",
        StopFailed => "stop failed",
        Crashed => "crashed",
    }
}

fn map_is_empty(m: &Map<String, Value>) -> bool {
    m.is_empty()
}

/// The value of `members/<name>` (built by `Ha.touch_member` in Patroni). Fields are in the
/// order Patroni writes them; `extra` keeps every field we do not model (and any modelled
/// field whose type was wrong) so a member written by someone else survives a round trip.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Member {
    /// `postgres://host:port/dbname`, no credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conn_url: Option<String>,
    /// `http(s)://host:port/patroni`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<State>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Patroni version of the writer; others compare it as dotted integers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_url: Option<String>,
    /// `false` on a new primary until its first CHECKPOINT after promote; replicas wait for it
    /// before pg_rewind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_after_promote: Option<bool>,
    /// Effective tags; written only when non-empty.
    #[serde(skip_serializing_if = "map_is_empty")]
    pub tags: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_restart: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_restart_reason: Option<Map<String, Value>>,
    /// WAL position in bytes (primary: flush LSN; replica: max(receive, replay)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xlog_location: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_lsn: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receive_lsn: Option<u64>,
    /// `streaming` or `in archive recovery`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication_state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_restart: Option<Map<String, Value>>,
    /// `true` while the cluster is paused (patronictl waits for it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause: Option<bool>,
    /// Everything else, preserved verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Member {
    /// Compact JSON exactly as Patroni writes it.
    pub fn to_json(&self) -> String {
        to_compact_json(self)
    }

    /// Parse a member value. Accepts a JSON object or the legacy
    /// `postgres://...?application_name=<api_url>` string (`Member.from_node`). Fields of the
    /// wrong type are kept in `extra` and reported in the returned list of problems. `Err` when
    /// the value is neither (Patroni then treats the member as having no data).
    pub fn parse(value: &str) -> Result<(Member, Vec<String>), String> {
        if value.starts_with("postgres") {
            let (conn_url, api_url) = parse_legacy_connection_string(value);
            let member = Member {
                conn_url: Some(conn_url),
                api_url,
                ..Member::default()
            };
            return Ok((member, Vec::new()));
        }
        let map = match serde_json::from_str::<Value>(value) {
            Ok(Value::Object(map)) => map,
            Ok(other) => return Err(format!("expected a JSON object, found {}", kind_of(&other))),
            Err(e) => return Err(format!("not JSON ({e})")),
        };
        let mut f = Fields::new(map);
        let mut member = Member {
            conn_url: f.take("conn_url", "a string", as_string),
            api_url: f.take("api_url", "a string", as_string),
            state: f.take("state", "a string", |v| v.as_str().map(State::parse)),
            role: f.take("role", "a string", |v| v.as_str().map(Role::parse)),
            version: f.take("version", "a string", as_string),
            proxy_url: f.take("proxy_url", "a string", as_string),
            checkpoint_after_promote: f.take(
                "checkpoint_after_promote",
                "a boolean",
                Value::as_bool,
            ),
            tags: f.take("tags", "an object", as_object).unwrap_or_default(),
            pending_restart: f.take("pending_restart", "a boolean", Value::as_bool),
            pending_restart_reason: f.take("pending_restart_reason", "an object", as_object),
            xlog_location: f.take("xlog_location", "an LSN integer", Value::as_u64),
            replay_lsn: f.take("replay_lsn", "an LSN integer", Value::as_u64),
            receive_lsn: f.take("receive_lsn", "an LSN integer", Value::as_u64),
            replication_state: f.take("replication_state", "a string", as_string),
            timeline: f.take("timeline", "an integer", Value::as_u64),
            scheduled_restart: f.take("scheduled_restart", "an object", as_object),
            pause: f.take("pause", "a boolean", Value::as_bool),
            extra: Map::new(),
        };
        // Patroni derives conn_url from the legacy `conn_kwargs` when conn_url is missing.
        if member.conn_url.is_none() {
            if let Some(Value::Object(kw)) = f.rest.get("conn_kwargs") {
                if let Some(host) = kw.get("host").and_then(Value::as_str) {
                    let port = kw.get("port").and_then(value_as_port).unwrap_or(5432);
                    member.conn_url = Some(format!("postgresql://{}:{port}", bracket_host(host)));
                }
            }
        }
        member.extra = f.rest;
        Ok((member, f.problems))
    }

    /// A tag's value, if set.
    pub fn tag(&self, name: &str) -> Option<&Value> {
        self.tags.get(name)
    }

    /// A boolean tag with Python truthiness (`nofailover`, `noloadbalance`, `clonefrom`,
    /// `nosync`, `nostream`): absent, `false`, `0`, `""` and `null` are false.
    pub fn tag_bool(&self, name: &str) -> bool {
        self.tags.get(name).is_some_and(truthy)
    }
}

/// Python's truthiness of a JSON value.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// The `leader` key: a plain member name on the holder's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    pub name: String,
    pub mod_revision: i64,
    /// The lease the key is attached to (Patroni's `session`).
    pub lease: i64,
}

/// One `members/<name>` key.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterMember {
    /// Basename of the key.
    pub name: String,
    pub mod_revision: i64,
    /// The lease the key is attached to; 0 for none.
    pub lease: i64,
    /// Parsed value; empty when the value was malformed (as in Patroni).
    pub data: Member,
}

/// The `config` key: dynamic configuration. The config module owns its typed form; here it
/// is the raw JSON object plus the revision needed for compare-and-swap writes.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// Always a JSON object (an empty one when the stored value was malformed).
    pub data: Value,
    /// etcd mod_revision of the key: pass it back to `write_config` for a CAS update. Kept
    /// even when the value was malformed, so a writer can replace it.
    pub mod_revision: i64,
}

/// The `failover` key: a requested switchover (`leader` set) or failover (`member` only).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Failover {
    /// Switchover source (current leader); `None` for a failover.
    pub leader: Option<String>,
    /// The candidate (written as `member`).
    pub member: Option<String>,
    /// ISO-8601 timestamp with time zone, verbatim.
    pub scheduled_at: Option<String>,
    /// etcd mod_revision (0 for a value not read from etcd).
    pub mod_revision: i64,
}

#[derive(Serialize)]
struct FailoverJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    leader: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    member: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scheduled_at: Option<&'a str>,
}

impl Failover {
    /// No leader and no candidate: nothing requested (`len(failover) == 0` in Patroni).
    pub fn is_empty(&self) -> bool {
        self.leader.is_none() && self.member.is_none()
    }

    /// Compact JSON with only the non-empty fields (`{}` clears a request).
    pub fn to_json(&self) -> String {
        fn nonempty(o: &Option<String>) -> Option<&str> {
            o.as_deref().filter(|s| !s.is_empty())
        }
        to_compact_json(&FailoverJson {
            leader: nonempty(&self.leader),
            member: nonempty(&self.member),
            scheduled_at: nonempty(&self.scheduled_at),
        })
    }

    /// Parse a JSON object or the legacy `leader:candidate` string (`Failover.from_node`).
    pub fn parse(value: &str, mod_revision: i64) -> (Failover, Vec<String>) {
        let mut out = Failover {
            mod_revision,
            ..Failover::default()
        };
        let mut problems = Vec::new();
        if value.is_empty() {
            return (out, problems);
        }
        match serde_json::from_str::<Value>(value) {
            Ok(Value::Object(map)) => {
                let mut f = Fields::new(map);
                out.leader = nonempty(f.take("leader", "a string", as_string));
                out.member = nonempty(f.take("member", "a string", as_string));
                out.scheduled_at = nonempty(f.take("scheduled_at", "a string", as_string));
                problems = f.problems;
            }
            Ok(other) => problems.push(format!(
                "expected a JSON object, found {}; treated as empty",
                kind_of(&other)
            )),
            Err(_) => {
                // Legacy "leader:candidate".
                let mut parts = value.split(':').map(str::trim);
                out.leader = nonempty(parts.next().map(str::to_string));
                out.member = nonempty(parts.next().map(str::to_string));
            }
        }
        (out, problems)
    }
}

/// The `sync` key: which standbys are synchronous, managed by the leader.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncState {
    /// The leader that wrote it; `None` means synchronous replication is not active.
    pub leader: Option<String>,
    /// Comma-joined sorted standby names, verbatim.
    pub sync_standby: Option<String>,
    /// Quorum (meaningful in `synchronous_mode: quorum` only).
    pub quorum: u64,
    /// etcd mod_revision, `None` when the key is absent.
    pub mod_revision: Option<i64>,
}

#[derive(Serialize)]
struct SyncJson<'a> {
    leader: Option<&'a str>,
    quorum: u64,
    sync_standby: Option<&'a str>,
}

impl SyncState {
    /// A state as the leader writes it: standbys sorted and comma-joined (`null` when none).
    pub fn new<I, S>(leader: &str, standbys: I, quorum: u64) -> SyncState
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut names: Vec<String> = standbys.into_iter().map(Into::into).collect();
        names.sort();
        SyncState {
            leader: Some(leader.to_string()),
            sync_standby: (!names.is_empty()).then(|| names.join(",")),
            quorum,
            mod_revision: None,
        }
    }

    /// Compact JSON: `{"leader":..,"quorum":..,"sync_standby":..}`.
    pub fn to_json(&self) -> String {
        to_compact_json(&SyncJson {
            leader: self.leader.as_deref(),
            quorum: self.quorum,
            sync_standby: self.sync_standby.as_deref(),
        })
    }

    /// Parse as `SyncState.from_node`: anything but an object is the empty state.
    pub fn parse(value: &str, mod_revision: Option<i64>) -> (SyncState, Vec<String>) {
        let mut out = SyncState {
            mod_revision,
            ..SyncState::default()
        };
        let mut problems = Vec::new();
        let map = match serde_json::from_str::<Value>(value) {
            Ok(Value::Object(map)) => map,
            Ok(other) => {
                problems.push(format!(
                    "expected a JSON object, found {}; treated as empty",
                    kind_of(&other)
                ));
                return (out, problems);
            }
            Err(e) => {
                problems.push(format!("not JSON ({e}); treated as empty"));
                return (out, problems);
            }
        };
        let mut f = Fields::new(map);
        out.leader = nonempty(f.take("leader", "a string", as_string));
        out.sync_standby = f.take("sync_standby", "a string", as_string);
        let quorum = f.take("quorum", "an integer", value_as_int);
        // Patroni: int(quorum) if leader and quorum else 0.
        out.quorum = if out.leader.is_some() {
            quorum.unwrap_or(0)
        } else {
            0
        };
        (out, f.problems)
    }

    /// No leader: synchronous replication not active.
    pub fn is_empty(&self) -> bool {
        self.leader.is_none()
    }

    /// The synchronous standbys (empty when the state is empty).
    pub fn voters(&self) -> Vec<&str> {
        match (&self.leader, &self.sync_standby) {
            (Some(_), Some(s)) => split_names(s),
            _ => Vec::new(),
        }
    }

    /// Leader followed by the voters.
    pub fn members(&self) -> Vec<&str> {
        match &self.leader {
            Some(l) => std::iter::once(l.as_str()).chain(self.voters()).collect(),
            None => Vec::new(),
        }
    }

    /// Is `name` listed (case-insensitive like PostgreSQL's synchronous_standby_names)?
    /// With `check_leader` the leader counts too.
    pub fn matches(&self, name: &str, check_leader: bool) -> bool {
        if name.is_empty() || self.is_empty() {
            return false;
        }
        let lname = name.to_lowercase();
        self.voters().iter().any(|v| v.to_lowercase() == lname)
            || (check_leader && self.leader_matches(name))
    }

    /// Is `name` the leader recorded here (case-insensitive)?
    pub fn leader_matches(&self, name: &str) -> bool {
        !name.is_empty()
            && self
                .leader
                .as_deref()
                .is_some_and(|l| l.to_lowercase() == name.to_lowercase())
    }
}

fn split_names(s: &str) -> Vec<&str> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// The `status` key (or the legacy `optime/leader`): the leader's last known WAL position
/// and the slots it keeps.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Status {
    /// Last known leader LSN in bytes (`optime`), 0 when unknown.
    pub optime: u64,
    /// Permanent and member slots on the primary: name → LSN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slots: Option<BTreeMap<String, u64>>,
    /// Member slots to keep for absent members.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retain_slots: Vec<String>,
}

impl Status {
    /// Only the optime.
    pub fn with_optime(optime: u64) -> Status {
        Status {
            optime,
            ..Status::default()
        }
    }

    /// Compact JSON: `{"optime":..,"slots":{..},"retain_slots":[..]}`, absent parts left out.
    pub fn to_json(&self) -> String {
        to_compact_json(self)
    }

    /// Parse as `Status.from_node`: an object, or a plain integer (legacy `optime/leader` and
    /// pre-2.1 `status`). `slots`/`retain_slots` may themselves be JSON strings.
    pub fn parse(value: &str) -> (Status, Vec<String>) {
        let mut problems = Vec::new();
        let parsed = match serde_json::from_str::<Value>(value) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("not JSON ({e}); treated as empty"));
                return (Status::default(), problems);
            }
        };
        let map = match parsed {
            Value::Number(_) => {
                return match value_as_int(&parsed) {
                    Some(n) => (Status::with_optime(n), problems),
                    None => {
                        problems.push("optime is not a non-negative integer".into());
                        (Status::default(), problems)
                    }
                };
            }
            Value::Object(map) => map,
            other => {
                problems.push(format!(
                    "expected a JSON object, found {}; treated as empty",
                    kind_of(&other)
                ));
                return (Status::default(), problems);
            }
        };
        let mut out = Status::default();
        match map.get("optime") {
            None | Some(Value::Null) => {}
            Some(v) => match value_as_int(v) {
                Some(n) => out.optime = n,
                None => problems.push("field `optime` is not an integer; using 0".into()),
            },
        }
        match map.get("slots").map(json_in_string) {
            None | Some(Value::Null) => {}
            Some(Value::Object(slots)) => {
                let mut parsed = BTreeMap::new();
                for (name, lsn) in slots {
                    match value_as_int(&lsn) {
                        Some(n) => {
                            parsed.insert(name, n);
                        }
                        None => problems.push(format!("slot `{name}` has no integer LSN; ignored")),
                    }
                }
                out.slots = Some(parsed);
            }
            Some(other) => problems.push(format!(
                "field `slots` is {}, not an object; ignored",
                kind_of(&other)
            )),
        }
        match map.get("retain_slots").map(json_in_string) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for item in items {
                    match item {
                        Value::String(s) => out.retain_slots.push(s),
                        other => problems.push(format!(
                            "retain_slots entry is {}, not a string; ignored",
                            kind_of(&other)
                        )),
                    }
                }
            }
            Some(other) => problems.push(format!(
                "field `retain_slots` is {}, not a list; ignored",
                kind_of(&other)
            )),
        }
        (out, problems)
    }
}

/// One line of the `history` key: `[timeline, switch_lsn, reason, timestamp?, new_leader?]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The timeline that ended at `lsn`.
    pub timeline: u64,
    pub lsn: u64,
    pub reason: String,
    /// ISO-8601 time of the promotion (absent on old entries).
    pub timestamp: Option<String>,
    /// Who was promoted (absent on old entries).
    pub new_leader: Option<String>,
}

impl Serialize for HistoryEntry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut line: Vec<Value> = vec![
            self.timeline.into(),
            self.lsn.into(),
            self.reason.clone().into(),
        ];
        if let Some(ts) = &self.timestamp {
            line.push(ts.clone().into());
            if let Some(l) = &self.new_leader {
                line.push(l.clone().into());
            }
        }
        line.serialize(s)
    }
}

/// The `history` key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct History {
    pub entries: Vec<HistoryEntry>,
    /// etcd mod_revision (0 for a value not read from etcd).
    pub mod_revision: i64,
}

impl History {
    /// Compact JSON list of lists (`[]` on timeline 1).
    pub fn to_json(&self) -> String {
        to_compact_json(&self.entries)
    }

    /// Parse as `TimelineHistory.from_node`; malformed lines are skipped with a problem each.
    pub fn parse(value: &str, mod_revision: i64) -> (History, Vec<String>) {
        let mut out = History {
            entries: Vec::new(),
            mod_revision,
        };
        let mut problems = Vec::new();
        let lines = match serde_json::from_str::<Value>(value) {
            Ok(Value::Array(lines)) => lines,
            Ok(other) => {
                problems.push(format!(
                    "expected a JSON list, found {}; treated as empty",
                    kind_of(&other)
                ));
                return (out, problems);
            }
            Err(e) => {
                problems.push(format!("not JSON ({e}); treated as empty"));
                return (out, problems);
            }
        };
        for (i, line) in lines.into_iter().enumerate() {
            match parse_history_line(&line) {
                Some(entry) => out.entries.push(entry),
                None => problems.push(format!(
                    "line {i} is not [timeline, lsn, reason, timestamp?, new_leader?]; ignored"
                )),
            }
        }
        (out, problems)
    }
}

fn parse_history_line(line: &Value) -> Option<HistoryEntry> {
    let items = line.as_array()?;
    if !(3..=5).contains(&items.len()) {
        return None;
    }
    let opt_str = |i: usize| match items.get(i) {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(_) => None,
    };
    Some(HistoryEntry {
        timeline: items[0].as_u64()?,
        lsn: items[1].as_u64()?,
        reason: items[2].as_str()?.to_string(),
        timestamp: opt_str(3)?,
        new_leader: opt_str(4)?,
    })
}

/// A snapshot of everything Patroni keeps for one cluster (`Cluster` in Patroni).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Cluster {
    /// `initialize`: `Some("")` while a bootstrap is in progress, then the system identifier.
    pub initialize: Option<String>,
    pub config: Option<ClusterConfig>,
    pub leader: Option<Leader>,
    /// Sorted by name.
    pub members: Vec<ClusterMember>,
    pub failover: Option<Failover>,
    /// Empty state when the key is absent or malformed.
    pub sync: SyncState,
    /// From `status`, else the legacy `optime/leader`, else empty.
    pub status: Status,
    pub history: Option<History>,
    /// `{member: api_url}` maintained by the leader in failsafe mode.
    pub failsafe: Option<BTreeMap<String, String>>,
    /// etcd revision this snapshot reflects (0 when built from loose key-values).
    pub revision: i64,
}

/// Which parts of a [`Cluster`] differ between two snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Changes {
    pub initialize: bool,
    pub config: bool,
    pub leader: bool,
    pub members: bool,
    pub failover: bool,
    pub sync: bool,
    pub status: bool,
    pub history: bool,
    pub failsafe: bool,
}

impl Changes {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        *self == Changes::default()
    }
}

impl Cluster {
    /// Build a snapshot from the key-values under `keys.prefix()` as `Etcd3._cluster_from_nodes`
    /// does. Malformed values become warnings and are ignored; this never fails.
    pub fn from_kvs(keys: &Keys, kvs: &[Kv]) -> (Cluster, Vec<Warning>) {
        let mut c = Cluster::default();
        let mut warnings = Vec::new();
        let mut legacy_optime: Option<&Kv> = None;
        let mut status_kv: Option<&Kv> = None;
        let mut warn = |key: &str, problems: Vec<String>| {
            warnings.extend(problems.into_iter().map(|message| Warning {
                key: key.to_string(),
                message,
            }));
        };
        for kv in kvs {
            let Some(kind) = keys.classify(&kv.key) else {
                continue;
            };
            if kind == KeyKind::Other {
                continue;
            }
            let value = match std::str::from_utf8(&kv.value) {
                Ok(v) => v,
                Err(_) => {
                    warn(&kv.key, vec!["value is not UTF-8; ignored".into()]);
                    continue;
                }
            };
            match kind {
                KeyKind::Initialize => c.initialize = Some(value.to_string()),
                KeyKind::Config => {
                    let data = match serde_json::from_str::<Value>(value) {
                        Ok(v @ Value::Object(_)) => v,
                        Ok(other) => {
                            warn(
                                &kv.key,
                                vec![format!(
                                    "expected a JSON object, found {}; using an empty configuration",
                                    kind_of(&other)
                                )],
                            );
                            Value::Object(Map::new())
                        }
                        Err(e) => {
                            warn(
                                &kv.key,
                                vec![format!("not JSON ({e}); using an empty configuration")],
                            );
                            Value::Object(Map::new())
                        }
                    };
                    c.config = Some(ClusterConfig {
                        data,
                        mod_revision: kv.mod_revision,
                    });
                }
                KeyKind::Leader => {
                    if value.is_empty() {
                        warn(
                            &kv.key,
                            vec!["empty leader name: the lock counts as free".into()],
                        );
                    }
                    c.leader = Some(Leader {
                        name: value.to_string(),
                        mod_revision: kv.mod_revision,
                        lease: kv.lease,
                    });
                }
                KeyKind::Member(name) => {
                    let data = match Member::parse(value) {
                        Ok((m, problems)) => {
                            warn(&kv.key, problems);
                            m
                        }
                        Err(e) => {
                            warn(&kv.key, vec![format!("{e}; member has no data")]);
                            Member::default()
                        }
                    };
                    c.members.push(ClusterMember {
                        name: name.to_string(),
                        mod_revision: kv.mod_revision,
                        lease: kv.lease,
                        data,
                    });
                }
                KeyKind::Failover => {
                    let (f, problems) = Failover::parse(value, kv.mod_revision);
                    warn(&kv.key, problems);
                    c.failover = Some(f);
                }
                KeyKind::Sync => {
                    let (s, problems) = SyncState::parse(value, Some(kv.mod_revision));
                    warn(&kv.key, problems);
                    c.sync = s;
                }
                KeyKind::Status => status_kv = Some(kv),
                KeyKind::LeaderOptime => legacy_optime = Some(kv),
                KeyKind::History => {
                    let (h, problems) = History::parse(value, kv.mod_revision);
                    warn(&kv.key, problems);
                    c.history = Some(h);
                }
                KeyKind::Failsafe => match serde_json::from_str::<Value>(value) {
                    Ok(Value::Object(map)) => {
                        let mut out = BTreeMap::new();
                        for (name, url) in map {
                            match url {
                                Value::String(u) => {
                                    out.insert(name, u);
                                }
                                other => warn(
                                    &kv.key,
                                    vec![format!(
                                        "api_url of `{name}` is {}, not a string; ignored",
                                        kind_of(&other)
                                    )],
                                ),
                            }
                        }
                        c.failsafe = Some(out);
                    }
                    Ok(other) => warn(
                        &kv.key,
                        vec![format!(
                            "expected a JSON object, found {}; ignored",
                            kind_of(&other)
                        )],
                    ),
                    Err(e) => warn(&kv.key, vec![format!("not JSON ({e}); ignored")]),
                },
                KeyKind::Other => {}
            }
        }
        // `status` wins; the legacy `optime/leader` is the fallback.
        if let Some(kv) = status_kv.or(legacy_optime) {
            let value = String::from_utf8_lossy(&kv.value);
            let (s, problems) = Status::parse(&value);
            warn(&kv.key, problems);
            c.status = s;
        }
        c.members.sort_by(|a, b| a.name.cmp(&b.name));
        (c, warnings)
    }

    /// The member entry for `name`.
    pub fn member(&self, name: &str) -> Option<&ClusterMember> {
        self.members.iter().find(|m| m.name == name)
    }

    /// The leader's member entry, if both exist.
    pub fn leader_member(&self) -> Option<&ClusterMember> {
        self.leader.as_ref().and_then(|l| self.member(&l.name))
    }

    /// No usable leader (absent or empty name), as `Cluster.is_unlocked`.
    pub fn is_unlocked(&self) -> bool {
        self.leader.as_ref().is_none_or(|l| l.name.is_empty())
    }

    /// The leader's name when the lock is held.
    pub fn leader_name(&self) -> Option<&str> {
        self.leader
            .as_ref()
            .map(|l| l.name.as_str())
            .filter(|n| !n.is_empty())
    }

    /// The cluster's system identifier once bootstrap has finished.
    pub fn sysid(&self) -> Option<&str> {
        self.initialize.as_deref().filter(|s| !s.is_empty())
    }

    /// Someone won the initialize race and has not finished bootstrapping.
    pub fn is_initializing(&self) -> bool {
        self.initialize.as_deref() == Some("")
    }

    /// The cluster is paused (`pause: true` in the dynamic configuration).
    pub fn is_paused(&self) -> bool {
        self.config
            .as_ref()
            .and_then(|c| c.data.get("pause"))
            .is_some_and(truthy)
    }

    /// What differs from `older`. A supervisor keeps the last snapshot it acted on and asks
    /// this after a watch notification (members change on every HA cycle of every member;
    /// leader, config, failover and status are what should wake the loop early).
    pub fn changes_since(&self, older: &Cluster) -> Changes {
        Changes {
            initialize: self.initialize != older.initialize,
            config: self.config != older.config,
            leader: self.leader != older.leader,
            members: self.members != older.members,
            failover: self.failover != older.failover,
            sync: self.sync != older.sync,
            status: self.status != older.status,
            history: self.history != older.history,
            failsafe: self.failsafe != older.failsafe,
        }
    }
}

/// Failsafe topology as the leader writes it.
pub fn failsafe_to_json(members: &BTreeMap<String, String>) -> String {
    to_compact_json(members)
}

fn to_compact_json<T: Serialize + ?Sized>(v: &T) -> String {
    // Serialising these types cannot fail: string keys only, no non-finite floats.
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_string())
}

/// Takes modelled fields out of a JSON object; a field of the wrong type stays in `rest`
/// and is reported. `null` counts as absent (and is kept in `rest`).
struct Fields {
    rest: Map<String, Value>,
    problems: Vec<String>,
}

impl Fields {
    fn new(rest: Map<String, Value>) -> Fields {
        Fields {
            rest,
            problems: Vec::new(),
        }
    }

    fn take<T>(&mut self, key: &str, what: &str, conv: impl Fn(&Value) -> Option<T>) -> Option<T> {
        let v = self.rest.get(key)?;
        if v.is_null() {
            return None;
        }
        match conv(v) {
            Some(t) => {
                self.rest.remove(key);
                Some(t)
            }
            None => {
                self.problems.push(format!(
                    "field `{key}` is {}, not {what}; ignored",
                    kind_of(v)
                ));
                None
            }
        }
    }
}

fn as_string(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

fn as_object(v: &Value) -> Option<Map<String, Value>> {
    v.as_object().cloned()
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// Python's `int(x)` for the shapes Patroni writes: a non-negative integer, an integral
/// float, or a string of digits.
fn value_as_int(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn value_as_port(v: &Value) -> Option<u16> {
    value_as_int(v).and_then(|n| u16::try_from(n).ok())
}

/// If `v` is a string holding JSON, the parsed value; otherwise `v` itself.
fn json_in_string(v: &Value) -> Value {
    match v {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| v.clone()),
        _ => v.clone(),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn bracket_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Split a legacy member value `postgres://u:p@host:port/db?application_name=<api_url>` into
/// the connection URL without the query and the API URL (`parse_connection_string`).
fn parse_legacy_connection_string(value: &str) -> (String, Option<String>) {
    let (before_fragment, fragment) = match value.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (value, None),
    };
    let (base, query) = match before_fragment.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (before_fragment, None),
    };
    let mut conn_url = base.to_string();
    if let Some(f) = fragment {
        conn_url.push('#');
        conn_url.push_str(f);
    }
    let api_url = query.and_then(|q| {
        q.split(['&', ';']).find_map(|pair| {
            let (name, val) = pair.split_once('=')?;
            (percent_decode(name) == "application_name").then(|| percent_decode(val))
        })
    });
    (conn_url, api_url)
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte.
fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let decoded = bytes
                    .get(i + 1)
                    .and_then(|h| hex(*h))
                    .zip(bytes.get(i + 2).and_then(|l| hex(*l)));
                match decoded {
                    Some((h, l)) => {
                        out.push(h * 16 + l);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The replica example from the reference (§1.2), as a real Patroni 4.1 member writes it.
    const REPLICA: &str = r#"{"conn_url":"postgres://10.0.0.2:5432/postgres","api_url":"http://10.0.0.2:8008/patroni","state":"running","role":"replica","version":"4.1.4","xlog_location":67419744,"replay_lsn":67419744,"receive_lsn":67419744,"replication_state":"streaming","timeline":1,"tags":{"clonefrom":true}}"#;

    #[test]
    fn replica_member_parses() {
        let (m, problems) = Member::parse(REPLICA).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            m.conn_url.as_deref(),
            Some("postgres://10.0.0.2:5432/postgres")
        );
        assert_eq!(m.api_url.as_deref(), Some("http://10.0.0.2:8008/patroni"));
        assert_eq!(m.state, Some(State::Running));
        assert_eq!(m.role, Some(Role::Replica));
        assert_eq!(m.version.as_deref(), Some("4.1.4"));
        assert_eq!(m.xlog_location, Some(67419744));
        assert_eq!(m.replay_lsn, Some(67419744));
        assert_eq!(m.receive_lsn, Some(67419744));
        assert_eq!(m.replication_state.as_deref(), Some("streaming"));
        assert_eq!(m.timeline, Some(1));
        assert!(m.tag_bool("clonefrom"));
        assert!(!m.tag_bool("nofailover"));
        assert!(m.extra.is_empty());
    }

    #[test]
    fn member_written_in_patroni_field_order() {
        // Patroni's touch_member order: conn_url, api_url, state, role, version, proxy_url,
        // checkpoint_after_promote, tags, pending_restart(_reason), xlog_location, replay_lsn,
        // receive_lsn, replication_state, timeline, scheduled_restart, pause.
        let mut tags = Map::new();
        tags.insert("clonefrom".into(), json!(true));
        let m = Member {
            conn_url: Some("postgres://10.0.0.2:5432/postgres".into()),
            api_url: Some("http://10.0.0.2:8008/patroni".into()),
            state: Some(State::Running),
            role: Some(Role::Replica),
            version: Some("4.1.4".into()),
            tags,
            xlog_location: Some(67419744),
            replay_lsn: Some(67419744),
            receive_lsn: Some(67419744),
            replication_state: Some("streaming".into()),
            timeline: Some(1),
            ..Member::default()
        };
        // Patroni writes tags before the LSNs; the reference example lists them last, so
        // compare as JSON values and check our exact text separately.
        let ours: Value = serde_json::from_str(&m.to_json()).unwrap();
        let theirs: Value = serde_json::from_str(REPLICA).unwrap();
        assert_eq!(ours, theirs);
        assert_eq!(
            m.to_json(),
            r#"{"conn_url":"postgres://10.0.0.2:5432/postgres","api_url":"http://10.0.0.2:8008/patroni","state":"running","role":"replica","version":"4.1.4","tags":{"clonefrom":true},"xlog_location":67419744,"replay_lsn":67419744,"receive_lsn":67419744,"replication_state":"streaming","timeline":1}"#
        );
    }

    #[test]
    fn primary_member_round_trips_with_unknown_fields() {
        let v = r#"{"conn_url":"postgres://h:5432/postgres","api_url":"http://h:8008/patroni","state":"running","role":"primary","version":"4.1.4","checkpoint_after_promote":false,"pending_restart":true,"pending_restart_reason":{"max_connections":{"new_value":"256","old_value":"100"}},"xlog_location":100,"timeline":2,"pause":true,"future_field":{"x":[1,2]}}"#;
        let (m, problems) = Member::parse(v).unwrap();
        assert!(problems.is_empty());
        assert_eq!(m.role, Some(Role::Primary));
        assert!(m.role.as_ref().unwrap().is_primary());
        assert_eq!(m.checkpoint_after_promote, Some(false));
        assert_eq!(m.pending_restart, Some(true));
        assert_eq!(m.pause, Some(true));
        assert_eq!(m.extra.get("future_field"), Some(&json!({"x": [1, 2]})));
        assert_eq!(m.to_json(), v);
    }

    #[test]
    fn unknown_role_and_state_are_kept() {
        let (m, _) = Member::parse(r#"{"role":"master","state":"some new state"}"#).unwrap();
        assert_eq!(m.role, Some(Role::Master));
        assert!(m.role.as_ref().unwrap().is_primary());
        assert_eq!(m.state, Some(State::Other("some new state".into())));
        assert_eq!(m.to_json(), r#"{"state":"some new state","role":"master"}"#);
        assert_eq!(State::parse("creating replica"), State::CreatingReplica);
        assert_eq!(State::Crashed.as_str(), "crashed");
        assert_eq!(Role::parse("standby_leader"), Role::StandbyLeader);
    }

    #[test]
    fn wrong_typed_fields_are_reported_and_preserved() {
        let v = r#"{"conn_url":"postgres://h:5432/postgres","xlog_location":"12AB","timeline":-1,"tags":[1],"pause":null}"#;
        let (m, problems) = Member::parse(v).unwrap();
        assert_eq!(m.xlog_location, None);
        assert_eq!(m.timeline, None);
        assert!(m.tags.is_empty());
        assert_eq!(m.pause, None);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("`xlog_location`")));
        // Nothing another member wrote is dropped.
        let back: Value = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(v).unwrap());
    }

    #[test]
    fn legacy_member_forms() {
        let (m, _) = Member::parse(
            "postgres://repl:secret@10.0.0.1:5432/postgres?application_name=http%3A%2F%2F10.0.0.1%3A8008%2Fpatroni",
        )
        .unwrap();
        assert_eq!(
            m.conn_url.as_deref(),
            Some("postgres://repl:secret@10.0.0.1:5432/postgres")
        );
        assert_eq!(m.api_url.as_deref(), Some("http://10.0.0.1:8008/patroni"));

        let (m, _) = Member::parse(r#"{"conn_kwargs":{"host":"10.0.0.3","port":5433}}"#).unwrap();
        assert_eq!(m.conn_url.as_deref(), Some("postgresql://10.0.0.3:5433"));
        assert!(m.extra.contains_key("conn_kwargs"));
    }

    #[test]
    fn non_object_members_are_errors() {
        assert!(Member::parse("[1,2]").unwrap_err().contains("a list"));
        assert!(Member::parse("{").unwrap_err().contains("not JSON"));
        assert!(Member::parse("").is_err());
    }

    #[test]
    fn failover_forms() {
        let (f, p) = Failover::parse(
            r#"{"leader":"a","member":"b","scheduled_at":"2016-01-14T10:09:57.1394Z"}"#,
            7,
        );
        assert!(p.is_empty());
        assert_eq!(f.leader.as_deref(), Some("a"));
        assert_eq!(f.member.as_deref(), Some("b"));
        assert_eq!(f.scheduled_at.as_deref(), Some("2016-01-14T10:09:57.1394Z"));
        assert_eq!(f.mod_revision, 7);
        assert_eq!(
            f.to_json(),
            r#"{"leader":"a","member":"b","scheduled_at":"2016-01-14T10:09:57.1394Z"}"#
        );

        // Legacy "leader:candidate" and a bare name.
        let (f, p) = Failover::parse("abc:def", 1);
        assert!(p.is_empty());
        assert_eq!(
            (f.leader.as_deref(), f.member.as_deref()),
            (Some("abc"), Some("def"))
        );
        let (f, _) = Failover::parse("abc", 1);
        assert_eq!((f.leader.as_deref(), f.member), (Some("abc"), None));

        // Cleared and malformed values are empty.
        for v in ["{}", "", "null", "[]", "5"] {
            let (f, _) = Failover::parse(v, 1);
            assert!(f.is_empty(), "{v}");
        }
        let (_, p) = Failover::parse("[]", 1);
        assert_eq!(p.len(), 1);
        let (f, p) = Failover::parse(r#"{"leader":5,"member":"b"}"#, 1);
        assert_eq!((f.leader, f.member.as_deref()), (None, Some("b")));
        assert_eq!(p.len(), 1);

        // Only non-empty fields are written; the empty request is `{}`.
        assert_eq!(Failover::default().to_json(), "{}");
        let f = Failover {
            member: Some("b".into()),
            leader: Some(String::new()),
            ..Failover::default()
        };
        assert_eq!(f.to_json(), r#"{"member":"b"}"#);
    }

    #[test]
    fn sync_state_forms() {
        let s = SyncState::new("node0", ["node2", "node1"], 0);
        assert_eq!(
            s.to_json(),
            r#"{"leader":"node0","quorum":0,"sync_standby":"node1,node2"}"#
        );
        let none: [&str; 0] = [];
        assert_eq!(
            SyncState::new("node0", none, 0).to_json(),
            r#"{"leader":"node0","quorum":0,"sync_standby":null}"#
        );

        let (s, p) = SyncState::parse(
            r#"{"leader":"node0","quorum":"1","sync_standby":"Node1, node2"}"#,
            Some(3),
        );
        assert!(p.is_empty());
        assert_eq!(s.quorum, 1);
        assert_eq!(s.mod_revision, Some(3));
        assert_eq!(s.voters(), vec!["Node1", "node2"]);
        assert_eq!(s.members(), vec!["node0", "Node1", "node2"]);
        assert!(s.matches("node1", false));
        assert!(s.matches("NODE2", false));
        assert!(!s.matches("node0", false));
        assert!(s.matches("NODE0", true));
        assert!(s.leader_matches("Node0"));
        assert!(!s.matches("", true));

        // No leader: not active, quorum ignored.
        let (s, _) = SyncState::parse(r#"{"quorum":2,"sync_standby":"a"}"#, Some(1));
        assert!(s.is_empty());
        assert_eq!(s.quorum, 0);
        assert!(s.voters().is_empty());
        assert!(!s.matches("a", false));

        for v in ["{", "[]", "null", "\"x\""] {
            let (s, p) = SyncState::parse(v, Some(1));
            assert!(s.is_empty(), "{v}");
            assert_eq!(p.len(), 1, "{v}");
        }
    }

    #[test]
    fn status_forms() {
        let (s, p) = Status::parse(
            r#"{"optime":67419744,"slots":{"node2":67419744,"perm":100},"retain_slots":["node2","node3"]}"#,
        );
        assert!(p.is_empty());
        assert_eq!(s.optime, 67419744);
        assert_eq!(s.slots.as_ref().unwrap()["perm"], 100);
        assert_eq!(s.retain_slots, vec!["node2", "node3"]);
        assert_eq!(
            s.to_json(),
            r#"{"optime":67419744,"slots":{"node2":67419744,"perm":100},"retain_slots":["node2","node3"]}"#
        );
        assert_eq!(Status::with_optime(5).to_json(), r#"{"optime":5}"#);

        // Legacy plain integer (status before 2.1 and optime/leader).
        let (s, p) = Status::parse("12345");
        assert!(p.is_empty());
        assert_eq!(s, Status::with_optime(12345));

        // slots and retain_slots as JSON strings; optime as a numeric string.
        let (s, p) =
            Status::parse(r#"{"optime":"77","slots":"{\"a\":1}","retain_slots":"[\"a\"]"}"#);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(s.optime, 77);
        assert_eq!(s.slots.unwrap()["a"], 1);
        assert_eq!(s.retain_slots, vec!["a"]);

        let (s, p) = Status::parse(r#"{"optime":"x","slots":[1],"retain_slots":{}}"#);
        assert_eq!(s, Status::default());
        assert_eq!(p.len(), 3);
        let (s, p) = Status::parse("not json");
        assert_eq!(s, Status::default());
        assert_eq!(p.len(), 1);
        let (_, p) = Status::parse("-5");
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn history_forms() {
        let v = r#"[[1,25165984,"no recovery target specified"],[2,50331808,"no recovery target specified","2024-05-01T10:00:00.123456+00:00","node2"]]"#;
        let (h, p) = History::parse(v, 9);
        assert!(p.is_empty());
        assert_eq!(h.mod_revision, 9);
        assert_eq!(h.entries.len(), 2);
        assert_eq!(h.entries[0].timeline, 1);
        assert_eq!(h.entries[0].timestamp, None);
        assert_eq!(h.entries[1].new_leader.as_deref(), Some("node2"));
        assert_eq!(h.to_json(), v);
        assert_eq!(History::default().to_json(), "[]");

        let (h, p) = History::parse(r#"[[1,2],[1,2,"r"],"x",[1,"2","r"]]"#, 1);
        assert_eq!(h.entries.len(), 1);
        assert_eq!(p.len(), 3);
        let (h, p) = History::parse("{}", 1);
        assert!(h.entries.is_empty());
        assert_eq!(p.len(), 1);
    }

    fn kv(key: &str, value: &str, rev: i64, lease: i64) -> Kv {
        Kv {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            create_revision: rev,
            mod_revision: rev,
            lease,
        }
    }

    #[test]
    fn cluster_from_kvs() {
        let keys = Keys::new("/manning", "enterprises");
        let p = "/manning/enterprises/";
        let kvs = vec![
            kv(&format!("{p}initialize"), "7300000000000000001", 2, 0),
            kv(&format!("{p}config"), r#"{"ttl":20,"loop_wait":2}"#, 3, 0),
            kv(&format!("{p}leader"), "node-b", 5, 77),
            kv(
                &format!("{p}members/node-b"),
                REPLICA.replace("replica", "primary").as_str(),
                6,
                77,
            ),
            kv(&format!("{p}members/node-a"), REPLICA, 7, 78),
            kv(&format!("{p}members/nested/x"), "{}", 8, 0),
            kv(&format!("{p}status"), r#"{"optime":99}"#, 9, 0),
            kv(&format!("{p}optime/leader"), "11", 10, 0),
            kv(&format!("{p}history"), "[]", 11, 0),
            kv(&format!("{p}failover"), r#"{"leader":"node-b"}"#, 12, 0),
            kv(
                &format!("{p}sync"),
                r#"{"leader":"node-b","sync_standby":"node-a","quorum":0}"#,
                13,
                0,
            ),
            kv(
                &format!("{p}failsafe"),
                r#"{"node-a":"http://a/patroni"}"#,
                14,
                0,
            ),
            kv(&format!("{p}1/leader"), "citus", 15, 0),
            kv("/manning/enterprises2/leader", "other", 16, 0),
        ];
        let (c, w) = Cluster::from_kvs(&keys, &kvs);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.sysid(), Some("7300000000000000001"));
        assert!(!c.is_initializing());
        let cfg = c.config.as_ref().unwrap();
        assert_eq!(cfg.data["ttl"], 20);
        assert_eq!(cfg.mod_revision, 3);
        assert_eq!(
            c.leader,
            Some(Leader {
                name: "node-b".into(),
                mod_revision: 5,
                lease: 77
            })
        );
        assert_eq!(c.leader_name(), Some("node-b"));
        assert!(!c.is_unlocked());
        let names: Vec<&str> = c.members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, vec!["node-a", "node-b"]);
        assert_eq!(c.leader_member().unwrap().data.role, Some(Role::Primary));
        assert_eq!(c.member("node-a").unwrap().lease, 78);
        // status wins over the legacy optime/leader.
        assert_eq!(c.status.optime, 99);
        assert!(c.history.as_ref().unwrap().entries.is_empty());
        assert_eq!(
            c.failover.as_ref().unwrap().leader.as_deref(),
            Some("node-b")
        );
        assert_eq!(c.sync.voters(), vec!["node-a"]);
        assert_eq!(c.sync.mod_revision, Some(13));
        assert_eq!(c.failsafe.as_ref().unwrap()["node-a"], "http://a/patroni");
        assert!(!c.is_paused());
    }

    #[test]
    fn legacy_optime_is_the_fallback_and_empty_initialize_means_in_progress() {
        let keys = Keys::new("/service", "c");
        let (c, w) = Cluster::from_kvs(
            &keys,
            &[
                kv("/service/c/optime/leader", "4242", 1, 0),
                kv("/service/c/initialize", "", 2, 0),
                kv("/service/c/config", r#"{"pause":true}"#, 3, 0),
            ],
        );
        assert!(w.is_empty());
        assert_eq!(c.status.optime, 4242);
        assert!(c.is_initializing());
        assert_eq!(c.sysid(), None);
        assert!(c.is_paused());
        assert!(c.is_unlocked());
    }

    #[test]
    fn malformed_values_become_warnings() {
        let keys = Keys::new("/service", "c");
        let kvs = vec![
            kv("/service/c/config", "{not json", 3, 0),
            kv("/service/c/members/bad", "[1]", 4, 9),
            kv("/service/c/members/typo", r#"{"xlog_location":"x"}"#, 5, 9),
            kv("/service/c/status", "\"str\"", 6, 0),
            kv("/service/c/history", "7", 7, 0),
            kv("/service/c/sync", "{", 8, 0),
            kv("/service/c/failsafe", "[]", 9, 0),
            kv("/service/c/failover", "[]", 10, 0),
            kv("/service/c/leader", "", 11, 5),
            Kv {
                key: "/service/c/initialize".into(),
                value: vec![0xff, 0xfe],
                create_revision: 1,
                mod_revision: 1,
                lease: 0,
            },
        ];
        let (c, w) = Cluster::from_kvs(&keys, &kvs);
        let keyed: Vec<&str> = w.iter().map(|w| w.key.as_str()).collect();
        for k in [
            "/service/c/config",
            "/service/c/members/bad",
            "/service/c/members/typo",
            "/service/c/status",
            "/service/c/history",
            "/service/c/sync",
            "/service/c/failsafe",
            "/service/c/failover",
            "/service/c/leader",
            "/service/c/initialize",
        ] {
            assert!(keyed.contains(&k), "no warning for {k}: {w:?}");
        }
        // Ignored, never fatal: the snapshot is still usable.
        let cfg = c.config.clone().unwrap();
        assert_eq!(cfg.data, json!({}));
        assert_eq!(cfg.mod_revision, 3);
        assert_eq!(c.member("bad").unwrap().data, Member::default());
        assert_eq!(c.member("typo").unwrap().data.xlog_location, None);
        assert_eq!(c.status, Status::default());
        assert!(c.history.clone().unwrap().entries.is_empty());
        assert!(c.sync.is_empty());
        assert_eq!(c.failsafe, None);
        assert!(c.failover.clone().unwrap().is_empty());
        assert!(c.is_unlocked());
        assert_eq!(c.initialize, None);
        // The warning text names the problem, not the value.
        assert!(w.iter().all(|w| !w.to_string().contains("{not json")));
    }

    #[test]
    fn changes_between_snapshots() {
        let keys = Keys::new("/service", "c");
        let (a, _) = Cluster::from_kvs(
            &keys,
            &[
                kv("/service/c/leader", "n1", 1, 1),
                kv("/service/c/members/n1", "{}", 2, 1),
            ],
        );
        assert!(a.changes_since(&a).is_empty());
        let (b, _) = Cluster::from_kvs(
            &keys,
            &[
                kv("/service/c/leader", "n2", 3, 2),
                kv("/service/c/members/n1", "{}", 2, 1),
                kv("/service/c/status", r#"{"optime":5}"#, 4, 0),
            ],
        );
        let ch = b.changes_since(&a);
        assert!(ch.leader && ch.status);
        assert!(!ch.members && !ch.config && !ch.failover);
    }

    #[test]
    fn failsafe_json_and_truthiness() {
        let mut m = BTreeMap::new();
        m.insert("a".to_string(), "http://a:8008/patroni".to_string());
        assert_eq!(failsafe_to_json(&m), r#"{"a":"http://a:8008/patroni"}"#);
        assert!(truthy(&json!("x")) && truthy(&json!(1)) && truthy(&json!(true)));
        assert!(!truthy(&json!("")) && !truthy(&json!(0)) && !truthy(&json!(null)));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c%2"), "a b c%2");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
