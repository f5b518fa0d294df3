//! The `PATRONI_*` environment overlay, applied as Patroni applies it.
//!
//! Patroni builds a configuration tree from environment variables
//! (`Config._build_environment_configuration` in `patroni/config.py`) and patches it over the
//! file (`patch_config`): environment values win over the file, a mapping is merged key by
//! key, anything else is replaced. Empty variables are ignored. We follow the same order of
//! consumption, so a variable is claimed by the first rule that matches it, exactly as
//! Patroni pops it from `os.environ`:
//!
//! 1. `PATRONI_NAME`, `PATRONI_NAMESPACE`, `PATRONI_SCOPE`;
//! 2. old log names (`PATRONI_LOGLEVEL`, `PATRONI_LOGFORMAT`, `PATRONI_LOG_DATEFMT`);
//! 3. `PATRONI_RESTAPI_*`, `PATRONI_CTL_*`, `PATRONI_POSTGRESQL_*`, `PATRONI_LOG_*`,
//!    `PATRONI_RAFT_*` and `PATRONI_POSTGRESQL_BIN_<binary>`;
//! 4. `PATRONI_{RESTAPI,CTL}_{USERNAME,PASSWORD}` and
//!    `PATRONI_{SUPERUSER,REPLICATION,REWIND}_<libpq option>`;
//! 5. DCS settings `PATRONI_<DCS>_<SUFFIX>` (e.g. `PATRONI_ETCD3_HOST`), and
//!    `PATRONI_ETCD3_{USERNAME,PASSWORD}`;
//! 6. what is left of the form `PATRONI_<user>_PASSWORD` / `_OPTIONS` becomes a
//!    `bootstrap.users` entry (Patroni 3 behaviour, kept because manning keeps
//!    `bootstrap.users`).
//!
//! Values are strings; the decoders accept strings wherever a number or a boolean is
//! expected, as Patroni's `parse_int`/`parse_bool` do. Lists and mappings
//! (`PATRONI_ETCD3_HOSTS`, `PATRONI_RESTAPI_ALLOWLIST`, `..._HTTP_EXTRA_HEADERS`) are parsed
//! as YAML, wrapped in `[…]`/`{…}` when not already. Unknown `PATRONI_*` variables get a
//! warning with the closest known name (Patroni ignores them silently).
//!
//! `PATRONI_CONFIGURATION` is not handled here: when it supplies the whole configuration,
//! Patroni ignores every other variable, and so does [`crate::config::load`].

use std::collections::BTreeMap;

use super::problem::{Mark, Problem, Severity, Sources};
use super::suggest;
use super::yaml::{self, Entry, Kind, Node};

const PREFIX: &str = "PATRONI_";

const RESTAPI: &[&str] = &[
    "listen",
    "connect_address",
    "certfile",
    "keyfile",
    "keyfile_password",
    "cafile",
    "ciphers",
    "verify_client",
    "http_extra_headers",
    "https_extra_headers",
    "allowlist",
    "allowlist_include_members",
    "request_queue_size",
    "server_tokens",
    "thread_pool_size",
];
const CTL: &[&str] = &[
    "insecure",
    "cacert",
    "certfile",
    "keyfile",
    "keyfile_password",
];
const POSTGRESQL: &[&str] = &[
    "listen",
    "connect_address",
    "proxy_address",
    "config_dir",
    "data_dir",
    "pgpass",
    "bin_dir",
];
const LOG: &[&str] = &[
    "type",
    "level",
    "traceback_level",
    "format",
    "dateformat",
    "static_fields",
    "max_queue_size",
    "dir",
    "mode",
    "file_size",
    "file_num",
    "loggers",
    "deduplicate_heartbeat_logs",
];
const RAFT: &[&str] = &[
    "data_dir",
    "self_addr",
    "partner_addrs",
    "password",
    "bind_addr",
];
const BINARIES: &[&str] = &[
    "pg_ctl",
    "initdb",
    "pg_controldata",
    "pg_basebackup",
    "postgres",
    "pg_isready",
    "pg_rewind",
];
/// libpq options accepted for `postgresql.authentication.<user>`.
pub const AUTH_PARAMETERS: &[&str] = &[
    "username",
    "password",
    "sslmode",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "gssencmode",
    "channel_binding",
    "sslnegotiation",
];
/// Suffixes of `PATRONI_<DCS>_<SUFFIX>` variables (Patroni's list).
const DCS_SUFFIXES: &[&str] = &[
    "HOST",
    "HOSTS",
    "PORT",
    "USE_PROXIES",
    "PROTOCOL",
    "SRV",
    "SRV_SUFFIX",
    "URL",
    "PROXY",
    "CACERT",
    "CERT",
    "KEY",
    "VERIFY",
    "TOKEN",
    "CHECKS",
    "DC",
    "CONSISTENCY",
    "REGISTER_SERVICE",
    "SERVICE_CHECK_INTERVAL",
    "SERVICE_CHECK_TLS_SERVER_NAME",
    "SERVICE_TAGS",
    "NAMESPACE",
    "CONTEXT",
    "USE_ENDPOINTS",
    "SCOPE_LABEL",
    "ROLE_LABEL",
    "POD_IP",
    "PORTS",
    "LABELS",
    "BYPASS_API_SERVICE",
    "RETRIABLE_HTTP_CODES",
    "KEY_PASSWORD",
    "USE_SSL",
    "SET_ACLS",
    "GROUP",
    "DATABASE",
    "LEADER_LABEL_VALUE",
    "FOLLOWER_LABEL_VALUE",
    "STANDBY_LEADER_LABEL_VALUE",
    "TMP_ROLE_LABEL",
];
/// Variables Patroni reads elsewhere (or that tune its Python runtime); manning accepts
/// them without effect.
const IGNORED: &[&str] = &[
    "PATRONI_CONFIGURATION",
    "PATRONI_THREAD_POOL_SIZE",
    "PATRONI_THREAD_STACK_SIZE",
    "PATRONI_CTL_USERNAME",
    "PATRONI_CTL_PASSWORD",
];

