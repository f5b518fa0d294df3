//! What the DCS client needs to know, and how to get it from Patroni's `etcd3` section.
//! Pure: no file or network access (TLS files are read when the client is built).
//!
//! A supervisor builds [`DcsSettings`] like this (the config module owns the typed YAML/env
//! form; converting it is a field-by-field copy into [`Etcd3Section`]):
//!
//! ```
//! use std::time::Duration;
//! use manning::dcs::{DcsSettings, Etcd3Section};
//!
//! // patroni.yml `etcd3:` merged with PATRONI_ETCD3_* (the seed sets PATRONI_ETCD3_HOST).
//! let section = Etcd3Section { host: Some("etcd:2379".into()), ..Default::default() };
//! let settings = DcsSettings::from_etcd3(
//!     &section,
//!     Some("/manning"),          // `namespace` / PATRONI_NAMESPACE (None → /service)
//!     "enterprises",             // `scope`
//!     "node1",                   // `name`
//!     Duration::from_secs(20),   // dynamic `ttl`
//!     Duration::from_secs(5),    // dynamic `retry_timeout`
//! )
//! .unwrap();
//! assert_eq!(settings.endpoints, vec!["http://etcd:2379".to_string()]);
//! ```
//!
//! Endpoint rules follow Patroni's `AbstractEtcd.get_etcd_client`: `proxy` wins, then `url`,
//! then `hosts` (a list, or a comma-separated string via [`split_hosts`]) with `port` as the
//! default port, then `host` (where a separate `port` overrides the one in `host`). `protocol`
//! (`http` or `https`) applies to `hosts` and `host`. Credentials in a `url` are used when
//! the section has none. Patroni's extra discovery (DNS SRV, `/cluster/member/list`) is not
//! done: the configured endpoints are used as given.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::keys::{DEFAULT_NAMESPACE, Keys};

/// Default etcd client port.
pub const DEFAULT_PORT: u16 = 2379;

/// Client-certificate and CA files for TLS to etcd (`etcd3.cacert/cert/key`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA bundle that signed etcd's server certificate (required for https).
    pub cacert: Option<PathBuf>,
    /// Client certificate (with `key`) for etcd's client-cert authentication.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Everything the DCS client needs. Build it with [`DcsSettings::from_etcd3`] or by hand.
#[derive(Clone, PartialEq, Eq)]
pub struct DcsSettings {
    /// `http://host:port` or `https://host:port` (a bare `host:port` is taken as http, or
    /// https when `tls` is set). Tried in turn.
    pub endpoints: Vec<String>,
    /// TLS material; `Some` means every endpoint is https.
    pub tls: Option<TlsFiles>,
    /// etcd user (etcd's own authentication).
    pub username: Option<String>,
    /// etcd password: never logged, never in an error message.
    pub password: Option<String>,
    /// `/service` unless configured.
    pub namespace: String,
    pub scope: String,
    /// This member's name (`name`): value of `leader` and basename of `members/<name>`.
    pub member_name: String,
    /// Lease TTL (`ttl`): how long the member and leader keys outlive the last keepalive.
    pub ttl: Duration,
    /// Total budget of one DCS operation, all endpoints and retries included.
    pub retry_timeout: Duration,
}

impl fmt::Debug for DcsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DcsSettings")
            .field("endpoints", &self.endpoints)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("namespace", &self.namespace)
            .field("scope", &self.scope)
            .field("member_name", &self.member_name)
            .field("ttl", &self.ttl)
            .field("retry_timeout", &self.retry_timeout)
            .finish()
    }
}

/// Patroni's `etcd3:` section (YAML merged with `PATRONI_ETCD3_*`), as plain data.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Etcd3Section {
    /// `host:port` (`PATRONI_ETCD3_HOST`).
    pub host: Option<String>,
    /// `hosts` as a list; for the comma-string form use [`split_hosts`].
    pub hosts: Vec<String>,
    pub port: Option<u16>,
    /// `http(s)://[user:password@]host:port`.
    pub url: Option<String>,
    /// Like `url` (Patroni then skips discovery, as we always do).
    pub proxy: Option<String>,
    /// `http` (default) or `https`.
    pub protocol: Option<String>,
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl fmt::Debug for Etcd3Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Etcd3Section")
            .field("host", &self.host)
            .field("hosts", &self.hosts)
            .field("port", &self.port)
            .field("url", &self.url.as_deref().map(redact_url))
            .field("proxy", &self.proxy.as_deref().map(redact_url))
            .field("protocol", &self.protocol)
            .field("cacert", &self.cacert)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A setting that cannot work; the message names the `etcd3` key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, SettingsError> {
    Err(SettingsError(msg.into()))
}

