//! `manning proxy`: HAProxy's role in the seed stack.
pub mod backend;
pub mod check;
pub mod checker;
pub mod counters;
pub mod frontend;
pub mod haproxy_cfg;
pub mod health;
pub mod session;
pub mod stats;
