//! `{{ secret "NAME" }}` and `{{ env "NAME" }}` in configuration files.
//!
//! The seed's `patroni.yml` writes `password: {{ secret "patroni_superuser_password" }}`,
//! unquoted. Splicing the secret's text into the YAML would break on any YAML-special
//! character (`#` starts a comment, `: ` a mapping, a leading `{`, `*`, `%` or a quote
//! changes the meaning) and would let a secret inject keys. So rendering happens in two
//! steps that never put a value into YAML source:
//!
//! 1. [`render`] replaces every `{{ … }}` with a placeholder token made only of letters,
//!    digits and `_`, which YAML reads as a plain string wherever it stands, and remembers
//!    the call and its position;
//! 2. after parsing, [`Substituter`] walks the tree and replaces the tokens inside scalars
//!    with the real values, byte for byte. A substituted scalar is always a string and is
//!    marked secret when a `secret` call contributed to it.
//!
//! Calls are resolved lazily, when a scalar that uses them is substituted: a call inside a
//! YAML comment is never resolved and never reported. Problems (missing secret, unknown
//! function, unclosed `{{`) point at the call's own line and column in the original file.

use std::collections::HashMap;
use std::path::Path;

use super::yaml::{Kind, Node};

/// The template functions manning knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Func {
    /// Content of `$MANNING_SECRETS_DIR/NAME`, one trailing newline removed.
    Secret,
    /// Value of the environment variable NAME.
    Env,
}

impl Func {
    pub fn name(self) -> &'static str {
        match self {
            Func::Secret => "secret",
            Func::Env => "env",
        }
    }
}

/// One `{{ … }}` found in the text.
#[derive(Debug, Clone)]
pub struct Call {
    /// 1-based line and column of the `{{` in the original text.
    pub line: u32,
    pub col: u32,
    /// The parsed call, or why it could not be parsed.
    pub call: Result<(Func, String), String>,
}

/// A piece of text that was replaced on one line: where the token starts in the rendered
/// line (1-based column, in characters), the token's length and the original length.
#[derive(Debug, Clone, Copy)]
struct Replacement {
    rendered_col: u32,
    rendered_len: u32,
    original_len: u32,
}

/// The text with placeholders, the calls they stand for, and the column translation.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub text: String,
    pub calls: Vec<Call>,
    /// Token prefix chosen so it does not occur in the original text.
    prefix: String,
    replacements: HashMap<u32, Vec<Replacement>>,
}

impl Rendered {
    /// Translate a 1-based column of the rendered text on `line` to the original text.
    /// A column inside a token maps to the start of its `{{`.
    pub fn original_col(&self, line: u32, col: u32) -> u32 {
        let Some(reps) = self.replacements.get(&line) else {
            return col;
        };
        let mut shift: i64 = 0;
        for r in reps {
            if col >= r.rendered_col + r.rendered_len {
                shift += i64::from(r.rendered_len) - i64::from(r.original_len);
            } else if col >= r.rendered_col {
                return (i64::from(r.rendered_col) - shift).max(1) as u32;
            }
        }
        (i64::from(col) - shift).max(1) as u32
    }

    fn token(&self, i: usize) -> String {
        format!("{}{}__", self.prefix, i)
    }
}

/// Replace every `{{ … }}` in `text` with a placeholder token.
pub fn render(text: &str) -> Rendered {
    let mut nonce = 0u32;
    let prefix = loop {
        let p = format!("__manning_tpl{nonce}_");
        if !text.contains(&p) {
            break p;
        }
        nonce += 1;
    };
    let mut out = String::with_capacity(text.len());
    let mut calls = Vec::new();
    let mut replacements: HashMap<u32, Vec<Replacement>> = HashMap::new();
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let line_no = i as u32 + 1;
        let (body, newline) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        let mut rendered = String::new();
        let mut rest = body;
        let mut original_col = 1u32; // column (chars) in the original line where `rest` starts
        while let Some(start) = rest.find("{{") {
            let before = &rest[..start];
            rendered.push_str(before);
            original_col += before.chars().count() as u32;
            let after_open = &rest[start + 2..];
            let (call, consumed) = match after_open.find("}}") {
                Some(end) => (parse_call(&after_open[..end]), start + 2 + end + 2),
                None => (
                    Err(
                        "unclosed `{{`: a template call must end with `}}` on the same line"
                            .to_string(),
                    ),
                    rest.len(),
                ),
            };
            let original = &rest[start..consumed];
            let token = format!("{prefix}{}__", calls.len());
            let rendered_col = rendered.chars().count() as u32 + 1;
            replacements.entry(line_no).or_default().push(Replacement {
                rendered_col,
                rendered_len: token.chars().count() as u32,
                original_len: original.chars().count() as u32,
            });
            calls.push(Call {
                line: line_no,
                col: original_col,
                call,
            });
            rendered.push_str(&token);
            original_col += original.chars().count() as u32;
            rest = &rest[consumed..];
        }
        rendered.push_str(rest);
        out.push_str(&rendered);
        out.push_str(newline);
    }
    Rendered {
        text: out,
        calls,
        prefix,
        replacements,
    }
}

