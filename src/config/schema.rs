//! Patroni's YAML schema: decoding the merged tree (file + environment) into [`Config`].
//!
//! Every section lists the keys Patroni knows (from `patroni/validator.py` and
//! `docs/yaml_configuration.rst`); an unknown key is an error that names the closest known
//! key, because Patroni would silently ignore it. Keys Patroni knows but manning has no
//! use for are accepted with a warning. Other DCS sections (`consul:`, `zookeeper:`, ...)
//! and Citus are rejected; `etcd:` (the v2 API) gets an error saying to use `etcd3:`.
//!
//! Required keys that are missing are reported with the position of the section that
//! should contain them; the decoder still returns a [`Config`] (with placeholders) so the
//! cross-field checks in `validate.rs` can report their problems in the same run. The
//! placeholders never leave this module: `load` fails when any error was found.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::decode::{Cx, fields};
use super::dynamic::{self, DynamicConfig};
use super::model::*;
use super::problem::Mark;
use super::yaml::{Kind, Node};

/// Defaults that depend on the machine, found by the caller.
pub(crate) struct MachineDefaults {
    /// The highest `/usr/lib/postgresql/<version>/bin`, if any.
    pub bin_dir: Option<PathBuf>,
}

/// Default data directory: inside the seed's `data:/patroni` volume.
pub const DEFAULT_DATA_DIR: &str = "/patroni/data";
/// Default REST API listen address (Patroni's documented port).
pub const DEFAULT_RESTAPI_LISTEN: &str = "0.0.0.0:8008";
/// Default namespace.
pub const DEFAULT_NAMESPACE: &str = "/service";

/// Options `initdb` must not get from the file (Patroni's list).
pub const INITDB_FORBIDDEN: &[&str] = &["pgdata", "nosync", "pwfile", "sync-only", "version"];
/// Options `pg_basebackup` must not get from the file (Patroni's list).
pub const BASEBACKUP_FORBIDDEN: &[&str] = &[
    "pgdata",
    "format",
    "wal-method",
    "xlog-method",
    "gzip",
    "version",
    "compress",
    "dbname",
    "host",
    "port",
    "username",
    "password",
];
/// Options `pg_rewind` must not get from the file (Patroni's list).
pub const REWIND_FORBIDDEN: &[&str] = &[
    "target-pgdata",
    "source-pgdata",
    "source-server",
    "write-recovery-conf",
    "dry-run",
    "restore-target-wal",
    "config-file",
    "no-ensure-shutdown",
    "version",
    "help",
];

/// Dynamic settings that people put at the top level by mistake (Patroni ignores them
/// there).
const DYNAMIC_TOP_KEYS: &[&str] = &[
    "ttl",
    "loop_wait",
    "retry_timeout",
    "maximum_lag_on_failover",
    "maximum_lag_on_syncnode",
    "primary_start_timeout",
    "primary_stop_timeout",
    "master_start_timeout",
    "master_stop_timeout",
    "primary_race_backoff",
    "synchronous_mode",
    "synchronous_mode_strict",
    "synchronous_node_count",
    "failsafe_mode",
    "check_timeline",
    "pause",
    "member_slots_ttl",
    "max_timelines_history",
    "slots",
    "ignore_slots",
    "standby_cluster",
];

/// DCS sections of other stores.
const OTHER_DCS: &[&str] = &["consul", "zookeeper", "exhibitor", "kubernetes", "raft"];

/// The decoded configuration and the key paths that were required but missing (their
/// values in the configuration are placeholders).
pub(crate) struct Decoded {
    pub config: Config,
    pub missing: BTreeSet<String>,
}

/// Required key paths found missing (their values are placeholders).
#[derive(Default)]
struct Required {
    missing: BTreeSet<String>,
}

impl Required {
    /// Report `path` as missing, at `at` (the section that should hold it).
    fn missing(&mut self, cx: &mut Cx, at: Mark, path: &str, hint: &str) {
        self.missing.insert(path.to_string());
        cx.report_path(
            at,
            super::problem::Severity::Error,
            path.to_string(),
            format!("is required{hint}"),
        );
    }

    /// `path` has no usable value, and its problem was already reported.
    fn unusable(&mut self, path: &str) {
        self.missing.insert(path.to_string());
    }
}

fn address(cx: &mut Cx, node: &Node) -> Option<HostPort> {
    let text = cx.string(node)?;
    match HostPort::parse(&text) {
        Ok(a) => Some(a),
        Err(e) => {
            let msg = format!("{e}{}", cx.got(node));
            cx.error(node.mark, msg);
            None
        }
    }
}

fn path_buf(cx: &mut Cx, node: &Node) -> Option<PathBuf> {
    cx.nonempty(node).map(PathBuf::from)
}

