//! The supervisor's shell around [`crate::ha::decide`]: it observes (etcd, the local
//! postgres, the clock), asks `decide` for a plan, executes the plan's actions in order, and
//! publishes what it knows (the member key in etcd, the REST API snapshot, systemd status).
//!
//! One task owns all of this state; nothing else mutates it. Other tasks only talk to it:
//! the REST API sends commands over a channel, the etcd watch and the postmaster's exit wake
//! it early, signals end it. The fence ([`crate::ha::fence`]) is the one exception that acts
//! on its own: an OS thread that stops postgres at the deadline if the loop has not renewed
//! the lock by then.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use tokio::sync::{Notify, mpsc, watch};
use tracing::{debug, error, info, warn};

use crate::api::control::replies;
use crate::api::{ApiCommand, ApiRequest, Snapshot};
use crate::config::{Config, DynamicConfig, LoadOptions};
use crate::dcs::model::Cluster;
use crate::dcs::{Dcs, DcsError, Renewal};
use crate::ha::decide::{self, Action, DataDir, Lock, Observation, Plan, StartAs};
use crate::ha::fence::Fence;
use crate::ha::sync;
use crate::init::notify::Notifier;
use crate::init::pid1::{InitEvent, InitSignals};
use crate::init::privileges::RunAs;
use crate::init::reaper::Reaper;
use crate::postgres::basebackup::{self, BasebackupSpec, Source};
use crate::postgres::bootstrap::{self, BootstrapSpec, HbaSetup};
use crate::postgres::process::{Postmaster, PostmasterOutput, PostmasterSpec, StopPlan};
use crate::postgres::sql::{self, LocalConn, Probe, RoleSpec};
use crate::postgres::{conf, controldata, initdb};

use super::layout::{self, Layout};
use super::peers;

/// What the local postgres is doing, as the shell tracks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PgRun {
    Stopped,
    Crashed,
    Starting { as_primary: bool, since: Instant },
    Running,
}

/// How executing one action ended.
enum Step {
    /// Go on with the next action.
    Next,
    /// Stop this plan (a lost race, etcd unreachable); the next cycle decides again.
    Abort(String),
}

/// How the supervisor stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ShutdownMode {
    /// SIGTERM/SIGINT: smart, then fast, then immediate.
    Clean,
    /// SIGQUIT: immediate at once.
    Immediate,
}

/// The supervisor's state; owned by the one task that runs [`Node::run`].
pub(super) struct Node {
    pub(super) cfg: Config,
    /// The configuration file (for reloads).
    config_path: Option<std::path::PathBuf>,
    /// The effective dynamic configuration (DCS `/config` merged with the local file).
    pub(super) dynamic: DynamicConfig,
    pub(super) layout: Layout,
    run_as: RunAs,
    reaper: Reaper,
    dcs: Dcs,
    fence: Fence,
    notifier: Notifier,
    snapshot_tx: watch::Sender<Snapshot>,

    pub(super) pm: Option<Postmaster>,
    pub(super) pg: PgRun,
    /// We asked postgres to stop: its exit is not a crash.
    stopping: bool,
    pub(super) sysid: Option<u64>,
    client: Option<tokio_postgres::Client>,
    pub(super) probe: Option<Probe>,

    /// The member our `primary_conninfo` points at, and the recovery settings written with
    /// every postgresql.conf (a replica's conninfo must survive a reload).
    upstream: Option<String>,
    recovery: Option<conf::RecoveryParams>,
    /// `synchronous_standby_names` while we manage it (`synchronous_mode`), and the flush
    /// LSN when it last changed (a new standby is published only once past it).
    sync_standbys: Option<Vec<String>>,
    sync_changed_at: u64,
    /// Run the next cycle soon (a synchronous standby awaits confirmation).
    hurry: bool,
    /// Set by the checkpoint that follows a promotion once it is done.
    pub(super) checkpoint_after_promote: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// When `synchronous_standby_names` last changed.
    sync_changed_when: Instant,
    /// `pg_stat_replication` from the last leader cycle (the REST API shows it).
    pub(super) walsenders: Vec<sql::WalSender>,

    pub(super) lock: Lock,
    pub(super) cluster: Option<Cluster>,
    /// Unix time of the last successful etcd read.
    pub(super) dcs_last_seen: u64,
    etcd_was_down: bool,
    last_message: String,
    pub(super) next_run: Instant,
    ready_notified: bool,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl Node {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        cfg: Config,
        config_path: Option<std::path::PathBuf>,
        layout: Layout,
        run_as: RunAs,
        reaper: Reaper,
        dcs: Dcs,
        fence: Fence,
        notifier: Notifier,
        snapshot_tx: watch::Sender<Snapshot>,
    ) -> Node {
        let dynamic = cfg.effective_dynamic(None);
        Node {
            cfg,
            config_path,
            dynamic,
            layout,
            run_as,
            reaper,
            dcs,
            fence,
            notifier,
            snapshot_tx,
            pm: None,
            pg: PgRun::Stopped,
            stopping: false,
            sysid: None,
            client: None,
            probe: None,
            upstream: None,
            recovery: None,
            sync_standbys: None,
            sync_changed_at: 0,
            hurry: false,
            checkpoint_after_promote: None,
            sync_changed_when: Instant::now(),
            walsenders: Vec::new(),
            lock: Lock::default(),
            cluster: None,
            dcs_last_seen: 0,
            etcd_was_down: false,
            last_message: String::new(),
            next_run: Instant::now(),
            ready_notified: false,
        }
    }

    pub(super) fn loop_wait(&self) -> Duration {
        Duration::from_secs(self.dynamic.loop_wait().max(1))
    }

    pub(super) fn settings(&self) -> decide::Settings {
        decide::Settings {
            ttl: Duration::from_secs(self.dynamic.ttl()),
            fence_margin: self.cfg.manning.fence_margin(),
            primary_start_timeout: Duration::from_secs(self.dynamic.primary_start_timeout()),
            nofailover: self.cfg.tags.nofailover.unwrap_or(false)
                || self.cfg.tags.failover_priority == Some(0),
            paused: self.dynamic.pause(),
            use_pg_rewind: self.dynamic.pg().use_pg_rewind(),
        }
    }

