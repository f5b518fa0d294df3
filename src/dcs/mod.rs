//! The DCS: Patroni's key layout and JSON model in etcd v3, and the client that holds a
//! member's lease, takes/keeps/releases the leader lock and watches the cluster.
//!
//! - [`keys`]: where each key lives (`/<namespace>/<scope>/...`), pure.
//! - [`model`]: the JSON values (member, failover, sync, status, history, config) and the
//!   [`Cluster`](model::Cluster) snapshot built from key-values, pure and lenient.

pub mod keys;
pub mod model;
