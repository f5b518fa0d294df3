//! The DCS: Patroni's key layout and JSON model in etcd v3, and the client that holds a
//! member's lease, takes/keeps/releases the leader lock and watches the cluster.
//!
//! - [`keys`]: where each key lives (`/<namespace>/<scope>/...`), pure.
//! - [`model`]: the JSON values (member, failover, sync, status, history, config) and the
//!   [`Cluster`] snapshot built from key-values, pure and lenient.
//! - [`settings`]: [`DcsSettings`] and its construction from Patroni's `etcd3` section.
//! - [`client`]: [`Dcs`], the etcd v3 client (lease, lock, initialize race, CAS writes,
//!   snapshot), every operation bounded by `retry_timeout`.
//! - [`watch`]: [`ClusterWatch`], a prefix watch keeping a cached [`Cluster`] current.

pub mod client;
pub mod keys;
pub mod model;
pub mod settings;
pub mod watch;

pub use client::{Dcs, DcsError, Renewal};
pub use keys::Keys;
pub use model::{
    Changes, Cluster, ClusterConfig, ClusterMember, Failover, History, HistoryEntry, Kv, Leader,
    Member, Role, State, Status, SyncState, Warning,
};
pub use settings::{DcsSettings, Etcd3Section, SettingsError, TlsFiles, split_hosts};
pub use watch::ClusterWatch;
