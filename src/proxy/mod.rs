//! `manning proxy`: HAProxy's role in the seed stack.
pub mod haproxy_cfg;
