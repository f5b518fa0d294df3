//! Init-system duties: what a container's PID 1 or a systemd service must do besides its
//! main job, plus `manning socket-dir`, the one-shot that prepares the shared socket
//! directory (the seed stack's `mk-socket-dir` alpine job).

pub mod socket_dir;
