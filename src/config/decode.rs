//! Turning [`Node`]s into typed values while collecting every problem.
//!
//! [`Cx`] walks a tree with the key path of the current position, records problems with
//! that path and the node's position, and never stops at the first one. Its readers accept
//! what Patroni accepts: YAML 1.1 booleans (`on`, `yes`, ...) and strings such as `"20"`
//! or `"true"` where a number or a boolean is expected (environment values are always
//! strings; Patroni runs them through `parse_int`/`parse_bool`).
//!
//! Messages never contain a value that is secret: the `(got …)` suffix is added only for
//! values that neither came from a secret nor sit under a password-like key.
//!
//! In lenient mode (values read back from the DCS) errors are downgraded to warnings and
//! unknown keys are kept silently: Patroni never refuses what is in `/config`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::problem::{Mark, Problem, Severity, Sources};
use super::secret::Secret;
use super::suggest;
use super::yaml::{Entry, Kind, Node, Resolved, parse_yaml11_int, resolve_plain};

/// Decoding context: where we are, and what went wrong so far.
pub(crate) struct Cx<'s> {
    pub sources: &'s Sources,
    pub problems: Vec<Problem>,
    path: Vec<String>,
    /// Key paths of values that came from a secret but live in a field that is not a
    /// [`Secret`]; redacted by `config show`.
    pub secret_paths: BTreeSet<String>,
    /// Values from the DCS: errors become warnings, unknown keys are not reported.
    pub lenient: bool,
    /// Where each key path visited was written (the key's position), for checks that
    /// look at several keys at once.
    pub marks: HashMap<String, Mark>,
}

/// Keys whose values are never echoed in messages.
fn is_password_key(key: &str) -> bool {
    key.contains("password") || key == "token"
}

/// Decode the entries of a mapping, one arm per known key. Unknown keys are reported with
/// the closest known key unless an `else |known| …` arm handles them.
macro_rules! fields {
    ($cx:expr, $node:expr, |$e:ident| { $($key:literal => $body:expr),+ $(,)? }) => {
        fields!($cx, $node, |$e| { $($key => $body),+ } else |known| $cx.unknown($e, known))
    };
    ($cx:expr, $node:expr, |$e:ident| { $($key:literal => $body:expr),+ $(,)? } else |$known:ident| $fallback:expr) => {{
        const KNOWN: &[&str] = &[$($key),+];
        let entries = $cx.entries($node);
        for $e in entries {
            $cx.enter(&$e.key);
            $cx.record($e.key_mark);
            match $e.key.as_str() {
                $($key => { $body; })+
                _ => {
                    let $known: &[&str] = KNOWN;
                    $fallback;
                }
            }
            $cx.leave();
        }
    }};
}
pub(crate) use fields;

/// One command-line option from a Patroni list/dict option section (`bootstrap.initdb`,
/// `postgresql.basebackup`, `postgresql.rewind`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdOption {
    /// `- data-checksums` → `--data-checksums`
    Flag(String),
    /// `- encoding: UTF8` → `--encoding=UTF8`
    Value(String, String),
}

impl CmdOption {
    /// The option as a command-line argument.
    pub fn to_arg(&self) -> String {
        match self {
            CmdOption::Flag(n) => format!("--{n}"),
            CmdOption::Value(n, v) => format!("--{n}={v}"),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            CmdOption::Flag(n) | CmdOption::Value(n, _) => n,
        }
    }
}

/// Written back in Patroni's list form: `"data-checksums"` or `{"encoding": "UTF8"}`.
impl Serialize for CmdOption {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            CmdOption::Flag(n) => s.serialize_str(n),
            CmdOption::Value(n, v) => {
                let mut m = BTreeMap::new();
                m.insert(n, v);
                m.serialize(s)
            }
        }
    }
}

