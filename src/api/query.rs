//! Query strings and numbers-with-units, parsed as Patroni parses them.
//!
//! Patroni reads the query with Python's `parse_qs` (blank values dropped, `+` is a space,
//! percent-escapes decoded, the first value of a repeated key wins) and numbers such as
//! `?lag=16kB` or a restart `timeout` of `5min` with its `parse_int`, which accepts decimal,
//! hex and octal integers, decimals, and PostgreSQL's memory/time units, rounding half to
//! even like Python's `round`. Matching this matters for HAProxy configs copied from a
//! Patroni deployment: `?lag=10MB` must mean 10 MiB here too.

/// The parsed query string of a request: keys in order of first appearance, each with the
/// values given for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pairs: Vec<(String, Vec<String>)>,
}

impl Query {
    /// Parse the part of a URI after `?` (without the `?`).
    pub fn parse(raw: &str) -> Query {
        let mut q = Query::default();
        for field in raw.split('&') {
            let Some((k, v)) = field.split_once('=') else {
                continue;
            };
            if v.is_empty() {
                continue;
            }
            let (k, v) = (unquote_plus(k), unquote_plus(v));
            match q.pairs.iter_mut().find(|(key, _)| *key == k) {
                Some((_, values)) => values.push(v),
                None => q.pairs.push((k, vec![v])),
            }
        }
        q
    }

    /// The first value of `key`.
    pub fn first(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.first())
            .map(String::as_str)
    }

    /// Every key with its first value, in order of first appearance.
    pub fn iter_first(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs
            .iter()
            .filter_map(|(k, v)| v.first().map(|v| (k.as_str(), v.as_str())))
    }
}

/// `+` to space, then `%XX` decoding; invalid UTF-8 becomes U+FFFD (Python's default).
fn unquote_plus(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// The unit family a number is converted to (Patroni's `base_unit` argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseUnit {
    /// Bytes: accepts `B`, `kB`, `MB`, `GB`, `TB` (powers of 1024, case-sensitive).
    Bytes,
    /// Seconds: accepts `us`, `ms`, `s`, `min`, `h`, `d`.
    Seconds,
}

/// Unit tables, largest first, each entry `(unit, size in the base unit)`.
const BYTE_UNITS: &[(&str, f64)] = &[
    ("TB", 1_099_511_627_776.0),
    ("GB", 1_073_741_824.0),
    ("MB", 1_048_576.0),
    ("kB", 1024.0),
    ("B", 1.0),
];
const TIME_UNITS: &[(&str, f64)] = &[
    ("d", 86_400.0),
    ("h", 3600.0),
    ("min", 60.0),
    ("s", 1.0),
    ("ms", 0.001),
    ("us", 0.000_001),
];

/// Patroni's `parse_int(value, base_unit)`: `None` when the value cannot be read (the
/// caller then applies its default, e.g. "no lag limit"). Results beyond `i128` saturate.
pub fn parse_int(value: &str, base: BaseUnit) -> Option<i128> {
    let value = value.trim();
    let (mut val, mut unit) = match strtol(value) {
        Some((v, rest)) => (Some(Number::Int(v)), rest),
        None => (None, value),
    };
    let needs_float = match unit.as_bytes().first() {
        Some(b'.') => true,
        Some(b'e' | b'E') => val.is_some(),
        _ => false,
    };
    if needs_float {
        match strtod(value) {
            Some((v, rest)) => {
                val = Some(Number::Float(v));
                unit = rest;
            }
            None => return None,
        }
    }
    let val = val?;
    let unit = unit.trim();
    if unit.is_empty() {
        return Some(match val {
            Number::Int(i) => i,
            Number::Float(f) => float_to_int(f.round_ties_even())?,
        });
    }
    let table = match base {
        BaseUnit::Bytes => BYTE_UNITS,
        BaseUnit::Seconds => TIME_UNITS,
    };
    let pos = table.iter().position(|(u, _)| *u == unit)?;
    let factor = table[pos].1;
    let mut v = match val {
        Number::Int(i) => i as f64,
        Number::Float(f) => f,
    } * factor;
    // Round to a whole number of the next smaller unit, as Patroni's convert_to_base_unit.
    if let Some((_, smaller)) = table.get(pos + 1) {
        v = (v / smaller).round_ties_even() * smaller;
    }
    float_to_int(v.round_ties_even())
}

