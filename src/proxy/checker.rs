//! Health checks over the network, and the loop that runs them for one server.
//!
//! One check (HAProxy's timing rules):
//! 1. Resolve the server's name now (Swarm service names appear late and move); a name
//!    that does not resolve fails the check (`L4CON`, "DNS resolution failed: ...").
//! 2. Connect to the check port within `min(timeout connect, inter)` when `timeout check`
//!    is set, else within `inter` (name resolution included); `L4TOUT` / `L4CON`.
//! 3. TCP check: connected is `L4OK`. HTTP check: send the request and read the status line
//!    within `timeout check` (else what is left of `inter`); judged by
//!    [`super::check`]: `L7OK`, `L7STS`, `L7RSP`, `L7TOUT`.
//!
//! The loop runs the first check at once (servers start DOWN, so nothing is routed until a
//! check passes), then waits `inter`/`fastinter`/`downinter` after each check ends, as
//! HAProxy does. The probe is a parameter so the loop's timing is tested on tokio's paused
//! clock without sockets.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, timeout_at};

use super::backend::Backend;
use super::check::{self, Answer, CheckResult, CheckStatus};
use super::haproxy_cfg::{CheckKind, Listen, ServerSpec, Timeouts};

/// What to check for one server.
#[derive(Debug, Clone)]
pub struct CheckTarget {
    pub host: String,
    /// The check port.
    pub port: u16,
    pub kind: CheckKind,
    pub inter: Duration,
    pub timeouts: Timeouts,
}

impl CheckTarget {
    pub fn new(listen: &Listen, server: &ServerSpec) -> CheckTarget {
        CheckTarget {
            host: server.host.clone(),
            port: server.effective_check_port(),
            kind: listen.check.clone(),
            inter: server.inter,
            timeouts: listen.timeouts,
        }
    }

    /// Time allowed to resolve and connect.
    pub fn connect_limit(&self) -> Duration {
        match (self.timeouts.check, self.timeouts.connect) {
            (Some(_), Some(c)) => c.min(self.inter),
            _ => self.inter,
        }
    }
}

/// Run one check. Returns the result and the address the name resolved to.
pub async fn probe(t: &CheckTarget) -> (CheckResult, Option<IpAddr>) {
    let start = Instant::now();
    let connect_deadline = start + t.connect_limit();
    let done = |status, code, info: String| CheckResult {
        status,
        code,
        info,
        duration: start.elapsed(),
    };
    let ip = match t.host.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => match timeout_at(
            connect_deadline,
            tokio::net::lookup_host((t.host.as_str(), t.port)),
        )
        .await
        {
            Err(_) => {
                let r = done(CheckStatus::L4Tout, None, "DNS resolution timed out".into());
                return (r, None);
            }
            Ok(Err(e)) => {
                let r = done(
                    CheckStatus::L4Con,
                    None,
                    format!(
                        "DNS resolution failed: {}",
                        reason(&e).trim_start_matches("failed to lookup address information: ")
                    ),
                );
                return (r, None);
            }
            Ok(Ok(mut addrs)) => match addrs.next() {
                Some(a) => a.ip(),
                None => {
                    let r = done(
                        CheckStatus::L4Con,
                        None,
                        "DNS resolution failed: no address".into(),
                    );
                    return (r, None);
                }
            },
        },
    };
    let addr = SocketAddr::new(ip, t.port);
    let mut stream = match timeout_at(connect_deadline, TcpStream::connect(addr)).await {
        Err(_) => {
            let r = done(CheckStatus::L4Tout, None, "connect timed out".into());
            return (r, Some(ip));
        }
        Ok(Err(e)) => return (done(CheckStatus::L4Con, None, reason(&e)), Some(ip)),
        Ok(Ok(s)) => s,
    };
    let http = match &t.kind {
        CheckKind::Tcp => return (done(CheckStatus::L4Ok, None, String::new()), Some(ip)),
        CheckKind::Http(h) => h,
    };
    let read_deadline = match t.timeouts.check {
        Some(c) => Instant::now() + c,
        None => start + t.inter,
    };
    let _ = stream.set_nodelay(true);
    let exchange = async {
        stream.write_all(&check::request(http)).await?;
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 512];
        loop {
            let n = stream.read(&mut chunk).await?;
            buf.extend_from_slice(&chunk[..n]);
            let answer = check::parse_answer(&buf, n == 0);
            if answer != Answer::Incomplete {
                return Ok::<Answer, io::Error>(answer);
            }
        }
    };
    let r = match timeout_at(read_deadline, exchange).await {
        Err(_) => done(
            CheckStatus::L7Tout,
            None,
            "no complete status line in time".into(),
        ),
        Ok(Err(e)) => done(CheckStatus::SockErr, None, reason(&e)),
        Ok(Ok(answer)) => check::http_result(&answer, http, start.elapsed())
            .unwrap_or_else(|| done(CheckStatus::L7Rsp, None, "incomplete response".into())),
    };
    (r, Some(ip))
}

