//! The HTTP/1 server (hyper) on `restapi.listen`.
//!
//! Read-only requests are answered from the latest snapshot by [`super::health`];
//! state-changing ones are checked ([`super::auth`]), their bodies read within limits,
//! validated ([`super::control`]) and sent to the supervisor, whose reply is returned.
//!
//! Hostile or broken clients cannot hurt the process or starve health checks:
//! - request heads are limited in size (431) and must arrive within a timeout (else the
//!   connection is dropped, which also ends slowloris clients and idle keep-alives);
//! - bodies are limited in size (413) and must arrive within a timeout (408);
//! - connections are capped; over the cap, new connections are closed at once;
//! - a connection lives at most [`Limits::connection_lifetime`];
//! - malformed requests get hyper's 400 and the connection is closed.
//!
//! HTTP/1.0 clients (HAProxy's `option httpchk` sends `OPTIONS / HTTP/1.0`) get HTTP/1.0
//! responses and a closed connection, as they expect.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::auth::{Access, IpNet, api_url_host, is_literal};
use super::control::{self, ApiCommand, ApiRequest, ControlRoute};
use super::health::{self, ReadMethod, first_segment};
use super::query::Query;
use super::reply::{Reply, error};
use super::state::Snapshot;
use crate::net::{Endpoint, Listener, listener::BindOptions};

/// `restapi.listen` when the configuration has none: every address, port 8008.
pub const DEFAULT_LISTEN: &str = "*:8008";

/// Resource limits per connection and for the server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once; more are closed on accept.
    pub max_connections: usize,
    /// Largest request head (request line + headers).
    pub max_header_bytes: usize,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Time allowed to receive a request head, and to wait idle for the next one.
    pub header_read_timeout: Duration,
    /// Time allowed to receive a request body.
    pub body_read_timeout: Duration,
    /// Longest life of one connection (bounds clients that never read their response).
    pub connection_lifetime: Duration,
    /// On shutdown, time given to requests in flight before they are cut.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 128,
            max_header_bytes: 16 * 1024,
            max_body_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            connection_lifetime: Duration::from_secs(600),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// `restapi.authentication`. `Debug` never shows the password.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The `restapi` settings the server uses.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `restapi.listen` (`host:port`, `*:port`, `[v6]:port`); [`DEFAULT_LISTEN`] when unset.
    pub listen: String,
    /// `restapi.authentication` for the state-changing endpoints.
    pub authentication: Option<Credentials>,
    /// `restapi.allowlist`: addresses, CIDR blocks or host names allowed to change state.
    pub allowlist: Vec<String>,
    /// `restapi.allowlist_include_members`: members' REST API hosts are allowed too.
    pub allowlist_include_members: bool,
    /// `restapi.http_extra_headers`, added to every response.
    pub http_extra_headers: Vec<(String, String)>,
    pub limits: Limits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: DEFAULT_LISTEN.to_string(),
            authentication: None,
            allowlist: Vec::new(),
            allowlist_include_members: false,
            http_extra_headers: Vec::new(),
            limits: Limits::default(),
        }
    }
}

/// How the server talks to the supervisor.
#[derive(Debug, Clone)]
pub struct Channels {
    /// The latest snapshot, published by the supervisor.
    pub snapshot: watch::Receiver<Snapshot>,
    /// State-changing commands; each carries a one-shot reply.
    pub commands: mpsc::Sender<ApiRequest>,
    /// Notified after each command is queued, so a sleeping HA loop runs at once.
    pub wake: Arc<Notify>,
}

struct Shared {
    channels: Channels,
    access: Access,
    extra_headers: Vec<(HeaderName, HeaderValue)>,
    limits: Limits,
}

/// A bound, not yet serving REST API server.
pub struct ApiServer {
    listener: Listener,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
}

