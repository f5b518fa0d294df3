//! `/metrics`: the Prometheus text format, with the metric and label names of HAProxy's
//! built-in exporter (`haproxy_server_status{proxy="manning",server="worker-01",state="UP"}`)
//! so dashboards made for HAProxy work.

use std::fmt::Write;

use super::{Kind, Row, Snapshot};
use crate::proxy::check::CheckStatus;

/// How a metric reads a row.
enum Get {
    Int(fn(&Row) -> Option<u64>),
    /// Milliseconds, exported as seconds.
    Ms(fn(&Row) -> Option<u64>),
}

struct Metric {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    get: Get,
}

const fn gauge(name: &'static str, help: &'static str, get: fn(&Row) -> Option<u64>) -> Metric {
    Metric {
        name,
        help,
        kind: "gauge",
        get: Get::Int(get),
    }
}

const fn counter(name: &'static str, help: &'static str, get: fn(&Row) -> Option<u64>) -> Metric {
    Metric {
        name,
        help,
        kind: "counter",
        get: Get::Int(get),
    }
}

const fn seconds(name: &'static str, help: &'static str, get: fn(&Row) -> Option<u64>) -> Metric {
    Metric {
        name,
        help,
        kind: "gauge",
        get: Get::Ms(get),
    }
}

/// Metrics of every kind of row (prefixed `haproxy_frontend_`, `_backend_`, `_server_`).
const COMMON: &[Metric] = &[
    gauge("current_sessions", "Sessions open now.", |r| Some(r.scur)),
    gauge(
        "max_sessions",
        "Most sessions open at once since start.",
        |r| Some(r.smax),
    ),
    gauge("limit_sessions", "Session limit (maxconn).", |r| r.slim),
    counter("sessions_total", "Sessions since start.", |r| Some(r.stot)),
    counter(
        "bytes_in_total",
        "Bytes received from clients since start.",
        |r| Some(r.bin),
    ),
    counter(
        "bytes_out_total",
        "Bytes sent to clients since start.",
        |r| Some(r.bout),
    ),
    gauge(
        "max_session_rate",
        "Most new sessions in one second since start.",
        |r| Some(r.rate_max),
    ),
];

/// Metrics of backend and server rows.
const BACKEND_AND_SERVER: &[Metric] = &[
    gauge(
        "current_queue",
        "Connections waiting for a free server slot now.",
        |r| r.qcur,
    ),
    gauge(
        "max_queue",
        "Most connections waiting at once since start.",
        |r| r.qmax,
    ),
    counter(
        "connection_errors_total",
        "Connections that got no server or failed to connect.",
        |r| r.econ,
    ),
    counter(
        "retry_warnings_total",
        "Connection retries to servers.",
        |r| r.wretr,
    ),
    gauge(
        "weight",
        "Weight (for a backend: of its UP servers).",
        |r| r.weight,
    ),
    counter("check_up_down_total", "Transitions from UP to DOWN.", |r| {
        r.chkdown
    }),
    gauge(
        "check_last_change_seconds",
        "Seconds since the last UP/DOWN change.",
        |r| r.lastchg,
    ),
    counter(
        "downtime_seconds_total",
        "Seconds spent DOWN since start.",
        |r| r.downtime,
    ),
    counter(
        "loadbalanced_total",
        "Times chosen by load balancing.",
        |r| r.lbtot,
    ),
    counter(
        "connection_attempts_total",
        "Connection attempts to servers.",
        |r| r.connect,
    ),
    seconds(
        "queue_time_average_seconds",
        "Average time in the queue over the last 1024 sessions.",
        |r| r.qtime.map(|t| t.0),
    ),
    seconds(
        "connect_time_average_seconds",
        "Average connect time over the last 1024 sessions.",
        |r| r.ctime.map(|t| t.0),
    ),
    seconds(
        "total_time_average_seconds",
        "Average session duration over the last 1024 sessions.",
        |r| r.ttime.map(|t| t.0),
    ),
    seconds(
        "max_queue_time_seconds",
        "Longest time in the queue.",
        |r| r.qtime.map(|t| t.1),
    ),
    seconds("max_connect_time_seconds", "Longest connect time.", |r| {
        r.ctime.map(|t| t.1)
    }),
    seconds("max_total_time_seconds", "Longest session.", |r| {
        r.ttime.map(|t| t.1)
    }),
];

const BACKEND_ONLY: &[Metric] = &[
    gauge("active_servers", "Servers UP now.", |r| r.act),
    gauge(
        "backup_servers",
        "Backup servers UP now (manning has none).",
        |r| r.bck,
    ),
];

const SERVER_ONLY: &[Metric] = &[
    counter(
        "check_failures_total",
        "Failed health checks while not fully DOWN.",
        |r| r.chkfail,
    ),
    gauge("check_code", "HTTP status of the last health check.", |r| {
        r.check.as_ref().and_then(|c| c.code).map(u64::from)
    }),
    seconds(
        "check_duration_seconds",
        "Duration of the last health check.",
        |r| r.check.as_ref().map(|c| c.duration_ms),
    ),
];

