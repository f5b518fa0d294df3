//! Checks that look at several settings at once, or at the machine.
//!
//! From Patroni's validator (`patroni/validator.py`): connect addresses must be usable by
//! other machines, `bin_dir` must hold the PostgreSQL programs, a non-empty `data_dir` must
//! look like a data directory of the same major version. Checks Patroni lacks: the REST
//! API and PostgreSQL advertising the same `host:port` (a warning: the seed's compose file
//! does it), both listening on the same port, `manning.fence_margin` against the
//! timeouts, a member replicating from itself. Settings that were missing (and already
//! reported) are skipped. Network reachability is not checked here (`manning doctor`
//! does that): a configuration can be checked on a machine that is not in the cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::decode::Cx;
use super::model::{Config, HostPort, is_loopback_host, is_wildcard_host};
use super::problem::{Mark, Severity};

/// Everything `validate` needs besides the configuration.
pub(crate) struct Context<'a> {
    pub missing: &'a BTreeSet<String>,
    /// The environment (for `PATH`).
    pub env: &'a BTreeMap<String, String>,
    /// `bin_dir` was written by the user (not found by manning).
    pub bin_dir_explicit: bool,
}

fn mark(cx: &Cx, path: &str) -> Mark {
    // The key itself, else its closest written parent, else the file's first key.
    let mut p = path.to_string();
    loop {
        if let Some(m) = cx.mark_of(&p) {
            return m;
        }
        match p.rfind('.') {
            Some(i) => p.truncate(i),
            None => return cx.mark_of("").unwrap_or_default(),
        }
    }
}

fn report(cx: &mut Cx, path: &str, severity: Severity, message: impl Into<String>) {
    let at = mark(cx, path);
    cx.report_path(at, severity, path.to_string(), message);
}

fn connect_address(cx: &mut Cx, ctx: &Context, path: &str, addr: &HostPort) {
    if ctx.missing.contains(path) {
        return;
    }
    if is_wildcard_host(&addr.host) {
        report(
            cx,
            path,
            Severity::Error,
            format!(
                "{addr} is a listen-on-everything address; other members cannot connect to it: give this machine's name or IP"
            ),
        );
    } else if is_loopback_host(&addr.host) {
        report(
            cx,
            path,
            Severity::Warning,
            format!("{addr} is a loopback address: only members on this same machine can reach it"),
        );
    }
}

/// Run every check, appending problems to `cx`.
pub(crate) fn validate(cx: &mut Cx, config: &Config, ctx: &Context) {
    connect_address(
        cx,
        ctx,
        "restapi.connect_address",
        &config.restapi.connect_address,
    );
    connect_address(
        cx,
        ctx,
        "postgresql.connect_address",
        &config.postgresql.connect_address,
    );
    if let Some(p) = &config.postgresql.proxy_address {
        connect_address(cx, ctx, "postgresql.proxy_address", p);
    }

    let both = !ctx.missing.contains("restapi.connect_address")
        && !ctx.missing.contains("postgresql.connect_address");
    if both && config.restapi.connect_address == config.postgresql.connect_address {
        report(
            cx,
            "restapi.connect_address",
            Severity::Warning,
            format!(
                "same host:port as postgresql.connect_address ({}): other members and health checks would send REST API requests to PostgreSQL; the REST API listens on port {}",
                config.restapi.connect_address, config.restapi.listen.port
            ),
        );
    }

    if !ctx.missing.contains("postgresql.listen") {
        let api = &config.restapi.listen;
        let pg = &config.postgresql.listen;
        let overlap = pg
            .hosts
            .iter()
            .any(|h| is_wildcard_host(h) || is_wildcard_host(&api.host) || *h == api.host);
        if api.port == pg.port && overlap {
            report(
                cx,
                "restapi.listen",
                Severity::Error,
                format!(
                    "{api} and postgresql.listen ({pg}) use the same port on the same addresses"
                ),
            );
        }
    }

    if config.name == "__patroni_strict_sync_replica_placeholder__" {
        report(
            cx,
            "name",
            Severity::Error,
            "this name is reserved for strict synchronous mode",
        );
    }
    if !config.name.is_empty() && config.tags.replicatefrom.as_deref() == Some(&config.name) {
        report(
            cx,
            "tags.replicatefrom",
            Severity::Error,
            "a member cannot replicate from itself",
        );
    }

    fence_margin(cx, config);
    keyfile_without_cert(cx, config);
    bin_dir(cx, config, ctx);
    data_dir(cx, config);
}