/// The system's wording of an IO error ("Connection refused"), without Rust's suffix.
fn reason(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_string(),
        None => e.to_string(),
    }
}

/// Check server `i` of `backend` until `stop` turns true: first at once, then after each
/// check the interval the backend returns.
pub async fn run<P, F>(
    backend: Arc<Backend>,
    i: usize,
    mut probe: P,
    mut stop: watch::Receiver<bool>,
) where
    P: FnMut() -> F,
    F: Future<Output = (CheckResult, Option<IpAddr>)>,
{
    loop {
        let (result, ip) = tokio::select! {
            r = probe() => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        let next = backend.record_check(i, result, ip);
        tokio::select! {
            _ = tokio::time::sleep(next) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::haproxy_cfg::parse;
    use std::sync::Mutex;

    const SEED_LISTEN: &str = "defaults\n timeout connect 4s\n timeout check 5s\nlisten manning\n bind :1\n option httpchk\n http-check expect status 200\n default-server inter 2500ms fall 4 rise 2 on-marked-down shutdown-sessions\n server a 127.0.0.1:1 maxconn 128 check port 8008\n";

    fn seed_backend(extra_server_params: &str) -> (Arc<Backend>, Listen) {
        let text = format!("{SEED_LISTEN}{}", extra_server_params);
        let cfg = parse("t", &text, &|_| None).unwrap();
        (Backend::new(&cfg.listens[0]), cfg.listens[0].clone())
    }

    type ProbeFuture =
        std::pin::Pin<Box<dyn Future<Output = (CheckResult, Option<IpAddr>)> + Send>>;

    /// A scripted server: answers pass/fail by time, each check taking `took`.
    fn scripted(
        answers: Arc<Mutex<bool>>,
        took: Duration,
        log: Arc<Mutex<Vec<Duration>>>,
        t0: Instant,
    ) -> impl FnMut() -> ProbeFuture {
        move || {
            let answers = answers.clone();
            let log = log.clone();
            Box::pin(async move {
                log.lock().unwrap().push(t0.elapsed());
                tokio::time::sleep(took).await;
                let pass = *answers.lock().unwrap();
                (CheckResult::http(pass, took), None)
            })
        }
    }

    /// Wait (on the paused clock) until server 0's state is `up`; returns when.
    async fn until_state(b: &Backend, up: bool, t0: Instant) -> Duration {
        let mut rx = b.subscribe(0);
        rx.wait_for(|s| s.up == up).await.unwrap();
        t0.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn first_check_at_once_then_fall_times_inter_to_go_down() {
        let (b, _) = seed_backend("");
        let pass = Arc::new(Mutex::new(true));
        let log = Arc::new(Mutex::new(Vec::new()));
        let t0 = Instant::now();
        let (stop_tx, stop) = watch::channel(false);
        let took = Duration::from_millis(2);
        tokio::spawn(run(
            b.clone(),
            0,
            scripted(pass.clone(), took, log.clone(), t0),
            stop,
        ));
        // UP after the first check (init-state down: one pass).
        assert_eq!(until_state(&b, true, t0).await, took);
        // Start failing right after the second check began.
        tokio::time::sleep(Duration::from_millis(2600)).await;
        *pass.lock().unwrap() = false;
        let t_fail = t0.elapsed();
        let down_at = until_state(&b, false, t0).await;
        // Checks at 0, 2.502, 5.004, 7.506, 10.008, 12.510 s: the first failing one starts
        // at 5.004 s and the fourth (fall 4) ends at 12.510 + 0.002 s.
        let step = Duration::from_millis(2502);
        assert_eq!(down_at, step * 5 + took);
        assert!(down_at - t_fail <= step * 4 + took);
        let st = b.stats();
        assert_eq!((st.servers[0].chkfail, st.servers[0].chkdown), (4, 1));
        // Back UP needs rise 2 passes.
        *pass.lock().unwrap() = true;
        let t_pass = t0.elapsed();
        let up_at = until_state(&b, true, t0).await;
        assert!(up_at - t_pass <= step * 2 + took, "{:?}", up_at - t_pass);
        assert!(up_at - t_pass > step, "one pass is not enough");
        stop_tx.send(true).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn fastinter_and_downinter_pace_the_checks() {
        let (b, _) =
            seed_backend(" server b 127.0.0.1:2 check port 8008 fastinter 500ms downinter 10s\n");
        let pass = Arc::new(Mutex::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let t0 = Instant::now();
        let (_stop_tx, stop) = watch::channel(false);
        tokio::spawn(run(
            b.clone(),
            1,
            scripted(pass.clone(), Duration::ZERO, log.clone(), t0),
            stop,
        ));
        tokio::time::sleep(Duration::from_secs(25)).await;
        // init-state down (health 1): the first failure drops to 0 = fully DOWN: downinter.
        let times = log.lock().unwrap().clone();
        assert_eq!(
            times[..3],
            [
                Duration::ZERO,
                Duration::from_secs(10),
                Duration::from_secs(20)
            ]
        );
        // One pass (health 1 of rise 2): transitional, so fastinter.
        *pass.lock().unwrap() = true;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let times = log.lock().unwrap().clone();
        assert_eq!(times[3], Duration::from_secs(30));
        assert_eq!(
            times[4],
            Duration::from_millis(30_500),
            "fastinter while rising"
        );
        assert!(b.stats().servers[1].up);
        assert_eq!(
            times[5],
            Duration::from_millis(33_000),
            "inter once fully UP"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stop_ends_the_loop() {
        let (b, _) = seed_backend("");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (stop_tx, stop) = watch::channel(false);
        let h = tokio::spawn(run(
            b,
            0,
            scripted(
                Arc::new(Mutex::new(true)),
                Duration::ZERO,
                log,
                Instant::now(),
            ),
            stop,
        ));
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(1), h)
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn connect_limit_follows_haproxy() {
        let (_, l) = seed_backend("");
        let t = CheckTarget::new(&l, &l.servers[0]);
        assert_eq!(t.port, 8008);
        assert_eq!(
            t.connect_limit(),
            Duration::from_millis(2500),
            "min(4s, inter)"
        );
        let mut t2 = t.clone();
        t2.timeouts.check = None;
        assert_eq!(
            t2.connect_limit(),
            Duration::from_millis(2500),
            "inter bounds the whole check"
        );
        t2.timeouts.check = Some(Duration::from_secs(5));
        t2.inter = Duration::from_secs(10);
        assert_eq!(t2.connect_limit(), Duration::from_secs(4));
    }

    /// Real sockets on loopback: the probe's classification.
    #[tokio::test]
    async fn probe_classifies_real_answers() {
        use tokio::net::TcpListener;
        async fn responder(reply: &'static [u8]) -> u16 {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = l.local_addr().unwrap().port();
            tokio::spawn(async move {
                loop {
                    let Ok((mut s, _)) = l.accept().await else {
                        return;
                    };
                    let mut req = [0u8; 256];
                    let _ = s.read(&mut req).await;
                    let _ = s.write_all(reply).await;
                }
            });
            port
        }
        let (_, l) = seed_backend("");
        let target = |port: u16| CheckTarget {
            port,
            ..CheckTarget::new(&l, &l.servers[0])
        };
        let ok = responder(b"HTTP/1.0 200 OK\r\n\r\n").await;
        let (r, ip) = probe(&target(ok)).await;
        assert_eq!(
            (r.status, r.code, ip),
            (
                CheckStatus::L7Ok,
                Some(200),
                Some(IpAddr::from([127, 0, 0, 1]))
            )
        );
        let sts = responder(b"HTTP/1.0 503 Service Unavailable\r\n\r\n").await;
        let (r, _) = probe(&target(sts)).await;
        assert_eq!(
            (r.status, r.info.as_str()),
            (CheckStatus::L7Sts, "Service Unavailable")
        );
        let junk = responder(b"hello\r\n").await;
        assert_eq!(probe(&target(junk)).await.0.status, CheckStatus::L7Rsp);
        // Nothing listening.
        let closed = crate::proxy::checker::tests::free_port();
        let (r, _) = probe(&target(closed)).await;
        assert_eq!(
            (r.status, r.info.as_str()),
            (CheckStatus::L4Con, "Connection refused")
        );
        // A name that cannot resolve is a failed check, not an error.
        let mut t = target(ok);
        t.host = "no-such-host.invalid".into();
        let (r, ip) = probe(&t).await;
        assert_eq!((r.status, ip), (CheckStatus::L4Con, None));
        assert!(r.info.starts_with("DNS resolution failed"), "{}", r.info);
        // A server that accepts and never answers: L7TOUT after timeout check.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut t = target(silent.local_addr().unwrap().port());
        t.timeouts.check = Some(Duration::from_millis(200));
        let (r, _) = probe(&t).await;
        assert_eq!(r.status, CheckStatus::L7Tout);
        assert!(r.duration >= Duration::from_millis(200));
        // TCP check: connected is enough.
        t.kind = CheckKind::Tcp;
        assert_eq!(probe(&t).await.0.status, CheckStatus::L4Ok);
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}
