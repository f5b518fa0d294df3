//! manning: highly available PostgreSQL on Docker Swarm and bare hosts.
//!
//! One binary plays every role of the stack it replaces (Patroni, HAProxy, socat and an
//! alpine job that creates `/run/patroni`). Each role is a subcommand; see `ARCHITECTURE.md`
//! for the map of modules and how data flows between them.
//!
//! - [`cli`]: the command line and the dispatch to a role.
//! - [`error`]: exit-code policy (0 ok, 1 runtime failure, 2 bad usage or configuration).
//! - [`logging`]: `tracing` set-up, human or JSON lines on stderr.
//! - [`init`]: PID-1 duties and `socket-dir`.
//! - [`net`]: TCP/UNIX endpoints, listeners and the byte pump.
//! - [`proxy`]: `manning proxy`, HAProxy's role (reads the seed's haproxy.cfg).
//! - [`signals`]: the shutdown signals every long-running role listens for.

pub mod cli;
pub mod error;
pub mod init;
pub mod logging;
pub mod net;
pub mod proxy;
pub mod signals;
