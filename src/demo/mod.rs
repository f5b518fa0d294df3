//! `manning demo`: a whole stack on loopback in one command, for a first look.
//!
//! It starts, as children, in this order and each only once the previous one answers:
//! etcd (in a temporary directory), three `manning supervise` members from a configuration
//! like the seed's (synchronous replication, strict) — `demo-1` bootstraps, `demo-2` and
//! `demo-3` copy it and one becomes its synchronous standby — then `manning proxy` reading
//! an haproxy.cfg like the seed's (one server per member) and following the leader key in
//! etcd (`--etcd`),
//! and `manning forward` on `127.0.0.1:5432` in front of the proxy's UNIX socket — the
//! seed's client path. It prints how to connect and where the status page is, then waits.
//! Ctrl-C (or SIGTERM) stops everything in the reverse order (each supervisor stops its
//! postgres with postgres' own shutdown modes) and removes the directory.
//!
//! It runs as root (postgres then runs as the `postgres` user) or as a normal user
//! (postgres runs as that user).

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::error::usage;

/// Arguments of `manning demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Port where clients connect (`manning forward`, like the seed's localhost:5432). When
    /// it is taken, a free port is used and printed.
    #[arg(long, default_value_t = 5432)]
    pub port: u16,

    /// Port of the proxy's status page (the seed's 7000); a free one when taken.
    #[arg(long, default_value_t = 7000)]
    pub stats_port: u16,

    /// Directory for the demo's files. Default: a new directory under the system's
    /// temporary directory, removed on exit.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Keep the directory (data, logs, configuration) after stopping.
    #[arg(long)]
    pub keep: bool,
}

