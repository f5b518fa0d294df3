//! YAML text to a tree of [`Node`]s that remember where they came from.
//!
//! Patroni reads its file with PyYAML (`yaml.safe_load`, YAML 1.1). We parse with
//! `yaml-rust2`'s event stream and build our own tree because we need what a plain value
//! tree loses: the line and column of every key and value (for error messages), whether a
//! scalar was quoted (YAML 1.1 turns a plain `on` into `true`, a quoted `"on"` stays a
//! string), and whether a value came from a `{{ secret }}` template (to redact it).
//! Anchors, aliases and `<<` merge keys work as in PyYAML; duplicate keys keep the later
//! value as PyYAML does, with a warning. Nothing here panics on bad input, and alias
//! expansion is bounded so a "billion laughs" file is an error rather than an OOM.
//!
//! Scalars stay text until a consumer asks for a type: [`resolve_plain`] implements
//! PyYAML's YAML 1.1 rules for plain scalars (booleans `yes/no/on/off/true/false`,
//! integers including `0x`, `0o`/leading-zero octal, `0b`, `_` separators and
//! sexagesimal `1:30`, floats that need a dot, `~`/`null`), used by [`Node::to_json`] for
//! free-form values such as `postgresql.parameters`.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::problem::{Mark, Severity, SourceId};

/// A YAML value with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the value starts.
    pub mark: Mark,
    pub kind: Kind,
    /// The value (or part of it) came from a `{{ secret "..." }}` call or a secret-bearing
    /// environment variable: never echo it, redact it in output.
    pub secret: bool,
}

/// The shape of a [`Node`].
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// `~`, `null`, or nothing at all (`key:`).
    Null,
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// A scalar exactly as written (after escapes), and whether YAML 1.1 type rules apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    pub text: String,
    /// Plain (unquoted, not a block scalar): `on` is a boolean, `20` an integer.
    /// Quoted and block scalars, and everything substituted by a template, are strings.
    pub plain: bool,
}

/// One `key: value` pair of a mapping, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_mark: Mark,
    pub value: Node,
}

/// A plain scalar after YAML 1.1 type resolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Resolved<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
}

impl Node {
    pub fn new(mark: Mark, kind: Kind) -> Node {
        Node {
            mark,
            kind,
            secret: false,
        }
    }

    /// A string value (as an environment variable gives it): never type-resolved.
    pub fn string(mark: Mark, text: impl Into<String>) -> Node {
        Node::new(
            mark,
            Kind::Scalar(Scalar {
                text: text.into(),
                plain: false,
            }),
        )
    }

    pub fn map(mark: Mark, entries: Vec<Entry>) -> Node {
        Node::new(mark, Kind::Map(entries))
    }

    pub fn is_null(&self) -> bool {
        matches!(self.kind, Kind::Null)
    }

    pub fn entries(&self) -> Option<&[Entry]> {
        match &self.kind {
            Kind::Map(e) => Some(e),
            _ => None,
        }
    }

    pub fn entries_mut(&mut self) -> Option<&mut Vec<Entry>> {
        match &mut self.kind {
            Kind::Map(e) => Some(e),
            _ => None,
        }
    }

    pub fn scalar(&self) -> Option<&Scalar> {
        match &self.kind {
            Kind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// The value of `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries()?
            .iter()
            .find(|e| e.key == key)
            .map(|e| &e.value)
    }

    /// The entry of `key` in a mapping (for the key's position).
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries()?.iter().find(|e| e.key == key)
    }

    /// True if this node or anything inside it is secret.
    pub fn contains_secret(&self) -> bool {
        self.secret
            || match &self.kind {
                Kind::Seq(items) => items.iter().any(Node::contains_secret),
                Kind::Map(entries) => entries.iter().any(|e| e.value.contains_secret()),
                _ => false,
            }
    }

