//! SQL against the local server: the superuser connection over the UNIX socket, the probes
//! the HA loop needs, and the role/database management of bootstrap.
//!
//! Passwords never travel as SQL text: [`ensure_role`] computes the SCRAM-SHA-256 verifier
//! (or the md5 hash, when the server's `password_encryption` is md5) on our side and sends
//! that, in a session where statement logging is switched off, as Patroni does. Identifiers
//! and literals are always quoted ([`quote_ident`], [`quote_literal`]), so names and
//! passwords containing `'`, `"`, `%`, `#`, `\` or `$$` work. No statement is put in an error
//! message or log line by this module (and `tokio_postgres`'s own debug lines, which print
//! statements, are capped at INFO by [`crate::logging`]).

use std::path::PathBuf;
use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};
use tracing::{debug, info};

use super::{Lsn, Secret};

/// Errors of this module. Messages never contain SQL text or passwords.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("connecting to postgres at {socket_dir}:{port} as {user}: {source}")]
    Connect {
        socket_dir: String,
        port: u16,
        user: String,
        source: tokio_postgres::Error,
    },
    #[error("connecting to postgres at {socket_dir}:{port}: timed out after {timeout:?}")]
    ConnectTimeout {
        socket_dir: String,
        port: u16,
        timeout: Duration,
    },
    #[error("{what}: {source}")]
    Query {
        what: String,
        source: tokio_postgres::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl SqlError {
    /// True for configuration errors (bad role options or names): exit code 2.
    pub fn is_usage(&self) -> bool {
        matches!(self, SqlError::Invalid(_))
    }

    /// The SQLSTATE of a server error, if any.
    pub fn code(&self) -> Option<&SqlState> {
        match self {
            SqlError::Query { source, .. } | SqlError::Connect { source, .. } => source.code(),
            _ => None,
        }
    }
}

fn query_err(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> SqlError {
    let what = what.into();
    move |source| SqlError::Query { what, source }
}

/// How to reach the local server as the superuser (or, with [`LocalConn::tcp`], another
/// member's).
#[derive(Debug, Clone)]
pub struct LocalConn {
    /// `unix_socket_directories` (first absolute entry), or a TCP host name or address:
    /// libpq's rule, a value starting with `/` is a socket directory.
    pub socket_dir: PathBuf,
    pub port: u16,
    pub user: String,
    /// Needed unless `pg_hba.conf` trusts local connections.
    pub password: Option<Secret>,
    pub dbname: String,
    pub connect_timeout: Duration,
    /// Extra server options (`-c statement_timeout=2000` ...), if any.
    pub options: Option<String>,
}

impl LocalConn {
    /// Connection to `postgres` over `socket_dir`, 3 s connect timeout (Patroni's).
    pub fn new(
        socket_dir: impl Into<PathBuf>,
        port: u16,
        user: &str,
        password: Option<Secret>,
    ) -> LocalConn {
        LocalConn {
            socket_dir: socket_dir.into(),
            port,
            user: user.to_string(),
            password,
            dbname: "postgres".into(),
            connect_timeout: Duration::from_secs(3),
            options: None,
        }
    }

    /// Connection to `postgres` on another member over TCP.
    pub fn tcp(host: &str, port: u16, user: &str, password: Option<Secret>) -> LocalConn {
        LocalConn::new(host, port, user, password)
    }

    /// Connect; the connection task runs on the current tokio runtime.
    pub async fn connect(&self) -> Result<Client, SqlError> {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(self.socket_dir.to_string_lossy().as_ref())
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name("manning")
            .connect_timeout(self.connect_timeout);
        if let Some(pw) = &self.password {
            cfg.password(pw.expose());
        }
        if let Some(o) = &self.options {
            cfg.options(o);
        }
        let dir = self.socket_dir.display().to_string();
        let connecting = cfg.connect(NoTls);
        let (client, connection) =
            match tokio::time::timeout(self.connect_timeout + Duration::from_secs(1), connecting)
                .await
            {
                Err(_) => {
                    return Err(SqlError::ConnectTimeout {
                        socket_dir: dir,
                        port: self.port,
                        timeout: self.connect_timeout,
                    });
                }
                Ok(Err(source)) => {
                    return Err(SqlError::Connect {
                        socket_dir: dir,
                        port: self.port,
                        user: self.user.clone(),
                        source,
                    });
                }
                Ok(Ok(pair)) => pair,
            };
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(error = %e, "postgres connection closed");
            }
        });
        Ok(client)
    }
}

