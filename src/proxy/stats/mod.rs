//! The status page: a snapshot of every frontend, server and backend as rows with
//! HAProxy's field names, and pure renderers over it.
//!
//! - [`csv`]: `;csv`, HAProxy 2.6's 129 columns in their order, so scrapers keep working.
//! - [`html`]: the human page (auto-refresh), per server: state and counter (`UP 3/4`),
//!   last check and its duration, sessions, bytes, queue, downtime, time since last change.
//! - [`json`]: `;json`, HAProxy's typed-field layout.
//! - [`prometheus`]: `/metrics`, named as HAProxy's built-in exporter names them.
//! - [`http`]: the HTTP server on the stats `bind`s (basic auth, URL modifiers).
//!
//! Columns manning has no data for (compression, HTTP responses, TLS, ...) are left empty,
//! never filled with made-up zeros.

pub mod csv;
pub mod fields;
pub mod html;
pub mod http;
pub mod json;
pub mod prometheus;

use std::time::Duration;

use super::backend::BackendStats;
use super::check::CheckStatus;
use super::counters::Counters;

/// Which kind of row (HAProxy's `type` column: 0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Frontend,
    Backend,
    Server,
}

impl Kind {
    /// The `type` column.
    pub fn type_code(self) -> u64 {
        match self {
            Kind::Frontend => 0,
            Kind::Backend => 1,
            Kind::Server => 2,
        }
    }

    /// The JSON `objType`.
    pub fn obj_type(self) -> &'static str {
        match self {
            Kind::Frontend => "Frontend",
            Kind::Backend => "Backend",
            Kind::Server => "Server",
        }
    }
}

/// The last check of a checked server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckView {
    pub status: CheckStatus,
    pub code: Option<u16>,
    pub duration_ms: u64,
    /// Why it failed (reason phrase or socket error); empty when it passed.
    pub info: String,
    pub rise: u32,
    pub fall: u32,
    pub health: u32,
    /// `L7OK/200 in 1ms` as the page shows it.
    pub summary: String,
}

/// One row: a frontend, a server or a backend. `None` fields render empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub kind: Kind,
    pub pxname: String,
    pub svname: String,
    /// Proxy id (`iid`) and server id (`sid`, 0 for frontend and backend rows).
    pub iid: u32,
    pub sid: u32,
    pub qcur: Option<u64>,
    pub qmax: Option<u64>,
    pub scur: u64,
    pub smax: u64,
    pub slim: Option<u64>,
    pub stot: u64,
    pub bin: u64,
    pub bout: u64,
    pub econ: Option<u64>,
    pub wretr: Option<u64>,
    /// `UP`, `DOWN`, `UP 3/4`, `DOWN 1/2`, `no check`, `OPEN`, `STOP`.
    pub status: String,
    /// UP in the routing sense (for colours and Prometheus' state label).
    pub up: bool,
    pub weight: Option<u64>,
    pub act: Option<u64>,
    pub bck: Option<u64>,
    pub chkfail: Option<u64>,
    pub chkdown: Option<u64>,
    /// Seconds since the last UP/DOWN change.
    pub lastchg: Option<u64>,
    /// Total seconds DOWN.
    pub downtime: Option<u64>,
    pub lbtot: Option<u64>,
    pub rate: u64,
    pub rate_max: u64,
    pub check: Option<CheckView>,
    /// Seconds since the last session (-1: never).
    pub lastsess: Option<i64>,
    /// Averages and maxima over the last 1024 sessions, in ms.
    pub qtime: Option<(u64, u64)>,
    pub ctime: Option<(u64, u64)>,
    pub ttime: Option<(u64, u64)>,
    /// The server's address as last resolved (`host:port` until resolved).
    pub addr: Option<String>,
    pub connect: Option<u64>,
}

impl Row {
    fn base(kind: Kind, pxname: &str, svname: &str, iid: u32, sid: u32, c: &Counters) -> Row {
        Row {
            kind,
            pxname: pxname.to_string(),
            svname: svname.to_string(),
            iid,
            sid,
            qcur: None,
            qmax: None,
            scur: c.scur,
            smax: c.smax,
            slim: None,
            stot: c.stot,
            bin: c.bin,
            bout: c.bout,
            econ: None,
            wretr: None,
            status: String::new(),
            up: true,
            weight: None,
            act: None,
            bck: None,
            chkfail: None,
            chkdown: None,
            lastchg: None,
            downtime: None,
            lbtot: None,
            rate: 0,
            rate_max: c.rate_max,
            check: None,
            lastsess: None,
            qtime: None,
            ctime: None,
            ttime: None,
            addr: None,
            connect: None,
        }
    }
}

