//! The typed configuration every role reads: Patroni's `patroni.yml` plus manning's own
//! `manning:` section, after templates, the environment overlay and defaults.
//!
//! Field names are Patroni's YAML keys, so `config show` output reads like the file.
//! Defaults manning applies where Patroni's file leaves things unset (documented on each
//! field; the seed's `patroni.yml` relies on the first three, which its image set):
//!
//! | setting | default |
//! |---|---|
//! | `restapi.listen` | `0.0.0.0:8008` (Patroni's documented port) |
//! | `postgresql.data_dir` | `/patroni/data` (inside the seed's `data:/patroni` volume), with a warning |
//! | `postgresql.bin_dir` | the highest `/usr/lib/postgresql/<version>/bin`, else `PATH` |
//! | `postgresql.config_dir` | `postgresql.data_dir` |
//! | `namespace` | `/service` |
//! | `postgresql.create_replica_methods` | `[basebackup]` |
//! | `restapi.request_queue_size` / `verify_client` / `server_tokens` | 5 / `none` / `original` |
//! | `etcd3.protocol` | `http` |
//! | `watchdog` | `mode: automatic`, `device: /dev/watchdog`, `safety_margin: 5` |
//! | `log` | `type: plain`, `level: INFO`, `traceback_level: ERROR`, `max_queue_size: 1000` |
//! | `manning` | `fence_margin: 3`, `smart_shutdown_timeout: 5`, `fast_shutdown_timeout: 60`, `user: postgres` |
//!
//! The dynamic part (`bootstrap.dcs` and the DCS `/config`) is [`DynamicConfig`], with its
//! own defaults.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

use super::decode::CmdOption;
use super::dynamic::{self, DynamicConfig};
use super::secret::{REDACTED, Secret, reveal_secrets};

/// A `host:port` address. IPv6 hosts are stored without brackets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl HostPort {
    /// Parse `host:port`, `[v6]:port` or (as Patroni's `split_host_port` allows) an
    /// unbracketed IPv6 address followed by `:port`.
    pub fn parse(text: &str) -> Result<HostPort, String> {
        let (hosts, port) = split_listen(text)?;
        match hosts.as_slice() {
            [host] => Ok(HostPort {
                host: host.clone(),
                port,
            }),
            _ => Err("expected one host (`host:port`), not a list".into()),
        }
    }

    /// True for addresses no other machine can connect to: wildcards (`0.0.0.0`, `*`,
    /// `::`, empty).
    pub fn is_wildcard(&self) -> bool {
        is_wildcard_host(&self.host)
    }

    /// True for loopback addresses (`127.x`, `::1`, `localhost`).
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(&self.host)
    }
}

pub(crate) fn is_wildcard_host(host: &str) -> bool {
    matches!(host, "" | "*" | "0.0.0.0" | "::")
}

pub(crate) fn is_loopback_host(host: &str) -> bool {
    host == "localhost" || host == "::1" || host.starts_with("127.")
}

fn fmt_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", fmt_host(&self.host), self.port)
    }
}

impl Serialize for HostPort {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `postgresql.listen`: one or more hosts sharing a port, `h1,h2:5432`. The first host is
/// the one used for local connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddress {
    pub hosts: Vec<String>,
    pub port: u16,
}

impl ListenAddress {
    pub fn parse(text: &str) -> Result<ListenAddress, String> {
        let (hosts, port) = split_listen(text)?;
        if hosts.contains(&"*".to_string()) && hosts.len() > 1 {
            return Err("`*` must be the only host".into());
        }
        Ok(ListenAddress { hosts, port })
    }

    /// The value for PostgreSQL's `listen_addresses`.
    pub fn listen_addresses(&self) -> String {
        self.hosts.join(",")
    }
}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hosts: Vec<String> = self.hosts.iter().map(|h| fmt_host(h)).collect();
        write!(f, "{}:{}", hosts.join(","), self.port)
    }
}

