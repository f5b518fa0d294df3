//! The client side of a `listen` section: its counters (the FRONTEND row of the stats) and
//! the accept loop of each `bind`.
//!
//! `global maxconn` is a semaphore shared by every listener: a permit is taken before
//! `accept`, so at the limit new connections wait in the kernel's listen backlog, as with
//! HAProxy, instead of being accepted and dropped.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;
use tracing::warn;

use super::counters::Counters;
use super::session::{Route, serve};
use crate::net::Listener;
use crate::net::runtime::Workers;

/// The proxy's lifecycle, seen by accept loops, sessions and checkers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Running,
    /// Not accepting any more; open sessions may finish.
    Draining,
    /// Everything closes now.
    Stopped,
}

/// The client side of a `listen` section: its counters (the FRONTEND row).
#[derive(Debug)]
pub struct Frontend {
    pub name: String,
    pub id: u32,
    /// Session limit shown in the stats (`global maxconn`).
    pub slim: u64,
    counters: Mutex<Counters>,
}

impl Frontend {
    pub fn new(name: &str, id: u32, slim: u64) -> Frontend {
        Frontend {
            name: name.to_string(),
            id,
            slim,
            counters: Mutex::new(Counters::default()),
        }
    }

    /// Update the counters.
    pub fn update(&self, f: impl FnOnce(&mut Counters)) {
        f(&mut self.counters.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// A copy of the counters.
    pub fn counters(&self) -> Counters {
        *self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Accept clients on `listener` until the phase leaves `Running`, serving each in its own
/// task. `alive` is held by every session so the caller can wait for them to finish.
pub async fn accept_loop(
    listener: Listener,
    workers: Workers,
    route: Arc<Route>,
    limit: Arc<Semaphore>,
    phase: watch::Receiver<Phase>,
    alive: mpsc::Sender<()>,
) {
    let mut watch_phase = phase.clone();
    let mut last_warning: Option<Instant> = None;
    loop {
        let stopping = watch_phase.wait_for(|p| *p != Phase::Running);
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stopping => break,
        };
        let stopping = watch_phase.wait_for(|p| *p != Phase::Running);
        let accepted = tokio::select! {
            r = listener.accept_detached() => r,
            _ = stopping => break,
        };
        match accepted {
            Ok(client) => {
                let route = route.clone();
                let phase = phase.clone();
                let alive = alive.clone();
                workers.spawn_session(client, move |client| async move {
                    serve(client, &route, phase).await;
                    drop(permit);
                    drop(alive);
                });
            }
            Err(e) => {
                drop(permit);
                // Out of descriptors or memory: say so once in a while and back off
                // instead of spinning; anything else concerns one connection only.
                let exhausted = matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                );
                if exhausted {
                    if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        warn!(
                            "accept on {} failed: {e}; raise the open-files limit or lower maxconn",
                            route.frontend.name
                        );
                        last_warning = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                } else if e.kind() != io::ErrorKind::ConnectionAborted {
                    tracing::debug!("accept on {} failed: {e}", route.frontend.name);
                }
            }
        }
    }
    // Dropping the listener closes it and removes a UNIX socket file.
    drop(listener);
}