/// True for the names of variables whose values are secret.
pub fn is_secret_name(var: &str) -> bool {
    var.ends_with("PASSWORD")
}

/// The overlay built from the environment, and what was wrong with it.
pub struct Overlay {
    /// A mapping shaped like `patroni.yml`; empty when no variable applies.
    pub tree: Node,
    pub problems: Vec<Problem>,
}

struct Builder<'a> {
    vars: BTreeMap<String, String>,
    sources: &'a mut Sources,
    tree: Node,
    problems: Vec<Problem>,
    known: Vec<String>,
}

/// Build the overlay from `env` (only `PATRONI_*` variables are looked at).
pub fn overlay(env: &BTreeMap<String, String>, sources: &mut Sources) -> Overlay {
    let vars: BTreeMap<String, String> = env
        .iter()
        .filter(|(k, _)| k.starts_with(PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut b = Builder {
        vars,
        sources,
        tree: Node::map(Mark::default(), Vec::new()),
        problems: Vec::new(),
        known: IGNORED.iter().map(|s| s.to_string()).collect(),
    };
    b.run();
    Overlay {
        tree: b.tree,
        problems: b.problems,
    }
}

enum Parse {
    Str,
    List,
    Dict,
}

impl Builder<'_> {
    fn run(&mut self) {
        for key in ["name", "namespace", "scope"] {
            self.take(&key.to_uppercase(), &[key], Parse::Str);
        }
        for (new, old) in [
            ("LEVEL", "LOGLEVEL"),
            ("FORMAT", "LOGFORMAT"),
            ("DATEFORMAT", "LOG_DATEFMT"),
        ] {
            let old_var = format!("{PREFIX}{old}");
            self.known.push(old_var.clone());
            if let Some(v) = self.vars.remove(&old_var) {
                let new_var = format!("{PREFIX}LOG_{new}");
                if !v.is_empty() && !self.vars.contains_key(&new_var) {
                    self.vars.insert(new_var, v);
                }
            }
        }
        for (section, keys) in [
            ("restapi", RESTAPI),
            ("ctl", CTL),
            ("postgresql", POSTGRESQL),
            ("log", LOG),
            ("raft", RAFT),
        ] {
            for key in keys {
                let parse = match (section, *key) {
                    ("restapi", "allowlist") | ("raft", "partner_addrs") => Parse::List,
                    ("restapi", "http_extra_headers" | "https_extra_headers")
                    | ("log", "loggers" | "static_fields") => Parse::Dict,
                    _ => Parse::Str,
                };
                let var = format!("{}_{}", section, key).to_uppercase();
                self.take(&var, &[section, key], parse);
            }
        }
        for binary in BINARIES {
            let var = format!("POSTGRESQL_BIN_{binary}").to_uppercase();
            self.take(&var, &["postgresql", "bin_name", binary], Parse::Str);
        }
        for section in ["ctl", "restapi"] {
            for param in ["username", "password"] {
                let var = format!("{section}_{param}").to_uppercase();
                self.take(&var, &[section, "authentication", param], Parse::Str);
            }
        }
        for user in ["replication", "superuser", "rewind"] {
            for param in AUTH_PARAMETERS {
                let var = format!("{user}_{param}").to_uppercase();
                self.take(
                    &var,
                    &["postgresql", "authentication", user, param],
                    Parse::Str,
                );
            }
        }
        for dcs in ["ETCD", "ETCD3"] {
            for param in ["USERNAME", "PASSWORD"] {
                let var = format!("{dcs}_{param}");
                let path = [dcs.to_lowercase(), param.to_lowercase()];
                self.take(&var, &[path[0].as_str(), path[1].as_str()], Parse::Str);
            }
        }
        self.dcs_variables();
        self.bootstrap_users();
        self.leftovers();
    }

    /// Claim `PATRONI_<suffix>` for `path`, if set and non-empty.
    fn take(&mut self, suffix: &str, path: &[&str], parse: Parse) {
        let var = format!("{PREFIX}{suffix}");
        self.known.push(var.clone());
        let Some(value) = self.vars.remove(&var) else {
            return;
        };
        if value.is_empty() {
            return;
        }
        let source = self.sources.add(format!("${var}"));
        let mark = Mark::whole(source);
        let node = match parse {
            Parse::Str => {
                let mut n = Node::string(mark, value);
                n.secret = is_secret_name(&var);
                Some(n)
            }
            Parse::List => {
                let trimmed = value.trim();
                if trimmed.starts_with('-') || trimmed.contains('[') {
                    self.parse_value(&value, source, "a list", 0)
                } else {
                    self.parse_value(&format!("[{value}]"), source, "a list", 1)
                }
            }
            Parse::Dict => {
                if value.trim().starts_with('{') {
                    self.parse_value(&value, source, "a mapping", 0)
                } else {
                    self.parse_value(&format!("{{{value}}}"), source, "a mapping", 1)
                }
            }
        };
        if let Some(node) = node {
            insert(&mut self.tree, path, node);
        }
    }

    /// Parse a list or mapping given in a variable; `None` (with a problem) when it is not
    /// valid YAML.
    fn parse_value(&mut self, text: &str, source: u32, what: &str, wrapped: u32) -> Option<Node> {
        let (root, issues) = yaml::parse_value(text, source, wrapped);
        let mut ok = true;
        for i in issues {
            ok &= i.severity != Severity::Error;
            self.problems.push(Problem::at(
                self.sources,
                Mark::whole(source),
                i.severity,
                "",
                format!("cannot be read as {what}: {}", i.message),
            ));
        }
        if ok { root } else { None }
    }

    fn dcs_variables(&mut self) {
        let names: Vec<String> = self.vars.keys().cloned().collect();
        for var in names {
            let rest = &var[PREFIX.len()..];
            let Some((dcs, suffix)) = rest.split_once('_') else {
                continue;
            };
            if dcs.is_empty() || !DCS_SUFFIXES.contains(&suffix) {
                continue;
            }
            if dcs == "CITUS" && !matches!(suffix, "GROUP" | "DATABASE") {
                continue;
            }
            let parse = match suffix {
                "HOSTS" | "PORTS" | "CHECKS" | "SERVICE_TAGS" | "RETRIABLE_HTTP_CODES" => {
                    Parse::List
                }
                "LABELS" | "SET_ACLS" => Parse::Dict,
                _ => Parse::Str,
            };
            let (section, key) = (dcs.to_lowercase(), suffix.to_lowercase());
            let rest = rest.to_string();
            self.take(&rest, &[section.as_str(), key.as_str()], parse);
        }
        for dcs in ["ETCD3", "ETCD"] {
            for suffix in DCS_SUFFIXES {
                self.known.push(format!("{PREFIX}{dcs}_{suffix}"));
            }
        }
    }

    fn bootstrap_users(&mut self) {
        let names: Vec<String> = self.vars.keys().cloned().collect();
        for var in names {
            let Some(user) = var[PREFIX.len()..].strip_suffix("_PASSWORD") else {
                continue;
            };
            if user.is_empty() {
                continue;
            }
            let user = user.to_string();
            let Some(password) = self.vars.remove(&var) else {
                continue;
            };
            let options_var = format!("{PREFIX}{user}_OPTIONS");
            let options = self.vars.remove(&options_var);
            if password.is_empty() {
                continue;
            }
            let source = self.sources.add(format!("${var}"));
            let mut node = Node::string(Mark::whole(source), password);
            node.secret = true;
            insert(
                &mut self.tree,
                &["bootstrap", "users", &user, "password"],
                node,
            );
            if let Some(options) = options.filter(|o| !o.is_empty()) {
                let source = self.sources.add(format!("${options_var}"));
                let trimmed = options.trim();
                let (text, wrapped) = if trimmed.starts_with('-') || trimmed.contains('[') {
                    (options.clone(), 0)
                } else {
                    (format!("[{options}]"), 1)
                };
                if let Some(list) = self.parse_value(&text, source, "a list", wrapped) {
                    insert(
                        &mut self.tree,
                        &["bootstrap", "users", &user, "options"],
                        list,
                    );
                }
            }
        }
    }

    fn leftovers(&mut self) {
        let left: Vec<String> = self
            .vars
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        for var in left {
            if self.known.contains(&var) || var.ends_with("_OPTIONS") {
                continue;
            }
            let source = self.sources.add(format!("${var}"));
            let hint = suggest::did_you_mean(&var, self.known.iter().map(String::as_str));
            self.problems.push(Problem::at(
                self.sources,
                Mark::whole(source),
                Severity::Warning,
                "",
                format!("unknown environment variable, ignored{hint}"),
            ));
        }
    }
}

/// Put `value` at `path` in the mapping `tree`, creating mappings on the way.
fn insert(tree: &mut Node, path: &[&str], value: Node) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if !matches!(tree.kind, Kind::Map(_)) {
        tree.kind = Kind::Map(Vec::new());
    }
    let Some(entries) = tree.entries_mut() else {
        return;
    };
    let mark = value.mark;
    let idx = match entries.iter().position(|e| e.key == *first) {
        Some(i) => i,
        None => {
            entries.push(Entry {
                key: first.to_string(),
                key_mark: mark,
                value: Node::map(mark, Vec::new()),
            });
            entries.len() - 1
        }
    };
    if rest.is_empty() {
        entries[idx].value = value;
    } else {
        insert(&mut entries[idx].value, rest, value);
    }
}

