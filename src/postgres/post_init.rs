//! `bootstrap.post_init` (or `post_bootstrap`): the user's script run once after a new
//! cluster is up, as in Patroni.
//!
//! The command is split like a shell would (quotes, backslashes; no expansion) and gets ONE
//! extra argument: a connection URL for the superuser without password
//! (`postgresql://postgres@%2Frun%2Fpostgresql:5432/postgres`). The password is in a 0600
//! file named by `PGPASSFILE`, and `PGOPTIONS=-c synchronous_commit=local -c
//! statement_timeout=0` keeps its statements from waiting for a synchronous standby that
//! does not exist yet. It runs as the run-as user. A non-zero exit is an error carrying the
//! tail of its stderr; its output lines are logged as they come.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use tracing::info;

use super::Credentials;
use super::secret_file::{SecretFile, pgpass_line};
use crate::init::privileges::{PrivilegeError, RunAs};
use crate::init::reaper::{self, OutputStream, RunError};

/// Errors of running the script.
#[derive(Debug, thiserror::Error)]
pub enum PostInitError {
    #[error("bootstrap.post_init {command:?}: {msg}")]
    BadCommand { command: String, msg: String },
    #[error("cannot write the PGPASSFILE for post_init in {}: {source}", dir.display())]
    PassFile {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    User(#[from] PrivilegeError),
    #[error("post_init script: {0}")]
    Run(#[from] RunError),
    #[error("post_init script {command:?} failed ({status}){}", stderr_suffix(.stderr))]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
}

fn stderr_suffix(s: &str) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!(":\n{s}")
    }
}

impl PostInitError {
    /// True for configuration errors (exit code 2).
    pub fn is_usage(&self) -> bool {
        match self {
            PostInitError::BadCommand { .. } => true,
            PostInitError::User(e) => e.is_usage(),
            _ => false,
        }
    }
}

/// Split a command line into words like a POSIX shell, without any expansion.
pub fn split_command(command: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('\\' | '"' | '$' | '`')) => cur.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => cur.push(c),
                    None => return Err("trailing backslash".into()),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Percent-encode everything but RFC 3986's unreserved characters.
fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `postgresql://user@host:port/dbname`; `host` may be a socket directory.
pub fn connection_url(user: &str, host: &str, port: u16, dbname: &str) -> String {
    format!(
        "postgresql://{}@{}:{port}/{}",
        pct(user),
        pct(host),
        pct(dbname)
    )
}

/// What to run.
#[derive(Debug, Clone)]
pub struct PostInitSpec {
    /// `bootstrap.post_init` as written (split like a shell, no expansion).
    pub command: String,
    pub superuser: Credentials,
    /// Where the server listens: a socket directory (or a host name) and port.
    pub host: String,
    pub port: u16,
    pub dbname: String,
    /// `None` = ourselves (never root).
    pub run_as: Option<RunAs>,
    /// Where the temporary PGPASSFILE is created.
    pub secret_dir: PathBuf,
    pub timeout: Duration,
}

/// Run the script to completion.
pub async fn run(spec: &PostInitSpec) -> Result<(), PostInitError> {
    let bad = |msg: String| PostInitError::BadCommand {
        command: spec.command.clone(),
        msg,
    };
    let words = split_command(&spec.command).map_err(bad)?;
    let Some((program, args)) = words.split_first() else {
        return Err(bad("the command is empty".into()));
    };
    let run_as = match &spec.run_as {
        Some(r) => r.clone(),
        None => RunAs::for_postgres(None)?,
    };
    let passfile = match &spec.superuser.password {
        Some(pw) => Some(
            SecretFile::create(
                &spec.secret_dir,
                "manning-pgpass-",
                pgpass_line("*", "*", "*", &spec.superuser.username, pw.expose()).as_bytes(),
                Some(&run_as),
            )
            .map_err(|source| PostInitError::PassFile {
                dir: spec.secret_dir.clone(),
                source,
            })?,
        ),
        None => None,
    };
    let url = connection_url(
        &spec.superuser.username,
        &spec.host,
        spec.port,
        &spec.dbname,
    );
    let mut cmd = Command::new(program);
    cmd.args(args)
        .arg(&url)
        .env(
            "PGOPTIONS",
            "-c synchronous_commit=local -c statement_timeout=0",
        )
        .env_remove("PGPASSWORD");
    match &passfile {
        Some(f) => cmd.env("PGPASSFILE", f.path()),
        None => cmd.env_remove("PGPASSFILE"),
    };
    run_as.apply_to(&mut cmd)?;
    info!(command = %spec.command, url = %url, "running post_init");
    let out = reaper::output_lines(cmd, spec.timeout, |stream, line| match stream {
        OutputStream::Stdout => info!(target: "manning::postgres::post_init", "post_init: {line}"),
        OutputStream::Stderr => {
            info!(target: "manning::postgres::post_init", "post_init (stderr): {line}")
        }
    })
    .await;
    drop(passfile);
    let out = out?;
    if !out.status.success() {
        return Err(PostInitError::Failed {
            command: spec.command.clone(),
            status: out.status,
            stderr: out.stderr_tail(20),
        });
    }
    info!(command = %spec.command, "post_init finished");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_a_shell() {
        assert_eq!(
            split_command("/usr/local/bin/init-pgadmin-db.sh").unwrap(),
            ["/usr/local/bin/init-pgadmin-db.sh"]
        );
        assert_eq!(
            split_command(r#"  sh -c 'echo "$1"' x "a b" c\ d "e\"f" ''  "#).unwrap(),
            ["sh", "-c", "echo \"$1\"", "x", "a b", "c d", "e\"f", ""]
        );
        assert_eq!(split_command(r#""\$HOME\n""#).unwrap(), ["$HOME\\n"]);
        assert!(split_command("'open").is_err());
        assert!(split_command("\"open").is_err());
        assert!(split_command("x\\").is_err());
        assert!(split_command("   ").unwrap().is_empty());
    }

    #[test]
    fn urls() {
        assert_eq!(
            connection_url("postgres", "/var/run/postgresql", 5432, "postgres"),
            "postgresql://postgres@%2Fvar%2Frun%2Fpostgresql:5432/postgres"
        );
        assert_eq!(
            connection_url("a d@m:n", "localhost", 15432, "my db"),
            "postgresql://a%20d%40m%3An@localhost:15432/my%20db"
        );
    }
}
