//! `manning proxy` end to end: the real binary, real PostgreSQL servers from the harness,
//! and a [`StatusResponder`] per server standing in for its member's REST API, whose answer
//! the tests flip between 200 and 503.
//!
//! Timings use short check intervals (`inter 200ms`); a "server" is identified by asking
//! PostgreSQL for its own port (`inet_server_port()`).

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::*;

/// The seed's haproxy.cfg, byte for byte (seeds/000_813f6dbf46d82761.txt).
const SEED_CFG: &str = include_str!("fixtures/haproxy/seed-haproxy.cfg");

/// A running `manning proxy` with its config and log in a temp dir; killed on drop.
struct ProxyProc {
    proc: Proc,
    dir: tempfile::TempDir,
    stats: String,
    port: u16,
}

impl ProxyProc {
    /// Start the proxy with `listen_body` (bind, checks and servers) under the seed's
    /// global and defaults sections, a TCP bind on a free port, and a stats page.
    fn start(defaults_extra: &str, listen_body: &str, stats_extra: &str) -> ProxyProc {
        let dir = tempfile::Builder::new()
            .prefix("manning-proxy-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let stats_port = free_port();
        let cfg = format!(
            "global\n    maxconn 384\n\ndefaults\n    log global\n    mode tcp\n    retries 2\n    timeout client 30m\n    timeout connect 4s\n    timeout server 30m\n    timeout check 5s\n{defaults_extra}\n\
             listen stats\n    mode http\n    bind 127.0.0.1:{stats_port}\n    stats enable\n    stats uri /\n{stats_extra}\n\
             listen manning\n    bind 127.0.0.1:{port}\n{listen_body}\n"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, cfg).expect("write cfg");
        let log = std::fs::File::create(dir.path().join("proxy.log")).expect("log");
        let child = Command::new(manning_bin())
            .args([
                "--log-level",
                "info,manning::proxy::session=debug",
                "proxy",
                "-f",
            ])
            .arg(&path)
            .args(["--shutdown-grace", "300ms"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("spawn manning proxy");
        let p = ProxyProc {
            proc: Proc {
                child,
                name: "manning proxy".into(),
            },
            dir,
            stats: format!("127.0.0.1:{stats_port}"),
            port,
        };
        let stats = p.stats.clone();
        wait_for("the proxy's status page", Duration::from_secs(10), || {
            // 401 when `stats auth` is set: the page is up either way.
            http_get(&stats, "/;csv")
                .ok()
                .filter(|(s, _)| *s == 200 || *s == 401)
        });
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default()
    }

    /// The CSV rows, by `svname`, as maps from column name to value.
    fn csv(&self) -> HashMap<String, HashMap<String, String>> {
        let (status, body) = http_get(&self.stats, "/;csv").expect("GET /;csv");
        assert_eq!(status, 200);
        parse_csv(&body)
    }

    fn field(&self, sv: &str, col: &str) -> String {
        self.csv()
            .get(sv)
            .and_then(|r| r.get(col))
            .cloned()
            .unwrap_or_else(|| panic!("no {sv}/{col} in the CSV"))
    }

    /// Wait until server `sv`'s `status` column is `want`.
    fn wait_status(&self, sv: &str, want: &str, timeout: Duration) {
        self.wait_field(sv, "status", want, timeout);
    }

    fn wait_field(&self, sv: &str, col: &str, want: &str, timeout: Duration) {
        wait_for(&format!("{sv} {col} to be {want}"), timeout, || {
            (self.field(sv, col) == want).then_some(())
        });
    }

    /// Ask through the proxy which PostgreSQL answers.
    fn which(&self) -> Result<u16, String> {
        Postgres::psql_at("127.0.0.1", self.port, "select inet_server_port()")
            .and_then(|s| s.parse().map_err(|e| format!("{e}: {s}")))
    }

    /// SIGTERM and wait for the exit status.
    fn terminate(mut self) -> (std::process::ExitStatus, String) {
        self.proc.signal(Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(st)) = self.proc.child.try_wait() {
                return (st, self.log());
            }
            assert!(Instant::now() < deadline, "proxy did not exit on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn parse_csv(body: &str) -> HashMap<String, HashMap<String, String>> {
    let mut lines = body.lines();
    let header: Vec<&str> = lines
        .next()
        .expect("header")
        .trim_start_matches("# ")
        .trim_end_matches(',')
        .split(',')
        .collect();
    let mut rows = HashMap::new();
    for l in lines {
        let cells: Vec<&str> = l.trim_end_matches(',').split(',').collect();
        let row: HashMap<String, String> = header
            .iter()
            .zip(cells.iter().chain(std::iter::repeat(&"")))
            .map(|(h, c)| (h.to_string(), c.to_string()))
            .collect();
        rows.insert(row["svname"].clone(), row);
    }
    rows
}

fn server_line(name: &str, pg: &Postgres, check: &StatusResponder, extra: &str) -> String {
    format!(
        "    server {name} 127.0.0.1:{} maxconn 128 check port {} {extra}\n",
        pg.port, check.port
    )
}

const FAST_CHECKS: &str = "    option httpchk\n    http-check expect status 200\n    default-server inter 200ms fall 2 rise 2 on-marked-down shutdown-sessions\n";

/// A tokio-postgres session through the proxy, held open; the handle resolves when the
/// connection ends.
type Held = (tokio_postgres::Client, tokio::task::JoinHandle<Instant>);

async fn try_hold(port: u16) -> Result<Held, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=10"),
        tokio_postgres::NoTls,
    )
    .await?;
    let ended = tokio::spawn(async move {
        let _ = conn.await;
        Instant::now()
    });
    Ok((client, ended))
}

async fn hold(port: u16) -> Held {
    try_hold(port).await.expect("connect through the proxy")
}

fn run_manning(args: &[&str]) -> std::process::Output {
    Command::new(manning_bin())
        .args(args)
        .output()
        .expect("run manning")
}

fn write_cfg(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write cfg");
    p
}

#[test]
fn the_seeds_haproxy_cfg_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_cfg(dir.path(), "haproxy.cfg", SEED_CFG);
    let out = run_manning(&["proxy", "--check", "-f", cfg.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("configuration is valid"));
    assert!(stdout.contains("listen manning on unix:///run/patroni/proxy.sock, tcp://*:5432"));
    assert!(stdout.contains(
        "server worker-01 worker-01.patroni.host:15432 maxconn 128, check port 8008 inter 2.5s rise 2 fall 4, shutdown-sessions"
    ));
}

#[test]
fn bad_configs_exit_2_and_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (bad, needle)) in [
        (
            SEED_CFG.replace("inter 2500ms", "inter abc"),
            "haproxy.cfg:24: 'inter abc'",
        ),
        (
            SEED_CFG.replace("listen manning", "frontend manning"),
            "haproxy.cfg:19: section 'frontend' is not supported",
        ),
        (
            SEED_CFG.replace("    retries 2\n", "    option redispatch\n"),
            "haproxy.cfg:7: directive 'option redispatch' is not supported",
        ),
        (
            SEED_CFG.replace(
                "maxconn 128 check port 8008\n    server worker-02",
                "maxconn 128 check port 8008 backup\n    server worker-02",
            ),
            "haproxy.cfg:26: server parameter 'backup' is not supported",
        ),
        (
            SEED_CFG.replace("timeout check 5s", "timeout check 5 s"),
            "haproxy.cfg:11: unexpected 's'",
        ),
        (
            SEED_CFG.replace("bind *:5432", "bind *:5432 ssl"),
            "haproxy.cfg:21: bind option 'ssl'",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let sub = dir.path().join(i.to_string());
        std::fs::create_dir(&sub).unwrap();
        let cfg = write_cfg(&sub, "haproxy.cfg", &bad);
        let out = run_manning(&["proxy", "-f", cfg.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        let expected = format!("{}/{needle}", sub.display());
        assert!(
            stderr.contains(&expected),
            "expected {expected:?} in {stderr:?}"
        );
    }
    let out = run_manning(&["proxy", "-f", "/nonexistent/haproxy.cfg"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("cannot read the HAProxy configuration /nonexistent/haproxy.cfg")
    );
}

#[test]
fn new_sessions_follow_the_checks_within_inter_times_rise() {
    let (a, b) = (Postgres::start(), Postgres::start());
    let (ra, rb) = (StatusResponder::start(200), StatusResponder::start(503));
    let body = format!(
        "{FAST_CHECKS}{}{}",
        server_line("pg-a", &a, &ra, ""),
        server_line("pg-b", &b, &rb, "")
    );
    let p = ProxyProc::start("", &body, "");
    p.wait_status("pg-a", "UP", Duration::from_secs(5));
    for _ in 0..5 {
        assert_eq!(p.which(), Ok(a.port));
    }
    // The primary moves: a answers 503, b 200.
    ra.set(503);
    rb.set(200);
    let flipped = Instant::now();
    let moved = wait_for("sessions to reach b", Duration::from_secs(5), || {
        (p.which() == Ok(b.port)).then(Instant::now)
    });
    // rise 2 × inter 200ms, plus one interval of phase and the checks' own time.
    let took = moved - flipped;
    assert!(
        took <= Duration::from_millis(2 * 200 + 200 + 150),
        "took {took:?}"
    );
    // fall 2: a is DOWN too within fall × inter, and then every session goes to b.
    p.wait_status("pg-a", "DOWN", Duration::from_millis(2 * 200 + 400));
    for _ in 0..5 {
        assert_eq!(p.which(), Ok(b.port));
    }
    let csv = p.csv();
    assert_eq!(csv["pg-a"]["check_status"], "L7STS");
    assert_eq!(csv["pg-a"]["check_code"], "503");
    assert_eq!(csv["pg-a"]["chkdown"], "1");
    assert_eq!(csv["pg-b"]["check_status"], "L7OK");
    let log = p.log();
    assert!(
        log.contains("server manning/pg-a is DOWN: L7STS/503"),
        "{log}"
    );
    assert!(log.contains("server manning/pg-b is UP: L7OK/200"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_to_a_server_going_down_are_cut() {
    let a = Postgres::start();
    let ra = StatusResponder::start(200);
    let body = format!("{FAST_CHECKS}{}", server_line("pg-a", &a, &ra, ""));
    let p = ProxyProc::start("", &body, "");
    p.wait_status("pg-a", "UP", Duration::from_secs(5));
    let (c1, ended1) = hold(p.port).await;
    let (c2, ended2) = hold(p.port).await;
    let one: i32 = c1.query_one("select 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    assert_eq!(p.field("pg-a", "scur"), "2");
    ra.set(503);
    let flipped = Instant::now();
    let t1 = tokio::time::timeout(Duration::from_secs(5), ended1)
        .await
        .expect("session 1 cut")
        .unwrap();
    let t2 = tokio::time::timeout(Duration::from_secs(5), ended2)
        .await
        .expect("session 2 cut")
        .unwrap();
    // fall 2 × inter 200ms (+ one interval of phase and slack).
    for t in [t1, t2] {
        assert!(
            t - flipped <= Duration::from_millis(2 * 200 + 200 + 200),
            "{:?}",
            t - flipped
        );
    }
    assert!(c2.query_one("select 1", &[]).await.is_err());
    assert_eq!(p.field("pg-a", "status"), "DOWN");
    assert_eq!(p.field("pg-a", "scur"), "0");
    let log = p.log();
    assert!(
        log.contains("0 active servers left, 2 sessions cut"),
        "{log}"
    );
    assert!(
        log.contains("code=\"DD\""),
        "cut sessions are logged with code DD: {log}"
    );
    // With no server UP, new connections are refused at once.
    let t = Instant::now();
    assert!(p.which().is_err());
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_at_maxconn_and_its_timeout() {
    let a = Postgres::start();
    let ra = StatusResponder::start(200);
    let body = format!(
        "{FAST_CHECKS}    timeout queue 700ms\n    server pg-a 127.0.0.1:{} maxconn 1 check port {}\n",
        a.port, ra.port
    );
    let p = ProxyProc::start("", &body, "");
    p.wait_status("pg-a", "UP", Duration::from_secs(5));
    let (first, _) = hold(p.port).await;
    // A second client waits in the queue, then is closed after `timeout queue`.
    let t = Instant::now();
    let second = tokio::spawn(try_hold(p.port));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(p.field("BACKEND", "qcur"), "1");
    assert!(
        second.await.unwrap().is_err(),
        "the queued client must not be served"
    );
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(650) && waited < Duration::from_millis(2000),
        "{waited:?}"
    );
    assert_eq!(p.field("BACKEND", "qcur"), "0");
    // A queued client gets the slot as soon as it frees within the queue time.
    let third = tokio::spawn(try_hold(p.port));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(p.field("BACKEND", "qcur"), "1");
    drop(first);
    let (client, _) = third.await.unwrap().expect("served from the queue");
    let one: i32 = client.query_one("select 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    let be = &p.csv()["BACKEND"];
    assert_eq!(be["qmax"], "1");
    assert_eq!(be["econ"], "1", "the queue timeout is counted: {be:?}");
    assert!(be["qtime"].parse::<u64>().unwrap() > 0);
}

#[test]
fn unix_and_tcp_binds_and_sigterm() {
    let a = Postgres::start();
    let ra = StatusResponder::start(200);
    let sockdir = tempfile::tempdir().unwrap();
    let sock_port = 6543;
    let sock = sockdir.path().join(format!(".s.PGSQL.{sock_port}"));
    let body = format!(
        "    bind {}\n{FAST_CHECKS}{}",
        sock.display(),
        server_line("pg-a", &a, &ra, "")
    );
    let p = ProxyProc::start("", &body, "");
    p.wait_status("pg-a", "UP", Duration::from_secs(5));
    assert_eq!(p.which(), Ok(a.port));
    let via_unix = Postgres::psql_at(
        sockdir.path().to_str().unwrap(),
        sock_port,
        "select inet_server_port()",
    );
    assert_eq!(via_unix, Ok(a.port.to_string()));
    assert!(sock.exists());
    let (status, log) = p.terminate();
    assert!(status.success(), "exit status {status:?}: {log}");
    assert!(!sock.exists(), "the UNIX socket is removed on exit");
    assert!(log.contains("SIGTERM: no longer accepting"), "{log}");
}

#[test]
fn stats_page_csv_json_metrics_and_auth() {
    let (a, b) = (Postgres::start(), Postgres::start());
    let (ra, rb) = (StatusResponder::start(200), StatusResponder::start(503));
    let body = format!(
        "{FAST_CHECKS}{}{}    server ghost no-such-member.invalid:5432 check port 8008\n",
        server_line("pg-a", &a, &ra, ""),
        server_line("pg-b", &b, &rb, "")
    );
    let p = ProxyProc::start(
        "",
        &body,
        "    stats auth admin:s3cret\n    stats refresh 3s\n",
    );
    // Without credentials: 401 with a challenge.
    let mut s = std::net::TcpStream::connect(&p.stats).unwrap();
    use std::io::{Read, Write};
    write!(s, "GET /;csv HTTP/1.0\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(
        resp.starts_with("HTTP/1.0 401") || resp.starts_with("HTTP/1.1 401"),
        "{resp}"
    );
    assert!(
        resp.to_lowercase()
            .contains("www-authenticate: basic realm=\"haproxy statistics\"")
    );
    let get = |path: &str| {
        let mut s = std::net::TcpStream::connect(&p.stats).unwrap();
        // admin:s3cret
        write!(
            s,
            "GET {path} HTTP/1.0\r\nAuthorization: Basic YWRtaW46czNjcmV0\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let (head, body) = resp.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(" 200 "), "{head}");
        body.to_string()
    };
    wait_for("pg-a UP", Duration::from_secs(5), || {
        parse_csv(&get("/;csv"))
            .get("pg-a")
            .filter(|r| r["status"] == "UP")
            .map(|_| ())
    });
    wait_for("ghost checked", Duration::from_secs(5), || {
        parse_csv(&get("/;csv"))
            .get("ghost")
            .filter(|r| r["check_status"] == "L4CON")
            .map(|_| ())
    });
    let csv_text = get("/;csv");
    assert!(csv_text.starts_with("# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,"));
    let csv = parse_csv(&csv_text);
    assert_eq!(csv["pg-a"]["status"], "UP");
    assert_eq!(csv["pg-a"]["check_status"], "L7OK");
    assert_eq!(csv["pg-a"]["check_health"], "3");
    assert_eq!(csv["pg-b"]["status"], "DOWN");
    assert_eq!(csv["pg-b"]["check_code"], "503");
    assert_eq!(csv["ghost"]["status"], "DOWN");
    assert!(
        csv["ghost"]["last_chk"].starts_with("DNS resolution failed"),
        "{:?}",
        csv["ghost"]
    );
    assert_eq!(csv["FRONTEND"]["status"], "OPEN");
    assert_eq!(csv["FRONTEND"]["slim"], "384");
    assert_eq!(csv["BACKEND"]["status"], "UP");
    assert_eq!(csv["BACKEND"]["act"], "1");
    // Traffic shows in the counters.
    assert_eq!(p.which(), Ok(a.port));
    // The session's bytes are counted when it ends, a moment after psql exits.
    let after = wait_for(
        "the session's bytes in the stats",
        Duration::from_secs(5),
        || {
            let csv = parse_csv(&get("/;csv"));
            let n = |sv: &str, col: &str| csv[sv][col].parse::<u64>().unwrap_or(0);
            (n("pg-a", "bin") > 0 && n("pg-a", "bout") > 0 && n("FRONTEND", "bout") > 0)
                .then_some(csv)
        },
    );
    assert_eq!(after["pg-a"]["stot"], "1");
    assert_eq!(after["pg-a"]["scur"], "0");
    let json: serde_json::Value = serde_json::from_str(&get("/;json")).expect("JSON");
    assert!(json.as_array().unwrap().len() >= 5);
    let metrics = get("/metrics");
    assert!(
        metrics.contains("haproxy_server_status{proxy=\"manning\",server=\"pg-a\",state=\"UP\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("haproxy_server_status{proxy=\"manning\",server=\"pg-b\",state=\"DOWN\"} 1")
    );
    let html = get("/");
    assert!(html.contains("<meta http-equiv=\"refresh\" content=\"3\">"));
    assert!(html.contains("L7OK/200 in "));
    assert!(html.contains(" UP</td>") && html.contains(" DOWN</td>"));
    // An unresolvable server is DOWN, not fatal: the proxy still serves.
    assert!(p.proc.child.id() > 0);
    assert_eq!(p.which(), Ok(a.port));
}

#[test]
fn a_proxy_started_while_a_replica_answers_503_never_routes_to_it() {
    let (primary, replica) = (Postgres::start(), Postgres::start());
    let (rp, rr) = (StatusResponder::start(200), StatusResponder::start(503));
    // The replica is listed first: round robin would pick it first if it counted as UP.
    let body = format!(
        "{FAST_CHECKS}{}{}",
        server_line("replica", &replica, &rr, ""),
        server_line("primary", &primary, &rp, "")
    );
    let started = Instant::now();
    let p = ProxyProc::start("", &body, "");
    let mut served = Vec::new();
    while started.elapsed() < Duration::from_secs(2) {
        if let Ok(port) = p.which() {
            served.push(port);
        }
    }
    assert!(!served.is_empty(), "the primary was never reached");
    assert!(
        served.iter().all(|&port| port == primary.port),
        "a session reached the replica: {served:?}"
    );
    assert!(rr.hits() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_close_after_the_inactivity_timeout() {
    let a = Postgres::start();
    let ra = StatusResponder::start(200);
    let body = format!(
        "{FAST_CHECKS}    timeout client 1500ms\n    timeout server 1500ms\n{}",
        server_line("pg-a", &a, &ra, "")
    );
    let p = ProxyProc::start("", &body, "");
    p.wait_status("pg-a", "UP", Duration::from_secs(5));
    let (client, ended) = hold(p.port).await;
    // Activity keeps it open.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        client
            .query_one("select 1", &[])
            .await
            .expect("active session stays open");
    }
    let last = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(5), ended)
        .await
        .expect("idle session closed")
        .unwrap();
    let idle = closed - last;
    assert!(
        idle >= Duration::from_millis(1400) && idle < Duration::from_millis(3000),
        "{idle:?}"
    );
    assert!(p.log().contains("code=\"cD\""));
}

#[test]
fn failed_connects_are_retried_then_counted() {
    let ra = StatusResponder::start(200);
    // The check passes but nothing listens on the server port.
    let dead = free_port();
    let body = format!(
        "{FAST_CHECKS}    timeout connect 300ms\n    server pg-a 127.0.0.1:{dead} check port {}\n",
        ra.port
    );
    let p = ProxyProc::start("", &body, "");
    p.wait_status("pg-a", "UP", Duration::from_secs(5));
    let t = Instant::now();
    assert!(p.which().is_err());
    // retries 2: three attempts with min(timeout connect, 1s) = 300ms between them.
    assert!(
        t.elapsed() >= Duration::from_millis(550),
        "{:?}",
        t.elapsed()
    );
    let csv = p.csv();
    assert_eq!(csv["pg-a"]["wretr"], "2");
    assert_eq!(csv["pg-a"]["econ"], "1");
    assert_eq!(csv["pg-a"]["connect"], "3");
}

/// A `listen` body with one UNIX bind at `sock` and one checked server.
fn unix_bind_body(sock: &Path, pg: &Postgres, check: &StatusResponder) -> String {
    format!(
        "    bind {}\n{FAST_CHECKS}{}",
        sock.display(),
        server_line("pg-a", pg, check, "")
    )
}

/// `manning forward` from 127.0.0.1:`port` to the UNIX socket `sock`, logging to `log`.
/// Start `manning forward` and wait for its "listening" line. (Not a probe connection: the
/// forwarder would hand that over, and the proxy would count it as a session.)
fn start_forward(port: u16, sock: &Path, log: &Path, extra: &[&str]) -> Proc {
    let file = std::fs::File::create(log).unwrap();
    let forward = Proc {
        child: Command::new(manning_bin())
            .args(["forward", &format!("tcp://127.0.0.1:{port}")])
            .arg(format!("unix://{}", sock.display()))
            .args(extra)
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap(),
        name: "manning forward".into(),
    };
    wait_for("the forwarder to listen", Duration::from_secs(10), || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        text.contains("listening on").then_some(())
    });
    forward
}

/// `manning forward` in front of a `manning proxy`'s UNIX socket hands each client over
/// (net::handoff): the proxy serves it directly, so the session outlives the forwarder.
/// With `--no-handoff` the forwarder copies bytes and its death ends the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_hands_clients_over_to_a_local_proxy() {
    let a = Postgres::start();
    let ra = StatusResponder::start(200);
    let sockdir = tempfile::tempdir().unwrap();
    let sock = sockdir.path().join("proxy.sock");
    let body = unix_bind_body(&sock, &a, &ra);
    let p = ProxyProc::start("", &body, "");
    p.wait_status("pg-a", "UP", Duration::from_secs(5));
    let handoff = sockdir.path().join("proxy.sock.handoff");
    assert!(handoff.exists(), "the proxy offers a hand-off socket");

    for copy in [false, true] {
        let port = free_port();
        let log = sockdir.path().join(format!("forward-{copy}.log"));
        let extra: &[&str] = if copy { &["--no-handoff"] } else { &[] };
        let mut forward = start_forward(port, &sock, &log, extra);
        let (client, ended) = hold(port).await;
        let row = client
            .query_one("select inet_server_port()", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, i32>(0), i32::from(a.port));
        // The forwarder dies; a handed-over session does not notice.
        forward.signal(Signal::SIGKILL);
        let _ = forward.child.wait();
        let again = client.query_one("select 1", &[]).await;
        let text = std::fs::read_to_string(&log).unwrap();
        if copy {
            assert!(again.is_err(), "a copied session ends with its forwarder");
            assert!(!text.contains("handing connections over"), "{text}");
        } else {
            assert!(again.is_ok(), "handed-over session broke: {again:?}");
            assert!(text.contains("handing connections over"), "{text}");
            assert_eq!(p.field("pg-a", "scur"), "1", "the proxy serves the session");
        }
        drop(client);
        let _ = ended.await;
    }
    let (status, log) = p.terminate();
    assert!(status.success(), "{log}");
    assert!(!handoff.exists(), "the hand-off socket is removed on exit");
}

/// The forwarder keeps one hand-off connection; when the proxy restarts, the next client
/// goes over a new one, without a copied session in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_off_survives_a_proxy_restart() {
    let a = Postgres::start();
    let ra = StatusResponder::start(200);
    let sockdir = tempfile::tempdir().unwrap();
    let sock = sockdir.path().join("proxy.sock");
    let body = unix_bind_body(&sock, &a, &ra);
    let port = free_port();
    let log = sockdir.path().join("forward.log");
    let _forward = start_forward(port, &sock, &log, &[]);
    for restart in 0..2 {
        let p = ProxyProc::start("", &body, "");
        p.wait_status("pg-a", "UP", Duration::from_secs(5));
        for _ in 0..3 {
            let (client, ended) = hold(port).await;
            let row = client.query_one("select 1", &[]).await.unwrap();
            assert_eq!(row.get::<_, i32>(0), 1, "proxy run {restart}");
            assert_eq!(p.field("pg-a", "scur"), "1", "handed over, not copied");
            drop(client);
            let _ = ended.await;
            // The proxy ends the session once postgres has closed its side too.
            p.wait_field("pg-a", "scur", "0", Duration::from_secs(5));
        }
        let (status, text) = p.terminate();
        assert!(status.success(), "{text}");
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("copying bytes"), "{text}");
}

/// `--etcd` takes HOST:PORT lists and needs `--scope`; anything else exits 2 saying why.
#[test]
fn bad_etcd_flags_exit_2() {
    let cfg = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/haproxy/seed-haproxy.cfg"
    );
    for (args, says) in [
        (&["--etcd", "127.0.0.1:2379"][..], "--scope"),
        (
            &["--etcd", "nonsense::", "--scope", "s"][..],
            "is not HOST:PORT",
        ),
        (&["--etcd", ",", "--scope", "s"][..], "no HOST:PORT"),
    ] {
        let out = Command::new(manning_bin())
            .args(["proxy", "--check", "-f", cfg])
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let out = Command::new(manning_bin())
        .args([
            "proxy",
            "--check",
            "-f",
            cfg,
            "--etcd",
            "10.0.0.1:2379",
            "--scope",
            "s",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("routed by the leader key of /service/s"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