/// A child process of the demo, with the file its output goes to.
struct Proc {
    name: String,
    /// A `manning supervise`: never SIGKILLed (it must stop postgres itself).
    supervisor: bool,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// `Some(description)` when it has exited.
    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    /// The last lines of its log.
    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGTERM, then wait up to `grace`; SIGKILL only for etcd and manning's data-plane roles
    /// (never for the supervisor, which must stop postgres itself).
    fn stop(&mut self, grace: Duration, may_kill: bool) -> String {
        if let Some(done) = self.exited() {
            return format!("had exited ({done})");
        }
        let _ = kill(self.pid(), Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = self.exited() {
                return format!("stopped ({status})");
            }
            if Instant::now() > deadline {
                if may_kill {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return format!("killed after {} s", grace.as_secs());
                }
                return "still stopping".into();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Resolves on SIGTERM or SIGINT; boxed so the start-up steps can share it.
type ShutdownFuture = std::pin::Pin<Box<dyn Future<Output = crate::signals::Shutdown>>>;

/// How many PostgreSQL members the demo runs.
const MEMBERS: usize = 3;

/// Ports of one member.
#[derive(Debug, Clone, Copy)]
struct MemberPorts {
    pg: u16,
    api: u16,
}

/// Ports and paths of one demo.
struct Plan {
    dir: PathBuf,
    etcd_client: u16,
    etcd_peer: u16,
    /// `demo-1`, `demo-2`, ... in order.
    members: Vec<MemberPorts>,
    proxy_port: u16,
    stats_port: u16,
    client_port: u16,
}

fn member_name(index: usize) -> String {
    format!("demo-{}", index + 1)
}

/// Run the demo until Ctrl-C.
pub fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(demo(args))
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The highest `/usr/lib/postgresql/<N>/bin` with a `postgres` binary.
fn postgres_bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((v, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, d)| d)
}

/// `wanted` when it is free on 127.0.0.1, else a free port.
fn port_or_free(wanted: u16) -> anyhow::Result<(u16, bool)> {
    if wanted != 0 && TcpListener::bind(("127.0.0.1", wanted)).is_ok() {
        return Ok((wanted, true));
    }
    Ok((free_port()?, wanted == 0))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").context("opening /dev/urandom")?,
        &mut buf,
    )?;
    Ok(buf.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

/// Print a progress line without a newline, flushed.
fn step(text: &str) {
    print!("  {text:<44}");
    let _ = std::io::stdout().flush();
}

fn done(since: Instant) {
    println!("ok ({:.1} s)", since.elapsed().as_secs_f64());
}

/// One HTTP/1.0 GET on loopback; `(status, body)`.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::Read;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

async fn demo(args: Args) -> anyhow::Result<()> {
    let mut shutdown: ShutdownFuture = Box::pin(crate::signals::shutdown_signal()?);
    let etcd = find_program("etcd").ok_or_else(|| {
        usage("etcd is not installed: run `make deps` (Debian package etcd-server)")
    })?;
    let pg_bin = postgres_bin_dir().ok_or_else(|| {
        usage("PostgreSQL is not installed: run `make deps` (Debian package postgresql-15)")
    })?;
    let me = std::env::current_exe().context("finding the manning binary")?;
    let root = nix::unistd::geteuid().is_root();

    let (dir, remove_dir) = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            (d.clone(), false)
        }
        None => {
            let d = std::env::temp_dir().join(format!(
                "manning-demo-{}-{}",
                std::process::id(),
                random_hex(3)?
            ));
            std::fs::create_dir(&d).with_context(|| format!("creating {}", d.display()))?;
            (d, !args.keep)
        }
    };
    // The postgres user (when we are root) must reach its data and socket directories.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    let (client_port, client_as_asked) = port_or_free(args.port)?;
    let (stats_port, stats_as_asked) = port_or_free(args.stats_port)?;
    let plan = Plan {
        dir: dir.clone(),
        etcd_client: free_port()?,
        etcd_peer: free_port()?,
        members: (0..MEMBERS)
            .map(|_| {
                Ok(MemberPorts {
                    pg: free_port()?,
                    api: free_port()?,
                })
            })
            .collect::<anyhow::Result<_>>()?,
        proxy_port: free_port()?,
        stats_port,
        client_port,
    };
    println!("manning demo: etcd, {MEMBERS} PostgreSQL members, proxy and forwarder on 127.0.0.1");
    println!("  directory: {}", dir.display());
    if !client_as_asked {
        println!("  port {} is taken; clients use {client_port}", args.port);
    }
    if !stats_as_asked {
        println!(
            "  port {} is taken; the status page uses {stats_port}",
            args.stats_port
        );
    }
    let mut procs: Vec<Proc> = Vec::new();
    let result = start_all(&plan, &etcd, &pg_bin, &me, root, &mut procs, &mut shutdown).await;
    let outcome = match result {
        Ok(()) => {
            print_summary(&plan);
            wait_until_stopped(&mut procs, &mut shutdown).await
        }
        Err(e) => Err(e),
    };
    println!("\nstopping:");
    // Reverse order: clients' path first, postgres (through its supervisor), etcd last.
    for p in procs.iter_mut().rev() {
        let (grace, may_kill) = if p.supervisor {
            (Duration::from_secs(120), false)
        } else {
            (Duration::from_secs(10), true)
        };
        step(&p.name);
        println!("{}", p.stop(grace, may_kill));
    }
    if remove_dir {
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            println!("  could not remove {}: {e}", dir.display());
        }
    } else {
        println!("  kept {}", dir.display());
    }
    outcome
}

async fn start_all(
    plan: &Plan,
    etcd: &Path,
    pg_bin: &Path,
    me: &Path,
    root: bool,
    procs: &mut Vec<Proc>,
    shutdown: &mut ShutdownFuture,
) -> anyhow::Result<()> {
    let dir = &plan.dir;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let spawn = |name: &str, cmd: &mut Command| -> anyhow::Result<Proc> {
        let log = logs.join(format!("{name}.log"));
        let file = std::fs::File::create(&log)?;
        // Its own process group: Ctrl-C in the terminal reaches only the demo, which then
        // stops everything in order (clients' path first, the leader last, etcd after).
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Proc {
            name: name.to_string(),
            supervisor: cmd.get_args().next().is_some_and(|a| a == "supervise"),
            child,
            log,
        })
    };

