//! `manning forward`: the real binary between real sockets on loopback (and a real
//! PostgreSQL): byte-exact transfers in all four TCP/UNIX combinations, half-close both
//! ways, a target that is down, stale and live socket files, the SIGTERM drain, the
//! connection limit, and the seed's socat command line.

mod support;

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::*;

// ---------------------------------------------------------------------------------------
// Plumbing: a forwarder process with its log, and simple blocking peers.

/// A running `manning forward` whose stderr is collected line by line.
struct Forward {
    proc: Proc,
    log: Arc<Mutex<Vec<String>>>,
}

impl Forward {
    /// Start with `args` and wait for its "listening on" line.
    fn start(args: &[&str]) -> Forward {
        let mut child = Command::new(manning_bin())
            .arg("forward")
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn manning forward");
        let stderr = child.stderr.take().expect("stderr piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut f = Forward {
            proc: Proc {
                child,
                name: "manning forward".into(),
            },
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !f.logged("listening on") {
            if let Ok(Some(status)) = f.proc.child.try_wait() {
                panic!("forward exited early ({status}):\n{}", f.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "forward did not start:\n{}",
                f.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        f
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn logged(&self, needle: &str) -> bool {
        self.count(needle) > 0
    }

    fn count(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    fn wait_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.logged(needle) {
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?} within {timeout:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.proc.child.try_wait().expect("try_wait") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "forward still running after {timeout:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A byte stream of either kind, used blocking.
trait Duplex: Read + Write + Send {
    fn shutdown_write(&self);
    fn set_timeout(&self, d: Option<Duration>);
}

impl Duplex for TcpStream {
    fn shutdown_write(&self) {
        self.shutdown(Shutdown::Write).unwrap();
    }
    fn set_timeout(&self, d: Option<Duration>) {
        self.set_read_timeout(d).unwrap();
    }
}

impl Duplex for UnixStream {
    fn shutdown_write(&self) {
        self.shutdown(Shutdown::Write).unwrap();
    }
    fn set_timeout(&self, d: Option<Duration>) {
        self.set_read_timeout(d).unwrap();
    }
}

/// An address a test listens on or connects to.
#[derive(Clone, Debug)]
enum Addr {
    Tcp(u16),
    Unix(PathBuf),
}

impl Addr {
    fn tcp() -> Addr {
        Addr::Tcp(free_port())
    }

    fn unix(dir: &Path, name: &str) -> Addr {
        Addr::Unix(dir.join(name))
    }

    fn url(&self) -> String {
        match self {
            Addr::Tcp(p) => format!("tcp://127.0.0.1:{p}"),
            Addr::Unix(p) => format!("unix://{}", p.display()),
        }
    }

    fn try_connect(&self) -> std::io::Result<Box<dyn Duplex>> {
        Ok(match self {
            Addr::Tcp(p) => Box::new(TcpStream::connect(("127.0.0.1", *p))?),
            Addr::Unix(path) => Box::new(UnixStream::connect(path)?),
        })
    }

    fn connect(&self) -> Box<dyn Duplex> {
        self.try_connect()
            .unwrap_or_else(|e| panic!("connect {self:?}: {e}"))
    }

    /// Serve every connection on a thread of its own with `handler`.
    fn serve(&self, handler: fn(Box<dyn Duplex>)) {
        match self {
            Addr::Tcp(p) => {
                let l = TcpListener::bind(("127.0.0.1", *p)).unwrap();
                std::thread::spawn(move || {
                    for s in l.incoming().map_while(Result::ok) {
                        std::thread::spawn(move || handler(Box::new(s)));
                    }
                });
            }
            Addr::Unix(path) => {
                let l = UnixListener::bind(path).unwrap();
                std::thread::spawn(move || {
                    for s in l.incoming().map_while(Result::ok) {
                        std::thread::spawn(move || handler(Box::new(s)));
                    }
                });
            }
        }
    }
}

/// Echo until EOF, then half-close.
fn echo(mut s: Box<dyn Duplex>) {
    let mut buf = [0u8; 16384];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
    s.shutdown_write();
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u8)
                .wrapping_mul(31)
                .wrapping_add(seed)
                .rotate_left((i % 7) as u32)
        })
        .collect()
}

fn hash(b: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    h.write(b);
    h.finish()
}

fn read_all(s: &mut dyn Duplex) -> Vec<u8> {
    let mut v = Vec::new();
    s.read_to_end(&mut v).unwrap();
    v
}

/// One round trip through an echo target.
fn ping(s: &mut dyn Duplex, msg: &[u8]) {
    s.write_all(msg).unwrap();
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, msg);
}

const UP_BYTES: usize = 3 << 20;
const DOWN_BYTES: usize = 4 << 20;

/// Target for the half-close checks; the client's first byte says who finishes first.
/// `c` (client first): read the client's bytes to EOF, then answer with their hash and
/// DOWN_BYTES, then close. `s` (server first): send DOWN_BYTES and half-close, then read the
/// client's bytes to EOF and record whether they were right in [`SERVER_CHECKS`].
fn half_close_target(mut s: Box<dyn Duplex>) {
    let mut mode = [0u8; 1];
    s.read_exact(&mut mode).unwrap();
    if mode[0] == b'c' {
        let got = read_all(&mut *s);
        s.write_all(&hash(&got).to_le_bytes()).unwrap();
        s.write_all(&pattern(DOWN_BYTES, 9)).unwrap();
        s.shutdown_write();
    } else {
        s.write_all(&pattern(DOWN_BYTES, 5)).unwrap();
        s.shutdown_write();
        let got = read_all(&mut *s);
        let ok = got.len() == UP_BYTES && hash(&got) == hash(&pattern(UP_BYTES, 3));
        SERVER_CHECKS.lock().unwrap().push(ok);
    }
}

/// Results of the `s` mode of [`half_close_target`]: did the server get the right bytes.
static SERVER_CHECKS: Mutex<Vec<bool>> = Mutex::new(Vec::new());

// ---------------------------------------------------------------------------------------

#[test]
fn all_four_combinations_move_megabytes_exactly_and_carry_half_close_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let combos = [
        (Addr::tcp(), Addr::tcp()),
        (Addr::tcp(), Addr::unix(dir.path(), "t1.sock")),
        (Addr::unix(dir.path(), "l2.sock"), Addr::tcp()),
        (
            Addr::unix(dir.path(), "l3.sock"),
            Addr::unix(dir.path(), "t3.sock"),
        ),
    ];
    for (listen, target) in combos {
        target.serve(half_close_target);
        let fwd = Forward::start(&[&listen.url(), &target.url()]);

        // The client sends everything and shuts its write half; the server answers after
        // seeing EOF, and the client still reads the whole answer.
        let mut c = listen.connect();
        c.write_all(b"c").unwrap();
        let up = pattern(UP_BYTES, 1);
        c.write_all(&up).unwrap();
        c.shutdown_write();
        let mut h = [0u8; 8];
        c.read_exact(&mut h).unwrap();
        assert_eq!(
            u64::from_le_bytes(h),
            hash(&up),
            "the server got the client's bytes"
        );
        let down = read_all(&mut *c);
        assert_eq!(down.len(), DOWN_BYTES, "{listen:?} -> {target:?}");
        assert_eq!(hash(&down), hash(&pattern(DOWN_BYTES, 9)));

        // The reverse: the server finishes first; the client reads to EOF and only then
        // sends its bytes, which still reach the server.
        let before = SERVER_CHECKS.lock().unwrap().len();
        let mut c = listen.connect();
        c.write_all(b"s").unwrap();
        let down = read_all(&mut *c);
        assert_eq!(hash(&down), hash(&pattern(DOWN_BYTES, 5)));
        c.write_all(&pattern(UP_BYTES, 3)).unwrap();
        c.shutdown_write();
        let ok = wait_for(
            "the server to check the client's bytes",
            Duration::from_secs(20),
            || SERVER_CHECKS.lock().unwrap().get(before).copied(),
        );
        assert!(
            ok,
            "{listen:?} -> {target:?}: the server got wrong bytes after half-close"
        );
        drop(fwd);
    }
}

#[test]
fn a_target_that_is_down_closes_clients_at_once_and_logs_once() {
    let dir = tempfile::tempdir().unwrap();
    let target = Addr::unix(dir.path(), "not-yet.sock");
    let listen = Addr::tcp();
    let fwd = Forward::start(&[&listen.url(), &target.url()]);

    for _ in 0..20 {
        let started = Instant::now();
        let mut c = listen.connect();
        c.set_timeout(Some(Duration::from_secs(3)));
        let _ = c.write_all(b"hello");
        let mut buf = [0u8; 8];
        match c.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            other => panic!("client not closed: {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "closed after {:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        fwd.count("is down"),
        1,
        "one line, not one per client:\n{}",
        fwd.log_text()
    );

    // The target comes up: the forwarder serves again and says so.
    target.serve(echo);
    let mut c = listen.connect();
    ping(&mut *c, b"back again");
    fwd.wait_log("answers again", Duration::from_secs(5));
    assert!(
        fwd.logged("19 clients refused since the last message"),
        "{}",
        fwd.log_text()
    );
}

#[test]
fn a_stale_socket_file_is_replaced_and_a_live_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.sock");
    // What a crashed process leaves: a socket file nobody listens on.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let target = Addr::tcp();
    target.serve(echo);
    let listen_arg = format!("UNIX-LISTEN:{},mode=0660,unlink-early,fork", path.display());
    let target_arg = format!(
        "TCP:127.0.0.1:{}",
        match target {
            Addr::Tcp(p) => p,
            Addr::Unix(_) => unreachable!(),
        }
    );
    let mut fwd = Forward::start(&[&listen_arg, &target_arg]);
    assert!(
        fwd.logged("removed stale socket file"),
        "{}",
        fwd.log_text()
    );
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    ping(
        &mut *Addr::Unix(path.clone()).connect(),
        b"through a replaced file",
    );

    // A second forwarder on the live socket must not steal it.
    let out = Command::new(manning_bin())
        .args(["forward", &listen_arg, &target_arg])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another live process"), "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
    ping(
        &mut *Addr::Unix(path.clone()).connect(),
        b"still served by the first",
    );

    fwd.proc.signal(Signal::SIGTERM);
    assert!(fwd.wait_exit(Duration::from_secs(10)).success());
    assert!(!path.exists(), "socket file removed on exit");
}

#[test]
fn sigterm_stops_accepting_keeps_open_connections_through_the_grace_then_cuts_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.sock");
    let listen = Addr::Unix(path.clone());
    let target = Addr::tcp();
    target.serve(echo);
    let mut fwd = Forward::start(&["--grace", "2s", &listen.url(), &target.url()]);
    let mut c = listen.connect();
    ping(&mut *c, b"before");

    let signalled = Instant::now();
    fwd.proc.signal(Signal::SIGTERM);
    fwd.wait_log("draining 1 open connections", Duration::from_secs(5));
    // Not accepting any more: the socket file is gone.
    assert!(!path.exists(), "socket file removed when accepting stops");
    assert!(listen.try_connect().is_err());
    // The open connection goes on working during the grace period.
    ping(&mut *c, b"during the grace period");
    // After it, the connection is cut and the process exits 0.
    c.set_timeout(Some(Duration::from_secs(10)));
    let mut buf = [0u8; 1];
    match c.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("connection not cut: {other:?}"),
    }
    assert!(
        signalled.elapsed() >= Duration::from_millis(1900),
        "cut before the grace ended"
    );
    assert!(fwd.wait_exit(Duration::from_secs(10)).success());
    assert!(fwd.logged("cut 1 connections"), "{}", fwd.log_text());
    assert!(fwd.logged("stopped"));
}

#[test]
fn sigterm_exits_as_soon_as_open_connections_finish() {
    let listen = Addr::tcp();
    let target = Addr::tcp();
    target.serve(echo);
    let mut fwd = Forward::start(&["--grace", "60s", &listen.url(), &target.url()]);
    let mut c = listen.connect();
    ping(&mut *c, b"x");
    fwd.proc.signal(Signal::SIGTERM);
    fwd.wait_log("draining 1 open connections", Duration::from_secs(5));
    ping(&mut *c, b"y");
    let closed = Instant::now();
    c.shutdown_write();
    assert!(read_all(&mut *c).is_empty());
    drop(c);
    assert!(fwd.wait_exit(Duration::from_secs(10)).success());
    assert!(
        closed.elapsed() < Duration::from_secs(10),
        "did not wait for the grace"
    );
    assert!(
        fwd.logged("drained: all 1 connections finished"),
        "{}",
        fwd.log_text()
    );
}

#[test]
fn at_the_connection_limit_new_clients_wait_until_one_closes() {
    let listen = Addr::tcp();
    let target = Addr::tcp();
    target.serve(echo);
    let fwd = Forward::start(&["--max-connections", "2", &listen.url(), &target.url()]);
    let mut a = listen.connect();
    let mut b = listen.connect();
    ping(&mut *a, b"a");
    ping(&mut *b, b"b");
    // The third client gets through the kernel's backlog but is not served yet.
    let mut c = listen.connect();
    c.write_all(b"c").unwrap();
    c.set_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 1];
    let e = c.read(&mut buf).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{e}"
    );
    fwd.wait_log("connection limit of 2 reached", Duration::from_secs(5));
    // One closes: the waiting client is served, its early bytes included.
    drop(a);
    c.set_timeout(Some(Duration::from_secs(10)));
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"c");
    ping(&mut *b, b"b still works");
}

