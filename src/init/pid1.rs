//! Signals for the supervisor, as a stream of events, with the duties of a PID 1.
//!
//! The kernel delivers to a namespace's PID 1 only the signals it has a handler for, and
//! `docker stop` sends SIGTERM (or the image's STOPSIGNAL) and SIGKILLs after the grace
//! period. [`InitSignals::install`] installs handlers for TERM, INT, QUIT and HUP and turns
//! them, plus "the reaper collected a child" (SIGCHLD, after the status was dispatched),
//! into [`InitEvent`]s. SIGTTIN/SIGTTOU are ignored so a supervisor started from a shell in
//! the background is not stopped when it touches the terminal.
//!
//! ## How the supervisor must use this
//!
//! ```text
//! main():
//!   privileges::prepare_and_drop(...)   // root only; before any thread exists
//!   let reaper = Reaper::install()?;     // subreaper unless PID 1
//!   tokio runtime {
//!     let mut signals = InitSignals::install(&reaper)?;
//!     loop { select! { ev = signals.recv() => match ev { ... }, ... } }
//!     // on Terminate/Interrupt: leave the HA loop (release the leader key), then
//!     //   postmaster.stop(StopPlan::default()).await     -- smart → fast → immediate
//!     // on Quit: postmaster.stop(StopPlan::immediate()).await
//!     // a second Terminate/Interrupt while stopping: skip to the next mode
//!     reaper.wait_all_children().await;   // NEVER return while the postmaster lives
//!   }
//! ```
//!
//! Returning from `main` as PID 1 makes the kernel SIGKILL every process left in the
//! namespace, which for postgres means an unclean stop. So the supervisor returns only after
//! [`crate::init::reaper::Reaper::wait_all_children`] resolved, and never calls
//! `std::process::exit` while a postmaster runs. Reload (`Reload`, from SIGHUP) re-reads the
//! configuration; postgres gets its own SIGHUP through `Postmaster::reload` after the
//! configuration files were rewritten.

use std::io;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;

use super::reaper::Reaper;

/// What woke the supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitEvent {
    /// SIGTERM: `docker stop`, `systemctl stop`. Shut down cleanly.
    Terminate,
    /// SIGINT: Ctrl-C, or a STOPSIGNAL of SIGINT. Shut down cleanly.
    Interrupt,
    /// SIGQUIT: stop as fast as possible (postgres' immediate mode).
    Quit,
    /// SIGHUP: reload the configuration.
    Reload,
    /// The reaper collected one or more children (their statuses are already dispatched).
    Child,
}

impl InitEvent {
    /// The signal name, for logs.
    pub fn signal_name(self) -> &'static str {
        match self {
            InitEvent::Terminate => "SIGTERM",
            InitEvent::Interrupt => "SIGINT",
            InitEvent::Quit => "SIGQUIT",
            InitEvent::Reload => "SIGHUP",
            InitEvent::Child => "SIGCHLD",
        }
    }
}

/// True when this process is the init of its PID namespace.
pub fn is_pid1() -> bool {
    std::process::id() == 1
}

/// Ignore SIGTTIN and SIGTTOU (the reaper resets them to default in every child).
pub fn ignore_job_control_signals() {
    // SAFETY: setting a disposition to SIG_IGN has no memory-safety implications.
    unsafe {
        libc::signal(libc::SIGTTIN, libc::SIG_IGN);
        libc::signal(libc::SIGTTOU, libc::SIG_IGN);
    }
}

/// The supervisor's signal stream. Create it once, early, inside the tokio runtime: the
/// handlers exist from [`InitSignals::install`] on, so nothing sent during start-up is lost.
pub struct InitSignals {
    term: Signal,
    int: Signal,
    quit: Signal,
    hup: Signal,
    reaped: watch::Receiver<u64>,
    /// False once the reaper's channel closed (it never does; then only signals remain).
    reaped_open: bool,
}

impl InitSignals {
    /// Install the handlers (TERM, INT, QUIT, HUP), ignore TTIN/TTOU, and subscribe to the
    /// reaper's child events. Must be called inside a tokio runtime.
    pub fn install(reaper: &Reaper) -> io::Result<InitSignals> {
        ignore_job_control_signals();
        Ok(InitSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            quit: signal(SignalKind::quit())?,
            hup: signal(SignalKind::hangup())?,
            reaped: reaper.reaped_events(),
            reaped_open: true,
        })
    }

    /// The next event. Cancel-safe: use it in `tokio::select!`.
    pub async fn recv(&mut self) -> InitEvent {
        loop {
            tokio::select! {
                // Shutdown requests first when several are pending.
                biased;
                Some(()) = self.term.recv() => return InitEvent::Terminate,
                Some(()) = self.int.recv() => return InitEvent::Interrupt,
                Some(()) = self.quit.recv() => return InitEvent::Quit,
                Some(()) = self.hup.recv() => return InitEvent::Reload,
                changed = self.reaped.changed(), if self.reaped_open => {
                    if changed.is_ok() {
                        return InitEvent::Child;
                    }
                    self.reaped_open = false;
                }
                // Only reachable if the runtime's signal driver shut down (runtime exiting).
                else => std::future::pending::<()>().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(InitEvent::Terminate.signal_name(), "SIGTERM");
        assert_eq!(InitEvent::Reload.signal_name(), "SIGHUP");
        assert_eq!(InitEvent::Child.signal_name(), "SIGCHLD");
    }
}