impl ApiServer {
    /// Resolve the allowlist and bind `config.listen`. A bad address or allowlist entry is a
    /// configuration error (exit 2); a port in use is a runtime error.
    pub async fn bind(config: ServerConfig, channels: Channels) -> anyhow::Result<ApiServer> {
        let endpoint = Endpoint::parse(&config.listen)
            .map_err(|e| crate::error::usage(format!("restapi.listen: {e}")))?;
        if matches!(endpoint, Endpoint::Unix(_)) {
            return Err(crate::error::usage(format!(
                "restapi.listen: {:?} is a UNIX socket path; the REST API listens on host:port",
                config.listen
            )));
        }
        let allowlist = if config.allowlist.is_empty() {
            None
        } else {
            Some(resolve_allowlist(&config.allowlist).await?)
        };
        let access = Access::new(
            config
                .authentication
                .as_ref()
                .map(|c| (c.username.as_str(), c.password.as_str())),
            allowlist,
            config.allowlist_include_members,
        );
        let mut extra_headers = Vec::new();
        for (name, value) in &config.http_extra_headers {
            let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                crate::error::usage(format!(
                    "restapi.http_extra_headers: bad header name {name:?}"
                ))
            })?;
            let v = HeaderValue::from_str(value).map_err(|_| {
                crate::error::usage(format!(
                    "restapi.http_extra_headers: bad value for header {name:?}"
                ))
            })?;
            extra_headers.push((n, v));
        }
        let listener = Listener::bind(&endpoint, &BindOptions::default())
            .await
            .with_context(|| {
                format!(
                    "REST API cannot listen on {} (restapi.listen)",
                    config.listen
                )
            })?;
        let Some(local_addr) = listener.tcp_addr() else {
            return unreachable_unix();
        };
        info!(
            "REST API listening on {local_addr} (authentication {}, allowlist {})",
            if config.authentication.is_some() {
                "on"
            } else {
                "off"
            },
            if access.checks_source() { "on" } else { "off" }
        );
        Ok(ApiServer {
            listener,
            local_addr,
            shared: Arc::new(Shared {
                channels,
                access,
                extra_headers,
                limits: config.limits,
            }),
        })
    }

    /// The bound address (with the real port when `:0` was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serve until `shutdown` resolves, then stop accepting, let requests in flight finish
    /// within [`Limits::shutdown_grace`], and return.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let limits = self.shared.limits.clone();
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut refused = 0u64;
        let mut last_refusal_log: Option<Instant> = None;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept_tcp() => match accepted {
                    Ok((stream, peer)) => {
                        let Ok(permit) = slots.clone().try_acquire_owned() else {
                            refused += 1;
                            if last_refusal_log.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                                warn!("REST API at its limit of {} connections: closed {refused} new connection(s), latest from {peer}", limits.max_connections);
                                last_refusal_log = Some(Instant::now());
                                refused = 0;
                            }
                            drop(stream);
                            continue;
                        };
                        let shared = self.shared.clone();
                        let stop = stop_rx.clone();
                        tasks.spawn(async move {
                            serve_connection(stream, peer, shared, stop).await;
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        warn!("REST API accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
            while tasks.try_join_next().is_some() {}
        }
        info!(
            "REST API on {} stopping: {} connection(s) open",
            self.local_addr,
            tasks.len()
        );
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(limits.shutdown_grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!(
                "REST API: {} connection(s) still busy after {:?}, closing them",
                tasks.len(),
                limits.shutdown_grace
            );
            tasks.shutdown().await;
        }
        Ok(())
    }
}

fn unreachable_unix<T>() -> anyhow::Result<T> {
    Err(anyhow::anyhow!("REST API listener is not TCP"))
}

/// Resolve allowlist entries: literals and CIDR blocks parse, names resolve through DNS.
/// A malformed block is a configuration error; a name that does not resolve is logged and
/// skipped (as Patroni does).
async fn resolve_allowlist(entries: &[String]) -> anyhow::Result<Vec<IpNet>> {
    let mut nets = Vec::new();
    for entry in entries {
        let entry = entry.trim();
        if entry.contains('/') || is_literal(entry) {
            nets.push(IpNet::parse(entry).map_err(|e| crate::error::usage(e.to_string()))?);
            continue;
        }
        match tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::lookup_host((entry, 8080)),
        )
        .await
        {
            Ok(Ok(addrs)) => nets.extend(addrs.map(|a| IpNet::host(a.ip()))),
            Ok(Err(e)) => warn!("restapi.allowlist: cannot resolve {entry:?}: {e}; skipped"),
            Err(_) => warn!("restapi.allowlist: resolving {entry:?} timed out; skipped"),
        }
    }
    if nets.is_empty() {
        warn!(
            "restapi.allowlist resolved to no address: state-changing requests are refused from everywhere"
        );
    }
    Ok(nets)
}

