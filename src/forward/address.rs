//! The forwarder's two addresses, in manning's URL form or in socat's syntax.
//!
//! The seed stack runs `socat -dd TCP-L:5432,fork,bind=localhost UNIX:/run/patroni/proxy.sock`;
//! that command line must work unchanged, so besides `tcp://HOST:PORT`, `unix:///PATH` and the
//! bare forms `HOST:PORT`, `*:PORT`, `/PATH` (see [`Endpoint::parse`]) this module reads socat
//! addresses: `KEYWORD:PARAMS[,OPTION[=VALUE]]...`, with the keywords and options that a
//! TCP/UNIX forwarder needs. Anything else is an error naming the option (or keyword) and the
//! address, never silently ignored: an option we dropped could change what socat would have
//! done. Pure parsing, no IO: names in `bind=` are resolved later, by the caller.
//!
//! Deliberate differences from socat, documented in `--help` and the README:
//! - `fork` is accepted but changes nothing: every connection is served concurrently by one
//!   process, with or without it (socat without `fork` serves one connection and exits).
//! - `reuseaddr` is accepted; manning always sets `SO_REUSEADDR` on TCP listeners.
//! - `unlink-early` is accepted but only a stale socket file (one nothing answers on) is
//!   removed before binding; socat would also remove a live one, stealing its clients.

use std::path::PathBuf;
use std::time::Duration;

use crate::net::Endpoint;
use crate::net::endpoint::split_host_port;

/// Which IP family a socat TCP address asks for (`TCP4-…`, `TCP6-…`, `pf=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Family {
    /// No preference (URL forms): bind the first address the name resolves to.
    #[default]
    Any,
    /// IPv4 only. socat's `TCP-LISTEN` is IPv4 unless told otherwise, so `bind=localhost`
    /// means 127.0.0.1 even where `localhost` resolves to ::1 first.
    V4,
    V6,
}

/// Where and how to accept clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddress {
    /// The address to bind. A TCP host may still be a name, to resolve within `family`.
    pub endpoint: Endpoint,
    pub family: Family,
    /// `backlog=N`: the kernel's queue of connections not yet accepted.
    pub backlog: Option<u32>,
    /// `mode=`/`perm=` for a UNIX socket file.
    pub unix_mode: Option<u32>,
    /// `max-children=N`, socat's limit on concurrent connections.
    pub max_children: Option<usize>,
}

/// Where to send each client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetAddress {
    pub endpoint: Endpoint,
    /// `connect-timeout=SECONDS`.
    pub connect_timeout: Option<Duration>,
}

/// Why an address was refused. Every message names the address as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("unknown option {option:?} in address {address:?} ({keyword} accepts: {accepted})")]
    UnknownOption {
        address: String,
        option: String,
        keyword: String,
        accepted: &'static str,
    },
    #[error("option {option:?} in address {address:?}: {reason}")]
    BadOption {
        address: String,
        option: String,
        reason: String,
    },
    #[error("address {address:?}: {reason}")]
    Bad { address: String, reason: String },
}

/// The kinds of socat address this forwarder understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    TcpListen(Family),
    UnixListen,
    TcpConnect(Family),
    UnixConnect,
}

impl Kind {
    fn from_keyword(k: &str) -> Option<Kind> {
        Some(match k.to_ascii_uppercase().as_str() {
            "TCP-LISTEN" | "TCP-L" => Kind::TcpListen(Family::V4),
            "TCP4-LISTEN" | "TCP4-L" => Kind::TcpListen(Family::V4),
            "TCP6-LISTEN" | "TCP6-L" => Kind::TcpListen(Family::V6),
            "UNIX-LISTEN" | "UNIX-L" => Kind::UnixListen,
            "TCP" | "TCP-CONNECT" | "TCP4" | "TCP4-CONNECT" => Kind::TcpConnect(Family::V4),
            "TCP6" | "TCP6-CONNECT" => Kind::TcpConnect(Family::V6),
            "UNIX" | "UNIX-CONNECT" | "UNIX-CLIENT" => Kind::UnixConnect,
            _ => return None,
        })
    }

    fn is_listen(self) -> bool {
        matches!(self, Kind::TcpListen(_) | Kind::UnixListen)
    }

