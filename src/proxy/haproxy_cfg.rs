//! The subset of HAProxy's configuration language that `manning proxy` reads.
//!
//! The seed stack's `haproxy.cfg` (and the configs Patroni ships) must drive the proxy
//! unchanged, so this parser accepts HAProxy's syntax for what those files use and rejects
//! everything else with `FILE:LINE: ...`, naming the directive. Rejecting is deliberate: a
//! directive that was silently ignored would change routing without anyone noticing.
//!
//! Supported:
//! - `global`: `maxconn N`; `log ...` (accepted; manning logs to stderr).
//! - `defaults` and `listen NAME [ADDR]` sections: `mode tcp|http`, `retries N`,
//!   `timeout client|server|connect|check|queue T`, `log global`, `balance roundrobin`,
//!   `option httpchk [[METHOD] URI [VERSION]]`, `http-check expect [!] status CODES`,
//!   `default-server PARAMS`.
//! - `listen` only: `bind ADDR[,ADDR...] [mode OCTAL]` (TCP `*:port`, `addr:port`,
//!   `[v6]:port`, UNIX `/path` or `unix@/path`), `server NAME HOST:PORT PARAMS`.
//! - Server parameters: `check`, `no-check`, `port P`, `inter T`, `fastinter T`,
//!   `downinter T`, `rise N`, `fall N`, `maxconn N`, `on-marked-down shutdown-sessions`,
//!   `init-state up|fully-up|down|fully-down`, `weight 1`.
//! - A `listen` with `stats enable` is a status page: `mode http`, `bind`, `stats uri`,
//!   `stats auth USER:PASS` (several allowed), `stats refresh T`, `stats realm R`,
//!   `stats hide-version`.
//!
//! Syntax follows HAProxy: words separated by blanks, `#` starts a comment, backslash
//! escapes, single quotes (literal) and double quotes (with `${VAR}` expansion). Times are
//! integers with an optional unit `us`, `ms`, `s`, `m`, `h`, `d` (default milliseconds).
//!
//! The parser does no IO: [`parse`] takes the text and an environment lookup.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use crate::net::Endpoint;

/// A configuration error: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {msg}")]
pub struct ConfigError {
    /// The file name as given by the user.
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    pub msg: String,
}

/// The parsed configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `global maxconn`: the process-wide cap on concurrent connections.
    pub global_maxconn: Option<u32>,
    /// The proxying `listen` sections, in file order.
    pub listens: Vec<Listen>,
    /// The status-page `listen` sections (`stats enable`), in file order.
    pub stats: Vec<StatsListen>,
    /// Directives accepted without effect, with their line (for one info line at start).
    pub accepted_without_effect: Vec<(usize, String)>,
}

/// Timeouts of a section (unset ones are `None`: no timeout, as in HAProxy).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// Inactivity of the client side.
    pub client: Option<Duration>,
    /// Inactivity of the server side.
    pub server: Option<Duration>,
    /// Connecting to a server (also the check's connect timeout, capped by `inter`).
    pub connect: Option<Duration>,
    /// Reading a check's answer once connected (else `inter` bounds the whole check).
    pub check: Option<Duration>,
    /// Waiting in the queue for a free server slot (default: `connect`).
    pub queue: Option<Duration>,
}

impl Timeouts {
    /// `timeout queue`, or `timeout connect` when unset (HAProxy's rule).
    pub fn queue_or_connect(&self) -> Option<Duration> {
        self.queue.or(self.connect)
    }
}

/// How servers are health-checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// A TCP connect only (`check` without `option httpchk`).
    Tcp,
    /// An HTTP request (`option httpchk`).
    Http(HttpCheck),
}

/// The HTTP check request and its pass rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    pub method: String,
    pub uri: String,
    pub version: String,
    /// `http-check expect`; `None` means HAProxy's default: 2xx and 3xx pass.
    pub expect: Option<StatusExpect>,
}

impl Default for HttpCheck {
    fn default() -> Self {
        HttpCheck {
            method: "OPTIONS".into(),
            uri: "/".into(),
            version: "HTTP/1.0".into(),
            expect: None,
        }
    }
}

/// `http-check expect [!] status CODES`: a list of codes and ranges, maybe negated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusExpect {
    /// `!`: a match means failure.
    pub negate: bool,
    /// Inclusive ranges; a single code is `(c, c)`.
    pub ranges: Vec<(u16, u16)>,
}

impl StatusExpect {
    /// Does `code` pass the check?
    pub fn passes(&self, code: u16) -> bool {
        let hit = self.ranges.iter().any(|&(lo, hi)| lo <= code && code <= hi);
        hit != self.negate
    }
}

impl fmt::Display for StatusExpect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negate {
            f.write_str("! ")?;
        }
        f.write_str("status ")?;
        for (i, (lo, hi)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

/// The state a server has before its first check (HAProxy's `init-state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitState {
    /// UP; the first failed check takes it DOWN (HAProxy's default).
    Up,
    /// UP; `fall` failed checks take it DOWN.
    FullyUp,
    /// DOWN; the first passed check takes it UP (manning's default).
    Down,
    /// DOWN; `rise` passed checks take it UP.
    FullyDown,
}

/// One `bind` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub endpoint: Endpoint,
    /// `mode` for a UNIX socket file.
    pub unix_mode: Option<u32>,
    pub line: usize,
}

/// A proxying `listen` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Listen {
    pub name: String,
    pub line: usize,
    /// HAProxy's proxy id (`iid` in the stats): 1-based position among all sections.
    pub id: u32,
    pub binds: Vec<Bind>,
    /// Connection retries to the same server after a failed connect.
    pub retries: u32,
    pub timeouts: Timeouts,
    pub check: CheckKind,
    pub servers: Vec<ServerSpec>,
}

/// One `server` line with `default-server` values applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSpec {
    pub name: String,
    pub line: usize,
    /// HAProxy's server id (`sid`): 1-based position in its section.
    pub id: u32,
    /// Host name or IP address, resolved at each check.
    pub host: String,
    pub port: u16,
    /// Health checks on (`check`).
    pub check: bool,
    /// Port for the checks (`port`); default: the server's port.
    pub check_port: Option<u16>,
    pub inter: Duration,
    pub fastinter: Option<Duration>,
    pub downinter: Option<Duration>,
    pub rise: u32,
    pub fall: u32,
    /// Concurrent sessions to this server; 0 = unlimited.
    pub maxconn: u32,
    /// `on-marked-down shutdown-sessions`.
    pub shutdown_sessions_on_down: bool,
    pub init_state: InitState,
}

impl ServerSpec {
    /// The port health checks go to.
    pub fn effective_check_port(&self) -> u16 {
        self.check_port.unwrap_or(self.port)
    }
}

/// A status-page `listen` section (`stats enable`).
#[derive(Debug, Clone, PartialEq)]
pub struct StatsListen {
    pub name: String,
    pub line: usize,
    pub id: u32,
    pub binds: Vec<Bind>,
    /// URI prefix (`stats uri`), HAProxy's default `/haproxy?stats`.
    pub uri: String,
    /// `stats auth` credentials; empty = no authentication.
    pub auth: Vec<Credential>,
    pub realm: String,
    /// Auto-refresh of the HTML page (`stats refresh`).
    pub refresh: Option<Duration>,
    pub hide_version: bool,
}