/// A frontend's numbers, as the snapshot needs them.
#[derive(Debug, Clone)]
pub struct FrontendStats {
    pub name: String,
    pub id: u32,
    pub slim: u64,
    pub counters: Counters,
    /// Still accepting.
    pub open: bool,
    /// Sessions per second now.
    pub rate: u64,
}

/// One proxy's rows: FRONTEND, its servers, BACKEND (HAProxy's order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    pub name: String,
    pub rows: Vec<Row>,
}

/// Everything a renderer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub proxies: Vec<Proxy>,
    pub pid: u32,
    pub uptime: Duration,
    /// `None` with `stats hide-version`.
    pub version: Option<String>,
    /// Host name of this node.
    pub node: String,
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

/// Build one proxy's rows from its frontend and backend. `be_rate` and the servers'
/// rates are sessions per second now (computed by the caller, who has the clock).
pub fn proxy_rows(
    fe: &FrontendStats,
    be: &BackendStats,
    be_rate: u64,
    server_rates: &[u64],
    now_secs_since: impl Fn(Option<tokio::time::Instant>) -> Option<i64>,
) -> Proxy {
    let mut rows = Vec::new();
    let mut f = Row::base(Kind::Frontend, &fe.name, "FRONTEND", fe.id, 0, &fe.counters);
    f.slim = Some(fe.slim);
    f.status = if fe.open { "OPEN" } else { "STOP" }.into();
    f.up = fe.open;
    f.rate = fe.rate;
    rows.push(f);
    for (i, s) in be.servers.iter().enumerate() {
        let c = &s.counters;
        let mut r = Row::base(Kind::Server, &be.name, &s.spec.name, be.id, s.spec.id, c);
        r.qcur = Some(0);
        r.qmax = Some(0);
        r.slim = (s.spec.maxconn > 0).then_some(u64::from(s.spec.maxconn));
        r.econ = Some(c.econ);
        r.wretr = Some(c.wretr);
        r.up = s.up;
        r.weight = Some(1);
        r.act = Some(1);
        r.bck = Some(0);
        r.lastchg = Some(secs(s.since_change));
        r.downtime = Some(secs(s.downtime));
        r.lbtot = Some(c.lbtot);
        r.rate = server_rates.get(i).copied().unwrap_or(0);
        r.lastsess = Some(now_secs_since(c.last_session).unwrap_or(-1));
        r.qtime = Some((c.qtime.get(), c.qtime.max));
        r.ctime = Some((c.ctime.get(), c.ctime.max));
        r.ttime = Some((c.ttime.get(), c.ttime.max));
        r.connect = Some(c.connect);
        r.addr = Some(match s.ip {
            Some(std::net::IpAddr::V6(ip)) => format!("[{ip}]:{}", s.spec.port),
            Some(ip) => format!("{ip}:{}", s.spec.port),
            None => format!("{}:{}", s.spec.host, s.spec.port),
        });
        if s.spec.check {
            r.status = s.health.status_text(s.up);
            r.chkfail = Some(s.chkfail);
            r.chkdown = Some(s.chkdown);
            r.check = Some(CheckView {
                status: s.last_check.status,
                code: s.last_check.code,
                duration_ms: s.last_check.duration.as_millis() as u64,
                info: s.last_check.info.clone(),
                rise: s.health.rise,
                fall: s.health.fall,
                health: s.health.health,
                summary: s.last_check.summary(),
            });
        } else {
            r.status = if s.up { "no check" } else { "DOWN" }.into();
        }
        rows.push(r);
    }
    let c = &be.counters;
    let mut b = Row::base(Kind::Backend, &be.name, "BACKEND", be.id, 0, c);
    b.qcur = Some(c.qcur);
    b.qmax = Some(c.qmax);
    // Connection errors: the backend's own (no server, queue timeout) plus its servers'.
    b.econ = Some(c.econ);
    b.wretr = Some(c.wretr);
    b.status = if be.up { "UP" } else { "DOWN" }.into();
    b.up = be.up;
    b.weight = Some(u64::from(be.active));
    b.act = Some(u64::from(be.active));
    b.bck = Some(0);
    b.chkdown = Some(be.chkdown);
    b.lastchg = Some(secs(be.since_change));
    b.downtime = Some(secs(be.downtime));
    b.lbtot = Some(c.lbtot);
    b.rate = be_rate;
    b.lastsess = Some(now_secs_since(c.last_session).unwrap_or(-1));
    b.qtime = Some((c.qtime.get(), c.qtime.max));
    b.ctime = Some((c.ctime.get(), c.ctime.max));
    b.ttime = Some((c.ttime.get(), c.ttime.max));
    b.connect = Some(c.connect);
    rows.push(b);
    Proxy {
        name: be.name.clone(),
        rows,
    }
}