    /// The options each kind accepts, as shown in error messages.
    fn accepted(self) -> &'static str {
        match self {
            Kind::TcpListen(_) => {
                "fork, bind=ADDR, reuseaddr, backlog=N, max-children=N, pf=ip4|ip6"
            }
            Kind::UnixListen => {
                "fork, mode=OCTAL, unlink-early, unlink-close, backlog=N, max-children=N"
            }
            Kind::TcpConnect(_) => "connect-timeout=SECONDS, pf=ip4|ip6",
            Kind::UnixConnect => "connect-timeout=SECONDS",
        }
    }
}

/// socat address types that exist but that a TCP/UNIX forwarder does not implement; named
/// in the error instead of being mistaken for a host name.
const OTHER_SOCAT_KEYWORDS: &[&str] = &[
    "ABSTRACT-CONNECT",
    "ABSTRACT-LISTEN",
    "CREATE",
    "EXEC",
    "FD",
    "FILE",
    "GOPEN",
    "IP-SENDTO",
    "OPEN",
    "OPENSSL",
    "OPENSSL-LISTEN",
    "PIPE",
    "PROXY",
    "PTY",
    "READLINE",
    "SCTP-CONNECT",
    "SCTP-LISTEN",
    "SOCKS4",
    "SOCKS4A",
    "SOCKS5",
    "STDERR",
    "STDIN",
    "STDIO",
    "STDOUT",
    "SYSTEM",
    "TUN",
    "UDP",
    "UDP-LISTEN",
    "UDP-RECVFROM",
    "UDP-SENDTO",
    "UNIX-RECV",
    "UNIX-RECVFROM",
    "UNIX-SENDTO",
    "VSOCK-CONNECT",
    "VSOCK-LISTEN",
];

/// Parse the LISTEN argument: a URL or bare form, or a socat listening address.
pub fn parse_listen(input: &str) -> Result<ListenAddress, AddressError> {
    let Some((kind, params, options)) = split_socat(input)? else {
        let endpoint = Endpoint::parse(input).map_err(|e| bad(input, &e.reason))?;
        return Ok(ListenAddress {
            endpoint,
            family: Family::Any,
            backlog: None,
            unix_mode: None,
            max_children: None,
        });
    };
    if !kind.is_listen() {
        return Err(bad(
            input,
            "this is an address to connect to; LISTEN must be TCP-LISTEN:, UNIX-LISTEN:, \
             tcp://HOST:PORT or unix:///PATH",
        ));
    }
    let mut addr = ListenAddress {
        endpoint: Endpoint::Unix(PathBuf::new()),
        family: Family::Any,
        backlog: None,
        unix_mode: None,
        max_children: None,
    };
    let mut bind_host: Option<String> = None;
    for (name, value) in options {
        let opt = OptionRef {
            address: input,
            name,
            value,
        };
        match (kind, name.to_ascii_lowercase().as_str()) {
            // Accepted for compatibility; see the module doc.
            (_, "fork") => opt.flag()?,
            (Kind::TcpListen(_), "reuseaddr" | "so-reuseaddr") => opt.flag()?,
            (Kind::UnixListen, "unlink-early" | "unlink-close") => opt.flag()?,
            (_, "backlog") => addr.backlog = Some(opt.number()?),
            (_, "max-children") => {
                let n: usize = opt.number()?;
                if n == 0 {
                    return Err(opt.bad("must be at least 1"));
                }
                addr.max_children = Some(n);
            }
            (Kind::TcpListen(_), "bind") => bind_host = Some(opt.text()?.to_string()),
            (Kind::TcpListen(_), "pf" | "protocol-family") => addr.family = opt.family()?,
            (Kind::UnixListen, "mode" | "perm") => {
                addr.unix_mode = Some(
                    crate::init::socket_dir::parse_mode(opt.text()?)
                        .map_err(|reason| opt.bad(&reason))?,
                );
            }
            _ => return Err(unknown(input, name, kind)),
        }
    }
    match kind {
        Kind::TcpListen(family) => {
            if addr.family == Family::Any {
                addr.family = family;
            }
            let port = parse_port(input, params)?;
            let host = match bind_host {
                Some(h) => h.trim_start_matches('[').trim_end_matches(']').to_string(),
                None if addr.family == Family::V6 => "::".to_string(),
                None => "0.0.0.0".to_string(),
            };
            addr.endpoint = Endpoint::Tcp { host, port };
        }
        _ => addr.endpoint = Endpoint::Unix(parse_path(input, params)?),
    }
    Ok(addr)
}

