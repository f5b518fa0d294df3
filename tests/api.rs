//! The REST API server on a real socket: HAProxy-style checks (raw and with a real HAProxy),
//! `/patroni` JSON, hostile clients (garbage, oversized heads and bodies, slowloris, too
//! many connections), control commands through the supervisor channel, authentication,
//! and shutdown. The snapshot is driven through the watch channel as the supervisor does.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use manning::api::control::replies;
use manning::api::{
    ApiCommand, ApiRequest, ApiServer, Channels, ClusterMember, ClusterView, Credentials, Limits,
    PostgresState, PostgresStatus, ReplicationState, Role, ServerConfig, Snapshot, SwitchoverKind,
    Xlog,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

fn primary() -> Snapshot {
    let now = Instant::now();
    let mut s = Snapshot::new("a", "demo");
    s.postgres_state = PostgresState::Running;
    s.role = Role::Primary;
    s.postgres = Some(PostgresStatus {
        postmaster_start_time: None,
        server_version: 150_004,
        xlog: Xlog::Primary {
            location: 50_331_648,
        },
        timeline: Some(1),
        latest_end_lsn: None,
        replication_state: None,
        replication: vec![],
    });
    s.database_system_identifier = Some("7268616322854375442".into());
    s.leader_until = Some(now + Duration::from_secs(3600));
    s.ha_next_run = Some(now);
    s.dcs_last_seen = 1_700_000_000;
    let mut c = ClusterView::empty(now + Duration::from_secs(3600));
    c.leader = Some("a".into());
    c.last_lsn = 50_331_648;
    c.members = ["a", "b"]
        .iter()
        .map(|n| ClusterMember {
            name: n.to_string(),
            api_url: Some(format!("http://127.0.0.1:8008/{n}")),
            role: if *n == "a" { "primary" } else { "replica" }.into(),
            state: "running".into(),
            ..ClusterMember::default()
        })
        .collect();
    s.cluster = Some(c);
    s
}

fn replica() -> Snapshot {
    let mut s = primary();
    s.name = "b".into();
    s.role = Role::Replica;
    s.leader_until = None;
    if let Some(pg) = s.postgres.as_mut() {
        pg.xlog = Xlog::Replica {
            received_location: Some(50_331_648),
            replayed_location: Some(50_331_648),
            replayed_timestamp: None,
            paused: false,
        };
        pg.replication_state = Some(ReplicationState::Streaming);
    }
    s
}

struct TestApi {
    addr: SocketAddr,
    snap: watch::Sender<Snapshot>,
    commands: Option<mpsc::Receiver<ApiRequest>>,
    wake: Arc<Notify>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl TestApi {
    async fn start(mut config: ServerConfig, snapshot: Snapshot) -> TestApi {
        config.listen = "127.0.0.1:0".into();
        let (snap, snap_rx) = watch::channel(snapshot);
        let (cmd_tx, cmd_rx) = mpsc::channel(8);
        let wake = Arc::new(Notify::new());
        let server = ApiServer::bind(
            config,
            Channels {
                snapshot: snap_rx,
                commands: cmd_tx,
                wake: wake.clone(),
            },
        )
        .await
        .expect("bind REST API");
        let addr = server.local_addr();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = stop_rx.await;
        }));
        TestApi {
            addr,
            snap,
            commands: Some(cmd_rx),
            wake,
            stop: Some(stop),
            task,
        }
    }

    /// Answer every command with `answer(command)` in a background task.
    fn supervise(&mut self, answer: impl Fn(&ApiCommand) -> manning::api::Reply + Send + 'static) {
        let mut rx = self.commands.take().expect("commands already taken");
        tokio::spawn(async move {
            while let Some(req) = rx.recv().await {
                let reply = answer(&req.command);
                req.responder.send(reply);
            }
        });
    }
}

/// Send raw bytes, read until the server closes (or 5 s), return the response text.
async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let _ = s.write_all(request).await;
    read_all(&mut s).await
}

