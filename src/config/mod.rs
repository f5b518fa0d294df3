//! Configuration (work in progress).
pub mod env;
pub mod problem;
pub mod secret;
pub mod suggest;
pub mod template;
pub mod yaml;