impl Serialize for ListenAddress {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Split `h1,h2:port` (Patroni's `split_host_port`: the port follows the last colon;
/// brackets around IPv6 hosts are removed). Hosts are checked for plausible syntax.
fn split_listen(text: &str) -> Result<(Vec<String>, u16), String> {
    let text = text.trim();
    let Some((hosts, port)) = text.rsplit_once(':') else {
        return Err("expected `host:port`".into());
    };
    let port: u16 = match port.parse() {
        Ok(p) if p > 0 => p,
        _ => return Err(format!("port {port:?} is not a number from 1 to 65535")),
    };
    let mut out = Vec::new();
    for h in hosts.split(',') {
        let h = h.trim();
        let h = h
            .strip_prefix('[')
            .and_then(|x| x.strip_suffix(']'))
            .unwrap_or(h);
        if h.is_empty() {
            return Err("the host is empty (use 0.0.0.0 or * for all addresses)".into());
        }
        let ok = h == "*"
            || h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '%'));
        if !ok {
            return Err(format!("{h:?} is not a host name or IP address"));
        }
        out.push(h.to_string());
    }
    Ok((out, port))
}

/// HTTP Basic credentials (`restapi.authentication`, `ctl.authentication`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BasicAuth {
    pub username: String,
    pub password: Secret,
}

/// `restapi.verify_client`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyClient {
    #[default]
    None,
    Optional,
    Required,
}

/// `restapi.server_tokens`: how much the `Server` header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum ServerTokens {
    #[default]
    Original,
    Minimal,
    ProductOnly,
}

/// `restapi`: Patroni's REST API, served by the supervisor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestApi {
    /// Where the API listens. Default `0.0.0.0:8008`.
    pub listen: HostPort,
    /// What other members and load balancers use to reach this member's API (published
    /// in the member key as `api_url`). Required.
    pub connect_address: HostPort,
    /// Basic auth for the unsafe (state-changing) endpoints.
    pub authentication: Option<BasicAuth>,
    /// TLS certificate; without it the API speaks plain HTTP.
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
    pub keyfile_password: Option<Secret>,
    /// CA bundle to verify client certificates.
    pub cafile: Option<PathBuf>,
    pub ciphers: Option<String>,
    pub verify_client: VerifyClient,
    /// Hosts, IPs or CIDRs allowed to call unsafe endpoints (empty: everyone).
    pub allowlist: Vec<String>,
    /// Also allow the members' own addresses.
    pub allowlist_include_members: bool,
    pub http_extra_headers: BTreeMap<String, String>,
    pub https_extra_headers: BTreeMap<String, String>,
    /// Listen backlog. Default 5.
    pub request_queue_size: u32,
    pub server_tokens: ServerTokens,
}

/// `ctl`: how `manning ctl` (like patronictl) talks to the REST API.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Ctl {
    pub authentication: Option<BasicAuth>,
    /// Do not verify the API's TLS certificate.
    pub insecure: bool,
    pub cacert: Option<PathBuf>,
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
    pub keyfile_password: Option<Secret>,
}

/// `etcd3.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Http,
    Https,
}

/// `etcd3`: where the cluster state lives (etcd's v3 API).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Etcd3 {
    /// One endpoint.
    pub host: Option<HostPort>,
    /// Several endpoints (a YAML list or a comma-separated string).
    pub hosts: Vec<HostPort>,
    /// One endpoint as a URL (`http(s)://host:port`).
    pub url: Option<String>,
    /// A proxy URL: used as the only endpoint, without discovering cluster members.
    pub proxy: Option<String>,
    /// Treat `hosts` as proxies: do not discover the other etcd members.
    pub use_proxies: bool,
    /// Scheme for `host`/`hosts`. Default `http`.
    pub protocol: Protocol,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// CA certificate; when set the server certificate is verified.
    pub cacert: Option<PathBuf>,
    /// Client certificate and key.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl Etcd3 {
    /// Endpoint URLs to connect to, in Patroni's order of preference: `proxy`, `url`,
    /// `hosts`, `host`.
    pub fn endpoints(&self) -> Vec<String> {
        if let Some(p) = &self.proxy {
            return vec![p.clone()];
        }
        if let Some(u) = &self.url {
            return vec![u.clone()];
        }
        let scheme = match self.protocol {
            Protocol::Http => "http",
            Protocol::Https => "https",
        };
        let hosts: Vec<&HostPort> = if self.hosts.is_empty() {
            self.host.iter().collect()
        } else {
            self.hosts.iter().collect()
        };
        hosts.iter().map(|h| format!("{scheme}://{h}")).collect()
    }
}

