//! Problems found while loading a configuration, and where they are.
//!
//! Loading never stops at the first mistake: every stage (templates, YAML, the environment
//! overlay, decoding, validation) appends [`Problem`]s to one list, so `manning config check`
//! can show everything that is wrong in one run. A problem points at a source (a file, an
//! environment variable, the DCS), a line and a column when the source has them, and the key
//! path it concerns.

use std::fmt;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The configuration works, but something was adjusted, ignored or looks risky.
    Warning,
    /// The configuration cannot be used.
    Error,
}

/// Identifies one source of configuration text in a [`Sources`] table.
pub type SourceId = u32;

/// A position in a source. `line == 0` means the source has no lines (an environment
/// variable, a default, a value from the DCS); lines and columns are 1-based otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    pub source: SourceId,
    pub line: u32,
    pub col: u32,
}

impl Mark {
    /// A mark for a whole source that has no line structure (e.g. `$PATRONI_SCOPE`).
    pub fn whole(source: SourceId) -> Mark {
        Mark {
            source,
            line: 0,
            col: 0,
        }
    }
}

/// The display names of every source seen while loading: file paths, `$PATRONI_NAME`,
/// `$PATRONI_CONFIGURATION`, `defaults`, `DCS /config`, ...
#[derive(Debug, Clone, Default)]
pub struct Sources {
    names: Vec<String>,
}

impl Sources {
    pub fn new() -> Sources {
        Sources::default()
    }

    /// Register a source (or find it if it is already known) and return its id.
    pub fn add(&mut self, name: impl Into<String>) -> SourceId {
        let name = name.into();
        if let Some(i) = self.names.iter().position(|n| *n == name) {
            return i as SourceId;
        }
        self.names.push(name);
        (self.names.len() - 1) as SourceId
    }

    /// The display name of a source (`"?"` for an id that was never registered).
    pub fn name(&self, id: SourceId) -> &str {
        self.names
            .get(id as usize)
            .map(String::as_str)
            .unwrap_or("?")
    }
}

/// One thing wrong (or worth knowing) about a configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub severity: Severity,
    /// Display name of the source: a file path, `$PATRONI_SCOPE`, `DCS /config`, ...
    pub file: String,
    /// 1-based line, when the source has lines.
    pub line: Option<u32>,
    /// 1-based column, when the source has lines.
    pub column: Option<u32>,
    /// Dotted key path (`bootstrap.dcs.ttl`, `bootstrap.initdb[1]`); empty when the problem
    /// is not about one key (a YAML syntax error, a template call).
    pub key_path: String,
    /// What is wrong and, where possible, how to fix it. Never contains a secret value.
    pub message: String,
}

impl Problem {
    /// Build a problem at `mark`, resolving the source name through `sources`.
    pub fn at(
        sources: &Sources,
        mark: Mark,
        severity: Severity,
        key_path: impl Into<String>,
        message: impl Into<String>,
    ) -> Problem {
        let (line, column) = if mark.line == 0 {
            (None, None)
        } else {
            (Some(mark.line), Some(mark.col.max(1)))
        };
        Problem {
            severity,
            file: sources.name(mark.source).to_string(),
            line,
            column,
            key_path: key_path.into(),
            message: message.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// `FILE:LINE:COL: key.path: message`; warnings say `warning:` before the message.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}:{}", self.column.unwrap_or(1))?;
        }
        f.write_str(": ")?;
        if !self.key_path.is_empty() {
            write!(f, "{}: ", self.key_path)?;
        }
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        f.write_str(&self.message)
    }
}

/// The error of [`crate::config::load`]: every problem found (errors and warnings), in the
/// order of the source text. Converts into an `anyhow::Error` that exits with code 2.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter().filter(|p| p.is_error())
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter().filter(|p| !p.is_error())
    }

    pub fn error_count(&self) -> usize {
        self.errors().count()
    }
}

/// One problem per line.
impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Bad configuration is a usage error: exit code 2, with every problem in the message.
impl From<Problems> for anyhow::Error {
    fn from(problems: Problems) -> anyhow::Error {
        let n = problems.error_count();
        crate::error::usage(format!(
            "invalid configuration ({n} error{}):\n{problems}",
            if n == 1 { "" } else { "s" }
        ))
    }
}

/// Sort problems by source order (file, line, column) keeping the discovery order of equal
/// positions, so output reads top to bottom.
pub(crate) fn sort_problems(problems: &mut [Problem]) {
    problems.sort_by(|a, b| {
        (a.line.is_none(), &a.file, a.line, a.column).cmp(&(
            b.line.is_none(),
            &b.file,
            b.line,
            b.column,
        ))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_file_line_column_path_and_severity() {
        let mut s = Sources::new();
        let f = s.add("patroni.yml");
        let p = Problem::at(
            &s,
            Mark {
                source: f,
                line: 3,
                col: 5,
            },
            Severity::Error,
            "bootstrap.dcs.ttl",
            "must be an integer",
        );
        assert_eq!(
            p.to_string(),
            "patroni.yml:3:5: bootstrap.dcs.ttl: must be an integer"
        );
        let e = s.add("$PATRONI_NAME");
        let w = Problem::at(&s, Mark::whole(e), Severity::Warning, "name", "odd");
        assert_eq!(w.to_string(), "$PATRONI_NAME: name: warning: odd");
    }

    #[test]
    fn problems_become_exit_2_errors() {
        let mut s = Sources::new();
        let f = s.add("x.yml");
        let p = Problem::at(&s, Mark::whole(f), Severity::Error, "", "bad");
        let err: anyhow::Error = Problems(vec![p]).into();
        assert_eq!(crate::error::exit_code_for(&err), crate::error::EXIT_USAGE);
        assert!(err.to_string().contains("x.yml: bad"));
    }

    #[test]
    fn sources_are_deduplicated() {
        let mut s = Sources::new();
        assert_eq!(s.add("a"), s.add("a"));
        assert_ne!(s.add("a"), s.add("b"));
        assert_eq!(s.name(99), "?");
    }
}
