//! `manning proxy`: HAProxy's role in the seed stack, driven by the seed's own
//! `haproxy.cfg`.
//!
//! Each `listen` section accepts clients on its `bind`s (TCP and UNIX) and sends each one
//! to an UP server, checked over HTTP the way HAProxy checks Patroni's REST API. A `listen`
//! with `stats enable` serves the status page (HTML, CSV, JSON, Prometheus).
//!
//! Modules, from the outside in:
//! - [`haproxy_cfg`]: the configuration subset and its parser (errors name the line).
//! - [`frontend`]: accept loops under `global maxconn`, the FRONTEND counters.
//! - [`session`]: one client: slot, connect with retries, pump, cut, inactivity.
//! - [`backend`]: servers' UP/DOWN state (a `watch` per server), routing, limits, queue.
//! - [`checker`], [`check`], [`health`]: health checks (IO, protocol, rise/fall).
//! - [`counters`], [`stats`]: the numbers and their renderings.
//!
//! One deliberate difference from HAProxy: a checked server starts DOWN and is checked at
//! once (HAProxy's `init-state down`; HAProxy's default is `up`), so a proxy that starts
//! while a replica answers 503 never sends it a connection. `init-state up` restores
//! HAProxy's behaviour per server.

pub mod backend;
pub mod check;
pub mod checker;
pub mod counters;
pub mod follow;
pub mod frontend;
pub mod haproxy_cfg;
pub mod health;
pub mod session;
pub mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::error::usage;
use crate::net::listener::BindOptions;
use crate::net::runtime::Workers;
use crate::net::{Endpoint, Listener};
use backend::Backend;
use frontend::{Frontend, Phase};
use haproxy_cfg::{Config, parse_time};
use session::Route;
use stats::{FrontendStats, Snapshot};

/// `global maxconn` when the file does not set one.
pub const DEFAULT_MAXCONN: u32 = 2000;

/// Arguments of `manning proxy`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// HAProxy configuration file. The subset the seed stack uses is supported; any other
    /// directive is an error naming its line.
    #[arg(
        long,
        short = 'f',
        value_name = "FILE",
        env = "MANNING_HAPROXY_CONFIG",
        default_value = "/usr/local/etc/haproxy/haproxy.cfg"
    )]
    pub haproxy_config: PathBuf,

    /// Check the configuration, print what it sets up, and exit (like `haproxy -c`).
    #[arg(long, short = 'c')]
    pub check: bool,

    /// On SIGTERM or SIGINT: stop accepting at once, let open sessions go on for this
    /// long, then close them (HAProxy time syntax: 500ms, 2s, ...).
    #[arg(long, default_value = "2s", value_name = "TIME", value_parser = parse_time)]
    pub shutdown_grace: Duration,

    /// Session threads (default: one per CPU, like HAProxy's nbthread; a connection stays
    /// on one thread, see `net::runtime`).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Route by the cluster's leader key in etcd (HOST:PORT, comma-separated) instead of
    /// HTTP health checks: a server is UP exactly while its member holds the lock and runs
    /// as primary, so a switchover moves new sessions in milliseconds. Needs --scope.
    #[arg(
        long,
        value_name = "HOSTS",
        env = "MANNING_PROXY_ETCD",
        requires = "scope"
    )]
    pub etcd: Option<String>,

    /// The cluster's `scope` (patroni.yml) when following etcd.
    #[arg(long, value_name = "SCOPE", env = "MANNING_PROXY_SCOPE")]
    pub scope: Option<String>,

    /// The cluster's `namespace` (patroni.yml) when following etcd.
    #[arg(
        long,
        value_name = "NAMESPACE",
        env = "MANNING_PROXY_NAMESPACE",
        default_value = "/service"
    )]
    pub namespace: String,
}

impl Args {
    /// The DCS settings for `--etcd`, if given.
    fn follow_settings(&self) -> anyhow::Result<Option<crate::dcs::DcsSettings>> {
        let (Some(hosts), Some(scope)) = (&self.etcd, &self.scope) else {
            return Ok(None);
        };
        let endpoints: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .collect();
        for e in &endpoints {
            let valid = crate::net::endpoint::split_host_port(e)
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !valid {
                return Err(usage(format!(
                    "--etcd {hosts}: {e:?} is not HOST:PORT (e.g. 127.0.0.1:2379)"
                )));
            }
        }
        if endpoints.is_empty() {
            return Err(usage("--etcd: no HOST:PORT given"));
        }
        let settings = crate::dcs::DcsSettings {
            endpoints,
            tls: None,
            username: None,
            password: None,
            namespace: self.namespace.clone(),
            scope: scope.clone(),
            member_name: "manning-proxy".into(),
            ttl: Duration::from_secs(30),
            retry_timeout: Duration::from_secs(10),
        };
        settings
            .validate()
            .map_err(|e| usage(format!("--etcd {hosts}: {e}")))?;
        Ok(Some(settings))
    }
}

