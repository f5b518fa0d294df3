//! The HTML status page: one table per proxy with a FRONTEND row, a row per server and a
//! BACKEND row, like HAProxy's, reloading itself every `stats refresh` seconds.
//!
//! Per server it shows how long it has been in its state and the state with its rise/fall
//! progress (`5s UP`, `2s UP 3/4`, `DOWN 1/2`), the last check and its duration
//! (`L7OK/200 in 1ms`), sessions (current, max, limit, total), bytes in and out, the
//! queue, failed checks, UP→DOWN transitions and total downtime.

use std::fmt::Write;
use std::time::Duration;

use super::{Kind, Row, Snapshot, human_duration};

/// Render the page. `base` is the stats URI (links to `;csv` etc. are made from it);
/// `refresh` reloads the page that often.
pub fn render(snap: &Snapshot, base: &str, refresh: Option<Duration>) -> String {
    let mut h = String::with_capacity(8192);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    if let Some(r) = refresh {
        let _ = writeln!(
            h,
            "<meta http-equiv=\"refresh\" content=\"{}\">",
            r.as_secs().max(1)
        );
    }
    let _ = writeln!(h, "<title>manning proxy on {}</title>", esc(&snap.node));
    h.push_str(STYLE);
    h.push_str("</head><body>\n");
    let _ = write!(
        h,
        "<h1>manning proxy <small>on {} &middot; pid {} &middot; up {}",
        esc(&snap.node),
        snap.pid,
        human_duration(snap.uptime.as_secs())
    );
    if let Some(v) = &snap.version {
        let _ = write!(h, " &middot; version {}", esc(v));
    }
    h.push_str("</small></h1>\n<p class=\"links\">");
    let _ = write!(
        h,
        "<a href=\"{b};csv\">CSV</a> &middot; <a href=\"{b};json\">JSON</a> &middot; <a href=\"/metrics\">Prometheus</a> &middot; <a href=\"{b};up\">UP servers only</a>",
        b = esc(base)
    );
    match refresh {
        Some(r) => {
            let _ = write!(
                h,
                " &middot; refreshes every {}s (<a href=\"{}\">stop</a>)",
                r.as_secs().max(1),
                esc(&format!("{base};norefresh"))
            );
        }
        None => {
            let _ = write!(h, " &middot; <a href=\"{}\">refresh</a>", esc(base));
        }
    }
    h.push_str("</p>\n");
    for p in &snap.proxies {
        let _ = writeln!(h, "<h2>{}</h2>", esc(&p.name));
        h.push_str(TABLE_HEAD);
        for r in &p.rows {
            row(&mut h, r);
        }
        h.push_str("</tbody></table>\n");
    }
    h.push_str(LEGEND);
    h.push_str("</body></html>\n");
    h
}

fn row(h: &mut String, r: &Row) {
    let class = match r.kind {
        Kind::Frontend => "fe",
        Kind::Backend if r.up => "be up",
        Kind::Backend => "be down",
        Kind::Server if r.status == "no check" => "nocheck",
        Kind::Server if r.status.starts_with("UP ") => "going-down",
        Kind::Server if r.status.starts_with("DOWN ") => "going-up",
        Kind::Server if r.up => "up",
        Kind::Server => "down",
    };
    let opt = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
    let _ = write!(h, "<tr class=\"{class}\"><th>{}</th>", esc(&r.svname));
    let _ = write!(h, "<td>{}</td><td>{}</td>", opt(r.qcur), opt(r.qmax));
    let last = match r.lastsess {
        Some(s) if s >= 0 => human_duration(s as u64),
        Some(_) => "never".into(),
        None => String::new(),
    };
    let _ = write!(
        h,
        "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
        r.scur,
        r.smax,
        opt(r.slim),
        r.stot,
        opt(r.lbtot),
        last
    );
    let _ = write!(h, "<td>{}</td><td>{}</td>", r.bin, r.bout);
    let _ = write!(h, "<td>{}</td><td>{}</td>", opt(r.econ), opt(r.wretr));
    let status = match r.lastchg {
        Some(s) if r.kind != Kind::Frontend => format!("{} {}", human_duration(s), r.status),
        _ => r.status.clone(),
    };
    let _ = write!(h, "<td class=\"st\">{}</td>", esc(&status));
    match &r.check {
        Some(c) => {
            let title = if c.info.is_empty() {
                c.status.description().to_string()
            } else {
                format!("{}: {}", c.status.description(), c.info)
            };
            let _ = write!(h, "<td title=\"{}\">{}</td>", esc(&title), esc(&c.summary));
        }
        None => h.push_str("<td></td>"),
    }
    let downtime = r.downtime.map(human_duration).unwrap_or_default();
    let _ = writeln!(
        h,
        "<td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        opt(r.act),
        opt(r.chkfail),
        opt(r.chkdown),
        if r.kind == Kind::Frontend {
            String::new()
        } else {
            downtime
        }
    );
}

