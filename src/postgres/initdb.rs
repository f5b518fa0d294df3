//! `initdb` with Patroni's `bootstrap.initdb` options.
//!
//! The options come in Patroni's two shapes: a list whose items are flags (`- data-checksums`
//! → `--data-checksums`) or single-key maps (`- encoding: UTF8` → `--encoding=UTF8`), or a
//! map (`encoding: UTF8` → `--encoding=UTF8`; `true` → a flag; false/empty → left out).
//! Options that would fight manning are refused with the path of the offending item:
//! `pgdata`, `nosync`, `pwfile`, `sync-only`, `version` (as Patroni), plus `username` and
//! `pwprompt` (the superuser comes from `postgresql.authentication.superuser`).
//!
//! The superuser's password goes through `--pwfile` pointing at a 0600 file that exists only
//! while initdb runs — never argv or the environment. initdb's progress lines are logged.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tracing::info;

use super::secret_file::SecretFile;
use super::{Credentials, PgBin};
use crate::init::privileges::{PrivilegeError, RunAs};
use crate::init::reaper::{self, OutputStream, RunError};

/// Options refused in `bootstrap.initdb`, and why.
const FORBIDDEN: &[(&str, &str)] = &[
    ("pgdata", "the data directory is postgresql.data_dir"),
    ("nosync", "a cluster must be durable"),
    (
        "pwfile",
        "the password comes from postgresql.authentication.superuser",
    ),
    ("sync-only", "it does not create a cluster"),
    ("version", "it does not create a cluster"),
    (
        "username",
        "the superuser is postgresql.authentication.superuser.username",
    ),
    (
        "pwprompt",
        "there is no terminal; the password comes from postgresql.authentication.superuser",
    ),
];

/// One initdb option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitdbOption {
    /// `--name`
    Flag(String),
    /// `--name=value`
    Value(String, String),
}

impl InitdbOption {
    /// The option's name (without dashes).
    pub fn name(&self) -> &str {
        match self {
            InitdbOption::Flag(n) | InitdbOption::Value(n, _) => n,
        }
    }

    /// The argv element.
    pub fn to_arg(&self) -> String {
        match self {
            InitdbOption::Flag(n) => format!("--{n}"),
            InitdbOption::Value(n, v) => format!("--{n}={v}"),
        }
    }
}

/// Errors of option parsing and of running initdb.
#[derive(Debug, thiserror::Error)]
pub enum InitdbError {
    #[error("bootstrap.initdb{at}: {msg}")]
    BadOption { at: String, msg: String },
    #[error("cannot write the superuser password file in {}: {source}", dir.display())]
    PwFile {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    User(#[from] PrivilegeError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("initdb failed ({status}): {stderr}")]
    Failed {
        status: std::process::ExitStatus,
        stderr: String,
    },
}

impl InitdbError {
    /// True for configuration errors (exit code 2).
    pub fn is_usage(&self) -> bool {
        match self {
            InitdbError::BadOption { .. } => true,
            InitdbError::User(e) => e.is_usage(),
            _ => false,
        }
    }
}

/// Patroni's `unquote`: strip one pair of matching surrounding quotes.
fn unquote(v: &str) -> String {
    let b = v.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        v[1..v.len() - 1].to_string()
    } else {
        v.to_string()
    }
}

fn check_name(name: &str, at: &str) -> Result<(), InitdbError> {
    let bad = |msg: String| InitdbError::BadOption {
        at: at.to_string(),
        msg,
    };
    let valid = !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(bad(format!("{name:?} is not an initdb option name")));
    }
    if let Some((_, why)) = FORBIDDEN.iter().find(|(n, _)| *n == name) {
        return Err(bad(format!("the {name} option is not allowed: {why}")));
    }
    Ok(())
}

/// Scalar value of an option, or `None` to leave it out (false, null, empty string), or
/// `Some(None)` for a flag (true).
fn scalar(v: &Value, at: &str) -> Result<Option<Option<String>>, InitdbError> {
    Ok(match v {
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(Some(unquote(s))),
        Value::Number(n) => Some(Some(n.to_string())),
        Value::Bool(true) => Some(None),
        Value::Bool(false) | Value::Null => None,
        _ => {
            return Err(InitdbError::BadOption {
                at: at.to_string(),
                msg: "the value must be a string, number or boolean".into(),
            });
        }
    })
}