fn keyfile_without_cert(cx: &mut Cx, config: &Config) {
    if config.restapi.keyfile.is_some() && config.restapi.certfile.is_none() {
        report(
            cx,
            "restapi.keyfile",
            Severity::Warning,
            "is ignored without restapi.certfile (the REST API speaks plain HTTP)",
        );
    }
}

/// The fence deadline (last keepalive + ttl − fence_margin) must leave room for normal
/// lease renewals every loop_wait, including one that takes up to retry_timeout.
fn fence_margin(cx: &mut Cx, config: &Config) {
    let d = config.effective_dynamic(None);
    let (ttl, loop_wait, retry) = (d.ttl(), d.loop_wait(), d.retry_timeout());
    let margin = config.manning.fence_margin;
    let path = "manning.fence_margin";
    if margin >= ttl || ttl - margin <= loop_wait {
        report(
            cx,
            path,
            Severity::Error,
            format!(
                "{margin}s with ttl {ttl}s leaves {}s between a lease renewal and the fence, not more than loop_wait ({loop_wait}s): the primary would stop taking writes between healthy renewals",
                ttl.saturating_sub(margin)
            ),
        );
    } else if ttl - margin < loop_wait + retry {
        report(
            cx,
            path,
            Severity::Warning,
            format!(
                "{margin}s with ttl {ttl}s leaves {}s after a renewal, less than loop_wait + retry_timeout ({}s): one slow etcd round would fence the primary",
                ttl - margin,
                loop_wait + retry
            ),
        );
    }
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn find_in_path(env: &BTreeMap<String, String>, program: &str) -> Option<PathBuf> {
    let path = env.get("PATH")?;
    std::env::split_paths(path)
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
}

fn bin_dir(cx: &mut Cx, config: &Config, ctx: &Context) {
    let names = &config.postgresql.bin_name;
    match &config.postgresql.bin_dir {
        Some(dir) => {
            let severity = if ctx.bin_dir_explicit {
                Severity::Error
            } else {
                Severity::Warning
            };
            if !dir.exists() {
                report(
                    cx,
                    "postgresql.bin_dir",
                    severity,
                    format!("directory {} does not exist", dir.display()),
                );
            } else if !dir.is_dir() {
                report(
                    cx,
                    "postgresql.bin_dir",
                    severity,
                    format!("{} is not a directory", dir.display()),
                );
            } else {
                let absent: Vec<&str> = names
                    .required()
                    .into_iter()
                    .filter(|p| !is_executable(&dir.join(p)))
                    .collect();
                if !absent.is_empty() {
                    report(
                        cx,
                        "postgresql.bin_dir",
                        severity,
                        format!("{} has no executable {}", dir.display(), absent.join(", ")),
                    );
                }
            }
        }
        None => {
            let absent: Vec<&str> = names
                .required()
                .into_iter()
                .filter(|p| find_in_path(ctx.env, p).is_none())
                .collect();
            if !absent.is_empty() {
                report(
                    cx,
                    "postgresql.bin_dir",
                    Severity::Warning,
                    format!(
                        "not set, no /usr/lib/postgresql/<version>/bin found, and PATH lacks {}: `manning supervise` cannot run PostgreSQL here",
                        absent.join(", ")
                    ),
                );
            }
        }
    }
}

/// Patroni's `data_directory_is_empty`: missing, or only dot-files and `lost+found`.
fn looks_empty(dir: &Path) -> std::io::Result<bool> {
    if !dir.exists() {
        return Ok(true);
    }
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with('.') || name == "lost+found") {
            return Ok(false);
        }
    }
    Ok(true)
}

