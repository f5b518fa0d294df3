//! The state-changing endpoints as commands to the supervisor.
//!
//! The API parses and validates a request exactly as far as Patroni does before it touches
//! anything (body rules, field checks, the switchover/failover checks against the cluster
//! view), then hands an [`ApiCommand`] to the supervisor through a channel with a one-shot
//! [`Responder`]. The supervisor does the work (DCS writes, restarts, polling for the new
//! leader) and answers with the status and message Patroni would give; [`replies`] has those
//! messages. Everything here is pure except the channel types.
//!
//! | endpoint | command | supervisor answers |
//! |---|---|---|
//! | `POST /reload` | `Reload` | 202 `reload scheduled` |
//! | `POST /restart` | `Restart` | 200/503 now, 202/409 scheduled |
//! | `DELETE /restart` | `DeleteScheduledRestart` | 200 / 404 |
//! | `POST /reinitialize` | `Reinitialize` | 200 `reinitialize started` / 503 reason |
//! | `POST /switchover`, `/failover` | `Switchover` | 202 scheduled, 200 done, 412/503 |
//! | `DELETE /switchover` | `DeleteScheduledSwitchover` | 200 / 404 / 409 |
//! | `PATCH /config` | `PatchConfig` | 200 + new config / 503 none / 409 CAS |
//! | `PUT /config` | `PutConfig` | 200 + config / 502 |
//! | `POST /failsafe` | `Failsafe` | 200 `Accepted` + `lsn` header / 500 |

use std::net::IpAddr;
use std::time::SystemTime;

use serde_json::{Map, Value};
use tokio::sync::oneshot;

use super::query::{BaseUnit, json_scalar_text, parse_bool, parse_int};
use super::reply::{Reply, error};
use super::state::{ClusterView, GlobalConfig, Role, Snapshot};
use super::time::{Timestamp, TimestampError};

/// A state-changing endpoint (method + first path segment, as Patroni routes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlRoute {
    PatchConfig,
    PutConfig,
    Reload,
    Restart,
    DeleteRestart,
    Reinitialize,
    Switchover,
    Failover,
    DeleteSwitchover,
    Failsafe,
}

impl ControlRoute {
    /// The route for a method and first path segment; `None` is Patroni's 501.
    pub fn find(method: &str, segment: &str) -> Option<ControlRoute> {
        Some(match (method, segment) {
            ("PATCH", "config") => ControlRoute::PatchConfig,
            ("PUT", "config") => ControlRoute::PutConfig,
            ("POST", "reload") => ControlRoute::Reload,
            ("POST", "restart") => ControlRoute::Restart,
            ("DELETE", "restart") => ControlRoute::DeleteRestart,
            ("POST", "reinitialize") => ControlRoute::Reinitialize,
            ("POST", "switchover") => ControlRoute::Switchover,
            ("POST", "failover") => ControlRoute::Failover,
            ("DELETE", "switchover") => ControlRoute::DeleteSwitchover,
            ("POST", "failsafe") => ControlRoute::Failsafe,
            _ => return None,
        })
    }

    /// Whether `allowlist_include_members` applies (not for `POST /failsafe`).
    pub fn checks_members(self) -> bool {
        self != ControlRoute::Failsafe
    }

    /// Whether the request body is read (else it is ignored).
    pub fn reads_body(self) -> bool {
        !matches!(
            self,
            ControlRoute::Reload | ControlRoute::DeleteRestart | ControlRoute::DeleteSwitchover
        )
    }
}

/// `POST /restart` conditions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RestartRequest {
    /// Restart at this time instead of now.
    pub schedule: Option<Timestamp>,
    /// Restart only if the member currently has this role.
    pub role: Option<Role>,
    /// Restart only if the running server is older than this (`server_version_num` form,
    /// e.g. 150002 for `15.2`).
    pub postgres_version: Option<u32>,
    /// The version as given, for echoing in `scheduled_restart`.
    pub postgres_version_text: Option<String>,
    /// Seconds to wait for postgres to accept connections (overrides `primary_start_timeout`).
    pub timeout: Option<u64>,
    /// Restart only if a restart is pending.
    pub restart_pending: bool,
}

impl RestartRequest {
    /// What `/patroni` and the member key show as `scheduled_restart` while this waits.
    pub fn scheduled_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        if let Some(s) = self.schedule {
            m.insert("schedule".into(), Value::String(s.isoformat()));
        }
        if let Some(r) = self.role {
            m.insert("role".into(), Value::String(r.as_str().into()));
        }
        if let Some(v) = &self.postgres_version_text {
            m.insert("postgres_version".into(), Value::String(v.clone()));
        }
        if let Some(t) = self.timeout {
            m.insert("timeout".into(), Value::from(t));
        }
        if self.restart_pending {
            m.insert("restart_pending".into(), Value::Bool(true));
        }
        m
    }
}

/// Switchover (from a named leader) or failover (to a named candidate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchoverKind {
    Switchover,
    Failover,
}

impl SwitchoverKind {
    /// `switchover` / `failover`.
    pub fn as_str(self) -> &'static str {
        match self {
            SwitchoverKind::Switchover => "switchover",
            SwitchoverKind::Failover => "failover",
        }
    }

    /// `Switchover` / `Failover`.
    pub fn title(self) -> &'static str {
        match self {
            SwitchoverKind::Switchover => "Switchover",
            SwitchoverKind::Failover => "Failover",
        }
    }

    /// `switched` / `failed` (Patroni's `action[:-4] + 'ed'`).
    fn past(self) -> &'static str {
        match self {
            SwitchoverKind::Switchover => "switched",
            SwitchoverKind::Failover => "failed",
        }
    }
}

