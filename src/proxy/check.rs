//! The health-check protocol, without IO: the request to send, how to read the answer,
//! and the check statuses HAProxy reports (`L4OK`, `L7STS`, ...).
//!
//! Patroni answers HAProxy's `OPTIONS /` with a bare status line and no headers
//! (`HTTP/1.0 200 OK\r\n\r\n`, then close), so only the status line is needed: the answer is
//! judged as soon as its first line is complete, and an answer cut off after a status line
//! without its line ending still counts.

use std::fmt;
use std::time::Duration;

use super::haproxy_cfg::HttpCheck;

/// Check statuses, named and described as in HAProxy's stats and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    /// Not checked yet.
    Ini,
    /// TCP connect check passed.
    L4Ok,
    /// Connecting (or resolving the name) timed out.
    L4Tout,
    /// Connecting failed: refused, unreachable, name not resolvable, reset.
    L4Con,
    /// HTTP check passed.
    L7Ok,
    /// HTTP answer with a status the rule rejects.
    L7Sts,
    /// Not an HTTP answer, or an empty one.
    L7Rsp,
    /// No complete status line before the check timeout.
    L7Tout,
    /// A socket error after connecting.
    SockErr,
}

impl CheckStatus {
    /// The short name (`L7OK`).
    pub fn name(self) -> &'static str {
        match self {
            CheckStatus::Ini => "INI",
            CheckStatus::L4Ok => "L4OK",
            CheckStatus::L4Tout => "L4TOUT",
            CheckStatus::L4Con => "L4CON",
            CheckStatus::L7Ok => "L7OK",
            CheckStatus::L7Sts => "L7STS",
            CheckStatus::L7Rsp => "L7RSP",
            CheckStatus::L7Tout => "L7TOUT",
            CheckStatus::SockErr => "SOCKERR",
        }
    }

    /// The description shown in the CSV's `check_desc` column (HAProxy's wording).
    pub fn description(self) -> &'static str {
        match self {
            CheckStatus::Ini => "Initializing",
            CheckStatus::L4Ok => "Layer4 check passed",
            CheckStatus::L4Tout => "Layer4 timeout",
            CheckStatus::L4Con => "Layer4 connection problem",
            CheckStatus::L7Ok => "Layer7 check passed",
            CheckStatus::L7Sts => "Layer7 wrong status",
            CheckStatus::L7Rsp => "Layer7 invalid response",
            CheckStatus::L7Tout => "Layer7 timeout",
            CheckStatus::SockErr => "Socket error",
        }
    }

    /// Did the check pass?
    pub fn passed(self) -> bool {
        matches!(self, CheckStatus::L4Ok | CheckStatus::L7Ok)
    }

    /// Every status, for renderers that list them all (Prometheus).
    pub const ALL: [CheckStatus; 9] = [
        CheckStatus::Ini,
        CheckStatus::L4Ok,
        CheckStatus::L4Tout,
        CheckStatus::L4Con,
        CheckStatus::L7Ok,
        CheckStatus::L7Sts,
        CheckStatus::L7Rsp,
        CheckStatus::L7Tout,
        CheckStatus::SockErr,
    ];
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub status: CheckStatus,
    /// The HTTP status code, when an answer was read.
    pub code: Option<u16>,
    /// Why it failed, for people: the reason phrase, or the socket error
    /// (HAProxy's `last_chk` column). Empty when it passed.
    pub info: String,
    /// From the start of the check (name resolution included) to its result.
    pub duration: Duration,
}

impl CheckResult {
    /// For tests: a passed (`L7OK`, 200) or failed (`L7STS`, 503) HTTP check.
    #[cfg(test)]
    pub fn http(pass: bool, duration: Duration) -> CheckResult {
        CheckResult {
            status: if pass {
                CheckStatus::L7Ok
            } else {
                CheckStatus::L7Sts
            },
            code: Some(if pass { 200 } else { 503 }),
            info: String::new(),
            duration,
        }
    }

    /// A result that has not happened yet (before the first check).
    pub fn initial() -> CheckResult {
        CheckResult {
            status: CheckStatus::Ini,
            code: None,
            info: String::new(),
            duration: Duration::ZERO,
        }
    }

