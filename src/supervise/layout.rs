//! What the supervisor derives from the configuration before it starts: paths, the
//! postgres binaries, connection settings, and the specs the postgres, DCS and API modules
//! take. All pure (no IO beyond looking at the file system for defaults), so the mapping
//! from Patroni's keys to manning's modules is tested without starting anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::config::{Config, DynamicConfig};
use crate::dcs::{DcsSettings, Etcd3Section};
use crate::postgres::conf::{ConnInfo, ParamInputs};
use crate::postgres::{Credentials, PgBin};

/// Where Debian's postgres looks for its socket by default; a plain `psql` finds it there.
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// Paths and addresses of this member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub data_dir: PathBuf,
    pub bin: PgBin,
    /// First `unix_socket_directories` entry: our superuser connection goes through it.
    pub socket_dir: PathBuf,
    /// `postgresql.listen`'s port.
    pub port: u16,
    /// Where temporary password files (initdb's pwfile, PGPASSFILE for scripts) are made.
    pub secret_dir: PathBuf,
}

impl Layout {
    /// Derive the layout. `socket_dir_usable` says whether the default socket directory can
    /// be used (created or written by us); when not, the data directory's parent is used.
    pub fn from_config(cfg: &Config, default_socket_dir_usable: bool) -> Layout {
        let pg = &cfg.postgresql;
        let data_dir = pg.data_dir.clone();
        let bin = PgBin::new(pg.bin_dir.clone().unwrap_or_default());
        let configured_socket = pg
            .parameters
            .get("unix_socket_directories")
            .map(value_to_conf)
            .and_then(|v| {
                v.split(',')
                    .map(str::trim)
                    .find(|d| d.starts_with('/'))
                    .map(PathBuf::from)
            });
        let socket_dir = configured_socket.unwrap_or_else(|| {
            if default_socket_dir_usable {
                PathBuf::from(DEFAULT_SOCKET_DIR)
            } else {
                data_dir
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from("/tmp"))
            }
        });
        Layout {
            bin,
            socket_dir,
            port: pg.listen.port,
            secret_dir: std::env::temp_dir(),
            data_dir,
        }
    }

    /// `true` when `<data_dir>/PG_VERSION` exists: initdb has run here.
    pub fn data_dir_initialized(&self) -> bool {
        self.data_dir.join("PG_VERSION").is_file()
    }
}