/// A user created after bootstrap (`bootstrap.users`, removed in Patroni 4, kept by
/// manning because the seed uses it).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct BootstrapUser {
    pub password: Option<Secret>,
    /// Words for `CREATE ROLE … WITH`, e.g. `createrole`, `createdb`.
    pub options: Vec<String>,
}

/// A custom bootstrap method (`bootstrap.method: NAME` and its `bootstrap.NAME` section).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomBootstrap {
    pub command: String,
    pub keep_existing_recovery_conf: bool,
    /// Do not pass `--scope` and `--datadir`.
    pub no_params: bool,
    pub recovery_conf: Option<BTreeMap<String, Value>>,
    /// Further keys, passed to the command as `--key=value`.
    #[serde(flatten)]
    pub params: BTreeMap<String, Value>,
}

/// `bootstrap`: how a brand-new cluster is created.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bootstrap {
    /// Written to the DCS `/config` key by the member that bootstraps the cluster.
    pub dcs: DynamicConfig,
    /// `initdb` (default) or the name of a custom method section.
    pub method: Option<String>,
    /// Custom method sections by name.
    #[serde(flatten)]
    pub methods: BTreeMap<String, CustomBootstrap>,
    /// Options for `initdb`.
    pub initdb: Vec<CmdOption>,
    /// Lines appended to `pg_hba.conf` after initdb.
    pub pg_hba: Vec<String>,
    pub users: BTreeMap<String, BootstrapUser>,
    /// Script run once after bootstrap with a connection URL (`post_init` is an alias).
    pub post_bootstrap: Option<String>,
}

/// Credentials and libpq options of one PostgreSQL role.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct PgUser {
    pub username: String,
    pub password: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sslmode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sslcert: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sslkey: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sslpassword: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sslrootcert: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sslcrl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sslcrldir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gssencmode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_binding: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sslnegotiation: Option<String>,
}

/// `postgresql.authentication`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Authentication {
    /// Used by manning for everything local; set at initdb.
    pub superuser: PgUser,
    /// Used by replicas to stream from the primary; created at bootstrap.
    pub replication: PgUser,
    /// Used for pg_rewind when given (PostgreSQL 11+), else the superuser.
    pub rewind: Option<PgUser>,
}

/// `postgresql.callbacks`: commands run as `<cmd> <action> <role> <scope>`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Callbacks {
    pub on_start: Option<String>,
    pub on_stop: Option<String>,
    pub on_restart: Option<String>,
    pub on_reload: Option<String>,
    pub on_role_change: Option<String>,
}

/// `postgresql.bin_name`: names of the PostgreSQL programs (defaults: their usual names).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BinNames {
    pub pg_ctl: String,
    pub initdb: String,
    pub pg_controldata: String,
    pub pg_basebackup: String,
    pub postgres: String,
    pub pg_isready: String,
    pub pg_rewind: String,
}

impl Default for BinNames {
    fn default() -> BinNames {
        BinNames {
            pg_ctl: "pg_ctl".into(),
            initdb: "initdb".into(),
            pg_controldata: "pg_controldata".into(),
            pg_basebackup: "pg_basebackup".into(),
            postgres: "postgres".into(),
            pg_isready: "pg_isready".into(),
            pg_rewind: "pg_rewind".into(),
        }
    }
}

impl BinNames {
    /// The programs Patroni's validator requires in `bin_dir` (pg_rewind is optional).
    pub fn required(&self) -> [&str; 6] {
        [
            &self.pg_ctl,
            &self.initdb,
            &self.pg_controldata,
            &self.pg_basebackup,
            &self.postgres,
            &self.pg_isready,
        ]
    }
}

