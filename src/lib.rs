//! manning: highly available PostgreSQL on Docker Swarm and bare hosts.
//!
//! One binary plays every role of the stack it replaces (Patroni, HAProxy, socat and an
//! alpine job that creates `/run/patroni`). Each role is a subcommand; see `ARCHITECTURE.md`
//! for the map of modules and how data flows between them.
//!
//! - [`api`]: Patroni's REST API (health checks, status, control endpoints, metrics).
//! - [`cli`]: the command line and the dispatch to a role.
//! - [`dcs`]: Patroni's key layout and JSON in etcd v3; lease, leader lock, watch.
//! - [`config`]: `patroni.yml` (templates, `PATRONI_*` overlay, validation), the model
//!   every role shares.
//! - [`demo`]: `manning demo`, a whole stack on loopback in one command.
//! - [`error`]: exit-code policy (0 ok, 1 runtime failure, 2 bad usage or configuration).
//! - [`logging`]: `tracing` set-up, human or JSON lines on stderr.
//! - [`ha`]: the observe → decide → act loop; `decide` is pure.
//! - [`init`]: PID-1 duties and `socket-dir`.
//! - [`net`]: TCP/UNIX endpoints, listeners and the byte pump.
//! - [`forward`]: `manning forward`, socat's role (socat address syntax accepted).
//! - [`postgres`]: the postmaster process, initdb/bootstrap, conf files, SQL probes.
//! - [`supervise`]: `manning supervise`, Patroni's role: the HA loop's shell, start-up, shutdown.
//! - [`proxy`]: `manning proxy`, HAProxy's role (reads the seed's haproxy.cfg).
//! - [`signals`]: the shutdown signals every long-running role listens for.

pub mod api;
pub mod cli;
pub mod config;
pub mod ctl;
pub mod dcs;
pub mod demo;
pub mod error;
pub mod forward;
pub mod ha;
pub mod init;
pub mod logging;
pub mod net;
pub mod postgres;
pub mod proxy;
pub mod signals;
pub mod supervise;