/// Patroni's `patch_config`: merge `overlay` into `base`. Mappings merge key by key; a null
/// in the overlay deletes the key; anything else replaces.
pub fn patch(base: &mut Node, overlay: Node) {
    match (&mut base.kind, overlay.kind) {
        (Kind::Map(base_entries), Kind::Map(over_entries)) => {
            for e in over_entries {
                if e.value.is_null() {
                    base_entries.retain(|b| b.key != e.key);
                    continue;
                }
                match base_entries.iter_mut().find(|b| b.key == e.key) {
                    Some(b)
                        if matches!(b.value.kind, Kind::Map(_))
                            && matches!(e.value.kind, Kind::Map(_)) =>
                    {
                        patch(&mut b.value, e.value);
                    }
                    Some(b) => {
                        b.value = e.value;
                        b.key_mark = e.key_mark;
                    }
                    None => base_entries.push(e),
                }
            }
        }
        (_, kind) => {
            base.kind = kind;
            base.mark = overlay.mark;
            base.secret = overlay.secret;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn build(pairs: &[(&str, &str)]) -> (serde_json::Value, Vec<Problem>, Node) {
        let mut s = Sources::new();
        let o = overlay(&env(pairs), &mut s);
        (o.tree.to_json(), o.problems, o.tree)
    }

    #[test]
    fn seed_compose_environment() {
        let (j, problems, _) = build(&[
            ("PATRONI_NAME", "manager_abc123"),
            ("PATRONI_NAMESPACE", "/manning"),
            (
                "PATRONI_POSTGRESQL_CONNECT_ADDRESS",
                "abc123.patroni.host:15432",
            ),
            (
                "PATRONI_RESTAPI_CONNECT_ADDRESS",
                "abc123.patroni.host:15432",
            ),
            ("PATRONI_POSTGRESQL_LISTEN", "0.0.0.0:15432"),
            ("PATRONI_SCOPE", "enterprises"),
            ("PATRONI_ETCD3_HOST", "etcd:2379"),
            ("PATH", "/usr/bin"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            j,
            serde_json::json!({
                "name": "manager_abc123",
                "namespace": "/manning",
                "scope": "enterprises",
                "restapi": {"connect_address": "abc123.patroni.host:15432"},
                "postgresql": {
                    "connect_address": "abc123.patroni.host:15432",
                    "listen": "0.0.0.0:15432"
                },
                "etcd3": {"host": "etcd:2379"}
            })
        );
    }

    #[test]
    fn credentials_lists_dicts_and_users() {
        let (j, problems, tree) = build(&[
            ("PATRONI_SUPERUSER_USERNAME", "postgres"),
            ("PATRONI_SUPERUSER_PASSWORD", "s3cret"),
            ("PATRONI_REPLICATION_SSLMODE", "require"),
            ("PATRONI_RESTAPI_USERNAME", "api"),
            ("PATRONI_RESTAPI_ALLOWLIST", "10.0.0.0/8, 127.0.0.1"),
            ("PATRONI_RESTAPI_HTTP_EXTRA_HEADERS", "X-A: b"),
            ("PATRONI_ETCD3_HOSTS", "'h1:2379','h2:2379'"),
            ("PATRONI_ETCD3_PASSWORD", "etcdpw"),
            ("PATRONI_admin_PASSWORD", "adminpw"),
            ("PATRONI_admin_OPTIONS", "createrole,createdb"),
            ("PATRONI_POSTGRESQL_BIN_PG_CTL", "pg_ctl.custom"),
            ("PATRONI_LOGLEVEL", "DEBUG"),
            ("PATRONI_EMPTY_IGNORED_NAME", ""),
        ]);
        assert_eq!(
            j["postgresql"]["authentication"]["superuser"]["password"],
            "s3cret"
        );
        assert_eq!(
            j["postgresql"]["authentication"]["replication"]["sslmode"],
            "require"
        );
        assert_eq!(j["postgresql"]["bin_name"]["pg_ctl"], "pg_ctl.custom");
        assert_eq!(j["restapi"]["authentication"]["username"], "api");
        assert_eq!(
            j["restapi"]["allowlist"],
            serde_json::json!(["10.0.0.0/8", "127.0.0.1"])
        );
        assert_eq!(
            j["restapi"]["http_extra_headers"],
            serde_json::json!({"X-A": "b"})
        );
        assert_eq!(
            j["etcd3"]["hosts"],
            serde_json::json!(["h1:2379", "h2:2379"])
        );
        assert_eq!(j["etcd3"]["password"], "etcdpw");
        assert_eq!(j["bootstrap"]["users"]["admin"]["password"], "adminpw");
        assert_eq!(
            j["bootstrap"]["users"]["admin"]["options"],
            serde_json::json!(["createrole", "createdb"])
        );
        assert_eq!(j["log"]["level"], "DEBUG");
        let pw = tree
            .get("postgresql")
            .and_then(|p| p.get("authentication"))
            .and_then(|a| a.get("superuser"))
            .and_then(|s| s.get("password"))
            .unwrap();
        assert!(pw.secret);
        assert!(tree.get("etcd3").unwrap().get("password").unwrap().secret);
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn unknown_variables_warn_with_a_suggestion() {
        let (_, problems, _) = build(&[("PATRONI_RESTAPI_CONNECT_ADRESS", "x:1")]);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].severity, Severity::Warning);
        assert_eq!(problems[0].file, "$PATRONI_RESTAPI_CONNECT_ADRESS");
        assert!(
            problems[0]
                .message
                .contains("did you mean `PATRONI_RESTAPI_CONNECT_ADDRESS`"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn other_dcs_variables_create_their_sections() {
        let (j, _, _) = build(&[
            ("PATRONI_ETCD_HOST", "e:2379"),
            ("PATRONI_CONSUL_HOST", "c:8500"),
        ]);
        assert_eq!(j["etcd"]["host"], "e:2379");
        assert_eq!(j["consul"]["host"], "c:8500");
    }

    #[test]
    fn patch_merges_maps_replaces_values_and_deletes_on_null() {
        let base = yaml::parse("a: {x: 1, y: 2}\nb: [1]\nc: 3\n", 0, &|_, c| c)
            .0
            .unwrap();
        let over = yaml::parse("a: {y: 9, z: 3}\nb: {k: v}\nc: ~\n", 1, &|_, c| c)
            .0
            .unwrap();
        let mut merged = base;
        patch(&mut merged, over);
        assert_eq!(
            merged.to_json(),
            serde_json::json!({"a": {"x": 1, "y": 9, "z": 3}, "b": {"k": "v"}})
        );
        assert_eq!(
            merged.get("a").unwrap().entry("y").unwrap().key_mark.source,
            1
        );
    }
}
