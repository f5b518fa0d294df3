//! Where to listen or connect: a TCP host and port, or a UNIX socket path.

use std::fmt;
use std::path::PathBuf;

/// A TCP or UNIX stream address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `host` may be a name (resolved when connecting), an IPv4 address, an IPv6 address
    /// without brackets, or empty / `*` for "all addresses" when listening.
    Tcp {
        host: String,
        port: u16,
    },
    Unix(PathBuf),
}

/// Why an address could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad address {input:?}: {reason}")]
pub struct ParseError {
    pub input: String,
    pub reason: String,
}

impl Endpoint {
    /// Parse the URL forms `tcp://host:port`, `tcp://[v6]:port`, `unix:///abs/path`, and the
    /// bare forms `host:port`, `*:port`, `:port` (TCP) and `/abs/path` (UNIX).
    pub fn parse(input: &str) -> Result<Endpoint, ParseError> {
        let err = |reason: &str| ParseError {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        if let Some(path) = input.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(err("empty socket path"));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        if input.starts_with('/') {
            return Ok(Endpoint::Unix(PathBuf::from(input)));
        }
        let hostport = match input.split_once("://") {
            Some(("tcp", rest)) => rest,
            Some((scheme, _)) => {
                return Err(err(&format!(
                    "unknown scheme {scheme:?} (expected tcp:// or unix://)"
                )));
            }
            None => input,
        };
        let (host, port) = split_host_port(hostport).ok_or_else(|| {
            err("expected host:port, [ipv6]:port, *:port, :port or a /path to a UNIX socket")
        })?;
        let port: u16 = port
            .parse()
            .map_err(|_| err(&format!("port {port:?} is not a number from 0 to 65535")))?;
        let host = if host == "*" {
            String::new()
        } else {
            host.to_string()
        };
        Ok(Endpoint::Tcp { host, port })
    }

    /// True for a TCP endpoint that means "all addresses" (`*:port`, `:port`, `0.0.0.0`, `::`).
    pub fn is_wildcard(&self) -> bool {
        matches!(self, Endpoint::Tcp { host, .. } if host.is_empty() || host == "0.0.0.0" || host == "::")
    }
}

/// Split `host:port` or `[v6]:port`. The host may be empty.
pub fn split_host_port(s: &str) -> Option<(&str, &str)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        return Some((host, port));
    }
    let (host, port) = s.rsplit_once(':')?;
    if host.contains(':') {
        return None; // an IPv6 address needs brackets
    }
    Some((host, port))
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp { host, port } if host.contains(':') => {
                write!(f, "tcp://[{host}]:{port}")
            }
            Endpoint::Tcp { host, port } if host.is_empty() => write!(f, "tcp://*:{port}"),
            Endpoint::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
            Endpoint::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

impl std::str::FromStr for Endpoint {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Endpoint::parse(s)
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
    fn url_and_bare_forms() {
        assert_eq!(
            Endpoint::parse("tcp://127.0.0.1:5432"),
            Ok(tcp("127.0.0.1", 5432))
        );
        assert_eq!(Endpoint::parse("tcp://[::1]:5432"), Ok(tcp("::1", 5432)));
        assert_eq!(
            Endpoint::parse("db.example:15432"),
            Ok(tcp("db.example", 15432))
        );
        assert_eq!(Endpoint::parse("*:5432"), Ok(tcp("", 5432)));
        assert_eq!(Endpoint::parse(":7000"), Ok(tcp("", 7000)));
        assert_eq!(
            Endpoint::parse("unix:///run/patroni/proxy.sock"),
            Ok(Endpoint::Unix("/run/patroni/proxy.sock".into()))
        );
        assert_eq!(
            Endpoint::parse("/run/patroni/proxy.sock"),
            Ok(Endpoint::Unix("/run/patroni/proxy.sock".into()))
        );
    }

    #[test]
    fn errors_say_why() {
        assert!(
            Endpoint::parse("http://x:1")
                .unwrap_err()
                .reason
                .contains("unknown scheme")
        );
        assert!(
            Endpoint::parse("x:99999")
                .unwrap_err()
                .reason
                .contains("port")
        );
        assert!(Endpoint::parse("::1:5432").is_err());
        assert!(Endpoint::parse("nohostport").is_err());
        assert!(Endpoint::parse("unix://").is_err());
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "tcp://127.0.0.1:5432",
            "tcp://[::1]:1",
            "tcp://*:5432",
            "unix:///a/b.sock",
        ] {
            assert_eq!(Endpoint::parse(s).unwrap().to_string(), s);
        }
        assert!(Endpoint::parse("*:1").unwrap().is_wildcard());
        assert!(Endpoint::parse("0.0.0.0:1").unwrap().is_wildcard());
        assert!(!Endpoint::parse("127.0.0.1:1").unwrap().is_wildcard());
    }
}
