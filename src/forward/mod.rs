//! `manning forward LISTEN TARGET`: socat's role in the seed stack.
//!
//! The seed's `localhost-ingress` service runs
//! `socat -dd TCP-L:5432,fork,bind=localhost UNIX:/run/patroni/proxy.sock` so local clients
//! reach HAProxy's UNIX socket on `localhost:5432`. This role does the same job, with the same
//! command line, in one process: every client is a task, bytes move with splice(2), a target
//! that is down closes clients at once and is logged without flooding, a connection limit
//! queues clients in the backlog, and SIGTERM drains instead of cutting.
//!
//! - [`address`]: LISTEN and TARGET in URL form or socat syntax (pure parsing).
//! - [`report`]: what to log about repeating faults (pure, clock passed in).
//! - `server`: the accept loop, connections and the drain.

pub mod address;
pub mod report;
pub mod server;

use std::time::Duration;

use anyhow::Context;
use tracing::warn;

use crate::error::usage;
use crate::net::listener::BindOptions;
use crate::net::pump::PumpOptions;
use crate::net::{Endpoint, Listener, limits};
use address::{Family, ListenAddress, parse_duration};

/// Default for `--max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// Arguments of `manning forward`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Addresses:
  LISTEN  tcp://HOST:PORT, HOST:PORT, *:PORT, unix:///PATH, /PATH,
          TCP-LISTEN:PORT[,bind=ADDR][,backlog=N][,max-children=N][,fork][,reuseaddr]
          (also TCP-L, TCP4-LISTEN, TCP6-LISTEN), UNIX-LISTEN:PATH[,mode=0660][,unlink-early]
          (also UNIX-L)
  TARGET  tcp://HOST:PORT, HOST:PORT, unix:///PATH, /PATH,
          TCP:HOST:PORT[,connect-timeout=SECONDS] (also TCP-CONNECT, TCP4),
          UNIX:PATH (also UNIX-CONNECT, UNIX-CLIENT)

socat's command line works as it is, e.g. the seed's
  manning forward -dd TCP-L:5432,fork,bind=localhost UNIX:/run/patroni/proxy.sock
Differences: every connection is served concurrently by one process (`fork` is implied);
a UNIX socket file is only replaced when nothing answers on it (also with unlink-early);
after one side closes, the other direction is waited for (socat gives it 0.5 s; use -t).
At --max-connections, new clients wait in the listen backlog rather than being refused.")]
pub struct Args {
    /// Where to accept clients (see Addresses below).
    #[arg(value_name = "LISTEN")]
    pub listen: String,

    /// Where to send each client (see Addresses below).
    #[arg(value_name = "TARGET")]
    pub target: String,

    /// socat's verbosity flag, accepted so socat command lines work: -d warnings,
    /// -dd state changes (the default anyway), -ddd each connection, -dddd everything.
    /// --log-level and RUST_LOG take precedence.
    #[arg(short = 'd', action = clap::ArgAction::Count)]
    pub debug: u8,

    /// Most concurrent connections; beyond it new clients wait in the listen backlog until
    /// one closes. An address's max-children=N sets it too. Lowered (with a warning) when
    /// the open-file limit cannot carry it.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,

    /// After SIGTERM/SIGINT: how long open connections may go on before they are cut.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub grace: Duration,

    /// Give up a connect to the target after this long and close the client (a TARGET's
    /// connect-timeout=SECONDS takes precedence).
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub connect_timeout: Duration,

    /// After one side has closed its sending half, end the connection if the other has not
    /// finished within this long (socat's -t). Default: wait for both sides.
    #[arg(short = 't', long, value_parser = parse_duration, value_name = "DURATION")]
    pub half_close_timeout: Option<Duration>,

    /// Permission bits of a UNIX listening socket given as a URL or path (octal, e.g. 0660);
    /// socat addresses use mode= instead.
    #[arg(long, value_parser = crate::init::socket_dir::parse_mode, value_name = "MODE")]
    pub socket_mode: Option<u32>,

    /// Move bytes through a user-space buffer instead of splice(2) (for comparison, or on a
    /// kernel where splice misbehaves).
    #[arg(long)]
    pub no_splice: bool,

    /// Never hand clients over to a manning proxy: always copy bytes, even when the UNIX
    /// target has a `.handoff` socket next to it (see README, "manning forward").
    #[arg(long)]
    pub no_handoff: bool,

    /// Session threads (default: one per CPU; a connection stays on one thread, see
    /// `net::runtime`).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

impl Args {
    /// The log filter socat's `-d` flags ask for: -d warn, -dd info, -ddd debug, more trace.
    pub fn log_level(&self) -> Option<&'static str> {
        match self.debug {
            0 => None,
            1 => Some("warn"),
            2 => Some("info"),
            3 => Some("debug"),
            _ => Some("trace"),
        }
    }
}

