//! Test harness shared by the integration tests: real etcd and PostgreSQL 15 processes on
//! free loopback ports, each in its own temporary directory, killed when dropped.
//!
//! Nothing here is a mock. A test that needs a binary (etcd, postgres) or root and cannot get
//! it panics with a message saying what to install (`make deps`); it is never skipped.
#![allow(dead_code)]

pub mod member;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User};

/// Debian's PostgreSQL 15 binaries.
pub const PG_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// Path of the `manning` binary built for this test run.
pub fn manning_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_manning"))
}

/// Find `name` on PATH (or in the PostgreSQL bin dir) or fail the test with a clear message.
pub fn require_bin(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).chain([PathBuf::from(PG_BIN_DIR)]) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("this test needs `{name}` and it is not installed: run `make deps`");
}

/// Fail the test unless running as root (network namespaces, running postgres as `postgres`).
pub fn require_root(why: &str) {
    if !nix::unistd::geteuid().is_root() {
        panic!("this test must run as root ({why}); run `make test` as root");
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Poll `f` every 20 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A temporary directory that the `postgres` user can use (owned by it when we are root).
pub fn postgres_tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("manning-test-")
        .tempdir()
        .expect("create temp dir");
    if nix::unistd::geteuid().is_root() {
        let user = postgres_user();
        nix::unistd::chown(dir.path(), Some(user.uid), Some(user.gid)).expect("chown temp dir");
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod temp dir");
    dir
}

/// The `postgres` system user (installed with the postgresql-15 package).
pub fn postgres_user() -> User {
    User::from_name("postgres")
        .ok()
        .flatten()
        .expect("the `postgres` user does not exist: run `make deps` (installs postgresql-15)")
}

/// Make `cmd` run as the `postgres` user when we are root (postgres refuses to run as root).
pub fn as_postgres(cmd: &mut Command) -> &mut Command {
    if nix::unistd::geteuid().is_root() {
        let user = postgres_user();
        cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        cmd.env("HOME", &user.dir);
    }
    cmd
}

/// A child process that is killed (SIGKILL) and reaped when dropped. For etcd and helper
/// processes only: postgres is stopped with its own shutdown modes (see [`Postgres`]).
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }
    pub fn signal(&self, sig: Signal) {
        let _ = kill(self.pid(), sig);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A single-member etcd on free loopback ports, data in a temp dir.
pub struct Etcd {
    pub proc: Proc,
    /// `127.0.0.1:PORT` of the client listener.
    pub endpoint: String,
    pub client_url: String,
    pub dir: tempfile::TempDir,
}

impl Etcd {
    /// Settings for a `Dcs` client of this etcd: namespace `/manning`, scope `enterprises`.
    pub fn dcs_settings(&self, name: &str, ttl_s: u64, retry_s: u64) -> manning::dcs::DcsSettings {
        manning::dcs::DcsSettings {
            endpoints: vec![self.endpoint.clone()],
            tls: None,
            username: None,
            password: None,
            namespace: "/manning".into(),
            scope: "enterprises".into(),
            member_name: name.into(),
            ttl: Duration::from_secs(ttl_s),
            retry_timeout: Duration::from_secs(retry_s),
        }
    }

    pub fn start() -> Etcd {
        let etcd = require_bin("etcd");
        let dir = tempfile::Builder::new()
            .prefix("manning-etcd-")
            .tempdir()
            .expect("temp dir");
        let client_port = free_port();
        let peer_port = free_port();
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("etcd log");
        let child = Command::new(etcd)
            .arg("--name=test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=test={peer_url}"))
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        let etcd = Etcd {
            proc: Proc {
                child,
                name: "etcd".into(),
            },
            endpoint: format!("127.0.0.1:{client_port}"),
            client_url,
            dir,
        };
        let ep = etcd.endpoint.clone();
        wait_for("etcd /health", Duration::from_secs(30), || {
            http_get(&ep, "/health")
                .ok()
                .filter(|(status, body)| *status == 200 && body.contains("true"))
        });
        etcd
    }

    /// Freeze etcd (SIGSTOP): connections stay open but nothing answers. Returns once every
    /// thread has stopped (SIGSTOP is asynchronous: a thread busy in a syscall such as fsync
    /// stops only when it returns, and could still answer a request meanwhile).
    pub fn freeze(&self) {
        self.proc.signal(Signal::SIGSTOP);
        wait_until_stopped(self.proc.pid());
    }

    /// Resume a frozen etcd (SIGCONT).
    pub fn thaw(&self) {
        self.proc.signal(Signal::SIGCONT);
    }

    /// Run `etcdctl` against this etcd and return its stdout.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = Command::new(require_bin("etcdctl"))
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.client_url))
            .args(args)
            .output()
            .expect("run etcdctl");
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The value of one key, or None.
    pub fn get(&self, key: &str) -> Option<String> {
        let out = self.ctl(&["get", "--print-value-only", key]);
        if out.is_empty() {
            None
        } else {
            Some(out.strip_suffix('\n').unwrap_or(&out).to_string())
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        // A frozen process does not die of SIGKILL until continued on some kernels' views
        // of job control; continue it first so the drop never leaves a stopped etcd behind.
        self.thaw();
    }
}