/// `etcd3.hosts`: a list of `host:port`, or one comma-separated string.
fn host_list(cx: &mut Cx, node: &Node) -> Option<Vec<HostPort>> {
    let items: Vec<(String, Mark)> = match &node.kind {
        Kind::Null => return None,
        Kind::Scalar(s) => s
            .text
            .split(',')
            .map(|h| (h.trim().to_string(), node.mark))
            .filter(|(h, _)| !h.is_empty())
            .collect(),
        Kind::Seq(items) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                if let Some(s) = cx.at(format!("[{i}]"), |cx| cx.string(item)) {
                    out.push((s, item.mark));
                }
            }
            out
        }
        Kind::Map(_) => {
            cx.invalid(node, "a list of host:port or a comma-separated string");
            return None;
        }
    };
    let mut out = Vec::new();
    for (i, (text, mark)) in items.iter().enumerate() {
        match HostPort::parse(text) {
            Ok(a) => out.push(a),
            Err(e) => cx.at(format!("[{i}]"), |cx| {
                cx.error(*mark, format!("{e} (got {text:?})"));
            }),
        }
    }
    if items.is_empty() {
        cx.error(node.mark, "lists no etcd endpoint");
    }
    Some(out)
}

fn url(cx: &mut Cx, node: &Node) -> Option<String> {
    let text = cx.nonempty(node)?;
    let rest = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() => Some(text),
        _ => {
            let msg = format!("must be an http:// or https:// URL{}", cx.got(node));
            cx.error(node.mark, msg);
            None
        }
    }
}

fn basic_auth(cx: &mut Cx, node: &Node) -> Option<BasicAuth> {
    let mut username = None;
    let mut password = None;
    fields!(cx, node, |e| {
        "username" => username = cx.string(&e.value),
        "password" => password = cx.secret(&e.value),
    });
    match (username, password) {
        (Some(username), Some(password)) => Some(BasicAuth { username, password }),
        (u, _) => {
            if !node.is_null() {
                let what = if u.is_none() { "username" } else { "password" };
                let at = cx.here(node);
                cx.error(
                    at,
                    format!("needs both username and password ({what} is missing)"),
                );
            }
            None
        }
    }
}

fn restapi(cx: &mut Cx, node: Option<&Node>, req: &mut Required) -> RestApi {
    let mut listen = None;
    let mut connect_address = None;
    let mut r = RestApi {
        listen: HostPort::parse(DEFAULT_RESTAPI_LISTEN).unwrap_or(HostPort {
            host: "0.0.0.0".into(),
            port: 8008,
        }),
        connect_address: HostPort {
            host: String::new(),
            port: 0,
        },
        authentication: None,
        certfile: None,
        keyfile: None,
        keyfile_password: None,
        cafile: None,
        ciphers: None,
        verify_client: VerifyClient::None,
        allowlist: Vec::new(),
        allowlist_include_members: false,
        http_extra_headers: BTreeMap::new(),
        https_extra_headers: BTreeMap::new(),
        request_queue_size: 5,
        server_tokens: ServerTokens::Original,
    };
    if let Some(node) = node {
        cx.enter("restapi");
        fields!(cx, node, |e| {
            "listen" => listen = address(cx, &e.value),
            "connect_address" => connect_address = address(cx, &e.value),
            "authentication" => r.authentication = basic_auth(cx, &e.value),
            "certfile" => r.certfile = path_buf(cx, &e.value),
            "keyfile" => r.keyfile = path_buf(cx, &e.value),
            "keyfile_password" => r.keyfile_password = cx.secret(&e.value),
            "cafile" => r.cafile = path_buf(cx, &e.value),
            "ciphers" => r.ciphers = cx.nonempty(&e.value),
            "verify_client" => if let Some(v) = cx.choice(&e.value, &[("none", VerifyClient::None), ("optional", VerifyClient::Optional), ("required", VerifyClient::Required)], false) { r.verify_client = v },
            "allowlist" => r.allowlist = cx.string_list(&e.value).unwrap_or_default(),
            "allowlist_include_members" => r.allowlist_include_members = cx.bool(&e.value).unwrap_or(false),
            "http_extra_headers" => r.http_extra_headers = cx.string_map(&e.value).unwrap_or_default(),
            "https_extra_headers" => r.https_extra_headers = cx.string_map(&e.value).unwrap_or_default(),
            "request_queue_size" => if let Some(v) = cx.int(&e.value, Some(0), Some(4096)) { r.request_queue_size = v as u32 },
            "server_tokens" => if let Some(v) = cx.choice(&e.value, &[("original", ServerTokens::Original), ("minimal", ServerTokens::Minimal), ("productonly", ServerTokens::ProductOnly)], true) { r.server_tokens = v },
            "thread_pool_size" => {
                cx.int(&e.value, Some(1), None);
                cx.ignored(e, "manning's REST API does not use a thread pool");
            },
        });
        cx.leave();
    }
    if let Some(l) = listen {
        r.listen = l;
    }
    match connect_address {
        Some(c) => r.connect_address = c,
        None => {
            if cx.mark_of("restapi.connect_address").is_none() {
                let at = cx.mark_of("restapi").unwrap_or_else(|| root_mark(cx));
                req.missing(cx, at, "restapi.connect_address", " (the address other members use for this member's REST API; or set PATRONI_RESTAPI_CONNECT_ADDRESS)");
            } else {
                req.unusable("restapi.connect_address");
            }
        }
    }
    r
}

