//! Init-system duties, checked for real: the reaper as a namespace's PID 1 (under
//! `unshare --pid --fork --mount-proc`) and as a subreaper, signal handling as PID 1, and the
//! privilege drop.
//!
//! This test binary has its own `main` (`harness = false` in Cargo.toml) because the
//! scenarios re-execute it: with `MANNING_PID1_SCENARIO` set, `main` runs one scenario as
//! the process under test before anything else starts. libtest would put its own threads
//! into that process (PID 1 would not be our code alone, and dropping privileges requires a
//! single-threaded process).
//!
//! The parent process itself uses the reaper too, so every child here is started through
//! it — never through `std::process::Command::output`, whose status the reaper would reap.

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use manning::init::pid1::{InitEvent, InitSignals};
use manning::init::privileges::{self, Dirs, PrivilegeError, RunAs};
use manning::init::reaper::{self, OutputStream, Reaper, RunError};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use support::*;

const SCENARIO: &str = "MANNING_PID1_SCENARIO";
const SCENARIO_DIR: &str = "MANNING_PID1_DIR";

type Test = (&'static str, fn());

const TESTS: &[Test] = &[
    (
        "reaper_statuses_reach_their_owner",
        reaper_statuses_reach_their_owner,
    ),
    (
        "reaper_output_captures_streams_and_lines",
        reaper_output_captures_streams_and_lines,
    ),
    (
        "reaper_output_times_out_and_stops_the_command",
        reaper_output_times_out,
    ),
    (
        "reaper_output_survives_grandchild_holding_pipes",
        reaper_output_grandchild,
    ),
    ("reaper_children_never_get_private_env", reaper_private_env),
    ("reaper_spawn_failure_is_reported", reaper_spawn_failure),
    (
        "pid1_reaps_orphans_and_keeps_own_statuses",
        pid1_reaps_orphans,
    ),
    (
        "pid1_handles_signals_and_waits_for_its_child",
        pid1_handles_sigterm,
    ),
    (
        "subreaper_adopts_and_reaps_orphans",
        subreaper_reaps_orphans,
    ),
    ("privileges_drop_for_the_whole_process", privileges_drop),
    (
        "privileges_drop_refuses_when_multithreaded",
        privileges_refuse_multithreaded,
    ),
];

fn main() -> ExitCode {
    if let Ok(scenario) = std::env::var(SCENARIO) {
        return ExitCode::from(run_scenario(&scenario));
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in TESTS {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let exact = args.iter().any(|a| a == "--exact");
    let selected: Vec<&Test> = TESTS
        .iter()
        .filter(|(name, _)| {
            filters.is_empty()
                || filters.iter().any(|f| {
                    if exact {
                        name == f
                    } else {
                        name.contains(f.as_str())
                    }
                })
        })
        .collect();
    println!("\nrunning {} tests", selected.len());
    let mut failed = Vec::new();
    for (name, test) in &selected {
        let started = Instant::now();
        let result = std::panic::catch_unwind(test);
        let verdict = if result.is_ok() { "ok" } else { "FAILED" };
        println!(
            "test {name} ... {verdict} ({:.1}s)",
            started.elapsed().as_secs_f64()
        );
        if result.is_err() {
            failed.push(*name);
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        selected.len() - failed.len(),
        failed.len()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        println!("failures: {failed:?}");
        ExitCode::FAILURE
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn sh(script: &str) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(script);
    cmd
}

// ---------------------------------------------------------------------------------------
// The reaper in this (ordinary, subreaper) process.

fn reaper_statuses_reach_their_owner() {
    let reaper = Reaper::install().unwrap();
    runtime().block_on(async {
        let mut handles = Vec::new();
        for code in 0..40 {
            // Some exit at once (before the spawner could have registered them if the
            // registry lock did not cover fork+register), some a moment later.
            let script = if code % 2 == 0 {
                format!("exit {code}")
            } else {
                format!("sleep 0.0{}; exit {code}", code % 10)
            };
            handles.push((code, reaper.spawn(sh(&script)).unwrap()));
        }
        for (code, h) in handles {
            assert_eq!(h.wait().await.code(), Some(code));
            assert_eq!(h.try_status().and_then(|s| s.code()), Some(code));
            assert!(
                !h.signal(Signal::SIGTERM).unwrap(),
                "a reaped child is never signalled (its pid may be reused)"
            );
        }
        assert!(reaper.live_children().is_empty());
    });
}

fn reaper_output_captures_streams_and_lines() {
    runtime().block_on(async {
        let cmd = sh("echo out1; echo err1 >&2; printf 'out2'; exit 3");
        let mut lines = Vec::new();
        let out = reaper::output_lines(cmd, Duration::from_secs(10), |s, l| {
            lines.push((s, l.to_string()))
        })
        .await
        .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out1\nout2");
        assert_eq!(out.stderr_tail(5), "err1");
        assert!(lines.contains(&(OutputStream::Stdout, "out1".into())));
        assert!(lines.contains(&(OutputStream::Stdout, "out2".into())));
        assert!(lines.contains(&(OutputStream::Stderr, "err1".into())));
    });
}

fn reaper_output_times_out() {
    runtime().block_on(async {
        let started = Instant::now();
        let err = reaper::output(
            sh("echo started; exec sleep 30"),
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        match err {
            RunError::Timeout { partial, .. } => {
                assert_eq!(partial.stdout, b"started\n");
                assert_eq!(partial.status.signal(), Some(libc::SIGTERM));
            }
            other => panic!("expected a timeout, got {other}"),
        }
    });
}

fn reaper_output_grandchild() {
    runtime().block_on(async {
        // The background sleep keeps stdout open after the shell exits.
        let started = Instant::now();
        let out = reaper::output(sh("sleep 20 & echo done"), Duration::from_secs(10))
            .await
            .unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, b"done\n");
        assert!(started.elapsed() < Duration::from_secs(8));
    });
}

fn reaper_private_env() {
    runtime().block_on(async {
        let mut cmd = Command::new("/usr/bin/env");
        cmd.env("NOTIFY_SOCKET", "/run/systemd/notify")
            .env("WATCHDOG_USEC", "1000")
            .env("WATCHDOG_PID", "1")
            .env("LISTEN_FDS", "1")
            .env("KEEP_ME", "yes");
        let out = reaper::output(cmd, Duration::from_secs(10)).await.unwrap();
        let env = String::from_utf8_lossy(&out.stdout);
        assert!(env.contains("KEEP_ME=yes"), "{env}");
        for private in [
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
            "LISTEN_FDS",
        ] {
            assert!(!env.contains(private), "{private} leaked: {env}");
        }
    });
}

fn reaper_spawn_failure() {
    runtime().block_on(async {
        let cmd = Command::new("/nonexistent/manning-test-binary");
        match reaper::output(cmd, Duration::from_secs(1)).await {
            Err(RunError::Spawn { program, .. }) => assert!(program.contains("nonexistent")),
            other => panic!("expected a spawn error, got {other:?}"),
        }
    });
}

// ---------------------------------------------------------------------------------------
// Scenarios run in a re-executed copy of this binary.

fn rerun(scenario: &str, in_pid_namespace: bool) -> Command {
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = if in_pid_namespace {
        let mut c = Command::new(require_bin("unshare"));
        c.args(["--pid", "--fork", "--mount-proc"]).arg(exe);
        c
    } else {
        Command::new(exe)
    };
    cmd.env(SCENARIO, scenario);
    cmd
}

fn run_scenario(name: &str) -> u8 {
    let result = match name {
        "orphans" => scenario_orphans(),
        "sigterm" => scenario_sigterm(),
        "subreaper" => scenario_subreaper(),
        "drop" => scenario_drop(),
        other => Err(format!("unknown scenario {other}")),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            println!("SCENARIO ERROR: {e}");
            1
        }
    }
}

/// State letters of every process in /proc (for zombie checks), as (pid, state, ppid, comm).
fn processes() -> Vec<(i32, char, i32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = rest.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        out.push((pid, state, ppid, comm));
    }
    out
}

fn scenario_orphans() -> Result<u8, String> {
    let reaper = Reaper::install().map_err(|e| e.to_string())?;
    let rt = runtime();
    rt.block_on(async {
        let mut signals = InitSignals::install(&reaper).map_err(|e| e.to_string())?;
        println!("pid={}", std::process::id());
        // Orphan makers: each shell starts two background sleeps and exits at once, so the
        // sleeps are reparented to us (PID 1).
        for _ in 0..10 {
            reaper
                .spawn(sh("(sleep 0.4 &); (sleep 0.5 &); exit 0"))
                .map_err(|e| e.to_string())?;
        }
        // Our own children, exiting while orphans are being reaped around them.
        let mut own = Vec::new();
        for code in 1..=30 {
            let script = format!("sleep 0.{}; exit {code}", code % 7);
            own.push((code, reaper.spawn(sh(&script)).map_err(|e| e.to_string())?));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let adopted = processes()
            .iter()
            .filter(|(_, _, ppid, comm)| *ppid == 1 && comm == "sleep")
            .count();
        println!("adopted_sleeps={adopted}");
        let mut statuses_ok = true;
        for (code, h) in own {
            let status = h.wait().await;
            if status.code() != Some(code) {
                println!("status mismatch: expected {code}, got {status}");
                statuses_ok = false;
            }
        }
        println!("statuses_ok={statuses_ok}");
        // Let every orphan exit and be reaped.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut child_events = 0;
        while let Ok(ev) = tokio::time::timeout(Duration::from_millis(50), signals.recv()).await {
            if ev == InitEvent::Child {
                child_events += 1;
            }
        }
        println!("child_events={child_events}");
        let zombies: Vec<_> = processes()
            .into_iter()
            .filter(|(_, state, _, _)| *state == 'Z')
            .collect();
        println!("zombies={}", zombies.len());
        let others = processes().iter().filter(|(pid, ..)| *pid != 1).count();
        println!("other_processes={others}");
        Ok(if statuses_ok && zombies.is_empty() {
            0
        } else {
            1
        })
    })
}

fn pid1_reaps_orphans() {
    require_root("unshare --pid needs root");
    runtime().block_on(async {
        let out = reaper::output(rerun("orphans", true), Duration::from_secs(60))
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("pid=1\n"), "scenario must run as PID 1");
        let adopted: usize = field(&stdout, "adopted_sleeps").parse().unwrap();
        assert!(adopted > 0, "the orphaned sleeps were reparented to PID 1");
        assert!(stdout.contains("statuses_ok=true"));
        assert!(stdout.contains("zombies=0"));
        assert!(stdout.contains("other_processes=0"));
        let events: usize = field(&stdout, "child_events").parse().unwrap();
        assert!(events > 0, "SIGCHLD turned into Child events");
        assert_eq!(out.status.code(), Some(0));
    });
}

fn field<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name}= in output:\n{text}"))
}

fn scenario_sigterm() -> Result<u8, String> {
    let reaper = Reaper::install().map_err(|e| e.to_string())?;
    runtime().block_on(async {
        let mut signals = InitSignals::install(&reaper).map_err(|e| e.to_string())?;
        // Stand-in for the postmaster: takes a second to shut down after SIGTERM.
        let mut cmd = sh("trap 'sleep 1; exit 0' TERM; echo armed; while :; do sleep 0.05; done");
        cmd.stdout(Stdio::piped());
        let (child, pipes) = reaper.spawn_with_pipes(cmd).map_err(|e| e.to_string())?;
        let mut armed = String::new();
        BufReader::new(pipes.stdout.ok_or("no stdout")?)
            .read_line(&mut armed)
            .map_err(|e| e.to_string())?;
        if armed.trim() != "armed" {
            return Err(format!("stand-in did not start: {armed:?}"));
        }
        println!("READY pid={}", std::process::id());
        loop {
            match signals.recv().await {
                InitEvent::Terminate => {
                    println!("GOT SIGTERM");
                    let stop = Instant::now();
                    child.signal(Signal::SIGTERM).map_err(|e| e.to_string())?;
                    // Never exit while the child lives.
                    reaper.wait_all_children().await;
                    let status = child.try_status().ok_or("child still running")?;
                    println!(
                        "CHILD EXITED code={:?} after_ms={}",
                        status.code(),
                        stop.elapsed().as_millis()
                    );
                    return Ok(0);
                }
                InitEvent::Child => continue,
                InitEvent::Reload => println!("GOT SIGHUP"),
                InitEvent::Quit => println!("GOT SIGQUIT"),
                InitEvent::Interrupt => println!("GOT SIGINT"),
            }
        }
    })
}

fn pid1_handles_sigterm() {
    require_root("unshare --pid needs root");
    let reaper = Reaper::install().unwrap();
    let mut cmd = rerun("sigterm", true);
    cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let (unshare, pipes) = reaper.spawn_with_pipes(cmd).unwrap();
    let mut lines = BufReader::new(pipes.stdout.unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert_eq!(first, "READY pid=1");
    // The PID-1 process is unshare's only child.
    let children_file = format!("/proc/{0}/task/{0}/children", unshare.pid());
    let inner: i32 = wait_for("the namespace's PID 1", Duration::from_secs(5), || {
        std::fs::read_to_string(&children_file)
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
    });
    // HUP, QUIT and INT reach PID 1 as events (a PID 1 without handlers would drop them).
    for (sig, line) in [
        (Signal::SIGHUP, "GOT SIGHUP"),
        (Signal::SIGQUIT, "GOT SIGQUIT"),
        (Signal::SIGINT, "GOT SIGINT"),
    ] {
        nix::sys::signal::kill(Pid::from_raw(inner), sig).unwrap();
        assert_eq!(lines.next().unwrap().unwrap(), line);
    }
    let sent = Instant::now();
    nix::sys::signal::kill(Pid::from_raw(inner), Signal::SIGTERM).unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = unshare.wait_blocking();
    let text = rest.join("\n");
    println!("{text}");
    assert!(rest.iter().any(|l| l == "GOT SIGTERM"), "{text}");
    let exited = rest
        .iter()
        .find(|l| l.starts_with("CHILD EXITED"))
        .unwrap_or_else(|| panic!("PID 1 exited before its child: {text}"));
    assert!(exited.contains("code=Some(0)"), "{exited}");
    let after_ms: u64 = exited.rsplit("after_ms=").next().unwrap().parse().unwrap();
    assert!(
        after_ms >= 900,
        "PID 1 waited for the child's own shutdown: {exited}"
    );
    assert!(sent.elapsed() >= Duration::from_millis(900));
    assert_eq!(status.code(), Some(0), "clean shutdown on SIGTERM exits 0");
}

fn scenario_subreaper() -> Result<u8, String> {
    let reaper = Reaper::install().map_err(|e| e.to_string())?;
    runtime().block_on(async {
        println!("subreaper={}", reaper.is_subreaper());
        let out = reaper::output(
            sh("sleep 0.5 >/dev/null 2>&1 & echo $!"),
            Duration::from_secs(10),
        )
        .await
        .map_err(|e| e.to_string())?;
        let orphan: i32 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|e| format!("{e}"))?;
        let ppid = processes()
            .into_iter()
            .find(|(pid, ..)| *pid == orphan)
            .map(|(_, _, ppid, _)| ppid);
        println!(
            "orphan_ppid_is_us={}",
            ppid == Some(std::process::id() as i32)
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let gone = !Path::new(&format!("/proc/{orphan}")).exists();
        println!("orphan_reaped={gone}");
        Ok(0)
    })
}

fn subreaper_reaps_orphans() {
    runtime().block_on(async {
        let out = reaper::output(rerun("subreaper", false), Duration::from_secs(60))
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        println!("{stdout}");
        assert_eq!(out.status.code(), Some(0));
        assert!(stdout.contains("subreaper=true"));
        assert!(stdout.contains("orphan_ppid_is_us=true"), "{stdout}");
        assert!(stdout.contains("orphan_reaped=true"), "{stdout}");
    });
}

fn scenario_drop() -> Result<u8, String> {
    let base = PathBuf::from(std::env::var(SCENARIO_DIR).map_err(|e| e.to_string())?);
    let run_as = RunAs::for_postgres(None).map_err(|e| e.to_string())?;
    let dirs = Dirs {
        data_dir: base.join("volume/data"),
        socket_dirs: vec![base.join("run/postgresql")],
        socket_dir_mode: 0o2775,
        pgpass: Some(base.join("home/pgpass")),
    };
    privileges::prepare_dirs(&run_as, &dirs).map_err(|e| e.to_string())?;
    let root_owned = base.join("root-owned");
    std::fs::create_dir(&root_owned).map_err(|e| e.to_string())?;
    std::fs::set_permissions(&root_owned, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    privileges::drop_privileges(&run_as).map_err(|e| e.to_string())?;
    // As the user: preparing again checks instead of changing, and says what is wrong.
    println!(
        "again_as_user_ok={}",
        privileges::prepare_dirs(&run_as, &dirs).is_ok()
    );
    let mut bad = dirs.clone();
    bad.socket_dirs = vec![root_owned];
    match privileges::prepare_dirs(&run_as, &bad) {
        Err(e) => println!("root_owned_socket_dir_error={e}"),
        Ok(()) => println!("root_owned_socket_dir_error=none"),
    }
    println!(
        "uid={} euid={} gid={} egid={}",
        nix::unistd::getuid(),
        nix::unistd::geteuid(),
        nix::unistd::getgid(),
        nix::unistd::getegid()
    );
    println!(
        "regain_root={}",
        nix::unistd::setuid(nix::unistd::Uid::from_raw(0)).is_ok()
    );
    // Children started afterwards run as the same user.
    let reaper = Reaper::install().map_err(|e| e.to_string())?;
    let _ = reaper;
    let out = runtime()
        .block_on(reaper::output(
            Command::new("/usr/bin/id"),
            Duration::from_secs(10),
        ))
        .map_err(|e| e.to_string())?;
    println!("child_id={}", String::from_utf8_lossy(&out.stdout).trim());
    Ok(0)
}

fn privileges_drop() {
    require_root("dropping privileges needs root");
    let base = tempfile::Builder::new()
        .prefix("manning-drop-")
        .tempdir()
        .unwrap();
    let pg = postgres_user();
    let mut cmd = rerun("drop", false);
    cmd.env(SCENARIO_DIR, base.path());
    let out = runtime()
        .block_on(reaper::output(cmd, Duration::from_secs(30)))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
    let uid = pg.uid.as_raw();
    let gid = pg.gid.as_raw();
    assert!(
        stdout.contains(&format!("uid={uid} euid={uid} gid={gid} egid={gid}")),
        "{stdout}"
    );
    assert!(stdout.contains("regain_root=false"));
    assert!(stdout.contains("again_as_user_ok=true"), "{stdout}");
    assert!(
        field(&stdout, "root_owned_socket_dir_error").contains("is not writable by postgres"),
        "{stdout}"
    );
    assert!(
        field(&stdout, "child_id").starts_with(&format!("uid={uid}(postgres)")),
        "{stdout}"
    );
    let data = std::fs::metadata(base.path().join("volume/data")).unwrap();
    assert_eq!(data.uid(), uid);
    assert_eq!(data.permissions().mode() & 0o7777, 0o700);
    // The volume root (created by us, holding only the data dir) was handed to postgres so
    // a failed bootstrap can be moved aside.
    assert_eq!(
        std::fs::metadata(base.path().join("volume")).unwrap().uid(),
        uid
    );
    let sock = std::fs::metadata(base.path().join("run/postgresql")).unwrap();
    assert_eq!(sock.uid(), uid);
    assert_eq!(sock.permissions().mode() & 0o7777, 0o2775);
}

fn privileges_refuse_multithreaded() {
    require_root("the refusal is only reachable as root");
    // This process runs the reaper thread, so the drop must be refused, and nothing changed.
    Reaper::install().unwrap();
    let run_as = RunAs::for_postgres(None).unwrap();
    match privileges::drop_privileges(&run_as) {
        Err(PrivilegeError::NotSingleThreaded(n)) => assert!(n > 1),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(nix::unistd::geteuid().is_root());
}
