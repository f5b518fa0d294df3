//! High availability: the observe → decide → act loop of `manning supervise`.
//!
//! - [`decide`]: the pure decision function. Given one [`decide::Observation`] (what the
//!   DCS says, what local postgres is doing, what we know about our own lock, the clock and
//!   the settings) it returns a [`decide::Plan`]: an ordered list of actions and one
//!   sentence saying what and why. It does no IO, so every branch is a unit test.
//! - [`fence`]: an OS thread that stops a primary in immediate mode at its fence deadline.
//! - [`sync`]: the leader's pure synchronous-replication decision (who postgres waits for,
//!   who is published in the `sync` key and may take over).
//! - The shell that builds observations and executes plans lives in the supervisor.

pub mod decide;
pub mod fence;
pub mod sync;