    /// Run until a shutdown signal; returns after postgres has stopped.
    pub(super) async fn run(
        mut self,
        mut signals: InitSignals,
        mut commands: mpsc::Receiver<ApiRequest>,
        wake: Arc<Notify>,
    ) -> anyhow::Result<()> {
        let mut watch = self.dcs.watch();
        let mut seen = watch.latest();
        loop {
            if let Err(e) = self.cycle().await {
                error!("{e:#}");
                self.shutdown(ShutdownMode::Clean).await;
                return Err(e);
            }
            // Right after a change of synchronous standbys, look again soon: the new one is
            // published (and may take over) only once postgres confirms it.
            let wait = if std::mem::take(&mut self.hurry) {
                Duration::from_millis(250).min(self.loop_wait())
            } else {
                self.loop_wait()
            };
            self.next_run = Instant::now() + wait;
            let nap = tokio::time::sleep_until(self.next_run.into());
            tokio::pin!(nap);
            let pm = self.pm.clone();
            let pm_exit = async move {
                match pm {
                    Some(pm) => {
                        pm.exited().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::pin!(pm_exit);
            // Wait for the next reason to run a cycle.
            loop {
                tokio::select! {
                    ev = signals.recv() => match ev {
                        InitEvent::Terminate | InitEvent::Interrupt => {
                            info!(signal = ev.signal_name(), "shutting down: stopping postgres, then releasing the leader lock");
                            self.shutdown(ShutdownMode::Clean).await;
                            return Ok(());
                        }
                        InitEvent::Quit => {
                            info!("SIGQUIT: stopping postgres in immediate mode and exiting");
                            self.shutdown(ShutdownMode::Immediate).await;
                            return Ok(());
                        }
                        InitEvent::Reload => { self.reload(); break; }
                        InitEvent::Child => continue,
                    },
                    Some(req) = commands.recv() => { self.handle_command(req).await; break; }
                    _ = wake.notified() => break,
                    _ = &mut pm_exit => break,
                    cluster = watch.changed() => {
                        let changes = cluster.changes_since(&seen);
                        seen = cluster;
                        // `sync` too: who may take over is part of what a member publishes.
                        if changes.leader
                            || changes.config
                            || changes.failover
                            || changes.initialize
                            || changes.sync
                        {
                            break;
                        }
                    }
                    _ = &mut nap => break,
                }
            }
        }
    }

    /// One observe → decide → act round, then publish.
    async fn cycle(&mut self) -> anyhow::Result<()> {
        let obs = match self.observe().await {
            Ok(o) => o,
            Err(e) => {
                self.note(&format!("cannot observe the local data directory: {e:#}"));
                self.publish().await;
                return Ok(());
            }
        };
        let plan = decide::decide(&obs);
        self.note(&plan.message);
        self.execute(&plan).await?;
        self.heartbeat().await;
        self.publish().await;
        Ok(())
    }

    /// Log the plan's sentence when it differs from the last one (one line per change).
    fn note(&mut self, message: &str) {
        if message != self.last_message {
            info!("{message}");
            let _ = self.notifier.status(message);
            self.last_message = message.to_string();
        } else {
            debug!("{message}");
        }
    }

    // ---------------------------------------------------------------- observe

    async fn observe(&mut self) -> anyhow::Result<Observation> {
        match self.dcs.get_cluster().await {
            Ok(c) => {
                if self.etcd_was_down {
                    info!("etcd answers again");
                    self.etcd_was_down = false;
                }
                self.dcs_last_seen = unix_now();
                if let Some(cc) = &c.config {
                    let (d, warnings) = DynamicConfig::from_json_value(&cc.data);
                    for w in warnings {
                        warn!("etcd config key: {w}");
                    }
                    self.dynamic = self.cfg.effective_dynamic(Some(&d));
                }
                self.cluster = Some(c);
            }
            Err(e) => {
                if !self.etcd_was_down {
                    warn!("cannot read the cluster from etcd: {e}");
                    self.etcd_was_down = true;
                }
                self.cluster = None;
            }
        }
        if self.fence.take_fired() {
            // The fence stopped postgres; the exit below is ours, not a crash.
            self.stopping = true;
            self.lock = Lock::default();
        }
        self.refresh_postgres().await;
        let data = self.observe_data_dir().await?;
        let cluster = self.cluster.as_ref().map(|c| decide::ClusterView {
            failover_to: c
                .failover
                .as_ref()
                .filter(|f| f.scheduled_at.is_none())
                .and_then(|f| f.member.clone()),
            initialize: c.initialize.clone(),
            leader: c.leader.as_ref().map(|l| l.name.clone()),
            has_config: c
                .config
                .as_ref()
                .is_some_and(|cc| cc.data.as_object().is_some_and(|o| !o.is_empty())),
        });
        let postgres = self.pg_observation();
        let settings = self.settings();
        let candidacy = match &cluster {
            Some(c)
                if c.leader.is_none()
                    && postgres == (decide::Postgres::Running { primary: false })
                    && !settings.nofailover
                    && !settings.paused =>
            {
                Some(self.candidacy().await)
            }
            _ => None,
        };
        Ok(Observation {
            now: Instant::now(),
            me: self.cfg.name.clone(),
            settings,
            cluster,
            lock: self.lock,
            data,
            postgres,
            activity: None,
            upstream: self.upstream.clone(),
            candidacy,
        })
    }

    /// What a replica needs to know to race for a free lock: its own WAL position, the last
    /// leader's, and what the other members say about themselves.
    async fn candidacy(&self) -> decide::Candidacy {
        let my_wal = self
            .probe
            .as_ref()
            .map(|p| {
                p.receive_lsn
                    .unwrap_or_default()
                    .0
                    .max(p.replay_lsn.unwrap_or_default().0)
            })
            .unwrap_or(0);
        let targets: Vec<peers::Target> = self
            .cluster
            .iter()
            .flat_map(|c| c.members.iter())
            .filter(|m| m.name != self.cfg.name)
            .filter_map(peers::Target::of)
            .collect();
        let me = self.cfg.name.as_str();
        let in_sync_key = !self.dynamic.synchronous_mode().is_enabled()
            || self
                .cluster
                .as_ref()
                .is_some_and(|c| c.sync.members().contains(&me));
        decide::Candidacy {
            my_wal,
            cluster_optime: self.cluster.as_ref().map(|c| c.status.optime).unwrap_or(0),
            max_lag: self.dynamic.maximum_lag_on_failover(),
            peers: peers::fetch_all(&targets).await,
            in_sync_key,
        }
    }

    fn pg_observation(&self) -> decide::Postgres {
        match self.pg {
            PgRun::Stopped => decide::Postgres::Stopped,
            PgRun::Crashed => decide::Postgres::Crashed,
            PgRun::Starting { as_primary, since } => {
                decide::Postgres::Starting { as_primary, since }
            }
            PgRun::Running => decide::Postgres::Running {
                primary: self.probe.as_ref().is_some_and(|p| !p.in_recovery),
            },
        }
    }

    /// Notice a postmaster exit, readiness, and the current role.
    async fn refresh_postgres(&mut self) {
        let Some(pm) = self.pm.clone() else {
            return;
        };
        if let Some(status) = pm.exit_status() {
            if self.stopping {
                debug!(%status, "postgres stopped");
                self.pg = PgRun::Stopped;
            } else {
                error!(%status, "postgres exited unexpectedly");
                self.pg = PgRun::Crashed;
            }
            self.stopping = false;
            self.pm = None;
            self.client = None;
            self.fence.disarm();
            return;
        }
        if !pm.status().is_some_and(|s| s.accepts_connections()) {
            if self.pg == PgRun::Running {
                // It was running and no longer says so (shutting down, restarting).
                self.pg = PgRun::Starting {
                    as_primary: self.probe.as_ref().is_some_and(|p| !p.in_recovery),
                    since: Instant::now(),
                };
            }
            return;
        }
        match self.query_probe().await {
            Ok(p) => {
                if self.pg != PgRun::Running {
                    info!(
                        role = if p.in_recovery { "replica" } else { "primary" },
                        "postgres accepts connections"
                    );
                }
                self.probe = Some(p);
                self.pg = PgRun::Running;
            }
            Err(e) => debug!("postgres status query failed: {e:#}"),
        }
    }

    fn local_conn(&self) -> LocalConn {
        let su = layout::superuser(&self.cfg);
        LocalConn::new(
            &self.layout.socket_dir,
            self.layout.port,
            &su.username,
            su.password,
        )
    }

    async fn client(&mut self) -> anyhow::Result<&tokio_postgres::Client> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = Some(self.local_conn().connect().await?);
        }
        self.client
            .as_ref()
            .ok_or_else(|| anyhow!("no connection to postgres"))
    }

    async fn query_probe(&mut self) -> anyhow::Result<Probe> {
        let client = self.client().await?;
        match sql::probe(client).await {
            Ok(p) => Ok(p),
            Err(e) => {
                self.client = None;
                Err(e.into())
            }
        }
    }

    async fn observe_data_dir(&mut self) -> anyhow::Result<DataDir> {
        if !self.layout.data_dir_initialized() {
            self.sysid = None;
            return Ok(DataDir::Empty);
        }
        let sysid = match self.sysid {
            Some(s) => s,
            None => {
                let cd = controldata::read(&self.layout.bin, &self.layout.data_dir, None)
                    .await
                    .context("reading pg_controldata")?;
                self.sysid = Some(cd.system_identifier);
                cd.system_identifier
            }
        };
        Ok(DataDir::Initialized {
            sysid: sysid.to_string(),
            was_primary: !conf::standby_signal_exists(&self.layout.data_dir),
        })
    }

    // ---------------------------------------------------------------- act

    async fn execute(&mut self, plan: &Plan) -> anyhow::Result<()> {
        for action in &plan.actions {
            match self.act(action).await? {
                Step::Next => {}
                Step::Abort(why) => {
                    info!(action = ?action, "{why}");
                    break;
                }
            }
        }
        Ok(())
    }

    async fn act(&mut self, action: &Action) -> anyhow::Result<Step> {
        match action {
            Action::KeepLock => Ok(self.keep_lock().await),
            Action::AcquireLock => self.acquire_lock().await,
            Action::Bootstrap => self.bootstrap().await,
            Action::WriteInitialize => {
                if let Some(sysid) = self.sysid {
                    match self.dcs.set_initialize(&sysid.to_string()).await {
                        Ok(()) => info!(
                            sysid,
                            "wrote the initialize key (adopting this data directory)"
                        ),
                        Err(e) => return Ok(Step::Abort(format!("writing initialize: {e}"))),
                    }
                }
                Ok(Step::Next)
            }
            Action::WriteConfig => {
                let value = serde_json::to_value(
                    self.cfg
                        .initial_dcs_config()
                        .unwrap_or_else(|| self.dynamic.clone()),
                )?;
                match self.dcs.write_config(&value, None).await {
                    Ok(_) => info!("wrote the dynamic configuration to etcd"),
                    Err(e) => return Ok(Step::Abort(format!("writing config: {e}"))),
                }
                Ok(Step::Next)
            }
            Action::StartPostgres(role) => self.start_postgres(*role).await,
            Action::CreateReplica { from } => self.create_replica(from).await,
            Action::Follow { leader } => self.follow(leader).await,
            Action::Rewind { from } => self.rewind(from).await,
            Action::Promote => self.promote().await,
            Action::Demote => {
                self.stop_postgres(StopPlan::immediate()).await;
                self.lock = Lock::default();
                self.fence.disarm();
                // A demoted primary may hold WAL the new leader never had.
                let leader = self.other_leader();
                if let Some(l) = leader
                    && self.dynamic.pg().use_pg_rewind()
                    && let Step::Abort(why) = self.rewind(&l).await?
                {
                    return Ok(Step::Abort(why));
                }
                self.start_postgres(StartAs::Replica).await
            }
            Action::Fence => {
                if self.pm.is_some() {
                    error!(
                        "stopping postgres in immediate mode: the leader lock could not be \
                         renewed and may expire"
                    );
                    self.stop_postgres(StopPlan::immediate()).await;
                }
                self.lock = Lock::default();
                self.fence.disarm();
                Ok(Step::Next)
            }
            Action::GiveUpLock => {
                self.stop_postgres(StopPlan::immediate()).await;
                self.release_lock(None).await;
                Ok(Step::Next)
            }
            Action::Fatal(msg) => bail!("{msg}"),
        }
    }

    /// Record a successful renewal: the fence deadline moves.
    fn renewed(&mut self, r: &Renewal) {
        self.lock.renewed_sent_at = Some(r.sent_at.into_std());
        self.renew_fence_target();
    }

    async fn keep_lock(&mut self) -> Step {
        match self.dcs.update_leader().await {
            Ok(r) => {
                if !self.lock.held() {
                    info!("holding the leader lock");
                }
                self.renewed(&r);
                Step::Next
            }
            Err(e @ (DcsError::LockLost { .. } | DcsError::LeaseLost { .. })) => {
                error!("lost the leader lock: {e}");
                self.lost_lock();
                Step::Abort("the leader lock is lost".into())
            }
            Err(e) => Step::Abort(format!(
                "could not renew the leader lock ({e}); writes continue until the fence deadline"
            )),
        }
    }

    /// The lock is definitely gone: a running primary must stop taking writes now.
    fn lost_lock(&mut self) {
        self.lock = Lock::default();
        let primary = self.probe.as_ref().is_some_and(|p| !p.in_recovery)
            || matches!(
                self.pg,
                PgRun::Starting {
                    as_primary: true,
                    ..
                }
            );
        if primary {
            if let Some(pm) = &self.pm {
                self.fence.arm(Instant::now(), pm.clone());
            }
        } else {
            self.fence.disarm();
        }
    }

    async fn acquire_lock(&mut self) -> anyhow::Result<Step> {
        match self.dcs.attempt_acquire_leader().await {
            Ok(true) => {}
            Ok(false) => return Ok(Step::Abort("another member took the leader lock".into())),
            Err(e) => return Ok(Step::Abort(format!("could not take the leader lock: {e}"))),
        }
        // The lock lives on our lease; its expiry is the lease's, so renew it now to know
        // from when the fence deadline counts.
        match self.dcs.update_leader().await {
            Ok(r) => {
                info!("took the leader lock");
                self.renewed(&r);
                // A switchover or failover request is done once someone holds the lock.
                if let Some(f) = self.cluster.as_ref().and_then(|c| c.failover.as_ref())
                    && f.scheduled_at.is_none()
                    && !f.is_empty()
                {
                    let _ = self.dcs.delete_failover(Some(f.mod_revision)).await;
                }
                Ok(Step::Next)
            }
            Err(e) => {
                self.lost_lock();
                Ok(Step::Abort(format!(
                    "took the leader lock but could not renew it: {e}"
                )))
            }
        }
    }

    async fn release_lock(&mut self, last_lsn: Option<u64>) {
        if !self.lock.held() {
            return;
        }
        match self.dcs.delete_leader(last_lsn).await {
            Ok(true) => info!("released the leader lock"),
            Ok(false) => info!("the leader lock was no longer ours"),
            Err(e) => warn!("could not release the leader lock (it expires with our lease): {e}"),
        }
        self.lock = Lock::default();
        self.fence.disarm();
    }

    async fn start_postgres(&mut self, role: StartAs) -> anyhow::Result<Step> {
        let as_primary = role == StartAs::Primary;
        let cd = controldata::read(&self.layout.bin, &self.layout.data_dir, None)
            .await
            .context("reading pg_controldata before start")?;
        self.sysid = Some(cd.system_identifier);
        let mut params = conf::server_parameters(&layout::param_inputs(
            &self.cfg,
            &self.dynamic,
            &self.layout,
        ))
        .map_err(|e| crate::error::usage(format!("postgresql parameters: {e}")))?;
        for w in params.raise_to_controldata(&cd) {
            warn!("{w}");
        }
        for w in &params.warnings {
            debug!("{w}");
        }
        if as_primary {
            self.recovery = None;
            self.upstream = None;
        } else {
            self.sync_standbys = None;
            let leader = self.other_leader();
            let slot = match &leader {
                Some(l) => self.ensure_slot_on(l).await,
                None => None,
            };
            self.set_upstream(leader.as_deref(), slot)?;
        }
        let owner = self.owner();
        self.managed_parameters(&mut params.conf);
        conf::write_postgresql_conf(
            &self.layout.data_dir,
            &params.conf,
            self.recovery.as_ref(),
            owner,
        )?;
        if as_primary {
            conf::remove_recovery_signals(&self.layout.data_dir)?;
        } else {
            conf::write_standby_signal(&self.layout.data_dir, owner)?;
        }
        let mut spec = PostmasterSpec::new(self.layout.bin.clone(), &self.layout.data_dir);
        // The HA loop runs on the main thread (a current-thread runtime), which lives as
        // long as the process.
        spec.stop_with_parent = true;
        spec.cmdline = params.cmdline;
        spec.run_as = Some(self.run_as.clone());
        spec.output = PostmasterOutput::Inherit;
        let role_name = if as_primary { "primary" } else { "replica" };
        info!(role = role_name, "starting postgres");
        let pm = Postmaster::start(&spec)
            .await
            .with_context(|| format!("starting postgres as {role_name}"))?;
        self.pm = Some(pm.clone());
        self.stopping = false;
        self.probe = None;
        self.client = None;
        self.pg = PgRun::Starting {
            as_primary,
            since: Instant::now(),
        };
        if as_primary && self.lock.held() {
            self.renew_fence_target();
        }
        // Most starts (even crash recovery) take well under a loop; wait a little so the
        // cycle that started postgres also publishes it running.
        match pm.wait_ready(self.loop_wait()).await {
            Ok(_) => self.refresh_postgres().await,
            Err(e) => debug!("postgres not ready yet: {e}"),
        }
        Ok(Step::Next)
    }

    /// Point the fence at the current postmaster with the deadline of the current lock.
    fn renew_fence_target(&self) {
        if let (Some(deadline), Some(pm)) = (
            decide::fence_deadline(&self.lock, &self.settings()),
            &self.pm,
        ) {
            self.fence.arm(deadline, pm.clone());
        }
    }

    fn owner(&self) -> Option<&RunAs> {
        nix::unistd::geteuid().is_root().then_some(&self.run_as)
    }

    async fn stop_postgres(&mut self, plan: StopPlan) {
        let Some(pm) = self.pm.clone() else {
            return;
        };
        self.stopping = true;
        self.client = None;
        let outcome = pm.stop(plan).await;
        info!(
            mode = ?outcome.mode,
            elapsed_ms = outcome.elapsed.as_millis() as u64,
            status = %outcome.status,
            "postgres stopped"
        );
        self.pm = None;
        self.pg = PgRun::Stopped;
        self.stopping = false;
    }

    async fn promote(&mut self) -> anyhow::Result<Step> {
        if self.dynamic.synchronous_mode().is_enabled() {
            // Take over the sync key before the first commit can happen, and in strict mode
            // make commits wait from the first one on, until a standby is confirmed.
            let me = self.cfg.name.clone();
            let version = self.cluster.as_ref().and_then(|c| c.sync.mod_revision);
            let state = crate::dcs::model::SyncState::new(&me, Vec::<String>::new(), 0);
            if let Err(e) = self.dcs.write_sync(&state, version).await {
                return Ok(Step::Abort(format!(
                    "could not take over the sync key before promoting: {e}"
                )));
            }
            let standbys = if self.dynamic.synchronous_mode_strict() {
                vec![sync::STRICT_PLACEHOLDER.to_string()]
            } else {
                Vec::new()
            };
            self.sync_standbys = Some(standbys);
            self.sync_changed_at = 0;
            self.rewrite_conf_and_reload()?;
        }
        info!("promoting postgres to primary");
        let client = match self.client().await {
            Ok(c) => c,
            Err(e) => return Ok(Step::Abort(format!("cannot connect to promote: {e:#}"))),
        };
        let promoted: bool = client
            .query_one("SELECT pg_catalog.pg_promote(true, 60)", &[])
            .await
            .map(|r| r.get(0))
            .context("pg_promote")?;
        if !promoted {
            return Ok(Step::Abort("pg_promote did not finish within 60 s".into()));
        }
        self.refresh_postgres().await;
        self.upstream = None;
        self.recovery = None;
        info!("postgres promoted to primary");
        self.renew_fence_target();
        // Until the first checkpoint on the new timeline, pg_rewind against us would see the
        // old timeline in our control file. Checkpoint now, in the background, and say so in
        // the member key meanwhile (Patroni's `checkpoint_after_promote`).
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        self.checkpoint_after_promote = Some(done.clone());
        let conn = self.local_conn();
        tokio::spawn(async move {
            match conn.connect().await {
                Ok(client) => match sql::checkpoint(&client).await {
                    Ok(()) => {
                        done.store(true, std::sync::atomic::Ordering::SeqCst);
                        info!("checkpoint after promotion done");
                    }
                    Err(e) => warn!("checkpoint after promotion: {e}"),
                },
                Err(e) => warn!("checkpoint after promotion: {e}"),
            }
        });
        Ok(Step::Next)
    }

    /// The member holding the leader lock, when it is not us.
    fn other_leader(&self) -> Option<String> {
        self.cluster
            .as_ref()?
            .leader
            .as_ref()
            .map(|l| l.name.clone())
            .filter(|l| *l != self.cfg.name)
    }

    /// `host:port` of a member, from the `conn_url` of its member key.
    fn member_address(&self, name: &str) -> Option<(String, u16)> {
        self.cluster
            .as_ref()?
            .members
            .iter()
            .find(|m| m.name == name)?
            .data
            .conn_url
            .as_deref()
            .and_then(super::publish::host_port_of_url)
    }

    /// Recovery settings for streaming from `leader` (none: a replica without upstream,
    /// which replays what it has and waits) through `slot` (none: without a slot, when
    /// `use_slots` is off or the slot could not be made). Writes the pass file
    /// `primary_conninfo` names.
    fn set_upstream(&mut self, leader: Option<&str>, slot: Option<String>) -> anyhow::Result<()> {
        let address = leader.and_then(|l| self.member_address(l).map(|a| (l, a)));
        let mut params = conf::RecoveryParams {
            extra: layout::recovery_extra(&self.dynamic),
            ..Default::default()
        };
        if let Some((_, (host, port))) = &address {
            let passfile = layout::pgpass_path(&self.cfg, &self.layout);
            let repl = &self.cfg.postgresql.authentication.replication;
            let line = crate::postgres::secret_file::pgpass_line(
                "*",
                "*",
                "*",
                &repl.username,
                repl.password.as_ref().map(|p| p.expose()).unwrap_or(""),
            );
            crate::postgres::secret_file::write_pgpass(&passfile, &[line], self.owner())
                .with_context(|| format!("writing the pass file {}", passfile.display()))?;
            params.primary_conninfo =
                Some(layout::primary_conninfo(&self.cfg, host, *port, &passfile));
            params.primary_slot_name = slot;
        }
        let upstream = address.map(|(l, _)| l.to_string());
        if upstream != self.upstream {
            info!(
                upstream = upstream.as_deref().unwrap_or("none"),
                "replication source set"
            );
        }
        self.upstream = upstream;
        self.recovery = Some(params);
        Ok(())
    }

    /// Point a running replica at a new leader: rewrite postgresql.conf and reload
    /// (`primary_conninfo` is reloadable since PostgreSQL 13).
    async fn follow(&mut self, leader: &str) -> anyhow::Result<Step> {
        if self.member_address(leader).is_none() {
            return Ok(Step::Abort(format!(
                "the leader {leader} has no conn_url in its member key yet"
            )));
        }
        let slot = self.ensure_slot_on(leader).await;
        self.set_upstream(Some(leader), slot)?;
        self.rewrite_conf_and_reload()?;
        Ok(Step::Next)
    }

    /// How to reach `member` with the replication protocol.
    fn replication_source(&self, member: &str) -> Option<Source> {
        let (host, port) = self.member_address(member)?;
        let repl = &self.cfg.postgresql.authentication.replication;
        Some(Source {
            bin: self.layout.bin.clone(),
            host,
            port,
            credentials: crate::postgres::Credentials {
                username: repl.username.clone(),
                password: repl.password.clone(),
            },
            run_as: self.run_as.clone(),
            secret_dir: self.layout.secret_dir.clone(),
        })
    }

    /// With `use_slots`, make sure our slot exists on `member` before streaming from it;
    /// returns the slot's name when it does.
    async fn ensure_slot_on(&self, member: &str) -> Option<String> {
        if !self.dynamic.pg().use_slots() {
            return None;
        }
        let source = self.replication_source(member)?;
        let slot = crate::postgres::slots::slot_name(&self.cfg.name);
        match basebackup::ensure_slot(&source, &slot).await {
            Ok(()) => Some(slot),
            Err(e) => {
                warn!("could not make sure our replication slot exists on {member}: {e}");
                None
            }
        }
    }

    /// Build our data directory from `from` with pg_basebackup (the lease is kept alive
    /// meanwhile), then mark it a standby so it can never start as a primary by mistake.
    async fn create_replica(&mut self, from: &str) -> anyhow::Result<Step> {
        let Some(source) = self.replication_source(from) else {
            return Ok(Step::Abort(format!(
                "the leader {from} has no conn_url in its member key yet"
            )));
        };
        let spec = BasebackupSpec {
            source,
            program: self.cfg.postgresql.bin_name.pg_basebackup.clone(),
            data_dir: self.layout.data_dir.clone(),
            slot: self.ensure_slot_on(from).await,
            options: self.cfg.postgresql.basebackup.clone(),
            timeout: Duration::from_secs(24 * 3600),
        };
        match self.with_keepalive(basebackup::run(&spec)).await {
            Ok(took) => {
                conf::write_standby_signal(&self.layout.data_dir, self.owner())?;
                self.sysid = None;
                info!(
                    source = from,
                    seconds = format!("{:.1}", took.as_secs_f64()),
                    "replica data directory copied"
                );
                Ok(Step::Next)
            }
            Err(e) => Ok(Step::Abort(format!(
                "could not build a replica from {from}: {e}; trying again next cycle"
            ))),
        }
    }

    /// pg_rewind our stopped data directory from `from` (the rewind user, else the
    /// superuser). On failure with `remove_data_directory_on_rewind_failure`, the directory
    /// is emptied so the next cycle copies it afresh.
    async fn rewind(&mut self, from: &str) -> anyhow::Result<Step> {
        let Some(mut source) = self.replication_source(from) else {
            return Ok(Step::Abort(format!(
                "the leader {from} has no conn_url in its member key yet"
            )));
        };
        let pending = self
            .cluster
            .as_ref()
            .and_then(|c| c.members.iter().find(|m| m.name == from))
            .is_some_and(|m| m.data.checkpoint_after_promote == Some(false));
        if pending {
            return Ok(Step::Abort(format!(
                "waiting for {from}'s checkpoint after its promotion before pg_rewind"
            )));
        }
        let auth = &self.cfg.postgresql.authentication;
        let user = auth.rewind.as_ref().unwrap_or(&auth.superuser);
        source.credentials = crate::postgres::Credentials {
            username: user.username.clone(),
            password: user.password.clone(),
        };
        let spec = crate::postgres::rewind::RewindSpec {
            source,
            program: self.cfg.postgresql.bin_name.pg_rewind.clone(),
            data_dir: self.layout.data_dir.clone(),
            options: self.cfg.postgresql.rewind.clone(),
            timeout: Duration::from_secs(24 * 3600),
        };
        // pg_rewind compares timelines through the source's control file, which a new
        // primary updates only at its first checkpoint after promotion: before that it
        // would report "no rewind required" and leave a diverged directory behind.
        let checkpoint = crate::postgres::sql::LocalConn::tcp(
            &spec.source.host,
            spec.source.port,
            &spec.source.credentials.username,
            spec.source.credentials.password.clone(),
        );
        match checkpoint.connect().await {
            Ok(client) => {
                if let Err(e) = sql::checkpoint(&client).await {
                    warn!("CHECKPOINT on {from} before pg_rewind failed: {e}");
                }
            }
            Err(e) => {
                return Ok(Step::Abort(format!(
                    "cannot connect to {from} to rewind: {e}"
                )));
            }
        }
        info!(source = from, "rewinding the data directory with pg_rewind");
        match self
            .with_keepalive(crate::postgres::rewind::run(&spec))
            .await
        {
            Ok(()) => {
                // From now on this directory is a standby's.
                conf::write_standby_signal(&self.layout.data_dir, self.owner())?;
                info!(source = from, "pg_rewind done");
                Ok(Step::Next)
            }
            Err(e) if self.dynamic.pg().remove_data_directory_on_rewind_failure() => {
                error!(
                    "pg_rewind from {from} failed: {e}; removing the data directory (remove_data_directory_on_rewind_failure) to copy it again"
                );
                basebackup::empty_dir(&self.layout.data_dir)
                    .with_context(|| format!("emptying {}", self.layout.data_dir.display()))?;
                self.sysid = None;
                Ok(Step::Abort(
                    "pg_rewind failed; the data directory was removed".into(),
                ))
            }
            Err(e) => Ok(Step::Abort(format!("pg_rewind from {from} failed: {e}"))),
        }
    }

    /// Run a long operation while keeping our lease (and so our member key) alive.
    async fn with_keepalive<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        let dcs = self.dcs.clone();
        let every = self.loop_wait();
        let keepalive = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = dcs.keepalive().await {
                    debug!("keepalive during a long operation: {e}");
                }
            }
        });
        let out = work.await;
        keepalive.abort();
        out
    }

    /// Race for `initialize`, then bootstrap locally and publish the new cluster.
    async fn bootstrap(&mut self) -> anyhow::Result<Step> {
        match self.dcs.race_initialize().await {
            Ok(true) => {}
            Ok(false) => return Ok(Step::Abort("another member is bootstrapping".into())),
            Err(e) => return Ok(Step::Abort(format!("initialize race: {e}"))),
        }
        info!("won the initialize race: bootstrapping a new cluster");
        let spec = match self.bootstrap_spec() {
            Ok(s) => s,
            Err(e) => {
                let _ = self.dcs.cancel_initialize().await;
                return Err(e);
            }
        };
        // Keep our lease (and member key) alive while initdb and friends run.
        let result = self.with_keepalive(bootstrap::bootstrap(&spec)).await;
        let done = match result {
            Ok(done) => done,
            Err(failure) => {
                let _ = self.dcs.cancel_initialize().await;
                let usage = failure.error.is_usage();
                let err = anyhow!("{failure}; removed the initialize key");
                return Err(if usage {
                    err.context(crate::error::UsageError("bootstrap failed".into()))
                } else {
                    err
                });
            }
        };
        self.sysid = Some(done.system_identifier);
        self.pm = Some(done.postmaster);
        self.probe = Some(done.probe);
        self.pg = PgRun::Running;
        self.stopping = false;
        self.dcs
            .set_initialize(&done.system_identifier.to_string())
            .await
            .context("writing the initialize key after bootstrap")?;
        if let Some(d) = self.cfg.initial_dcs_config() {
            self.dcs
                .write_config(&serde_json::to_value(&d)?, None)
                .await
                .context("writing the dynamic configuration after bootstrap")?;
        }
        let r = self
            .dcs
            .take_leader()
            .await
            .context("taking the leader lock after bootstrap")?;
        self.renewed(&r);
        info!(
            sysid = done.system_identifier,
            "new cluster initialized; I am the leader"
        );
        Ok(Step::Next)
    }

    fn bootstrap_spec(&self) -> anyhow::Result<BootstrapSpec> {
        let b = self
            .cfg
            .bootstrap
            .as_ref()
            .ok_or_else(|| crate::error::usage("no `bootstrap` section: cannot bootstrap"))?;
        let initdb_json = serde_json::Value::Array(
            b.initdb
                .iter()
                .map(|o| match o {
                    crate::config::CmdOption::Flag(n) => serde_json::Value::String(n.clone()),
                    crate::config::CmdOption::Value(n, v) => serde_json::json!({ n: v }),
                })
                .collect(),
        );
        let options = initdb::parse_options(&initdb_json)
            .map_err(|e| crate::error::usage(format!("bootstrap.initdb: {e}")))?;
        let dynamic = self.cfg.effective_dynamic(None);
        let params =
            conf::server_parameters(&layout::param_inputs(&self.cfg, &dynamic, &self.layout))
                .map_err(|e| crate::error::usage(format!("postgresql parameters: {e}")))?;
        for w in &params.warnings {
            debug!("{w}");
        }
        let mut postmaster = PostmasterSpec::new(self.layout.bin.clone(), &self.layout.data_dir);
        postmaster.stop_with_parent = true;
        postmaster.run_as = Some(self.run_as.clone());
        postmaster.output = PostmasterOutput::Inherit;
        let auth = &self.cfg.postgresql.authentication;
        let superuser = layout::superuser(&self.cfg);
        let rewind = auth
            .rewind
            .as_ref()
            .filter(|r| r.username != superuser.username)
            .map(|r| crate::postgres::Credentials {
                username: r.username.clone(),
                password: r.password.clone(),
            });
        let users = b
            .users
            .iter()
            .map(|(name, u)| RoleSpec::new(name, u.password.clone(), &u.options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| crate::error::usage(format!("bootstrap.users: {e}")))?;
        Ok(BootstrapSpec {
            initdb: initdb::InitdbSpec {
                bin: self.layout.bin.clone(),
                data_dir: self.layout.data_dir.clone(),
                options,
                superuser,
                run_as: Some(self.run_as.clone()),
                secret_dir: self.layout.secret_dir.clone(),
                timeout: Duration::from_secs(600),
            },
            hba: HbaSetup {
                append: b.pg_hba.clone(),
                replace: self.cfg.postgresql.pg_hba.clone(),
            },
            params,
            postmaster,
            ready_timeout: Duration::from_secs(self.dynamic.primary_start_timeout().max(60)),
            replication: Some(crate::postgres::Credentials {
                username: auth.replication.username.clone(),
                password: auth.replication.password.clone(),
            }),
            rewind,
            users,
            post_init: b.post_bootstrap.clone(),
            post_init_timeout: Duration::from_secs(600),
        })
    }

    // ---------------------------------------------------------------- publish

    /// Keep the lease alive (non-leaders; the leader renews through `KeepLock`), write our
    /// member key, and as leader the `status` key.
    async fn heartbeat(&mut self) {
        if self.cluster.is_none() {
            return;
        }
        if !self.lock.held() {
            let renewed = match self.dcs.keepalive().await {
                Err(DcsError::NoLease | DcsError::LeaseLost { .. }) => {
                    self.dcs.refresh_lease().await
                }
                other => other,
            };
            if let Err(e) = renewed {
                debug!("lease keepalive failed: {e}");
            }
        }
        let member = self.member();
        if let Err(e) = self.dcs.touch_member(&member).await {
            debug!("writing our member key failed: {e}");
        }
        if self.lock.held() {
            self.sync_history().await;
            self.sync_slots().await;
            self.sync_replication().await;
            if let Some(lsn) = self.probe.as_ref().and_then(|p| p.flush_wal_lsn) {
                let status = crate::dcs::model::Status {
                    optime: lsn.0,
                    ..Default::default()
                };
                if let Err(e) = self.dcs.write_status(&status).await {
                    debug!("writing status failed: {e}");
                }
            }
        }
    }

    /// As leader, manage synchronous replication (`ha::sync`): read the walsenders, write
    /// the `sync` key (removals first), then `synchronous_standby_names` (additions first).
    async fn sync_replication(&mut self) {
        if self.probe.as_ref().is_none_or(|p| p.in_recovery) {
            return;
        }
        let senders = match self.client().await {
            Ok(client) => sql::walsenders(client).await,
            Err(e) => {
                debug!("synchronous replication: {e:#}");
                return;
            }
        };
        self.walsenders = match senders {
            Ok(w) => w,
            Err(e) => {
                debug!("synchronous replication: {e}");
                return;
            }
        };
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        let me = self.cfg.name.clone();
        let mode = self.dynamic.synchronous_mode();
        if !mode.is_enabled() {
            if self.sync_standbys.take().is_some() {
                info!("synchronous_mode is off: no longer managing synchronous_standby_names");
                if let Err(e) = self.rewrite_conf_and_reload() {
                    warn!("{e:#}");
                }
            }
            if cluster.sync.leader.as_deref() == Some(me.as_str()) {
                let _ = self.dcs.delete_sync(cluster.sync.mod_revision).await;
            }
            return;
        }
        let eligible: std::collections::BTreeSet<String> = cluster
            .members
            .iter()
            .filter(|m| m.name != me)
            .filter(|m| !m.data.tag_bool("nosync"))
            .map(|m| m.name.clone())
            .collect();
        let rows: Vec<sync::StandbyRow> = self
            .walsenders
            .iter()
            .filter_map(|w| {
                Some(sync::StandbyRow {
                    name: w.application_name.clone()?,
                    streaming: w.state.as_deref() == Some("streaming"),
                    sync: matches!(w.sync_state.as_deref(), Some("sync" | "quorum")),
                    flush_lsn: w.flush_lsn.unwrap_or(0),
                })
            })
            .collect();
        let ours = cluster.sync.leader.as_deref() == Some(me.as_str());
        let published: Vec<String> = if ours {
            cluster
                .sync
                .voters()
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            Vec::new()
        };
        let current = self.sync_standbys.clone().unwrap_or_default();
        let target = sync::decide_sync(&sync::SyncInputs {
            mode,
            strict: self.dynamic.synchronous_mode_strict(),
            count: self.dynamic.synchronous_node_count() as usize,
            eligible: &eligible,
            rows: &rows,
            published: &published,
            current: &current,
            changed_at_lsn: self.sync_changed_at,
        });
        if !ours || target.publish != published {
            let state = crate::dcs::model::SyncState::new(&me, target.publish.clone(), 0);
            match self.dcs.write_sync(&state, cluster.sync.mod_revision).await {
                Ok(revision) => {
                    info!(
                        sync_standby = %target.publish.join(","),
                        "sync key updated: these members may take over"
                    );
                    // The REST API validates switchovers against what we publish.
                    if let Some(c) = self.cluster.as_mut() {
                        c.sync = crate::dcs::model::SyncState {
                            mod_revision: Some(revision),
                            ..state
                        };
                    }
                }
                Err(e) => {
                    // Never change postgres' setting on a sync key we could not write.
                    warn!("could not write the sync key: {e}");
                    return;
                }
            }
        }
        let unconfirmed = target
            .standbys
            .iter()
            .any(|n| n != sync::STRICT_PLACEHOLDER && !target.publish.contains(n));
        // For a few seconds only: a standby that does not catch up is not worth a busy loop.
        self.hurry = unconfirmed && self.sync_changed_when.elapsed() < Duration::from_secs(10);
        if self.sync_standbys.as_ref() != Some(&target.standbys) {
            self.sync_changed_at = self
                .probe
                .as_ref()
                .and_then(|p| p.flush_wal_lsn)
                .map(|l| l.0)
                .unwrap_or(0);
            self.sync_changed_when = Instant::now();
            self.hurry = target
                .standbys
                .iter()
                .any(|n| n != sync::STRICT_PLACEHOLDER);
            info!(
                synchronous_standby_names = %sync::render_standby_names(&target.standbys),
                "commits now wait for these standbys"
            );
            self.sync_standbys = Some(target.standbys);
            if let Err(e) = self.rewrite_conf_and_reload() {
                warn!("{e:#}");
            }
        }
    }

    /// As leader with `use_slots`, make sure every other member has its physical slot.
    async fn sync_slots(&mut self) {
        if !self.dynamic.pg().use_slots() || self.probe.as_ref().is_none_or(|p| p.in_recovery) {
            return;
        }
        let wanted: std::collections::BTreeSet<String> = self
            .cluster
            .iter()
            .flat_map(|c| c.members.iter())
            .filter(|m| m.name != self.cfg.name)
            .map(|m| crate::postgres::slots::slot_name(&m.name))
            .collect();
        if wanted.is_empty() {
            return;
        }
        let client = match self.client().await {
            Ok(c) => c,
            Err(e) => {
                debug!("replication slots: {e:#}");
                return;
            }
        };
        match crate::postgres::slots::create_missing(client, &wanted).await {
            Ok(created) => {
                for slot in created {
                    info!(slot = %slot, "created a replication slot for a member");
                }
            }
            Err(e) => warn!("could not create replication slots: {e}"),
        }
    }

    /// As leader, keep the `history` key in step with the timeline history files (Patroni's
    /// `update_cluster_history`): `[]` on timeline 1, one entry per ended timeline after.
    async fn sync_history(&mut self) {
        let Some(timeline) = self
            .probe
            .as_ref()
            .filter(|p| !p.in_recovery)
            .and_then(|p| p.timeline)
        else {
            return;
        };
        let Some(cluster) = &self.cluster else {
            return;
        };
        let existing = cluster.history.as_ref().map(|h| h.entries.clone());
        let wanted_len = timeline.saturating_sub(1) as usize;
        if existing.as_ref().is_some_and(|e| e.len() >= wanted_len) {
            return;
        }
        let entries = match crate::postgres::timeline::read(&self.layout.data_dir, timeline) {
            Ok(Some((switches, mtime))) => super::publish::history_entries(
                &switches,
                &crate::api::time::Timestamp::from_system_time(mtime).isoformat(),
                &self.cfg.name,
                existing.as_deref().unwrap_or_default(),
            ),
            Ok(None) => Vec::new(),
            Err(e) => {
                debug!("timeline history: {e}");
                return;
            }
        };
        let history = crate::dcs::model::History {
            entries,
            mod_revision: 0,
        };
        match self.dcs.write_history(&history).await {
            Ok(_) => info!(timeline, "wrote the timeline history to etcd"),
            Err(e) => debug!("writing history failed: {e}"),
        }
    }

    async fn publish(&mut self) {
        let snapshot = self.snapshot();
        self.snapshot_tx.send_replace(snapshot);
        let _ = self.notifier.watchdog();
        if !self.ready_notified && self.pg == PgRun::Running {
            let _ = self.notifier.ready(&self.last_message);
            self.ready_notified = true;
        }
    }

    // ---------------------------------------------------------------- control

    fn reload(&mut self) {
        info!("SIGHUP: reloading the configuration");
        let opts = LoadOptions::from_process(self.config_path.clone());
        match crate::config::load(&opts) {
            Ok(loaded) => {
                loaded.log_warnings();
                self.cfg = loaded.config;
                if let Err(e) = self.rewrite_conf_and_reload() {
                    warn!("configuration reloaded, but postgres was not: {e:#}");
                }
            }
            Err(problems) => {
                warn!("reload refused, keeping the running configuration: {problems}");
            }
        }
    }

    /// Parameters manning sets itself on top of the configuration's.
    fn managed_parameters(&self, conf: &mut std::collections::BTreeMap<String, String>) {
        if let Some(names) = &self.sync_standbys {
            conf.insert(
                "synchronous_standby_names".into(),
                sync::render_standby_names(names),
            );
        }
    }

    fn rewrite_conf_and_reload(&mut self) -> anyhow::Result<()> {
        let Some(pm) = self.pm.clone() else {
            return Ok(());
        };
        let mut params = conf::server_parameters(&layout::param_inputs(
            &self.cfg,
            &self.dynamic,
            &self.layout,
        ))
        .map_err(|e| anyhow!("postgresql parameters: {e}"))?;
        self.managed_parameters(&mut params.conf);
        conf::write_postgresql_conf(
            &self.layout.data_dir,
            &params.conf,
            self.recovery.as_ref(),
            self.owner(),
        )?;
        pm.reload()?;
        info!("postgres configuration rewritten and reloaded");
        Ok(())
    }

    async fn handle_command(&mut self, req: ApiRequest) {
        info!(peer = %req.peer, command = %req.command, "REST API request");
        let reply = match req.command {
            ApiCommand::Reload => {
                self.reload();
                replies::reload_scheduled()
            }
            ApiCommand::Restart(r) => {
                if r.schedule.is_some() {
                    replies::restart_failed("scheduled restarts are not supported by manning yet")
                } else {
                    self.restart().await
                }
            }
            ApiCommand::DeleteScheduledRestart => replies::scheduled_restart_deleted(false),
            ApiCommand::Reinitialize { .. } => {
                if self.lock.held() {
                    replies::reinitialize_refused("I am the leader, can not reinitialize")
                } else {
                    replies::reinitialize_refused("reinitialize is not supported by manning yet")
                }
            }
            ApiCommand::Switchover(s) => self.switchover(s).await,
            ApiCommand::DeleteScheduledSwitchover => {
                let version = self
                    .cluster
                    .as_ref()
                    .and_then(|c| c.failover.as_ref())
                    .map(|f| f.mod_revision);
                match version {
                    None => replies::scheduled_switchover_deleted(false),
                    Some(v) => match self.dcs.delete_failover(Some(v)).await {
                        Ok(deleted) => replies::scheduled_switchover_deleted(deleted),
                        Err(_) => replies::conflict(),
                    },
                }
            }
            ApiCommand::PatchConfig { patch } => self.patch_config(&patch).await,
            ApiCommand::PutConfig { config } => {
                match self
                    .dcs
                    .write_config(&serde_json::Value::Object(config.clone()), None)
                    .await
                {
                    Ok(_) => replies::config(&config),
                    Err(_) => replies::config_write_failed(),
                }
            }
            ApiCommand::Failsafe { .. } => {
                replies::failsafe_refused("failsafe_mode is not enabled")
            }
        };
        req.responder.send(reply);
    }

    async fn patch_config(
        &mut self,
        patch: &serde_json::Map<String, serde_json::Value>,
    ) -> crate::api::reply::Reply {
        let cluster = match self.dcs.get_cluster().await {
            Ok(c) => c,
            Err(_) => return replies::no_config(),
        };
        let Some(cc) = cluster.config else {
            return replies::no_config();
        };
        let mut data = cc.data.as_object().cloned().unwrap_or_default();
        crate::api::control::patch_config(&mut data, patch);
        match self
            .dcs
            .write_config(
                &serde_json::Value::Object(data.clone()),
                Some(cc.mod_revision),
            )
            .await
        {
            Ok(_) => replies::config(&data),
            Err(DcsError::CasFailed { .. }) => replies::conflict(),
            Err(_) => replies::config_write_failed(),
        }
    }

    async fn restart(&mut self) -> crate::api::reply::Reply {
        let Some(_) = self.pm else {
            return replies::restart_failed("postgres is not running");
        };
        let primary = self.probe.as_ref().is_some_and(|p| !p.in_recovery);
        let m = &self.cfg.manning;
        self.stop_postgres(StopPlan::ladder(
            m.smart_shutdown_timeout(),
            m.fast_shutdown_timeout(),
        ))
        .await;
        let role = if primary && self.lock.held() {
            StartAs::Primary
        } else {
            StartAs::Replica
        };
        match self.start_postgres(role).await {
            Ok(_) if self.pg == PgRun::Running => replies::restarted(),
            Ok(_) => replies::restart_failed("postgres did not become ready"),
            Err(e) => replies::restart_failed(&format!("{e:#}")),
        }
    }

    // ---------------------------------------------------------------- switchover

    /// `POST /switchover` or `/failover` (Patroni's semantics). On the leader: record the
    /// request in the `failover` key, stop postgres (CHECKPOINT first so the shutdown
    /// checkpoint is short; fast mode, whose walsenders hand every WAL byte to the connected
    /// standbys before they exit), release the lock with the shutdown checkpoint's LSN, start
    /// again as a replica, and answer once another member holds the lock. Elsewhere (no
    /// leader): record the request and let the candidate race.
    async fn switchover(
        &mut self,
        s: crate::api::control::SwitchoverRequest,
    ) -> crate::api::reply::Reply {
        if s.scheduled_at.is_some() {
            return crate::api::reply::Reply::text(
                503,
                "scheduled switchovers are not supported by manning yet",
            );
        }
        // At least one of the possible candidates must answer and be able to take over.
        if let Some(names) = &s.probe {
            let targets: Vec<peers::Target> = self
                .cluster
                .iter()
                .flat_map(|c| c.members.iter())
                .filter(|m| names.contains(&m.name))
                .filter_map(peers::Target::of)
                .collect();
            let answers = peers::fetch_all(&targets).await;
            if !answers.iter().any(|p| !p.nofailover && !p.primary) {
                return replies::no_good_candidates(s.kind);
            }
        }
        let i_lead = self.lock.held() && self.is_primary();
        if !i_lead && self.other_leader().is_some() {
            // Only the leader acts on a request; a key written here would wait for a
            // failover that nobody performs.
            return crate::api::reply::Reply::text(
                503,
                format!("{} failed: send it to the leader", s.kind.title()),
            );
        }
        let request = crate::dcs::model::Failover {
            leader: s.leader.clone(),
            member: s.candidate.clone(),
            scheduled_at: None,
            mod_revision: 0,
        };
        let version = self
            .cluster
            .as_ref()
            .and_then(|c| c.failover.as_ref())
            .map(|f| f.mod_revision);
        if let Err(e) = self.dcs.write_failover(&request, version).await {
            warn!("could not write the failover key: {e}");
            return replies::switchover_failed(s.kind);
        }
        if i_lead {
            info!(
                candidate = s.candidate.as_deref().unwrap_or("any"),
                "{}: stopping postgres and handing over the leader lock",
                s.kind.as_str()
            );
            if let Ok(client) = self.client().await {
                let _ = sql::checkpoint(client).await;
            }
            self.client = None;
            let fast = self.cfg.manning.fast_shutdown_timeout();
            self.stop_postgres(StopPlan::fast(fast)).await;
            // The candidate asks our REST API whether a primary still runs here.
            self.publish().await;
            let last_lsn = controldata::read(&self.layout.bin, &self.layout.data_dir, None)
                .await
                .ok()
                .filter(|cd| cd.state.is_clean_shutdown())
                .map(|cd| cd.checkpoint_lsn.0);
            // Never a primary again from this data directory without a new decision.
            if let Err(e) = conf::write_standby_signal(&self.layout.data_dir, self.owner()) {
                warn!("{e}");
            }
            self.release_lock(last_lsn).await;
            if let Err(e) = self.start_postgres(StartAs::Replica).await {
                warn!("starting again as a replica after the switchover: {e:#}");
            }
            self.publish().await;
        }
        // Wait for someone else to hold the lock (Patroni polls the DCS once a second).
        let poll = replies::switchover_poll_timeout(self.dynamic.loop_wait() as u32);
        let deadline = Instant::now() + poll;
        let mut watch = self.dcs.watch();
        let new_leader = self
            .with_keepalive(async {
                loop {
                    let c = watch.latest();
                    if let Some(l) = c.leader.as_ref().filter(|l| l.name != self.cfg.name) {
                        return Some(l.name.clone());
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    let _ = tokio::time::timeout(left, watch.changed()).await;
                }
            })
            .await;
        match new_leader {
            Some(l) => {
                info!(new_leader = %l, "{} done", s.kind.as_str());
                replies::switched_over(s.kind, &l, s.candidate.as_deref())
            }
            None => {
                // Do not leave a request behind that would steer a later failover.
                let version = self
                    .dcs
                    .get_cluster()
                    .await
                    .ok()
                    .and_then(|c| c.failover.map(|f| f.mod_revision));
                if let Some(v) = version {
                    let _ = self.dcs.delete_failover(Some(v)).await;
                }
                replies::switchover_status_unknown(s.kind)
            }
        }
    }

    // ---------------------------------------------------------------- shutdown

    async fn shutdown(&mut self, mode: ShutdownMode) {
        let _ = self.notifier.stopping("stopping postgres");
        let last_lsn = self
            .probe
            .as_ref()
            .and_then(|p| p.flush_wal_lsn)
            .map(|l| l.0);
        let plan = match mode {
            ShutdownMode::Clean => StopPlan::ladder(
                self.cfg.manning.smart_shutdown_timeout(),
                self.cfg.manning.fast_shutdown_timeout(),
            ),
            ShutdownMode::Immediate => StopPlan::immediate(),
        };
        // Close our own connection first: smart mode waits for every session.
        self.client = None;
        self.stop_postgres(plan).await;
        // The checkpoint of a clean shutdown is the last LSN the next leader must reach.
        let last_lsn = match controldata::read(&self.layout.bin, &self.layout.data_dir, None).await
        {
            Ok(cd) if cd.state.is_clean_shutdown() => Some(cd.checkpoint_lsn.0),
            _ => last_lsn,
        };
        self.release_lock(last_lsn).await;
        if self.cluster.is_some() {
            let member = self.member();
            let _ = self.dcs.touch_member(&member).await;
        }
        self.fence.shutdown();
        self.reaper.wait_all_children().await;
        info!("stopped");
    }
}