/// Patroni sets TCP keepalive on API connections (idle 3 s, 3 probes, 10 s user timeout) so
/// dead peers are noticed; failures to set it are harmless.
fn tune_socket(stream: &TcpStream) {
    use nix::sys::socket::{setsockopt, sockopt};
    let _ = stream.set_nodelay(true);
    let _ = setsockopt(stream, sockopt::KeepAlive, &true);
    let _ = setsockopt(stream, sockopt::TcpKeepIdle, &3);
    let _ = setsockopt(stream, sockopt::TcpKeepInterval, &2);
    let _ = setsockopt(stream, sockopt::TcpKeepCount, &3);
    let _ = setsockopt(stream, sockopt::TcpUserTimeout, &10_000);
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    tune_socket(&stream);
    let limits = shared.limits.clone();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_headers(64)
        .keep_alive(true);
    let service = service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(shared, peer, req).await) }
    });
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let lifetime = tokio::time::sleep(limits.connection_lifetime);
    tokio::pin!(lifetime);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                debug!("REST API connection from {peer} ended: {e}");
            }
        }
        _ = &mut lifetime => {
            debug!("REST API connection from {peer} closed after {:?}", limits.connection_lifetime);
        }
        _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(limits.shutdown_grace, conn.as_mut()).await;
        }
    }
}

async fn handle(
    shared: Arc<Shared>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let reply = match method.as_str() {
        "GET" | "HEAD" | "OPTIONS" => {
            let m = match method.as_str() {
                "GET" => ReadMethod::Get,
                "HEAD" => ReadMethod::Head,
                _ => ReadMethod::Options,
            };
            let query = Query::parse(req.uri().query().unwrap_or(""));
            // The instant from tokio's clock so tests with a paused clock control it.
            let now = tokio::time::Instant::now().into_std();
            let snap = shared.channels.snapshot.borrow();
            health::evaluate(m, &path, &query, &snap, now)
        }
        _ => control_request(&shared, peer, &method, &path, req).await,
    };
    debug!(
        "REST API {} {method} {path} -> {} in {:.3} ms",
        peer.ip(),
        reply.status,
        started.elapsed().as_secs_f64() * 1000.0
    );
    to_response(reply, &shared.extra_headers)
}

async fn control_request(
    shared: &Shared,
    peer: SocketAddr,
    method: &str,
    path: &str,
    req: Request<Incoming>,
) -> Reply {
    let Some(route) = ControlRoute::find(method, first_segment(path)) else {
        return Reply::text(501, format!("Unsupported method ('{method}')"));
    };
    let member_ips = if shared.access.include_members && route.checks_members() {
        member_addresses(&shared.channels.snapshot).await
    } else {
        Vec::new()
    };
    let authorization = req.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
    if let Err(reply) = shared.access.check(
        peer.ip(),
        authorization,
        &member_ips,
        route.checks_members(),
    ) {
        info!(
            "REST API refused {method} {path} from {}: {} {}",
            peer.ip(),
            reply.status,
            reply.body_str()
        );
        return reply;
    }
    let body = if route.reads_body() {
        match read_body(req, &shared.limits).await {
            Ok(b) => b,
            Err(reply) => return reply,
        }
    } else {
        None
    };
    let prepared = {
        let snap = shared.channels.snapshot.borrow();
        control::prepare(route, body.as_deref(), &snap, SystemTime::now())
    };
    let command = match prepared {
        Ok(c) => c,
        Err(reply) => {
            info!(
                "REST API {method} {path} from {}: {} {}",
                peer.ip(),
                reply.status,
                reply.body_str()
            );
            return reply;
        }
    };
    send_command(shared, command, peer.ip()).await
}