/// A custom replica creation method (`postgresql.create_replica_methods` entry and its
/// `postgresql.NAME` section).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicaMethod {
    pub command: String,
    /// Do not empty the data directory first.
    pub keep_data: bool,
    /// Can run without a leader (e.g. restores from a backup).
    pub no_leader: bool,
    /// Do not pass `--scope`, `--role`, `--datadir`, `--connstring`.
    pub no_params: bool,
    /// Further keys, passed as `--key=value`.
    #[serde(flatten)]
    pub params: BTreeMap<String, Value>,
}

/// The local `postgresql` section.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Postgresql {
    /// Where PostgreSQL listens (`listen_addresses` and `port`). Required.
    pub listen: ListenAddress,
    /// How other members and clients reach this PostgreSQL (the member's `conn_url`).
    /// Required.
    pub connect_address: HostPort,
    /// A connection pooler in front of this PostgreSQL, published as `proxy_url`.
    pub proxy_address: Option<HostPort>,
    /// Data directory. Default `/patroni/data`.
    pub data_dir: PathBuf,
    /// Where postgresql.conf and friends are written. Default: `data_dir`.
    pub config_dir: PathBuf,
    /// Directory of the PostgreSQL programs; `None` means search `PATH`. Default: the
    /// highest `/usr/lib/postgresql/<version>/bin` present.
    pub bin_dir: Option<PathBuf>,
    pub bin_name: BinNames,
    /// Password file written for tools that connect to other members. `None`: manning
    /// creates a private file of its own.
    pub pgpass: Option<PathBuf>,
    pub authentication: Authentication,
    pub callbacks: Callbacks,
    /// Methods tried in order to create a replica. Default `[basebackup]`.
    pub create_replica_methods: Vec<String>,
    /// Sections of the custom methods named in `create_replica_methods`.
    #[serde(flatten)]
    pub replica_methods: BTreeMap<String, ReplicaMethod>,
    /// Options for `pg_basebackup`.
    pub basebackup: Vec<CmdOption>,
    /// Options for `pg_rewind`.
    pub rewind: Vec<CmdOption>,
    /// Local GUCs; override the dynamic ones, except the command-line parameters, which
    /// are dynamic only and removed here (with a warning).
    pub parameters: BTreeMap<String, Value>,
    /// Local overrides of the dynamic settings of the same name.
    pub pg_hba: Option<Vec<String>>,
    pub pg_ident: Option<Vec<String>>,
    pub use_pg_rewind: Option<bool>,
    pub remove_data_directory_on_rewind_failure: Option<bool>,
    pub remove_data_directory_on_diverged_timelines: Option<bool>,
    pub pg_ctl_timeout: Option<u64>,
    pub recovery_conf: Option<BTreeMap<String, Value>>,
    /// Connect to the local PostgreSQL through its UNIX socket.
    pub use_unix_socket: bool,
    pub use_unix_socket_repl: bool,
    /// A postgresql.conf to include instead of `postgresql.base.conf`.
    pub custom_conf: Option<PathBuf>,
    /// Fencing script run after taking the leader lock, before promoting.
    pub pre_promote: Option<String>,
    /// Script run before stopping PostgreSQL.
    pub before_stop: Option<String>,
    /// Patroni 4.1 role-specific keys (`parameters_primary`, `pg_hba_replica`, ...), kept
    /// as written.
    #[serde(flatten)]
    pub role_specific: Map<String, Value>,
}

impl Postgresql {
    /// A section with every key at its default and no addresses or paths yet: the decoder
    /// fills it in.
    pub(crate) fn empty() -> Postgresql {
        Postgresql {
            listen: ListenAddress {
                hosts: Vec::new(),
                port: 0,
            },
            connect_address: HostPort {
                host: String::new(),
                port: 0,
            },
            proxy_address: None,
            data_dir: PathBuf::new(),
            config_dir: PathBuf::new(),
            bin_dir: None,
            bin_name: BinNames::default(),
            pgpass: None,
            authentication: Authentication::default(),
            callbacks: Callbacks::default(),
            create_replica_methods: vec!["basebackup".into()],
            replica_methods: BTreeMap::new(),
            basebackup: Vec::new(),
            rewind: Vec::new(),
            parameters: BTreeMap::new(),
            pg_hba: None,
            pg_ident: None,
            use_pg_rewind: None,
            remove_data_directory_on_rewind_failure: None,
            remove_data_directory_on_diverged_timelines: None,
            pg_ctl_timeout: None,
            recovery_conf: None,
            use_unix_socket: false,
            use_unix_socket_repl: false,
            custom_conf: None,
            pre_promote: None,
            before_stop: None,
            role_specific: Map::new(),
        }
    }

