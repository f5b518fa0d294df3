//! `manning config check|show` against the seed's `patroni.yml` and a catalogue of broken
//! configurations, run through the real binary with a clean environment.
//!
//! Every file in `tests/fixtures/config/broken/` ends with directives (YAML comments):
//! `# exit: N` (expected exit code of `config check`), `# expect: TEXT` (a line of stderr
//! must contain TEXT, where `@` stands for the file's path), `# unset: VAR` and
//! `# env: VAR=VALUE` (changes to the default environment: the seed compose file's).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::*;

/// The three secrets of the seed, with characters that mean something in YAML.
const SECRETS: &[(&str, &str)] = &[
    (
        "postgres_admin_password",
        "%admin #1: 'q\"uote' {b} *s \\ end",
    ),
    (
        "patroni_replication_password",
        "{repl: *ication} \"dq\" # x",
    ),
    ("patroni_superuser_password", "*sup3r: user 'sq' \\back%"),
];

/// The `environment:` of the seed's compose file, Swarm placeholders filled in.
const SEED_ENV: &[(&str, &str)] = &[
    ("PATRONI_NAME", "manager_abc123"),
    ("PATRONI_NAMESPACE", "/manning"),
    (
        "PATRONI_POSTGRESQL_CONNECT_ADDRESS",
        "abc123.patroni.host:15432",
    ),
    (
        "PATRONI_RESTAPI_CONNECT_ADDRESS",
        "abc123.patroni.host:15432",
    ),
    ("PATRONI_POSTGRESQL_LISTEN", "0.0.0.0:15432"),
    ("PATRONI_SCOPE", "enterprises"),
    ("PATRONI_ETCD3_HOST", "etcd:2379"),
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config")
}