async fn send_command(shared: &Shared, command: ApiCommand, peer: IpAddr) -> Reply {
    info!("REST API: {command} requested by {peer}");
    let (request, reply) = ApiRequest::new(command, peer);
    if shared.channels.commands.send(request).await.is_err() {
        warn!("REST API: the supervisor is gone; answering 503");
        return Reply::text(503, "supervisor is not running");
    }
    shared.channels.wake.notify_one();
    match reply.await {
        Ok(r) => {
            info!(
                "REST API: answered {peer} with {} {}",
                r.status,
                r.body_str().lines().next().unwrap_or("")
            );
            r
        }
        Err(_) => Reply::text(503, "supervisor did not answer"),
    }
}

/// The REST API addresses of the members in the fresh cluster view (for
/// `allowlist_include_members`). Names are resolved with a short timeout each.
async fn member_addresses(snapshot: &watch::Receiver<Snapshot>) -> Vec<IpAddr> {
    let hosts: Vec<(String, u16)> = {
        let snap = snapshot.borrow();
        let now = tokio::time::Instant::now().into_std();
        snap.fresh_cluster(now)
            .map(|c| {
                c.members
                    .iter()
                    .filter_map(|m| m.api_url.as_deref().and_then(api_url_host))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut ips = Vec::new();
    for (host, port) in hosts {
        if let Ok(ip) = host.parse::<IpAddr>() {
            ips.push(ip);
            continue;
        }
        match tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::lookup_host((host.as_str(), port)),
        )
        .await
        {
            Ok(Ok(addrs)) => ips.extend(addrs.map(|a| a.ip())),
            _ => debug!("REST API: cannot resolve member host {host:?}"),
        }
    }
    ips
}

/// Read a request body as Patroni does: only when `Content-Length` is present (`None`
/// otherwise), at most `max_body_bytes` (413) within `body_read_timeout` (408).
async fn read_body(req: Request<Incoming>, limits: &Limits) -> Result<Option<Bytes>, Reply> {
    let Some(len) = req.headers().get(CONTENT_LENGTH) else {
        return Ok(None);
    };
    let len: u64 = len
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| error(400))?;
    if len > limits.max_body_bytes as u64 {
        return Err(Reply::text(
            413,
            format!("request body larger than {} bytes", limits.max_body_bytes),
        ));
    }
    let body = Limited::new(req.into_body(), limits.max_body_bytes);
    match tokio::time::timeout(limits.body_read_timeout, body.collect()).await {
        Err(_) => Err(Reply::text(408, "request body not received in time")),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(Reply::text(
                413,
                format!("request body larger than {} bytes", limits.max_body_bytes),
            ))
        }
        Ok(Err(_)) => Err(error(400)),
        Ok(Ok(collected)) => Ok(Some(collected.to_bytes())),
    }
}

fn to_response(reply: Reply, extra: &[(HeaderName, HeaderValue)]) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (content_type, body) = match reply.body {
        Some(b) => (Some(b.content_type()), Bytes::from(b.into_string())),
        None => (None, Bytes::new()),
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    if let Some(ct) = content_type {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    for (n, v) in extra {
        headers.append(n.clone(), v.clone());
    }
    for (n, v) in reply.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(n.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            headers.append(n, v);
        }
    }
    resp
}