    /// "a mapping", "a list", "a string", ... for messages.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            Kind::Null => "empty (null)",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
            Kind::Scalar(s) if !s.plain => "a string",
            Kind::Scalar(s) => match resolve_plain(&s.text) {
                Resolved::Null => "empty (null)",
                Resolved::Bool(_) => "a boolean",
                Resolved::Int(_) => "an integer",
                Resolved::Float(_) => "a number",
                Resolved::Str(_) => "a string",
            },
        }
    }

    /// The value as JSON, with PyYAML's YAML 1.1 typing of plain scalars.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            Kind::Null => Value::Null,
            Kind::Scalar(s) if !s.plain => Value::String(s.text.clone()),
            Kind::Scalar(s) => match resolve_plain(&s.text) {
                Resolved::Null => Value::Null,
                Resolved::Bool(b) => Value::Bool(b),
                Resolved::Int(i) => Value::from(i),
                Resolved::Float(f) => serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .unwrap_or_else(|| Value::String(s.text.clone())),
                Resolved::Str(t) => Value::String(t.to_string()),
            },
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.to_json()))
                    .collect(),
            ),
        }
    }

    /// Build a tree from JSON (a value read from the DCS). Strings become quoted scalars,
    /// numbers and booleans plain ones, so the same decoders accept both sources.
    pub fn from_json(value: &serde_json::Value, mark: Mark) -> Node {
        use serde_json::Value;
        let kind = match value {
            Value::Null => Kind::Null,
            Value::Bool(b) => Kind::Scalar(Scalar {
                text: b.to_string(),
                plain: true,
            }),
            Value::Number(n) => Kind::Scalar(Scalar {
                text: n.to_string(),
                plain: true,
            }),
            Value::String(s) => Kind::Scalar(Scalar {
                text: s.clone(),
                plain: false,
            }),
            Value::Array(a) => Kind::Seq(a.iter().map(|v| Node::from_json(v, mark)).collect()),
            Value::Object(o) => Kind::Map(
                o.iter()
                    .map(|(k, v)| Entry {
                        key: k.clone(),
                        key_mark: mark,
                        value: Node::from_json(v, mark),
                    })
                    .collect(),
            ),
        };
        Node::new(mark, kind)
    }

    fn size(&self) -> usize {
        1 + match &self.kind {
            Kind::Seq(items) => items.iter().map(Node::size).sum(),
            Kind::Map(entries) => entries.iter().map(|e| e.value.size()).sum(),
            _ => 0,
        }
    }
}

/// Something wrong found while parsing, before any key is understood.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseIssue {
    pub mark: Mark,
    pub severity: Severity,
    /// Dotted path of the mapping keys around the issue (may be empty).
    pub path: String,
    pub message: String,
}

/// Most nodes alias expansion may create before we call it an attack.
const MAX_NODES: usize = 1_000_000;
/// Deepest nesting we accept.
const MAX_DEPTH: usize = 256;

enum Frame {
    Seq {
        mark: Mark,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        mark: Mark,
        anchor: usize,
        entries: Vec<Entry>,
        merges: Vec<Node>,
        /// The key waiting for its value; `None` as the name marks an invalid key whose
        /// value is skipped.
        key: Option<(Option<String>, Mark)>,
    },
}

struct Loader<'a> {
    source: SourceId,
    map_col: &'a dyn Fn(u32, u32) -> u32,
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Node, usize)>,
    budget: usize,
    issues: Vec<ParseIssue>,
    root: Option<Node>,
}

/// Parse one YAML document. `map_col(line, col)` translates a 1-based column of the text
/// being parsed back to the column of the file the user wrote (templates change lengths).
/// Returns the root node (`None` for an empty document) and every issue found; on a syntax
/// error the root is `None`.
pub fn parse(
    text: &str,
    source: SourceId,
    map_col: &dyn Fn(u32, u32) -> u32,
) -> (Option<Node>, Vec<ParseIssue>) {
    let mut loader = Loader {
        source,
        map_col,
        stack: Vec::new(),
        anchors: HashMap::new(),
        budget: MAX_NODES,
        issues: Vec::new(),
        root: None,
    };
    // The parser is not ours; a panic inside it must not take the process down.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| loader.run(text)));
    match result {
        Ok(Ok(())) => {
            let root = loader.root.take();
            (root, loader.issues)
        }
        Ok(Err(())) => (None, loader.issues),
        Err(_) => {
            let mark = Mark {
                source,
                line: 1,
                col: 1,
            };
            let mut issues = loader.issues;
            issues.push(ParseIssue {
                mark,
                severity: Severity::Error,
                path: String::new(),
                message: "the YAML parser failed on this input".into(),
            });
            (None, issues)
        }
    }
}