/// A secrets directory holding the seed's secrets (each written with a trailing newline,
/// as `echo … | docker secret create` does) and a directory that cannot be read as one.
fn secrets_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, value) in SECRETS {
        std::fs::write(dir.path().join(name), format!("{value}\n")).expect("write secret");
    }
    std::fs::create_dir(dir.path().join("a_directory")).expect("mkdir");
    dir
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str], env: &[(String, String)], secrets: &Path) -> Run {
    let mut cmd = Command::new(manning_bin());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MANNING_SECRETS_DIR", secrets)
        .args(["--log-level", "trace"])
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run manning");
    Run {
        code: status.code().expect("exit code"),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

fn seed_env() -> Vec<(String, String)> {
    SEED_ENV
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// No secret (or a recognisable piece of one) in the output.
fn assert_no_secrets(what: &str, r: &Run) {
    for (name, value) in SECRETS {
        let fragment: String = value.chars().take(8).collect();
        for (stream, text) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
            assert!(
                !text.contains(value) && !text.contains(&fragment),
                "{what}: secret {name} appears in {stream}:\n{text}"
            );
        }
    }
}

#[test]
fn seed_configuration_validates_with_the_same_address_warning() {
    let secrets = secrets_dir();
    let file = fixtures().join("seed-patroni.yml");
    let r = run(
        &["config", "check", file.to_str().unwrap()],
        &seed_env(),
        secrets.path(),
    );
    assert_eq!(r.code, 0, "stderr:\n{}", r.stderr);
    assert!(r.stdout.contains("configuration is valid"), "{}", r.stdout);
    assert!(
        r.stderr.contains(
            "$PATRONI_RESTAPI_CONNECT_ADDRESS: restapi.connect_address: warning: same host:port as postgresql.connect_address (abc123.patroni.host:15432)"
        ),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!(
            "{}:42:1: postgresql.data_dir: warning: not set; using the default /patroni/data",
            file.display()
        )),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("error"), "{}", r.stderr);
    assert_no_secrets("config check", &r);
}

#[test]
fn seed_configuration_shows_the_effective_values() {
    let secrets = secrets_dir();
    let file = fixtures().join("seed-patroni.yml");
    let r = run(
        &["config", "show", file.to_str().unwrap()],
        &seed_env(),
        secrets.path(),
    );
    assert_eq!(r.code, 0, "stderr:\n{}", r.stderr);
    assert_no_secrets("config show", &r);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON on stdout");
    let dcs = &v["bootstrap"]["dcs"];
    assert_eq!(dcs["ttl"], 20);
    assert_eq!(dcs["loop_wait"], 2);
    assert_eq!(dcs["retry_timeout"], 5);
    assert_eq!(dcs["synchronous_mode"], true);
    assert_eq!(dcs["synchronous_mode_strict"], true);
    assert_eq!(dcs["synchronous_node_count"], 1);
    assert_eq!(dcs["maximum_lag_on_failover"], 1048576);
    assert_eq!(dcs["postgresql"]["parameters"]["max_connections"], 256);
    assert_eq!(dcs["postgresql"]["use_pg_rewind"], true);
    assert_eq!(
        dcs["postgresql"]["remove_data_directory_on_rewind_failure"],
        true
    );
    assert_eq!(v["name"], "manager_abc123");
    assert_eq!(v["scope"], "enterprises");
    assert_eq!(v["namespace"], "/manning");
    assert_eq!(v["etcd3"]["host"], "etcd:2379");
    assert_eq!(v["restapi"]["listen"], "0.0.0.0:8008");
    assert_eq!(v["postgresql"]["listen"], "0.0.0.0:15432");
    assert_eq!(v["postgresql"]["data_dir"], "/patroni/data");
    assert_eq!(
        v["bootstrap"]["initdb"],
        serde_json::json!([{"encoding": "UTF8"}, "data-checksums"])
    );
    assert_eq!(
        v["bootstrap"]["post_bootstrap"],
        "/usr/local/bin/init-pgadmin-db.sh"
    );
    assert_eq!(
        v["bootstrap"]["users"]["admin"]["options"],
        serde_json::json!(["createrole", "createdb"])
    );
    assert_eq!(v["bootstrap"]["users"]["admin"]["password"], "<redacted>");
    let auth = &v["postgresql"]["authentication"];
    assert_eq!(auth["superuser"]["username"], "postgres");
    assert_eq!(auth["superuser"]["password"], "<redacted>");
    assert_eq!(auth["replication"]["password"], "<redacted>");
    assert_eq!(v["tags"]["nofailover"], false);
    assert_eq!(v["manning"]["fence_margin"], 3);
}

#[test]
fn show_secrets_reveals_them_byte_for_byte() {
    let secrets = secrets_dir();
    let file = fixtures().join("seed-patroni.yml");
    let r = run(
        &["config", "show", "--show-secrets", file.to_str().unwrap()],
        &seed_env(),
        secrets.path(),
    );
    assert_eq!(r.code, 0, "stderr:\n{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON on stdout");
    let secret = |name: &str| {
        SECRETS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .unwrap()
    };
    assert_eq!(
        v["bootstrap"]["users"]["admin"]["password"],
        secret("postgres_admin_password")
    );
    let auth = &v["postgresql"]["authentication"];
    assert_eq!(
        auth["replication"]["password"],
        secret("patroni_replication_password")
    );
    assert_eq!(
        auth["superuser"]["password"],
        secret("patroni_superuser_password")
    );
    // The secrets never reach stderr, even when shown on stdout.
    for (_, value) in SECRETS {
        assert!(!r.stderr.contains(value));
    }
}

#[test]
fn patroni_configuration_variable_is_used_without_a_file() {
    let secrets = secrets_dir();
    let text = std::fs::read_to_string(fixtures().join("seed-patroni.yml")).unwrap()
        + "scope: from-variable\nname: n1\nrestapi: {connect_address: 10.0.0.1:8008}\netcd3: {host: etcd:2379}\npostgresql: {listen: '0.0.0.0:5432', connect_address: '10.0.0.1:5432'}\n";
    let mut env = seed_env();
    env.push(("PATRONI_CONFIGURATION".into(), text));
    let r = run(&["config", "show"], &env, secrets.path());
    assert_eq!(
        r.code, 2,
        "the appended postgresql mapping replaces authentication:\n{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("$PATRONI_CONFIGURATION:"),
        "problems name the variable as the file: {}",
        r.stderr
    );
    assert_no_secrets("PATRONI_CONFIGURATION", &r);

    let text = "scope: from-variable\nname: n1\nrestapi: {connect_address: 10.0.0.1:8008}\netcd3: {host: etcd:2379}\npostgresql:\n  listen: 0.0.0.0:5432\n  connect_address: 10.0.0.1:5432\n  data_dir: /nonexistent/x\n  authentication:\n    superuser: {username: postgres, password: '{{ secret \"patroni_superuser_password\" }}'}\n    replication: {username: replicator}\n";
    let mut env = seed_env();
    env.push(("PATRONI_CONFIGURATION".into(), text.into()));
    let r = run(&["config", "show"], &env, secrets.path());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        v["scope"], "from-variable",
        "other PATRONI_* variables are ignored"
    );
    assert_eq!(v["name"], "n1");
    assert!(r.stderr.contains("PATRONI_NAME"), "{}", r.stderr);
}

#[test]
fn no_configuration_is_a_usage_error() {
    let secrets = secrets_dir();
    let r = run(&["config", "check"], &seed_env(), secrets.path());
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("PATRONI_CONFIGURATION"), "{}", r.stderr);
    let r = run(
        &["config", "check", "/nonexistent/patroni.yml"],
        &seed_env(),
        secrets.path(),
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("/nonexistent/patroni.yml: cannot read"),
        "{}",
        r.stderr
    );
}