impl<'s> Cx<'s> {
    pub fn new(sources: &'s Sources, lenient: bool) -> Cx<'s> {
        Cx {
            sources,
            problems: Vec::new(),
            path: Vec::new(),
            secret_paths: BTreeSet::new(),
            lenient,
            marks: HashMap::new(),
        }
    }

    /// The current key path: `bootstrap.dcs.ttl`, `bootstrap.initdb[1]`.
    pub fn path(&self) -> String {
        let mut out = String::new();
        for seg in self.path.iter().filter(|s| !s.is_empty()) {
            if !out.is_empty() && !seg.starts_with('[') {
                out.push('.');
            }
            out.push_str(seg);
        }
        out
    }

    pub fn enter(&mut self, seg: impl Into<String>) {
        self.path.push(seg.into());
    }

    pub fn leave(&mut self) {
        self.path.pop();
    }

    /// Remember that the current path was written at `mark`.
    pub fn record(&mut self, mark: Mark) {
        let path = self.path();
        self.marks.insert(path, mark);
    }

    /// Where the current section was written (its key), else where its value starts.
    pub fn here(&self, node: &Node) -> Mark {
        self.mark_of(&self.path()).unwrap_or(node.mark)
    }

    /// Where `path` was written, if it was.
    pub fn mark_of(&self, path: &str) -> Option<Mark> {
        self.marks.get(path).copied()
    }

    /// Run `f` one level deeper.
    pub fn at<T>(&mut self, seg: impl Into<String>, f: impl FnOnce(&mut Self) -> T) -> T {
        self.enter(seg);
        let r = f(self);
        self.leave();
        r
    }

    pub fn report(&mut self, mark: Mark, severity: Severity, message: impl Into<String>) {
        let path = self.path();
        self.report_path(mark, severity, path, message);
    }

    pub fn report_path(
        &mut self,
        mark: Mark,
        severity: Severity,
        path: String,
        message: impl Into<String>,
    ) {
        let severity = if self.lenient {
            Severity::Warning
        } else {
            severity
        };
        self.problems
            .push(Problem::at(self.sources, mark, severity, path, message));
    }

    pub fn error(&mut self, mark: Mark, message: impl Into<String>) {
        self.report(mark, Severity::Error, message);
    }

    pub fn warn(&mut self, mark: Mark, message: impl Into<String>) {
        self.report(mark, Severity::Warning, message);
    }

    /// ` (got "abc")` for values that may be shown, else nothing.
    pub fn got(&self, node: &Node) -> String {
        let password = self.path.last().is_some_and(|k| is_password_key(k));
        if node.secret || password {
            return String::new();
        }
        match &node.kind {
            Kind::Scalar(s) => {
                let mut text: String = s.text.chars().take(60).collect();
                if s.text.chars().count() > 60 {
                    text.push('…');
                }
                format!(" (got {text:?})")
            }
            _ => String::new(),
        }
    }

    /// "must be EXPECTED, not TYPE (got VALUE)".
    pub fn invalid(&mut self, node: &Node, expected: &str) {
        let msg = format!(
            "must be {expected}, not {}{}",
            node.type_name(),
            self.got(node)
        );
        self.error(node.mark, msg);
    }

    /// An unknown key: an error naming the closest known key (silent in lenient mode).
    pub fn unknown(&mut self, entry: &Entry, known: &[&str]) {
        if self.lenient {
            return;
        }
        let hint = suggest::did_you_mean(&entry.key, known.iter().copied());
        self.error(entry.key_mark, format!("unknown key `{}`{hint}", entry.key));
    }

    /// A key Patroni knows that manning accepts but does not act on.
    pub fn ignored(&mut self, entry: &Entry, why: &str) {
        self.warn(entry.key_mark, format!("ignored by manning: {why}"));
    }

    /// The entries of a mapping; empty (and reported) for anything else. `key:` with no
    /// value counts as an empty mapping.
    pub fn entries<'n>(&mut self, node: &'n Node) -> &'n [Entry] {
        match &node.kind {
            Kind::Map(e) => e,
            Kind::Null => &[],
            _ => {
                self.invalid(node, "a mapping");
                &[]
            }
        }
    }

    fn note_secret(&mut self, node: &Node) {
        if node.contains_secret() {
            self.secret_paths.insert(self.path());
        }
    }

    /// Any scalar as text (`None` for null). Numbers and booleans are taken as written.
    pub fn string(&mut self, node: &Node) -> Option<String> {
        match &node.kind {
            Kind::Null => None,
            Kind::Scalar(s) => {
                self.note_secret(node);
                Some(s.text.clone())
            }
            _ => {
                self.invalid(node, "a string");
                None
            }
        }
    }

    /// A string that must not be empty.
    pub fn nonempty(&mut self, node: &Node) -> Option<String> {
        let s = self.string(node)?;
        if s.trim().is_empty() {
            self.error(node.mark, "must not be empty");
            return None;
        }
        Some(s)
    }

    pub fn secret(&mut self, node: &Node) -> Option<Secret> {
        match &node.kind {
            Kind::Null => None,
            Kind::Scalar(s) => Some(Secret::new(s.text.clone())),
            _ => {
                self.invalid(node, "a string");
                None
            }
        }
    }

    /// `true`/`false`, YAML 1.1 `yes/no/on/off`, or a string Patroni's `parse_bool`
    /// accepts (`"on"`, `"true"`, `"yes"`, `"1"` and their opposites, any case).
    pub fn bool(&mut self, node: &Node) -> Option<bool> {
        let parsed = match &node.kind {
            Kind::Null => return None,
            Kind::Scalar(s) if s.plain => match resolve_plain(&s.text) {
                Resolved::Bool(b) => Some(b),
                Resolved::Int(1) => Some(true),
                Resolved::Int(0) => Some(false),
                _ => None,
            },
            Kind::Scalar(s) => parse_bool(&s.text),
            _ => None,
        };
        if parsed.is_none() {
            self.invalid(node, "true or false");
        }
        parsed
    }

    /// An integer, also from a string (`"20"`), within `min..=max`.
    pub fn int(&mut self, node: &Node, min: Option<i64>, max: Option<i64>) -> Option<i64> {
        let parsed = match &node.kind {
            Kind::Null => return None,
            Kind::Scalar(s) if s.plain => match resolve_plain(&s.text) {
                Resolved::Int(i) => Some(i),
                Resolved::Float(f) if f.fract() == 0.0 && f.abs() < 9e15 => Some(f as i64),
                _ => None,
            },
            Kind::Scalar(s) => parse_yaml11_int(s.text.trim()),
            _ => None,
        };
        let Some(v) = parsed else {
            self.invalid(node, "an integer");
            return None;
        };
        if let Some(min) = min {
            if v < min {
                self.error(
                    node.mark,
                    format!("must be at least {min}{}", self.got(node)),
                );
                return None;
            }
        }
        if let Some(max) = max {
            if v > max {
                self.error(
                    node.mark,
                    format!("must be at most {max}{}", self.got(node)),
                );
                return None;
            }
        }
        Some(v)
    }

    /// A non-negative integer at least `min`.
    pub fn uint(&mut self, node: &Node, min: u64) -> Option<u64> {
        self.int(node, Some(min as i64), None).map(|v| v as u64)
    }

    /// A duration in seconds, as an integer or with a PostgreSQL unit (`30min`, `1h`,
    /// `500ms`, `2d`), like Patroni's `parse_int(value, 's')`.
    pub fn seconds(&mut self, node: &Node, min: u64) -> Option<u64> {
        if let Kind::Scalar(s) = &node.kind {
            let text = s.text.trim();
            let split = text
                .find(|c: char| !(c.is_ascii_digit() || c == '-' || c == '+'))
                .unwrap_or(text.len());
            let (num, unit) = (&text[..split], text[split..].trim());
            if !unit.is_empty() {
                let factor_ms: Option<u64> = match unit {
                    "ms" => Some(1),
                    "s" => Some(1000),
                    "min" => Some(60_000),
                    "h" => Some(3_600_000),
                    "d" => Some(86_400_000),
                    _ => None,
                };
                return match (num.parse::<i64>().ok(), factor_ms) {
                    (Some(n), Some(f)) if n >= 0 => {
                        let secs = (n as u64).saturating_mul(f).div_ceil(1000);
                        if secs < min {
                            self.error(
                                node.mark,
                                format!("must be at least {min}s{}", self.got(node)),
                            );
                            None
                        } else {
                            Some(secs)
                        }
                    }
                    _ => {
                        self.invalid(
                            node,
                            "a number of seconds (or with a unit: ms, s, min, h, d)",
                        );
                        None
                    }
                };
            }
        }
        self.uint(node, min)
    }

    /// A list of strings (each item any scalar).
    pub fn string_list(&mut self, node: &Node) -> Option<Vec<String>> {
        let items = match &node.kind {
            Kind::Null => return None,
            Kind::Seq(items) => items,
            _ => {
                self.invalid(node, "a list of strings");
                return None;
            }
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            self.enter(format!("[{i}]"));
            match &item.kind {
                Kind::Scalar(s) => {
                    self.note_secret(item);
                    out.push(s.text.clone());
                }
                _ => self.invalid(item, "a string"),
            }
            self.leave();
        }
        Some(out)
    }

    /// Any value as JSON (YAML 1.1 typing); secret parts are remembered for redaction.
    pub fn json(&mut self, node: &Node) -> serde_json::Value {
        self.note_secret(node);
        node.to_json()
    }

    /// A mapping of free-form values.
    pub fn json_map(&mut self, node: &Node) -> Option<BTreeMap<String, serde_json::Value>> {
        if node.is_null() {
            return None;
        }
        if !matches!(node.kind, Kind::Map(_)) {
            self.invalid(node, "a mapping");
            return None;
        }
        let mut out = BTreeMap::new();
        for e in self.entries(node) {
            self.enter(&e.key);
            let v = self.json(&e.value);
            out.insert(e.key.clone(), v);
            self.leave();
        }
        Some(out)
    }

    /// A mapping whose values are scalars (PostgreSQL parameters): null values are
    /// dropped with a warning, lists and mappings are errors.
    pub fn scalar_map(&mut self, node: &Node) -> Option<BTreeMap<String, serde_json::Value>> {
        if node.is_null() {
            return None;
        }
        if !matches!(node.kind, Kind::Map(_)) {
            self.invalid(node, "a mapping");
            return None;
        }
        let mut out = BTreeMap::new();
        for e in self.entries(node) {
            self.enter(&e.key);
            match &e.value.kind {
                Kind::Scalar(_) => {
                    let v = self.json(&e.value);
                    if v.is_null() {
                        self.warn(e.key_mark, "has no value; ignored");
                    } else {
                        out.insert(e.key.clone(), v);
                    }
                }
                Kind::Null => self.warn(e.key_mark, "has no value; ignored"),
                _ => self.invalid(&e.value, "a single value (string, number or boolean)"),
            }
            self.leave();
        }
        Some(out)
    }

    /// A mapping of strings (HTTP headers, logger levels).
    pub fn string_map(&mut self, node: &Node) -> Option<BTreeMap<String, String>> {
        if node.is_null() {
            return None;
        }
        if !matches!(node.kind, Kind::Map(_)) {
            self.invalid(node, "a mapping");
            return None;
        }
        let mut out = BTreeMap::new();
        for e in self.entries(node) {
            self.enter(&e.key);
            if let Some(v) = self.string(&e.value) {
                out.insert(e.key.clone(), v);
            }
            self.leave();
        }
        Some(out)
    }

    /// One of a fixed set of words (`case_insensitive` as Patroni's `EnumValidator`).
    pub fn choice<T: Copy>(
        &mut self,
        node: &Node,
        choices: &[(&str, T)],
        case_insensitive: bool,
    ) -> Option<T> {
        let text = match &node.kind {
            Kind::Null => return None,
            Kind::Scalar(s) => s.text.trim().to_string(),
            _ => String::new(),
        };
        let found = choices.iter().find(|(name, _)| {
            if case_insensitive {
                name.eq_ignore_ascii_case(&text)
            } else {
                *name == text
            }
        });
        match found {
            Some((_, v)) => Some(*v),
            None => {
                let names: Vec<String> = choices.iter().map(|(n, _)| format!("`{n}`")).collect();
                let hint = suggest::did_you_mean(&text, choices.iter().map(|(n, _)| *n));
                let msg = format!(
                    "must be one of {}, not {}{}{hint}",
                    names.join(", "),
                    node.type_name(),
                    self.got(node)
                );
                self.error(node.mark, msg);
                None
            }
        }
    }

    /// Patroni's option sections: a list of `name` / `{name: value}` items, or a mapping.
    /// Options in `forbidden` are managed by manning itself and rejected. A `true` value
    /// in the mapping form means a flag; `false` and empty values are skipped (as Patroni
    /// skips falsy values).
    pub fn cmd_options(
        &mut self,
        node: &Node,
        tool: &str,
        forbidden: &[&str],
    ) -> Option<Vec<CmdOption>> {
        let mut out = Vec::new();
        let check = |cx: &mut Self, name: &str, mark: Mark| -> bool {
            if name.starts_with('-') {
                cx.error(
                    mark,
                    format!(
                        "write {tool} option names without leading dashes (`{}`)",
                        name.trim_start_matches('-')
                    ),
                );
                false
            } else if forbidden.contains(&name) {
                cx.error(
                    mark,
                    format!("the {tool} option `{name}` is not allowed: manning sets it itself"),
                );
                false
            } else if name.is_empty() {
                cx.error(mark, format!("empty {tool} option name"));
                false
            } else {
                true
            }
        };
        let value_text = |v: &Node| -> Option<String> {
            match &v.kind {
                Kind::Scalar(s) => Some(s.text.clone()),
                _ => None,
            }
        };
        match &node.kind {
            Kind::Null => return None,
            Kind::Map(entries) => {
                for e in entries {
                    self.enter(&e.key);
                    if check(self, &e.key, e.key_mark) {
                        match &e.value.kind {
                            Kind::Null => {}
                            Kind::Scalar(s) if s.plain => match resolve_plain(&s.text) {
                                Resolved::Bool(true) => out.push(CmdOption::Flag(e.key.clone())),
                                Resolved::Bool(false) | Resolved::Null => {}
                                _ => out.push(CmdOption::Value(e.key.clone(), s.text.clone())),
                            },
                            Kind::Scalar(s) => {
                                out.push(CmdOption::Value(e.key.clone(), s.text.clone()))
                            }
                            _ => self.invalid(&e.value, "a single value"),
                        }
                    }
                    self.leave();
                }
            }
            Kind::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.enter(format!("[{i}]"));
                    match &item.kind {
                        Kind::Scalar(s) => {
                            if check(self, &s.text, item.mark) {
                                out.push(CmdOption::Flag(s.text.clone()));
                            }
                        }
                        Kind::Map(entries) if entries.len() == 1 => {
                            let e = &entries[0];
                            if check(self, &e.key, e.key_mark) {
                                match value_text(&e.value) {
                                    Some(v) => out.push(CmdOption::Value(e.key.clone(), v)),
                                    None => self.at(e.key.clone(), |cx| {
                                        cx.invalid(&e.value, "a single value")
                                    }),
                                }
                            }
                        }
                        Kind::Map(_) => self.error(
                            item.mark,
                            format!(
                                "each {tool} option must be one `name` or one `name: value` pair"
                            ),
                        ),
                        _ => self.invalid(item, "an option name or a `name: value` pair"),
                    }
                    self.leave();
                }
            }
            _ => {
                self.invalid(node, "a list or a mapping of options");
                return None;
            }
        }
        Some(out)
    }
}