fn data_dir(cx: &mut Cx, config: &Config) {
    let dir = &config.postgresql.data_dir;
    let path = "postgresql.data_dir";
    if dir.exists() && !dir.is_dir() {
        report(
            cx,
            path,
            Severity::Error,
            format!("{} is not a directory", dir.display()),
        );
        return;
    }
    if dir.join("global/pg_control").is_file() || !looks_empty(dir).unwrap_or(true) {
        let version_file = dir.join("PG_VERSION");
        let version = match std::fs::read_to_string(&version_file) {
            Ok(v) => v.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                report(
                    cx,
                    path,
                    Severity::Error,
                    format!(
                        "{} is not empty and does not look like a PostgreSQL data directory (no PG_VERSION)",
                        dir.display()
                    ),
                );
                return;
            }
            Err(e) => {
                report(
                    cx,
                    path,
                    Severity::Warning,
                    format!("cannot read {}: {e}", version_file.display()),
                );
                return;
            }
        };
        let major: f64 = version.parse().unwrap_or(0.0);
        let wal = if major >= 10.0 { "pg_wal" } else { "pg_xlog" };
        if !dir.join(wal).is_dir() {
            report(
                cx,
                path,
                Severity::Error,
                format!("{} is not empty but has no {wal} directory", dir.display()),
            );
        }
        // Debian layout: /usr/lib/postgresql/<major>/bin
        if let Some(bin) = &config.postgresql.bin_dir {
            let bin_major = bin
                .parent()
                .and_then(|p| p.file_name())
                .map(|s| s.to_string_lossy().to_string())
                .filter(|s| s.chars().all(|c| c.is_ascii_digit() || c == '.'));
            if let Some(bin_major) = bin_major {
                if bin.starts_with("/usr/lib/postgresql") && bin_major != version {
                    report(
                        cx,
                        path,
                        Severity::Error,
                        format!(
                            "holds a PostgreSQL {version} cluster but postgresql.bin_dir is {} (PostgreSQL {bin_major})",
                            bin.display()
                        ),
                    );
                }
            }
        }
    }
}

/// The highest-versioned `<root>/<version>/bin` (Debian's layout under
/// `/usr/lib/postgresql`), if any.
pub(crate) fn highest_pg_bin_dir(root: &Path) -> Option<PathBuf> {
    let mut best: Option<(Vec<u64>, PathBuf)> = None;
    for entry in std::fs::read_dir(root).ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Ok(version) = name
            .split('.')
            .map(|p| p.parse::<u64>())
            .collect::<Result<Vec<u64>, _>>()
        else {
            continue;
        };
        let bin = entry.path().join("bin");
        if !bin.is_dir() {
            continue;
        }
        if best.as_ref().is_none_or(|(v, _)| version > *v) {
            best = Some((version, bin));
        }
    }
    best.map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_version_wins_numerically() {
        let root = tempfile::tempdir().unwrap();
        for v in ["9.6", "15", "16", "notaversion", "17"] {
            std::fs::create_dir_all(root.path().join(v).join("bin")).unwrap();
        }
        std::fs::create_dir_all(root.path().join("18")).unwrap(); // no bin
        assert_eq!(
            highest_pg_bin_dir(root.path()).unwrap(),
            root.path().join("17/bin")
        );
        assert_eq!(highest_pg_bin_dir(&root.path().join("missing")), None);
    }

    #[test]
    fn empty_means_only_hidden_files() {
        let d = tempfile::tempdir().unwrap();
        assert!(looks_empty(d.path()).unwrap());
        std::fs::create_dir(d.path().join("lost+found")).unwrap();
        std::fs::write(d.path().join(".hidden"), "").unwrap();
        assert!(looks_empty(d.path()).unwrap());
        std::fs::write(d.path().join("x"), "").unwrap();
        assert!(!looks_empty(d.path()).unwrap());
        assert!(looks_empty(&d.path().join("nope")).unwrap());
    }
}