/// Run `manning proxy`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = load(&args)?;
    let follow = args.follow_settings()?;
    if args.check {
        print!("{}", describe(&cfg, &args));
        if let Some(f) = &follow {
            println!(
                "servers routed by the leader key of {}/{} in etcd at {} (no HTTP checks)",
                f.namespace.trim_end_matches('/'),
                f.scope,
                f.endpoints.join(",")
            );
        }
        return Ok(());
    }
    let rt = crate::net::runtime::control("manning-proxy")?;
    let workers = crate::net::runtime::Workers::start(args.threads, "manning-proxy")?;
    rt.block_on(serve(cfg, args.shutdown_grace, workers, follow))
}

/// Read and parse the configuration; errors exit 2.
pub fn load(args: &Args) -> anyhow::Result<Config> {
    let file = args.haproxy_config.display().to_string();
    let text = std::fs::read_to_string(&args.haproxy_config)
        .map_err(|e| usage(format!("cannot read the HAProxy configuration {file}: {e}")))?;
    let cfg = haproxy_cfg::parse(&file, &text, &|k| std::env::var(k).ok())
        .map_err(|e| usage(e.to_string()))?;
    if cfg.listens.is_empty() && cfg.stats.is_empty() {
        return Err(usage(format!("{file}: no 'listen' section, nothing to do")));
    }
    Ok(cfg)
}

/// A summary of what the configuration sets up (for `--check`).
pub fn describe(cfg: &Config, args: &Args) -> String {
    let mut out = format!(
        "{}: configuration is valid\nglobal maxconn {}\n",
        args.haproxy_config.display(),
        cfg.global_maxconn.unwrap_or(DEFAULT_MAXCONN)
    );
    for l in &cfg.listens {
        let binds: Vec<String> = l.binds.iter().map(|b| b.endpoint.to_string()).collect();
        out.push_str(&format!("listen {} on {}\n", l.name, binds.join(", ")));
        for s in &l.servers {
            let check = if s.check {
                format!(
                    "check port {} inter {:?} rise {} fall {}",
                    s.effective_check_port(),
                    s.inter,
                    s.rise,
                    s.fall
                )
            } else {
                "no check".into()
            };
            let limit = if s.maxconn > 0 {
                format!("maxconn {}", s.maxconn)
            } else {
                "no maxconn".into()
            };
            out.push_str(&format!(
                "  server {} {}:{} {limit}, {check}{}\n",
                s.name,
                s.host,
                s.port,
                if s.shutdown_sessions_on_down {
                    ", shutdown-sessions"
                } else {
                    ""
                }
            ));
        }
    }
    for s in &cfg.stats {
        let binds: Vec<String> = s.binds.iter().map(|b| b.endpoint.to_string()).collect();
        out.push_str(&format!(
            "stats {} on {} uri {}{}\n",
            s.name,
            binds.join(", "),
            s.uri,
            if s.auth.is_empty() {
                ""
            } else {
                " (basic auth)"
            }
        ));
    }
    out
}

