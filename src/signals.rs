//! Shutdown signals for the long-running roles (`forward`, `proxy`, `demo`).
//!
//! The supervisor has its own signal handling (it may be PID 1 and must reap and forward);
//! the data-plane roles only need to know when to stop accepting and drain.

use tokio::signal::unix::{SignalKind, signal};

/// Which signal asked us to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    Terminate,
    Interrupt,
}

impl std::fmt::Display for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Shutdown::Terminate => "SIGTERM",
            Shutdown::Interrupt => "SIGINT",
        })
    }
}

/// Resolves when SIGTERM or SIGINT arrives. Must be called inside a tokio runtime.
///
/// The handlers are installed when this is called, not when it is first polled, so call it
/// early (before binding listeners) to avoid losing a signal sent during start-up.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = Shutdown>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => Shutdown::Terminate,
            _ = int.recv() => Shutdown::Interrupt,
        }
    })
}