/// Parse a YAML fragment given outside a file (an environment variable's list or
/// mapping); any node may be the root. `wrapped` characters were put in front of the
/// original value (`[` or `{`) and are taken off the columns.
pub fn parse_value(text: &str, source: SourceId, wrapped: u32) -> (Option<Node>, Vec<ParseIssue>) {
    parse(text, source, &|_, c| c.saturating_sub(wrapped).max(1))
}

fn is_null_text(t: &str) -> bool {
    matches!(t, "" | "~" | "null" | "Null" | "NULL")
}

impl Loader<'_> {
    fn mark(&self, m: &Marker) -> Mark {
        let line = m.line() as u32;
        let col = m.col() as u32 + 1;
        Mark {
            source: self.source,
            line,
            col: (self.map_col)(line, col),
        }
    }

    fn path(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        for f in &self.stack {
            match f {
                Frame::Map {
                    key: Some((Some(k), _)),
                    ..
                } => parts.push(k.clone()),
                Frame::Seq { items, .. } => {
                    if let Some(last) = parts.last_mut() {
                        last.push_str(&format!("[{}]", items.len()));
                    } else {
                        parts.push(format!("[{}]", items.len()));
                    }
                }
                _ => {}
            }
        }
        parts.join(".")
    }

    fn issue(&mut self, mark: Mark, severity: Severity, message: impl Into<String>) {
        let path = self.path();
        self.issues.push(ParseIssue {
            mark,
            severity,
            path,
            message: message.into(),
        });
    }

    fn run(&mut self, text: &str) -> Result<(), ()> {
        let mut parser = Parser::new_from_str(text);
        let mut documents = 0;
        loop {
            let (event, marker) = match parser.next_token() {
                Ok(x) => x,
                Err(e) => {
                    let mark = self.mark(e.marker());
                    self.issue(mark, Severity::Error, format!("YAML syntax: {}", e.info()));
                    return Err(());
                }
            };
            let mark = self.mark(&marker);
            match event {
                Event::Nothing | Event::StreamStart | Event::DocumentEnd => {}
                Event::StreamEnd => return Ok(()),
                Event::DocumentStart => {
                    documents += 1;
                    if documents > 1 {
                        self.issue(
                            mark,
                            Severity::Error,
                            "more than one YAML document (`---`) in one configuration",
                        );
                        return Err(());
                    }
                }
                Event::Alias(id) => {
                    let Some((node, size)) = self.anchors.get(&id).cloned() else {
                        self.issue(
                            mark,
                            Severity::Error,
                            "alias to an anchor that is not complete (recursive alias)",
                        );
                        return Err(());
                    };
                    if size > self.budget {
                        self.issue(
                            mark,
                            Severity::Error,
                            "aliases expand to too many values (more than 1000000)",
                        );
                        return Err(());
                    }
                    self.budget -= size;
                    let mut node = node;
                    node.mark = mark;
                    self.push_value(node)?;
                }
                Event::Scalar(text, style, anchor, tag) => {
                    let plain = matches!(style, TScalarStyle::Plain);
                    let mut kind = if plain && is_null_text(&text) {
                        Kind::Null
                    } else {
                        Kind::Scalar(Scalar { text, plain })
                    };
                    if let Some(tag) = tag {
                        match core_tag(&tag.handle, &tag.suffix) {
                            Some("str") => {
                                let text = match kind {
                                    Kind::Scalar(s) => s.text,
                                    _ => String::new(),
                                };
                                kind = Kind::Scalar(Scalar { text, plain: false });
                            }
                            Some("null") => kind = Kind::Null,
                            Some("int" | "float" | "bool") => {
                                if let Kind::Scalar(s) = &mut kind {
                                    s.plain = true;
                                }
                            }
                            _ => {
                                self.issue(
                                    mark,
                                    Severity::Error,
                                    format!(
                                        "unsupported YAML tag `{}{}` (PyYAML's safe loader rejects it too)",
                                        tag.handle, tag.suffix
                                    ),
                                );
                            }
                        }
                    }
                    let node = Node::new(mark, kind);
                    if anchor > 0 {
                        self.anchors.insert(anchor, (node.clone(), 1));
                    }
                    self.push_value(node)?;
                }
                Event::SequenceStart(anchor, tag) => {
                    self.check_collection_tag(mark, tag.as_ref(), "seq");
                    self.enter(mark)?;
                    self.stack.push(Frame::Seq {
                        mark,
                        anchor,
                        items: Vec::new(),
                    });
                }
                Event::MappingStart(anchor, tag) => {
                    self.check_collection_tag(mark, tag.as_ref(), "map");
                    self.enter(mark)?;
                    self.stack.push(Frame::Map {
                        mark,
                        anchor,
                        entries: Vec::new(),
                        merges: Vec::new(),
                        key: None,
                    });
                }
                Event::SequenceEnd => match self.stack.pop() {
                    Some(Frame::Seq {
                        mark,
                        anchor,
                        items,
                    }) => {
                        let node = Node::new(mark, Kind::Seq(items));
                        self.remember(anchor, &node);
                        self.push_value(node)?;
                    }
                    _ => return Err(()),
                },
                Event::MappingEnd => match self.stack.pop() {
                    Some(Frame::Map {
                        mark,
                        anchor,
                        entries,
                        merges,
                        ..
                    }) => {
                        let entries = apply_merges(entries, merges);
                        let node = Node::new(mark, Kind::Map(entries));
                        self.remember(anchor, &node);
                        self.push_value(node)?;
                    }
                    _ => return Err(()),
                },
            }
        }
    }

    fn enter(&mut self, mark: Mark) -> Result<(), ()> {
        if self.stack.len() >= MAX_DEPTH {
            self.issue(mark, Severity::Error, "values nested too deeply");
            return Err(());
        }
        Ok(())
    }

    fn check_collection_tag(
        &mut self,
        mark: Mark,
        tag: Option<&yaml_rust2::parser::Tag>,
        want: &str,
    ) {
        if let Some(tag) = tag {
            if core_tag(&tag.handle, &tag.suffix) != Some(want) {
                self.issue(
                    mark,
                    Severity::Error,
                    format!("unsupported YAML tag `{}{}`", tag.handle, tag.suffix),
                );
            }
        }
    }

    fn remember(&mut self, anchor: usize, node: &Node) {
        if anchor > 0 {
            self.anchors.insert(anchor, (node.clone(), node.size()));
        }
    }

    fn push_value(&mut self, node: Node) -> Result<(), ()> {
        enum Slot {
            Root,
            Item,
            Key,
            Value,
        }
        let slot = match self.stack.last() {
            None => Slot::Root,
            Some(Frame::Seq { .. }) => Slot::Item,
            Some(Frame::Map { key: None, .. }) => Slot::Key,
            Some(Frame::Map { .. }) => Slot::Value,
        };
        match slot {
            Slot::Root => {
                if self.root.is_some() {
                    return Err(());
                }
                self.root = Some(node);
            }
            Slot::Item => {
                if let Some(Frame::Seq { items, .. }) = self.stack.last_mut() {
                    items.push(node);
                }
            }
            Slot::Key => {
                let name = match &node.kind {
                    Kind::Scalar(s) => Some(s.text.clone()),
                    Kind::Null => Some("null".to_string()),
                    _ => None,
                };
                if name.is_none() {
                    self.issue(
                        node.mark,
                        Severity::Error,
                        "a mapping key must be a plain value, not a list or a mapping",
                    );
                }
                if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                    *key = Some((name, node.mark));
                }
            }
            Slot::Value => self.push_entry(node),
        }
        Ok(())
    }

    fn push_entry(&mut self, node: Node) {
        // The key stays in the frame while we look at the value, so `path()` includes it.
        let (name, key_mark) = match self.stack.last() {
            Some(Frame::Map { key: Some(k), .. }) => k.clone(),
            _ => return,
        };
        let finish = |this: &mut Self| {
            if let Some(Frame::Map { key, .. }) = this.stack.last_mut() {
                *key = None;
            }
        };
        let Some(name) = name else {
            finish(self);
            return;
        };
        if name == "<<" {
            let ok = match &node.kind {
                Kind::Map(_) => true,
                Kind::Seq(items) => items.iter().all(|i| matches!(i.kind, Kind::Map(_))),
                _ => false,
            };
            if ok {
                if let Some(Frame::Map { merges, .. }) = self.stack.last_mut() {
                    merges.push(node);
                }
            } else {
                self.issue(
                    key_mark,
                    Severity::Error,
                    "a `<<` merge key needs a mapping or a list of mappings",
                );
            }
            finish(self);
            return;
        }
        let first_line = match self.stack.last() {
            Some(Frame::Map { entries, .. }) => entries
                .iter()
                .find(|e| e.key == name)
                .map(|e| e.key_mark.line),
            _ => None,
        };
        if let Some(first_line) = first_line {
            self.issue(
                key_mark,
                Severity::Warning,
                format!(
                    "duplicate key (first on line {first_line}); the later value wins, as in Patroni"
                ),
            );
        }
        if let Some(Frame::Map { entries, key, .. }) = self.stack.last_mut() {
            entries.retain(|e| e.key != name);
            entries.push(Entry {
                key: name,
                key_mark,
                value: node,
            });
            *key = None;
        }
    }
}

