//! `manning proxy`: HAProxy's role in the seed stack.
pub mod backend;
pub mod check;
pub mod counters;
pub mod haproxy_cfg;
pub mod health;