    /// A minimal section for unit tests of code that merges or reads it.
    #[cfg(test)]
    pub(crate) fn for_tests() -> Postgresql {
        Postgresql {
            listen: ListenAddress {
                hosts: vec!["127.0.0.1".into()],
                port: 5432,
            },
            connect_address: HostPort {
                host: "10.0.0.1".into(),
                port: 5432,
            },
            data_dir: "/tmp/data".into(),
            config_dir: "/tmp/data".into(),
            ..Postgresql::empty()
        }
    }
}

/// `tags`: properties of this member that the others respect.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Tags {
    /// Never become leader. Exclusive with `failover_priority`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nofailover: Option<bool>,
    /// Preference among equally up-to-date candidates; 0 = never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover_priority: Option<u32>,
    /// Preferred source for new replicas.
    pub clonefrom: bool,
    /// Fail the `/replica` health check (keep out of read load balancing).
    pub noloadbalance: bool,
    /// Stream from this member instead of the leader (cascading).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicatefrom: Option<String>,
    /// Never become a synchronous standby. Exclusive with `sync_priority`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nosync: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_priority: Option<u32>,
    /// Do not stream at all (archive recovery only).
    pub nostream: bool,
    /// User-defined tags, published as written.
    #[serde(flatten)]
    pub custom: BTreeMap<String, Value>,
}

impl Tags {
    /// Failover priority as Patroni computes it: `nofailover: true` is 0, an explicit
    /// `failover_priority` wins, otherwise 1.
    pub fn effective_failover_priority(&self) -> u32 {
        match (self.nofailover, self.failover_priority) {
            (Some(true), _) => 0,
            (_, Some(p)) => p,
            _ => 1,
        }
    }

    /// Whether this member may take part in a leader race.
    pub fn can_failover(&self) -> bool {
        self.effective_failover_priority() > 0
    }
}

/// `watchdog.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchdogMode {
    Off,
    #[default]
    Automatic,
    Required,
}

/// `watchdog`: a hardware/softdog timer that resets the machine if the supervisor hangs
/// while primary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Watchdog {
    pub mode: WatchdogMode,
    pub device: PathBuf,
    /// Seconds between the watchdog firing and the leader key expiring (-1: ttl / 2).
    pub safety_margin: i64,
}

impl Default for Watchdog {
    fn default() -> Watchdog {
        Watchdog {
            mode: WatchdogMode::Automatic,
            device: "/dev/watchdog".into(),
            safety_margin: 5,
        }
    }
}

/// `log.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogType {
    #[default]
    Plain,
    Json,
}

/// `log`: Patroni's logging settings. manning logs through `tracing`; `level` and `type`
/// map onto `--log-level` and `--log-format`, the rest is accepted for compatibility.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Log {
    #[serde(rename = "type")]
    pub log_type: LogType,
    /// DEBUG, INFO, WARN, WARNING, ERROR, FATAL or CRITICAL.
    pub level: String,
    pub traceback_level: String,
    /// Python logging format: a string or a list of fields.
    pub format: Option<Value>,
    pub dateformat: Option<String>,
    pub static_fields: BTreeMap<String, Value>,
    pub max_queue_size: u64,
    /// Write logs to files in this directory.
    pub dir: Option<PathBuf>,
    pub file_num: Option<u64>,
    pub file_size: Option<u64>,
    /// Permission bits of log files.
    pub mode: Option<u32>,
    pub loggers: BTreeMap<String, String>,
    pub deduplicate_heartbeat_logs: bool,
}

impl Default for Log {
    fn default() -> Log {
        Log {
            log_type: LogType::Plain,
            level: "INFO".into(),
            traceback_level: "ERROR".into(),
            format: None,
            dateformat: None,
            static_fields: BTreeMap::new(),
            max_queue_size: 1000,
            dir: None,
            file_num: None,
            file_size: None,
            mode: None,
            loggers: BTreeMap::new(),
            deduplicate_heartbeat_logs: false,
        }
    }
}