/// Parse the inside of `{{ … }}`: a function name and one quoted argument.
fn parse_call(inner: &str) -> Result<(Func, String), String> {
    let inner = inner.trim();
    let name_len = inner
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(inner.len());
    let name = &inner[..name_len];
    let func = match name {
        "secret" => Func::Secret,
        "env" => Func::Env,
        "" => {
            return Err(format!(
                "empty or malformed template call `{{{{ {inner} }}}}`: expected {{{{ secret \"NAME\" }}}} or {{{{ env \"NAME\" }}}}"
            ));
        }
        other => {
            return Err(format!(
                "unknown template function `{other}` (manning knows `secret` and `env`)"
            ));
        }
    };
    let args = inner[name_len..].trim();
    let usage = || {
        format!(
            "`{}` takes one quoted name, as in {{{{ {} \"NAME\" }}}}",
            func.name(),
            func.name()
        )
    };
    let (arg, rest) = parse_quoted(args).ok_or_else(usage)?;
    if !rest.trim().is_empty() {
        return Err(usage());
    }
    if arg.is_empty() {
        return Err(format!("`{}` needs a non-empty name", func.name()));
    }
    Ok((func, arg))
}

/// A Go-template string literal: `"…"` with `\"` and `\\` escapes, or `` `…` ``.
fn parse_quoted(s: &str) -> Option<(String, &str)> {
    if let Some(body) = s.strip_prefix('`') {
        let end = body.find('`')?;
        return Some((body[..end].to_string(), &body[end + 1..]));
    }
    let body = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &body[i + 1..])),
            '\\' => match chars.next() {
                Some((_, e @ ('"' | '\\'))) => out.push(e),
                _ => return None,
            },
            c => out.push(c),
        }
    }
    None
}

/// A problem found while substituting: where the call is, the key path that uses it, and
/// the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubstIssue {
    pub line: u32,
    pub col: u32,
    pub path: String,
    pub message: String,
}

/// Replaces tokens in a parsed tree with resolved values.
pub struct Substituter<'a> {
    rendered: &'a Rendered,
    resolve: &'a mut dyn FnMut(Func, &str) -> Result<String, String>,
    cache: HashMap<usize, Result<String, String>>,
    /// Calls reported already (each call is reported once, where first used).
    reported: Vec<bool>,
    /// Calls that failed so far (each use counts).
    failures: usize,
    pub issues: Vec<SubstIssue>,
}