    /// `L7OK/200 in 1ms`, `L4CON in 0ms (Connection refused)`: as HAProxy's stats page
    /// shows it, with the reason for failures.
    pub fn summary(&self) -> String {
        let mut s = self.status.name().to_string();
        if let Some(c) = self.code {
            s.push_str(&format!("/{c}"));
        }
        if self.status != CheckStatus::Ini {
            s.push_str(&format!(" in {}ms", self.duration.as_millis()));
        }
        if !self.info.is_empty() && !self.status.passed() {
            s.push_str(&format!(" ({})", self.info));
        }
        s
    }
}

/// The request bytes for an HTTP check: `METHOD URI VERSION\r\n\r\n`. Header lines that an
/// old-style config appended to the version (`HTTP/1.1\r\nHost:\ db`) are kept.
pub fn request(c: &HttpCheck) -> Vec<u8> {
    format!("{} {} {}\r\n\r\n", c.method, c.uri, c.version).into_bytes()
}

/// The longest status line we wait for; anything longer is not an HTTP answer.
pub const MAX_STATUS_LINE: usize = 4096;

/// What the bytes read so far say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The first line is not complete yet: read more.
    Incomplete,
    /// A status line.
    Status { code: u16, reason: String },
    /// Not an HTTP status line.
    Invalid(String),
}

/// Parse the start of a check's answer. `eof` says the peer closed the connection, so what
/// we have is all there is.
pub fn parse_answer(buf: &[u8], eof: bool) -> Answer {
    let line = match buf.iter().position(|&b| b == b'\n') {
        Some(i) => &buf[..i],
        None if eof => buf,
        None if buf.len() > MAX_STATUS_LINE => {
            return Answer::Invalid("status line too long".into());
        }
        None => {
            // Fail early on bytes that cannot start an HTTP answer.
            let n = buf.len().min(5);
            if buf[..n] != b"HTTP/"[..n] {
                return Answer::Invalid(format!("not HTTP: {}", printable(buf)));
            }
            return Answer::Incomplete;
        }
    };
    if line.is_empty() && eof {
        return Answer::Invalid("empty response".into());
    }
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = String::from_utf8_lossy(line);
    let mut parts = text.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    let reason = parts.next().unwrap_or("").trim().to_string();
    let version_ok = version
        .strip_prefix("HTTP/")
        .is_some_and(|v| matches!(v, "1.0" | "1.1" | "0.9" | "2" | "2.0"));
    let code = match code.parse::<u16>() {
        Ok(c) if code.len() == 3 && (100..=599).contains(&c) => c,
        _ => return Answer::Invalid(format!("not an HTTP status line: {}", printable(line))),
    };
    if !version_ok {
        return Answer::Invalid(format!("not an HTTP status line: {}", printable(line)));
    }
    Answer::Status { code, reason }
}

/// Judge a status code: the `http-check expect` rule, or 2xx/3xx without one.
pub fn judge(code: u16, expect: Option<&super::haproxy_cfg::StatusExpect>) -> bool {
    match expect {
        Some(e) => e.passes(code),
        None => (200..400).contains(&code),
    }
}

/// The result for a complete HTTP answer.
pub fn http_result(answer: &Answer, c: &HttpCheck, duration: Duration) -> Option<CheckResult> {
    match answer {
        Answer::Incomplete => None,
        Answer::Status { code, reason } => {
            let pass = judge(*code, c.expect.as_ref());
            Some(CheckResult {
                status: if pass {
                    CheckStatus::L7Ok
                } else {
                    CheckStatus::L7Sts
                },
                code: Some(*code),
                info: if pass { String::new() } else { reason.clone() },
                duration,
            })
        }
        Answer::Invalid(why) => Some(CheckResult {
            status: CheckStatus::L7Rsp,
            code: None,
            info: why.clone(),
            duration,
        }),
    }
}

