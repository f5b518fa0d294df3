//! Configuration: the model every role shares, read from Patroni's `patroni.yml`.
//!
//! [`load`] turns a file (or a directory of YAML files, or `PATRONI_CONFIGURATION`) into a
//! [`Config`], in Patroni's order:
//!
//! 1. templates: `{{ secret "NAME" }}` and `{{ env "NAME" }}` ([`template`]), rendered so
//!    values come out byte-exact whatever characters they contain;
//! 2. YAML, read with YAML 1.1 rules as PyYAML does ([`yaml`]); several files in a
//!    directory are merged in name order;
//! 3. the `PATRONI_*` environment overlay ([`env`](mod@env)): environment > file (skipped when the
//!    whole configuration comes from `PATRONI_CONFIGURATION`, as in Patroni);
//! 4. decoding into the typed model with Patroni's keys, types and defaults
//!    (`schema`, [`model`], [`dynamic`]);
//! 5. validation: Patroni's rules plus manning's own (`validate`), including the
//!    timeout adjustments of `bootstrap.dcs` (warnings).
//!
//! Every stage reports into one list, so a single run shows every [`Problem`] with its
//! file, line, column and key path. Secrets are [`Secret`]s and never appear in messages.
//! The dynamic configuration in the DCS has the same shape as `bootstrap.dcs`
//! ([`DynamicConfig`]); [`Config::effective_dynamic`] merges it as Patroni does:
//! defaults < DCS (or `bootstrap.dcs` before the DCS has one) < local `postgresql`.

pub mod cmd;
pub(crate) mod decode;
pub mod dynamic;
pub mod env;
pub mod model;
pub mod problem;
pub(crate) mod schema;
pub mod secret;
pub mod suggest;
pub mod template;
pub(crate) mod validate;
pub mod yaml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use decode::CmdOption;
pub use dynamic::{DynamicConfig, DynamicPostgresql, SynchronousMode};
pub use model::*;
pub use problem::{Problem, Problems, Severity};
pub use secret::Secret;

use problem::{Mark, Sources};
use yaml::{Kind, Node};

/// Default directory of `{{ secret "NAME" }}` files (where Docker Swarm mounts secrets).
pub const DEFAULT_SECRETS_DIR: &str = "/run/secrets";
/// Where Debian installs PostgreSQL versions (`<root>/<version>/bin`).
const PG_LIB_ROOT: &str = "/usr/lib/postgresql";

/// What to load and from where.
#[derive(Clone)]
pub struct LoadOptions {
    /// A file, or a directory whose `*.yml`/`*.yaml` files are merged in name order.
    /// `None`: the YAML text in `PATRONI_CONFIGURATION`.
    pub path: Option<PathBuf>,
    /// The environment (`PATRONI_*` overlay, `{{ env }}`, `PATH`). Explicit so tests do
    /// not depend on the process environment.
    pub env: BTreeMap<String, String>,
    /// Where `{{ secret "NAME" }}` reads `NAME`.
    pub secrets_dir: PathBuf,
}

/// Shows the names of the environment variables, never their values (some are
/// passwords).
impl std::fmt::Debug for LoadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadOptions")
            .field("path", &self.path)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("secrets_dir", &self.secrets_dir)
            .finish()
    }
}

impl LoadOptions {
    /// Options from the real process environment: `MANNING_SECRETS_DIR` (default
    /// `/run/secrets`). Variables whose names or values are not UTF-8 are skipped.
    pub fn from_process(path: Option<PathBuf>) -> LoadOptions {
        let env: BTreeMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let secrets_dir = env
            .get("MANNING_SECRETS_DIR")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SECRETS_DIR));
        LoadOptions {
            path,
            env,
            secrets_dir,
        }
    }
}

/// A configuration that loaded, with its warnings.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// Adjustments and risks worth telling the operator (all severity `Warning`).
    pub warnings: Vec<Problem>,
    /// Display name of where the configuration came from (a path or
    /// `$PATRONI_CONFIGURATION`).
    pub source: String,
}