/// `manning`: settings of manning itself (Patroni ignores this section, so one file
/// serves both).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Manning {
    /// Seconds of safety before the leader lease can expire: the primary stops taking
    /// writes at last-keepalive-sent + ttl − fence_margin. Default 3, minimum 2.
    pub fence_margin: u64,
    /// Seconds to wait for a smart shutdown before escalating to fast. Default 5.
    pub smart_shutdown_timeout: u64,
    /// Seconds to wait for a fast shutdown before escalating to immediate. Default 60.
    pub fast_shutdown_timeout: u64,
    /// OS user that runs PostgreSQL. Default `postgres`.
    pub user: String,
}

impl Default for Manning {
    fn default() -> Manning {
        Manning {
            fence_margin: 3,
            smart_shutdown_timeout: 5,
            fast_shutdown_timeout: 60,
            user: "postgres".into(),
        }
    }
}

impl Manning {
    pub fn fence_margin(&self) -> Duration {
        Duration::from_secs(self.fence_margin)
    }
    pub fn smart_shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.smart_shutdown_timeout)
    }
    pub fn fast_shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.fast_shutdown_timeout)
    }
}

/// The whole local configuration, defaults applied.
#[derive(Clone, PartialEq, Serialize)]
pub struct Config {
    /// Cluster name; keys live under `<namespace>/<scope>/`.
    pub scope: String,
    /// Default `/service`.
    pub namespace: String,
    /// This member's name, unique in the cluster.
    pub name: String,
    pub restapi: RestApi,
    pub ctl: Ctl,
    pub etcd3: Etcd3,
    /// Absent: this member never bootstraps a new cluster.
    pub bootstrap: Option<Bootstrap>,
    pub postgresql: Postgresql,
    pub tags: Tags,
    pub watchdog: Watchdog,
    pub log: Log,
    pub manning: Manning,
    /// Key paths of plain-typed values that came from `{{ secret }}`: redacted in output.
    #[serde(skip)]
    pub(crate) secret_paths: BTreeSet<String>,
}

impl Config {
    /// The etcd key prefix of this cluster: `/<namespace>/<scope>` with repeated slashes
    /// collapsed, as Patroni builds it.
    pub fn base_path(&self) -> String {
        let joined = format!("/{}/{}", self.namespace, self.scope);
        let mut out = String::with_capacity(joined.len());
        for c in joined.chars() {
            if !(c == '/' && out.ends_with('/')) {
                out.push(c);
            }
        }
        out
    }

    /// The dynamic configuration this member runs with: defaults < `dcs` (the `/config`
    /// value; `bootstrap.dcs` while the DCS has none) < the local `postgresql` section,
    /// timeouts adjusted as Patroni does.
    pub fn effective_dynamic(&self, dcs: Option<&DynamicConfig>) -> DynamicConfig {
        self.effective_dynamic_with_warnings(dcs).0
    }

    /// [`Config::effective_dynamic`] plus the warnings about adjusted or refused values.
    pub fn effective_dynamic_with_warnings(
        &self,
        dcs: Option<&DynamicConfig>,
    ) -> (DynamicConfig, Vec<String>) {
        let source = match dcs {
            Some(d) if !d.is_empty() => Some(d),
            _ => self.bootstrap.as_ref().map(|b| &b.dcs),
        };
        dynamic::effective(source, Some(&self.postgresql))
    }

    /// What the bootstrapping member writes to `/config`: `bootstrap.dcs` as written,
    /// with the timeout adjustments applied (as Patroni writes it).
    pub fn initial_dcs_config(&self) -> Option<DynamicConfig> {
        let mut d = self.bootstrap.as_ref()?.dcs.clone();
        d.adjust_timeouts();
        Some(d)
    }