/// Split Patroni's comma-string form of `hosts` (`PATRONI_ETCD3_HOSTS`), tolerating the
/// YAML-ish quoting and brackets the docs show (`"'h1:2379','h2:2379'"`, `[a, b]`).
pub fn split_hosts(s: &str) -> Vec<String> {
    let s = s.trim();
    let s = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    s.split(',')
        .map(|h| h.trim().trim_matches(|c| c == '\'' || c == '"').trim())
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .collect()
}

/// Split `host:port`, `[v6]:port`, `host` or a bare IPv6 address; the host comes back
/// without brackets.
pub fn split_host_port(value: &str, default_port: u16) -> Result<(String, u16), SettingsError> {
    let value = value.trim();
    let parse_port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| SettingsError(format!("`{value}`: port `{p}` is not a number 1-65535")))
    };
    if let Some(rest) = value.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return err(format!("`{value}`: missing `]` after the IPv6 address"));
        };
        let port = match after.strip_prefix(':') {
            Some(p) => parse_port(p)?,
            None if after.is_empty() => default_port,
            None => return err(format!("`{value}`: unexpected `{after}` after `]`")),
        };
        return Ok((host.to_string(), port));
    }
    match value.matches(':').count() {
        1 => {
            let (h, p) = value.split_once(':').unwrap_or((value, ""));
            Ok((h.to_string(), parse_port(p)?))
        }
        _ => Ok((value.to_string(), default_port)),
    }
}

fn join_host_port(scheme: &str, host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("{scheme}://[{host}]:{port}")
    } else {
        format!("{scheme}://{host}:{port}")
    }
}

/// A parsed `scheme://[user[:password]@]host[:port][/path]`.
struct ParsedUrl {
    scheme: String,
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<String>,
}

fn parse_url(key: &str, url: &str) -> Result<ParsedUrl, SettingsError> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return err(format!("etcd3.{key}: expected http(s)://host:port"));
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return err(format!(
            "etcd3.{key}: scheme `{scheme}` is not http or https"
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (username, password) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((n, p)) => (Some(n.to_string()), Some(p.to_string())),
            None => (Some(u.to_string()), None),
        },
        None => (None, None),
    };
    let (host, port) = split_host_port(hostport, DEFAULT_PORT)
        .map_err(|e| SettingsError(format!("etcd3.{key}: {e}")))?;
    if host.is_empty() {
        return err(format!("etcd3.{key}: no host"));
    }
    Ok(ParsedUrl {
        scheme,
        host,
        port,
        username,
        password,
    })
}

/// `url` with any password replaced, for logs.
fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((userinfo, tail)) if userinfo.contains(':') => {
                let user = userinfo.split(':').next().unwrap_or("");
                format!("{scheme}://{user}:<redacted>@{tail}")
            }
            _ => url.to_string(),
        },
        None => url.to_string(),
    }
}

impl DcsSettings {
    /// Build settings from Patroni's `etcd3` section and the global keys. `namespace` `None`
    /// means Patroni's default `/service`.
    pub fn from_etcd3(
        section: &Etcd3Section,
        namespace: Option<&str>,
        scope: &str,
        member_name: &str,
        ttl: Duration,
        retry_timeout: Duration,
    ) -> Result<DcsSettings, SettingsError> {
        let mut username = section.username.clone();
        let mut password = section.password.clone();
        let protocol = match section.protocol.as_deref().map(str::to_ascii_lowercase) {
            None => "http".to_string(),
            Some(p) if p == "http" || p == "https" => p,
            Some(p) => return err(format!("etcd3.protocol: `{p}` is not http or https")),
        };
        let mut scheme = protocol.clone();
        let endpoints = if let Some((key, url)) = section
            .proxy
            .as_deref()
            .map(|u| ("proxy", u))
            .or(section.url.as_deref().map(|u| ("url", u)))
        {
            let u = parse_url(key, url)?;
            if username.is_none() {
                username = u.username.clone();
                password = u.password.clone();
            }
            scheme = u.scheme.clone();
            vec![join_host_port(&u.scheme, &u.host, u.port)]
        } else if !section.hosts.is_empty() {
            let default_port = section.port.unwrap_or(DEFAULT_PORT);
            let mut out = Vec::new();
            for h in &section.hosts {
                if h.contains("://") {
                    let u = parse_url("hosts", h)?;
                    out.push(join_host_port(&u.scheme, &u.host, u.port));
                } else {
                    let (host, port) = split_host_port(h, default_port)
                        .map_err(|e| SettingsError(format!("etcd3.hosts: {e}")))?;
                    out.push(join_host_port(&protocol, &host, port));
                }
            }
            out
        } else if let Some(h) = &section.host {
            let (host, port) = split_host_port(h, DEFAULT_PORT)
                .map_err(|e| SettingsError(format!("etcd3.host: {e}")))?;
            let port = section.port.unwrap_or(port);
            vec![join_host_port(&protocol, &host, port)]
        } else {
            return err(
                "etcd3: no endpoint; set one of host, hosts, url or proxy (or PATRONI_ETCD3_HOST)",
            );
        };
        let tls =
            (scheme == "https" || endpoints.iter().any(|e| e.starts_with("https://"))).then(|| {
                TlsFiles {
                    cacert: section.cacert.clone(),
                    cert: section.cert.clone(),
                    key: section.key.clone(),
                }
            });
        let settings = DcsSettings {
            endpoints,
            tls,
            username,
            password,
            namespace: namespace.unwrap_or(DEFAULT_NAMESPACE).to_string(),
            scope: scope.to_string(),
            member_name: member_name.to_string(),
            ttl,
            retry_timeout,
        };
        settings.validate()?;
        Ok(settings)
    }