/// A plain PostgreSQL 15 server for data-plane tests (no manning involved): initdb with
/// trust authentication, listening on 127.0.0.1:`port` and a UNIX socket in its temp dir.
pub struct Postgres {
    pub proc: Proc,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Postgres {
    pub fn start() -> Postgres {
        let dir = postgres_tempdir();
        let data = dir.path().join("data");
        let port = free_port();
        let out = as_postgres(
            Command::new(require_bin("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"]),
        )
        .output()
        .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let log = std::fs::File::create(dir.path().join("postgres.log")).expect("pg log");
        if nix::unistd::geteuid().is_root() {
            let u = postgres_user();
            let _ = nix::unistd::chown(&dir.path().join("postgres.log"), Some(u.uid), Some(u.gid));
        }
        let child = as_postgres(
            Command::new(require_bin("postgres"))
                .arg("-D")
                .arg(&data)
                .arg("-c")
                .arg(format!("port={port}"))
                .arg("-c")
                .arg("listen_addresses=127.0.0.1")
                .arg("-c")
                .arg(format!("unix_socket_directories={}", dir.path().display()))
                .arg("-c")
                .arg("fsync=off")
                .arg("-c")
                .arg("max_connections=300"),
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup log"))
        .stderr(log)
        .spawn()
        .expect("spawn postgres");
        let pg = Postgres {
            proc: Proc {
                child,
                name: "postgres".into(),
            },
            port,
            dir,
        };
        let sockdir = pg.dir.path().to_path_buf();
        wait_for(
            "postgres to accept connections",
            Duration::from_secs(60),
            || {
                Command::new(require_bin("pg_isready"))
                    .arg("-h")
                    .arg(&sockdir)
                    .arg("-p")
                    .arg(port.to_string())
                    .stdout(Stdio::null())
                    .status()
                    .ok()
                    .filter(|s| s.success())
            },
        );
        pg
    }

    /// The UNIX socket directory.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Run one SQL statement through psql over TCP at `host:port` and return its output.
    pub fn psql_at(host: &str, port: u16, sql: &str) -> Result<String, String> {
        let out = Command::new(require_bin("psql"))
            .args([
                "-X", "-A", "-t", "-U", "postgres", "-d", "postgres", "-h", host,
            ])
            .args(["-p", &port.to_string(), "-c", sql])
            .env("PGCONNECT_TIMEOUT", "5")
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Fast shutdown (SIGINT), postgres' own mode; then reap.
        self.proc.signal(Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.proc.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.proc.signal(Signal::SIGQUIT);
        let _ = self.proc.child.wait();
    }
}

/// Minimal HTTP/1.0 GET for probing test servers: returns (status, body).
pub fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    http_request(addr, "GET", path)
}

/// Minimal HTTP/1.0 request with an empty body: returns (status, body).
pub fn http_request(addr: &str, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let sock: SocketAddr = addr
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")))?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, buf.clone()))?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Where `make deps` installs Patroni from PyPI (used only to check compatibility with
/// Patroni's own tools and code paths).
pub const PATRONI_VENV: &str = "/opt/manning-test/patroni";

fn patroni_venv_bin(name: &str) -> PathBuf {
    let p = Path::new(PATRONI_VENV).join("bin").join(name);
    if !p.is_file() {
        panic!(
            "this test needs Patroni's `{name}` ({}) and it is not installed: run `make deps`",
            p.display()
        );
    }
    p
}

/// Patroni's `patronictl` from the test venv.
pub fn patronictl() -> PathBuf {
    patroni_venv_bin("patronictl")
}

/// A patronictl.yaml in `dir` pointing at the test etcd (scope `enterprises`).
pub fn ctl_config(etcd: &Etcd, dir: &Path) -> std::path::PathBuf {
    let path = dir.join("patronictl.yaml");
    std::fs::write(
        &path,
        format!(
            "scope: enterprises\nnamespace: /manning\netcd3:\n  hosts: {}\n",
            etcd.endpoint
        ),
    )
    .expect("write patronictl.yaml");
    path
}

/// `patronictl -c CONFIG ARGS...`: its stdout, or stdout and stderr when it fails.
pub fn try_patronictl(config: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(patronictl())
        .arg("-c")
        .arg(config)
        .args(args)
        .env("PAGER", "cat")
        .output()
        .expect("run patronictl");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// `patronictl -c CONFIG ARGS...`, failing the test when it exits non-zero.
pub fn run_patronictl(config: &Path, args: &[&str]) -> String {
    try_patronictl(config, args).unwrap_or_else(|e| panic!("patronictl {args:?} failed: {e}"))
}

/// The test venv's python, with `patroni` importable.
pub fn patroni_python() -> PathBuf {
    patroni_venv_bin("python")
}

/// Spawn one etcd member with its log in `dir/etcd.log`; `extra` are further flags.
fn spawn_etcd_member(name: &str, dir: &Path, extra: &[String]) -> Proc {
    let log = std::fs::File::create(dir.join("etcd.log")).expect("etcd log");
    let child = Command::new(require_bin("etcd"))
        .arg(format!("--name={name}"))
        .arg(format!("--data-dir={}", dir.join("data").display()))
        .arg("--log-level=warn")
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup log"))
        .stderr(log)
        .spawn()
        .expect("spawn etcd");
    Proc {
        child,
        name: name.to_string(),
    }
}

/// A multi-member etcd cluster on loopback, for tests where one member stops answering
/// while the others keep the cluster available.
pub struct EtcdCluster {
    /// Members in order; `members[i].endpoint` is its `127.0.0.1:PORT`.
    pub members: Vec<Etcd>,
}

impl EtcdCluster {
    pub fn start(size: usize) -> EtcdCluster {
        let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
        let initial = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("manning-test-{}", std::process::id());
        let mut members = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let dir = tempfile::Builder::new()
                .prefix("manning-etcd-")
                .tempdir()
                .expect("temp dir");
            let client_url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let proc = spawn_etcd_member(
                &format!("m{i}"),
                dir.path(),
                &[
                    format!("--listen-client-urls={client_url}"),
                    format!("--advertise-client-urls={client_url}"),
                    format!("--listen-peer-urls={peer_url}"),
                    format!("--initial-advertise-peer-urls={peer_url}"),
                    format!("--initial-cluster={initial}"),
                    format!("--initial-cluster-token={token}"),
                ],
            );
            members.push(Etcd {
                proc,
                endpoint: format!("127.0.0.1:{client}"),
                client_url,
                dir,
            });
        }
        for m in &members {
            let ep = m.endpoint.clone();
            wait_for(
                "etcd cluster member /health",
                Duration::from_secs(60),
                || {
                    http_get(&ep, "/health")
                        .ok()
                        .filter(|(status, body)| *status == 200 && body.contains("true"))
                },
            );
        }
        EtcdCluster { members }
    }

    /// `host:port` of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.endpoint.clone()).collect()
    }
}

/// A single-member etcd serving clients over TLS with a throw-away CA made by `openssl`.
pub struct TlsEtcd {
    pub etcd: Etcd,
    /// CA that signed the server and client certificates.
    pub cacert: PathBuf,
    /// A client certificate and key signed by the CA.
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsEtcd {
    /// `client_cert_auth`: etcd requires a client certificate signed by the CA.
    pub fn start(client_cert_auth: bool) -> TlsEtcd {
        let dir = tempfile::Builder::new()
            .prefix("manning-etcd-tls-")
            .tempdir()
            .expect("temp dir");
        let p = |n: &str| dir.path().join(n);
        let openssl = require_bin("openssl");
        let run = |args: &[&str]| {
            let out = Command::new(&openssl)
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=manning-test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]);
        std::fs::write(
            p("san.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
        )
        .expect("write ext");
        for who in ["server", "client"] {
            run(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={who}"),
                "-keyout",
                &format!("{who}.key"),
                "-out",
                &format!("{who}.csr"),
            ]);
            run(&[
                "x509",
                "-req",
                "-in",
                &format!("{who}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "san.ext",
                "-out",
                &format!("{who}.pem"),
            ]);
        }
        let client_port = free_port();
        let peer_port = free_port();
        let client_url = format!("https://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let mut args = vec![
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=test={peer_url}"),
            format!("--cert-file={}", p("server.pem").display()),
            format!("--key-file={}", p("server.key").display()),
            format!("--trusted-ca-file={}", p("ca.pem").display()),
        ];
        if client_cert_auth {
            args.push("--client-cert-auth".into());
        }
        let proc = spawn_etcd_member("test", dir.path(), &args);
        let etcd = Etcd {
            proc,
            endpoint: format!("127.0.0.1:{client_port}"),
            client_url,
            dir,
        };
        let t = TlsEtcd {
            cacert: etcd.dir.path().join("ca.pem"),
            cert: etcd.dir.path().join("client.pem"),
            key: etcd.dir.path().join("client.key"),
            etcd,
        };
        wait_for("etcd over TLS to answer", Duration::from_secs(30), || {
            t.ctl(&["endpoint", "health"]).ok()
        });
        t
    }

    /// Run `etcdctl` over TLS with the client certificate.
    pub fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(require_bin("etcdctl"))
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.etcd.client_url))
            .arg(format!("--cacert={}", self.cacert.display()))
            .arg(format!("--cert={}", self.cert.display()))
            .arg(format!("--key={}", self.key.display()))
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

/// Wait until every thread of `pid` is stopped (state `T` or `t` in /proc).
pub fn wait_until_stopped(pid: Pid) {
    let tasks = format!("/proc/{pid}/task");
    wait_for(
        "the process to stop after SIGSTOP",
        Duration::from_secs(5),
        || {
            let entries = std::fs::read_dir(&tasks).ok()?;
            for entry in entries {
                let stat = std::fs::read_to_string(entry.ok()?.path().join("stat")).ok()?;
                // The state follows the parenthesised command name.
                let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
                if state != "T" && state != "t" {
                    return None;
                }
            }
            Some(())
        },
    );
}

/// Samples every process's `/proc/PID/cmdline` and `/proc/PID/environ` in a background
/// thread, looking for secrets, until [`SecretWatch::finish`]. Proves that passwords never
/// appear in argv or the environment of anything started while it runs.
pub struct SecretWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<(usize, Vec<String>)>>,
}

impl SecretWatch {
    pub fn start(secrets: Vec<String>) -> SecretWatch {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut samples = 0usize;
            let mut hits = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                samples += 1;
                for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                    let name = entry.file_name();
                    if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                        continue;
                    }
                    for file in ["cmdline", "environ"] {
                        let Ok(bytes) = std::fs::read(entry.path().join(file)) else {
                            continue;
                        };
                        for s in &secrets {
                            if bytes.windows(s.len()).any(|w| w == s.as_bytes()) {
                                let comm = std::fs::read_to_string(entry.path().join("comm"))
                                    .unwrap_or_default();
                                hits.push(format!(
                                    "pid {} ({}) {file}",
                                    name.to_string_lossy(),
                                    comm.trim()
                                ));
                            }
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            (samples, hits)
        });
        SecretWatch {
            stop,
            handle: Some(handle),
        }
    }