fn option(name: &str, value: Option<String>) -> InitdbOption {
    match value {
        Some(v) => InitdbOption::Value(name.to_string(), v),
        None => InitdbOption::Flag(name.to_string()),
    }
}

/// Parse `bootstrap.initdb` (list or map form; `null` means no options).
pub fn parse_options(value: &Value) -> Result<Vec<InitdbOption>, InitdbError> {
    let mut out = Vec::new();
    match value {
        Value::Null => {}
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let at = format!("[{i}]");
                match item {
                    Value::String(flag) => {
                        check_name(flag, &at)?;
                        out.push(InitdbOption::Flag(flag.clone()));
                    }
                    Value::Object(map) if map.len() == 1 => {
                        let (name, v) =
                            map.iter().next().ok_or_else(|| InitdbError::BadOption {
                                at: at.clone(),
                                msg: "empty map".into(),
                            })?;
                        let at = format!("{at}.{name}");
                        check_name(name, &at)?;
                        if let Some(v) = scalar(v, &at)? {
                            out.push(option(name, v));
                        }
                    }
                    Value::Object(_) => {
                        return Err(InitdbError::BadOption {
                            at,
                            msg: "each map in the list must have exactly one key (e.g. `- encoding: UTF8`)".into(),
                        });
                    }
                    _ => {
                        return Err(InitdbError::BadOption {
                            at,
                            msg: "each item must be an option name or a single `name: value` map"
                                .into(),
                        });
                    }
                }
            }
        }
        Value::Object(map) => {
            for (name, v) in map {
                let at = format!(".{name}");
                check_name(name, &at)?;
                if let Some(v) = scalar(v, &at)? {
                    out.push(option(name, v));
                }
            }
        }
        _ => {
            return Err(InitdbError::BadOption {
                at: String::new(),
                msg: "must be a list (e.g. `- data-checksums`) or a map of options".into(),
            });
        }
    }
    Ok(out)
}

/// What to run initdb with.
#[derive(Debug, Clone)]
pub struct InitdbSpec {
    pub bin: PgBin,
    pub data_dir: PathBuf,
    pub options: Vec<InitdbOption>,
    /// Superuser name (`--username`) and password (`--pwfile`).
    pub superuser: Credentials,
    /// The user initdb (and postgres) runs as; `None` = ourselves (never root).
    pub run_as: Option<RunAs>,
    /// Where the temporary password file is created (e.g. the system temp dir).
    pub secret_dir: PathBuf,
    pub timeout: Duration,
}

/// The argv initdb gets (without the program), given the password file's path.
pub fn arguments(spec: &InitdbSpec, pwfile: Option<&Path>) -> Vec<String> {
    let mut args = vec![format!("--pgdata={}", spec.data_dir.display())];
    args.extend(spec.options.iter().map(InitdbOption::to_arg));
    args.push(format!("--username={}", spec.superuser.username));
    if let Some(p) = pwfile {
        args.push(format!("--pwfile={}", p.display()));
    }
    args
}