#[test]
fn unknown_options_exit_2_naming_the_option_and_the_address() {
    let out = Command::new(manning_bin())
        .args([
            "forward",
            "TCP-L:5432,fork,bogus=1",
            "UNIX:/run/patroni/proxy.sock",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"bogus\""), "{err}");
    assert!(err.contains("TCP-L:5432,fork,bogus=1"), "{err}");

    let out = Command::new(manning_bin())
        .args(["forward", "TCP-L:5432", "UNIX:/x.sock,retry=3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"retry\"") && err.contains("TARGET"), "{err}");
}

#[test]
fn the_seeds_socat_command_line_works_with_another_port() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("proxy.sock");
    Addr::Unix(sock.clone()).serve(echo);
    let port = free_port();
    let listen = format!("TCP-L:{port},fork,bind=localhost");
    let target = format!("UNIX:{}", sock.display());
    let fwd = Forward::start(&["-dd", &listen, &target]);
    assert!(
        fwd.logged(&format!("listening on tcp://127.0.0.1:{port}")),
        "{}",
        fwd.log_text()
    );
    let mut c = Addr::Tcp(port).connect();
    ping(&mut *c, b"SELECT 1");
}

#[test]
fn postgres_answers_queries_through_the_forwarder() {
    let pg = Postgres::start();
    let sock = pg.socket_dir().join(format!(".s.PGSQL.{}", pg.port));
    let port = free_port();
    let listen = format!("TCP-L:{port},fork,bind=127.0.0.1");
    let target = format!("UNIX-CONNECT:{}", sock.display());
    let _fwd = Forward::start(&["-dd", &listen, &target]);
    let out = Postgres::psql_at(
        "127.0.0.1",
        port,
        "select count(*) from generate_series(1, 100000)",
    )
    .unwrap();
    assert_eq!(out, "100000");
    // A few MB of result rows, in order and complete.
    let rows = Postgres::psql_at(
        "127.0.0.1",
        port,
        "select md5(i::text) from generate_series(1, 100000) i order by i",
    )
    .unwrap();
    let rows: Vec<&str> = rows.lines().collect();
    assert_eq!(rows.len(), 100_000);
    assert!(rows.iter().all(|r| r.len() == 32));
    assert_eq!(rows[0], "c4ca4238a0b923820dcc509a6f75849b"); // md5('1')
    assert_eq!(rows[49_999], "1017bfd4673955ffee4641ad3d481b1c"); // md5('50000')
    assert_eq!(rows[99_999], "14ee22eaba297944c96afdbe5b16c65b"); // md5('100000')
}