/// A postgresql.conf value from a YAML/JSON scalar, as Patroni writes it: booleans become
/// `on`/`off`, numbers and strings their text.
pub fn value_to_conf(v: &Value) -> String {
    match v {
        Value::Bool(true) => "on".into(),
        Value::Bool(false) => "off".into(),
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn conf_map(m: Option<&BTreeMap<String, Value>>) -> BTreeMap<String, String> {
    m.map(|m| {
        m.iter()
            .map(|(k, v)| (k.clone(), value_to_conf(v)))
            .collect()
    })
    .unwrap_or_default()
}

/// Inputs for [`crate::postgres::conf::server_parameters`]: dynamic parameters from the
/// effective dynamic configuration, local ones from `postgresql.parameters`.
pub fn param_inputs(cfg: &Config, dynamic: &DynamicConfig, layout: &Layout) -> ParamInputs {
    let pg = dynamic.pg();
    let mut local = conf_map(Some(&cfg.postgresql.parameters));
    local
        .entry("unix_socket_directories".into())
        .or_insert_with(|| layout.socket_dir.display().to_string());
    ParamInputs {
        dynamic: conf_map(pg.parameters.as_ref()),
        local,
        listen: cfg.postgresql.listen.to_string(),
        cluster_name: cfg.scope.clone(),
        default_socket_dir: layout.socket_dir.clone(),
    }
}

/// `postgresql.recovery_conf` from the dynamic configuration, as postgresql.conf values.
pub fn recovery_extra(dynamic: &DynamicConfig) -> BTreeMap<String, String> {
    conf_map(dynamic.pg().recovery_conf.as_ref())
}

/// `postgresql.authentication.superuser`.
pub fn superuser(cfg: &Config) -> Credentials {
    let su = &cfg.postgresql.authentication.superuser;
    Credentials {
        username: su.username.clone(),
        password: su.password.clone(),
    }
}

/// `postgres://host:port/postgres` as Patroni writes `conn_url` (no credentials).
pub fn conn_url(cfg: &Config) -> String {
    format!("postgres://{}/postgres", cfg.postgresql.connect_address)
}

/// The persistent pass file a replica's `primary_conninfo` names (`postgresql.pgpass`, or a
/// private file per member in the temp directory).
pub fn pgpass_path(cfg: &Config, layout: &Layout) -> PathBuf {
    cfg.postgresql.pgpass.clone().unwrap_or_else(|| {
        layout
            .secret_dir
            .join(format!("manning-pgpass-{}-{}", cfg.scope, cfg.name))
    })
}

/// `primary_conninfo` for streaming from `host:port` as the replication user. The password
/// is in `passfile`, never here (postgresql.conf is readable by more than we like).
pub fn primary_conninfo(cfg: &Config, host: &str, port: u16, passfile: &Path) -> ConnInfo {
    ConnInfo::new()
        .set("host", host)
        .set("port", port.to_string())
        .set(
            "user",
            cfg.postgresql.authentication.replication.username.clone(),
        )
        .set("passfile", passfile.display().to_string())
        .set("application_name", cfg.name.clone())
        .set("sslmode", "prefer")
}

/// `http(s)://host:port/patroni` as Patroni writes `api_url`.
pub fn api_url(cfg: &Config) -> String {
    let scheme = if cfg.restapi.certfile.is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{}/patroni", cfg.restapi.connect_address)
}

/// The DCS settings for this member from the `etcd3` section and the dynamic timeouts.
pub fn dcs_settings(
    cfg: &Config,
    dynamic: &DynamicConfig,
) -> Result<DcsSettings, crate::dcs::SettingsError> {
    let e = &cfg.etcd3;
    let section = Etcd3Section {
        host: e.host.as_ref().map(ToString::to_string),
        hosts: e.hosts.iter().map(ToString::to_string).collect(),
        port: None,
        url: e.url.clone(),
        proxy: e.proxy.clone(),
        protocol: Some(
            match e.protocol {
                crate::config::model::Protocol::Http => "http",
                crate::config::model::Protocol::Https => "https",
            }
            .to_string(),
        ),
        cacert: e.cacert.clone(),
        cert: e.cert.clone(),
        key: e.key.clone(),
        username: e.username.clone(),
        password: e.password.as_ref().map(|p| p.expose().to_string()),
    };
    DcsSettings::from_etcd3(
        &section,
        Some(&cfg.namespace),
        &cfg.scope,
        &cfg.name,
        Duration::from_secs(dynamic.ttl()),
        Duration::from_secs(dynamic.retry_timeout()),
    )
}

/// The effective tags as Patroni publishes them (only the set ones).
pub fn tags(cfg: &Config) -> serde_json::Map<String, Value> {
    match serde_json::to_value(&cfg.tags) {
        Ok(Value::Object(m)) => m
            .into_iter()
            .filter(|(_, v)| !v.is_null() && *v != Value::Bool(false))
            .collect(),
        _ => serde_json::Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_values_as_patroni_writes_them() {
        assert_eq!(value_to_conf(&Value::Bool(true)), "on");
        assert_eq!(value_to_conf(&Value::Bool(false)), "off");
        assert_eq!(value_to_conf(&serde_json::json!(256)), "256");
        assert_eq!(value_to_conf(&serde_json::json!("replica")), "replica");
        assert_eq!(value_to_conf(&serde_json::json!(0.5)), "0.5");
    }
}
