//! A prefix watch that keeps a cached [`Cluster`] up to date (Patroni's `KVCache`).
//!
//! The task reads the whole prefix (one linearizable range), then watches from the next
//! revision and applies every event to its copy. After a watch error, a cancelled or
//! compacted watch, or silence it cannot explain (a progress request that gets no answer
//! within the budget, e.g. a frozen etcd), it re-syncs with a fresh range. Consumers get each
//! new snapshot through a `tokio::sync::watch` channel and use
//! [`Cluster::changes_since`] to decide whether a change matters to them (member keys change
//! on every HA cycle of every member; leader, config, failover and status changes are what
//! should wake an HA loop early).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use etcd_client::{EventType, WatchOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};

use super::client::{Dcs, Inner, to_kv};
use super::model::{Cluster, Kv};

/// A running watch of the cluster prefix. Dropping it stops the task.
pub struct ClusterWatch {
    rx: watch::Receiver<Arc<Cluster>>,
    synced: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Drop for ClusterWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ClusterWatch {
    /// A receiver of snapshots (clone it for other tasks). The first value is an empty
    /// cluster with `revision == 0` until the first read succeeds.
    pub fn receiver(&self) -> watch::Receiver<Arc<Cluster>> {
        self.rx.clone()
    }

    /// The latest snapshot.
    pub fn latest(&self) -> Arc<Cluster> {
        self.rx.borrow().clone()
    }

    /// Wait for the next snapshot and return it.
    pub async fn changed(&mut self) -> Arc<Cluster> {
        // The sender lives in the task, which only ends when this handle is dropped.
        let _ = self.rx.changed().await;
        self.rx.borrow_and_update().clone()
    }

    /// True while the cache follows etcd (false before the first read, and between a watch
    /// failure and the re-sync that ends it).
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }
}

impl Dcs {
    /// Start watching the cluster prefix in a background task (needs a tokio runtime).
    pub fn watch(&self) -> ClusterWatch {
        let (tx, rx) = watch::channel(Arc::new(Cluster::default()));
        let synced = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(run(self.inner.clone(), tx, synced.clone()));
        ClusterWatch { rx, synced, task }
    }
}

fn publish(inner: &Inner, tx: &watch::Sender<Arc<Cluster>>, kvs: &BTreeMap<String, Kv>, rev: i64) {
    let list: Vec<Kv> = kvs.values().cloned().collect();
    let (mut cluster, warnings) = Cluster::from_kvs(&inner.keys, &list);
    cluster.revision = rev;
    inner.log_warnings(&warnings);
    let cluster = Arc::new(cluster);
    *inner.view.lock().unwrap_or_else(|p| p.into_inner()) = Some(cluster.clone());
    tx.send_if_modified(|cur| {
        let mut same = (**cur).clone();
        same.revision = cluster.revision;
        // The first snapshot is always news; later ones only when something changed.
        let changed = cur.revision == 0 || same != *cluster;
        *cur = cluster.clone();
        changed
    });
}

async fn run(inner: Arc<Inner>, tx: watch::Sender<Arc<Cluster>>, synced: Arc<AtomicBool>) {
    let mut first = true;
    let mut failing = false;
    let idle = (inner.settings.retry_timeout / 2).max(Duration::from_secs(1));
    loop {
        // 1. A fresh, complete copy of the prefix.
        let mut budget = inner.budget();
        let (list, mut revision) = match inner.range_prefix(&mut budget).await {
            Ok(r) => r,
            Err(e) => {
                synced.store(false, Ordering::SeqCst);
                if !failing {
                    tracing::warn!("cluster watch cannot read etcd, retrying: {e}");
                    failing = true;
                }
                sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        failing = false;
        let mut kvs: BTreeMap<String, Kv> =
            list.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
        synced.store(true, Ordering::SeqCst);
        publish(&inner, &tx, &kvs, revision);
        if first {
            tracing::debug!(revision, "cluster watch synced");
            first = false;
        } else {
            tracing::info!(revision, "cluster watch re-synced");
        }

        // 2. Watch from the next revision on the endpoint that just answered.
        let idx = inner.current_endpoint();
        let per_try = budget_try(&inner);
        let client = match timeout(per_try, inner.client(idx)).await {
            Ok(Ok(c)) => c,
            _ => {
                synced.store(false, Ordering::SeqCst);
                continue;
            }
        };
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1)
            .with_progress_notify();
        let prefix = inner.keys.prefix().to_string();
        let mut stream =
            match timeout(per_try, client.watch_client().watch(prefix, Some(options))).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::warn!(
                        endpoint = inner.endpoint(idx),
                        "cluster watch could not start: {e}"
                    );
                    synced.store(false, Ordering::SeqCst);
                    sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Err(_) => {
                    tracing::warn!(
                        endpoint = inner.endpoint(idx),
                        "cluster watch could not start: no answer"
                    );
                    synced.store(false, Ordering::SeqCst);
                    continue;
                }
            };

        // 3. Apply events until something goes wrong.
        let mut awaiting_progress = false;
        let reason = loop {
            match timeout(idle, stream.message()).await {
                Err(_) if awaiting_progress => {
                    break format!("no answer from etcd for {:?}", idle * 2);
                }
                Err(_) => {
                    if let Err(e) = stream.request_progress().await {
                        break format!("progress request failed: {e}");
                    }
                    awaiting_progress = true;
                }
                Ok(Err(e)) => break format!("watch error: {e}"),
                Ok(Ok(None)) => break "watch stream closed by etcd".to_string(),
                Ok(Ok(Some(resp))) => {
                    awaiting_progress = false;
                    if resp.compact_revision() > 0 {
                        break format!(
                            "history compacted up to revision {}",
                            resp.compact_revision()
                        );
                    }
                    if resp.canceled() {
                        break format!("watch cancelled by etcd: {}", resp.cancel_reason());
                    }
                    if let Some(h) = resp.header() {
                        revision = revision.max(h.revision());
                    }
                    if resp.events().is_empty() {
                        continue;
                    }
                    for ev in resp.events() {
                        let Some(kv) = ev.kv() else { continue };
                        let kv = to_kv(kv);
                        match ev.event_type() {
                            EventType::Put => {
                                kvs.insert(kv.key.clone(), kv);
                            }
                            EventType::Delete => {
                                kvs.remove(&kv.key);
                            }
                        }
                    }
                    publish(&inner, &tx, &kvs, revision);
                }
            }
        };
        synced.store(false, Ordering::SeqCst);
        tracing::warn!(
            endpoint = inner.endpoint(idx),
            "cluster watch interrupted, re-syncing: {reason}"
        );
    }
}

fn budget_try(inner: &Inner) -> Duration {
    inner.settings.retry_timeout.max(Duration::from_secs(1))
}