/// A validated `POST /switchover` or `/failover`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchoverRequest {
    /// After Patroni's rule: a failover that names a leader is a switchover.
    pub kind: SwitchoverKind,
    /// The member to demote (required for a switchover).
    pub leader: Option<String>,
    /// The member to promote (required for a failover).
    pub candidate: Option<String>,
    /// Scheduled switchovers are only written to the DCS (answer 202).
    pub scheduled_at: Option<Timestamp>,
    /// For an immediate request: the members whose `/patroni` must be probed; at least one
    /// must be reachable, without `nofailover` and without a failed watchdog, else answer
    /// [`replies::no_good_candidates`] (412). `None` for scheduled requests.
    pub probe: Option<Vec<String>>,
}

/// What the supervisor is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiCommand {
    /// Re-read the configuration (like SIGHUP).
    Reload,
    /// Restart postgres now or at `schedule`.
    Restart(RestartRequest),
    /// Forget a scheduled restart.
    DeleteScheduledRestart,
    /// Wipe the data directory and clone again (replicas only).
    Reinitialize {
        /// Cancel a running action first.
        force: bool,
        /// Take the base backup from the leader even if another member is configured.
        from_leader: bool,
    },
    /// Write the `/failover` key (and wait for the result unless scheduled).
    Switchover(SwitchoverRequest),
    /// Clear a scheduled switchover from the `/failover` key.
    DeleteScheduledSwitchover,
    /// JSON-merge-patch the dynamic configuration (see [`patch_config`]), CAS on its version.
    PatchConfig { patch: Map<String, Value> },
    /// Replace the dynamic configuration (write only if it differs).
    PutConfig { config: Map<String, Value> },
    /// A failsafe-mode heartbeat from the leader: `{member: api_url}`.
    Failsafe { members: Map<String, Value> },
}

/// One line for logs. Configuration values are not shown (they may hold connection
/// strings), only the top-level keys.
impl std::fmt::Display for ApiCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = |m: &Map<String, Value>| m.keys().cloned().collect::<Vec<_>>().join(",");
        let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "None".into());
        match self {
            ApiCommand::Reload => write!(f, "reload"),
            ApiCommand::Restart(r) => write!(
                f,
                "restart{}",
                r.schedule
                    .map(|s| format!(" scheduled at {}", s.isoformat()))
                    .unwrap_or_default()
            ),
            ApiCommand::DeleteScheduledRestart => write!(f, "delete scheduled restart"),
            ApiCommand::Reinitialize { force, from_leader } => {
                write!(f, "reinitialize force={force} from_leader={from_leader}")
            }
            ApiCommand::Switchover(s) => write!(
                f,
                "{} leader={} candidate={} scheduled_at={}",
                s.kind.as_str(),
                opt(&s.leader),
                opt(&s.candidate),
                s.scheduled_at
                    .map_or_else(|| "None".into(), |t| t.isoformat())
            ),
            ApiCommand::DeleteScheduledSwitchover => write!(f, "delete scheduled switchover"),
            ApiCommand::PatchConfig { patch } => write!(f, "patch config keys={}", keys(patch)),
            ApiCommand::PutConfig { config } => write!(f, "replace config keys={}", keys(config)),
            ApiCommand::Failsafe { members } => {
                write!(f, "failsafe heartbeat members={}", keys(members))
            }
        }
    }
}

/// The answer channel for one command. Dropping it without answering makes the API reply
/// 503, so a supervisor that gives up never leaves the client hanging.
#[derive(Debug)]
pub struct Responder(oneshot::Sender<Reply>);

impl Responder {
    /// Send the reply (ignored if the client has gone).
    pub fn send(self, reply: Reply) {
        let _ = self.0.send(reply);
    }
}

/// A command with its answer channel and the client's address (for logs).
#[derive(Debug)]
pub struct ApiRequest {
    pub command: ApiCommand,
    pub peer: IpAddr,
    pub responder: Responder,
}

impl ApiRequest {
    /// A request and the receiver of its reply.
    pub fn new(command: ApiCommand, peer: IpAddr) -> (ApiRequest, oneshot::Receiver<Reply>) {
        let (tx, rx) = oneshot::channel();
        (
            ApiRequest {
                command,
                peer,
                responder: Responder(tx),
            },
            rx,
        )
    }
}

/// Patroni's `_read_json_content`: `body` is `None` when the request had no
/// `Content-Length` (411 if a body is required), otherwise the bytes. The result must be a
/// JSON object, non-empty unless the body is optional.
fn read_json(body: Option<&[u8]>, optional: bool) -> Result<Map<String, Value>, Reply> {
    let Some(bytes) = body else {
        return if optional {
            Ok(Map::new())
        } else {
            Err(error(411))
        };
    };
    if bytes.is_empty() && optional {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) if optional || !m.is_empty() => Ok(m),
        _ => Err(error(400)),
    }
}

/// Parse a schedule as Patroni's `parse_schedule`: 400 without a zone, 422 in the past or
/// unreadable.
fn parse_schedule(value: &Value, action: &str, now: SystemTime) -> Result<Timestamp, Reply> {
    let unparsable = || {
        Reply::text(
            422,
            "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601",
        )
    };
    let Value::String(s) = value else {
        return Err(unparsable());
    };
    match Timestamp::parse(s) {
        Ok(t) if t.to_system_time() < now => Err(Reply::text(
            422,
            format!("Cannot schedule {action} in the past"),
        )),
        Ok(t) => Ok(t),
        Err(TimestampError::NoTimezone) => Err(Reply::text(
            400,
            format!("Timezone information is mandatory for the scheduled {action}"),
        )),
        Err(TimestampError::Invalid) => Err(unparsable()),
    }
}