/// One `stats auth USER:PASS`. The password never appears in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credential({:?}, <redacted>)", self.user)
    }
}

/// HAProxy's built-in defaults for server parameters (`include/haproxy/defaults.h`).
pub const DEFAULT_INTER: Duration = Duration::from_millis(2000);
pub const DEFAULT_RISE: u32 = 2;
pub const DEFAULT_FALL: u32 = 3;
/// HAProxy's default `retries`.
pub const DEFAULT_RETRIES: u32 = 3;

/// Server parameters as written (from `default-server` or `server`); unset = `None`.
#[derive(Debug, Clone, Default, PartialEq)]
struct ServerParams {
    check: Option<bool>,
    port: Option<u16>,
    inter: Option<Duration>,
    fastinter: Option<Duration>,
    downinter: Option<Duration>,
    rise: Option<u32>,
    fall: Option<u32>,
    maxconn: Option<u32>,
    shutdown_sessions: Option<bool>,
    init_state: Option<InitState>,
}

impl ServerParams {
    /// `other` on top of `self`.
    fn overlay(&self, other: &ServerParams) -> ServerParams {
        ServerParams {
            check: other.check.or(self.check),
            port: other.port.or(self.port),
            inter: other.inter.or(self.inter),
            fastinter: other.fastinter.or(self.fastinter),
            downinter: other.downinter.or(self.downinter),
            rise: other.rise.or(self.rise),
            fall: other.fall.or(self.fall),
            maxconn: other.maxconn.or(self.maxconn),
            shutdown_sessions: other.shutdown_sessions.or(self.shutdown_sessions),
            init_state: other.init_state.or(self.init_state),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Tcp,
    Http,
}

/// Settings a `defaults` section gives to the `listen` sections after it.
#[derive(Debug, Clone)]
struct ProxySettings {
    mode: Option<(Mode, usize)>,
    retries: u32,
    timeouts: Timeouts,
    /// `option httpchk`: the request (its `expect` is kept in `expect`).
    httpchk: Option<HttpCheck>,
    /// `http-check expect` and its line (to name it when `option httpchk` is missing).
    expect: Option<(StatusExpect, usize)>,
    default_server: ServerParams,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            mode: None,
            retries: DEFAULT_RETRIES,
            timeouts: Timeouts::default(),
            httpchk: None,
            expect: None,
            default_server: ServerParams::default(),
        }
    }
}

/// A `listen` section being read.
struct ListenBuilder {
    name: String,
    line: usize,
    id: u32,
    settings: ProxySettings,
    binds: Vec<Bind>,
    servers: Vec<(usize, String, String, u16, ServerParams)>,
    stats_enable: Option<usize>,
    stats_uri: Option<String>,
    stats_auth: Vec<Credential>,
    stats_realm: Option<String>,
    stats_refresh: Option<Duration>,
    stats_hide_version: bool,
    /// First line of a `stats` directive, to name it when the section is not a stats page.
    first_stats_line: Option<usize>,
}

enum Section {
    None,
    Global,
    Defaults,
    Listen(Box<ListenBuilder>),
}

/// Parse `text` (the contents of `file`). `env` looks up `${VAR}` inside double quotes.
pub fn parse(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let mut p = Parser {
        file,
        cfg: Config {
            global_maxconn: None,
            listens: Vec::new(),
            stats: Vec::new(),
            accepted_without_effect: Vec::new(),
        },
        defaults: ProxySettings::default(),
        section: Section::None,
        names: HashSet::new(),
        next_id: 1,
        seen_global: false,
    };
    for (idx, raw) in text.lines().enumerate() {
        let line = idx + 1;
        let words = tokenize(raw, env).map_err(|msg| p.err(line, msg))?;
        if words.is_empty() {
            continue;
        }
        p.line(line, &words)?;
    }
    p.finish_section()?;
    Ok(p.cfg)
}

struct Parser<'a> {
    file: &'a str,
    cfg: Config,
    defaults: ProxySettings,
    section: Section,
    names: HashSet<String>,
    next_id: u32,
    seen_global: bool,
}