impl<'a> Substituter<'a> {
    pub fn new(
        rendered: &'a Rendered,
        resolve: &'a mut dyn FnMut(Func, &str) -> Result<String, String>,
    ) -> Substituter<'a> {
        Substituter {
            rendered,
            resolve,
            cache: HashMap::new(),
            reported: vec![false; rendered.calls.len()],
            failures: 0,
            issues: Vec::new(),
        }
    }

    /// Every call that could not be parsed, for when the YAML itself did not parse and the
    /// tree cannot tell which calls are used.
    pub fn report_all_unparsable(&mut self) {
        for (i, c) in self.rendered.calls.iter().enumerate() {
            if let Err(msg) = &c.call {
                if !self.reported[i] {
                    self.reported[i] = true;
                    self.issues.push(SubstIssue {
                        line: c.line,
                        col: c.col,
                        path: String::new(),
                        message: msg.clone(),
                    });
                }
            }
        }
    }

    /// Substitute inside `node` (whose key path is `path`).
    pub fn node(&mut self, node: &mut Node, path: &str) {
        match &mut node.kind {
            Kind::Scalar(s) => {
                if s.text.contains(&self.rendered.prefix) {
                    let before = self.failures;
                    let (text, secret) = self.replace(&s.text, path);
                    s.text = text;
                    s.plain = false;
                    node.secret |= secret;
                    if self.failures > before {
                        // The call was reported; an empty value would only add noise.
                        node.kind = Kind::Null;
                    }
                }
            }
            Kind::Seq(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.node(item, &format!("{path}[{i}]"));
                }
            }
            Kind::Map(entries) => {
                for e in entries.iter_mut() {
                    if e.key.contains(&self.rendered.prefix) {
                        let (key, secret) = self.replace(&e.key, path);
                        if secret {
                            self.issues.push(SubstIssue {
                                line: e.key_mark.line,
                                col: e.key_mark.col,
                                path: path.to_string(),
                                message: "a secret cannot be used as a mapping key".into(),
                            });
                        }
                        e.key = key;
                    }
                    let child = if path.is_empty() {
                        e.key.clone()
                    } else {
                        format!("{path}.{}", e.key)
                    };
                    self.node(&mut e.value, &child);
                }
            }
            Kind::Null => {}
        }
    }

    /// Replace the tokens in `text`; returns the new text and whether a secret was used.
    fn replace(&mut self, text: &str, path: &str) -> (String, bool) {
        let prefix = self.rendered.prefix.clone();
        let mut out = String::new();
        let mut secret = false;
        let mut rest = text;
        while let Some(pos) = rest.find(&prefix) {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + prefix.len()..];
            let digits = after
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after.len());
            let index: Option<usize> = after[..digits].parse().ok();
            match index {
                Some(i) if after[digits..].starts_with("__") && i < self.rendered.calls.len() => {
                    debug_assert_eq!(self.rendered.token(i).len(), prefix.len() + digits + 2);
                    let (value, is_secret) = self.value(i, path);
                    out.push_str(&value);
                    secret |= is_secret;
                    rest = &after[digits + 2..];
                }
                _ => {
                    out.push_str(&prefix);
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        (out, secret)
    }

    fn value(&mut self, i: usize, path: &str) -> (String, bool) {
        let call = &self.rendered.calls[i];
        let (line, col) = (call.line, call.col);
        let (result, is_secret) = match &call.call {
            Err(msg) => (Err(msg.clone()), false),
            Ok((func, arg)) => {
                let (func, arg) = (*func, arg.clone());
                let resolve = &mut self.resolve;
                let r = self
                    .cache
                    .entry(i)
                    .or_insert_with(|| resolve(func, &arg))
                    .clone();
                (r, func == Func::Secret)
            }
        };
        match result {
            Ok(v) => (v, is_secret),
            Err(message) => {
                self.failures += 1;
                if !self.reported[i] {
                    self.reported[i] = true;
                    self.issues.push(SubstIssue {
                        line,
                        col,
                        path: path.to_string(),
                        message,
                    });
                }
                (String::new(), is_secret)
            }
        }
    }
}

