//! The command line: `manning [global options] <role> [role options]`.
//!
//! Each role's arguments are a struct in the role's own module; this file only lists the
//! roles, sets up logging and maps the role's result to an exit code
//! (see [`crate::error`]).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::{EXIT_OK, exit_code_for};
use crate::logging::{self, LogFormat};

/// Highly available PostgreSQL on Docker Swarm and bare hosts: one binary for every role
/// of a Patroni + HAProxy + socat stack, reading the same patroni.yml and haproxy.cfg.
#[derive(Debug, Parser)]
#[command(
    name = "manning",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Log filter: a level (error, warn, info, debug, trace) or a full filter such as
    /// `info,manning::proxy=debug`. Default: `RUST_LOG`, else `info`.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

/// The roles. Only roles that work are listed.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the shared socket directory with owner and mode, then exit (idempotent).
    SocketDir(crate::init::socket_dir::Args),
    /// Accept on TCP or UNIX and pipe bytes to TCP or UNIX (socat's role; socat syntax works).
    Forward(crate::forward::Args),
    /// Run postgres under HA control: Patroni's role (PID 1 or a systemd service).
    Supervise(crate::supervise::Args),
    /// Start a local cluster (etcd, postgres, proxy, forwarder) on loopback; Ctrl-C stops it.
    Demo(crate::demo::Args),
    /// Check a patroni.yml (every problem with file, line and key) or show it as JSON.
    Config(crate::config::cmd::Args),
    /// Route clients to the healthy primary, driven by the seed's haproxy.cfg (HAProxy's role).
    Proxy(crate::proxy::Args),
    /// Operator verbs against a running cluster (patronictl's list and switchover).
    Ctl(crate::ctl::Args),
}

/// Parse the command line, run the chosen role, and turn its result into an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // socat's -d flags on `forward` imply a level; --log-level and RUST_LOG still win.
    let implied_level = match &cli.command {
        Command::Forward(args) if std::env::var_os("RUST_LOG").is_none_or(|v| v.is_empty()) => {
            args.log_level()
        }
        _ => None,
    };
    if let Err(err) = logging::init(cli.log_level.as_deref().or(implied_level), cli.log_format) {
        eprintln!("manning: {err:#}");
        return ExitCode::from(exit_code_for(&err));
    }
    match run(cli.command) {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(err) => {
            eprintln!("manning: {err:#}");
            ExitCode::from(exit_code_for(&err))
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::SocketDir(args) => crate::init::socket_dir::run(args),
        Command::Forward(args) => crate::forward::run(args),
        Command::Config(args) => crate::config::cmd::run(args),
        Command::Supervise(args) => crate::supervise::run(args),
        Command::Demo(args) => crate::demo::run(args),
        Command::Proxy(args) => crate::proxy::run(args),
        Command::Ctl(args) => crate::ctl::run(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