/// Escape text for HTML.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

const STYLE: &str = "<style>
body{font:13px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.2em;color:#222}
h1{font-size:1.3em;margin:0 0 .3em}h1 small{font-weight:normal;color:#666;font-size:.75em}
h2{font-size:1.1em;margin:1.2em 0 .3em}
.links{margin:0 0 1em;color:#666}
table{border-collapse:collapse}
th,td{border:1px solid #ccc;padding:2px 7px;text-align:right;white-space:nowrap}
thead th{background:#e8e8f0;text-align:center}
tbody th{text-align:left}
td.st{text-align:left;font-weight:600}
tr.fe,tr.be{background:#eef}
tr.be.down,tr.down{background:#f8c8c8}
tr.up{background:#c8f0c8}
tr.going-down{background:#f8f0a0}
tr.going-up{background:#f8d8a0}
tr.nocheck{background:#e0e8f0}
.legend span{display:inline-block;padding:1px 8px;margin-right:4px;border:1px solid #ccc}
</style>
";

const TABLE_HEAD: &str = "<table><thead>
<tr><th rowspan=\"2\"></th><th colspan=\"2\">Queue</th><th colspan=\"6\">Sessions</th><th colspan=\"2\">Bytes</th><th>Errors</th><th>Warnings</th><th colspan=\"6\">Server</th></tr>
<tr><th>Cur</th><th>Max</th><th>Cur</th><th>Max</th><th>Limit</th><th>Total</th><th>LbTot</th><th>Last</th><th>In</th><th>Out</th><th>Conn</th><th>Retr</th><th>Status</th><th>LastChk</th><th>Act</th><th>Chk</th><th>Dwn</th><th>Dwntme</th></tr>
</thead><tbody>
";

const LEGEND: &str = "<p class=\"legend\"><span class=\"up\" style=\"background:#c8f0c8\">UP</span><span style=\"background:#f8f0a0\">UP, failing checks (UP n/fall)</span><span style=\"background:#f8d8a0\">DOWN, passing checks (DOWN n/rise)</span><span style=\"background:#f8c8c8\">DOWN</span><span style=\"background:#e0e8f0\">no check</span></p>
<p class=\"legend\">Status: time since the last change, then the state. LastChk: the last health check, its HTTP code and duration. Chk: failed checks; Dwn: UP to DOWN transitions; Dwntme: total time DOWN.</p>
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::check::CheckStatus;
    use crate::proxy::stats::testdata::{check, seed_snapshot, server};

    #[test]
    fn shows_states_checks_and_counters() {
        let mut s = seed_snapshot();
        let mut falling = server(
            "worker-03",
            4,
            "UP 3/4",
            true,
            check(CheckStatus::L7Sts, Some(503), "Service Unavailable", 4),
        );
        falling.lastchg = Some(65);
        s.proxies[0].rows.insert(3, falling);
        let html = render(&s, "/", Some(Duration::from_secs(5)));
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
        assert!(html.contains("<td class=\"st\">7s UP</td>"), "{html}");
        assert!(html.contains("<td class=\"st\">7s DOWN</td>"));
        assert!(html.contains("<tr class=\"going-down\"><th>worker-03</th>"));
        assert!(html.contains("<td class=\"st\">1m5s UP 3/4</td>"));
        assert!(html.contains(">L7OK/200 in 1ms</td>"));
        assert!(
            html.contains(
                "title=\"Layer7 wrong status: Service Unavailable\">L7STS/503 in 1ms</td>"
            )
        );
        // sessions cur/max/limit/total for the primary
        assert!(html.contains("<td>3</td><td>5</td><td>128</td><td>42</td>"));
        assert!(html.contains("href=\"/;csv\""));
        assert!(html.contains("version 0.1.0"));
        assert!(!render(&s, "/", None).contains("http-equiv"));
    }

    #[test]
    fn names_are_escaped() {
        let mut s = seed_snapshot();
        s.proxies[0].name = "<script>".into();
        let html = render(&s, "/", None);
        assert!(html.contains("&lt;script&gt;") && !html.contains("<h2><script>"));
    }
}