impl Loaded {
    /// Log every warning (for long-running roles).
    pub fn log_warnings(&self) {
        for w in &self.warnings {
            tracing::warn!("{w}");
        }
    }
}

/// The YAML texts to read (source id and text), whether the environment overlay applies,
/// and the display name of the whole input.
struct Inputs {
    texts: Vec<(u32, String)>,
    use_env: bool,
    display: String,
}

fn inputs(opts: &LoadOptions, sources: &mut Sources) -> Result<Inputs, Problem> {
    let fail = |sources: &mut Sources, name: String, message: String| {
        let id = sources.add(name);
        Problem::at(sources, Mark::whole(id), Severity::Error, "", message)
    };
    match &opts.path {
        Some(path) => {
            let display = path.display().to_string();
            let files: Vec<PathBuf> = if path.is_dir() {
                let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                    .map_err(|e| fail(sources, display.clone(), format!("cannot read directory: {e}")))?
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.is_file()
                            && p.extension()
                                .is_some_and(|e| e == "yml" || e == "yaml")
                    })
                    .collect();
                files.sort();
                if files.is_empty() {
                    return Err(fail(
                        sources,
                        display,
                        "the directory has no *.yml or *.yaml file".into(),
                    ));
                }
                files
            } else {
                vec![path.clone()]
            };
            let mut texts = Vec::new();
            for f in files {
                let name = f.display().to_string();
                let text = std::fs::read(&f)
                    .map_err(|e| fail(sources, name.clone(), format!("cannot read: {e}")))?;
                let text = String::from_utf8(text)
                    .map_err(|_| fail(sources, name.clone(), "is not valid UTF-8 text".into()))?;
                texts.push((sources.add(name), text));
            }
            Ok(Inputs {
                texts,
                use_env: true,
                display,
            })
        }
        None => match opts.env.get("PATRONI_CONFIGURATION").filter(|t| !t.is_empty()) {
            Some(text) => {
                let name = "$PATRONI_CONFIGURATION".to_string();
                Ok(Inputs {
                    texts: vec![(sources.add(name.clone()), text.clone())],
                    use_env: false,
                    display: name,
                })
            }
            None => Err(fail(
                sources,
                "manning".into(),
                "no configuration: give the path of patroni.yml, or set PATRONI_CONFIGURATION to the YAML text (as Patroni reads it)".into(),
            )),
        },
    }
}

/// Read one text: templates, YAML, substitution. `None` when the YAML did not parse.
fn read_text(
    source: u32,
    text: &str,
    opts: &LoadOptions,
    sources: &Sources,
    problems: &mut Vec<Problem>,
) -> Option<Node> {
    let rendered = template::render(text);
    let (root, issues) = yaml::parse(&rendered.text, source, &|l, c| rendered.original_col(l, c));
    for i in issues {
        problems.push(Problem::at(sources, i.mark, i.severity, i.path, i.message));
    }
    let mut resolve = |func: template::Func, name: &str| -> Result<String, String> {
        match func {
            template::Func::Secret => template::read_secret(&opts.secrets_dir, name),
            template::Func::Env => opts
                .env
                .get(name)
                .cloned()
                .ok_or_else(|| format!("environment variable {name} is not set")),
        }
    };
    let mut subst = template::Substituter::new(&rendered, &mut resolve);
    let parsed = problems
        .iter()
        .all(|p| !p.is_error() || p.file != sources.name(source));
    let root = match root {
        Some(mut root) if parsed => {
            subst.node(&mut root, "");
            Some(root)
        }
        Some(_) => {
            subst.report_all_unparsable();
            None
        }
        None if parsed => Some(Node::map(
            Mark {
                source,
                line: 1,
                col: 1,
            },
            Vec::new(),
        )),
        None => {
            subst.report_all_unparsable();
            None
        }
    };
    for i in subst.issues {
        let mark = Mark {
            source,
            line: i.line,
            col: i.col,
        };
        problems.push(Problem::at(
            sources,
            mark,
            Severity::Error,
            i.path,
            i.message,
        ));
    }
    if let Some(r) = &root {
        if !matches!(r.kind, Kind::Map(_)) {
            problems.push(Problem::at(
                sources,
                r.mark,
                Severity::Error,
                "",
                format!(
                    "the top level must be a mapping of settings, not {}",
                    r.type_name()
                ),
            ));
            return None;
        }
    }
    root
}