#[test]
fn environment_problems_name_the_variable() {
    let secrets = secrets_dir();
    let file = fixtures().join("seed-patroni.yml");
    let mut env = seed_env();
    env.retain(|(k, _)| k != "PATRONI_RESTAPI_CONNECT_ADDRESS");
    env.push((
        "PATRONI_RESTAPI_CONNECT_ADDRESS".into(),
        "0.0.0.0:8008".into(),
    ));
    env.push(("PATRONI_ETCD3_HOSTS".into(), "'etcd1:2379','etcd2'".into()));
    env.push((
        "PATRONI_SUPERUSER_PASSWORD".into(),
        "env-secret-value".into(),
    ));
    env.push(("PATRONI_RESTAPI_CONECT_ADDRESS".into(), "x:1".into()));
    let r = run(
        &["config", "check", file.to_str().unwrap()],
        &env,
        secrets.path(),
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    for needle in [
        "$PATRONI_RESTAPI_CONNECT_ADDRESS: restapi.connect_address: 0.0.0.0:8008 is a listen-on-everything address",
        "$PATRONI_ETCD3_HOSTS:1:14: etcd3.hosts[1]: expected `host:port` (got \"etcd2\")",
        "$PATRONI_RESTAPI_CONECT_ADDRESS: warning: unknown environment variable, ignored (did you mean `PATRONI_RESTAPI_CONNECT_ADDRESS`?)",
    ] {
        assert!(
            r.stderr.contains(needle),
            "missing {needle:?} in\n{}",
            r.stderr
        );
    }
    assert!(!r.stderr.contains("env-secret-value") && !r.stdout.contains("env-secret-value"));
    assert_no_secrets("environment problems", &r);
}

/// Directives at the end of a catalogue file.
struct Case {
    path: PathBuf,
    exit: i32,
    expect: Vec<String>,
    env: Vec<(String, String)>,
}

fn parse_case(path: &Path) -> Case {
    let text = std::fs::read_to_string(path).expect("read fixture");
    let mut exit = None;
    let mut expect = Vec::new();
    let mut env = seed_env();
    for line in text.lines() {
        let Some(d) = line.strip_prefix("# ") else {
            continue;
        };
        if let Some(v) = d.strip_prefix("exit: ") {
            exit = Some(v.trim().parse().expect("exit code"));
        } else if let Some(v) = d.strip_prefix("expect: ") {
            expect.push(v.replace('@', &path.display().to_string()));
        } else if let Some(v) = d.strip_prefix("unset: ") {
            env.retain(|(k, _)| k != v.trim());
        } else if let Some(v) = d.strip_prefix("env: ") {
            let (k, val) = v.split_once('=').expect("env: K=V");
            env.push((k.into(), val.into()));
        }
    }
    Case {
        path: path.to_path_buf(),
        exit: exit.unwrap_or_else(|| panic!("{}: no `# exit:` directive", path.display())),
        expect,
        env,
    }
}

#[test]
fn broken_configurations_catalogue() {
    let secrets = secrets_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures().join("broken"))
        .expect("catalogue")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 35, "only {} catalogue entries", files.len());
    let mut failures = Vec::new();
    let (mut errors, mut warnings_only) = (0, 0);
    for file in &files {
        let case = parse_case(file);
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        assert!(!case.expect.is_empty(), "{name}: no `# expect:` directive");
        let path = case.path.display().to_string();
        assert!(
            case.expect.iter().any(|e| {
                e.strip_prefix(&format!("{path}:"))
                    .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
            }),
            "{name}: no expectation names the file and a line"
        );
        if case.exit == 0 {
            warnings_only += 1;
        } else {
            errors += 1;
        }
        let check = run(&["config", "check", &path], &case.env, secrets.path());
        let show = run(&["config", "show", &path], &case.env, secrets.path());
        assert_no_secrets(&format!("{name} (check)"), &check);
        assert_no_secrets(&format!("{name} (show)"), &show);
        if check.code != case.exit {
            failures.push(format!(
                "{name}: exit {} instead of {}\n{}",
                check.code, case.exit, check.stderr
            ));
            continue;
        }
        if show.code != case.exit {
            failures.push(format!("{name}: `config show` exit {}", show.code));
        }
        for e in &case.expect {
            if !check.stderr.lines().any(|l| l.contains(e.as_str())) {
                failures.push(format!("{name}: missing {e:?} in\n{}", check.stderr));
            }
        }
        if case.exit == 2 {
            assert!(
                check.stderr.contains("manning: the configuration has"),
                "{name}: {}",
                check.stderr
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        errors >= 30 && warnings_only >= 3,
        "{errors} errors, {warnings_only} warning-only"
    );
}
