//! Exit-code policy shared by every role.
//!
//! Roles return `anyhow::Result<()>`. An error whose chain contains a [`UsageError`] means
//! the user asked for something impossible (bad flags, bad configuration file): exit 2.
//! Any other error is a runtime failure: exit 1. Clap's own parse errors already exit 2.

use std::fmt;

/// Exit code for success.
pub const EXIT_OK: u8 = 0;
/// Exit code for a failure at run time (etcd unreachable, postgres crashed, ...).
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for bad usage or bad configuration.
pub const EXIT_USAGE: u8 = 2;

/// Bad usage or bad configuration: the message says what is wrong and where
/// (file, line and key, or the flag).
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Shorthand to build an `anyhow::Error` that exits with [`EXIT_USAGE`].
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// The exit code for an error returned by a role.
pub fn exit_code_for(err: &anyhow::Error) -> u8 {
    if err
        .chain()
        .any(|e| e.downcast_ref::<UsageError>().is_some())
    {
        EXIT_USAGE
    } else {
        EXIT_FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn usage_errors_exit_2_even_with_context() {
        let err = Err::<(), _>(usage("bad flag"))
            .context("while starting")
            .unwrap_err();
        assert_eq!(exit_code_for(&err), EXIT_USAGE);
    }

    #[test]
    fn other_errors_exit_1() {
        let err = anyhow::anyhow!("etcd unreachable");
        assert_eq!(exit_code_for(&err), EXIT_FAILURE);
    }
}