async fn serve(
    cfg: Config,
    grace: Duration,
    workers: Workers,
    follow: Option<crate::dcs::DcsSettings>,
) -> anyhow::Result<()> {
    let signal = crate::signals::shutdown_signal().context("installing signal handlers")?;
    raise_open_files_limit();
    for (line, what) in &cfg.accepted_without_effect {
        info!("line {line}: '{what}' accepted; manning logs to stderr");
    }
    let started = Instant::now();
    let maxconn = cfg.global_maxconn.unwrap_or(DEFAULT_MAXCONN);
    let limit = Arc::new(Semaphore::new(maxconn as usize));
    let (phase_tx, phase) = watch::channel(Phase::Running);
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let mut loops: Vec<JoinHandle<()>> = Vec::new();
    let mut pairs = Vec::new();

    for l in &cfg.listens {
        let backend = Backend::new(l);
        let frontend = Arc::new(Frontend::new(&l.name, l.id, u64::from(maxconn)));
        let route = Arc::new(Route {
            frontend: frontend.clone(),
            backend: backend.clone(),
            retries: l.retries,
            timeouts: l.timeouts,
        });
        let mut bound = Vec::new();
        for b in &l.binds {
            let opts = BindOptions {
                unix_mode: b.unix_mode,
                backlog: None,
            };
            let listener = Listener::bind(&b.endpoint, &opts).await.with_context(|| {
                format!(
                    "listen '{}': cannot listen on {} (line {})",
                    l.name, b.endpoint, b.line
                )
            })?;
            bound.push(listener);
            // Next to each UNIX socket: the hand-off socket a local `manning forward` uses
            // to pass clients over instead of copying their bytes (net::handoff).
            if let Endpoint::Unix(path) = &b.endpoint {
                match Listener::bind_handoff(path, &opts).await {
                    Ok(h) => bound.push(h),
                    Err(e) => warn!(
                        "listen '{}': no hand-off socket next to {} ({e}); a local manning \
                         forward will copy bytes instead",
                        l.name,
                        path.display()
                    ),
                }
            }
        }
        for listener in bound {
            loops.push(tokio::spawn(frontend::accept_loop(
                listener,
                workers.clone(),
                route.clone(),
                limit.clone(),
                phase.clone(),
                alive_tx.clone(),
            )));
        }
        for (i, s) in l.servers.iter().enumerate() {
            if !s.check || follow.is_some() {
                continue;
            }
            let target = checker::CheckTarget::new(l, s);
            let probe = move || {
                let t = target.clone();
                async move { checker::probe(&t).await }
            };
            let stop = phase.clone();
            let (stop_tx, stop_rx) = watch::channel(false);
            tokio::spawn(checker::run(backend.clone(), i, probe, stop_rx));
            tokio::spawn(async move {
                let mut stop = stop;
                let _ = stop.wait_for(|p| *p == Phase::Stopped).await;
                let _ = stop_tx.send(true);
            });
        }
        let binds: Vec<String> = l.binds.iter().map(|b| b.endpoint.to_string()).collect();
        if l.servers.is_empty() {
            warn!(
                "listen {} (line {}) has no server: its clients will be refused",
                l.name, l.line
            );
        }
        if follow.is_some() {
            info!(
                "listen {} on {}: {} servers, routed by the leader key in etcd (no HTTP checks)",
                l.name,
                binds.join(", "),
                l.servers.len()
            );
        } else {
            let checked = l.servers.iter().filter(|s| s.check).count();
            info!(
                "listen {} on {}: {} servers ({checked} checked; none receives connections before its check passes)",
                l.name,
                binds.join(", "),
                l.servers.len()
            );
        }
        pairs.push((frontend, backend));
    }

    let follower = follow.map(|settings| {
        let backends = pairs.iter().map(|(_, b)| b.clone()).collect();
        tokio::spawn(follow::run(settings, backends))
    });
    let source = snapshot_source(pairs, started, phase.clone());
    for s in &cfg.stats {
        let page = Arc::new(stats::http::StatsPage::new(s));
        for b in &s.binds {
            let listener = Listener::bind(&b.endpoint, &BindOptions::default())
                .await
                .with_context(|| {
                    format!(
                        "stats '{}': cannot listen on {} (line {})",
                        s.name, b.endpoint, b.line
                    )
                })?;
            loops.push(tokio::spawn(stats::http::serve(
                listener,
                page.clone(),
                source.clone(),
                phase.clone(),
            )));
        }
        let binds: Vec<String> = s.binds.iter().map(|b| b.endpoint.to_string()).collect();
        info!(
            "status page on {} at {} (;csv, ;json, /metrics){}",
            binds.join(", "),
            s.uri,
            if s.auth.is_empty() {
                ""
            } else {
                ", basic auth"
            }
        );
    }

    let sig = signal.await;
    info!("{sig}: no longer accepting; open sessions get {grace:?} to finish");
    let _ = phase_tx.send(Phase::Draining);
    for l in loops {
        let _ = l.await;
    }
    drop(alive_tx);
    let open = maxconn as usize - limit.available_permits();
    if tokio::time::timeout(grace, alive_rx.recv()).await.is_err() {
        let left = maxconn as usize - limit.available_permits();
        warn!("closing {left} sessions still open after {grace:?} ({open} were open at {sig})");
    }
    let _ = phase_tx.send(Phase::Stopped);
    if let Some(f) = follower {
        f.abort();
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), alive_rx.recv()).await;
    info!("proxy stopped");
    Ok(())
}

/// A function that builds a stats snapshot of every proxy.
fn snapshot_source(
    pairs: Vec<(Arc<Frontend>, Arc<Backend>)>,
    started: Instant,
    phase: watch::Receiver<Phase>,
) -> Arc<dyn Fn() -> Snapshot + Send + Sync> {
    let node = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    Arc::new(move || {
        let now = Instant::now();
        let open = *phase.borrow() == Phase::Running;
        let since =
            |t: Option<Instant>| t.map(|t| now.saturating_duration_since(t).as_secs() as i64);
        let proxies = pairs
            .iter()
            .map(|(fe, be)| {
                let c = fe.counters();
                let fe_stats = FrontendStats {
                    name: fe.name.clone(),
                    id: fe.id,
                    slim: fe.slim,
                    counters: c,
                    open,
                    rate: c.rate.per_second(now),
                };
                let be_stats = be.stats();
                let be_rate = be_stats.counters.rate.per_second(now);
                let rates: Vec<u64> = be_stats
                    .servers
                    .iter()
                    .map(|s| s.counters.rate.per_second(now))
                    .collect();
                stats::proxy_rows(&fe_stats, &be_stats, be_rate, &rates, since)
            })
            .collect();
        Snapshot {
            proxies,
            pid: std::process::id(),
            uptime: now.saturating_duration_since(started),
            version: Some(env!("CARGO_PKG_VERSION").to_string()),
            node: node.clone(),
        }
    })
}

/// Each session holds two sockets (and the pump may hold pipes): lift the soft limit on
/// open files to the hard limit, as HAProxy sizes its own from `maxconn`.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_err()
    {
        warn!("could not raise the open-files limit from {soft} to {hard}");
    }
}
