//! Access control for the state-changing endpoints (Patroni's `check_access`): the source
//! address must be in `restapi.allowlist` (or be a member's REST API host with
//! `allowlist_include_members`), then HTTP Basic credentials must match
//! `restapi.authentication`. Health and status GETs never go through here.
//!
//! Credentials are compared in constant time on their base64 form, as Patroni does, so the
//! client's header is never decoded. Neither the configured nor the offered credentials are
//! ever logged.

use std::net::IpAddr;

use base64::Engine;
use subtle::ConstantTimeEq;

use super::reply::Reply;

/// An address block from the allowlist (`10.0.0.0/8`, `fd00::/8`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// An allowlist entry that is neither an address nor a block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("restapi.allowlist: {entry:?} is not a valid address or CIDR block")]
pub struct BadNet {
    pub entry: String,
}

impl IpNet {
    /// A single address.
    pub fn host(addr: IpAddr) -> IpNet {
        let addr = canonical(addr);
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        IpNet { addr, prefix }
    }

    /// Parse `addr` or `addr/prefix`. Host bits are ignored (`10.1.2.3/8` is `10.0.0.0/8`),
    /// like Python's `ip_network(v, strict=False)`.
    pub fn parse(s: &str) -> Result<IpNet, BadNet> {
        let bad = || BadNet {
            entry: s.to_string(),
        };
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(IpNet { addr, prefix })
    }

    /// Whether `ip` is inside this block (IPv4-mapped IPv6 peers count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// `::ffff:a.b.c.d` as `a.b.c.d`: what a dual-stack listener reports for IPv4 clients.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Whether an allowlist entry is an address or block (else it is a host name to resolve).
pub fn is_literal(entry: &str) -> bool {
    IpNet::parse(entry).is_ok()
}

/// The host and port of a member's `api_url` (`http://h:8008/patroni`), for
/// `allowlist_include_members`. Port defaults to 80/443 by scheme, as Patroni does.
pub fn api_url_host(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        80
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default_port,
        };
        (h.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().ok()?),
            None => (authority.to_string(), default_port),
        }
    };
    (!host.is_empty()).then_some((host, port))
}

/// The REST API's access rules, ready to check requests against.
#[derive(Clone, Default)]
pub struct Access {
    /// base64(`username:password`), what a correct `Authorization: Basic …` carries.
    auth_key: Option<Vec<u8>>,
    /// Resolved `restapi.allowlist`; `None` when not configured.
    allowlist: Option<Vec<IpNet>>,
    /// `restapi.allowlist_include_members`.
    pub include_members: bool,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("auth", &self.auth_key.as_ref().map(|_| "<redacted>"))
            .field("allowlist", &self.allowlist)
            .field("include_members", &self.include_members)
            .finish()
    }
}

impl Access {
    /// Rules from `restapi.authentication` (both parts or none) and an already resolved
    /// allowlist. A configured allowlist that resolved to nothing denies every source
    /// (Patroni would silently allow all; failing closed is safer).
    pub fn new(
        credentials: Option<(&str, &str)>,
        allowlist: Option<Vec<IpNet>>,
        include_members: bool,
    ) -> Access {
        let auth_key = credentials.map(|(u, p)| {
            base64::engine::general_purpose::STANDARD
                .encode(format!("{u}:{p}"))
                .into_bytes()
        });
        Access {
            auth_key,
            allowlist,
            include_members,
        }
    }

    /// Whether any source-address rule is configured.
    pub fn checks_source(&self) -> bool {
        self.allowlist.is_some() || self.include_members
    }