/// Patroni's `postgres_version_to_int`: `X.Y` (X ≥ 10) or `X.Y.Z` to `server_version_num`,
/// or Patroni's message for a bad value.
pub fn postgres_version_to_int(v: &str) -> Result<u32, String> {
    let parts: Vec<u32> = v
        .split('.')
        .map(|p| p.trim().parse::<u32>().ok())
        .collect::<Option<_>>()
        .ok_or_else(|| format!("Invalid PostgreSQL version: {v}"))?;
    let format_error =
        || format!("Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: {v}");
    let parts = match parts.as_slice() {
        [major, minor] if *major >= 10 => [*major, 0, *minor],
        [a, b, c] => [*a, *b, *c],
        _ => return Err(format_error()),
    };
    parts
        .iter()
        .map(|p| format!("{p:02}"))
        .collect::<String>()
        .parse()
        .map_err(|_| format_error())
}

/// Python truthiness of a JSON value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// A member name from a request field: a non-empty string, or nothing. Other JSON types
/// are refused (Patroni would compare them and fail later with a confusing message).
fn member_name(v: Option<&Value>, field: &str) -> Result<Option<String>, Reply> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Reply::text(400, format!("{field} must be a member name"))),
    }
}

/// Validate a request to `route` against the snapshot and turn it into a command, or the
/// reply Patroni gives without doing anything. `body` is `None` when there was no
/// `Content-Length`; `now` decides whether a schedule is in the past.
pub fn prepare(
    route: ControlRoute,
    body: Option<&[u8]>,
    snap: &Snapshot,
    now: SystemTime,
) -> Result<ApiCommand, Reply> {
    match route {
        ControlRoute::Reload => Ok(ApiCommand::Reload),
        ControlRoute::DeleteRestart => Ok(ApiCommand::DeleteScheduledRestart),
        ControlRoute::DeleteSwitchover => Ok(ApiCommand::DeleteScheduledSwitchover),
        ControlRoute::PatchConfig => Ok(ApiCommand::PatchConfig {
            patch: read_json(body, false)?,
        }),
        ControlRoute::PutConfig => Ok(ApiCommand::PutConfig {
            config: read_json(body, false)?,
        }),
        ControlRoute::Failsafe => {
            if !snap.config.failsafe_mode {
                return Err(error(502));
            }
            Ok(ApiCommand::Failsafe {
                members: read_json(body, false)?,
            })
        }
        ControlRoute::Reinitialize => {
            let req = read_json(body, true)?;
            let flag = |k: &str| req.get(k).and_then(parse_bool).unwrap_or(false);
            Ok(ApiCommand::Reinitialize {
                force: flag("force"),
                from_leader: flag("from_leader"),
            })
        }
        ControlRoute::Restart => prepare_restart(read_json(body, true)?, &snap.config, now),
        ControlRoute::Switchover | ControlRoute::Failover => {
            let kind = if route == ControlRoute::Failover {
                SwitchoverKind::Failover
            } else {
                SwitchoverKind::Switchover
            };
            prepare_switchover(kind, read_json(body, false)?, snap, now)
        }
    }
}

fn prepare_restart(
    req: Map<String, Value>,
    cfg: &GlobalConfig,
    now: SystemTime,
) -> Result<ApiCommand, Reply> {
    if cfg.paused && req.contains_key("schedule") {
        return Err(Reply::text(
            500,
            "Can't schedule restart in the paused state",
        ));
    }
    let mut out = RestartRequest::default();
    for (k, v) in &req {
        match k.as_str() {
            "schedule" => out.schedule = Some(parse_schedule(v, "restart", now)?),
            "role" => {
                out.role = Some(match v.as_str() {
                    Some("primary") => Role::Primary,
                    Some("standby_leader") => Role::StandbyLeader,
                    Some("replica") => Role::Replica,
                    _ => {
                        return Err(Reply::text(
                            400,
                            "PostgreSQL role should be either primary, standby_leader, or replica",
                        ));
                    }
                })
            }
            "postgres_version" => {
                let text = json_scalar_text(v).unwrap_or_default();
                match postgres_version_to_int(&text) {
                    Ok(n) => {
                        out.postgres_version = Some(n);
                        out.postgres_version_text = Some(text);
                    }
                    Err(msg) => return Err(Reply::text(400, msg)),
                }
            }
            "timeout" => {
                let secs = json_scalar_text(v).and_then(|t| parse_int(&t, BaseUnit::Seconds));
                match secs.and_then(|s| u64::try_from(s).ok()).filter(|s| *s > 0) {
                    Some(s) => out.timeout = Some(s),
                    None => {
                        return Err(Reply::text(
                            400,
                            "Timeout should be a positive number of seconds",
                        ));
                    }
                }
            }
            "restart_pending" => out.restart_pending = truthy(v),
            other => {
                return Err(Reply::text(
                    400,
                    format!("Unknown filter for the scheduled restart: {other}"),
                ));
            }
        }
    }
    Ok(ApiCommand::Restart(out))
}

