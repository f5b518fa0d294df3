//! `manning config check|show`: validate a configuration, or print it as manning sees it.
//!
//! Both read the configuration exactly as the roles do ([`crate::config::load`] with the
//! process environment). Problems go to stderr, one per line, as
//! `FILE:LINE:COL: key.path: message`; the exit code is 2 when any of them is an error.

use std::path::PathBuf;

use super::{LoadOptions, Problems, load};
use crate::error::usage;

/// Arguments of `manning config`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

/// `manning config` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Report every problem of a configuration (file, line, column, key); exit 2 on errors.
    Check {
        /// patroni.yml, or a directory of YAML files. Default: the YAML text in
        /// PATRONI_CONFIGURATION. Secrets are read from MANNING_SECRETS_DIR (/run/secrets).
        file: Option<PathBuf>,
    },
    /// Print the effective configuration as JSON, secrets as `"<redacted>"`.
    Show {
        /// patroni.yml, or a directory of YAML files. Default: the YAML text in
        /// PATRONI_CONFIGURATION.
        file: Option<PathBuf>,
        /// Print secrets as they are instead of `"<redacted>"`.
        #[arg(long)]
        show_secrets: bool,
    },
}

fn fail(problems: Problems) -> anyhow::Error {
    for p in &problems.0 {
        eprintln!("{p}");
    }
    let errors = problems.error_count();
    let warnings = problems.0.len() - errors;
    usage(format!(
        "the configuration has {errors} error{} and {warnings} warning{}",
        if errors == 1 { "" } else { "s" },
        if warnings == 1 { "" } else { "s" }
    ))
}

/// Run `manning config …`.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Check { file } => {
            let loaded = load(&LoadOptions::from_process(file)).map_err(fail)?;
            for w in &loaded.warnings {
                eprintln!("{w}");
            }
            let n = loaded.warnings.len();
            println!(
                "{}: configuration is valid ({n} warning{})",
                loaded.source,
                if n == 1 { "" } else { "s" }
            );
            Ok(())
        }
        Command::Show { file, show_secrets } => {
            let loaded = load(&LoadOptions::from_process(file)).map_err(fail)?;
            for w in &loaded.warnings {
                eprintln!("{w}");
            }
            let json = loaded.config.to_json(show_secrets);
            let text = serde_json::to_string_pretty(&json)
                .map_err(|e| anyhow::anyhow!("cannot render the configuration: {e}"))?;
            println!("{text}");
            Ok(())
        }
    }
}