    println!("\nstarting:");
    // 1. etcd
    let t = Instant::now();
    step("etcd (the DCS)");
    let client_url = format!("http://127.0.0.1:{}", plan.etcd_client);
    let peer_url = format!("http://127.0.0.1:{}", plan.etcd_peer);
    procs.push(spawn(
        "etcd",
        Command::new(etcd)
            .arg("--name=demo")
            .arg(format!("--data-dir={}", dir.join("etcd").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=demo={peer_url}"))
            .arg("--log-level=warn"),
    )?);
    wait_until(procs, shutdown, Duration::from_secs(60), || {
        http_get(plan.etcd_client, "/health").is_some_and(|(s, b)| s == 200 && b.contains("true"))
    })
    .await?;
    done(t);

    // 2. the members: the first bootstraps, the others copy it.
    let t = Instant::now();
    step("PostgreSQL member demo-1 (bootstrap)");
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets)?;
    let superuser_password = random_hex(12)?;
    for (name, value) in [
        ("postgres_admin_password", random_hex(12)?),
        ("patroni_replication_password", random_hex(12)?),
        ("patroni_superuser_password", superuser_password.clone()),
    ] {
        let path = secrets.join(name);
        std::fs::write(&path, format!("{value}\n"))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    let pgpass = dir.join("pgpass");
    std::fs::write(
        &pgpass,
        format!(
            "127.0.0.1:{}:*:postgres:{superuser_password}\n",
            plan.client_port
        ),
    )?;
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600))?;
    let start_member = |index: usize, procs: &mut Vec<Proc>| -> anyhow::Result<()> {
        let name = member_name(index);
        let conf = dir.join(format!("{name}.yml"));
        std::fs::write(&conf, patroni_yml(plan, index, pg_bin, root))?;
        procs.push(spawn(
            &name,
            Command::new(me)
                .arg("supervise")
                .arg(&conf)
                .env("MANNING_SECRETS_DIR", &secrets),
        )?);
        Ok(())
    };
    start_member(0, procs)?;
    let leader_api = plan.members[0].api;
    wait_until(procs, shutdown, Duration::from_secs(180), || {
        http_get(leader_api, "/primary").is_some_and(|(s, _)| s == 200)
    })
    .await?;
    done(t);

    let t = Instant::now();
    let names: Vec<String> = (1..MEMBERS).map(member_name).collect();
    step(&format!("replicas {} (pg_basebackup)", names.join(", ")));
    for index in 1..MEMBERS {
        start_member(index, procs)?;
    }
    // Every replica streams, and one is the synchronous standby (strict mode: until then
    // the leader's commits wait).
    wait_until(procs, shutdown, Duration::from_secs(180), || {
        let apis: Vec<u16> = plan.members[1..].iter().map(|m| m.api).collect();
        apis.iter().all(|api| {
            http_get(*api, "/replica?replication_state=streaming").is_some_and(|(s, _)| s == 200)
        }) && apis
            .iter()
            .any(|api| http_get(*api, "/sync").is_some_and(|(s, _)| s == 200))
    })
    .await?;
    done(t);

    // 3. proxy
    let t = Instant::now();
    step("manning proxy (HAProxy's role)");
    std::fs::write(dir.join("haproxy.cfg"), haproxy_cfg(plan))?;
    procs.push(spawn(
        "proxy",
        Command::new(me)
            .arg("proxy")
            .arg("--haproxy-config")
            .arg(dir.join("haproxy.cfg"))
            // Route by the leader key: a switchover moves clients in milliseconds.
            .arg(format!("--etcd=127.0.0.1:{}", plan.etcd_client))
            .args(["--scope", "demo", "--namespace", "/service"]),
    )?);
    wait_until(procs, shutdown, Duration::from_secs(60), || {
        http_get(plan.stats_port, "/;csv").is_some_and(|(s, b)| {
            s == 200
                && b.lines()
                    .any(|l| l.starts_with("manning,demo-1,") && l.contains(",UP,"))
        })
    })
    .await?;
    done(t);