fn prepare_switchover(
    mut kind: SwitchoverKind,
    req: Map<String, Value>,
    snap: &Snapshot,
    now: SystemTime,
) -> Result<ApiCommand, Reply> {
    let bad = |msg: &str| Reply::text(400, msg);
    let leader = member_name(req.get("leader"), "leader")?;
    let candidate = match member_name(req.get("candidate"), "candidate")? {
        Some(c) => Some(c),
        None => member_name(req.get("member"), "member")?,
    };
    let scheduled = req.get("scheduled_at").filter(|v| truthy(v));
    let paused = snap.config.paused;

    if kind == SwitchoverKind::Failover && candidate.is_none() {
        return Err(bad(
            "Failover could be performed only to a specific candidate",
        ));
    }
    if kind == SwitchoverKind::Switchover && leader.is_none() {
        return Err(bad(
            "Switchover could be performed only from a specific leader",
        ));
    }
    let mut scheduled_at = None;
    if let Some(v) = scheduled {
        if kind == SwitchoverKind::Failover {
            return Err(bad("Failover can't be scheduled"));
        }
        if paused {
            return Err(bad("Can't schedule switchover in the paused state"));
        }
        scheduled_at = Some(parse_schedule(v, kind.as_str(), now)?);
    }
    if paused && candidate.is_none() {
        return Err(bad(
            "Switchover is possible only to a specific candidate in a paused state",
        ));
    }
    if kind == SwitchoverKind::Failover && leader.is_some() {
        kind = SwitchoverKind::Switchover;
    }
    if leader == candidate {
        return Err(bad("Switchover target and source are the same"));
    }
    let probe = if scheduled_at.is_none() {
        let Some(cluster) = snap.cluster.as_ref() else {
            return Err(Reply::text(
                503,
                "cluster state is not known: DCS not reached yet",
            ));
        };
        Some(
            feasible_candidates(
                cluster,
                &snap.config,
                leader.as_deref(),
                candidate.as_deref(),
                kind,
            )
            .map_err(|msg| Reply::text(412, msg))?,
        )
    } else {
        None
    };
    Ok(ApiCommand::Switchover(SwitchoverRequest {
        kind,
        leader,
        candidate,
        scheduled_at,
        probe,
    }))
}

/// The DCS-view part of Patroni's `is_failover_possible`: the members that could take over,
/// or why none can. Probing them over HTTP is the supervisor's part.
pub fn feasible_candidates(
    cluster: &ClusterView,
    cfg: &GlobalConfig,
    leader: Option<&str>,
    candidate: Option<&str>,
    kind: SwitchoverKind,
) -> Result<Vec<String>, String> {
    let current = cluster.leader.as_deref().filter(|l| !l.is_empty());
    if let Some(l) = leader
        && current != Some(l)
    {
        return Err("leader name does not match".into());
    }
    let strict_sync = cfg.is_synchronous_mode() && !cfg.is_quorum_commit_mode();
    let action = kind.as_str();
    let members: Vec<String> = if let Some(c) = candidate {
        if kind == SwitchoverKind::Switchover && strict_sync && !cluster.sync.matches(c) {
            return Err("candidate name does not match with sync_standby".into());
        }
        let found: Vec<String> = cluster
            .members
            .iter()
            .filter(|m| m.name == c)
            .map(|m| m.name.clone())
            .collect();
        if found.is_empty() {
            return Err("candidate does not exists".into());
        }
        found
    } else if strict_sync {
        let found: Vec<String> = cluster
            .members
            .iter()
            .filter(|m| cluster.sync.matches(&m.name))
            .map(|m| m.name.clone())
            .collect();
        if found.is_empty() {
            return Err(format!(
                "{action} is not possible: can not find sync_standby"
            ));
        }
        found
    } else {
        let found: Vec<String> = cluster
            .members
            .iter()
            .filter(|m| {
                current.is_none() || (Some(m.name.as_str()) != current && m.api_url.is_some())
            })
            .map(|m| m.name.clone())
            .collect();
        if found.is_empty() {
            return Err(format!(
                "{action} is not possible: cluster does not have members except leader"
            ));
        }
        found
    };
    Ok(members)
}

/// Patroni's `patch_config`: merge `patch` into `config` (JSON merge patch; `null` deletes
/// a key, objects merge recursively, scalars replace when their text differs). Returns
/// whether anything changed. For the supervisor's `PATCH /config` handling.
pub fn patch_config(config: &mut Map<String, Value>, patch: &Map<String, Value>) -> bool {
    let mut changed = false;
    for (name, value) in patch {
        match value {
            Value::Null => {
                if config.remove(name).is_some_and(|old| !old.is_null()) {
                    changed = true;
                }
            }
            Value::Object(sub) => match config.get_mut(name) {
                Some(Value::Object(existing)) => {
                    if patch_config(existing, sub) {
                        changed = true;
                    }
                }
                _ => {
                    config.insert(name.clone(), value.clone());
                    changed = true;
                }
            },
            _ => {
                let same = config
                    .get(name)
                    .is_some_and(|old| python_str(old) == python_str(value));
                if !same {
                    config.insert(name.clone(), value.clone());
                    changed = true;
                }
            }
        }
    }
    changed
}

/// Patroni's `deep_compare`: same keys, nested objects compared recursively, other values
/// by their text (`1` equals `"1"`). `PUT /config` skips the write when this holds.
pub fn deep_compare(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    a.len() == b.len()
        && a.iter().all(|(k, va)| match (va, b.get(k)) {
            (_, None) => false,
            (Value::Object(x), Some(Value::Object(y))) => deep_compare(x, y),
            (Value::Object(_), Some(_)) => false,
            (x, Some(y)) => python_str(x) == python_str(y),
        })
}

/// A JSON value's text as Python's `str()` shows it, for Patroni's text comparisons.
fn python_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        other => other.to_string(),
    }
}

/// The answers Patroni gives, for the supervisor to send.
pub mod replies {
    use super::{Reply, SwitchoverKind, error};