/// Load, overlay, decode and validate a configuration (see the module documentation).
/// Errors come back as [`Problems`] (every problem found, warnings included), which
/// converts into an exit-2 `anyhow::Error`.
pub fn load(opts: &LoadOptions) -> Result<Loaded, Problems> {
    let mut sources = Sources::new();
    let mut problems: Vec<Problem> = Vec::new();
    let Inputs {
        texts,
        use_env,
        display,
    } = match inputs(opts, &mut sources) {
        Ok(x) => x,
        Err(p) => return Err(Problems(vec![p])),
    };

    let mut merged: Option<Node> = None;
    let mut all_parsed = true;
    for (source, text) in &texts {
        match read_text(*source, text, opts, &sources, &mut problems) {
            Some(root) => match merged.as_mut() {
                Some(m) => env::patch(m, root),
                None => merged = Some(root),
            },
            None => all_parsed = false,
        }
    }

    if use_env {
        let overlay = env::overlay(&opts.env, &mut sources);
        problems.extend(overlay.problems);
        if let Some(m) = merged.as_mut() {
            env::patch(m, overlay.tree);
        }
    } else {
        let ignored: Vec<&str> = opts
            .env
            .iter()
            .filter(|(k, v)| {
                k.starts_with("PATRONI_") && *k != "PATRONI_CONFIGURATION" && !v.is_empty()
            })
            .map(|(k, _)| k.as_str())
            .collect();
        if !ignored.is_empty() {
            let id = sources.add("$PATRONI_CONFIGURATION");
            problems.push(Problem::at(
                &sources,
                Mark::whole(id),
                Severity::Warning,
                "",
                format!(
                    "the configuration comes from PATRONI_CONFIGURATION, so these variables are ignored, as in Patroni: {}",
                    ignored.join(", ")
                ),
            ));
        }
    }

    let Some(root) = merged.filter(|_| all_parsed) else {
        problem::sort_problems(&mut problems);
        return Err(Problems(problems));
    };

    let machine_bin = validate::highest_pg_bin_dir(Path::new(PG_LIB_ROOT));
    let mut cx = decode::Cx::new(&sources, false);
    let decoded = schema::decode_config(
        &mut cx,
        &root,
        &schema::MachineDefaults {
            bin_dir: machine_bin,
        },
    );
    let mut config = decoded.config;

    if let Some(b) = &config.bootstrap {
        let mut dcs = b.dcs.clone();
        for (key, message) in dcs.adjust_timeouts() {
            let path = format!("bootstrap.dcs.{key}");
            let at = cx
                .mark_of(&path)
                .or_else(|| cx.mark_of("bootstrap.dcs"))
                .unwrap_or_default();
            cx.report_path(at, Severity::Warning, path, message);
        }
    }

    let ctx = validate::Context {
        missing: &decoded.missing,
        env: &opts.env,
        bin_dir_explicit: cx.mark_of("postgresql.bin_dir").is_some(),
    };
    validate::validate(&mut cx, &config, &ctx);

    config.secret_paths = std::mem::take(&mut cx.secret_paths);
    problems.extend(std::mem::take(&mut cx.problems));
    problem::sort_problems(&mut problems);
    if problems.iter().any(Problem::is_error) {
        return Err(Problems(problems));
    }
    Ok(Loaded {
        config,
        warnings: problems,
        source: display,
    })
}

#[cfg(test)]
mod tests;