/// Run the forwarder until SIGTERM/SIGINT, then drain.
pub fn run(args: Args) -> anyhow::Result<()> {
    let listen = address::parse_listen(&args.listen).map_err(|e| usage(format!("LISTEN: {e}")))?;
    let target = address::parse_target(&args.target).map_err(|e| usage(format!("TARGET: {e}")))?;
    let explicit_max = args.max_connections.or(listen.max_children);
    let max_connections = explicit_max.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if max_connections == 0 || max_connections > u32::MAX as usize {
        return Err(usage(format!(
            "--max-connections {max_connections}: must be from 1 to {}",
            u32::MAX
        )));
    }
    if args.socket_mode.is_some() && !matches!(listen.endpoint, Endpoint::Unix(_)) {
        return Err(usage(format!(
            "--socket-mode applies to a UNIX listening socket, and LISTEN {:?} is TCP",
            args.listen
        )));
    }

    let rt = crate::net::runtime::control("manning-forward")?;
    let workers = crate::net::runtime::Workers::start(args.threads, "manning-forward")?;
    let result = rt.block_on(async {
        // Installed before binding, so a signal during start-up is not lost.
        let shutdown = crate::signals::shutdown_signal().context("installing signal handlers")?;
        let max_connections = fit_to_fd_limit(max_connections, explicit_max.is_some());
        let endpoint = resolve_listen(&listen).await?;
        let opts = BindOptions {
            unix_mode: listen.unix_mode.or(args.socket_mode),
            backlog: listen.backlog,
        };
        let listener = Listener::bind(&endpoint, &opts)
            .await
            .with_context(|| format!("listening on {endpoint}"))?;
        let handoff = match &target.endpoint {
            Endpoint::Unix(path) if !args.no_handoff => Some(crate::net::handoff::path_for(path)),
            _ => None,
        };
        let cfg = server::Config {
            target: target.endpoint,
            connect_timeout: target.connect_timeout.unwrap_or(args.connect_timeout),
            max_connections,
            grace: args.grace,
            pump: PumpOptions {
                splice: !args.no_splice,
                half_close_timeout: args.half_close_timeout,
                ..PumpOptions::default()
            },
            handoff,
        };
        server::serve(listener, cfg, workers, shutdown).await
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}

/// Raise the open-file limit and lower `wanted` to what it can carry (with a warning when
/// the user asked for `wanted`; the default is lowered quietly, the "listening" line shows
/// the limit in force).
fn fit_to_fd_limit(wanted: usize, explicit: bool) -> usize {
    let nofile = match limits::raise_nofile_limit() {
        Ok(n) => n,
        Err(e) => {
            warn!("could not read or raise the open-file limit: {e}");
            return wanted;
        }
    };
    let fits = limits::max_connections_for(nofile).max(1) as usize;
    if wanted > fits && !explicit {
        return fits;
    }
    if wanted > fits {
        warn!(
            "the open-file limit ({nofile}) carries at most {fits} connections; \
             serving at most {fits} instead of {wanted} (raise `ulimit -n` / LimitNOFILE)"
        );
        return fits;
    }
    wanted
}

/// Resolve a socat listening address's `bind=NAME` within its IP family (socat's `TCP-L` is
/// IPv4, so `bind=localhost` is 127.0.0.1 even where `localhost` resolves to ::1 first).
async fn resolve_listen(listen: &ListenAddress) -> anyhow::Result<Endpoint> {
    let (host, port) = match &listen.endpoint {
        Endpoint::Tcp { host, port } if listen.family != Family::Any && !host.is_empty() => {
            (host.as_str(), *port)
        }
        other => return Ok(other.clone()),
    };
    let want_v4 = listen.family == Family::V4;
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("resolving bind address {host:?}"))?;
    let ip = addrs
        .map(|a| a.ip())
        .find(|ip| ip.is_ipv4() == want_v4)
        .with_context(|| {
            format!(
                "bind address {host:?} has no {} address",
                if want_v4 { "IPv4" } else { "IPv6" }
            )
        })?;
    Ok(Endpoint::Tcp {
        host: ip.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn the_seeds_command_line_parses_as_it_is() {
        let cmd = Cmd::try_parse_from(
            "forward -dd TCP-L:5432,fork,bind=localhost UNIX:/run/patroni/proxy.sock".split(' '),
        )
        .unwrap();
        assert_eq!(cmd.args.debug, 2);
        assert_eq!(cmd.args.log_level(), Some("info"));
        assert_eq!(cmd.args.listen, "TCP-L:5432,fork,bind=localhost");
        assert_eq!(cmd.args.target, "UNIX:/run/patroni/proxy.sock");
        assert_eq!(cmd.args.grace, Duration::from_secs(10));
        let l = address::parse_listen(&cmd.args.listen).unwrap();
        assert_eq!(l.family, Family::V4);
        assert!(address::parse_target(&cmd.args.target).is_ok());
    }

    #[test]
    fn verbosity_maps_to_levels() {
        let level = |flags: &str| {
            let mut argv = vec!["forward"];
            if !flags.is_empty() {
                argv.push(flags);
            }
            argv.extend(["tcp://127.0.0.1:1", "unix:///x"]);
            Cmd::try_parse_from(argv).unwrap().args.log_level()
        };
        assert_eq!(level(""), None);
        assert_eq!(level("-d"), Some("warn"));
        assert_eq!(level("-ddd"), Some("debug"));
        assert_eq!(level("-dddd"), Some("trace"));
    }

    #[test]
    fn socat_half_close_flag_takes_seconds() {
        let cmd = Cmd::try_parse_from(["forward", "-t", "0.5", "TCP-L:1", "UNIX:/x"]).unwrap();
        assert_eq!(
            cmd.args.half_close_timeout,
            Some(Duration::from_millis(500))
        );
    }

    #[tokio::test]
    async fn bind_names_resolve_within_the_family() {
        let l = address::parse_listen("TCP-L:5432,bind=localhost").unwrap();
        assert_eq!(
            resolve_listen(&l).await.unwrap(),
            Endpoint::Tcp {
                host: "127.0.0.1".into(),
                port: 5432
            }
        );
        let l = address::parse_listen("TCP4-L:5432,bind=::1").unwrap();
        let err = resolve_listen(&l).await.unwrap_err().to_string();
        assert!(err.contains("no IPv4 address"), "{err}");
        // URL forms bind what they say.
        let l = address::parse_listen("tcp://localhost:5432").unwrap();
        assert_eq!(resolve_listen(&l).await.unwrap(), l.endpoint);
    }
}