/// Keep only what `;up` asks for: servers that are UP (frontend and backend rows stay).
pub fn only_up(mut snap: Snapshot) -> Snapshot {
    for p in &mut snap.proxies {
        p.rows.retain(|r| r.kind != Kind::Server || r.up);
    }
    snap
}

/// `1d2h`, `3h4m`, `5m6s`, `7s`: HAProxy's compact durations on the HTML page.
pub fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
pub(crate) mod testdata {
    //! A snapshot shaped like the seed's proxy: the primary UP, one replica DOWN on a 503,
    //! one replica whose name does not resolve, plus a server going down.
    use super::*;

    pub fn server(name: &str, sid: u32, status: &str, up: bool, check: CheckView) -> Row {
        let c = Counters::default();
        let mut r = Row::base(Kind::Server, "manning", name, 2, sid, &c);
        r.qcur = Some(0);
        r.qmax = Some(0);
        r.slim = Some(128);
        r.econ = Some(0);
        r.wretr = Some(0);
        r.status = status.into();
        r.up = up;
        r.weight = Some(1);
        r.act = Some(1);
        r.bck = Some(0);
        r.chkfail = Some(if up { 0 } else { 1 });
        r.chkdown = Some(if up { 0 } else { 1 });
        r.lastchg = Some(7);
        r.downtime = Some(if up { 0 } else { 7 });
        r.lbtot = Some(0);
        r.lastsess = Some(-1);
        r.qtime = Some((0, 0));
        r.ctime = Some((0, 0));
        r.ttime = Some((0, 0));
        r.connect = Some(0);
        r.addr = Some(format!("10.0.0.{sid}:15432"));
        r.check = Some(check);
        r
    }

    pub fn check(status: CheckStatus, code: Option<u16>, info: &str, health: u32) -> CheckView {
        CheckView {
            status,
            code,
            duration_ms: 1,
            info: info.into(),
            rise: 2,
            fall: 4,
            health,
            summary: format!(
                "{}{} in 1ms",
                status.name(),
                code.map(|c| format!("/{c}")).unwrap_or_default()
            ),
        }
    }

    pub fn seed_snapshot() -> Snapshot {
        let mut fe = Row::base(
            Kind::Frontend,
            "manning",
            "FRONTEND",
            2,
            0,
            &Counters::default(),
        );
        fe.slim = Some(384);
        fe.status = "OPEN".into();
        fe.scur = 3;
        fe.smax = 5;
        fe.stot = 42;
        fe.bin = 1000;
        fe.bout = 20000;
        let mut primary = server(
            "manager",
            1,
            "UP",
            true,
            check(CheckStatus::L7Ok, Some(200), "", 5),
        );
        primary.scur = 3;
        primary.smax = 5;
        primary.stot = 42;
        primary.bin = 1000;
        primary.bout = 20000;
        primary.lastsess = Some(2);
        let replica = server(
            "worker-01",
            2,
            "DOWN",
            false,
            check(CheckStatus::L7Sts, Some(503), "Service Unavailable", 0),
        );
        let mut missing = server(
            "worker-02",
            3,
            "DOWN",
            false,
            check(
                CheckStatus::L4Con,
                None,
                "DNS resolution failed: Name or service not known",
                0,
            ),
        );
        missing.addr = Some("worker-02.patroni.host:15432".into());
        let mut be = Row::base(
            Kind::Backend,
            "manning",
            "BACKEND",
            2,
            0,
            &Counters::default(),
        );
        be.qcur = Some(0);
        be.qmax = Some(1);
        be.econ = Some(0);
        be.wretr = Some(0);
        be.status = "UP".into();
        be.weight = Some(1);
        be.act = Some(1);
        be.bck = Some(0);
        be.chkdown = Some(0);
        be.lastchg = Some(8);
        be.downtime = Some(0);
        be.lbtot = Some(42);
        be.scur = 3;
        be.smax = 5;
        be.stot = 42;
        be.lastsess = Some(2);
        Snapshot {
            proxies: vec![Proxy {
                name: "manning".into(),
                rows: vec![fe, primary, replica, missing, be],
            }],
            pid: 1,
            uptime: Duration::from_secs(3725),
            version: Some("0.1.0".into()),
            node: "node-1".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_durations() {
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(59), "59s");
        assert_eq!(human_duration(61), "1m1s");
        assert_eq!(human_duration(3725), "1h2m");
        assert_eq!(human_duration(90_000), "1d1h");
    }

    #[test]
    fn up_filter_keeps_frontend_and_backend() {
        let s = only_up(testdata::seed_snapshot());
        let names: Vec<_> = s.proxies[0]
            .rows
            .iter()
            .map(|r| r.svname.as_str())
            .collect();
        assert_eq!(names, ["FRONTEND", "manager", "BACKEND"]);
    }
}
