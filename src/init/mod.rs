//! Init-system duties: what a container's PID 1 or a systemd service must do besides its
//! main job, plus `manning socket-dir`, the one-shot that prepares the shared socket
//! directory (the seed stack's `mk-socket-dir` alpine job).
//!
//! - [`reaper`]: the one owner of `waitpid`; spawn children through it, never through
//!   `tokio::process` or `std::process::Child::wait`.
//! - [`pid1`]: TERM/INT/QUIT/HUP/CHLD as events; the rules for never exiting while the
//!   postmaster lives.
//! - [`privileges`]: the run-as user, directory preparation, dropping root.
//! - [`notify`]: systemd's `sd_notify` protocol.

pub mod notify;
pub mod pid1;
pub mod privileges;
pub mod reaper;
pub mod socket_dir;
