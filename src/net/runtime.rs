//! The threads of the data-plane roles (`forward`, `proxy`).
//!
//! A main single-thread runtime runs the control work (accept loops, health checks, the
//! status page, signals). Sessions run on [`Workers`]: N threads (one per CPU unless told
//! otherwise, like HAProxy's `nbthread`), each with its own single-thread runtime. An
//! accepted connection is handed to one worker (round robin) and stays there for its whole
//! life, so a message never wakes a second thread.
//!
//! Why not one tokio multi-thread runtime: its work stealing moves sessions between
//! threads, and every message may then cost a cross-thread wake-up. Why not one thread:
//! when postgres and the clients share the CPUs (a small Swarm node, or the benchmark), the
//! kernel gives each runnable thread an equal share, and one proxy thread carrying every
//! session falls behind the many postgres backends it serves. Measured with pgbench
//! through `manning proxy` on 2 CPUs (bench/proxy.py): one thread 0.95 × HAProxy's TPS at
//! 24 µs of CPU per transaction; two workers 1.07 × at 30 µs; HAProxy 32 µs.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;
use tokio::runtime::{Builder, Handle, Runtime};
use tokio::sync::oneshot;

use super::{StdStream, Stream};
use crate::error::usage;

/// Threads to use when the user does not say: one per CPU, like HAProxy's `nbthread`.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The control runtime: one thread.
pub fn control(name: &str) -> anyhow::Result<Runtime> {
    Builder::new_current_thread()
        .enable_all()
        .thread_name(name)
        .build()
        .context("starting the async runtime")
}

/// Session threads. Dropping the last clone stops the threads (their tasks are dropped).
#[derive(Clone)]
pub struct Workers {
    inner: Arc<Inner>,
}

struct Inner {
    handles: Vec<Handle>,
    next: AtomicUsize,
    /// Dropping these ends each worker's `block_on`.
    _stop: Vec<oneshot::Sender<()>>,
}

impl Workers {
    /// Start `threads` worker threads (`None`: [`default_threads`]).
    pub fn start(threads: Option<usize>, name: &str) -> anyhow::Result<Workers> {
        let n = match threads {
            Some(0) => return Err(usage("--threads 0: at least one worker thread is needed")),
            Some(n) => n,
            None => default_threads(),
        };
        let mut handles = Vec::with_capacity(n);
        let mut stops = Vec::with_capacity(n);
        for i in 0..n {
            let rt = Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting a worker runtime")?;
            handles.push(rt.handle().clone());
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    let _ = rt.block_on(stopped);
                })
                .context("starting a worker thread")?;
        }
        Ok(Workers {
            inner: Arc::new(Inner {
                handles,
                next: AtomicUsize::new(0),
                _stop: stops,
            }),
        })
    }

    /// Number of worker threads.
    pub fn len(&self) -> usize {
        self.inner.handles.len()
    }

    /// Always false: there is at least one worker.
    pub fn is_empty(&self) -> bool {
        self.inner.handles.is_empty()
    }

    /// Run `serve` on the next worker with `stream` registered with that worker's reactor
    /// (accept with [`super::Listener::accept_detached`]).
    pub fn spawn_session<F, Fut>(&self, stream: StdStream, serve: F)
    where
        F: FnOnce(Stream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let i = self.inner.next.fetch_add(1, Ordering::Relaxed) % self.inner.handles.len();
        self.inner.handles[i].spawn(async move {
            match Stream::from_std(stream) {
                Ok(s) => serve(s).await,
                Err(e) => tracing::debug!("moving a connection to a worker: {e}"),
            }
        });
    }
}