fn root_mark(cx: &Cx) -> Mark {
    cx.mark_of("").unwrap_or_default()
}

fn ctl(cx: &mut Cx, node: &Node) -> Ctl {
    let mut c = Ctl::default();
    fields!(cx, node, |e| {
        "authentication" => c.authentication = basic_auth(cx, &e.value),
        "insecure" => c.insecure = cx.bool(&e.value).unwrap_or(false),
        "cacert" => c.cacert = path_buf(cx, &e.value),
        "certfile" => c.certfile = path_buf(cx, &e.value),
        "keyfile" => c.keyfile = path_buf(cx, &e.value),
        "keyfile_password" => c.keyfile_password = cx.secret(&e.value),
    });
    c
}

fn etcd3(cx: &mut Cx, node: &Node) -> Etcd3 {
    let mut e3 = Etcd3::default();
    let mut given: Vec<&str> = Vec::new();
    fields!(cx, node, |e| {
        "host" => { given.push("host"); e3.host = address(cx, &e.value) },
        "hosts" => { given.push("hosts"); e3.hosts = host_list(cx, &e.value).unwrap_or_default() },
        "url" => { given.push("url"); e3.url = url(cx, &e.value) },
        "proxy" => { given.push("proxy"); e3.proxy = url(cx, &e.value) },
        "srv" => cx.error(e.key_mark, "DNS SRV discovery is not supported by manning: list the endpoints in etcd3.hosts"),
        "srv_suffix" => cx.error(e.key_mark, "DNS SRV discovery is not supported by manning: list the endpoints in etcd3.hosts"),
        "use_proxies" => e3.use_proxies = cx.bool(&e.value).unwrap_or(false),
        "protocol" => if let Some(p) = cx.choice(&e.value, &[("http", Protocol::Http), ("https", Protocol::Https)], false) { e3.protocol = p },
        "username" => e3.username = cx.nonempty(&e.value),
        "password" => e3.password = cx.secret(&e.value),
        "cacert" => e3.cacert = path_buf(cx, &e.value),
        "cert" => e3.cert = path_buf(cx, &e.value),
        "key" => e3.key = path_buf(cx, &e.value),
    });
    let at = cx.mark_of("etcd3").unwrap_or(node.mark);
    if given.is_empty() && cx.mark_of("etcd3.srv").is_none() {
        cx.at("", |cx| {
            cx.error(
                at,
                "needs one of host, hosts, url or proxy (e.g. PATRONI_ETCD3_HOSTS)",
            )
        });
    } else if given.len() > 1 {
        let used = ["proxy", "url", "hosts", "host"]
            .into_iter()
            .find(|k| given.contains(k))
            .unwrap_or("host");
        cx.at("", |cx| {
            cx.warn(
                at,
                format!(
                    "{} are all set; `{used}` is used, as in Patroni",
                    join_and(&given)
                ),
            )
        });
    }
    if e3.password.is_some() && e3.username.is_none() {
        let at = cx.mark_of("etcd3.password").unwrap_or(at);
        cx.at("password", |cx| {
            cx.error(at, "is set without etcd3.username")
        });
    }
    if e3.key.is_some() && e3.cert.is_none() {
        let at = cx.mark_of("etcd3.key").unwrap_or(at);
        cx.at("key", |cx| cx.error(at, "is set without etcd3.cert"));
    }
    e3
}