    // 4. forwarder
    let t = Instant::now();
    step("manning forward (socat's role)");
    procs.push(spawn(
        "forward",
        Command::new(me)
            .arg("forward")
            .arg(format!("TCP-L:{},fork,bind=localhost", plan.client_port))
            .arg(format!("UNIX:{}", dir.join("proxy.sock").display())),
    )?);
    let conninfo = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres password={superuser_password} \
         connect_timeout=2",
        plan.client_port
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        check_children(procs)?;
        if let Ok((client, conn)) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await
        {
            let conn = tokio::spawn(conn);
            let ok = client.simple_query("SELECT 1").await.is_ok();
            drop(client);
            let _ = conn.await;
            if ok {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!("no query got through the forwarder within 60 s");
        }
        tokio::select! {
            _ = shutdown.as_mut() => bail!("interrupted while starting"),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    done(t);
    Ok(())
}

/// Poll `ready` every 100 ms; fail when a child exits, on Ctrl-C, or after `timeout`.
async fn wait_until(
    procs: &mut [Proc],
    shutdown: &mut ShutdownFuture,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        check_children(procs)?;
        if ready() {
            return Ok(());
        }
        if Instant::now() > deadline {
            println!("timed out");
            let last = procs.last().map(|p| p.log_tail(15)).unwrap_or_default();
            bail!(
                "not ready within {} s; last log lines:\n{last}",
                timeout.as_secs()
            );
        }
        tokio::select! {
            _ = shutdown.as_mut() => bail!("interrupted while starting"),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

/// An error naming the first child that exited, with its last log lines.
fn check_children(procs: &mut [Proc]) -> anyhow::Result<()> {
    for p in procs.iter_mut() {
        if let Some(status) = p.exited() {
            println!("failed");
            return Err(anyhow!(
                "{} exited ({status}); last lines of {}:\n{}",
                p.name,
                p.log.display(),
                p.log_tail(15)
            ));
        }
    }
    Ok(())
}

async fn wait_until_stopped(
    procs: &mut [Proc],
    shutdown: &mut ShutdownFuture,
) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            sig = shutdown.as_mut() => {
                println!("\n{sig}: stopping the demo");
                return Ok(());
            }
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                for p in procs.iter_mut() {
                    if let Some(status) = p.exited() {
                        return Err(anyhow!(
                            "{} exited unexpectedly ({status}); last lines of {}:\n{}",
                            p.name, p.log.display(), p.log_tail(15)
                        ));
                    }
                }
            }
        }
    }
}

fn print_summary(plan: &Plan) {
    let dir = plan.dir.display();
    println!("\nready. Connect through the forwarder and the proxy (the seed's client path):");
    println!(
        "  PGPASSFILE={dir}/pgpass psql -h 127.0.0.1 -p {} -U postgres postgres",
        plan.client_port
    );
    println!("status page:  http://127.0.0.1:{}/", plan.stats_port);
    for (i, m) in plan.members.iter().enumerate() {
        println!(
            "{:<13} postgres 127.0.0.1:{}, REST API http://127.0.0.1:{}/patroni",
            format!("{}:", member_name(i)),
            m.pg,
            m.api
        );
    }
    println!(
        "switchover:   curl -s -XPOST -d '{{\"leader\":\"demo-1\",\"candidate\":\"demo-2\"}}' \
         http://127.0.0.1:{}/switchover",
        plan.members[0].api
    );
    println!(
        "etcd:         ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:{} get --prefix /service/demo",
        plan.etcd_client
    );
    println!("logs:         {dir}/logs/");
    println!("Press Ctrl-C to stop everything.");
}