/// Run initdb; progress lines are logged as they come.
pub async fn run(spec: &InitdbSpec) -> Result<(), InitdbError> {
    let run_as = match &spec.run_as {
        Some(r) => r.clone(),
        None => RunAs::for_postgres(None)?,
    };
    let pwfile = match &spec.superuser.password {
        Some(pw) => Some(
            SecretFile::create(
                &spec.secret_dir,
                "manning-initdb-pw-",
                pw.expose().as_bytes(),
                Some(&run_as),
            )
            .map_err(|source| InitdbError::PwFile {
                dir: spec.secret_dir.clone(),
                source,
            })?,
        ),
        None => None,
    };
    let mut cmd = Command::new(spec.bin.program("initdb"));
    cmd.args(arguments(spec, pwfile.as_ref().map(|f| f.path())));
    run_as.apply_to(&mut cmd)?;
    info!(
        data_dir = %spec.data_dir.display(),
        options = %spec.options.iter().map(InitdbOption::to_arg).collect::<Vec<_>>().join(" "),
        "running initdb"
    );
    let out = reaper::output_lines(cmd, spec.timeout, |stream, line| {
        if !line.trim().is_empty() {
            match stream {
                OutputStream::Stdout => {
                    info!(target: "manning::postgres::initdb", "initdb: {line}")
                }
                OutputStream::Stderr => {
                    info!(target: "manning::postgres::initdb", "initdb (stderr): {line}")
                }
            }
        }
    })
    .await;
    drop(pwfile); // removed as soon as initdb is done, whatever happened
    let out = out?;
    if !out.status.success() {
        return Err(InitdbError::Failed {
            status: out.status,
            stderr: out.stderr_tail(10),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seed_list_form() {
        let opts = parse_options(&json!([{"encoding": "UTF8"}, "data-checksums"])).unwrap();
        assert_eq!(
            opts,
            vec![
                InitdbOption::Value("encoding".into(), "UTF8".into()),
                InitdbOption::Flag("data-checksums".into()),
            ]
        );
        let args: Vec<String> = opts.iter().map(InitdbOption::to_arg).collect();
        assert_eq!(args, ["--encoding=UTF8", "--data-checksums"]);
    }

    #[test]
    fn map_form_and_scalars() {
        let opts = parse_options(&json!({
            "encoding": "UTF8",
            "data-checksums": true,
            "wal-segsize": 32,
            "locale": "\"en_US.UTF-8\"",
            "skipped": false,
            "empty": "",
            "auth-host": "md5"
        }))
        .unwrap();
        let args: Vec<String> = opts.iter().map(InitdbOption::to_arg).collect();
        // serde_json maps are sorted by key.
        assert_eq!(
            args,
            [
                "--auth-host=md5",
                "--data-checksums",
                "--encoding=UTF8",
                "--locale=en_US.UTF-8",
                "--wal-segsize=32"
            ]
        );
        assert!(parse_options(&Value::Null).unwrap().is_empty());
    }

    #[test]
    fn values_with_spaces_stay_one_argument() {
        let opts = parse_options(&json!([{"locale": "'de DE'"}])).unwrap();
        assert_eq!(opts[0].to_arg(), "--locale=de DE");
    }

    #[test]
    fn forbidden_options_are_refused_with_their_place() {
        for (value, place) in [
            (json!(["nosync"]), "bootstrap.initdb[0]"),
            (
                json!([{"encoding": "UTF8"}, {"pgdata": "/x"}]),
                "bootstrap.initdb[1].pgdata",
            ),
            (json!({"pwfile": "/x"}), "bootstrap.initdb.pwfile"),
            (json!(["sync-only"]), "bootstrap.initdb[0]"),
            (json!(["version"]), "bootstrap.initdb[0]"),
            (json!([{"username": "x"}]), "bootstrap.initdb[0].username"),
            (json!(["pwprompt"]), "bootstrap.initdb[0]"),
        ] {
            let err = parse_options(&value).unwrap_err();
            assert!(err.is_usage());
            let msg = err.to_string();
            assert!(msg.starts_with(place), "{msg}");
            assert!(msg.contains("not allowed"), "{msg}");
        }
    }

    #[test]
    fn malformed_options_are_refused() {
        for (value, needle) in [
            (json!("data-checksums"), "must be a list"),
            (json!([{"a": "1", "b": "2"}]), "exactly one key"),
            (json!([42]), "option name"),
            (json!(["--data-checksums"]), "not an initdb option name"),
            (json!(["bad name"]), "not an initdb option name"),
            (json!([{"encoding": ["x"]}]), "string, number or boolean"),
        ] {
            let msg = parse_options(&value).unwrap_err().to_string();
            assert!(msg.contains(needle), "{msg}");
        }
    }

    #[test]
    fn password_only_through_pwfile() {
        let spec = InitdbSpec {
            bin: PgBin::new("/usr/lib/postgresql/15/bin"),
            data_dir: PathBuf::from("/patroni/data"),
            options: vec![InitdbOption::Flag("data-checksums".into())],
            superuser: Credentials {
                username: "postgres".into(),
                password: Some(super::super::Secret::new("pa'ss")),
            },
            run_as: None,
            secret_dir: PathBuf::from("/tmp"),
            timeout: Duration::from_secs(60),
        };
        let args = arguments(&spec, Some(Path::new("/tmp/pw")));
        assert_eq!(
            args,
            [
                "--pgdata=/patroni/data",
                "--data-checksums",
                "--username=postgres",
                "--pwfile=/tmp/pw"
            ]
        );
        assert!(!args.iter().any(|a| a.contains("pa'ss")));
    }
}