impl Parser<'_> {
    fn err(&self, line: usize, msg: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line,
            msg: msg.into(),
        }
    }

    fn line(&mut self, line: usize, w: &[String]) -> Result<(), ConfigError> {
        match w[0].as_str() {
            "global" => {
                self.finish_section()?;
                if w.len() > 1 {
                    return Err(self.err(line, "'global' takes no arguments"));
                }
                if self.seen_global {
                    return Err(self.err(line, "a second 'global' section is not supported"));
                }
                self.seen_global = true;
                self.section = Section::Global;
                Ok(())
            }
            "defaults" => {
                self.finish_section()?;
                if w.len() > 1 {
                    return Err(self.err(
                        line,
                        format!(
                            "named defaults ('defaults {}') are not supported; use an unnamed 'defaults' section",
                            w[1]
                        ),
                    ));
                }
                // A new defaults section starts again from HAProxy's built-in values.
                self.defaults = ProxySettings::default();
                self.section = Section::Defaults;
                Ok(())
            }
            "listen" => {
                self.finish_section()?;
                self.start_listen(line, w)
            }
            s @ ("frontend" | "backend") => Err(self.err(
                line,
                format!(
                    "section '{s}' is not supported; use a 'listen' section with 'bind' and 'server' lines"
                ),
            )),
            s @ ("resolvers" | "userlist" | "peers" | "mailers" | "program" | "http-errors"
            | "ring" | "cache" | "crt-store" | "traces" | "log-forward") => {
                Err(self.err(line, format!("section '{s}' is not supported")))
            }
            _ => match &self.section {
                Section::None => Err(self.err(
                    line,
                    format!(
                        "directive '{}' outside of a section (expected 'global', 'defaults' or 'listen' first)",
                        w[0]
                    ),
                )),
                Section::Global => self.global_line(line, w),
                Section::Defaults => {
                    let mut settings = std::mem::take(&mut self.defaults);
                    let r = self.proxy_line(line, w, &mut settings);
                    self.defaults = settings;
                    r.and_then(|handled| {
                        if handled {
                            Ok(())
                        } else {
                            Err(self.unsupported(line, w, "a 'defaults' section"))
                        }
                    })
                }
                Section::Listen(_) => self.listen_line(line, w),
            },
        }
    }

    fn unsupported(&self, line: usize, w: &[String], place: &str) -> ConfigError {
        let directive = match w.get(1) {
            Some(a)
                if matches!(
                    w[0].as_str(),
                    "option" | "timeout" | "stats" | "http-check" | "tcp-check" | "no"
                ) =>
            {
                format!("{} {a}", w[0])
            }
            _ => w[0].clone(),
        };
        self.err(
            line,
            format!("directive '{directive}' is not supported in {place}"),
        )
    }

    fn global_line(&mut self, line: usize, w: &[String]) -> Result<(), ConfigError> {
        match w[0].as_str() {
            "maxconn" => {
                let n = self.number(line, w, 1, "maxconn")?;
                if n == 0 {
                    return Err(self.err(line, "'maxconn' must be at least 1"));
                }
                self.cfg.global_maxconn = Some(n);
                Ok(())
            }
            "log" => {
                self.cfg.accepted_without_effect.push((line, w.join(" ")));
                Ok(())
            }
            _ => Err(self.unsupported(line, w, "the 'global' section")),
        }
    }

    fn start_listen(&mut self, line: usize, w: &[String]) -> Result<(), ConfigError> {
        let name = w
            .get(1)
            .ok_or_else(|| self.err(line, "'listen' needs a name"))?
            .clone();
        if !self.names.insert(name.clone()) {
            return Err(self.err(line, format!("a section named '{name}' already exists")));
        }
        if w.len() > 3 || w.get(2).is_some_and(|a| a == "from") {
            return Err(self.err(
                line,
                "'listen NAME' takes at most one address ('from' is not supported)",
            ));
        }
        let mut b = ListenBuilder {
            name,
            line,
            id: self.next_id,
            settings: self.defaults.clone(),
            binds: Vec::new(),
            servers: Vec::new(),
            stats_enable: None,
            stats_uri: None,
            stats_auth: Vec::new(),
            stats_realm: None,
            stats_refresh: None,
            stats_hide_version: false,
            first_stats_line: None,
        };
        self.next_id += 1;
        if let Some(addr) = w.get(2) {
            // The old form `listen NAME ADDR` is a bind.
            b.binds.extend(self.bind_addrs(line, addr, None)?);
        }
        self.section = Section::Listen(Box::new(b));
        Ok(())
    }

    /// Lines valid in `defaults` and `listen`. Returns `false` when not one of them.
    fn proxy_line(
        &mut self,
        line: usize,
        w: &[String],
        s: &mut ProxySettings,
    ) -> Result<bool, ConfigError> {
        match w[0].as_str() {
            "mode" => {
                let m = match w.get(1).map(String::as_str) {
                    Some("tcp") => Mode::Tcp,
                    Some("http") => Mode::Http,
                    Some(other) => {
                        return Err(self.err(
                            line,
                            format!("mode '{other}' is not supported (expected 'tcp', or 'http' for a stats page)"),
                        ));
                    }
                    None => return Err(self.err(line, "'mode' needs 'tcp' or 'http'")),
                };
                self.no_extra(line, w, 2)?;
                s.mode = Some((m, line));
            }
            "retries" => s.retries = self.number(line, w, 1, "retries")?,
            "log" => {
                if w.get(1).map(String::as_str) != Some("global") || w.len() > 2 {
                    return Err(self.err(
                        line,
                        "only 'log global' is supported here (manning logs to stderr)",
                    ));
                }
            }
            "balance" => {
                if w.get(1).map(String::as_str) != Some("roundrobin") || w.len() > 2 {
                    return Err(self.err(
                        line,
                        format!(
                            "'balance {}' is not supported; only 'balance roundrobin' is",
                            w[1..].join(" ")
                        ),
                    ));
                }
            }
            "timeout" => {
                let which = w
                    .get(1)
                    .ok_or_else(|| self.err(line, "'timeout' needs a kind and a time"))?;
                let slot = match which.as_str() {
                    "client" => &mut s.timeouts.client,
                    "server" => &mut s.timeouts.server,
                    "connect" => &mut s.timeouts.connect,
                    "check" => &mut s.timeouts.check,
                    "queue" => &mut s.timeouts.queue,
                    _ => return Ok(false),
                };
                let v = w
                    .get(2)
                    .ok_or_else(|| self.err(line, format!("'timeout {which}' needs a time")))?;
                let d = parse_time(v)
                    .map_err(|e| self.err(line, format!("'timeout {which} {v}': {e}")))?;
                self.no_extra(line, w, 3)?;
                *slot = Some(d);
            }
            "option" if w.get(1).map(String::as_str) == Some("httpchk") => {
                let args = &w[2..];
                let mut c = HttpCheck::default();
                match args.len() {
                    0 => {}
                    1 => c.uri = args[0].clone(),
                    2 => {
                        c.method = args[0].clone();
                        c.uri = args[1].clone();
                    }
                    3 => {
                        c.method = args[0].clone();
                        c.uri = args[1].clone();
                        c.version = args[2].clone();
                    }
                    _ => {
                        return Err(
                            self.err(line, "'option httpchk' takes at most METHOD URI VERSION")
                        );
                    }
                }
                validate_check_request(&c).map_err(|e| self.err(line, e))?;
                s.httpchk = Some(c);
            }
            "http-check" => {
                if w.get(1).map(String::as_str) != Some("expect") {
                    return Ok(false);
                }
                let mut i = 2;
                let negate = w.get(i).map(String::as_str) == Some("!");
                if negate {
                    i += 1;
                }
                match w.get(i).map(String::as_str) {
                    Some("status") => {}
                    Some(other) => {
                        return Err(self.err(
                            line,
                            format!("'http-check expect {other}' is not supported; only 'http-check expect [!] status CODES' is"),
                        ));
                    }
                    None => {
                        return Err(self.err(line, "'http-check expect' needs 'status CODES'"));
                    }
                }
                let codes = w.get(i + 1).ok_or_else(|| {
                    self.err(
                        line,
                        "'http-check expect status' needs a code list such as 200 or 200-299,304",
                    )
                })?;
                let ranges = parse_status_list(codes).map_err(|e| self.err(line, e))?;
                self.no_extra(line, w, i + 2)?;
                s.expect = Some((StatusExpect { negate, ranges }, line));
            }
            "default-server" => {
                let params = self.server_params(line, &w[1..])?;
                s.default_server = s.default_server.overlay(&params);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn listen_line(&mut self, line: usize, w: &[String]) -> Result<(), ConfigError> {
        let Section::Listen(mut b) = std::mem::replace(&mut self.section, Section::None) else {
            return Ok(());
        };
        let r = self.listen_line_inner(line, w, &mut b);
        self.section = Section::Listen(b);
        r
    }

    fn listen_line_inner(
        &mut self,
        line: usize,
        w: &[String],
        b: &mut ListenBuilder,
    ) -> Result<(), ConfigError> {
        if self.proxy_line(line, w, &mut b.settings)? {
            return Ok(());
        }
        match w[0].as_str() {
            "bind" => {
                let addr = w
                    .get(1)
                    .ok_or_else(|| self.err(line, "'bind' needs an address"))?;
                let mut unix_mode = None;
                let mut i = 2;
                while i < w.len() {
                    match w[i].as_str() {
                        "mode" => {
                            let v = w.get(i + 1).ok_or_else(|| {
                                self.err(line, "bind option 'mode' needs an octal value")
                            })?;
                            let m = u32::from_str_radix(v, 8)
                                .ok()
                                .filter(|m| *m <= 0o7777)
                                .ok_or_else(|| {
                                    self.err(
                                        line,
                                        format!("bind option 'mode {v}': expected an octal mode such as 660"),
                                    )
                                })?;
                            unix_mode = Some(m);
                            i += 2;
                        }
                        other => {
                            return Err(self.err(
                                line,
                                format!("bind option '{other}' is not supported (only 'mode' for UNIX sockets)"),
                            ));
                        }
                    }
                }
                let binds = self.bind_addrs(line, addr, unix_mode)?;
                if unix_mode.is_some()
                    && binds
                        .iter()
                        .any(|bd| !matches!(bd.endpoint, Endpoint::Unix(_)))
                {
                    return Err(self.err(line, "bind option 'mode' applies to UNIX sockets only"));
                }
                b.binds.extend(binds);
                Ok(())
            }
            "server" => {
                let name = w
                    .get(1)
                    .ok_or_else(|| self.err(line, "'server' needs a name and an address"))?;
                let addr = w.get(2).ok_or_else(|| {
                    self.err(
                        line,
                        format!("server '{name}' needs an address (HOST:PORT)"),
                    )
                })?;
                if b.servers.iter().any(|s| &s.1 == name) {
                    return Err(self.err(
                        line,
                        format!("server '{name}' is defined twice in '{}'", b.name),
                    ));
                }
                let (host, port) = parse_server_addr(addr)
                    .map_err(|e| self.err(line, format!("server '{name}': {e}")))?;
                let params = self.server_params(line, &w[3..])?;
                b.servers.push((line, name.clone(), host, port, params));
                Ok(())
            }
            "stats" => {
                b.first_stats_line.get_or_insert(line);
                let sub = w.get(1).map(String::as_str).unwrap_or("");
                match sub {
                    "enable" => {
                        self.no_extra(line, w, 2)?;
                        b.stats_enable = Some(line);
                    }
                    "uri" => {
                        let u = w
                            .get(2)
                            .ok_or_else(|| self.err(line, "'stats uri' needs a prefix"))?;
                        if !u.starts_with('/') {
                            return Err(
                                self.err(line, format!("'stats uri {u}' must start with '/'"))
                            );
                        }
                        self.no_extra(line, w, 3)?;
                        b.stats_uri = Some(u.clone());
                    }
                    "auth" => {
                        let up = w
                            .get(2)
                            .ok_or_else(|| self.err(line, "'stats auth' needs USER:PASSWORD"))?;
                        let (user, password) = up.split_once(':').ok_or_else(|| {
                            self.err(line, "'stats auth' needs USER:PASSWORD (no ':' found)")
                        })?;
                        if user.is_empty() {
                            return Err(self.err(line, "'stats auth' needs a user name before ':'"));
                        }
                        self.no_extra(line, w, 3)?;
                        b.stats_auth.push(Credential {
                            user: user.to_string(),
                            password: password.to_string(),
                        });
                    }
                    "realm" => {
                        let r = w
                            .get(2)
                            .ok_or_else(|| self.err(line, "'stats realm' needs a name"))?;
                        self.no_extra(line, w, 3)?;
                        b.stats_realm = Some(r.clone());
                    }
                    "refresh" => {
                        let v = w
                            .get(2)
                            .ok_or_else(|| self.err(line, "'stats refresh' needs a time"))?;
                        let d = parse_time(v)
                            .map_err(|e| self.err(line, format!("'stats refresh {v}': {e}")))?;
                        self.no_extra(line, w, 3)?;
                        b.stats_refresh = Some(d);
                    }
                    "hide-version" => {
                        self.no_extra(line, w, 2)?;
                        b.stats_hide_version = true;
                    }
                    _ => return Err(self.unsupported(line, w, "a 'listen' section")),
                }
                Ok(())
            }
            _ => Err(self.unsupported(line, w, "a 'listen' section")),
        }
    }

    fn bind_addrs(
        &self,
        line: usize,
        spec: &str,
        unix_mode: Option<u32>,
    ) -> Result<Vec<Bind>, ConfigError> {
        let mut out = Vec::new();
        for part in spec.split(',') {
            let endpoint =
                parse_bind_addr(part).map_err(|e| self.err(line, format!("bind '{part}': {e}")))?;
            out.push(Bind {
                endpoint,
                unix_mode,
                line,
            });
        }
        Ok(out)
    }

    fn server_params(&self, line: usize, w: &[String]) -> Result<ServerParams, ConfigError> {
        let mut p = ServerParams::default();
        let mut i = 0;
        while i < w.len() {
            let key = w[i].as_str();
            let val = |i: usize| -> Result<&String, ConfigError> {
                w.get(i + 1)
                    .ok_or_else(|| self.err(line, format!("'{key}' needs a value")))
            };
            match key {
                "check" => {
                    p.check = Some(true);
                    i += 1;
                    continue;
                }
                "no-check" => {
                    p.check = Some(false);
                    i += 1;
                    continue;
                }
                "port" => {
                    let v = val(i)?;
                    let port: u16 = v.parse().ok().filter(|p| *p > 0).ok_or_else(|| {
                        self.err(line, format!("'port {v}': expected a port from 1 to 65535"))
                    })?;
                    p.port = Some(port);
                }
                "inter" | "fastinter" | "downinter" => {
                    let v = val(i)?;
                    let d =
                        parse_time(v).map_err(|e| self.err(line, format!("'{key} {v}': {e}")))?;
                    if d.is_zero() {
                        return Err(self.err(line, format!("'{key} {v}': must be more than 0")));
                    }
                    match key {
                        "inter" => p.inter = Some(d),
                        "fastinter" => p.fastinter = Some(d),
                        _ => p.downinter = Some(d),
                    }
                }
                "rise" | "fall" => {
                    let v = val(i)?;
                    let n: u32 = v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                        self.err(
                            line,
                            format!("'{key} {v}': expected a whole number of at least 1"),
                        )
                    })?;
                    if key == "rise" {
                        p.rise = Some(n);
                    } else {
                        p.fall = Some(n);
                    }
                }
                "maxconn" => {
                    let v = val(i)?;
                    let n: u32 = v.parse().map_err(|_| {
                        self.err(
                            line,
                            format!("'maxconn {v}': expected a whole number (0 = unlimited)"),
                        )
                    })?;
                    p.maxconn = Some(n);
                }
                "weight" => {
                    let v = val(i)?;
                    if v != "1" {
                        return Err(self.err(
                            line,
                            format!("'weight {v}' is not supported (all servers have weight 1)"),
                        ));
                    }
                }
                "on-marked-down" => {
                    let v = val(i)?;
                    if v != "shutdown-sessions" {
                        return Err(self.err(
                            line,
                            format!(
                                "'on-marked-down {v}' is not supported; only 'shutdown-sessions' is"
                            ),
                        ));
                    }
                    p.shutdown_sessions = Some(true);
                }
                "init-state" => {
                    let v = val(i)?;
                    p.init_state = Some(match v.as_str() {
                        "up" => InitState::Up,
                        "fully-up" => InitState::FullyUp,
                        "down" => InitState::Down,
                        "fully-down" => InitState::FullyDown,
                        _ => {
                            return Err(self.err(
                                line,
                                format!(
                                    "'init-state {v}': expected up, fully-up, down or fully-down"
                                ),
                            ));
                        }
                    });
                }
                other => {
                    return Err(
                        self.err(line, format!("server parameter '{other}' is not supported"))
                    );
                }
            }
            i += 2;
        }
        Ok(p)
    }

    fn number(&self, line: usize, w: &[String], i: usize, what: &str) -> Result<u32, ConfigError> {
        let v = w
            .get(i)
            .ok_or_else(|| self.err(line, format!("'{what}' needs a number")))?;
        let n = v
            .parse()
            .map_err(|_| self.err(line, format!("'{what} {v}': expected a whole number")))?;
        self.no_extra(line, w, i + 1)?;
        Ok(n)
    }

    fn no_extra(&self, line: usize, w: &[String], n: usize) -> Result<(), ConfigError> {
        if w.len() > n {
            return Err(self.err(
                line,
                format!("unexpected '{}' after '{}'", w[n], w[..n].join(" ")),
            ));
        }
        Ok(())
    }

    fn finish_section(&mut self) -> Result<(), ConfigError> {
        let section = std::mem::replace(&mut self.section, Section::None);
        let Section::Listen(b) = section else {
            return Ok(());
        };
        let b = *b;
        let mode = b.settings.mode.map(|(m, _)| m).unwrap_or(Mode::Tcp);
        if b.binds.is_empty() {
            return Err(self.err(b.line, format!("listen '{}' has no 'bind' line", b.name)));
        }
        if let Some(enable_line) = b.stats_enable {
            if let Some(&(sline, ..)) = b.servers.first() {
                return Err(self.err(
                    sline,
                    format!(
                        "listen '{}' has 'stats enable' (line {enable_line}) and servers; put the status page in a 'listen' section of its own",
                        b.name
                    ),
                ));
            }
            if mode != Mode::Http {
                return Err(self.err(
                    enable_line,
                    format!("listen '{}': 'stats enable' needs 'mode http'", b.name),
                ));
            }
            self.cfg.stats.push(StatsListen {
                name: b.name,
                line: b.line,
                id: b.id,
                binds: b.binds,
                uri: b.stats_uri.unwrap_or_else(|| "/haproxy?stats".into()),
                auth: b.stats_auth,
                realm: b.stats_realm.unwrap_or_else(|| "HAProxy Statistics".into()),
                refresh: b.stats_refresh,
                hide_version: b.stats_hide_version,
            });
            return Ok(());
        }
        if let Some(sline) = b.first_stats_line {
            return Err(self.err(
                sline,
                format!(
                    "listen '{}' uses 'stats' directives without 'stats enable'",
                    b.name
                ),
            ));
        }
        if mode == Mode::Http {
            let at = b.settings.mode.map(|(_, l)| l).unwrap_or(b.line);
            return Err(self.err(
                at,
                format!(
                    "listen '{}': 'mode http' is only supported for a status page ('stats enable'); proxying needs 'mode tcp'",
                    b.name
                ),
            ));
        }
        let check = match (&b.settings.httpchk, &b.settings.expect) {
            (Some(c), expect) => CheckKind::Http(HttpCheck {
                expect: expect.as_ref().map(|(e, _)| e.clone()),
                ..c.clone()
            }),
            (None, Some((_, at))) => {
                let at = *at;
                return Err(self.err(
                    at,
                    format!(
                        "'http-check expect' in listen '{}' needs 'option httpchk'",
                        b.name
                    ),
                ));
            }
            (None, None) => CheckKind::Tcp,
        };
        let mut servers = Vec::new();
        for (i, (line, name, host, port, params)) in b.servers.into_iter().enumerate() {
            let p = b.settings.default_server.overlay(&params);
            servers.push(ServerSpec {
                name,
                line,
                id: i as u32 + 1,
                host,
                port,
                check: p.check.unwrap_or(false),
                check_port: p.port,
                inter: p.inter.unwrap_or(DEFAULT_INTER),
                fastinter: p.fastinter,
                downinter: p.downinter,
                rise: p.rise.unwrap_or(DEFAULT_RISE),
                fall: p.fall.unwrap_or(DEFAULT_FALL),
                maxconn: p.maxconn.unwrap_or(0),
                shutdown_sessions_on_down: p.shutdown_sessions.unwrap_or(false),
                init_state: p.init_state.unwrap_or(InitState::Down),
            });
        }
        self.cfg.listens.push(Listen {
            name: b.name,
            line: b.line,
            id: b.id,
            binds: b.binds,
            retries: b.settings.retries,
            timeouts: b.settings.timeouts,
            check,
            servers,
        });
        Ok(())
    }
}