/// Parse the TARGET argument: a URL or bare form, or a socat connecting address.
pub fn parse_target(input: &str) -> Result<TargetAddress, AddressError> {
    let Some((kind, params, options)) = split_socat(input)? else {
        let endpoint = Endpoint::parse(input).map_err(|e| bad(input, &e.reason))?;
        return Ok(TargetAddress {
            endpoint,
            connect_timeout: None,
        });
    };
    if kind.is_listen() {
        return Err(bad(
            input,
            "this is a listening address; TARGET must be TCP:HOST:PORT, UNIX:PATH, \
             tcp://HOST:PORT or unix:///PATH",
        ));
    }
    let mut connect_timeout = None;
    for (name, value) in options {
        let opt = OptionRef {
            address: input,
            name,
            value,
        };
        match (kind, name.to_ascii_lowercase().as_str()) {
            (_, "connect-timeout") => connect_timeout = Some(opt.seconds()?),
            // The family only matters for name resolution; connecting tries every address
            // of the name in order, which also covers the requested family.
            (Kind::TcpConnect(_), "pf" | "protocol-family") => {
                opt.family()?;
            }
            _ => return Err(unknown(input, name, kind)),
        }
    }
    let endpoint = match kind {
        Kind::TcpConnect(_) => {
            let (host, port) = split_host_port(params)
                .filter(|(h, _)| !h.is_empty())
                .ok_or_else(|| bad(input, "expected TCP:HOST:PORT (IPv6 as [ADDR]:PORT)"))?;
            Endpoint::Tcp {
                host: host.to_string(),
                port: parse_port(input, port)?,
            }
        }
        _ => Endpoint::Unix(parse_path(input, params)?),
    };
    Ok(TargetAddress {
        endpoint,
        connect_timeout,
    })
}

type Options<'a> = Vec<(&'a str, Option<&'a str>)>;

/// Split a socat address into its kind, parameters and options; `None` when the input is
/// not socat syntax (a URL, a bare `host:port` or a path).
fn split_socat(input: &str) -> Result<Option<(Kind, &str, Options<'_>)>, AddressError> {
    if input.contains("://") || input.starts_with('/') {
        return Ok(None);
    }
    let mut parts = input.split(',');
    let head = parts.next().unwrap_or_default();
    let (keyword, params) = head.split_once(':').unwrap_or((head, ""));
    let Some(kind) = Kind::from_keyword(keyword) else {
        if OTHER_SOCAT_KEYWORDS.contains(&keyword.to_ascii_uppercase().as_str()) {
            return Err(bad(
                input,
                &format!(
                    "socat address type {keyword} is not supported; manning forward joins \
                     TCP and UNIX stream sockets (TCP-LISTEN, UNIX-LISTEN, TCP, UNIX)"
                ),
            ));
        }
        if input.contains(',') {
            return Err(bad(
                input,
                &format!("unknown socat address type {keyword:?}"),
            ));
        }
        return Ok(None);
    };
    let mut options = Vec::new();
    for part in parts {
        if part.is_empty() {
            return Err(bad(input, "empty option (two commas in a row?)"));
        }
        match part.split_once('=') {
            Some((n, v)) => options.push((n, Some(v))),
            None => options.push((part, None)),
        }
    }
    Ok(Some((kind, params, options)))
}

/// One option of an address, with helpers that name it in errors.
struct OptionRef<'a> {
    address: &'a str,
    name: &'a str,
    value: Option<&'a str>,
}

impl OptionRef<'_> {
    fn bad(&self, reason: &str) -> AddressError {
        AddressError::BadOption {
            address: self.address.to_string(),
            option: self.name.to_string(),
            reason: reason.to_string(),
        }
    }

    fn flag(&self) -> Result<(), AddressError> {
        match self.value {
            None => Ok(()),
            Some(_) => Err(self.bad("takes no value")),
        }
    }

    fn text(&self) -> Result<&str, AddressError> {
        match self.value {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(self.bad("needs a value (NAME=VALUE)")),
        }
    }

    fn number<T: std::str::FromStr>(&self) -> Result<T, AddressError> {
        let v = self.text()?;
        v.parse()
            .map_err(|_| self.bad(&format!("{v:?} is not a whole number in range")))
    }

    fn seconds(&self) -> Result<Duration, AddressError> {
        let v = self.text()?;
        parse_seconds(v).ok_or_else(|| self.bad(&format!("{v:?} is not a number of seconds")))
    }

    fn family(&self) -> Result<Family, AddressError> {
        match self.text()?.to_ascii_lowercase().as_str() {
            "ip4" | "ipv4" | "inet" | "4" => Ok(Family::V4),
            "ip6" | "ipv6" | "inet6" | "6" => Ok(Family::V6),
            v => Err(self.bad(&format!("{v:?} is not ip4 or ip6"))),
        }
    }
}