    /// The configuration as JSON for `config show`: `bootstrap.dcs` with every default
    /// filled in (what a new cluster starts with), secrets as `"<redacted>"` unless
    /// `show_secrets`.
    pub fn to_json(&self, show_secrets: bool) -> Value {
        let build = || {
            let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
            if let Some(b) = &self.bootstrap {
                let (filled, _) = dynamic::effective(Some(&b.dcs), None);
                if let Some(slot) = v.pointer_mut("/bootstrap/dcs") {
                    *slot = serde_json::to_value(&filled).unwrap_or(Value::Null);
                }
            }
            v
        };
        let mut v = if show_secrets {
            reveal_secrets(build)
        } else {
            build()
        };
        if !show_secrets {
            for path in &self.secret_paths {
                redact_path(&mut v, path);
            }
        }
        v
    }
}

/// Redact the value at a dotted key path (`a.b[2].c`) in `v`.
fn redact_path(v: &mut Value, path: &str) {
    let mut cur = v;
    for part in path.split('.') {
        let (key, indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            match cur.get_mut(key) {
                Some(next) => cur = next,
                None => return,
            }
        }
        for idx in indexes.split('[').filter(|s| !s.is_empty()) {
            let Some(i) = idx.trim_end_matches(']').parse::<usize>().ok() else {
                return;
            };
            match cur.get_mut(i) {
                Some(next) => cur = next,
                None => return,
            }
        }
    }
    *cur = Value::String(REDACTED.into());
}

/// Debug output is the redacted JSON: a `{:?}` of the configuration can never leak a
/// secret into a log.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Config {}", self.to_json(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            HostPort::parse("abc.patroni.host:15432").unwrap(),
            HostPort {
                host: "abc.patroni.host".into(),
                port: 15432
            }
        );
        let v6 = HostPort::parse("[::1]:8008").unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.to_string(), "[::1]:8008");
        assert_eq!(HostPort::parse("fe80::1:5432").unwrap().host, "fe80::1");
        assert!(HostPort::parse("host").is_err());
        assert!(HostPort::parse("host:0").is_err());
        assert!(HostPort::parse("host:70000").is_err());
        assert!(HostPort::parse(":5432").is_err());
        assert!(HostPort::parse("a b:1").is_err());
        assert!(HostPort::parse("a,b:1").is_err());
        assert!(HostPort::parse("0.0.0.0:1").unwrap().is_wildcard());
        assert!(HostPort::parse("127.0.0.2:1").unwrap().is_loopback());
        let l = ListenAddress::parse("127.0.0.1, 10.0.0.1:5432").unwrap();
        assert_eq!(l.listen_addresses(), "127.0.0.1,10.0.0.1");
        assert_eq!(l.to_string(), "127.0.0.1,10.0.0.1:5432");
        assert!(ListenAddress::parse("*,10.0.0.1:5432").is_err());
    }

    #[test]
    fn endpoints_follow_patroni_preference() {
        let mut e = Etcd3 {
            host: Some(HostPort::parse("etcd:2379").unwrap()),
            ..Default::default()
        };
        assert_eq!(e.endpoints(), ["http://etcd:2379"]);
        e.hosts = vec![
            HostPort::parse("a:1").unwrap(),
            HostPort::parse("b:2").unwrap(),
        ];
        e.protocol = Protocol::Https;
        assert_eq!(e.endpoints(), ["https://a:1", "https://b:2"]);
        e.url = Some("http://u:3".into());
        assert_eq!(e.endpoints(), ["http://u:3"]);
    }

    #[test]
    fn tags_priority() {
        let mut t = Tags::default();
        assert_eq!(t.effective_failover_priority(), 1);
        t.failover_priority = Some(5);
        assert_eq!(t.effective_failover_priority(), 5);
        t.nofailover = Some(true);
        assert!(!t.can_failover());
    }

    #[test]
    fn redaction_by_path() {
        let mut v = serde_json::json!({"a": {"b": [1, {"c": "x"}]}, "d": "y"});
        redact_path(&mut v, "a.b[1].c");
        redact_path(&mut v, "d");
        redact_path(&mut v, "missing.path");
        assert_eq!(
            v,
            serde_json::json!({"a": {"b": [1, {"c": REDACTED}]}, "d": REDACTED})
        );
    }
}