/// Split one line into words as HAProxy does: blanks separate, `#` starts a comment,
/// backslash escapes, `'...'` is literal, `"..."` allows escapes and `${VAR}` / `$VAR`.
pub fn tokenize(line: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<String>, String> {
    #[derive(PartialEq)]
    enum Q {
        None,
        Single,
        Double,
    }
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut q = Q::None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match q {
            Q::Single => {
                if c == '\'' {
                    q = Q::None;
                } else {
                    cur.push(c);
                }
                continue;
            }
            Q::Double if c == '"' => {
                q = Q::None;
                continue;
            }
            Q::Double if c == '$' => {
                let name: String = if chars.peek() == Some(&'{') {
                    chars.next();
                    let mut n = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(ch) => n.push(ch),
                            None => return Err("unterminated '${' in a quoted string".into()),
                        }
                    }
                    n
                } else {
                    let mut n = String::new();
                    while let Some(&ch) = chars.peek() {
                        if ch.is_ascii_alphanumeric() || ch == '_' {
                            n.push(ch);
                            chars.next();
                        } else {
                            break;
                        }
                    }
                    n
                };
                if name.is_empty() {
                    cur.push('$');
                } else {
                    let v = env(&name)
                        .ok_or_else(|| format!("environment variable '{name}' is not set"))?;
                    cur.push_str(&v);
                }
                continue;
            }
            _ => {}
        }
        match c {
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('t') => cur.push('\t'),
                    Some('r') => cur.push('\r'),
                    Some('n') => cur.push('\n'),
                    Some('x') => {
                        let hex: String = chars.by_ref().take(2).collect();
                        let b = u8::from_str_radix(&hex, 16).map_err(|_| {
                            format!("bad escape '\\x{hex}' (expected two hex digits)")
                        })?;
                        cur.push(char::from(b));
                    }
                    Some(other) => cur.push(other),
                    None => cur.push('\\'),
                }
            }
            '\'' if q == Q::None => {
                in_word = true;
                q = Q::Single;
            }
            '"' if q == Q::None => {
                in_word = true;
                q = Q::Double;
            }
            '#' if q == Q::None => break,
            ' ' | '\t' if q == Q::None => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\r' | '\n' if q == Q::None => {}
            _ => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    match q {
        Q::None => {}
        Q::Single => return Err("unterminated single quote".into()),
        Q::Double => return Err("unterminated double quote".into()),
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Parse an HAProxy time: a whole number with an optional unit `us`, `ms`, `s`, `m`, `h`
/// or `d`; no unit means milliseconds (`2500`, `2500ms`, `4s`, `30m`).
pub fn parse_time(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "'{s}' is not a time (expected a whole number with an optional unit us, ms, s, m, h or d, e.g. 2500ms or 4s)"
        )
    };
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits_end == 0 {
        return Err(bad());
    }
    let n: u64 = s[..digits_end].parse().map_err(|_| bad())?;
    let unit_us: u64 = match &s[digits_end..] {
        "" | "ms" => 1_000,
        "us" => 1,
        "s" => 1_000_000,
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        _ => return Err(bad()),
    };
    let us = n
        .checked_mul(unit_us)
        .filter(|us| *us <= i32::MAX as u64 * 1000)
        .ok_or_else(|| format!("'{s}' is too large (at most about 24 days)"))?;
    Ok(Duration::from_micros(us))
}