// ---------------------------------------------------------------------------------------
// Quoting

/// Quote an identifier: always in double quotes, `"` doubled (case is kept as written).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quote a string literal as postgres' `quote_literal` does: `'` doubled, and when the
/// value has a backslash, the `E'...'` form with backslashes doubled (correct whatever
/// `standard_conforming_strings` says).
pub fn quote_literal(value: &str) -> String {
    let body = value.replace('\'', "''");
    if value.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}

fn check_identifier(kind: &str, name: &str) -> Result<(), SqlError> {
    if name.is_empty() {
        return Err(SqlError::Invalid(format!("{kind} name is empty")));
    }
    if name.contains('\0') {
        return Err(SqlError::Invalid(format!(
            "{kind} name {name:?} contains a NUL byte"
        )));
    }
    if name.len() > 63 {
        return Err(SqlError::Invalid(format!(
            "{kind} name {name:?} is longer than 63 bytes (postgres would truncate it)"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Probes

/// The local server's state, as the HA loop and the REST API need it.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub in_recovery: bool,
    /// Primary: `pg_current_wal_lsn()` (written).
    pub current_wal_lsn: Option<Lsn>,
    /// Primary: `pg_current_wal_flush_lsn()` (durable).
    pub flush_wal_lsn: Option<Lsn>,
    /// Replica: `pg_last_wal_receive_lsn()`.
    pub receive_lsn: Option<Lsn>,
    /// Replica: `pg_last_wal_replay_lsn()`.
    pub replay_lsn: Option<Lsn>,
    /// Primary: the timeline of the current WAL file; replica: of the last checkpoint.
    pub timeline: Option<u32>,
    /// Replica: the timeline the WAL receiver streams, when it runs.
    pub received_timeline: Option<u32>,
    /// Replica: `pg_is_wal_replay_paused()`.
    pub replay_paused: Option<bool>,
    /// `pg_postmaster_start_time()` as seconds since the epoch, and as postgres prints it.
    pub postmaster_start_epoch: f64,
    pub postmaster_start_time: String,
    /// `server_version_num`, e.g. 150004.
    pub server_version: u32,
    /// `pg_control_system().system_identifier`.
    pub system_identifier: u64,
}

const PROBE_SQL: &str = "\
SELECT pg_catalog.pg_is_in_recovery(),
  CASE WHEN NOT pg_catalog.pg_is_in_recovery()
    THEN pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), '0/0')::bigint END,
  CASE WHEN NOT pg_catalog.pg_is_in_recovery()
    THEN pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_flush_lsn(), '0/0')::bigint END,
  pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_last_wal_receive_lsn(), '0/0')::bigint,
  pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_last_wal_replay_lsn(), '0/0')::bigint,
  CASE WHEN pg_catalog.pg_is_in_recovery()
    THEN (SELECT timeline_id FROM pg_catalog.pg_control_checkpoint())
    ELSE ('x' || pg_catalog.substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8))::bit(32)::int END,
  (SELECT received_tli FROM pg_catalog.pg_stat_get_wal_receiver()),
  CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_is_wal_replay_paused() END,
  extract(epoch FROM pg_catalog.pg_postmaster_start_time())::float8,
  pg_catalog.pg_postmaster_start_time()::text,
  pg_catalog.current_setting('server_version_num')::int,
  (SELECT system_identifier FROM pg_catalog.pg_control_system())";

fn lsn(v: Option<i64>) -> Option<Lsn> {
    v.map(|n| Lsn(n as u64))
}

fn tli(v: Option<i32>) -> Option<u32> {
    v.and_then(|n| u32::try_from(n).ok())
}