/// Read a Docker/Swarm-style secret: the file `dir/name`, with one trailing newline
/// (`\n` or `\r\n`) removed. Errors name the secret and the path, never the content.
pub fn read_secret(dir: &Path, name: &str) -> Result<String, String> {
    if name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(format!(
            "secret name {name:?} must be a plain file name inside the secrets directory"
        ));
    }
    let path = dir.join(name);
    let bytes = std::fs::read(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "secret \"{name}\" not found: {} does not exist (the secrets directory is set by MANNING_SECRETS_DIR)",
                path.display()
            )
        } else {
            format!("secret \"{name}\" cannot be read from {}: {e}", path.display())
        }
    })?;
    let mut text = String::from_utf8(bytes)
        .map_err(|_| format!("secret \"{name}\" in {} is not valid UTF-8", path.display()))?;
    if text.ends_with("\r\n") {
        text.truncate(text.len() - 2);
    } else if text.ends_with('\n') {
        text.truncate(text.len() - 1);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml;

    fn render_and_load(
        text: &str,
        values: &[(&str, &str)],
    ) -> (Option<Node>, Vec<SubstIssue>, Rendered) {
        let r = render(text);
        let (root, issues) = yaml::parse(&r.text, 0, &|l, c| r.original_col(l, c));
        assert!(issues.is_empty(), "{issues:?}");
        let mut root = root;
        let values: HashMap<String, String> = values
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut resolve = |f: Func, name: &str| -> Result<String, String> {
            values
                .get(&format!("{}:{name}", f.name()))
                .cloned()
                .ok_or_else(|| format!("no {name}"))
        };
        let mut s = Substituter::new(&r, &mut resolve);
        if let Some(root) = root.as_mut() {
            s.node(root, "");
        }
        let issues = s.issues.clone();
        (root, issues, r.clone())
    }

    #[test]
    fn yaml_special_values_come_out_byte_exact() {
        let nasty = "#x: y 'q\" {a} *b %c \\ end ";
        let (root, issues, _) = render_and_load(
            "a: {{ secret \"pw\" }}\nb: \"{{ secret \"pw\" }}\"\nc: [{{ env \"E\" }}]\nd: pre-{{ env \"E\" }}-post\n",
            &[("secret:pw", nasty), ("env:E", "{x: 1}")],
        );
        assert!(issues.is_empty(), "{issues:?}");
        let root = root.unwrap();
        for key in ["a", "b"] {
            let n = root.get(key).unwrap();
            assert_eq!(n.scalar().unwrap().text, nasty);
            assert!(!n.scalar().unwrap().plain);
            assert!(n.secret);
        }
        let c = &root.get("c").unwrap();
        assert_eq!(c.to_json(), serde_json::json!(["{x: 1}"]));
        assert!(!c.contains_secret());
        assert_eq!(
            root.get("d").unwrap().to_json(),
            serde_json::json!("pre-{x: 1}-post")
        );
    }

    #[test]
    fn substituted_values_are_strings_even_if_they_look_typed() {
        let (root, _, _) = render_and_load("a: {{ env \"N\" }}\n", &[("env:N", "on")]);
        assert_eq!(root.unwrap().to_json()["a"], serde_json::json!("on"));
    }

    #[test]
    fn errors_point_at_the_call_and_the_key() {
        let (_root, issues, _) = render_and_load(
            "x: 1\nsection:\n  key: abc {{ secret \"missing\" }}\n  other: {{ nope \"a\" }}\n  third: {{ secret missing }}\n# {{ secret \"in-a-comment\" }}\n",
            &[],
        );
        assert_eq!(issues.len(), 3, "{issues:?}");
        assert_eq!(
            (issues[0].line, issues[0].col, issues[0].path.as_str()),
            (3, 12, "section.key")
        );
        assert_eq!(issues[0].message, "no missing");
        assert_eq!((issues[1].line, issues[1].col), (4, 10));
        assert!(
            issues[1]
                .message
                .contains("unknown template function `nope`")
        );
        assert!(issues[2].message.contains("one quoted name"));
    }

    #[test]
    fn unclosed_call_is_an_error_on_its_line() {
        let r = render("a: 1\nb: {{ secret \"x\"\nc: 2\n");
        assert_eq!(r.calls.len(), 1);
        assert_eq!((r.calls[0].line, r.calls[0].col), (2, 4));
        assert!(r.calls[0].call.as_ref().unwrap_err().contains("unclosed"));
        let (root, issues) = yaml::parse(&r.text, 0, &|_, c| c);
        assert!(issues.is_empty());
        assert!(
            root.unwrap().get("c").is_some(),
            "the next line still parses"
        );
    }

    #[test]
    fn columns_map_back_to_the_original_text() {
        let r = render("k: {{ env \"A\" }} {{ env \"B\" }} tail\n");
        // rendered: `k: TOKEN0 TOKEN1 tail`
        let t0 = r.token(0).chars().count() as u32;
        let t1 = r.token(1).chars().count() as u32;
        assert_eq!(r.original_col(1, 4), 4);
        assert_eq!(r.original_col(1, 6), 4, "inside the first token");
        let second = 4 + t0 + 1;
        assert_eq!(r.original_col(1, second), 4 + 13 + 1);
        let tail = second + t1 + 1;
        assert_eq!(r.original_col(1, tail), 4 + 13 + 1 + 13 + 1);
        assert_eq!(r.original_col(2, 7), 7);
    }

    #[test]
    fn call_syntax() {
        assert_eq!(
            parse_call(" secret \"a\\\"b\" ").unwrap(),
            (Func::Secret, "a\"b".into())
        );
        assert_eq!(parse_call("env `X`").unwrap(), (Func::Env, "X".into()));
        assert!(parse_call("secret").is_err());
        assert!(parse_call("secret \"a\" \"b\"").is_err());
        assert!(parse_call("secret \"\"").is_err());
        assert!(parse_call("").is_err());
        assert!(parse_call(".Node.ID").is_err());
    }

    #[test]
    fn the_token_prefix_avoids_the_text() {
        let r = render("a: __manning_tpl0_ {{ env \"X\" }}\n");
        assert!(r.token(0).starts_with("__manning_tpl1_"));
    }

    #[test]
    fn secrets_lose_exactly_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "pw\n\n").unwrap();
        std::fs::write(dir.path().join("b"), "pw\r\n").unwrap();
        std::fs::write(dir.path().join("c"), "pw").unwrap();
        std::fs::write(dir.path().join("d"), [0xff, 0xfe]).unwrap();
        std::fs::create_dir(dir.path().join("e")).unwrap();
        assert_eq!(read_secret(dir.path(), "a").unwrap(), "pw\n");
        assert_eq!(read_secret(dir.path(), "b").unwrap(), "pw");
        assert_eq!(read_secret(dir.path(), "c").unwrap(), "pw");
        assert!(read_secret(dir.path(), "d").unwrap_err().contains("UTF-8"));
        assert!(
            read_secret(dir.path(), "e")
                .unwrap_err()
                .contains("cannot be read")
        );
        let missing = read_secret(dir.path(), "zz").unwrap_err();
        assert!(missing.contains("\"zz\"") && missing.contains("does not exist"));
        assert!(read_secret(dir.path(), "../etc/passwd").is_err());
    }
}