enum Number {
    Int(i128),
    Float(f64),
}

fn float_to_int(f: f64) -> Option<i128> {
    if f.is_nan() {
        return None;
    }
    // `as` saturates at the bounds, which is what we want for absurd inputs.
    Some(f as i128)
}

/// C's `strtol` with base 0 as Patroni mimics it: hex `0x..`, octal `0..`, then decimal.
/// Returns the number and the rest of the string.
fn strtol(s: &str) -> Option<(i128, &str)> {
    let b = s.as_bytes();
    let (neg, start) = match b.first() {
        Some(b'-') => (true, 1),
        Some(b'+') => (false, 1),
        _ => (false, 0),
    };
    let body = &s[start..];
    let (radix, digits_start, digits_len) =
        if body.starts_with("0x") && body[2..].starts_with(|c: char| c.is_ascii_hexdigit()) {
            let n = body[2..]
                .chars()
                .take_while(char::is_ascii_hexdigit)
                .count();
            (16, 2, n)
        } else if body.starts_with('0') {
            let n = body.chars().take_while(|c| ('0'..='7').contains(c)).count();
            (8, 0, n)
        } else if body.starts_with(|c: char| c.is_ascii_digit()) {
            let n = body.chars().take_while(char::is_ascii_digit).count();
            (10, 0, n)
        } else {
            return None;
        };
    let digits = &body[digits_start..digits_start + digits_len];
    let magnitude = i128::from_str_radix(digits, radix).unwrap_or(i128::MAX);
    let rest = &body[digits_start + digits_len..];
    Some((if neg { -magnitude } else { magnitude }, rest))
}

/// C's `strtod` restricted to the decimal forms Patroni's regex accepts:
/// `[-+]?[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?`.
fn strtod(s: &str) -> Option<(f64, &str)> {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'-' | b'+')) {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let mut end = i;
    if i < b.len() && b[i] == b'.' {
        let frac_start = i + 1;
        let mut j = frac_start;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j > frac_start {
            end = j;
        }
    }
    if end == int_start {
        return None;
    }
    // `[0-9]*\.?[0-9]+` needs a digit after the optional dot; `5.` reads as `5`.
    let mut k = end;
    if k < b.len() && (b[k] == b'e' || b[k] == b'E') {
        let mut j = k + 1;
        if j < b.len() && (b[j] == b'-' || b[j] == b'+') {
            j += 1;
        }
        let exp_digits = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j > exp_digits {
            k = j;
        }
    }
    let v: f64 = s[..k].parse().ok()?;
    Some((v, &s[k..]))
}