/// One round trip with everything in [`Probe`].
pub async fn probe(client: &Client) -> Result<Probe, SqlError> {
    let row = client
        .query_one(PROBE_SQL, &[])
        .await
        .map_err(query_err("probing the local postgres"))?;
    let get_err = |e| SqlError::Query {
        what: "reading the probe row".into(),
        source: e,
    };
    Ok(Probe {
        in_recovery: row.try_get(0).map_err(get_err)?,
        current_wal_lsn: lsn(row.try_get(1).map_err(get_err)?),
        flush_wal_lsn: lsn(row.try_get(2).map_err(get_err)?),
        receive_lsn: lsn(row.try_get(3).map_err(get_err)?),
        replay_lsn: lsn(row.try_get(4).map_err(get_err)?),
        timeline: tli(row.try_get(5).map_err(get_err)?),
        received_timeline: tli(row.try_get(6).map_err(get_err)?),
        replay_paused: row.try_get(7).map_err(get_err)?,
        postmaster_start_epoch: row.try_get(8).map_err(get_err)?,
        postmaster_start_time: row.try_get(9).map_err(get_err)?,
        server_version: row
            .try_get::<_, i32>(10)
            .map_err(get_err)?
            .try_into()
            .unwrap_or(0),
        // bigint on the SQL side; the identifier is unsigned, so reinterpret the bits.
        system_identifier: row.try_get::<_, i64>(11).map_err(get_err)? as u64,
    })
}

/// One row of `pg_stat_replication`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalSender {
    pub usename: Option<String>,
    pub application_name: Option<String>,
    pub client_addr: Option<String>,
    pub state: Option<String>,
    pub sync_state: Option<String>,
    pub sync_priority: Option<i32>,
    /// `flush_lsn` in bytes (what the standby has made durable).
    pub flush_lsn: Option<u64>,
}

/// The walsenders of the local primary (`pg_stat_replication`).
pub async fn walsenders(client: &Client) -> Result<Vec<WalSender>, SqlError> {
    let rows = client
        .query(
            "SELECT usename::text, application_name, host(client_addr), state, sync_state, \
                    sync_priority, pg_catalog.pg_wal_lsn_diff(flush_lsn, '0/0')::bigint \
             FROM pg_catalog.pg_stat_replication ORDER BY application_name",
            &[],
        )
        .await
        .map_err(query_err("reading pg_stat_replication"))?;
    let get_err = |e| SqlError::Query {
        what: "reading a pg_stat_replication row".into(),
        source: e,
    };
    rows.iter()
        .map(|r| {
            Ok(WalSender {
                usename: r.try_get(0).map_err(get_err)?,
                application_name: r.try_get(1).map_err(get_err)?,
                client_addr: r.try_get(2).map_err(get_err)?,
                state: r.try_get(3).map_err(get_err)?,
                sync_state: r.try_get(4).map_err(get_err)?,
                sync_priority: r.try_get(5).map_err(get_err)?,
                flush_lsn: r
                    .try_get::<_, Option<i64>>(6)
                    .map_err(get_err)?
                    .and_then(|v| u64::try_from(v).ok()),
            })
        })
        .collect()
}

/// `CHECKPOINT` (before a planned shutdown it makes the shutdown checkpoint short).
pub async fn checkpoint(client: &Client) -> Result<(), SqlError> {
    client
        .batch_execute("CHECKPOINT")
        .await
        .map_err(query_err("CHECKPOINT"))
}

// ---------------------------------------------------------------------------------------
// Roles

/// A role attribute from `bootstrap.users.*.options` (and the ones manning adds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleAttr {
    /// `SUPERUSER`, `NOCREATEDB`, ...: the keyword, upper case.
    Keyword(&'static str),
    /// `CONNECTION LIMIT n`
    ConnectionLimit(i32),
    /// `VALID UNTIL 'timestamp'`
    ValidUntil(String),
}

const KEYWORDS: &[&str] = &[
    "SUPERUSER",
    "NOSUPERUSER",
    "CREATEDB",
    "NOCREATEDB",
    "CREATEROLE",
    "NOCREATEROLE",
    "INHERIT",
    "NOINHERIT",
    "LOGIN",
    "NOLOGIN",
    "REPLICATION",
    "NOREPLICATION",
    "BYPASSRLS",
    "NOBYPASSRLS",
];

