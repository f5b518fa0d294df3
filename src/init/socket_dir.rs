//! `manning socket-dir`: create the directory that holds the proxy's UNIX socket.
//!
//! Replaces the seed stack's `mk-socket-dir` job (`mkdir /run/patroni` in alpine). It is
//! idempotent so it can run as a Swarm `global-job` (once per node, also on nodes that join
//! later) and as a systemd oneshot on every boot: missing parents are created, and the mode
//! and owner of an existing directory are corrected rather than treated as an error.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::unistd::{Gid, Group, Uid, User};
use tracing::info;

use crate::error::usage;

/// Arguments of `manning socket-dir`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory to create.
    #[arg(default_value = "/run/patroni")]
    pub path: PathBuf,

    /// Permission bits in octal, e.g. 0755 or 2775.
    #[arg(long, default_value = "0755", value_parser = parse_mode)]
    pub mode: u32,

    /// Owner as USER[:GROUP] (names or numeric ids). `USER:` means the user's login group.
    /// Default: leave the owner as it is (a new directory belongs to the caller).
    #[arg(long, value_name = "USER[:GROUP]")]
    pub owner: Option<String>,
}

/// Parse an octal permission string (`0755`, `755`, `2775`); at most 0o7777.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    let mode = u32::from_str_radix(digits, 8)
        .map_err(|_| format!("{s:?} is not an octal mode such as 0755"))?;
    if mode > 0o7777 {
        return Err(format!("{s:?} is larger than 07777"));
    }
    Ok(mode)
}

/// Who should own the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: Uid,
    pub gid: Option<Gid>,
}

/// Parse `USER`, `USER:GROUP`, `USER:` (login group), `UID:GID` or `:GROUP`.
pub fn parse_owner(spec: &str) -> Result<Owner, String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() {
        return Err(format!(
            "--owner {spec:?}: a user is required (USER[:GROUP])"
        ));
    }
    let (uid, login_gid) = match user.parse::<u32>() {
        Ok(n) => (Uid::from_raw(n), None),
        Err(_) => {
            let u = User::from_name(user)
                .map_err(|e| format!("--owner {spec:?}: looking up user {user:?}: {e}"))?
                .ok_or_else(|| format!("--owner {spec:?}: no user named {user:?}"))?;
            (u.uid, Some(u.gid))
        }
    };
    let gid = match group {
        None => None,
        Some("") => match login_gid {
            Some(g) => Some(g),
            None => User::from_uid(uid)
                .ok()
                .flatten()
                .map(|u| u.gid)
                .or(Some(Gid::from_raw(uid.as_raw()))),
        },
        Some(g) => Some(match g.parse::<u32>() {
            Ok(n) => Gid::from_raw(n),
            Err(_) => {
                Group::from_name(g)
                    .map_err(|e| format!("--owner {spec:?}: looking up group {g:?}: {e}"))?
                    .ok_or_else(|| format!("--owner {spec:?}: no group named {g:?}"))?
                    .gid
            }
        }),
    };
    Ok(Owner { uid, gid })
}

/// Create or fix the directory; exits 2 (usage error) when PATH is not a directory.
pub fn run(args: Args) -> anyhow::Result<()> {
    let owner = args
        .owner
        .as_deref()
        .map(parse_owner)
        .transpose()
        .map_err(usage)?;
    ensure_dir(&args.path, args.mode, owner)
}

/// The work of `socket-dir`, callable from other roles (the supervisor prepares its own
/// directories the same way).
pub fn ensure_dir(path: &Path, mode: u32, owner: Option<Owner>) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.is_dir() => {
            return Err(usage(format!(
                "{} exists and is not a directory; remove it or choose another path",
                path.display()
            )));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(path)
                .with_context(|| format!("creating {}", path.display()))?;
            info!(path = %path.display(), "created directory");
        }
        Err(e) => return Err(e).with_context(|| format!("inspecting {}", path.display())),
    }

    let meta = std::fs::metadata(path).with_context(|| format!("inspecting {}", path.display()))?;
    if let Some(owner) = owner {
        let want_gid = owner.gid.map(|g| g.as_raw()).unwrap_or(meta.gid());
        if meta.uid() != owner.uid.as_raw() || meta.gid() != want_gid {
            nix::unistd::chown(path, Some(owner.uid), owner.gid)
                .with_context(|| format!("changing owner of {}", path.display()))?;
            info!(
                path = %path.display(),
                from = %format!("{}:{}", meta.uid(), meta.gid()),
                to = %format!("{}:{}", owner.uid, want_gid),
                "changed owner"
            );
        }
    }
    // chown clears setuid/setgid bits, so the mode is applied after it.
    let current = std::fs::metadata(path)?.permissions().mode() & 0o7777;
    if current != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("changing mode of {}", path.display()))?;
        info!(path = %path.display(), from = %format!("{current:04o}"), to = %format!("{mode:04o}"), "changed mode");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0755"), Ok(0o755));
        assert_eq!(parse_mode("755"), Ok(0o755));
        assert_eq!(parse_mode("2775"), Ok(0o2775));
        assert_eq!(parse_mode("0o700"), Ok(0o700));
        assert!(parse_mode("0855").is_err());
        assert!(parse_mode("17777").is_err());
        assert!(parse_mode("rwx").is_err());
    }

    #[test]
    fn owners() {
        assert_eq!(
            parse_owner("0:0"),
            Ok(Owner {
                uid: Uid::from_raw(0),
                gid: Some(Gid::from_raw(0))
            })
        );
        assert_eq!(
            parse_owner("root"),
            Ok(Owner {
                uid: Uid::from_raw(0),
                gid: None
            })
        );
        assert_eq!(
            parse_owner("root:").map(|o| o.gid),
            Ok(Some(Gid::from_raw(0)))
        );
        assert!(parse_owner(":root").is_err());
        assert!(
            parse_owner("no-such-user-xyz")
                .unwrap_err()
                .contains("no user named")
        );
        assert!(
            parse_owner("root:no-such-group-xyz")
                .unwrap_err()
                .contains("no group named")
        );
    }
}
