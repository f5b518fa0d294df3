//! The HTTP side of the status page: which URL gives what, basic authentication, and the
//! server on each stats `bind`.
//!
//! URLs, as HAProxy's `stats uri PREFIX`: `PREFIX` is the HTML page; modifiers follow it
//! separated by `;`: `;csv`, `;json`, `;up` (hide servers that are not UP), `;norefresh`
//! (`;no-maint` is accepted and changes nothing: manning has no maintenance state).
//! `/metrics` is the Prometheus text. With `stats auth`, every URL needs one of the
//! configured users (HTTP basic authentication).
//!
//! [`handle`] is pure: the request's method, target and `Authorization` header in, the
//! reply out.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::watch;
use tracing::debug;

use super::{Snapshot, csv, html, json, only_up, prometheus};
use crate::net::Listener;
use crate::proxy::frontend::Phase;
use crate::proxy::haproxy_cfg::StatsListen;

/// A status page's settings.
#[derive(Clone)]
pub struct StatsPage {
    /// `stats uri`.
    pub uri: String,
    /// `stats realm`, sent when asking for credentials.
    pub realm: String,
    /// `stats refresh`.
    pub refresh: Option<Duration>,
    pub hide_version: bool,
    /// `base64(user:password)` of each `stats auth`; empty = open.
    tokens: Vec<String>,
}

impl std::fmt::Debug for StatsPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsPage")
            .field("uri", &self.uri)
            .field("auth", &!self.tokens.is_empty())
            .finish()
    }
}

/// How often the HTML page reloads itself when `stats refresh` is not set (HAProxy does not
/// reload then; an operator watching a failover wants it to). `stats refresh 0` turns it off.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(10);

impl StatsPage {
    pub fn new(cfg: &StatsListen) -> StatsPage {
        StatsPage {
            uri: cfg.uri.clone(),
            realm: cfg.realm.clone(),
            refresh: match cfg.refresh {
                None => Some(DEFAULT_REFRESH),
                Some(d) if d.is_zero() => None,
                Some(d) => Some(d),
            },
            hide_version: cfg.hide_version,
            tokens: cfg
                .auth
                .iter()
                .map(|c| base64(format!("{}:{}", c.user, c.password).as_bytes()))
                .collect(),
        }
    }
}

/// A reply to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// `WWW-Authenticate` for a 401.
    pub challenge: Option<String>,
}

impl Reply {
    fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
            challenge: None,
        }
    }
}

/// Answer one request. `snapshot` is called only when a page is rendered.
pub fn handle(
    page: &StatsPage,
    method: &str,
    target: &str,
    authorization: Option<&str>,
    snapshot: &dyn Fn() -> Snapshot,
) -> Reply {
    if method != "GET" && method != "HEAD" {
        return Reply::text(405, "only GET and HEAD are served here\n");
    }
    if !page.tokens.is_empty() && !authorized(&page.tokens, authorization) {
        let mut r = Reply::text(401, "authentication required\n");
        r.challenge = Some(format!(
            "Basic realm=\"{}\"",
            page.realm.replace(['"', '\\'], "")
        ));
        return r;
    }
    if target == "/metrics" || target.starts_with("/metrics?") {
        return Reply {
            status: 200,
            content_type: "text/plain; version=0.0.4",
            body: prometheus::render(&snapshot()),
            challenge: None,
        };
    }
    let Some(rest) = target.strip_prefix(page.uri.as_str()) else {
        return Reply::text(
            404,
            format!("not found; the status page is at {}\n", page.uri),
        );
    };
    let mut format = "html";
    let mut up_only = false;
    let mut refresh = page.refresh;
    for m in rest.split(';').skip(1) {
        match m.split(['?', '&', '/']).next().unwrap_or("") {
            "csv" => format = "csv",
            "json" => format = "json",
            "up" => up_only = true,
            "norefresh" => refresh = None,
            _ => {}
        }
    }
    let mut snap = snapshot();
    if page.hide_version {
        snap.version = None;
    }
    if up_only {
        snap = only_up(snap);
    }
    let (content_type, body) = match format {
        "csv" => ("text/plain", csv::render(&snap)),
        "json" => ("application/json", json::render(&snap)),
        _ => (
            "text/html; charset=utf-8",
            html::render(&snap, &page.uri, refresh),
        ),
    };
    Reply {
        status: 200,
        content_type,
        body,
        challenge: None,
    }
}

fn authorized(tokens: &[String], header: Option<&str>) -> bool {
    let Some(h) = header else {
        return false;
    };
    let Some((scheme, token)) = h.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let token = token.trim().as_bytes();
    // Compare every byte of every candidate so the time does not depend on the match.
    tokens.iter().fold(false, |found, t| {
        let t = t.as_bytes();
        let same_len = t.len() == token.len();
        let diff = t
            .iter()
            .zip(token.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        found | (same_len && diff == 0)
    })
}

/// Standard base64 with padding.
pub fn base64(input: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Serve the status page on `listener` until the proxy stops accepting.
pub async fn serve(
    listener: Listener,
    page: Arc<StatsPage>,
    snapshot: Arc<dyn Fn() -> Snapshot + Send + Sync>,
    phase: watch::Receiver<Phase>,
) {
    let mut watch_phase = phase.clone();
    loop {
        let stopping = watch_phase.wait_for(|p| *p != Phase::Running);
        let stream = tokio::select! {
            r = listener.accept() => r,
            _ = stopping => break,
        };
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                debug!("stats accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let page = page.clone();
        let snapshot = snapshot.clone();
        let mut phase = phase.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let auth = req
                    .headers()
                    .get(hyper::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok());
                let target = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                let reply = handle(&page, req.method().as_str(), target, auth, &*snapshot);
                let head = req.method() == hyper::Method::HEAD;
                std::future::ready(Ok::<_, Infallible>(to_response(reply, head)))
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        debug!("stats connection: {e}");
                    }
                }
                _ = async { let _ = phase.wait_for(|p| *p != Phase::Running).await; } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
                }
            }
        });
    }
    drop(listener);
}