/// Patroni's `parse_bool`.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Some(true),
        "off" | "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml;

    fn tree(text: &str) -> (Sources, Node) {
        let mut s = Sources::new();
        let id = s.add("t.yml");
        let (root, issues) = yaml::parse(text, id, &|_, c| c);
        assert!(issues.is_empty(), "{issues:?}");
        (s, root.unwrap())
    }

    #[test]
    fn lenient_types_like_patroni() {
        let (s, root) = tree("a: '20'\nb: on\nc: 'yes'\nd: 0x10\ne: 30min\nf: 1\ng: abc\n");
        let mut cx = Cx::new(&s, false);
        assert_eq!(cx.int(root.get("a").unwrap(), None, None), Some(20));
        assert_eq!(cx.bool(root.get("b").unwrap()), Some(true));
        assert_eq!(cx.bool(root.get("c").unwrap()), Some(true));
        assert_eq!(cx.int(root.get("d").unwrap(), None, None), Some(16));
        assert_eq!(cx.seconds(root.get("e").unwrap(), 0), Some(1800));
        assert_eq!(cx.bool(root.get("f").unwrap()), Some(true));
        assert!(cx.problems.is_empty());
        cx.enter("g");
        assert_eq!(cx.int(root.get("g").unwrap(), None, None), None);
        assert_eq!(cx.problems.len(), 1);
        assert_eq!(
            cx.problems[0].to_string(),
            "t.yml:7:4: g: must be an integer, not a string (got \"abc\")"
        );
    }

    #[test]
    fn secrets_are_never_echoed() {
        let (s, mut root) = tree("password: abc\nother: def\n");
        let mut cx = Cx::new(&s, false);
        cx.enter("password");
        cx.int(root.get("password").unwrap(), None, None);
        cx.leave();
        if let Kind::Map(e) = &mut root.kind {
            e[1].value.secret = true;
        }
        cx.enter("other");
        cx.int(root.get("other").unwrap(), None, None);
        cx.leave();
        assert_eq!(cx.problems.len(), 2);
        for p in &cx.problems {
            assert!(
                !p.message.contains("abc") && !p.message.contains("def"),
                "{p}"
            );
        }
    }

    #[test]
    fn unknown_keys_get_suggestions_and_lenient_mode_stays_quiet() {
        let (s, root) = tree("ttl: 1\nloop_wiat: 2\n");
        for lenient in [false, true] {
            let mut cx = Cx::new(&s, lenient);
            let mut ttl = None;
            fields!(cx, &root, |e| {
                "ttl" => ttl = cx.int(&e.value, None, None),
                "loop_wait" => {},
            });
            assert_eq!(ttl, Some(1));
            if lenient {
                assert!(cx.problems.is_empty());
            } else {
                assert_eq!(
                    cx.problems[0].to_string(),
                    "t.yml:2:1: loop_wiat: unknown key `loop_wiat` (did you mean `loop_wait`?)"
                );
            }
        }
    }

    #[test]
    fn option_lists_and_maps() {
        let (s, root) = tree(
            "a:\n  - encoding: UTF8\n  - data-checksums\n  - pgdata: /x\n  - {a: 1, b: 2}\n  - --locale\nb:\n  max-rate: 100M\n  verbose: true\n  progress: false\n",
        );
        let mut cx = Cx::new(&s, false);
        let a = cx.at("a", |cx| {
            cx.cmd_options(root.get("a").unwrap(), "initdb", &["pgdata"])
        });
        assert_eq!(
            a.unwrap(),
            vec![
                CmdOption::Value("encoding".into(), "UTF8".into()),
                CmdOption::Flag("data-checksums".into())
            ]
        );
        assert_eq!(cx.problems.len(), 3, "{:?}", cx.problems);
        assert!(cx.problems[0].message.contains("`pgdata` is not allowed"));
        assert_eq!(cx.problems[0].line, Some(4));
        let b = cx
            .cmd_options(root.get("b").unwrap(), "pg_basebackup", &[])
            .unwrap();
        let args: Vec<String> = b.iter().map(CmdOption::to_arg).collect();
        assert_eq!(args, ["--max-rate=100M", "--verbose"]);
        assert_eq!(
            serde_json::to_value(&b).unwrap(),
            serde_json::json!([{"max-rate": "100M"}, "verbose"])
        );
    }

    #[test]
    fn choices_suggest() {
        let (s, root) = tree("m: automatc\n");
        let mut cx = Cx::new(&s, false);
        let r = cx.choice(
            root.get("m").unwrap(),
            &[("off", 0), ("automatic", 1)],
            true,
        );
        assert_eq!(r, None);
        assert!(cx.problems[0].message.contains("did you mean `automatic`"));
    }
}