    /// Check one request. `member_ips` are the resolved REST API addresses of the cluster's
    /// members (only consulted with `include_members` and when `check_members` is true;
    /// `POST /failsafe` skips it, as in Patroni). `authorization` is the raw header value.
    pub fn check(
        &self,
        peer: IpAddr,
        authorization: Option<&[u8]>,
        member_ips: &[IpAddr],
        check_members: bool,
    ) -> Result<(), Reply> {
        let use_members = check_members && self.include_members;
        if self.allowlist.is_some() || use_members {
            let peer = canonical(peer);
            let in_list = self
                .allowlist
                .iter()
                .flatten()
                .any(|net| net.contains(peer));
            let is_member = use_members && member_ips.iter().any(|ip| canonical(*ip) == peer);
            if !in_list && !is_member {
                return Err(Reply::text(403, "Access is denied"));
            }
        }
        if let Some(key) = &self.auth_key {
            let unauthorized = |msg: &str| {
                Reply::text(401, msg).with_header("WWW-Authenticate", "Basic realm=\"Patroni\"")
            };
            let Some(header) = authorization else {
                return Err(unauthorized("no auth header received"));
            };
            let Some(offered) = header.strip_prefix(b"Basic ") else {
                return Err(unauthorized("not authenticated"));
            };
            if !bool::from(offered.ct_eq(key.as_slice())) {
                return Err(unauthorized("not authenticated"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn basic(user: &str, pass: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
        .into_bytes()
    }

    #[test]
    fn no_rules_allow_everything() {
        let a = Access::default();
        assert!(a.check(ip("192.0.2.1"), None, &[], true).is_ok());
    }

    #[test]
    fn basic_auth_missing_wrong_right() {
        let a = Access::new(Some(("admin", "s3cr:et")), None, false);
        let peer = ip("127.0.0.1");
        let missing = a.check(peer, None, &[], true).unwrap_err();
        assert_eq!(missing.status, 401);
        assert_eq!(missing.body_str(), "no auth header received");
        assert_eq!(
            missing.headers,
            [(
                "WWW-Authenticate".to_string(),
                "Basic realm=\"Patroni\"".to_string()
            )]
        );
        let wrong = a
            .check(peer, Some(&basic("admin", "nope")), &[], true)
            .unwrap_err();
        assert_eq!((wrong.status, wrong.body_str()), (401, "not authenticated"));
        let not_basic = a.check(peer, Some(b"Bearer abc"), &[], true).unwrap_err();
        assert_eq!(not_basic.status, 401);
        let lowercase = a
            .check(peer, Some(b"basic YWRtaW46czNjcjpldA=="), &[], true)
            .unwrap_err();
        assert_eq!(lowercase.status, 401, "Patroni requires `Basic ` exactly");
        assert!(
            a.check(peer, Some(&basic("admin", "s3cr:et")), &[], true)
                .is_ok()
        );
    }

    #[test]
    fn debug_output_hides_credentials() {
        let a = Access::new(Some(("admin", "hunter2")), None, false);
        let dbg = format!("{a:?}");
        assert!(!dbg.contains("hunter2") && !dbg.contains("aHVudGVyMg"));
        assert!(!dbg.contains("YWRtaW46aHVudGVyMg"));
    }

    #[test]
    fn allowlist_blocks_and_hosts() {
        let nets = vec![
            IpNet::parse("10.0.0.0/8").unwrap(),
            IpNet::parse("192.0.2.7").unwrap(),
        ];
        let a = Access::new(None, Some(nets), false);
        assert!(a.check(ip("10.200.1.1"), None, &[], true).is_ok());
        assert!(a.check(ip("192.0.2.7"), None, &[], true).is_ok());
        assert!(
            a.check(ip("::ffff:10.0.0.1"), None, &[], true).is_ok(),
            "v4-mapped"
        );
        let denied = a.check(ip("192.0.2.8"), None, &[], true).unwrap_err();
        assert_eq!(
            (denied.status, denied.body_str()),
            (403, "Access is denied")
        );
        // Resolved to nothing: deny all rather than allow all.
        let empty = Access::new(None, Some(vec![]), false);
        assert_eq!(
            empty
                .check(ip("10.0.0.1"), None, &[], true)
                .unwrap_err()
                .status,
            403
        );
    }

    #[test]
    fn allowlist_checked_before_credentials() {
        let a = Access::new(
            Some(("u", "p")),
            Some(vec![IpNet::parse("127.0.0.1").unwrap()]),
            false,
        );
        assert_eq!(
            a.check(ip("10.0.0.1"), None, &[], true).unwrap_err().status,
            403
        );
        assert_eq!(
            a.check(ip("127.0.0.1"), None, &[], true)
                .unwrap_err()
                .status,
            401
        );
    }

    #[test]
    fn members_allowed_when_included() {
        let a = Access::new(None, None, true);
        let members = [ip("10.1.1.1")];
        assert!(a.check(ip("10.1.1.1"), None, &members, true).is_ok());
        assert_eq!(
            a.check(ip("10.1.1.2"), None, &members, true)
                .unwrap_err()
                .status,
            403
        );
        // POST /failsafe skips the member check (and nothing else is configured).
        assert!(a.check(ip("10.1.1.2"), None, &members, false).is_ok());
    }

    #[test]
    fn cidr_parsing() {
        assert!(
            IpNet::parse("10.0.0.0/8")
                .unwrap()
                .contains(ip("10.255.255.255"))
        );
        assert!(!IpNet::parse("10.0.0.0/8").unwrap().contains(ip("11.0.0.0")));
        assert!(IpNet::parse("10.1.2.3/8").unwrap().contains(ip("10.9.9.9")));
        assert!(
            IpNet::parse("0.0.0.0/0")
                .unwrap()
                .contains(ip("203.0.113.5"))
        );
        assert!(IpNet::parse("fd00::/8").unwrap().contains(ip("fd12::1")));
        assert!(!IpNet::parse("fd00::/8").unwrap().contains(ip("10.0.0.1")));
        assert!(IpNet::parse("::/0").unwrap().contains(ip("::1")));
        for bad in [
            "10.0.0.0/33",
            "fd00::/129",
            "host.example",
            "10.0.0.0/x",
            "",
        ] {
            assert!(IpNet::parse(bad).is_err(), "{bad}");
        }
        assert!(is_literal("127.0.0.1") && !is_literal("db1.example"));
        assert!(IpNet::host(ip("::ffff:127.0.0.1")).contains(ip("127.0.0.1")));
    }

    #[test]
    fn api_url_hosts() {
        assert_eq!(
            api_url_host("http://10.0.0.2:8008/patroni"),
            Some(("10.0.0.2".into(), 8008))
        );
        assert_eq!(
            api_url_host("https://db1/patroni"),
            Some(("db1".into(), 443))
        );
        assert_eq!(
            api_url_host("http://[fd00::1]:8008/x"),
            Some(("fd00::1".into(), 8008))
        );
        assert_eq!(api_url_host("http://db1"), Some(("db1".into(), 80)));
        assert_eq!(api_url_host("not a url"), None);
        assert_eq!(api_url_host("http://:8008/"), None);
    }
}