fn to_response(r: Reply, head: bool) -> Response<Full<Bytes>> {
    let body = if head {
        Bytes::new()
    } else {
        Bytes::from(r.body)
    };
    let mut b = Response::builder()
        .status(r.status)
        .header(hyper::header::CONTENT_TYPE, r.content_type)
        .header(hyper::header::CACHE_CONTROL, "no-cache");
    if let Some(c) = r.challenge {
        b = b.header(hyper::header::WWW_AUTHENTICATE, c);
    }
    b.body(Full::new(body)).unwrap_or_else(|_| {
        let mut resp = Response::new(Full::new(Bytes::from_static(b"internal error\n")));
        *resp.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
        resp
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::haproxy_cfg::Credential;
    use crate::proxy::stats::testdata::seed_snapshot;

    fn page(auth: &[(&str, &str)]) -> StatsPage {
        StatsPage::new(&StatsListen {
            name: "stats".into(),
            line: 1,
            id: 1,
            binds: vec![],
            uri: "/".into(),
            auth: auth
                .iter()
                .map(|(u, p)| Credential {
                    user: u.to_string(),
                    password: p.to_string(),
                })
                .collect(),
            realm: "HAProxy Statistics".into(),
            refresh: Some(Duration::from_secs(10)),
            hide_version: false,
        })
    }

    fn get(p: &StatsPage, target: &str, auth: Option<&str>) -> Reply {
        handle(p, "GET", target, auth, &seed_snapshot)
    }

    #[test]
    fn base64_matches_rfc4648() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
            ("admin:secret", "YWRtaW46c2VjcmV0"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn urls_and_modifiers() {
        let p = page(&[]);
        let r = get(&p, "/", None);
        assert_eq!(
            (r.status, r.content_type),
            (200, "text/html; charset=utf-8")
        );
        assert!(r.body.contains("http-equiv=\"refresh\" content=\"10\""));
        assert!(!get(&p, "/;norefresh", None).body.contains("http-equiv"));
        let r = get(&p, "/;csv", None);
        assert_eq!(r.content_type, "text/plain");
        assert!(r.body.starts_with("# pxname,svname,"));
        let r = get(&p, "/;csv;up", None);
        assert!(!r.body.contains("worker-01"));
        assert!(r.body.contains("manager"));
        let r = get(&p, "/;json", None);
        assert!(serde_json::from_str::<serde_json::Value>(&r.body).is_ok());
        let r = get(&p, "/metrics", None);
        assert_eq!(r.content_type, "text/plain; version=0.0.4");
        assert!(r.body.contains("haproxy_server_status"));
        assert_eq!(handle(&p, "POST", "/", None, &seed_snapshot).status, 405);
        let mut q = page(&[]);
        q.uri = "/haproxy?stats".into();
        let mut cfg = StatsListen {
            name: "s".into(),
            line: 1,
            id: 1,
            binds: vec![],
            uri: "/".into(),
            auth: vec![],
            realm: "r".into(),
            refresh: None,
            hide_version: true,
        };
        assert_eq!(StatsPage::new(&cfg).refresh, Some(DEFAULT_REFRESH));
        cfg.refresh = Some(Duration::ZERO);
        assert_eq!(StatsPage::new(&cfg).refresh, None);
        let hidden = StatsPage::new(&cfg);
        assert!(
            !handle(&hidden, "GET", "/", None, &seed_snapshot)
                .body
                .contains("version 0.1.0")
        );
        assert_eq!(
            get(&q, "/haproxy?stats;csv", None).content_type,
            "text/plain"
        );
        assert_eq!(get(&q, "/other", None).status, 404);
    }

    #[test]
    fn basic_auth() {
        let p = page(&[("admin", "secret"), ("ops", "x:y")]);
        let r = get(&p, "/", None);
        assert_eq!(r.status, 401);
        assert_eq!(
            r.challenge.as_deref(),
            Some("Basic realm=\"HAProxy Statistics\"")
        );
        assert!(!r.body.contains("manager"));
        assert_eq!(get(&p, "/metrics", None).status, 401);
        assert_eq!(get(&p, "/", Some("Basic YWRtaW46c2VjcmV0")).status, 200);
        assert_eq!(get(&p, "/", Some("basic YWRtaW46c2VjcmV0")).status, 200);
        let ops = format!("Basic {}", base64(b"ops:x:y"));
        assert_eq!(get(&p, "/;csv", Some(&ops)).status, 200);
        assert_eq!(get(&p, "/", Some("Basic YWRtaW46d3Jvbmc=")).status, 401);
        assert_eq!(get(&p, "/", Some("Bearer YWRtaW46c2VjcmV0")).status, 401);
        assert!(!format!("{p:?}").contains("secret"));
    }
}