impl RoleAttr {
    /// Parse one option as written in patroni.yml (`createrole`, `CONNECTION LIMIT 5`,
    /// `valid until '2030-01-01'`), case-insensitive.
    pub fn parse(option: &str) -> Result<RoleAttr, SqlError> {
        let words: Vec<&str> = option.split_whitespace().collect();
        let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
        let bad = || {
            SqlError::Invalid(format!(
                "role option {option:?} is not one of {} or CONNECTION LIMIT n or VALID UNTIL 'timestamp'",
                KEYWORDS.join(", ")
            ))
        };
        match upper.as_slice() {
            [kw] => KEYWORDS
                .iter()
                .find(|k| **k == kw.as_str())
                .map(|k| RoleAttr::Keyword(k))
                .ok_or_else(bad),
            [c, l, n] if c == "CONNECTION" && l == "LIMIT" => n
                .parse::<i32>()
                .ok()
                .filter(|&n| n >= -1)
                .map(RoleAttr::ConnectionLimit)
                .ok_or_else(bad),
            [v, u, ..] if v == "VALID" && u == "UNTIL" => {
                let rest = option
                    .trim()
                    .splitn(3, char::is_whitespace)
                    .nth(2)
                    .unwrap_or("")
                    .trim();
                let ts = rest.trim_matches(|c| c == '\'' || c == '"');
                if ts.is_empty() || ts.contains('\0') {
                    return Err(bad());
                }
                Ok(RoleAttr::ValidUntil(ts.to_string()))
            }
            _ => Err(bad()),
        }
    }

    fn sql(&self) -> String {
        match self {
            RoleAttr::Keyword(k) => k.to_string(),
            RoleAttr::ConnectionLimit(n) => format!("CONNECTION LIMIT {n}"),
            RoleAttr::ValidUntil(ts) => format!("VALID UNTIL {}", quote_literal(ts)),
        }
    }
}

/// A role to create or bring up to date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSpec {
    pub name: String,
    pub password: Option<Secret>,
    pub attrs: Vec<RoleAttr>,
}