/// Like the seed's patroni.yml (synchronous replication, strict), on loopback, for member
/// `index`.
fn patroni_yml(plan: &Plan, index: usize, pg_bin: &Path, root: bool) -> String {
    let dir = plan.dir.display();
    let name = member_name(index);
    let ports = plan.members[index];
    let user = if root {
        String::new()
    } else {
        format!(
            "manning:\n  user: {}\n",
            nix::unistd::User::from_uid(nix::unistd::geteuid())
                .ok()
                .flatten()
                .map(|u| u.name)
                .unwrap_or_else(|| nix::unistd::geteuid().to_string())
        )
    };
    format!(
        r#"# Generated by `manning demo`: the seed's patroni.yml on loopback, member {name}.
scope: demo
namespace: /service
name: {name}
restapi:
  listen: 127.0.0.1:{api}
  connect_address: 127.0.0.1:{api}
etcd3:
  host: 127.0.0.1:{etcd}
bootstrap:
  dcs:
    ttl: 20
    loop_wait: 2
    retry_timeout: 5
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    synchronous_mode_strict: true
    synchronous_node_count: 1
    postgresql:
      parameters:
        max_connections: 256
      use_pg_rewind: true
      use_slots: true
  initdb:
    - encoding: UTF8
    - data-checksums
  pg_hba:
    - host replication replicator 127.0.0.1/32 md5
    - host all all 0.0.0.0/0 md5
  users:
    admin:
      password: {{{{ secret "postgres_admin_password" }}}}
      options:
        - createrole
        - createdb
postgresql:
  listen: 127.0.0.1:{pg}
  connect_address: 127.0.0.1:{pg}
  data_dir: {dir}/data/{name}
  bin_dir: {bin}
  parameters:
    unix_socket_directories: {dir}/run
  authentication:
    replication:
      username: replicator
      password: {{{{ secret "patroni_replication_password" }}}}
    superuser:
      username: postgres
      password: {{{{ secret "patroni_superuser_password" }}}}
tags:
  nofailover: false
  noloadbalance: false
  clonefrom: false
  nosync: false
{user}"#,
        api = ports.api,
        etcd = plan.etcd_client,
        pg = ports.pg,
        bin = pg_bin.display(),
    )
}

/// Like the seed's haproxy.cfg: stats page, a UNIX socket and a TCP bind to the primary,
/// one server per member with its REST API as check port (what HAProxy would use; the
/// demo's proxy follows the leader key in etcd instead).
fn haproxy_cfg(plan: &Plan) -> String {
    let servers: String = plan
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            format!(
                "    server {} 127.0.0.1:{} maxconn 128 check port {}\n",
                member_name(i),
                m.pg,
                m.api
            )
        })
        .collect();
    format!(
        r#"# Generated by `manning demo`: the seed's haproxy.cfg on loopback.
global
    maxconn 384

defaults
    log global
    mode tcp
    retries 2
    timeout client 30m
    timeout connect 4s
    timeout server 30m
    timeout check 5s

listen stats
    mode http
    bind 127.0.0.1:{stats}
    stats enable
    stats uri /

listen manning
    bind {dir}/proxy.sock
    bind 127.0.0.1:{proxy}
    option httpchk
    http-check expect status 200
    default-server inter 2500ms fall 4 rise 2 on-marked-down shutdown-sessions
{servers}"#,
        stats = plan.stats_port,
        dir = plan.dir.display(),
        proxy = plan.proxy_port,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            dir: PathBuf::from("/tmp/d"),
            etcd_client: 1,
            etcd_peer: 2,
            members: vec![
                MemberPorts { pg: 3, api: 4 },
                MemberPorts { pg: 8, api: 9 },
                MemberPorts { pg: 10, api: 11 },
            ],
            proxy_port: 5,
            stats_port: 6,
            client_port: 7,
        }
    }

    #[test]
    fn generated_patroni_yml_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("s");
        std::fs::create_dir(&secrets).unwrap();
        for n in [
            "postgres_admin_password",
            "patroni_replication_password",
            "patroni_superuser_password",
        ] {
            std::fs::write(secrets.join(n), "pw\n").unwrap();
        }
        for (index, port) in [(0, 3), (2, 10)] {
            let file = dir.path().join("patroni.yml");
            std::fs::write(
                &file,
                patroni_yml(
                    &plan(),
                    index,
                    Path::new("/usr/lib/postgresql/15/bin"),
                    true,
                ),
            )
            .unwrap();
            let loaded = crate::config::load(&crate::config::LoadOptions {
                path: Some(file),
                env: Default::default(),
                secrets_dir: secrets.clone(),
            })
            .unwrap_or_else(|p| panic!("{p}"));
            assert_eq!(loaded.config.name, member_name(index));
            assert_eq!(loaded.config.postgresql.listen.port, port);
        }
    }
}
