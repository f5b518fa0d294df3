//! `manning supervise`: Patroni's role. Runs postgres as a child (init-system style, as a
//! container's PID 1 or a systemd service), bootstraps or joins the cluster through etcd
//! in Patroni's key layout, holds the leader lock, and serves Patroni's REST API.
//!
//! Start-up order matters and is deliberate:
//! 1. load and validate the configuration (bad config: exit 2 before touching anything);
//! 2. as root: prepare the data and socket directories for the run-as user, then drop the
//!    whole process to that user — before any thread exists, because a privilege change
//!    must apply to every thread;
//! 3. install the reaper (the only `waitpid` in the process) and the fence thread;
//! 4. start a single-threaded tokio runtime (the supervisor is mostly idle; one thread
//!    keeps its memory small) with the REST API and the HA loop ([`node`]).
//!
//! It returns only after postgres has exited and every child was reaped: as PID 1,
//! returning earlier would let the kernel SIGKILL postgres.

mod layout;

/// The DCS settings a member's configuration gives (also used by `manning ctl`).
pub use layout::dcs_settings;
mod node;
mod peers;
mod publish;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::{Notify, mpsc, watch};
use tracing::info;

use crate::api::{ApiServer, Channels, Credentials, ServerConfig, Snapshot};
use crate::config::LoadOptions;
use crate::dcs::Dcs;
use crate::ha::fence::Fence;
use crate::init::notify::Notifier;
use crate::init::pid1::{self, InitSignals};
use crate::init::privileges::{self, Dirs, PrivilegeError, RunAs};
use crate::init::reaper::Reaper;

pub use layout::{Layout, value_to_conf};

/// Arguments of `manning supervise`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// patroni.yml (a file, or a directory of YAML files). Without it, the whole
    /// configuration is read from $PATRONI_CONFIGURATION, as Patroni does.
    pub config: Option<PathBuf>,
}

/// Run the supervisor until SIGTERM/SIGINT (clean stop) or SIGQUIT (immediate stop).
pub fn run(args: Args) -> anyhow::Result<()> {
    let loaded = crate::config::load(&LoadOptions::from_process(args.config.clone()))?;
    loaded.log_warnings();
    let cfg = loaded.config;
    let run_as =
        RunAs::for_postgres(Some(&cfg.manning.user)).map_err(PrivilegeError::into_anyhow)?;
    let root = nix::unistd::geteuid().is_root();
    let default_socket_usable = root || writable_dir(layout::DEFAULT_SOCKET_DIR);
    let layout = Layout::from_config(&cfg, default_socket_usable);
    privileges::prepare_dirs(
        &run_as,
        &Dirs {
            data_dir: layout.data_dir.clone(),
            socket_dirs: vec![layout.socket_dir.clone()],
            socket_dir_mode: 0o2775,
            pgpass: cfg.postgresql.pgpass.clone(),
        },
    )
    .map_err(PrivilegeError::into_anyhow)?;
    if root {
        privileges::drop_privileges(&run_as).map_err(PrivilegeError::into_anyhow)?;
        info!(user = %run_as.name, "dropped root privileges");
    }
    pid1::ignore_job_control_signals();
    let reaper = Reaper::install().context("installing the child reaper")?;
    let fence = Fence::start().context("starting the fence thread")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(cfg, args.config, layout, run_as, reaper, fence))
}

fn writable_dir(path: &str) -> bool {
    nix::unistd::access(
        path,
        nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
    )
    .is_ok()
}

async fn serve(
    cfg: crate::config::Config,
    config_path: Option<PathBuf>,
    layout: Layout,
    run_as: RunAs,
    reaper: Reaper,
    fence: Fence,
) -> anyhow::Result<()> {
    let signals = InitSignals::install(&reaper).context("installing signal handlers")?;
    let dynamic = cfg.effective_dynamic(None);
    let settings = layout::dcs_settings(&cfg, &dynamic)
        .map_err(|e| crate::error::usage(format!("etcd3: {e}")))?;
    let dcs = Dcs::new(settings).map_err(|e| crate::error::usage(format!("etcd3: {e}")))?;
    let notifier = Notifier::from_env().unwrap_or_else(|_| Notifier::disabled());

    let (snapshot_tx, snapshot_rx) =
        watch::channel(Snapshot::new(cfg.name.clone(), cfg.scope.clone()));
    let (command_tx, command_rx) = mpsc::channel(16);
    let wake = Arc::new(Notify::new());
    let server_config = ServerConfig {
        listen: cfg.restapi.listen.to_string(),
        authentication: cfg.restapi.authentication.as_ref().map(|a| Credentials {
            username: a.username.clone(),
            password: a.password.expose().to_string(),
        }),
        allowlist: cfg.restapi.allowlist.clone(),
        allowlist_include_members: cfg.restapi.allowlist_include_members,
        http_extra_headers: cfg
            .restapi
            .http_extra_headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        ..ServerConfig::default()
    };
    let server = ApiServer::bind(
        server_config,
        Channels {
            snapshot: snapshot_rx,
            commands: command_tx,
            wake: wake.clone(),
        },
    )
    .await?;
    info!(listen = %server.local_addr(), member = %cfg.name, scope = %cfg.scope, "REST API listening");
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let api = tokio::spawn(server.serve(async move {
        let _ = api_stopped.await;
    }));

    let node = node::Node::new(
        cfg,
        config_path,
        layout,
        run_as,
        reaper,
        dcs,
        fence,
        notifier,
        snapshot_tx,
    );
    let result = node.run(signals, command_rx, wake).await;
    let _ = stop_api.send(());
    let _ = api.await;
    result
}