    /// Stop sampling; returns (number of sweeps over /proc, where secrets were seen).
    pub fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle
            .take()
            .map(|h| h.join().expect("secret watch thread"))
            .unwrap_or_default()
    }
}

impl Drop for SecretWatch {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The real uid of a process (from /proc/PID/status).
pub fn process_uid(pid: i32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}
/// A stand-in for a Patroni member's REST API as HAProxy sees it: answers every request
/// with a bare status line (`HTTP/1.0 200 OK\r\n\r\n`, as Patroni answers `OPTIONS /`) and
/// closes. The test changes the code at any time with [`StatusResponder::set`].
pub struct StatusResponder {
    pub port: u16,
    code: std::sync::Arc<std::sync::atomic::AtomicU16>,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl StatusResponder {
    /// Listen on a free loopback port, answering `code`.
    pub fn start(code: u16) -> StatusResponder {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind responder");
        let port = listener.local_addr().expect("responder addr").port();
        let code = Arc::new(AtomicU16::new(code));
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, h, s) = (code.clone(), hits.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf);
                h.fetch_add(1, Ordering::SeqCst);
                let code = c.load(Ordering::SeqCst);
                let reason = if code == 200 {
                    "OK"
                } else {
                    "Service Unavailable"
                };
                let _ = write!(conn, "HTTP/1.0 {code} {reason}\r\n\r\n");
            }
        });
        StatusResponder {
            port,
            code,
            hits,
            stop,
        }
    }

    /// Answer `code` from now on.
    pub fn set(&self, code: u16) {
        self.code.store(code, std::sync::atomic::Ordering::SeqCst);
    }

    /// Requests answered so far.
    pub fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for StatusResponder {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so the thread sees the flag and ends.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}