fn bad(address: &str, reason: &str) -> AddressError {
    AddressError::Bad {
        address: address.to_string(),
        reason: reason.to_string(),
    }
}

fn unknown(address: &str, option: &str, kind: Kind) -> AddressError {
    let keyword = address
        .split([':', ','])
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    AddressError::UnknownOption {
        address: address.to_string(),
        option: option.to_string(),
        keyword,
        accepted: kind.accepted(),
    }
}

fn parse_port(address: &str, s: &str) -> Result<u16, AddressError> {
    s.parse().map_err(|_| {
        bad(
            address,
            &format!("port {s:?} is not a number from 0 to 65535"),
        )
    })
}

fn parse_path(address: &str, s: &str) -> Result<PathBuf, AddressError> {
    if s.is_empty() {
        return Err(bad(address, "the socket path is missing"));
    }
    Ok(PathBuf::from(s))
}

/// Seconds as socat writes them: `5`, `0.5`. Non-negative and finite.
pub fn parse_seconds(s: &str) -> Option<Duration> {
    let f: f64 = s.trim().parse().ok()?;
    if f.is_finite() && (0.0..1e9).contains(&f) {
        Some(Duration::from_secs_f64(f))
    } else {
        None
    }
}

/// A duration on the command line: `10s`, `500ms`, `2m`, `1h`, or bare seconds (`0.5`,
/// as socat's `-t` takes them).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let not_a_duration = || format!("{s:?} is not a duration such as 10s, 500ms or 0.5");
    let n: f64 = num.parse().map_err(|_| not_a_duration())?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        u => return Err(format!("{s:?}: unknown unit {u:?} (use ms, s, m or h)")),
    };
    if secs.is_finite() && (0.0..1e9).contains(&secs) {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(not_a_duration())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(h: &str, p: u16) -> Endpoint {
        Endpoint::Tcp {
            host: h.into(),
            port: p,
        }
    }

    #[test]
    fn the_seeds_exact_addresses() {
        // localhost-ingress: `-dd TCP-L:5432,fork,bind=localhost UNIX:/run/patroni/proxy.sock`
        let l = parse_listen("TCP-L:5432,fork,bind=localhost").unwrap();
        assert_eq!(l.endpoint, tcp("localhost", 5432));
        assert_eq!(l.family, Family::V4, "socat's TCP-L is IPv4");
        assert_eq!((l.backlog, l.unix_mode, l.max_children), (None, None, None));
        let t = parse_target("UNIX:/run/patroni/proxy.sock").unwrap();
        assert_eq!(t.endpoint, Endpoint::Unix("/run/patroni/proxy.sock".into()));
        assert_eq!(t.connect_timeout, None);
    }

    #[test]
    fn listen_keywords_and_options() {
        for k in ["TCP-LISTEN", "tcp-listen", "TCP-L", "TCP4-LISTEN", "TCP4-L"] {
            let l = parse_listen(&format!("{k}:7000,reuseaddr,backlog=50")).unwrap();
            assert_eq!(l.endpoint, tcp("0.0.0.0", 7000), "{k}");
            assert_eq!(l.backlog, Some(50));
        }
        let l = parse_listen("TCP6-L:7000,bind=[::1]").unwrap();
        assert_eq!((l.endpoint, l.family), (tcp("::1", 7000), Family::V6));
        let l = parse_listen("TCP-L:7000,pf=ip6").unwrap();
        assert_eq!((l.endpoint, l.family), (tcp("::", 7000), Family::V6));
        let l = parse_listen("TCP-L:7000,max-children=3,fork").unwrap();
        assert_eq!(l.max_children, Some(3));
        for k in ["UNIX-LISTEN", "UNIX-L", "unix-l"] {
            let l = parse_listen(&format!("{k}:/tmp/x.sock,mode=660,unlink-early,fork")).unwrap();
            assert_eq!(l.endpoint, Endpoint::Unix("/tmp/x.sock".into()));
            assert_eq!(l.unix_mode, Some(0o660));
        }
    }

    #[test]
    fn target_keywords_and_options() {
        for k in ["UNIX", "UNIX-CONNECT", "UNIX-CLIENT", "unix-connect"] {
            let t = parse_target(&format!("{k}:/run/x.sock")).unwrap();
            assert_eq!(t.endpoint, Endpoint::Unix("/run/x.sock".into()), "{k}");
        }
        for k in ["TCP", "TCP-CONNECT", "TCP4", "tcp4"] {
            let t = parse_target(&format!("{k}:db.example:15432,connect-timeout=2.5")).unwrap();
            assert_eq!(t.endpoint, tcp("db.example", 15432), "{k}");
            assert_eq!(t.connect_timeout, Some(Duration::from_millis(2500)));
        }
        let t = parse_target("TCP6:[::1]:5432").unwrap();
        assert_eq!(t.endpoint, tcp("::1", 5432));
    }

    #[test]
    fn url_and_bare_forms_pass_through() {
        let l = parse_listen("tcp://127.0.0.1:5432").unwrap();
        assert_eq!(
            (l.endpoint, l.family),
            (tcp("127.0.0.1", 5432), Family::Any)
        );
        assert_eq!(
            parse_listen("unix:///run/patroni/proxy.sock")
                .unwrap()
                .endpoint,
            Endpoint::Unix("/run/patroni/proxy.sock".into())
        );
        assert_eq!(
            parse_target("localhost:5432").unwrap().endpoint,
            tcp("localhost", 5432)
        );
        assert_eq!(
            parse_target("/run/patroni/proxy.sock").unwrap().endpoint,
            Endpoint::Unix("/run/patroni/proxy.sock".into())
        );
        assert!(parse_target("http://x:1").is_err());
    }

    #[test]
    fn unknown_options_are_named_with_their_address() {
        let e = parse_listen("TCP-L:5432,fork,nodelay").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("\"nodelay\""), "{msg}");
        assert!(msg.contains("TCP-L:5432,fork,nodelay"), "{msg}");
        assert!(msg.contains("bind=ADDR"), "lists what is accepted: {msg}");
        // An option valid for another kind of address is still unknown here.
        let e = parse_target("UNIX:/x.sock,mode=600").unwrap_err();
        assert!(matches!(e, AddressError::UnknownOption { ref option, .. } if option == "mode"));
        let e = parse_listen("UNIX-L:/x.sock,bind=localhost").unwrap_err();
        assert!(matches!(e, AddressError::UnknownOption { ref option, .. } if option == "bind"));
    }

    #[test]
    fn bad_values_and_addresses_say_why() {
        let cases = [
            (parse_listen("TCP-L:99999").map(|_| ()), "port"),
            (
                parse_listen("TCP-L:5432,backlog=x").map(|_| ()),
                "whole number",
            ),
            (parse_listen("TCP-L:5432,bind").map(|_| ()), "needs a value"),
            (
                parse_listen("TCP-L:5432,fork=1").map(|_| ()),
                "takes no value",
            ),
            (parse_listen("TCP-L:5432,,fork").map(|_| ()), "empty option"),
            (
                parse_listen("TCP-L:5432,max-children=0").map(|_| ()),
                "at least 1",
            ),
            (parse_listen("UNIX-L:/x,mode=999").map(|_| ()), "octal"),
            (parse_listen("UNIX-L:").map(|_| ()), "path is missing"),
            (parse_listen("UNIX:/x.sock").map(|_| ()), "LISTEN must be"),
            (parse_target("TCP-L:5432").map(|_| ()), "TARGET must be"),
            (parse_target("TCP:5432").map(|_| ()), "TCP:HOST:PORT"),
            (
                parse_target("TCP:h:1,connect-timeout=-1").map(|_| ()),
                "seconds",
            ),
            (parse_target("OPENSSL:h:443").map(|_| ()), "not supported"),
            (parse_target("EXEC:/bin/sh").map(|_| ()), "not supported"),
            (
                parse_target("FOO:bar,baz").map(|_| ()),
                "unknown socat address type",
            ),
        ];
        for (r, want) in cases {
            let msg = r.unwrap_err().to_string();
            assert!(msg.contains(want), "{msg:?} should contain {want:?}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(parse_seconds("2.5"), Some(Duration::from_millis(2500)));
        assert_eq!(parse_seconds("nan"), None);
    }
}