/// `a and b`, `a, b and c`.
fn join_and(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn bootstrap_user(cx: &mut Cx, node: &Node) -> BootstrapUser {
    let mut u = BootstrapUser::default();
    fields!(cx, node, |e| {
        "password" => u.password = cx.secret(&e.value),
        "options" => u.options = cx.string_list(&e.value).unwrap_or_default(),
    });
    u
}

fn custom_bootstrap(cx: &mut Cx, node: &Node) -> Option<CustomBootstrap> {
    let mut command = None;
    let mut m = CustomBootstrap {
        command: String::new(),
        keep_existing_recovery_conf: false,
        no_params: false,
        recovery_conf: None,
        params: BTreeMap::new(),
    };
    fields!(cx, node, |e| {
        "command" => command = cx.nonempty(&e.value),
        "keep_existing_recovery_conf" => m.keep_existing_recovery_conf = cx.bool(&e.value).unwrap_or(false),
        "no_params" => m.no_params = cx.bool(&e.value).unwrap_or(false),
        "recovery_conf" => m.recovery_conf = cx.json_map(&e.value),
    } else |_known| {
        m.params.insert(e.key.clone(), cx.json(&e.value));
    });
    match command {
        Some(c) => {
            m.command = c;
            Some(m)
        }
        None => {
            let at = cx.here(node);
            cx.error(at, "a custom bootstrap method needs a `command`");
            None
        }
    }
}

fn bootstrap(cx: &mut Cx, node: &Node) -> Bootstrap {
    let method = node
        .get("method")
        .and_then(|n| n.scalar())
        .map(|s| s.text.clone())
        .filter(|m| m != "initdb");
    let mut b = Bootstrap {
        dcs: DynamicConfig::default(),
        method: None,
        methods: BTreeMap::new(),
        initdb: Vec::new(),
        pg_hba: Vec::new(),
        users: BTreeMap::new(),
        post_bootstrap: None,
    };
    let mut post_init = None;
    let mut dcs_seen = false;
    let bootstrap_at = cx.here(node);
    fields!(cx, node, |e| {
        "dcs" => { dcs_seen = true; b.dcs = dynamic::decode(cx, &e.value) },
        "method" => b.method = cx.nonempty(&e.value),
        "initdb" => b.initdb = cx.cmd_options(&e.value, "initdb", INITDB_FORBIDDEN).unwrap_or_default(),
        "pg_hba" => b.pg_hba = dynamic::hba_lines(cx, &e.value).unwrap_or_default(),
        "users" => {
            for u in cx.entries(&e.value) {
                cx.enter(&u.key);
                cx.record(u.key_mark);
                let user = bootstrap_user(cx, &u.value);
                b.users.insert(u.key.clone(), user);
                cx.leave();
            }
        },
        "post_bootstrap" => b.post_bootstrap = cx.nonempty(&e.value),
        "post_init" => post_init = cx.nonempty(&e.value),
    } else |known| {
        if method.as_deref() == Some(e.key.as_str()) {
            if let Some(m) = custom_bootstrap(cx, &e.value) {
                b.methods.insert(e.key.clone(), m);
            }
        } else {
            cx.unknown(e, known);
        }
    });
    if let Some(p) = post_init {
        if b.post_bootstrap.is_some() {
            let at = cx.mark_of("bootstrap.post_init").unwrap_or(bootstrap_at);
            cx.at("post_init", |cx| {
                cx.warn(at, "both post_bootstrap and post_init are set; post_bootstrap is used, as in Patroni")
            });
        } else {
            b.post_bootstrap = Some(p);
        }
    }
    if !dcs_seen {
        cx.at("dcs", |cx| {
            cx.error(bootstrap_at, "is required when `bootstrap` is given (it becomes the cluster's dynamic configuration)")
        });
    }
    if let Some(m) = &method {
        if !b.methods.contains_key(m) && node.get(m).is_none() {
            let at = cx.mark_of("bootstrap.method").unwrap_or(bootstrap_at);
            cx.at("method", |cx| {
                cx.error(at, format!("names the method `{m}` but there is no `bootstrap.{m}` section with its command"))
            });
        }
    }
    b
}

fn pg_user(cx: &mut Cx, node: &Node, required: bool) -> Option<PgUser> {
    let mut u = PgUser::default();
    let mut username = None;
    fields!(cx, node, |e| {
        "username" => username = cx.nonempty(&e.value),
        "password" => u.password = cx.secret(&e.value),
        "sslmode" => u.sslmode = cx.choice(&e.value, &[("disable", "disable"), ("allow", "allow"), ("prefer", "prefer"), ("require", "require"), ("verify-ca", "verify-ca"), ("verify-full", "verify-full")], false).map(String::from),
        "sslcert" => u.sslcert = cx.nonempty(&e.value),
        "sslkey" => u.sslkey = cx.nonempty(&e.value),
        "sslpassword" => u.sslpassword = cx.secret(&e.value),
        "sslrootcert" => u.sslrootcert = cx.nonempty(&e.value),
        "sslcrl" => u.sslcrl = cx.nonempty(&e.value),
        "sslcrldir" => u.sslcrldir = cx.nonempty(&e.value),
        "gssencmode" => u.gssencmode = cx.choice(&e.value, &[("disable", "disable"), ("prefer", "prefer"), ("require", "require")], false).map(String::from),
        "channel_binding" => u.channel_binding = cx.choice(&e.value, &[("disable", "disable"), ("prefer", "prefer"), ("require", "require")], false).map(String::from),
        "sslnegotiation" => u.sslnegotiation = cx.choice(&e.value, &[("postgres", "postgres"), ("direct", "direct")], false).map(String::from),
    });
    match username {
        Some(n) => {
            u.username = n;
            Some(u)
        }
        None => {
            if required || !node.is_null() {
                let path = format!("{}.username", cx.path());
                if cx.mark_of(&path).is_none() {
                    let at = cx.here(node);
                    cx.report_path(at, super::problem::Severity::Error, path, "is required");
                }
            }
            None
        }
    }
}

fn authentication(cx: &mut Cx, node: &Node, req: &mut Required) -> Authentication {
    let mut a = Authentication::default();
    let mut seen = (false, false);
    fields!(cx, node, |e| {
        "superuser" => { seen.0 = true; if let Some(u) = pg_user(cx, &e.value, true) { a.superuser = u } else { req.unusable("postgresql.authentication.superuser"); } },
        "replication" => { seen.1 = true; if let Some(u) = pg_user(cx, &e.value, true) { a.replication = u } else { req.unusable("postgresql.authentication.replication"); } },
        "rewind" => a.rewind = pg_user(cx, &e.value, false),
    });
    let at = cx.here(node);
    if !seen.0 {
        req.missing(
            cx,
            at,
            "postgresql.authentication.superuser",
            " (username and password of the PostgreSQL superuser; or PATRONI_SUPERUSER_USERNAME)",
        );
    }
    if !seen.1 {
        req.missing(
            cx,
            at,
            "postgresql.authentication.replication",
            " (username and password replicas use; or PATRONI_REPLICATION_USERNAME)",
        );
    }
    a
}

fn callbacks(cx: &mut Cx, node: &Node) -> Callbacks {
    let mut c = Callbacks::default();
    fields!(cx, node, |e| {
        "on_start" => c.on_start = cx.nonempty(&e.value),
        "on_stop" => c.on_stop = cx.nonempty(&e.value),
        "on_restart" => c.on_restart = cx.nonempty(&e.value),
        "on_reload" => c.on_reload = cx.nonempty(&e.value),
        "on_role_change" => c.on_role_change = cx.nonempty(&e.value),
    });
    c
}

fn bin_names(cx: &mut Cx, node: &Node) -> BinNames {
    let mut b = BinNames::default();
    fields!(cx, node, |e| {
        "pg_ctl" => if let Some(v) = cx.nonempty(&e.value) { b.pg_ctl = v },
        "initdb" => if let Some(v) = cx.nonempty(&e.value) { b.initdb = v },
        "pg_controldata" => if let Some(v) = cx.nonempty(&e.value) { b.pg_controldata = v },
        "pg_basebackup" => if let Some(v) = cx.nonempty(&e.value) { b.pg_basebackup = v },
        "postgres" => if let Some(v) = cx.nonempty(&e.value) { b.postgres = v },
        "pg_isready" => if let Some(v) = cx.nonempty(&e.value) { b.pg_isready = v },
        "pg_rewind" => if let Some(v) = cx.nonempty(&e.value) { b.pg_rewind = v },
    });
    b
}

fn replica_method(cx: &mut Cx, node: &Node) -> Option<ReplicaMethod> {
    let mut command = None;
    let mut m = ReplicaMethod {
        command: String::new(),
        keep_data: false,
        no_leader: false,
        no_params: false,
        params: BTreeMap::new(),
    };
    fields!(cx, node, |e| {
        "command" => command = cx.nonempty(&e.value),
        "keep_data" => m.keep_data = cx.bool(&e.value).unwrap_or(false),
        "no_leader" => m.no_leader = cx.bool(&e.value).unwrap_or(false),
        "no_params" => m.no_params = cx.bool(&e.value).unwrap_or(false),
    } else |_known| {
        m.params.insert(e.key.clone(), cx.json(&e.value));
    });
    match command {
        Some(c) => {
            m.command = c;
            Some(m)
        }
        None => {
            let at = cx.here(node);
            cx.error(at, "a replica creation method needs a `command`");
            None
        }
    }
}

const ROLE_SPECIFIC: &[&str] = &[
    "parameters_primary",
    "parameters_replica",
    "parameters_standby_leader",
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

fn postgresql(
    cx: &mut Cx,
    node: Option<&Node>,
    machine: &MachineDefaults,
    req: &mut Required,
) -> Postgresql {
    let methods: Vec<String> = node
        .and_then(|n| n.get("create_replica_methods"))
        .and_then(|n| match &n.kind {
            Kind::Seq(items) => Some(
                items
                    .iter()
                    .filter_map(|i| i.scalar().map(|s| s.text.clone()))
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_default();
    let mut listen = None;
    let mut connect_address = None;
    let mut data_dir = None;
    let mut config_dir = None;
    let mut bin_dir: Option<Option<PathBuf>> = None;
    let mut auth = None;
    let mut p = Postgresql::empty();
    if let Some(node) = node {
        cx.enter("postgresql");
        fields!(cx, node, |e| {
            "listen" => listen = cx.string(&e.value).and_then(|t| match ListenAddress::parse(&t) {
                Ok(l) => Some(l),
                Err(err) => { let m = format!("{err}{}", cx.got(&e.value)); cx.error(e.value.mark, m); None }
            }),
            "connect_address" => connect_address = address(cx, &e.value),
            "proxy_address" => p.proxy_address = address(cx, &e.value),
            "data_dir" => data_dir = path_buf(cx, &e.value),
            "config_dir" => config_dir = path_buf(cx, &e.value),
            "bin_dir" => bin_dir = Some(cx.string(&e.value).filter(|s| !s.trim().is_empty()).map(PathBuf::from)),
            "bin_name" => p.bin_name = bin_names(cx, &e.value),
            "pgpass" => p.pgpass = path_buf(cx, &e.value),
            "authentication" => auth = Some(authentication(cx, &e.value, req)),
            "callbacks" => p.callbacks = callbacks(cx, &e.value),
            "create_replica_methods" => p.create_replica_methods = cx.string_list(&e.value).unwrap_or_else(|| vec!["basebackup".into()]),
            "basebackup" => p.basebackup = cx.cmd_options(&e.value, "pg_basebackup", BASEBACKUP_FORBIDDEN).unwrap_or_default(),
            "rewind" => p.rewind = cx.cmd_options(&e.value, "pg_rewind", REWIND_FORBIDDEN).unwrap_or_default(),
            "parameters" => p.parameters = dynamic::parameters(cx, &e.value, true).unwrap_or_default(),
            "pg_hba" => p.pg_hba = dynamic::hba_lines(cx, &e.value),
            "pg_ident" => p.pg_ident = cx.string_list(&e.value),
            "use_pg_rewind" => p.use_pg_rewind = cx.bool(&e.value),
            "remove_data_directory_on_rewind_failure" => p.remove_data_directory_on_rewind_failure = cx.bool(&e.value),
            "remove_data_directory_on_diverged_timelines" => p.remove_data_directory_on_diverged_timelines = cx.bool(&e.value),
            "pg_ctl_timeout" => p.pg_ctl_timeout = cx.uint(&e.value, 0),
            "recovery_conf" => p.recovery_conf = cx.json_map(&e.value),
            "use_unix_socket" => p.use_unix_socket = cx.bool(&e.value).unwrap_or(false),
            "use_unix_socket_repl" => p.use_unix_socket_repl = cx.bool(&e.value).unwrap_or(false),
            "custom_conf" => p.custom_conf = path_buf(cx, &e.value),
            "pre_promote" => p.pre_promote = cx.nonempty(&e.value),
            "before_stop" => p.before_stop = cx.nonempty(&e.value),
            "use_slots" => {
                cx.bool(&e.value);
                cx.warn(e.key_mark, "use_slots is a global setting: set it in bootstrap.dcs.postgresql (the local value is ignored, as in Patroni)");
            },
        } else |known| {
            let key = e.key.as_str();
            if methods.iter().any(|m| m == key) && key != "basebackup" {
                if let Some(m) = replica_method(cx, &e.value) {
                    p.replica_methods.insert(e.key.clone(), m);
                }
            } else if ROLE_SPECIFIC.contains(&key) {
                if key.starts_with("parameters") {
                    let _ = cx.scalar_map(&e.value);
                } else {
                    let _ = cx.string_list(&e.value);
                }
                p.role_specific.insert(e.key.clone(), cx.json(&e.value));
            } else {
                let all: Vec<&str> = known.iter().chain(ROLE_SPECIFIC).copied().collect();
                cx.unknown(e, &all);
            }
        });
        let item_marks: Vec<Mark> = match node.get("create_replica_methods").map(|n| &n.kind) {
            Some(Kind::Seq(items)) => items.iter().map(|i| i.mark).collect(),
            _ => Vec::new(),
        };
        for (i, m) in p.create_replica_methods.iter().enumerate() {
            if m != "basebackup" && !p.replica_methods.contains_key(m) && node.get(m).is_none() {
                let at = item_marks
                    .get(i)
                    .copied()
                    .or_else(|| cx.mark_of("postgresql.create_replica_methods"))
                    .unwrap_or(node.mark);
                cx.at(format!("create_replica_methods[{i}]"), |cx| {
                    cx.error(
                        at,
                        format!(
                            "the method `{m}` needs a `postgresql.{m}` section with its command"
                        ),
                    )
                });
            }
        }
        cx.leave();
    }
    let section_mark = cx.mark_of("postgresql").unwrap_or_else(|| root_mark(cx));
    match listen {
        Some(l) => p.listen = l,
        None => {
            if cx.mark_of("postgresql.listen").is_none() {
                req.missing(
                    cx,
                    section_mark,
                    "postgresql.listen",
                    " (address and port PostgreSQL listens on; or PATRONI_POSTGRESQL_LISTEN)",
                );
            } else {
                req.unusable("postgresql.listen");
            }
        }
    }
    match connect_address {
        Some(c) => p.connect_address = c,
        None => {
            if cx.mark_of("postgresql.connect_address").is_none() {
                req.missing(cx, section_mark, "postgresql.connect_address", " (the address other members use for this PostgreSQL; or PATRONI_POSTGRESQL_CONNECT_ADDRESS)");
            } else {
                req.unusable("postgresql.connect_address");
            }
        }
    }
    match auth {
        Some(a) => p.authentication = a,
        None => req.missing(
            cx,
            section_mark,
            "postgresql.authentication",
            " (superuser and replication users)",
        ),
    }
    p.data_dir = match data_dir {
        Some(d) => d,
        None => {
            if cx.mark_of("postgresql.data_dir").is_none() {
                cx.at("postgresql.data_dir", |cx| {
                    cx.warn(section_mark, format!("not set; using the default {DEFAULT_DATA_DIR} (inside the seed's `data:/patroni` volume)"))
                });
            }
            PathBuf::from(DEFAULT_DATA_DIR)
        }
    };
    p.config_dir = config_dir.unwrap_or_else(|| p.data_dir.clone());
    p.bin_dir = match bin_dir {
        Some(explicit) => explicit,
        None => machine.bin_dir.clone(),
    };
    p
}

fn tags(cx: &mut Cx, node: &Node) -> Tags {
    let mut t = Tags::default();
    fields!(cx, node, |e| {
        "nofailover" => t.nofailover = cx.bool(&e.value),
        "failover_priority" => t.failover_priority = cx.int(&e.value, Some(0), Some(i64::from(u32::MAX))).map(|v| v as u32),
        "clonefrom" => t.clonefrom = cx.bool(&e.value).unwrap_or(false),
        "noloadbalance" => t.noloadbalance = cx.bool(&e.value).unwrap_or(false),
        "replicatefrom" => t.replicatefrom = cx.nonempty(&e.value),
        "nosync" => t.nosync = cx.bool(&e.value),
        "sync_priority" => t.sync_priority = cx.int(&e.value, Some(0), Some(i64::from(u32::MAX))).map(|v| v as u32),
        "nostream" => t.nostream = cx.bool(&e.value).unwrap_or(false),
    } else |known| {
        // Custom tags are allowed; one that is a near miss of a known tag is probably a typo.
        if let Some(close) = super::suggest::closest(&e.key, known.iter().copied()) {
            cx.warn(e.key_mark, format!("custom tag `{}` looks like a typo of `{close}`", e.key));
        }
        t.custom.insert(e.key.clone(), cx.json(&e.value));
    });
    for (a, b) in [
        ("nofailover", "failover_priority"),
        ("nosync", "sync_priority"),
    ] {
        if let (Some(_), Some(mb)) = (node.get(a), node.entry(b)) {
            cx.at(b, |cx| {
                cx.error(
                    mb.key_mark,
                    format!("give only one of `{a}` and `{b}` (Patroni refuses both)"),
                )
            });
        }
    }
    t
}

fn watchdog(cx: &mut Cx, node: &Node) -> Watchdog {
    let mut w = Watchdog::default();
    fields!(cx, node, |e| {
        "mode" => {
            // PyYAML reads a plain `off` as false, which Patroni accepts.
            let v = &e.value;
            let is_false = matches!(&v.kind, Kind::Scalar(s) if s.plain && matches!(super::yaml::resolve_plain(&s.text), super::yaml::Resolved::Bool(false)));
            if is_false {
                w.mode = WatchdogMode::Off;
            } else if let Some(m) = cx.choice(v, &[("off", WatchdogMode::Off), ("automatic", WatchdogMode::Automatic), ("required", WatchdogMode::Required)], true) {
                w.mode = m;
            }
        },
        "device" => if let Some(d) = path_buf(cx, &e.value) { w.device = d },
        "safety_margin" => if let Some(v) = cx.int(&e.value, Some(-1), None) { w.safety_margin = v },
    });
    w
}

fn log(cx: &mut Cx, node: &Node) -> Log {
    let mut l = Log::default();
    const LEVELS: &[(&str, &str)] = &[
        ("DEBUG", "DEBUG"),
        ("INFO", "INFO"),
        ("WARN", "WARN"),
        ("WARNING", "WARNING"),
        ("ERROR", "ERROR"),
        ("FATAL", "FATAL"),
        ("CRITICAL", "CRITICAL"),
    ];
    fields!(cx, node, |e| {
        "type" => if let Some(t) = cx.choice(&e.value, &[("plain", LogType::Plain), ("json", LogType::Json)], false) { l.log_type = t },
        "level" => if let Some(v) = cx.choice(&e.value, LEVELS, false) { l.level = v.into() },
        "traceback_level" => if let Some(v) = cx.choice(&e.value, &[("DEBUG", "DEBUG"), ("ERROR", "ERROR")], true) { l.traceback_level = v.into() },
        "format" => l.format = match &e.value.kind {
            Kind::Scalar(_) | Kind::Seq(_) => Some(cx.json(&e.value)),
            Kind::Null => None,
            Kind::Map(_) => { cx.invalid(&e.value, "a string or a list of fields"); None }
        },
        "dateformat" => l.dateformat = cx.nonempty(&e.value),
        "static_fields" => l.static_fields = cx.json_map(&e.value).unwrap_or_default(),
        "max_queue_size" => if let Some(v) = cx.uint(&e.value, 1) { l.max_queue_size = v },
        "dir" => l.dir = path_buf(cx, &e.value),
        "file_num" => l.file_num = cx.uint(&e.value, 1),
        "file_size" => l.file_size = cx.uint(&e.value, 1),
        "mode" => l.mode = cx.int(&e.value, Some(0), Some(0o777)).map(|v| v as u32),
        "loggers" => l.loggers = cx.string_map(&e.value).unwrap_or_default(),
        "deduplicate_heartbeat_logs" => l.deduplicate_heartbeat_logs = cx.bool(&e.value).unwrap_or(false),
    });
    l
}

fn manning(cx: &mut Cx, node: &Node) -> Manning {
    let mut m = Manning::default();
    fields!(cx, node, |e| {
        "fence_margin" => if let Some(v) = cx.uint(&e.value, 2) { m.fence_margin = v },
        "smart_shutdown_timeout" => if let Some(v) = cx.uint(&e.value, 1) { m.smart_shutdown_timeout = v },
        "fast_shutdown_timeout" => if let Some(v) = cx.uint(&e.value, 1) { m.fast_shutdown_timeout = v },
        "user" => if let Some(u) = cx.nonempty(&e.value) {
            if u.contains(|c: char| c.is_whitespace() || c == ':' || c == '/') {
                let msg = format!("is not a valid user name{}", cx.got(&e.value));
                cx.error(e.value.mark, msg);
            } else {
                m.user = u;
            }
        },
    });
    m
}

/// Decode the whole tree.
pub(crate) fn decode_config(cx: &mut Cx, root: &Node, machine: &MachineDefaults) -> Decoded {
    cx.marks.insert(String::new(), root.mark);
    if !matches!(root.kind, Kind::Map(_) | Kind::Null) {
        cx.invalid(root, "a mapping of settings (the top level of patroni.yml)");
    }
    let mut name = None;
    let mut scope = None;
    let mut namespace = None;
    let mut restapi_node: Option<&Node> = None;
    let mut postgresql_node: Option<&Node> = None;
    let mut ctl_v = Ctl::default();
    let mut etcd3_v: Option<Etcd3> = None;
    let mut bootstrap_v = None;
    let mut tags_v = Tags::default();
    let mut watchdog_v = Watchdog::default();
    let mut log_v = Log::default();
    let mut manning_v = Manning::default();
    fields!(cx, root, |e| {
        "name" => name = cx.nonempty(&e.value),
        "scope" => scope = cx.nonempty(&e.value),
        "namespace" => namespace = cx.nonempty(&e.value),
        "restapi" => { cx.entries(&e.value); restapi_node = Some(&e.value) },
        "ctl" => ctl_v = ctl(cx, &e.value),
        "etcd3" => etcd3_v = Some(etcd3(cx, &e.value)),
        "bootstrap" => bootstrap_v = Some(bootstrap(cx, &e.value)),
        "postgresql" => { cx.entries(&e.value); postgresql_node = Some(&e.value) },
        "tags" => tags_v = tags(cx, &e.value),
        "watchdog" => watchdog_v = watchdog(cx, &e.value),
        "log" => log_v = log(cx, &e.value),
        "manning" => manning_v = manning(cx, &e.value),
    } else |known| {
        let key = e.key.as_str();
        if key == "etcd" {
            cx.error(e.key_mark, "manning speaks the etcd v3 API only: rename `etcd:` to `etcd3:` (keys written through the v2 API are not visible through v3, so a cluster that used `etcd:` starts empty)");
        } else if OTHER_DCS.contains(&key) {
            cx.error(e.key_mark, format!("`{key}` is not supported: manning keeps the cluster state in etcd (use an `etcd3:` section)"));
        } else if key == "citus" {
            cx.error(e.key_mark, "Citus clusters are not supported by manning");
        } else if DYNAMIC_TOP_KEYS.contains(&key) {
            cx.warn(e.key_mark, format!("`{key}` belongs in the dynamic configuration (bootstrap.dcs, or `manning ctl edit-config` on a running cluster); a top-level value is ignored, as in Patroni"));
        } else if key == "thread_pool_size" || key == "thread_stack_size" {
            cx.ignored(e, "it tunes Patroni's Python threads");
        } else {
            cx.unknown(e, known);
        }
    });
    let mut req = Required::default();
    let root_at = Mark {
        source: root.mark.source,
        line: root.mark.line.min(1),
        col: root.mark.col.min(1),
    };
    let name = name.unwrap_or_else(|| {
        if cx.mark_of("name").is_none() {
            req.missing(
                cx,
                root_at,
                "name",
                " (this member's unique name; or set PATRONI_NAME)",
            );
        }
        req.unusable("name");
        String::new()
    });
    let scope = scope.unwrap_or_else(|| {
        if cx.mark_of("scope").is_none() {
            req.missing(
                cx,
                root_at,
                "scope",
                " (the cluster's name; or set PATRONI_SCOPE)",
            );
        }
        req.unusable("scope");
        String::new()
    });
    let restapi_v = restapi(cx, restapi_node, &mut req);
    let postgresql_v = postgresql(cx, postgresql_node, machine, &mut req);
    let etcd3_v = match etcd3_v {
        Some(e) => e,
        None => {
            req.missing(cx, root_at, "etcd3", " (where the cluster state lives: an `etcd3:` section with hosts, or PATRONI_ETCD3_HOSTS)");
            Etcd3::default()
        }
    };
    let config = Config {
        scope,
        namespace: namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
        name,
        restapi: restapi_v,
        ctl: ctl_v,
        etcd3: etcd3_v,
        bootstrap: bootstrap_v,
        postgresql: postgresql_v,
        tags: tags_v,
        watchdog: watchdog_v,
        log: log_v,
        manning: manning_v,
        secret_paths: BTreeSet::new(),
    };
    Decoded {
        config,
        missing: req.missing,
    }
}