    /// `POST /reload`: 202.
    pub fn reload_scheduled() -> Reply {
        Reply::text(202, "reload scheduled")
    }
    /// Immediate restart done: 200.
    pub fn restarted() -> Reply {
        Reply::text(200, "restarted successfully")
    }
    /// Immediate restart not done: 503 with the reason (e.g. `restart conditions are not
    /// satisfied`, `restart failed`, `<action> already in progress`).
    pub fn restart_failed(reason: &str) -> Reply {
        Reply::text(503, reason)
    }
    /// Scheduled restart accepted: 202.
    pub fn restart_scheduled() -> Reply {
        Reply::text(202, "Restart scheduled")
    }
    /// A restart is already scheduled: 409.
    pub fn restart_already_scheduled() -> Reply {
        Reply::text(409, "Another restart is already scheduled")
    }
    /// `DELETE /restart`: 200 or 404.
    pub fn scheduled_restart_deleted(deleted: bool) -> Reply {
        if deleted {
            Reply::text(200, "scheduled restart deleted")
        } else {
            Reply::text(404, "no restarts are scheduled")
        }
    }
    /// `POST /reinitialize` accepted: 200.
    pub fn reinitialize_started() -> Reply {
        Reply::text(200, "reinitialize started")
    }
    /// `POST /reinitialize` refused: 503 with the reason (`I am the leader, can not
    /// reinitialize`, `Cluster has no leader, can not reinitialize`, ...).
    pub fn reinitialize_refused(reason: &str) -> Reply {
        Reply::text(503, reason)
    }
    /// `DELETE /switchover`: 200 deleted, 404 nothing scheduled.
    pub fn scheduled_switchover_deleted(deleted: bool) -> Reply {
        if deleted {
            Reply::text(200, "scheduled switchover deleted")
        } else {
            Reply::text(404, "no switchover is scheduled")
        }
    }
    /// A compare-and-swap lost against another writer: 409.
    pub fn conflict() -> Reply {
        error(409)
    }
    /// `PATCH /config` with no configuration in the DCS: 503.
    pub fn no_config() -> Reply {
        error(503)
    }
    /// `PUT /config` write failed: 502.
    pub fn config_write_failed() -> Reply {
        error(502)
    }
    /// The new configuration (PATCH/PUT): 200 JSON.
    pub fn config(config: &serde_json::Map<String, serde_json::Value>) -> Reply {
        Reply::json(
            200,
            serde_json::to_string(config).unwrap_or_else(|_| "{}".into()),
        )
    }
    /// Writing the `/failover` key failed: 503.
    pub fn failover_key_write_failed() -> Reply {
        Reply::text(503, "failed to write failover key into DCS")
    }
    /// No probed member can take over: 412.
    pub fn no_good_candidates(kind: SwitchoverKind) -> Reply {
        Reply::text(
            412,
            format!(
                "{} is not possible: no good candidates have been found",
                kind.as_str()
            ),
        )
    }
    /// Scheduled switchover written: 202.
    pub fn switchover_scheduled(kind: SwitchoverKind) -> Reply {
        Reply::text(202, format!("{} scheduled", kind.title()))
    }
    /// The leader changed to `new_leader` (`candidate` is what was asked for, if anything).
    pub fn switched_over(kind: SwitchoverKind, new_leader: &str, candidate: Option<&str>) -> Reply {
        match candidate {
            Some(c) if c != new_leader => Reply::text(
                200,
                format!(
                    "{}{} over to \"{new_leader}\" instead of \"{c}\"",
                    kind.past()[..1].to_uppercase(),
                    &kind.past()[1..]
                ),
            ),
            _ => Reply::text(
                200,
                format!("Successfully {} over to \"{new_leader}\"", kind.past()),
            ),
        }
    }
    /// The `/failover` key was cleared without a new leader: 503.
    pub fn switchover_failed(kind: SwitchoverKind) -> Reply {
        Reply::text(503, format!("{} failed", kind.title()))
    }
    /// No result within the polling time: 503.
    pub fn switchover_status_unknown(kind: SwitchoverKind) -> Reply {
        Reply::text(503, format!("{} status unknown", kind.title()))
    }
    /// How long Patroni waits for a switchover result: `2 × max(10, loop_wait)` seconds,
    /// checking the DCS every second.
    pub fn switchover_poll_timeout(loop_wait: u32) -> std::time::Duration {
        std::time::Duration::from_secs(2 * u64::from(loop_wait.max(10)))
    }
    /// `POST /failsafe` on a replica: 200 with the WAL position in an `lsn` header.
    pub fn failsafe_accepted(lsn: u64) -> Reply {
        Reply::text(200, "Accepted").with_header("lsn", lsn.to_string())
    }
    /// `POST /failsafe` refused (e.g. `I am the primary`... from the supervisor): 500.
    pub fn failsafe_refused(reason: &str) -> Reply {
        Reply::text(500, reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::state::{ClusterMember, SyncMode, SyncState};
    use serde_json::json;
    use std::time::{Duration, Instant, UNIX_EPOCH};

    fn now() -> SystemTime {
        // 2024-01-01T00:00:00Z
        UNIX_EPOCH + Duration::from_secs(1_704_067_200)
    }

    fn snapshot() -> Snapshot {
        let mut s = Snapshot::new("a", "demo");
        let mut c = ClusterView::empty(Instant::now() + Duration::from_secs(30));
        c.leader = Some("a".into());
        c.members = ["a", "b", "c"]
            .iter()
            .map(|n| ClusterMember {
                name: n.to_string(),
                api_url: Some(format!("http://{n}:8008/patroni")),
                ..ClusterMember::default()
            })
            .collect();
        s.cluster = Some(c);
        s
    }

    fn prep(route: ControlRoute, body: &str, snap: &Snapshot) -> Result<ApiCommand, Reply> {
        prepare(route, Some(body.as_bytes()), snap, now())
    }

    fn refused(route: ControlRoute, body: &str, snap: &Snapshot) -> (u16, String) {
        let r = prep(route, body, snap).unwrap_err();
        (r.status, r.body_str().to_string())
    }

    #[test]
    fn routes_like_patroni() {
        assert_eq!(
            ControlRoute::find("POST", "switchover"),
            Some(ControlRoute::Switchover)
        );
        assert_eq!(
            ControlRoute::find("DELETE", "switchover"),
            Some(ControlRoute::DeleteSwitchover)
        );
        assert_eq!(
            ControlRoute::find("PATCH", "config"),
            Some(ControlRoute::PatchConfig)
        );
        assert_eq!(ControlRoute::find("POST", "config"), None);
        assert_eq!(ControlRoute::find("GET", "restart"), None);
        assert_eq!(ControlRoute::find("POST", ""), None);
        assert!(!ControlRoute::Failsafe.checks_members());
        assert!(!ControlRoute::Reload.reads_body());
    }

    #[test]
    fn body_rules() {
        let s = snapshot();
        // Required body: no Content-Length → 411, empty/garbage/non-object/empty object → 400.
        let r = prepare(ControlRoute::PatchConfig, None, &s, now()).unwrap_err();
        assert_eq!(r.status, 411);
        for body in ["", "{", "[1]", "{}", "null", "\"x\""] {
            assert_eq!(
                refused(ControlRoute::PatchConfig, body, &s).0,
                400,
                "{body:?}"
            );
            assert_eq!(
                refused(ControlRoute::Switchover, body, &s).0,
                400,
                "{body:?}"
            );
        }
        // Optional body: absent, empty or {} are fine; garbage is still 400.
        assert!(prepare(ControlRoute::Restart, None, &s, now()).is_ok());
        assert!(prep(ControlRoute::Restart, "", &s).is_ok());
        assert!(prep(ControlRoute::Restart, "{}", &s).is_ok());
        assert_eq!(refused(ControlRoute::Restart, "{oops", &s).0, 400);
        assert_eq!(refused(ControlRoute::Reinitialize, "[true]", &s).0, 400);
        // No body needed.
        assert_eq!(
            prepare(ControlRoute::Reload, None, &s, now()),
            Ok(ApiCommand::Reload)
        );
        assert_eq!(
            prepare(ControlRoute::DeleteSwitchover, None, &s, now()),
            Ok(ApiCommand::DeleteScheduledSwitchover)
        );
        assert_eq!(
            prepare(ControlRoute::DeleteRestart, None, &s, now()),
            Ok(ApiCommand::DeleteScheduledRestart)
        );
    }

    #[test]
    fn config_commands_carry_the_json() {
        let s = snapshot();
        let patch = json!({"postgresql": {"parameters": {"max_connections": null}}});
        assert_eq!(
            prep(ControlRoute::PatchConfig, &patch.to_string(), &s),
            Ok(ApiCommand::PatchConfig {
                patch: patch.as_object().cloned().unwrap()
            })
        );
        assert!(matches!(
            prep(ControlRoute::PutConfig, r#"{"ttl":20}"#, &s),
            Ok(ApiCommand::PutConfig { config }) if config["ttl"] == 20
        ));
    }

    #[test]
    fn reinitialize_flags() {
        let s = snapshot();
        assert_eq!(
            prep(
                ControlRoute::Reinitialize,
                r#"{"force": "yes", "from_leader": true}"#,
                &s
            ),
            Ok(ApiCommand::Reinitialize {
                force: true,
                from_leader: true
            })
        );
        assert_eq!(
            prepare(ControlRoute::Reinitialize, None, &s, now()),
            Ok(ApiCommand::Reinitialize {
                force: false,
                from_leader: false
            })
        );
        assert_eq!(
            prep(ControlRoute::Reinitialize, r#"{"force": "maybe"}"#, &s),
            Ok(ApiCommand::Reinitialize {
                force: false,
                from_leader: false
            })
        );
    }

    #[test]
    fn failsafe_needs_failsafe_mode() {
        let mut s = snapshot();
        assert_eq!(refused(ControlRoute::Failsafe, r#"{"a":"x"}"#, &s).0, 502);
        s.config.failsafe_mode = true;
        assert!(matches!(
            prep(
                ControlRoute::Failsafe,
                r#"{"a":"http://a:8008/patroni"}"#,
                &s
            ),
            Ok(ApiCommand::Failsafe { .. })
        ));
    }

    #[test]
    fn restart_filters() {
        let s = snapshot();
        let Ok(ApiCommand::Restart(r)) = prep(
            ControlRoute::Restart,
            r#"{"role":"replica","postgres_version":"15.2","timeout":"5min","restart_pending":true,
                "schedule":"2030-01-01T10:00:00+01:00"}"#,
            &s,
        ) else {
            panic!("valid restart refused")
        };
        assert_eq!(r.role, Some(Role::Replica));
        assert_eq!(r.postgres_version, Some(150_002));
        assert_eq!(r.timeout, Some(300));
        assert!(r.restart_pending);
        assert_eq!(
            r.scheduled_json(),
            json!({"schedule": "2030-01-01T10:00:00+01:00", "role": "replica",
                   "postgres_version": "15.2", "timeout": 300, "restart_pending": true})
            .as_object()
            .cloned()
            .unwrap()
        );
        assert!(matches!(
            prep(ControlRoute::Restart, r#"{"timeout": 30}"#, &s),
            Ok(ApiCommand::Restart(RestartRequest {
                timeout: Some(30),
                ..
            }))
        ));
        let cases = [
            (
                r#"{"role":"master"}"#,
                400,
                "PostgreSQL role should be either primary, standby_leader, or replica",
            ),
            (
                r#"{"postgres_version":"10"}"#,
                400,
                "Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: 10",
            ),
            (
                r#"{"postgres_version":"9.6"}"#,
                400,
                "Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: 9.6",
            ),
            (
                r#"{"postgres_version":"a.b.c"}"#,
                400,
                "Invalid PostgreSQL version: a.b.c",
            ),
            (
                r#"{"timeout":0}"#,
                400,
                "Timeout should be a positive number of seconds",
            ),
            (
                r#"{"timeout":"soon"}"#,
                400,
                "Timeout should be a positive number of seconds",
            ),
            (
                r#"{"timeout":-5}"#,
                400,
                "Timeout should be a positive number of seconds",
            ),
            (
                r#"{"when":"now"}"#,
                400,
                "Unknown filter for the scheduled restart: when",
            ),
            (
                r#"{"schedule":"2030-01-01T10:00:00"}"#,
                400,
                "Timezone information is mandatory for the scheduled restart",
            ),
            (
                r#"{"schedule":"2020-01-01T10:00:00Z"}"#,
                422,
                "Cannot schedule restart in the past",
            ),
            (
                r#"{"schedule":"next tuesday"}"#,
                422,
                "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601",
            ),
            (
                r#"{"schedule":12}"#,
                422,
                "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601",
            ),
        ];
        for (body, status, msg) in cases {
            assert_eq!(
                refused(ControlRoute::Restart, body, &s),
                (status, msg.to_string()),
                "{body}"
            );
        }
        let mut paused = snapshot();
        paused.config.paused = true;
        assert_eq!(
            refused(
                ControlRoute::Restart,
                r#"{"schedule":"2030-01-01T10:00:00Z"}"#,
                &paused
            ),
            (
                500,
                "Can't schedule restart in the paused state".to_string()
            )
        );
        assert!(prep(ControlRoute::Restart, r#"{"role":"primary"}"#, &paused).is_ok());
    }

    #[test]
    fn postgres_versions() {
        assert_eq!(postgres_version_to_int("9.5.3"), Ok(90_503));
        assert_eq!(postgres_version_to_int("10.1"), Ok(100_001));
        assert_eq!(postgres_version_to_int("15.4"), Ok(150_004));
        for bad in ["10", "9.6", "1.2.3.4"] {
            assert_eq!(
                postgres_version_to_int(bad),
                Err(format!(
                    "Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: {bad}"
                ))
            );
        }
        assert_eq!(
            postgres_version_to_int("15.x"),
            Err("Invalid PostgreSQL version: 15.x".into())
        );
    }

    #[test]
    fn switchover_validation_order() {
        let s = snapshot();
        let sw = ControlRoute::Switchover;
        let fo = ControlRoute::Failover;
        let cases = [
            (
                fo,
                r#"{"leader":""}"#,
                400,
                "Failover could be performed only to a specific candidate",
            ),
            (
                sw,
                r#"{"candidate":"b"}"#,
                400,
                "Switchover could be performed only from a specific leader",
            ),
            (
                fo,
                r#"{"candidate":"b","scheduled_at":"2030-01-01T00:00Z"}"#,
                400,
                "Failover can't be scheduled",
            ),
            (
                sw,
                r#"{"leader":"a","scheduled_at":"2030-01-01T00:00"}"#,
                400,
                "Timezone information is mandatory for the scheduled switchover",
            ),
            (
                sw,
                r#"{"leader":"a","scheduled_at":"2020-01-01T00:00Z"}"#,
                422,
                "Cannot schedule switchover in the past",
            ),
            (
                sw,
                r#"{"leader":"a","candidate":"a"}"#,
                400,
                "Switchover target and source are the same",
            ),
            (sw, r#"{"leader":"b"}"#, 412, "leader name does not match"),
            (
                sw,
                r#"{"leader":"a","candidate":"zz"}"#,
                412,
                "candidate does not exists",
            ),
            (
                sw,
                r#"{"leader":"a","candidate":7}"#,
                400,
                "candidate must be a member name",
            ),
        ];
        for (route, body, status, msg) in cases {
            assert_eq!(
                refused(route, body, &s),
                (status, msg.to_string()),
                "{body}"
            );
        }
        let mut paused = snapshot();
        paused.config.paused = true;
        assert_eq!(
            refused(
                sw,
                r#"{"leader":"a","scheduled_at":"2030-01-01T00:00Z"}"#,
                &paused
            ),
            (400, "Can't schedule switchover in the paused state".into())
        );
        assert_eq!(
            refused(sw, r#"{"leader":"a"}"#, &paused),
            (
                400,
                "Switchover is possible only to a specific candidate in a paused state".into()
            )
        );
        assert!(prep(sw, r#"{"leader":"a","candidate":"b"}"#, &paused).is_ok());
    }

    #[test]
    fn switchover_commands() {
        let s = snapshot();
        assert_eq!(
            prep(ControlRoute::Switchover, r#"{"leader":"a"}"#, &s),
            Ok(ApiCommand::Switchover(SwitchoverRequest {
                kind: SwitchoverKind::Switchover,
                leader: Some("a".into()),
                candidate: None,
                scheduled_at: None,
                probe: Some(vec!["b".into(), "c".into()]),
            }))
        );
        // "member" is an alias of "candidate".
        assert!(matches!(
            prep(ControlRoute::Switchover, r#"{"leader":"a","member":"c"}"#, &s),
            Ok(ApiCommand::Switchover(SwitchoverRequest { candidate: Some(ref c), probe: Some(ref p), .. }))
                if c == "c" && p == &["c".to_string()]
        ));
        // A failover naming a leader becomes a switchover.
        assert!(matches!(
            prep(
                ControlRoute::Failover,
                r#"{"leader":"a","candidate":"b"}"#,
                &s
            ),
            Ok(ApiCommand::Switchover(SwitchoverRequest {
                kind: SwitchoverKind::Switchover,
                ..
            }))
        ));
        assert!(matches!(
            prep(ControlRoute::Failover, r#"{"candidate":"b"}"#, &s),
            Ok(ApiCommand::Switchover(SwitchoverRequest {
                kind: SwitchoverKind::Failover,
                ..
            }))
        ));
        // Scheduled: no feasibility check, no probe.
        let Ok(ApiCommand::Switchover(r)) = prep(
            ControlRoute::Switchover,
            r#"{"leader":"zz","scheduled_at":"2030-01-01T12:00+00"}"#,
            &s,
        ) else {
            panic!("scheduled switchover refused")
        };
        assert_eq!(r.probe, None);
        assert_eq!(
            r.scheduled_at.unwrap().isoformat(),
            "2030-01-01T12:00:00+00:00"
        );
        // No DCS view at all: cannot check, 503.
        let mut blind = snapshot();
        blind.cluster = None;
        assert_eq!(
            refused(ControlRoute::Switchover, r#"{"leader":"a"}"#, &blind).0,
            503
        );
    }

    #[test]
    fn feasibility_in_sync_mode_and_without_members() {
        let mut s = snapshot();
        s.config.synchronous_mode = SyncMode::On;
        s.cluster.as_mut().unwrap().sync = SyncState {
            leader: Some("a".into()),
            sync_standby: vec!["c".into()],
            quorum: 0,
        };
        assert_eq!(
            refused(
                ControlRoute::Switchover,
                r#"{"leader":"a","candidate":"b"}"#,
                &s
            ),
            (
                412,
                "candidate name does not match with sync_standby".into()
            )
        );
        // A failover to a non-sync candidate is allowed (Patroni skips the sync check).
        assert!(prep(ControlRoute::Failover, r#"{"candidate":"b"}"#, &s).is_ok());
        assert!(matches!(
            prep(ControlRoute::Switchover, r#"{"leader":"a"}"#, &s),
            Ok(ApiCommand::Switchover(SwitchoverRequest { probe: Some(ref p), .. })) if p == &["c".to_string()]
        ));
        s.cluster.as_mut().unwrap().sync.sync_standby.clear();
        assert_eq!(
            refused(ControlRoute::Switchover, r#"{"leader":"a"}"#, &s),
            (
                412,
                "switchover is not possible: can not find sync_standby".into()
            )
        );
        // Quorum mode does not restrict candidates this way.
        s.config.synchronous_mode = SyncMode::Quorum;
        assert!(
            prep(
                ControlRoute::Switchover,
                r#"{"leader":"a","candidate":"b"}"#,
                &s
            )
            .is_ok()
        );

        let mut alone = snapshot();
        alone.cluster.as_mut().unwrap().members.truncate(1);
        assert_eq!(
            refused(ControlRoute::Switchover, r#"{"leader":"a"}"#, &alone),
            (
                412,
                "switchover is not possible: cluster does not have members except leader".into()
            )
        );
        // Members without api_url cannot be probed.
        let mut no_api = snapshot();
        for m in &mut no_api.cluster.as_mut().unwrap().members {
            m.api_url = None;
        }
        assert_eq!(
            refused(ControlRoute::Switchover, r#"{"leader":"a"}"#, &no_api).0,
            412
        );
    }

    #[test]
    fn reply_messages() {
        use replies::*;
        let sw = SwitchoverKind::Switchover;
        let fo = SwitchoverKind::Failover;
        assert_eq!(
            switched_over(sw, "b", None).body_str(),
            "Successfully switched over to \"b\""
        );
        assert_eq!(
            switched_over(fo, "b", Some("b")).body_str(),
            "Successfully failed over to \"b\""
        );
        assert_eq!(
            switched_over(sw, "c", Some("b")).body_str(),
            "Switched over to \"c\" instead of \"b\""
        );
        assert_eq!(
            switched_over(fo, "c", Some("b")).body_str(),
            "Failed over to \"c\" instead of \"b\""
        );
        assert_eq!(switchover_failed(sw).body_str(), "Switchover failed");
        assert_eq!(switchover_status_unknown(fo).status, 503);
        assert_eq!(
            switchover_scheduled(sw),
            Reply::text(202, "Switchover scheduled")
        );
        assert_eq!(no_good_candidates(sw).status, 412);
        assert_eq!(switchover_poll_timeout(2), Duration::from_secs(20));
        assert_eq!(switchover_poll_timeout(15), Duration::from_secs(30));
        assert_eq!(
            failsafe_accepted(42).headers,
            [("lsn".to_string(), "42".to_string())]
        );
        assert_eq!(conflict().body_str(), "Conflict");
        assert_eq!(scheduled_restart_deleted(false).status, 404);
    }

    #[test]
    fn patch_config_is_a_merge_patch() {
        let mut cfg = json!({"ttl": 30, "loop_wait": 10,
            "postgresql": {"use_slots": true, "parameters": {"max_connections": "100", "wal_level": "replica"}}})
            .as_object()
            .cloned()
            .unwrap();
        let patch = json!({"loop_wait": 5, "ttl": "30",
            "postgresql": {"parameters": {"max_connections": null, "work_mem": "8MB"}}, "pause": true})
        .as_object()
        .cloned()
        .unwrap();
        assert!(patch_config(&mut cfg, &patch));
        assert_eq!(
            Value::Object(cfg.clone()),
            json!({"ttl": 30, "loop_wait": 5, "pause": true,
                "postgresql": {"use_slots": true, "parameters": {"wal_level": "replica", "work_mem": "8MB"}}})
        );
        // Same values again (text-equal): nothing changes.
        let again = json!({"loop_wait": "5", "missing": null})
            .as_object()
            .cloned()
            .unwrap();
        assert!(!patch_config(&mut cfg, &again));
        // An object replacing a scalar.
        let obj = json!({"ttl": {"x": 1}}).as_object().cloned().unwrap();
        assert!(patch_config(&mut cfg, &obj));
        assert_eq!(cfg["ttl"], json!({"x": 1}));
    }

    #[test]
    fn deep_compare_by_text() {
        let a = json!({"ttl": 30, "pg": {"x": "1"}})
            .as_object()
            .cloned()
            .unwrap();
        let b = json!({"ttl": "30", "pg": {"x": 1}})
            .as_object()
            .cloned()
            .unwrap();
        assert!(deep_compare(&a, &b));
        let c = json!({"ttl": 30}).as_object().cloned().unwrap();
        assert!(!deep_compare(&a, &c));
        let d = json!({"ttl": 30, "pg": "x"}).as_object().cloned().unwrap();
        assert!(!deep_compare(&a, &d));
    }
}
