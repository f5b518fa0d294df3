//! The fence: stops a primary's writes when its leader lock may be about to expire.
//!
//! The HA loop renews the lock every `loop_wait`; each successful renewal moves the fence
//! deadline to `renewal sent + ttl − fence_margin`. If no renewal succeeds before the
//! deadline (etcd unreachable, the loop stuck behind a slow operation, anything), this
//! thread sends postgres its immediate-shutdown signal (SIGQUIT, postgres' own mode) at the
//! deadline. It is an OS thread rather than a tokio task so that nothing the runtime does
//! can delay it; it only needs the postmaster handle, whose signal call is synchronous.
//!
//! Why this is safe: etcd can only give the lock to another member after our lease
//! expires, which is no earlier than `renewal sent + ttl`. Stopping at `− fence_margin`
//! leaves that margin for the immediate shutdown (milliseconds) and for clock-rate
//! differences between us and etcd.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use tracing::{error, warn};

use crate::postgres::process::Postmaster;

#[derive(Default)]
struct State {
    /// When to stop the primary; `None` when not armed.
    deadline: Option<Instant>,
    /// The postmaster to stop.
    target: Option<Postmaster>,
    /// Set when the fence fired; read (and cleared) by the HA loop.
    fired: bool,
    /// The process is exiting; the thread ends.
    shutdown: bool,
}

/// Handle to the fence thread. Cloning shares the same fence.
#[derive(Clone)]
pub struct Fence {
    inner: Arc<(Mutex<State>, Condvar)>,
}

impl Fence {
    /// Start the fence thread (disarmed).
    pub fn start() -> std::io::Result<Fence> {
        let fence = Fence {
            inner: Arc::new((Mutex::new(State::default()), Condvar::new())),
        };
        let worker = fence.clone();
        std::thread::Builder::new()
            .name("manning-fence".into())
            .spawn(move || worker.run())?;
        Ok(fence)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned mutex only means another thread panicked while holding it; the state
        // itself (an instant and a handle) is still meaningful, so keep using it.
        self.inner.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Arm (or move) the deadline for `target`.
    pub fn arm(&self, deadline: Instant, target: Postmaster) {
        let mut s = self.lock();
        s.deadline = Some(deadline);
        s.target = Some(target);
        self.inner.1.notify_all();
    }

    /// Stop watching (we are no longer a primary holding the lock).
    pub fn disarm(&self) {
        let mut s = self.lock();
        s.deadline = None;
        s.target = None;
        self.inner.1.notify_all();
    }

    /// Whether the fence fired since the last call (and clear the flag).
    pub fn take_fired(&self) -> bool {
        std::mem::take(&mut self.lock().fired)
    }

    /// End the thread (process exit).
    pub fn shutdown(&self) {
        let mut s = self.lock();
        s.shutdown = true;
        self.inner.1.notify_all();
    }

    fn run(&self) {
        let mut s = self.lock();
        loop {
            if s.shutdown {
                return;
            }
            match s.deadline {
                None => {
                    s = self.inner.1.wait(s).unwrap_or_else(|e| e.into_inner());
                }
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        let late = now.duration_since(deadline);
                        if let Some(pm) = s.target.take() {
                            error!(
                                pid = pm.pid().as_raw(),
                                late_ms = late.as_millis() as u64,
                                "fence deadline reached without a lock renewal: stopping \
                                 postgres in immediate mode so no write is accepted after \
                                 the leader lease may expire"
                            );
                            if let Err(e) = pm.immediate() {
                                warn!(error = %e, "fence: signalling postgres failed");
                            }
                        }
                        s.deadline = None;
                        s.fired = true;
                    } else {
                        let (guard, _) = self
                            .inner
                            .1
                            .wait_timeout(s, deadline - now)
                            .unwrap_or_else(|e| e.into_inner());
                        s = guard;
                    }
                }
            }
        }
    }
}
