//! Configuration (work in progress).
pub mod problem;
pub mod secret;
pub mod suggest;
pub mod template;
pub mod yaml;