/// Render the snapshot as Prometheus text.
pub fn render(snap: &Snapshot) -> String {
    let mut out = String::new();
    let rows: Vec<&Row> = snap.proxies.iter().flat_map(|p| &p.rows).collect();
    for (kind, prefix) in [
        (Kind::Frontend, "haproxy_frontend_"),
        (Kind::Backend, "haproxy_backend_"),
        (Kind::Server, "haproxy_server_"),
    ] {
        let of_kind: Vec<&Row> = rows.iter().copied().filter(|r| r.kind == kind).collect();
        if of_kind.is_empty() {
            continue;
        }
        let groups: &[&[Metric]] = match kind {
            Kind::Frontend => &[COMMON],
            Kind::Backend => &[COMMON, BACKEND_AND_SERVER, BACKEND_ONLY],
            Kind::Server => &[COMMON, BACKEND_AND_SERVER, SERVER_ONLY],
        };
        for m in groups.iter().flat_map(|g| g.iter()) {
            let lines: Vec<String> = of_kind
                .iter()
                .filter_map(|r| {
                    let v = match m.get {
                        Get::Int(f) => f(r)?.to_string(),
                        Get::Ms(f) => format!("{:.3}", f(r)? as f64 / 1000.0),
                    };
                    Some(format!("{prefix}{}{{{}}} {v}\n", m.name, labels(r, None)))
                })
                .collect();
            if lines.is_empty() {
                continue;
            }
            let _ = writeln!(out, "# HELP {prefix}{} {}", m.name, m.help);
            let _ = writeln!(out, "# TYPE {prefix}{} {}", m.name, m.kind);
            out.extend(lines);
        }
        // State as one series per possible state, the current one at 1.
        let _ = writeln!(
            out,
            "# HELP {prefix}status Current state: 1 for the state it is in, 0 for the others."
        );
        let _ = writeln!(out, "# TYPE {prefix}status gauge");
        let states: &[&str] = match kind {
            Kind::Server => &["DOWN", "UP", "MAINT", "DRAIN", "NOLB"],
            _ => &["DOWN", "UP"],
        };
        for r in &of_kind {
            for s in states {
                let on = (*s == "UP") == r.up && (*s == "UP" || *s == "DOWN");
                let _ = writeln!(
                    out,
                    "{prefix}status{{{}}} {}",
                    labels(r, Some(s)),
                    u8::from(on)
                );
            }
        }
        if kind == Kind::Server {
            let _ = writeln!(
                out,
                "# HELP haproxy_server_check_status Last health check: 1 for its status, 0 for the others."
            );
            let _ = writeln!(out, "# TYPE haproxy_server_check_status gauge");
            for r in of_kind.iter().filter(|r| r.check.is_some()) {
                let current = r.check.as_ref().map(|c| c.status);
                for s in CheckStatus::ALL {
                    let _ = writeln!(
                        out,
                        "haproxy_server_check_status{{{}}} {}",
                        labels(r, Some(s.name())),
                        u8::from(current == Some(s))
                    );
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP haproxy_process_uptime_seconds Seconds since the proxy started."
    );
    let _ = writeln!(out, "# TYPE haproxy_process_uptime_seconds gauge");
    let _ = writeln!(
        out,
        "haproxy_process_uptime_seconds {}",
        snap.uptime.as_secs()
    );
    out
}

fn labels(r: &Row, state: Option<&str>) -> String {
    let mut l = format!("proxy=\"{}\"", escape(&r.pxname));
    if r.kind == Kind::Server {
        let _ = write!(l, ",server=\"{}\"", escape(&r.svname));
    }
    if let Some(s) = state {
        let _ = write!(l, ",state=\"{s}\"");
    }
    l
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::stats::testdata::seed_snapshot;

    #[test]
    fn exporter_names_and_values() {
        let m = render(&seed_snapshot());
        for line in [
            "haproxy_server_status{proxy=\"manning\",server=\"manager\",state=\"UP\"} 1",
            "haproxy_server_status{proxy=\"manning\",server=\"manager\",state=\"DOWN\"} 0",
            "haproxy_server_status{proxy=\"manning\",server=\"worker-01\",state=\"DOWN\"} 1",
            "haproxy_server_status{proxy=\"manning\",server=\"worker-01\",state=\"MAINT\"} 0",
            "haproxy_server_check_status{proxy=\"manning\",server=\"worker-01\",state=\"L7STS\"} 1",
            "haproxy_server_check_status{proxy=\"manning\",server=\"worker-01\",state=\"L7OK\"} 0",
            "haproxy_server_current_sessions{proxy=\"manning\",server=\"manager\"} 3",
            "haproxy_server_limit_sessions{proxy=\"manning\",server=\"manager\"} 128",
            "haproxy_server_check_code{proxy=\"manning\",server=\"worker-01\"} 503",
            "haproxy_server_check_duration_seconds{proxy=\"manning\",server=\"manager\"} 0.001",
            "haproxy_backend_active_servers{proxy=\"manning\"} 1",
            "haproxy_backend_status{proxy=\"manning\",state=\"UP\"} 1",
            "haproxy_frontend_limit_sessions{proxy=\"manning\"} 384",
            "haproxy_frontend_bytes_out_total{proxy=\"manning\"} 20000",
            "# TYPE haproxy_server_sessions_total counter",
            "haproxy_process_uptime_seconds 3725",
        ] {
            assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
        }
        // Every sample line is `name{labels} number`.
        for l in m.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = l.rsplit_once(' ').unwrap();
            assert!(v.parse::<f64>().is_ok(), "{l}");
        }
    }
}