/// Parse `200`, `200-299`, `200,301-302` into inclusive ranges of HTTP status codes.
pub fn parse_status_list(s: &str) -> Result<Vec<(u16, u16)>, String> {
    let code = |c: &str| -> Result<u16, String> {
        c.parse::<u16>()
            .ok()
            .filter(|c| (100..=599).contains(c))
            .ok_or_else(|| {
                format!("'{c}' in status list '{s}' is not an HTTP status code (100 to 599)")
            })
    };
    let mut out = Vec::new();
    for part in s.split(',') {
        let r = match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (code(lo)?, code(hi)?);
                if lo > hi {
                    return Err(format!("range '{part}' in status list '{s}' is backwards"));
                }
                (lo, hi)
            }
            None => {
                let c = code(part)?;
                (c, c)
            }
        };
        out.push(r);
    }
    Ok(out)
}

/// A `bind` address: `*:port`, `:port`, `addr:port`, `[v6]:port`, `/path`, `unix@/path`,
/// `ipv4@addr:port`, `ipv6@addr:port`.
pub fn parse_bind_addr(s: &str) -> Result<Endpoint, String> {
    if let Some(path) = s.strip_prefix("unix@") {
        if !path.starts_with('/') {
            return Err("a UNIX socket path must be absolute".into());
        }
        return Ok(Endpoint::Unix(path.into()));
    }
    if s.starts_with('/') {
        return Ok(Endpoint::Unix(s.into()));
    }
    let rest = s
        .strip_prefix("ipv4@")
        .or_else(|| s.strip_prefix("ipv6@"))
        .unwrap_or(s);
    if rest.contains('@') {
        return Err("only the unix@, ipv4@ and ipv6@ prefixes are supported".into());
    }
    let (host, port) = crate::net::endpoint::split_host_port(rest)
        .ok_or_else(|| "expected *:PORT, ADDR:PORT, [IPv6]:PORT or a /path".to_string())?;
    if port.contains('-') {
        return Err("port ranges are not supported".into());
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("port '{port}' is not a number from 0 to 65535"))?;
    let host = if host == "*" { "" } else { host };
    Ok(Endpoint::Tcp {
        host: host.to_string(),
        port,
    })
}