    /// The cluster's keys.
    pub fn keys(&self) -> Keys {
        Keys::new(&self.namespace, &self.scope)
    }

    /// Check the settings can work, and return the endpoints as URLs with a scheme.
    pub fn validate(&self) -> Result<Vec<String>, SettingsError> {
        if self.scope.trim().is_empty() {
            return err("scope is empty");
        }
        if self.member_name.is_empty() || self.member_name.contains('/') {
            return err(format!(
                "name `{}` cannot be a member key (empty or contains `/`)",
                self.member_name
            ));
        }
        if self.ttl < Duration::from_secs(1) {
            return err("ttl must be at least 1 s (etcd leases have whole seconds)");
        }
        if self.retry_timeout.is_zero() {
            return err("retry_timeout must be positive");
        }
        if self.endpoints.is_empty() {
            return err("etcd3: no endpoint");
        }
        if self.password.is_some() && self.username.is_none() {
            return err("etcd3.password is set without etcd3.username");
        }
        if let Some(tls) = &self.tls {
            if tls.cacert.is_none() {
                return err("etcd3.cacert is required for https endpoints");
            }
            if tls.cert.is_some() != tls.key.is_some() {
                return err("etcd3.cert and etcd3.key must be set together");
            }
        }
        let mut out = Vec::new();
        for e in &self.endpoints {
            let url = if e.contains("://") {
                let u = parse_url("endpoint", e)?;
                if (u.scheme == "https") != self.tls.is_some() {
                    return err(format!(
                        "etcd endpoint {}: {} but TLS is {}",
                        redact_url(e),
                        u.scheme,
                        if self.tls.is_some() {
                            "configured"
                        } else {
                            "not configured"
                        }
                    ));
                }
                join_host_port(&u.scheme, &u.host, u.port)
            } else {
                let (host, port) = split_host_port(e, DEFAULT_PORT)?;
                let scheme = if self.tls.is_some() { "https" } else { "http" };
                join_host_port(scheme, &host, port)
            };
            out.push(url);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(section: &Etcd3Section) -> Result<DcsSettings, SettingsError> {
        DcsSettings::from_etcd3(
            section,
            None,
            "s",
            "n1",
            Duration::from_secs(30),
            Duration::from_secs(10),
        )
    }

    #[test]
    fn host_form_like_the_seed() {
        let s = build(&Etcd3Section {
            host: Some("etcd:2379".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.endpoints, vec!["http://etcd:2379"]);
        assert_eq!(s.namespace, "/service");
        assert_eq!(s.keys().leader(), "/service/s/leader");
        assert!(s.tls.is_none());
        // A separate `port` overrides the one in `host`, as in Patroni.
        let s = build(&Etcd3Section {
            host: Some("etcd:2379".into()),
            port: Some(2380),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.endpoints, vec!["http://etcd:2380"]);
        let s = build(&Etcd3Section {
            host: Some("etcd".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.endpoints, vec!["http://etcd:2379"]);
    }

    #[test]
    fn hosts_list_and_comma_string() {
        let s = build(&Etcd3Section {
            hosts: split_hosts("'h1:2379', 'h2', [::1]:2381"),
            port: Some(3000),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            s.endpoints,
            vec!["http://h1:2379", "http://h2:3000", "http://[::1]:2381"]
        );
        assert_eq!(split_hosts("[a:1, b:2]"), vec!["a:1", "b:2"]);
        assert_eq!(split_hosts(" a:1 ,, b:2 "), vec!["a:1", "b:2"]);
        assert_eq!(split_hosts(""), Vec::<String>::new());
    }

    #[test]
    fn url_with_credentials_and_https() {
        let s = build(&Etcd3Section {
            url: Some("https://root:s3cr3t@etcd.example:2379/".into()),
            cacert: Some("/ca.pem".into()),
            host: Some("ignored:1".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.endpoints, vec!["https://etcd.example:2379"]);
        assert_eq!(s.username.as_deref(), Some("root"));
        assert_eq!(s.password.as_deref(), Some("s3cr3t"));
        assert_eq!(
            s.tls.as_ref().unwrap().cacert.as_deref(),
            Some("/ca.pem".as_ref())
        );
        // Explicit credentials win over the URL's.
        let s = build(&Etcd3Section {
            url: Some("http://a:b@etcd".into()),
            username: Some("u".into()),
            password: Some("p".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            (s.username.as_deref(), s.password.as_deref()),
            (Some("u"), Some("p"))
        );
        assert_eq!(s.endpoints, vec!["http://etcd:2379"]);
    }

    #[test]
    fn protocol_https_applies_to_hosts() {
        let s = build(&Etcd3Section {
            hosts: vec!["h1:2379".into()],
            protocol: Some("https".into()),
            cacert: Some("/ca".into()),
            cert: Some("/c".into()),
            key: Some("/k".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.endpoints, vec!["https://h1:2379"]);
        assert_eq!(s.validate().unwrap(), vec!["https://h1:2379"]);
    }

    #[test]
    fn bad_settings_are_named() {
        let e = build(&Etcd3Section::default()).unwrap_err();
        assert!(e.0.contains("no endpoint"), "{e}");
        let e = build(&Etcd3Section {
            host: Some("h:99999".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.0.contains("etcd3.host"), "{e}");
        let e = build(&Etcd3Section {
            host: Some("h".into()),
            protocol: Some("ftp".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.0.contains("etcd3.protocol"), "{e}");
        let e = build(&Etcd3Section {
            host: Some("h".into()),
            protocol: Some("https".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.0.contains("cacert"), "{e}");
        let e = build(&Etcd3Section {
            url: Some("https://u:topsecret@h:notaport".into()),
            cacert: Some("/ca".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(!e.0.contains("topsecret"), "{e}");
        let e = build(&Etcd3Section {
            host: Some("h".into()),
            password: Some("p".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.0.contains("username"), "{e}");
    }

    #[test]
    fn validate_normalises_bare_endpoints() {
        let mut s = build(&Etcd3Section {
            host: Some("h".into()),
            ..Default::default()
        })
        .unwrap();
        s.endpoints = vec!["127.0.0.1:2379".into(), "http://127.0.0.1:2380".into()];
        assert_eq!(
            s.validate().unwrap(),
            vec!["http://127.0.0.1:2379", "http://127.0.0.1:2380"]
        );
        s.endpoints = vec!["https://x:1".into()];
        assert!(s.validate().is_err());
        s.endpoints = vec!["h".into()];
        s.member_name = "a/b".into();
        assert!(s.validate().is_err());
    }

    #[test]
    fn passwords_never_in_debug_output() {
        let s = build(&Etcd3Section {
            url: Some("http://root:hunter2@etcd:2379".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
        let sec = Etcd3Section {
            url: Some("http://root:hunter2@etcd:2379".into()),
            password: Some("hunter3".into()),
            ..Default::default()
        };
        let dbg = format!("{sec:?}");
        assert!(
            !dbg.contains("hunter2") && !dbg.contains("hunter3"),
            "{dbg}"
        );
    }

    #[test]
    fn host_port_splitting() {
        assert_eq!(split_host_port("a:1", 5).unwrap(), ("a".into(), 1));
        assert_eq!(split_host_port("a", 5).unwrap(), ("a".into(), 5));
        assert_eq!(split_host_port("[::1]:7", 5).unwrap(), ("::1".into(), 7));
        assert_eq!(split_host_port("[::1]", 5).unwrap(), ("::1".into(), 5));
        assert_eq!(split_host_port("::1", 5).unwrap(), ("::1".into(), 5));
        assert!(split_host_port("a:x", 5).is_err());
        assert!(split_host_port("[::1", 5).is_err());
    }
}