/// `!!str` and friends: the suffix of a core-schema tag, if it is one.
fn core_tag<'t>(handle: &str, suffix: &'t str) -> Option<&'t str> {
    (handle == "!!" || handle == "tag:yaml.org,2002:").then_some(suffix)
}

/// PyYAML's merge: keys written in the mapping win over merged ones; among merged
/// mappings the first one listed wins.
fn apply_merges(entries: Vec<Entry>, merges: Vec<Node>) -> Vec<Entry> {
    if merges.is_empty() {
        return entries;
    }
    let mut merged: Vec<Entry> = Vec::new();
    for m in merges {
        let maps = match m.kind {
            Kind::Map(e) => vec![e],
            Kind::Seq(items) => items
                .into_iter()
                .filter_map(|i| match i.kind {
                    Kind::Map(e) => Some(e),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        for map in maps {
            for e in map {
                if !merged.iter().any(|x| x.key == e.key) {
                    merged.push(e);
                }
            }
        }
    }
    merged.retain(|m| !entries.iter().any(|e| e.key == m.key));
    merged.extend(entries);
    merged
}

/// YAML 1.1 (PyYAML) type of a plain scalar.
pub fn resolve_plain(text: &str) -> Resolved<'_> {
    if is_null_text(text) {
        return Resolved::Null;
    }
    match text {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Resolved::Bool(true);
        }
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Resolved::Bool(false);
        }
        _ => {}
    }
    if let Some(i) = parse_yaml11_int(text) {
        return Resolved::Int(i);
    }
    if let Some(f) = parse_yaml11_float(text) {
        return Resolved::Float(f);
    }
    Resolved::Str(text)
}