/// A server address: `HOST:PORT` or `[IPv6]:PORT`.
pub fn parse_server_addr(s: &str) -> Result<(String, u16), String> {
    if s.starts_with('/') || s.contains('@') {
        return Err(format!(
            "address '{s}' is not supported (servers are HOST:PORT over TCP)"
        ));
    }
    let (host, port) = crate::net::endpoint::split_host_port(s)
        .ok_or_else(|| format!("address '{s}' needs HOST:PORT"))?;
    if host.is_empty() || host == "*" {
        return Err(format!("address '{s}' needs a host name or IP address"));
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("port '{port}' in '{s}' is not a number from 1 to 65535"))?;
    Ok((host.to_string(), port))
}

/// Reject request lines that would not be valid HTTP on the wire.
fn validate_check_request(c: &HttpCheck) -> Result<(), String> {
    let token_ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
    if !token_ok(&c.method) || !c.method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(format!(
            "'option httpchk': '{}' is not an HTTP method",
            c.method
        ));
    }
    if !token_ok(&c.uri) {
        return Err(format!(
            "'option httpchk': URI '{}' has blanks or control characters",
            c.uri
        ));
    }
    // HAProxy's old trick of appending headers to the version ("HTTP/1.1\r\nHost:\ x")
    // is allowed: the version may carry CRLF-separated header lines.
    let mut parts = c.version.split("\r\n");
    let v = parts.next().unwrap_or("");
    if !matches!(v, "HTTP/1.0" | "HTTP/1.1") {
        return Err(format!(
            "'option httpchk': version '{v}' is not supported (HTTP/1.0 or HTTP/1.1)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed's haproxy.cfg, exactly (seeds/000_813f6dbf46d82761.txt).
    pub const SEED_CFG: &str = include_str!("../../tests/fixtures/haproxy/seed-haproxy.cfg");

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn p(text: &str) -> Result<Config, ConfigError> {
        parse("haproxy.cfg", text, &no_env)
    }

    fn err(text: &str) -> ConfigError {
        p(text).expect_err("config should be rejected")
    }

    #[test]
    fn the_seed_config_parses_with_every_value() {
        let c = p(SEED_CFG).unwrap();
        assert_eq!(c.global_maxconn, Some(384));
        assert_eq!(c.stats.len(), 1);
        let s = &c.stats[0];
        assert_eq!(s.name, "stats");
        assert_eq!(s.id, 1);
        assert_eq!(s.uri, "/");
        assert!(s.auth.is_empty());
        assert_eq!(s.binds[0].endpoint, Endpoint::parse("*:7000").unwrap());
        assert_eq!(c.listens.len(), 1);
        let l = &c.listens[0];
        assert_eq!(l.name, "manning");
        assert_eq!(l.id, 2);
        assert_eq!(l.retries, 2);
        assert_eq!(l.timeouts.client, Some(Duration::from_secs(1800)));
        assert_eq!(l.timeouts.server, Some(Duration::from_secs(1800)));
        assert_eq!(l.timeouts.connect, Some(Duration::from_secs(4)));
        assert_eq!(l.timeouts.check, Some(Duration::from_secs(5)));
        assert_eq!(l.timeouts.queue_or_connect(), Some(Duration::from_secs(4)));
        assert_eq!(
            l.binds
                .iter()
                .map(|b| b.endpoint.clone())
                .collect::<Vec<_>>(),
            vec![
                Endpoint::Unix("/run/patroni/proxy.sock".into()),
                Endpoint::parse("*:5432").unwrap()
            ]
        );
        let CheckKind::Http(h) = &l.check else {
            panic!("expected an HTTP check")
        };
        assert_eq!(
            (h.method.as_str(), h.uri.as_str(), h.version.as_str()),
            ("OPTIONS", "/", "HTTP/1.0")
        );
        let e = h.expect.as_ref().unwrap();
        assert!(e.passes(200) && !e.passes(503) && !e.passes(204));
        let names: Vec<_> = l.servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["manager", "worker-01", "worker-02"]);
        for (i, s) in l.servers.iter().enumerate() {
            assert_eq!(s.id, i as u32 + 1);
            assert_eq!(s.port, 15432);
            assert_eq!(s.effective_check_port(), 8008);
            assert!(s.check);
            assert_eq!(s.inter, Duration::from_millis(2500));
            assert_eq!((s.rise, s.fall, s.maxconn), (2, 4, 128));
            assert!(s.shutdown_sessions_on_down);
            assert_eq!(s.init_state, InitState::Down);
            assert_eq!((s.fastinter, s.downinter), (None, None));
        }
        assert_eq!(l.servers[1].host, "worker-01.patroni.host");
        assert_eq!(c.accepted_without_effect, vec![]);
    }

    #[test]
    fn times_take_haproxy_units() {
        assert_eq!(parse_time("2500ms"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_time("2500"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_time("4s"), Ok(Duration::from_secs(4)));
        assert_eq!(parse_time("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_time("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_time("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_time("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_time("0"), Ok(Duration::ZERO));
        for bad in ["abc", "", "2.5s", "4 s", "-1s", "4sec", "s", "99999999d"] {
            assert!(parse_time(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn tokenizer_handles_quotes_escapes_comments_and_env() {
        let env = |k: &str| (k == "PASS").then(|| "s3cret".to_string());
        let t = |s: &str| tokenize(s, &env);
        assert_eq!(
            t("  server a 1.2.3.4:5 check # comment").unwrap(),
            ["server", "a", "1.2.3.4:5", "check"]
        );
        assert_eq!(
            t("stats realm Haproxy\\ Statistics").unwrap(),
            ["stats", "realm", "Haproxy Statistics"]
        );
        assert_eq!(
            t("stats auth \"admin:${PASS}\"").unwrap(),
            ["stats", "auth", "admin:s3cret"]
        );
        assert_eq!(
            t("stats auth 'admin:${PASS}'").unwrap(),
            ["stats", "auth", "admin:${PASS}"]
        );
        assert_eq!(t("a\\#b c").unwrap(), ["a#b", "c"]);
        assert_eq!(t("x \"\"").unwrap(), ["x", ""]);
        assert_eq!(t("\t# only a comment").unwrap(), Vec::<String>::new());
        assert!(t("a \"unterminated").is_err());
        assert!(t("a \"${MISSING}\"").unwrap_err().contains("MISSING"));
    }

    #[test]
    fn status_lists_and_negation() {
        assert_eq!(parse_status_list("200"), Ok(vec![(200, 200)]));
        assert_eq!(
            parse_status_list("200-299,304"),
            Ok(vec![(200, 299), (304, 304)])
        );
        assert!(parse_status_list("2xx").is_err());
        assert!(parse_status_list("300-200").is_err());
        let c = p("listen x\n bind :1\n option httpchk GET /primary\n http-check expect ! status 500-599\n server a h:1 check\n").unwrap();
        let CheckKind::Http(h) = &c.listens[0].check else {
            panic!()
        };
        assert_eq!(h.method, "GET");
        assert_eq!(h.uri, "/primary");
        let e = h.expect.as_ref().unwrap();
        assert!(e.passes(200) && e.passes(404) && !e.passes(503));
        assert_eq!(e.to_string(), "! status 500-599");
    }

    #[test]
    fn httpchk_forms_and_defaults() {
        let one = |line: &str| {
            let c = p(&format!(
                "listen x\n bind :1\n {line}\n server a h:1 check\n"
            ))
            .unwrap();
            match &c.listens[0].check {
                CheckKind::Http(h) => (
                    h.method.clone(),
                    h.uri.clone(),
                    h.version.clone(),
                    h.expect.clone(),
                ),
                CheckKind::Tcp => panic!("tcp"),
            }
        };
        assert_eq!(
            one("option httpchk"),
            ("OPTIONS".into(), "/".into(), "HTTP/1.0".into(), None)
        );
        assert_eq!(one("option httpchk /health").1, "/health");
        assert_eq!(one("option httpchk HEAD /replica").0, "HEAD");
        assert_eq!(
            one("option httpchk OPTIONS /primary HTTP/1.1").2,
            "HTTP/1.1"
        );
        // Without option httpchk, `check` is a TCP connect check.
        let c = p("listen x\n bind :1\n server a h:1 check\n").unwrap();
        assert_eq!(c.listens[0].check, CheckKind::Tcp);
        let s = &c.listens[0].servers[0];
        assert_eq!(
            (s.inter, s.rise, s.fall, s.maxconn),
            (DEFAULT_INTER, 2, 3, 0)
        );
        assert_eq!(c.listens[0].retries, 3);
    }

    #[test]
    fn defaults_carry_httpchk_and_default_server_and_reset() {
        let c = p("defaults\n mode tcp\n option httpchk HEAD /primary\n default-server inter 3s fastinter 1s downinter 5s\n\
                   listen a\n bind :1\n default-server rise 4\n server s h:1 check inter 2s\n\
                   defaults\n timeout connect 1s\n\
                   listen b\n bind :2\n server s h:2\n").unwrap();
        let a = &c.listens[0];
        let s = &a.servers[0];
        assert_eq!(s.inter, Duration::from_secs(2));
        assert_eq!(s.fastinter, Some(Duration::from_secs(1)));
        assert_eq!(s.downinter, Some(Duration::from_secs(5)));
        assert_eq!(s.rise, 4);
        assert!(matches!(&a.check, CheckKind::Http(h) if h.method == "HEAD"));
        let b = &c.listens[1];
        assert_eq!(b.check, CheckKind::Tcp, "a new defaults section resets");
        assert_eq!(b.servers[0].inter, DEFAULT_INTER);
        assert!(!b.servers[0].check);
        assert_eq!(b.timeouts.connect, Some(Duration::from_secs(1)));
    }

    #[test]
    fn binds_of_every_kind() {
        let c = p("listen x\n bind *:5432\n bind 127.0.0.1:5433,[::1]:5434\n bind unix@/tmp/a.sock mode 660\n bind /tmp/b.sock\n server a h:1\n").unwrap();
        let b: Vec<_> = c.listens[0]
            .binds
            .iter()
            .map(|b| (b.endpoint.to_string(), b.unix_mode, b.line))
            .collect();
        assert_eq!(
            b,
            vec![
                ("tcp://*:5432".to_string(), None, 2),
                ("tcp://127.0.0.1:5433".to_string(), None, 3),
                ("tcp://[::1]:5434".to_string(), None, 3),
                ("unix:///tmp/a.sock".to_string(), Some(0o660), 4),
                ("unix:///tmp/b.sock".to_string(), None, 5),
            ]
        );
        // The old `listen NAME ADDR` form.
        let c = p("listen x 127.0.0.1:9\n server a h:1\n").unwrap();
        assert_eq!(
            c.listens[0].binds[0].endpoint.to_string(),
            "tcp://127.0.0.1:9"
        );
    }

    #[test]
    fn stats_section_values() {
        let env = |k: &str| (k == "STATS_PASS").then(|| "pw".to_string());
        let c = parse(
            "f",
            "listen stats\n mode http\n bind 127.0.0.1:7000\n stats enable\n stats uri /status\n stats auth admin:one\n stats auth \"ops:${STATS_PASS}\"\n stats refresh 5s\n stats realm Patroni\\ stats\n stats hide-version\n",
            &env,
        )
        .unwrap();
        let s = &c.stats[0];
        assert_eq!(s.uri, "/status");
        assert_eq!(s.auth.len(), 2);
        assert_eq!(
            (s.auth[1].user.as_str(), s.auth[1].password.as_str()),
            ("ops", "pw")
        );
        assert_eq!(s.refresh, Some(Duration::from_secs(5)));
        assert_eq!(s.realm, "Patroni stats");
        assert!(s.hide_version);
        assert!(
            !format!("{:?}", s.auth).contains("one"),
            "passwords are redacted in Debug"
        );
        let d = p("listen s\n mode http\n bind :1\n stats enable\n").unwrap();
        assert_eq!(d.stats[0].uri, "/haproxy?stats");
        assert_eq!(d.stats[0].realm, "HAProxy Statistics");
    }

    #[test]
    fn init_state_and_check_port() {
        let c = p("listen x\n bind :1\n default-server init-state up\n server a h:10 check\n server b h:11 check port 8008 init-state fully-down no-check\n").unwrap();
        let s = &c.listens[0].servers;
        assert_eq!(s[0].init_state, InitState::Up);
        assert_eq!(s[0].effective_check_port(), 10);
        assert_eq!(s[1].init_state, InitState::FullyDown);
        assert_eq!(s[1].effective_check_port(), 8008);
        assert!(!s[1].check);
    }

    /// Each bad config, the line the error must name, and a fragment of the message.
    const CATALOGUE: &[(&str, usize, &str)] = &[
        (
            "global\n daemon\n",
            2,
            "directive 'daemon' is not supported",
        ),
        ("global\n maxconn many\n", 2, "'maxconn many'"),
        ("global\n maxconn 0\n", 2, "at least 1"),
        ("defaults\n timeout client 30x\n", 2, "'timeout client 30x'"),
        (
            "defaults\n timeout tunnel 1h\n",
            2,
            "directive 'timeout tunnel' is not supported",
        ),
        (
            "defaults\n option redispatch\n",
            2,
            "directive 'option redispatch' is not supported",
        ),
        ("defaults\n mode health\n", 2, "mode 'health'"),
        ("defaults\n log 127.0.0.1 local0\n", 2, "only 'log global'"),
        ("defaults\n balance leastconn\n", 2, "'balance leastconn'"),
        (
            "listen x\n bind :1\n server a h:1 check inter abc\n",
            3,
            "'inter abc'",
        ),
        (
            "listen x\n bind :1\n server a h:1 check inter 0\n",
            3,
            "more than 0",
        ),
        ("listen x\n bind :1\n server a h:1 rise 0\n", 3, "'rise 0'"),
        ("listen x\n bind :1\n server a h:1 fall x\n", 3, "'fall x'"),
        (
            "listen x\n bind :1\n server a h:1 port 99999\n",
            3,
            "'port 99999'",
        ),
        (
            "listen x\n bind :1\n server a h:1 maxconn -1\n",
            3,
            "'maxconn -1'",
        ),
        (
            "listen x\n bind :1\n server a h:1 backup\n",
            3,
            "server parameter 'backup' is not supported",
        ),
        (
            "listen x\n bind :1\n server a h:1 weight 10\n",
            3,
            "'weight 10'",
        ),
        (
            "listen x\n bind :1\n server a h:1 on-marked-down shutdown-backup-sessions\n",
            3,
            "on-marked-down",
        ),
        ("listen x\n bind :1\n server a h\n", 3, "needs HOST:PORT"),
        ("listen x\n bind :1\n server a\n", 3, "needs an address"),
        (
            "listen x\n bind :1\n server a h:1\n server a h:2\n",
            4,
            "defined twice",
        ),
        (
            "listen x\n bind :1\n server a h:1 inter\n",
            3,
            "'inter' needs a value",
        ),
        ("listen x\n bind :abc\n", 2, "port 'abc'"),
        ("listen x\n bind :5000-5005\n", 2, "port ranges"),
        (
            "listen x\n bind :1 ssl crt /x.pem\n",
            2,
            "bind option 'ssl'",
        ),
        ("listen x\n bind :1 mode 660\n", 2, "UNIX sockets only"),
        (
            "listen x\n bind :1\n option httpchk GET / HTTP/2\n",
            3,
            "version 'HTTP/2'",
        ),
        (
            "listen x\n bind :1\n http-check expect string ok\n",
            3,
            "'http-check expect string'",
        ),
        (
            "listen x\n bind :1\n http-check expect status 2xx\n",
            3,
            "'2xx'",
        ),
        (
            "listen x\n bind :1\n http-check expect status 200\n server a h:1 check\n",
            3,
            "needs 'option httpchk'",
        ),
        (
            "listen x\n bind :1\n http-check send meth GET\n",
            3,
            "directive 'http-check send' is not supported",
        ),
        (
            "listen x\n bind :1\n tcp-request content accept\n",
            3,
            "directive 'tcp-request' is not supported",
        ),
        (
            "listen x\n bind :1\n mode http\n server a h:1\n",
            3,
            "'mode http' is only supported for a status page",
        ),
        ("listen x\n server a h:1\n", 1, "has no 'bind' line"),
        (
            "listen x\n bind :1\nlisten x\n bind :2\n",
            3,
            "already exists",
        ),
        (
            "listen s\n mode http\n bind :1\n stats enable\n server a h:1\n",
            5,
            "put the status page in a 'listen' section of its own",
        ),
        (
            "listen s\n mode tcp\n bind :1\n stats enable\n",
            4,
            "needs 'mode http'",
        ),
        (
            "listen s\n mode http\n bind :1\n stats uri /\n",
            4,
            "without 'stats enable'",
        ),
        (
            "listen s\n mode http\n bind :1\n stats enable\n stats auth admin\n",
            5,
            "USER:PASSWORD",
        ),
        (
            "listen s\n mode http\n bind :1\n stats enable\n stats admin if TRUE\n",
            5,
            "directive 'stats admin' is not supported",
        ),
        (
            "listen s\n mode http\n bind :1\n stats enable\n stats refresh 5x\n",
            5,
            "'stats refresh 5x'",
        ),
        (
            "frontend f\n bind :1\n",
            1,
            "section 'frontend' is not supported",
        ),
        ("backend b\n", 1, "section 'backend' is not supported"),
        ("resolvers dns\n", 1, "section 'resolvers' is not supported"),
        ("maxconn 10\n", 1, "outside of a section"),
        ("defaults web\n", 1, "named defaults"),
        ("global\nglobal\n", 2, "second 'global'"),
        (
            "listen x\n bind :1\n server a h:1 check\n stats \"unterminated\n",
            4,
            "unterminated double quote",
        ),
    ];

    #[test]
    fn bad_configs_name_their_line() {
        for (text, line, fragment) in CATALOGUE {
            let e = err(text);
            assert_eq!(e.line, *line, "wrong line for {text:?}: {e}");
            assert!(
                e.msg.contains(fragment),
                "message for {text:?} lacks {fragment:?}: {e}"
            );
            assert!(
                e.to_string().starts_with(&format!("haproxy.cfg:{line}: ")),
                "{e}"
            );
        }
    }
}