fn printable(b: &[u8]) -> String {
    let s: String = String::from_utf8_lossy(&b[..b.len().min(40)])
        .chars()
        .map(|c| if c.is_control() { '.' } else { c })
        .collect();
    format!("{s:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::haproxy_cfg::StatusExpect;

    fn seed_check() -> HttpCheck {
        HttpCheck {
            expect: Some(StatusExpect {
                negate: false,
                ranges: vec![(200, 200)],
            }),
            ..HttpCheck::default()
        }
    }

    #[test]
    fn default_request_is_what_haproxy_sends() {
        // Captured from HAProxy 2.6 with `option httpchk`: exactly these bytes.
        assert_eq!(
            request(&HttpCheck::default()),
            b"OPTIONS / HTTP/1.0\r\n\r\n"
        );
        let c = HttpCheck {
            method: "HEAD".into(),
            uri: "/replica?lag=1MB".into(),
            version: "HTTP/1.1\r\nHost: db".into(),
            expect: None,
        };
        assert_eq!(
            request(&c),
            b"HEAD /replica?lag=1MB HTTP/1.1\r\nHost: db\r\n\r\n"
        );
    }

    #[test]
    fn patroni_bare_status_lines() {
        let ms = Duration::from_millis(2);
        for (bytes, eof, status, code) in [
            (
                &b"HTTP/1.0 200 OK\r\n\r\n"[..],
                true,
                CheckStatus::L7Ok,
                Some(200),
            ),
            (
                b"HTTP/1.0 503 Service Unavailable\r\n\r\n",
                true,
                CheckStatus::L7Sts,
                Some(503),
            ),
            // Judged as soon as the first line is complete, headers or not.
            (b"HTTP/1.1 200 OK\r\n", false, CheckStatus::L7Ok, Some(200)),
            (
                b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{}",
                true,
                CheckStatus::L7Ok,
                Some(200),
            ),
            // A status line without its line ending, then close.
            (b"HTTP/1.0 200", true, CheckStatus::L7Ok, Some(200)),
            (
                b"HTTP/1.0 204 No Content\r\n",
                false,
                CheckStatus::L7Sts,
                Some(204),
            ),
            (b"", true, CheckStatus::L7Rsp, None),
            (b"SSH-2.0-OpenSSH\r\n", false, CheckStatus::L7Rsp, None),
            (b"HTTP/1.0 2000 OK\r\n", false, CheckStatus::L7Rsp, None),
            (b"HTTP/1.0 abc OK\r\n", true, CheckStatus::L7Rsp, None),
        ] {
            let r = http_result(&parse_answer(bytes, eof), &seed_check(), ms)
                .unwrap_or_else(|| panic!("{bytes:?} should be complete"));
            assert_eq!((r.status, r.code), (status, code), "{bytes:?}");
        }
        assert_eq!(
            http_result(
                &parse_answer(b"HTTP/1.0 503 Service Unavailable\r\n", false),
                &seed_check(),
                ms
            )
            .unwrap()
            .info,
            "Service Unavailable"
        );
    }

    #[test]
    fn incomplete_until_the_line_ends() {
        assert_eq!(parse_answer(b"", false), Answer::Incomplete);
        assert_eq!(parse_answer(b"HTT", false), Answer::Incomplete);
        assert_eq!(parse_answer(b"HTTP/1.0 20", false), Answer::Incomplete);
        assert!(matches!(parse_answer(b"XYZ", false), Answer::Invalid(_)));
        let long = [b'H'; MAX_STATUS_LINE + 1];
        assert!(matches!(parse_answer(&long, false), Answer::Invalid(_)));
    }

    #[test]
    fn default_rule_is_2xx_and_3xx() {
        assert!(judge(200, None) && judge(302, None) && judge(399, None));
        assert!(!judge(404, None) && !judge(503, None) && !judge(101, None));
    }

    #[test]
    fn summaries_read_like_haproxys_page() {
        let r = CheckResult {
            status: CheckStatus::L7Ok,
            code: Some(200),
            info: String::new(),
            duration: Duration::from_millis(1),
        };
        assert_eq!(r.summary(), "L7OK/200 in 1ms");
        let r = CheckResult {
            status: CheckStatus::L4Con,
            code: None,
            info: "Connection refused".into(),
            duration: Duration::ZERO,
        };
        assert_eq!(r.summary(), "L4CON in 0ms (Connection refused)");
        assert_eq!(CheckResult::initial().summary(), "INI");
    }
}