fn split_sign(text: &str) -> (i64, &str) {
    if let Some(rest) = text.strip_prefix('-') {
        (-1, rest)
    } else if let Some(rest) = text.strip_prefix('+') {
        (1, rest)
    } else {
        (1, text)
    }
}

fn digits_in(s: &str, radix: u32) -> Option<i64> {
    let cleaned: String = s.chars().filter(|&c| c != '_').collect();
    if cleaned.is_empty() || !s.chars().all(|c| c == '_' || c.is_digit(radix)) {
        return None;
    }
    i64::from_str_radix(&cleaned, radix).ok()
}

/// Integers as PyYAML reads them: `0b1010`, `0x1F`, `0o17` and `017` (octal), `1_000`,
/// `190:20:30` (base 60).
pub fn parse_yaml11_int(text: &str) -> Option<i64> {
    let (sign, body) = split_sign(text);
    if body.is_empty() {
        return None;
    }
    let value = if let Some(b) = body.strip_prefix("0b") {
        digits_in(b, 2)?
    } else if let Some(x) = body.strip_prefix("0x") {
        digits_in(x, 16)?
    } else if let Some(o) = body.strip_prefix("0o") {
        digits_in(o, 8)?
    } else if body.contains(':') {
        // sexagesimal: [1-9][0-9_]*(:[0-5]?[0-9])+
        let mut parts = body.split(':');
        let first = parts.next()?;
        if !first.starts_with(|c: char| ('1'..='9').contains(&c)) {
            return None;
        }
        let mut v = digits_in(first, 10)?;
        for p in parts {
            if p.is_empty() || p.len() > 2 || !p.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let d: i64 = p.parse().ok()?;
            if d >= 60 {
                return None;
            }
            v = v.checked_mul(60)?.checked_add(d)?;
        }
        v
    } else if body.len() > 1 && body.starts_with('0') {
        digits_in(&body[1..], 8)?
    } else {
        if !body.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        digits_in(body, 10)?
    };
    value.checked_mul(sign)
}

