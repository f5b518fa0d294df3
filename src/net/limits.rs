//! Process limits that a connection-heavy role needs raised.
//!
//! Each forwarded or proxied connection holds two sockets, plus two pipes for a moment while
//! bytes move. The usual soft limit of 1024 open files would cap a forwarder at a few hundred
//! clients, while the hard limit (raised by Docker and systemd) is far higher. Raising the
//! soft limit to the hard one is what HAProxy does from its `maxconn`.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Raise the soft `RLIMIT_NOFILE` to the hard limit and return the limit now in force.
pub fn raise_nofile_limit() -> std::io::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
        return Ok(hard);
    }
    Ok(soft)
}

/// Descriptors one connection may hold at once: two sockets and two pipes (two ends each).
pub const FDS_PER_CONNECTION: u64 = 6;

/// Descriptors kept back for listeners, logging, the runtime and the pipe pool.
pub const FDS_RESERVED: u64 = 64 + 2 * 64;

/// The largest connection limit that `nofile` open files can carry.
pub fn max_connections_for(nofile: u64) -> u64 {
    nofile.saturating_sub(FDS_RESERVED) / FDS_PER_CONNECTION
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_never_lowers_the_limit() {
        let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert!(raise_nofile_limit().unwrap() >= soft);
    }

    #[test]
    fn connection_budget_from_descriptors() {
        assert_eq!(max_connections_for(1024), (1024 - 192) / 6);
        assert_eq!(max_connections_for(10), 0);
    }
}