/// Patroni's `parse_bool`: `on/true/yes/1` and `off/false/no/0`, any case; JSON booleans
/// and numbers are first turned into text the way Python's `str()` would.
pub fn parse_bool(value: &serde_json::Value) -> Option<bool> {
    let text = match value {
        serde_json::Value::Bool(true) => "true".to_string(),
        serde_json::Value::Bool(false) => "false".to_string(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.to_ascii_lowercase(),
        _ => return None,
    };
    match text.as_str() {
        "on" | "true" | "yes" | "1" => Some(true),
        "off" | "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// A JSON scalar as Python's `str()` would print it, for `parse_int` on request fields
/// (`{"timeout": 30}` and `{"timeout": "30s"}` are both accepted by Patroni).
pub fn json_scalar_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(true) => Some("True".into()),
        serde_json::Value::Bool(false) => Some("False".into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn query_like_parse_qs() {
        let q = Query::parse("lag=10MB&tag_zone=a+b&empty=&noeq&tag_zone=second&x=%41%zz");
        assert_eq!(q.first("lag"), Some("10MB"));
        assert_eq!(q.first("tag_zone"), Some("a b"));
        assert_eq!(q.first("empty"), None, "blank values are dropped");
        assert_eq!(q.first("noeq"), None);
        assert_eq!(q.first("x"), Some("A%zz"));
        let keys: Vec<_> = q.iter_first().collect();
        assert_eq!(keys, [("lag", "10MB"), ("tag_zone", "a b"), ("x", "A%zz")]);
        assert_eq!(Query::parse(""), Query::default());
        assert_eq!(Query::parse("k=%E2%82%AC").first("k"), Some("€"));
        assert_eq!(Query::parse("k=%FF").first("k"), Some("\u{FFFD}"));
    }

    #[test]
    fn lag_units_as_the_docs_list_them() {
        let b = |s| parse_int(s, BaseUnit::Bytes);
        assert_eq!(b("1048576"), Some(1_048_576));
        assert_eq!(b("1024kB"), Some(1_048_576));
        assert_eq!(b("16kB"), Some(16_384));
        assert_eq!(b("64MB"), Some(67_108_864));
        assert_eq!(b("10MB"), Some(10_485_760));
        assert_eq!(b("1GB"), Some(1_073_741_824));
        assert_eq!(b("1TB"), Some(1_099_511_627_776));
        assert_eq!(b(" 100 B "), Some(100));
        assert_eq!(b("1.5kB"), Some(1536));
        assert_eq!(b(".5MB"), Some(524_288));
        assert_eq!(b("1e3"), Some(1000));
        assert_eq!(b("0x10"), Some(16));
        assert_eq!(b("010"), Some(8), "a leading zero is octal, as in C");
        assert_eq!(b("-5"), Some(-5));
    }

    #[test]
    fn unreadable_numbers_are_none() {
        let b = |s| parse_int(s, BaseUnit::Bytes);
        assert_eq!(b("abc"), None);
        assert_eq!(b("10mb"), None, "units are case-sensitive");
        assert_eq!(b("10 parsecs"), None);
        assert_eq!(b("10min"), None, "a time unit is not a size");
        assert_eq!(b(""), None);
        assert_eq!(b("09"), None, "octal 0 followed by 9 leaves a bad unit");
        assert_eq!(
            b("99999999999999999999999999999999999999999999"),
            Some(i128::MAX)
        );
    }

    #[test]
    fn rounds_half_to_even_like_python() {
        let s = |v| parse_int(v, BaseUnit::Seconds);
        assert_eq!(s("2.5"), Some(2));
        assert_eq!(s("3.5"), Some(4));
        assert_eq!(s("1500ms"), Some(2));
        assert_eq!(s("2500ms"), Some(2));
        assert_eq!(s("5min"), Some(300));
        assert_eq!(s("1h"), Some(3600));
        assert_eq!(s("1d"), Some(86_400));
        assert_eq!(s("30"), Some(30));
        assert_eq!(s("30s"), Some(30));
        assert_eq!(s("1kB"), None);
    }

    #[test]
    fn bools_like_patroni() {
        for t in [json!(true), json!("yes"), json!("ON"), json!(1), json!("1")] {
            assert_eq!(parse_bool(&t), Some(true), "{t}");
        }
        for f in [json!(false), json!("no"), json!("Off"), json!(0)] {
            assert_eq!(parse_bool(&f), Some(false), "{f}");
        }
        for n in [json!(null), json!("maybe"), json!(2), json!([])] {
            assert_eq!(parse_bool(&n), None, "{n}");
        }
    }

    #[test]
    fn json_scalars_as_python_str() {
        assert_eq!(json_scalar_text(&json!(30)).as_deref(), Some("30"));
        assert_eq!(json_scalar_text(&json!(1.5)).as_deref(), Some("1.5"));
        assert_eq!(json_scalar_text(&json!("5min")).as_deref(), Some("5min"));
        assert_eq!(json_scalar_text(&json!(true)).as_deref(), Some("True"));
        assert_eq!(json_scalar_text(&json!(null)), None);
    }
}