/// Floats as PyYAML reads them: a dot is required (`1.5`, `.5`, `1.`, `6.8e+5`), plus
/// `.inf`, `-.inf` and `.nan`.
pub fn parse_yaml11_float(text: &str) -> Option<f64> {
    let (sign, body) = split_sign(text);
    match body {
        ".inf" | ".Inf" | ".INF" => return Some(sign as f64 * f64::INFINITY),
        ".nan" | ".NaN" | ".NAN" if sign == 1 && !text.starts_with('+') => return Some(f64::NAN),
        _ => {}
    }
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int_part, frac_part) = mantissa.split_once('.')?;
    let int_ok = int_part.is_empty()
        || (int_part.starts_with(|c: char| c.is_ascii_digit())
            && int_part.chars().all(|c| c.is_ascii_digit() || c == '_'));
    let frac_ok = frac_part.chars().all(|c| c.is_ascii_digit() || c == '_');
    if !int_ok || !frac_ok || (int_part.is_empty() && frac_part.is_empty()) {
        return None;
    }
    if int_part.is_empty() && !frac_part.starts_with(|c: char| c.is_ascii_digit() || c == '_') {
        return None;
    }
    if let Some(e) = exponent {
        let digits = e.strip_prefix(['+', '-'])?;
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
    }
    let cleaned: String = body.chars().filter(|&c| c != '_').collect();
    let v: f64 = cleaned.parse().ok()?;
    Some(sign as f64 * v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> (Option<Node>, Vec<ParseIssue>) {
        parse(text, 0, &|_, c| c)
    }

    fn root(text: &str) -> Node {
        let (root, issues) = load(text);
        assert!(
            issues.iter().all(|i| i.severity != Severity::Error),
            "{issues:?}"
        );
        root.expect("a document")
    }

    #[test]
    fn marks_are_one_based_lines_and_columns() {
        let r = root("a: 1\nb:\n  c: x\n");
        let b = r.get("b").unwrap();
        let c = b.entry("c").unwrap();
        assert_eq!((c.key_mark.line, c.key_mark.col), (3, 3));
        assert_eq!((c.value.mark.line, c.value.mark.col), (3, 6));
        assert_eq!(r.entry("a").unwrap().key_mark.line, 1);
    }

    #[test]
    fn yaml11_scalars() {
        let r = root(
            "a: on\nb: 'on'\nc: 0x10\nd: 010\ne: 1_000\nf: 1:30\ng: 1.5\nh: 1e3\ni: ~\nj:\nk: 0.0.0.0:8008\nl: .inf\nm: !!str 12\n",
        );
        let j = r.to_json();
        assert_eq!(j["a"], serde_json::json!(true));
        assert_eq!(j["b"], serde_json::json!("on"));
        assert_eq!(j["c"], serde_json::json!(16));
        assert_eq!(j["d"], serde_json::json!(8));
        assert_eq!(j["e"], serde_json::json!(1000));
        assert_eq!(j["f"], serde_json::json!(90));
        assert_eq!(j["g"], serde_json::json!(1.5));
        assert_eq!(
            j["h"],
            serde_json::json!("1e3"),
            "YAML 1.1 floats need a dot"
        );
        assert_eq!(j["i"], serde_json::Value::Null);
        assert_eq!(j["j"], serde_json::Value::Null);
        assert_eq!(j["k"], serde_json::json!("0.0.0.0:8008"));
        assert_eq!(
            j["l"],
            serde_json::json!(".inf"),
            "non-finite stays text in JSON"
        );
        assert_eq!(j["m"], serde_json::json!("12"));
    }

    #[test]
    fn resolve_rules() {
        assert_eq!(resolve_plain("Off"), Resolved::Bool(false));
        assert_eq!(resolve_plain("y"), Resolved::Str("y"));
        assert_eq!(resolve_plain("-42"), Resolved::Int(-42));
        assert_eq!(resolve_plain("0b101"), Resolved::Int(5));
        assert_eq!(resolve_plain("0"), Resolved::Int(0));
        assert_eq!(resolve_plain("09"), Resolved::Str("09"));
        assert_eq!(resolve_plain("1:60"), Resolved::Str("1:60"));
        assert_eq!(resolve_plain(".5"), Resolved::Float(0.5));
        assert_eq!(resolve_plain("6.8e+5"), Resolved::Float(680000.0));
        assert_eq!(resolve_plain("1.2.3"), Resolved::Str("1.2.3"));
        assert_eq!(resolve_plain("."), Resolved::Str("."));
        assert_eq!(
            resolve_plain("99999999999999999999"),
            Resolved::Str("99999999999999999999")
        );
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let r = root("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\nlist: [*b]\n");
        let j = r.to_json();
        assert_eq!(j["other"], serde_json::json!({"x": 1, "y": 3}));
        assert_eq!(j["list"], serde_json::json!([{"x": 1, "y": 2}]));
    }

    #[test]
    fn duplicate_keys_warn_and_later_wins() {
        let (r, issues) = load("a:\n  b: 1\n  b: 2\n");
        assert_eq!(r.unwrap().to_json()["a"]["b"], serde_json::json!(2));
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].severity, Severity::Warning);
        assert_eq!(issues[0].path, "a.b");
        assert_eq!(issues[0].mark.line, 3);
        assert!(issues[0].message.contains("line 2"));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let (r, issues) = load("a: [1, 2\nb: 3\n");
        assert!(r.is_none());
        assert_eq!(issues.len(), 1);
        assert!(issues[0].message.starts_with("YAML syntax"));
        assert!(issues[0].mark.line >= 1);
    }

    #[test]
    fn hostile_inputs_are_errors_not_crashes() {
        for text in [
            "a: *nope\n",
            "a: &x [*x]\n",
            "---\na: 1\n---\nb: 2\n",
            "? [a]\n: 1\n",
            "a: !custom 1\n",
            "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
            "{",
            "a: 'unterminated\n",
            "a:\n\t- b\n",
        ] {
            let (_r, issues) = load(text);
            assert!(
                issues.iter().any(|i| i.severity == Severity::Error),
                "{text:?} gave {issues:?}"
            );
        }
        // billion laughs
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let (_r, issues) = load(&text);
        assert!(
            issues.iter().any(|i| i.message.contains("too many")),
            "{issues:?}"
        );
    }

    #[test]
    fn empty_document_has_no_root() {
        let (r, issues) = load("# only a comment\n");
        assert!(r.is_none());
        assert!(issues.is_empty());
    }

    #[test]
    fn json_round_trip_through_nodes() {
        let v = serde_json::json!({"ttl": 30, "s": "on", "b": true, "l": [1, "x"], "n": null});
        let n = Node::from_json(&v, Mark::default());
        assert_eq!(n.to_json(), v);
    }
}