impl RoleSpec {
    /// Like Patroni's `create_or_update_role`: options are case-insensitive, and `LOGIN` is
    /// added unless `LOGIN` or `NOLOGIN` is given.
    pub fn new(
        name: &str,
        password: Option<Secret>,
        options: &[String],
    ) -> Result<RoleSpec, SqlError> {
        check_identifier("role", name)?;
        let mut attrs = options
            .iter()
            .map(|o| {
                RoleAttr::parse(o).map_err(|e| SqlError::Invalid(format!("role {name:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !attrs
            .iter()
            .any(|a| matches!(a, RoleAttr::Keyword("LOGIN" | "NOLOGIN")))
        {
            attrs.push(RoleAttr::Keyword("LOGIN"));
        }
        if password.as_ref().is_some_and(|p| p.expose().contains('\0')) {
            return Err(SqlError::Invalid(format!(
                "role {name:?}: the password contains a NUL byte"
            )));
        }
        Ok(RoleSpec {
            name: name.to_string(),
            password,
            attrs,
        })
    }
}

/// What [`ensure_role`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleChange {
    Created,
    Altered,
}

/// Which hash the server stores passwords as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordEncryption {
    ScramSha256,
    Md5,
}

/// The server's `password_encryption`.
pub async fn password_encryption(client: &Client) -> Result<PasswordEncryption, SqlError> {
    let row = client
        .query_one(
            "SELECT pg_catalog.current_setting('password_encryption')",
            &[],
        )
        .await
        .map_err(query_err("reading password_encryption"))?;
    let v: String = row
        .try_get(0)
        .map_err(query_err("reading password_encryption"))?;
    Ok(if v.eq_ignore_ascii_case("md5") {
        PasswordEncryption::Md5
    } else {
        PasswordEncryption::ScramSha256
    })
}

/// The string stored for `password` (what `ALTER ROLE ... PASSWORD` receives).
pub fn password_verifier(kind: PasswordEncryption, role: &str, password: &str) -> String {
    match kind {
        PasswordEncryption::ScramSha256 => {
            postgres_protocol::password::scram_sha_256(password.as_bytes())
        }
        PasswordEncryption::Md5 => postgres_protocol::password::md5(password.as_bytes(), role),
    }
}

/// Session settings that keep role statements out of the server's logs and statistics.
const QUIET: &str = "SET log_statement TO 'none'; SET log_min_duration_statement TO -1; \
                     SET log_min_error_statement TO 'panic'; \
                     SET pg_stat_statements.track_utility TO off; \
                     SET synchronous_commit TO 'local'";
const UNQUIET: &str = "RESET log_statement; RESET log_min_duration_statement; \
                       RESET log_min_error_statement; RESET pg_stat_statements.track_utility; \
                       RESET synchronous_commit";

/// Create the role, or alter it to have these attributes and password.
pub async fn ensure_role(client: &Client, spec: &RoleSpec) -> Result<RoleChange, SqlError> {
    check_identifier("role", &spec.name)?;
    let name = &spec.name;
    let mut clause: Vec<String> = spec.attrs.iter().map(RoleAttr::sql).collect();
    if let Some(pw) = &spec.password {
        let kind = password_encryption(client).await?;
        clause.push(format!(
            "PASSWORD {}",
            quote_literal(&password_verifier(kind, name, pw.expose()))
        ));
    }
    let clause = clause.join(" ");
    client
        .batch_execute(QUIET)
        .await
        .map_err(query_err("preparing the session for role changes"))?;
    let result = create_or_alter(client, name, &clause).await;
    let reset = client
        .batch_execute(UNQUIET)
        .await
        .map_err(query_err("resetting the session after role changes"));
    let change = result?;
    reset?;
    info!(role = %name, change = ?change, "role ensured");
    Ok(change)
}

async fn create_or_alter(
    client: &Client,
    name: &str,
    clause: &str,
) -> Result<RoleChange, SqlError> {
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1",
            &[&name],
        )
        .await
        .map_err(query_err(format!("looking up role {name:?}")))?
        .is_some();
    let ident = quote_ident(name);
    if !exists {
        match client
            .batch_execute(&format!("CREATE ROLE {ident} WITH {clause}"))
            .await
        {
            Ok(()) => return Ok(RoleChange::Created),
            // Created concurrently: fall through to ALTER.
            Err(e) if e.code() == Some(&SqlState::DUPLICATE_OBJECT) => {}
            Err(e) => return Err(query_err(format!("creating role {name:?}"))(e)),
        }
    }
    client
        .batch_execute(&format!("ALTER ROLE {ident} WITH {clause}"))
        .await
        .map_err(query_err(format!("altering role {name:?}")))?;
    Ok(RoleChange::Altered)
}

/// Set a role's password (the superuser's after initdb, for example).
pub async fn set_password(client: &Client, role: &str, password: &Secret) -> Result<(), SqlError> {
    let spec = RoleSpec {
        name: role.to_string(),
        password: Some(password.clone()),
        attrs: Vec::new(),
    };
    // No attributes: only the password changes. An empty WITH clause is valid SQL.
    ensure_role(client, &spec).await.map(|_| ())
}

/// Create a database owned by `owner` unless it exists; true when created.
pub async fn ensure_database(
    client: &Client,
    name: &str,
    owner: Option<&str>,
) -> Result<bool, SqlError> {
    check_identifier("database", name)?;
    if let Some(o) = owner {
        check_identifier("role", o)?;
    }
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .map_err(query_err(format!("looking up database {name:?}")))?
        .is_some();
    if exists {
        return Ok(false);
    }
    let mut sql = format!("CREATE DATABASE {}", quote_ident(name));
    if let Some(o) = owner {
        sql.push_str(&format!(" OWNER {}", quote_ident(o)));
    }
    client
        .batch_execute(&sql)
        .await
        .map_err(query_err(format!("creating database {name:?}")))?;
    info!(database = %name, "database created");
    Ok(true)
}

/// The functions pg_rewind needs when it runs as a dedicated non-superuser (PG ≥ 11).
pub const REWIND_FUNCTIONS: &[&str] = &[
    "pg_ls_dir(text, boolean, boolean)",
    "pg_stat_file(text, boolean)",
    "pg_read_binary_file(text)",
    "pg_read_binary_file(text, bigint, bigint, boolean)",
];

/// Grant the rewind user what pg_rewind uses, as Patroni does.
pub async fn grant_rewind(client: &Client, user: &str) -> Result<(), SqlError> {
    check_identifier("role", user)?;
    let mut sql = String::from("SET synchronous_commit TO 'local';");
    for f in REWIND_FUNCTIONS {
        sql.push_str(&format!(
            " GRANT EXECUTE ON FUNCTION pg_catalog.{f} TO {};",
            quote_ident(user)
        ));
    }
    sql.push_str(" RESET synchronous_commit");
    client.batch_execute(&sql).await.map_err(query_err(format!(
        "granting pg_rewind functions to {user:?}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert_eq!(quote_ident("admin"), "\"admin\"");
        assert_eq!(quote_ident("Ad\"min"), "\"Ad\"\"min\"");
        assert_eq!(quote_ident("a b;drop"), "\"a b;drop\"");
    }

    #[test]
    fn literals() {
        assert_eq!(quote_literal("plain"), "'plain'");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal(r"back\slash"), r"E'back\\slash'");
        assert_eq!(quote_literal(r#"'"%#\$$"#), r#"E'''"%#\\$$'"#);
        assert_eq!(quote_literal(""), "''");
    }

    #[test]
    fn role_options() {
        let spec = RoleSpec::new("admin", None, &["createrole".into(), "CreateDB".into()]).unwrap();
        assert_eq!(
            spec.attrs,
            [
                RoleAttr::Keyword("CREATEROLE"),
                RoleAttr::Keyword("CREATEDB"),
                RoleAttr::Keyword("LOGIN")
            ]
        );
        let spec = RoleSpec::new("r", None, &["nologin".into()]).unwrap();
        assert_eq!(spec.attrs, [RoleAttr::Keyword("NOLOGIN")]);
        assert_eq!(
            RoleAttr::parse("connection limit 5").unwrap(),
            RoleAttr::ConnectionLimit(5)
        );
        let v = RoleAttr::parse("VALID UNTIL '2030-01-01 00:00'").unwrap();
        assert_eq!(v, RoleAttr::ValidUntil("2030-01-01 00:00".into()));
        assert_eq!(v.sql(), "VALID UNTIL '2030-01-01 00:00'");
        for bad in [
            "PASSWORD 'x'",
            "createrole; drop table x",
            "connection limit x",
            "",
            "IN ROLE x",
        ] {
            let err = RoleAttr::parse(bad).unwrap_err();
            assert!(err.is_usage(), "{bad}");
        }
        let err = RoleSpec::new("admin", None, &["superduper".into()]).unwrap_err();
        assert!(err.to_string().contains("role \"admin\""), "{err}");
    }

    #[test]
    fn role_names_are_checked() {
        assert!(RoleSpec::new("", None, &[]).is_err());
        assert!(RoleSpec::new("a\0b", None, &[]).is_err());
        assert!(RoleSpec::new(&"x".repeat(64), None, &[]).is_err());
        assert!(RoleSpec::new(&"x".repeat(63), None, &[]).is_ok());
        assert!(RoleSpec::new("r", Some(Secret::new("a\0")), &[]).is_err());
    }

    #[test]
    fn verifiers_hide_the_password() {
        let pw = r#"p'"%#\$$w"#;
        let scram = password_verifier(PasswordEncryption::ScramSha256, "admin", pw);
        assert!(scram.starts_with("SCRAM-SHA-256$4096:"), "{scram}");
        assert!(!scram.contains(pw));
        assert!(!scram.contains('\'') && !scram.contains('\\'));
        let md5 = password_verifier(PasswordEncryption::Md5, "admin", pw);
        assert!(md5.starts_with("md5") && md5.len() == 35, "{md5}");
    }
}
