//! Networking shared by the data-plane roles (`forward`, `proxy`) and the supervisor's REST
//! API: endpoints that are TCP or UNIX, listeners for both, and the byte pump that joins a
//! client to a server.
//!
//! - [`endpoint`]: `Endpoint` (`tcp://host:port` or `unix:///path`) and its parsing.
//! - [`handoff`]: passing an accepted client socket from `forward` to a local `proxy`.
//! - [`listener`]: bind and accept on either kind; UNIX socket files handled safely.
//! - [`stream`]: `Stream`, one type for an accepted or connected TCP or UNIX stream.
//! - [`pump`]: copy bytes both ways until both directions are done, carrying half-close;
//!   splice(2) through pooled pipes, plain copy as the fallback.
//! - [`splice`]: the pipes and system calls behind the pump's fast path.
//! - [`runtime`]: the data-plane roles' threads: a control runtime and session workers.
//! - [`limits`]: raising the open-file limit for connection-heavy roles.
//! - [`tcp_info`]: bytes and silence per direction of a TCP socket, from the kernel.

pub mod endpoint;
pub mod handoff;
pub mod limits;
pub mod listener;
pub mod pump;
pub mod runtime;
pub mod splice;
pub mod stream;
pub mod tcp_info;

pub use endpoint::Endpoint;
pub use listener::Listener;
pub use stream::{StdStream, Stream};
