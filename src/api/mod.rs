//! Patroni's REST API, served by the supervisor on `restapi.listen` (8008 by default).
//!
//! HAProxy health checks (`option httpchk` → `OPTIONS /`, `/primary`, `/replica?lag=…`),
//! Patroni peers (`GET /patroni` during the leader race), patronictl (`/cluster`,
//! `/switchover`, `/restart`, `PATCH /config`, …) and monitoring (`/metrics`) talk to it
//! exactly as to Patroni: same paths, status codes, JSON field names and messages.
//!
//! The supervisor and the API meet in two channels (see [`Channels`]):
//! - a `watch` of [`Snapshot`]: everything the API answers from, published by the HA loop;
//!   the API never queries postgres or etcd itself;
//! - an `mpsc` of [`ApiRequest`]: validated state-changing commands, each with a one-shot
//!   reply the supervisor fills with the status and message Patroni would send (helpers in
//!   [`control::replies`]), plus a `Notify` that wakes the HA loop.
//!
//! Module map (everything but `server` is pure and unit-tested without sockets):
//! - [`state`]: the snapshot types;
//! - [`health`]: routing and decisions of every GET/HEAD/OPTIONS endpoint;
//! - [`status`]: the JSON documents (`/patroni`, `/cluster`, `/history`, `/config`);
//! - [`metrics`]: Prometheus text;
//! - [`control`]: unsafe endpoints → commands, request validation, Patroni's reply texts;
//! - [`auth`]: HTTP Basic and allowlist;
//! - [`query`], [`time`]: Patroni's query-string, number-with-unit and timestamp rules;
//! - [`server`]: hyper on a TCP listener, limits, graceful shutdown.
//!
//! Starting it:
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use manning::api::{ApiServer, Channels, ServerConfig, Snapshot};
//! let (snap_tx, snap_rx) = tokio::sync::watch::channel(Snapshot::new("node1", "demo"));
//! let (cmd_tx, mut cmd_rx) = tokio::sync::mpsc::channel(16);
//! let wake = Arc::new(tokio::sync::Notify::new());
//! let server = ApiServer::bind(
//!     ServerConfig { listen: "127.0.0.1:8008".into(), ..ServerConfig::default() },
//!     Channels { snapshot: snap_rx, commands: cmd_tx, wake: wake.clone() },
//! ).await?;
//! tokio::spawn(server.serve(async { let _ = tokio::signal::ctrl_c().await; }));
//! // HA loop: snap_tx.send_replace(new_snapshot); cmd_rx.recv() → req.responder.send(reply)
//! # drop((snap_tx, cmd_rx)); Ok(()) }
//! ```

pub mod auth;
pub mod client;
pub mod control;
pub mod health;
pub mod metrics;
pub mod query;
pub mod reply;
pub mod server;
pub mod state;
pub mod status;
pub mod time;

pub use control::{
    ApiCommand, ApiRequest, Responder, RestartRequest, SwitchoverKind, SwitchoverRequest,
};
pub use reply::{Body, Reply};
pub use server::{ApiServer, Channels, Credentials, Limits, ServerConfig};
pub use state::{
    ClusterMember, ClusterView, FailoverKey, GlobalConfig, HistoryEntry, PendingChange,
    PostgresState, PostgresStatus, ReplicationRow, ReplicationState, Role, Snapshot, SyncMode,
    SyncState, Xlog,
};
pub use time::Timestamp;