async fn read_all(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

fn status_of(resp: &str) -> u16 {
    resp.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {resp:?}"))
}

fn body_of(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

fn header<'a>(resp: &'a str, name: &str) -> Option<&'a str> {
    let head = resp.split_once("\r\n\r\n").map_or(resp, |(h, _)| h);
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

async fn get(addr: SocketAddr, path: &str) -> String {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
}

async fn post(addr: SocketAddr, path: &str, extra_headers: &str, body: &str) -> String {
    raw(
        addr,
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n{extra_headers}\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_options_http10_is_200_only_on_the_primary() {
    let api = TestApi::start(ServerConfig::default(), primary()).await;
    let resp = raw(api.addr, b"OPTIONS / HTTP/1.0\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.0 200 OK\r\n"), "{resp:?}");
    assert_eq!(body_of(&resp), "", "status only");
    assert_eq!(header(&resp, "content-length"), Some("0"));

    api.snap.send_replace(replica());
    let resp = raw(api.addr, b"OPTIONS / HTTP/1.0\r\n\r\n").await;
    assert!(
        resp.starts_with("HTTP/1.0 503 Service Unavailable\r\n"),
        "{resp:?}"
    );
    assert_eq!(body_of(&resp), "");
    let resp = raw(api.addr, b"OPTIONS /replica HTTP/1.0\r\n\r\n").await;
    assert_eq!(status_of(&resp), 200);
    let resp = raw(
        api.addr,
        b"HEAD /replica?lag=1MB HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((status_of(&resp), body_of(&resp)), (200, ""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_patroni_is_patronis_json() {
    let api = TestApi::start(ServerConfig::default(), primary()).await;
    let resp = get(api.addr, "/patroni").await;
    assert_eq!(status_of(&resp), 200);
    assert_eq!(header(&resp, "content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_str(body_of(&resp)).expect("json");
    assert_eq!(v["state"], "running");
    assert_eq!(v["role"], "primary");
    assert_eq!(v["server_version"], 150004);
    assert_eq!(v["xlog"]["location"], 50331648);
    assert_eq!(v["timeline"], 1);
    assert_eq!(v["database_system_identifier"], "7268616322854375442");
    assert_eq!(v["patroni"]["name"], "a");
    assert_eq!(v["patroni"]["scope"], "demo");
    assert_eq!(
        v["patroni"]["version"],
        manning::api::state::PATRONI_COMPATIBLE_VERSION
    );

    // An HTTP/1.0 client (Patroni's own health checkers, curl -0) gets the same.
    let resp = raw(api.addr, b"GET /patroni HTTP/1.0\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.0 200 OK"), "{resp:?}");
    assert!(body_of(&resp).contains("\"role\":\"primary\""));

    // GET health checks carry the same document; metrics are Prometheus text.
    let resp = get(api.addr, "/replica").await;
    assert_eq!(status_of(&resp), 503);
    assert!(body_of(&resp).contains("\"patroni\":"));
    let resp = get(api.addr, "/metrics").await;
    assert_eq!(header(&resp, "content-type"), Some("text/plain"));
    assert!(body_of(&resp).contains("patroni_primary{scope=\"demo\",name=\"a\"} 1\n"));
    let resp = get(api.addr, "/config").await;
    assert_eq!(status_of(&resp), 502);
    let resp = get(api.addr, "/cluster").await;
    let v: serde_json::Value = serde_json::from_str(body_of(&resp)).expect("json");
    assert_eq!(v["members"][0]["role"], "leader");
    assert_eq!(v["scope"], "demo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_deadline_turns_primary_checks_off_without_a_new_snapshot() {
    let mut s = primary();
    s.leader_until = Some(Instant::now() + Duration::from_millis(300));
    let api = TestApi::start(ServerConfig::default(), s).await;
    assert_eq!(status_of(&get(api.addr, "/primary").await), 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(status_of(&get(api.addr, "/primary").await), 503);
    assert_eq!(status_of(&get(api.addr, "/health").await), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_heads_are_refused_and_others_still_served() {
    let api = TestApi::start(ServerConfig::default(), primary()).await;
    let resp = raw(
        api.addr,
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1garbage\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 400, "{resp:?}");
    let resp = raw(api.addr, b"GET /\x00 HTTP/1.1\r\n\r\n").await;
    assert!(resp.is_empty() || status_of(&resp) == 400, "{resp:?}");

    let mut big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 100 * 1024));
    big.extend(b"\r\n\r\n");
    let resp = raw(api.addr, &big).await;
    // hyper answers 431; a client still writing may see a reset instead, which is fine.
    assert!(
        resp.is_empty() || status_of(&resp) == 431,
        "{:?}",
        &resp[..resp.len().min(200)]
    );

    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let resp = raw(
        api.addr,
        format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert!(resp.is_empty() || status_of(&resp) == 431, "{resp:?}");

    assert_eq!(status_of(&get(api.addr, "/primary").await), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_dropped_while_others_are_served_promptly() {
    let config = ServerConfig {
        limits: Limits {
            header_read_timeout: Duration::from_secs(2),
            ..Limits::default()
        },
        ..ServerConfig::default()
    };
    let api = TestApi::start(config, primary()).await;
    let addr = api.addr;
    let slow = tokio::spawn(async move {
        let started = Instant::now();
        let s = TcpStream::connect(addr).await.expect("connect");
        let (mut rd, mut wr) = s.into_split();
        let reader = tokio::spawn(async move {
            let mut buf = Vec::new();
            let _ = rd.read_to_end(&mut buf).await;
            buf
        });
        for b in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: abcdefghij".iter() {
            if reader.is_finished() || wr.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let _ = reader.await;
        started.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let t = Instant::now();
    let resp = get(api.addr, "/primary").await;
    let took = t.elapsed();
    assert_eq!(status_of(&resp), 200);
    assert!(
        took < Duration::from_millis(500),
        "normal client waited {took:?}"
    );
    let slow_life = slow.await.expect("slow client task");
    assert!(
        slow_life >= Duration::from_secs(2) && slow_life < Duration::from_secs(5),
        "slowloris connection lived {slow_life:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_reaches_the_supervisor_and_its_reply_is_returned() {
    let mut api = TestApi::start(ServerConfig::default(), primary()).await;
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    api.supervise(move |cmd| {
        let _ = seen_tx.send(cmd.clone());
        match cmd {
            ApiCommand::Switchover(req) => replies::switched_over(
                req.kind,
                req.candidate.as_deref().unwrap_or("b"),
                req.candidate.as_deref(),
            ),
            ApiCommand::Reload => replies::reload_scheduled(),
            _ => manning::api::Reply::text(500, "unexpected"),
        }
    });
    let resp = post(
        api.addr,
        "/switchover",
        "",
        r#"{"leader":"a","candidate":"b"}"#,
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(body_of(&resp), "Successfully switched over to \"b\"");
    let cmd = seen_rx.recv().await.expect("command seen");
    let ApiCommand::Switchover(req) = cmd else {
        panic!("not a switchover: {cmd:?}")
    };
    assert_eq!(req.kind, SwitchoverKind::Switchover);
    assert_eq!(req.leader.as_deref(), Some("a"));
    assert_eq!(req.probe, Some(vec!["b".to_string()]));
    // The HA loop was woken.
    tokio::time::timeout(Duration::from_secs(1), api.wake.notified())
        .await
        .expect("wake notified");

    // Validation failures never reach the supervisor.
    let resp = post(api.addr, "/switchover", "", r#"{"leader":"zz"}"#).await;
    assert_eq!(
        (status_of(&resp), body_of(&resp)),
        (412, "leader name does not match")
    );
    let resp = post(api.addr, "/failover", "", r#"{"leader":"a"}"#).await;
    assert_eq!(
        (status_of(&resp), body_of(&resp)),
        (
            400,
            "Failover could be performed only to a specific candidate"
        )
    );
    let resp = post(api.addr, "/switchover", "", "{not json").await;
    assert_eq!(status_of(&resp), 400);
    let resp = raw(
        api.addr,
        b"POST /switchover HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 411, "Patroni needs Content-Length");
    let resp = post(api.addr, "/reload", "", "").await;
    assert_eq!(
        (status_of(&resp), body_of(&resp)),
        (202, "reload scheduled")
    );
    assert!(seen_rx.try_recv().is_ok_and(|c| c == ApiCommand::Reload));
    assert!(seen_rx.try_recv().is_err(), "nothing else was sent");

    let resp = raw(
        api.addr,
        b"DELETE /config HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        (status_of(&resp), body_of(&resp)),
        (501, "Unsupported method ('DELETE')")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_endpoints_need_credentials_health_checks_do_not() {
    let config = ServerConfig {
        authentication: Some(Credentials {
            username: "admin".into(),
            password: "pa:ss'w%rd".into(),
        }),
        ..ServerConfig::default()
    };
    let mut api = TestApi::start(config, primary()).await;
    api.supervise(|_| replies::reload_scheduled());

    let resp = post(api.addr, "/reload", "", "").await;
    assert_eq!(
        (status_of(&resp), body_of(&resp)),
        (401, "no auth header received")
    );
    assert_eq!(
        header(&resp, "www-authenticate"),
        Some("Basic realm=\"Patroni\"")
    );
    let wrong = "Authorization: Basic YWRtaW46d3Jvbmc=\r\n"; // admin:wrong
    let resp = post(api.addr, "/reload", wrong, "").await;
    assert_eq!(
        (status_of(&resp), body_of(&resp)),
        (401, "not authenticated")
    );
    use base64::Engine;
    let good = format!(
        "Authorization: Basic {}\r\n",
        base64::engine::general_purpose::STANDARD.encode("admin:pa:ss'w%rd")
    );
    let resp = post(api.addr, "/reload", &good, "").await;
    assert_eq!(
        (status_of(&resp), body_of(&resp)),
        (202, "reload scheduled")
    );

    assert_eq!(status_of(&get(api.addr, "/primary").await), 200);
    assert_eq!(status_of(&get(api.addr, "/patroni").await), 200);
    assert_eq!(
        status_of(&raw(api.addr, b"OPTIONS / HTTP/1.0\r\n\r\n").await),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlist_refuses_other_sources() {
    let config = ServerConfig {
        allowlist: vec!["192.0.2.0/24".into()],
        ..ServerConfig::default()
    };
    let mut api = TestApi::start(config, primary()).await;
    api.supervise(|_| replies::reload_scheduled());
    let resp = post(api.addr, "/reload", "", "").await;
    assert_eq!(
        (status_of(&resp), body_of(&resp)),
        (403, "Access is denied")
    );
    assert_eq!(status_of(&get(api.addr, "/primary").await), 200);

    let config = ServerConfig {
        allowlist: vec!["127.0.0.0/8".into(), "localhost".into()],
        ..ServerConfig::default()
    };
    let mut api = TestApi::start(config, primary()).await;
    api.supervise(|_| replies::reload_scheduled());
    assert_eq!(status_of(&post(api.addr, "/reload", "", "").await), 202);

    let bad = ServerConfig {
        allowlist: vec!["10.0.0.0/99".into()],
        listen: "127.0.0.1:0".into(),
        ..ServerConfig::default()
    };
    let (_tx, rx) = watch::channel(primary());
    let (ctx, _crx) = mpsc::channel(1);
    let err = ApiServer::bind(
        bad,
        Channels {
            snapshot: rx,
            commands: ctx,
            wake: Arc::new(Notify::new()),
        },
    )
    .await
    .err()
    .expect("bad allowlist refused");
    assert_eq!(
        manning::error::exit_code_for(&err),
        manning::error::EXIT_USAGE
    );
    assert!(err.to_string().contains("10.0.0.0/99"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_limited_in_size_and_time() {
    let config = ServerConfig {
        limits: Limits {
            body_read_timeout: Duration::from_secs(1),
            ..Limits::default()
        },
        ..ServerConfig::default()
    };
    let mut api = TestApi::start(config, primary()).await;
    api.supervise(|_| replies::reload_scheduled());
    let resp = raw(
        api.addr,
        b"PATCH /config HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 100000\r\n\r\n{",
    )
    .await;
    assert_eq!(status_of(&resp), 413, "{resp}");

    let t = Instant::now();
    let mut s = TcpStream::connect(api.addr).await.expect("connect");
    s.write_all(b"PATCH /config HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n{\"ttl\"")
        .await
        .expect("write");
    let resp = read_all(&mut s).await;
    assert_eq!(status_of(&resp), 408, "{resp}");
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_supervisor_means_503() {
    // The supervisor takes the command but drops it without answering.
    let mut api2 = TestApi::start(ServerConfig::default(), primary()).await;
    let mut rx = api2.commands.take().expect("commands");
    tokio::spawn(async move {
        while let Some(req) = rx.recv().await {
            drop(req);
        }
    });
    let resp = post(api2.addr, "/reload", "", "").await;
    assert_eq!(
        (status_of(&resp), body_of(&resp)),
        (503, "supervisor did not answer")
    );

    // The supervisor is gone altogether.
    let mut api3 = TestApi::start(ServerConfig::default(), primary()).await;
    drop(api3.commands.take());
    let resp = post(api3.addr, "/reload", "", "").await;
    assert_eq!(
        (status_of(&resp), body_of(&resp)),
        (503, "supervisor is not running")
    );
    // Health checks do not need it.
    assert_eq!(status_of(&get(api3.addr, "/primary").await), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_at_once() {
    let config = ServerConfig {
        limits: Limits {
            max_connections: 3,
            ..Limits::default()
        },
        ..ServerConfig::default()
    };
    let api = TestApi::start(config, primary()).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(api.addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    let resp = get(api.addr, "/primary").await;
    assert_eq!(resp, "", "over the cap: closed without a response");
    assert!(t.elapsed() < Duration::from_secs(1));
    drop(idle);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(status_of(&get(api.addr, "/primary").await), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_accepting_and_returns() {
    let mut api = TestApi::start(ServerConfig::default(), primary()).await;
    // A keep-alive client that stays connected must not hold shutdown up.
    let mut idle = TcpStream::connect(api.addr).await.expect("connect");
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 512];
    let n = idle.read(&mut buf).await.expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    let t = Instant::now();
    let _ = api.stop.take().expect("stop").send(());
    let result = tokio::time::timeout(Duration::from_secs(3), &mut api.task)
        .await
        .expect("serve returned")
        .expect("task");
    assert!(result.is_ok());
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    assert!(
        TcpStream::connect(api.addr).await.is_err(),
        "still accepting"
    );
    let n = tokio::time::timeout(Duration::from_secs(1), idle.read(&mut buf))
        .await
        .expect("idle connection closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_a_port_in_use_is_a_runtime_error() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port();
    let (_tx, rx) = watch::channel(primary());
    let (ctx, _crx) = mpsc::channel(1);
    let err = ApiServer::bind(
        ServerConfig {
            listen: format!("127.0.0.1:{port}"),
            ..ServerConfig::default()
        },
        Channels {
            snapshot: rx,
            commands: ctx,
            wake: Arc::new(Notify::new()),
        },
    )
    .await
    .err()
    .expect("port in use");
    assert_eq!(
        manning::error::exit_code_for(&err),
        manning::error::EXIT_FAILURE
    );
    assert!(format!("{err:#}").contains("restapi.listen"), "{err:#}");
}

/// A real HAProxy with the seed's check settings (`option httpchk`, `http-check expect
/// status 200`) marks the server UP while the snapshot is a primary and DOWN as a replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_haproxy_follows_the_primary_check() {
    let haproxy = support::require_bin("haproxy");
    let api = TestApi::start(ServerConfig::default(), replica()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("stats.sock");
    let front = support::free_port();
    let cfg = format!(
        "global\n  stats socket {} level admin\n\
         defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\n  timeout check 1s\n\
         listen manning\n  bind 127.0.0.1:{front}\n  option httpchk\n  http-check expect status 200\n\
         \x20 default-server inter 100ms fall 2 rise 2\n\
         \x20 server node1 127.0.0.1:{port} check port {port}\n",
        sock.display(),
        port = api.addr.port()
    );
    let cfg_path = dir.path().join("haproxy.cfg");
    std::fs::write(&cfg_path, cfg).expect("write cfg");
    let child = std::process::Command::new(haproxy)
        .arg("-db")
        .arg("-f")
        .arg(&cfg_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start haproxy");
    let _haproxy = support::Proc {
        child,
        name: "haproxy".into(),
    };

    async fn server_status(sock: &std::path::Path) -> Option<String> {
        let mut s = tokio::net::UnixStream::connect(sock).await.ok()?;
        s.write_all(b"show stat\n").await.ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        let header: Vec<&str> = out
            .lines()
            .next()?
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let col = header.iter().position(|h| *h == "status")?;
        let line = out.lines().find(|l| l.starts_with("manning,node1,"))?;
        line.split(',').nth(col).map(str::to_string)
    }
    async fn wait_status(sock: &std::path::Path, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = server_status(sock).await;
            if got.as_deref().is_some_and(|g| g.starts_with(want)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "HAProxy never saw {want}, last {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    wait_status(&sock, "DOWN").await;
    api.snap.send_replace(primary());
    wait_status(&sock, "UP").await;
    api.snap.send_replace(replica());
    wait_status(&sock, "DOWN").await;
}
