//! `manning demo`: the README's first command starts a working stack and Ctrl-C leaves
//! nothing behind, as root and as a normal user.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::member::psql;
use support::*;

/// Every process (pid, command line) whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            out.push((pid, cmdline));
        }
    }
    out
}

fn run_demo(as_postgres_user: bool) {
    let dir = postgres_tempdir();
    let demo_dir = dir.path().join("demo");
    let mut cmd = Command::new(manning_bin());
    cmd.args(["demo", "--port", "0", "--stats-port", "0", "--dir"])
        .arg(&demo_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if as_postgres_user {
        as_postgres(&mut cmd);
    }
    let mut child = cmd.spawn().expect("spawn manning demo");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let mut seen = Vec::new();
    let mut port = None;
    let mut stats = None;
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(180))
            .unwrap_or_else(|_| {
                panic!(
                    "demo did not become ready; output so far:\n{}",
                    seen.join("\n")
                )
            });
        if let Some(rest) = line.split(" -p ").nth(1) {
            port = rest
                .split_whitespace()
                .next()
                .and_then(|p| p.parse::<u16>().ok());
        }
        if let Some(rest) = line.strip_prefix("status page:  http://127.0.0.1:") {
            stats = rest.trim_end_matches('/').parse::<u16>().ok();
        }
        let ready = line.starts_with("Press Ctrl-C");
        seen.push(line);
        if ready {
            break;
        }
    }
    let output = seen.join("\n");
    assert!(output.contains("etcd (the DCS)"), "{output}");
    assert!(
        output.contains("replicas demo-2, demo-3 (pg_basebackup)"),
        "{output}"
    );
    assert!(output.contains("ok ("), "progress is reported: {output}");
    let port = port.unwrap_or_else(|| panic!("no psql port printed:\n{output}"));
    let stats = stats.unwrap_or_else(|| panic!("no status page printed:\n{output}"));

    // The printed psql command works (through forward → proxy → postgres).
    let pgpass = demo_dir.join("pgpass");
    let out = Command::new(require_bin("psql"))
        .args(["-X", "-A", "-t", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args([
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            "SELECT pg_is_in_recovery()",
        ])
        .env("PGPASSFILE", &pgpass)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "f");
    assert!(
        psql(
            "127.0.0.1",
            port,
            "postgres",
            None,
            "CREATE TABLE demo_t(x int)"
        )
        .is_ok()
    );
    // The status page shows the member UP.
    let (status, csv) = http_get(&format!("127.0.0.1:{stats}"), "/;csv").unwrap();
    assert_eq!(status, 200);
    let line = |server: &str| {
        csv.lines()
            .find(|l| l.starts_with(&format!("manning,{server},")))
            .unwrap_or_else(|| panic!("{server} missing:\n{csv}"))
            .to_string()
    };
    assert!(line("demo-1").contains(",UP,"), "{csv}");
    // The replicas are DOWN (the proxy follows the leader key): it never routes to them.
    assert!(line("demo-2").contains(",DOWN,"), "{csv}");
    assert!(line("demo-3").contains(",DOWN,"), "{csv}");

    // Ctrl-C stops everything and leaves nothing running.
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let status = wait_for("the demo to stop", Duration::from_secs(120), || {
        child.try_wait().ok().flatten()
    });
    let errors = errors.join().unwrap();
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(
        status.success(),
        "{status:?}\n{errors}\n{}",
        rest.join("\n")
    );
    let needle = demo_dir.display().to_string();
    let left = processes_mentioning(&needle);
    assert!(left.is_empty(), "processes left behind: {left:?}");
    assert!(
        std::fs::read_dir(&demo_dir).is_ok(),
        "--dir is kept: the user chose it"
    );
}

#[test]
fn demo_as_root() {
    require_root("the demo runs postgres as the postgres user when started as root");
    run_demo(false);
}

#[test]
fn demo_as_a_normal_user() {
    require_root("the test switches to the postgres user to act as a normal user");
    run_demo(true);
}
