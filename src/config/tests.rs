//! Unit tests of the whole pipeline: templates + YAML + environment + schema + validation.

use std::collections::BTreeMap;

use super::*;

/// A minimal valid configuration (file part).
const MINIMAL: &str = "\
scope: s
name: n
restapi:
  connect_address: 10.0.0.1:8008
etcd3:
  host: 127.0.0.1:2379
postgresql:
  listen: 0.0.0.0:5432
  connect_address: 10.0.0.1:5432
  data_dir: /nonexistent/manning-test/data
  authentication:
    superuser: {username: postgres, password: pw}
    replication: {username: replicator, password: rpw}
";

struct Fixture {
    dir: tempfile::TempDir,
    env: BTreeMap<String, String>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("secrets")).unwrap();
        let mut env = BTreeMap::new();
        env.insert("PATH".to_string(), "/usr/bin:/bin".to_string());
        Fixture { dir, env }
    }

    fn secret(&self, name: &str, value: &str) -> &Self {
        std::fs::write(self.dir.path().join("secrets").join(name), value).unwrap();
        self
    }

    fn env(&mut self, k: &str, v: &str) -> &mut Self {
        self.env.insert(k.into(), v.into());
        self
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn load_path(&self, path: Option<PathBuf>) -> Result<Loaded, Problems> {
        load(&LoadOptions {
            path,
            env: self.env.clone(),
            secrets_dir: self.dir.path().join("secrets"),
        })
    }

    fn load(&self, text: &str) -> Result<Loaded, Problems> {
        let p = self.file("patroni.yml", text);
        self.load_path(Some(p))
    }
}

fn errors(p: &Problems) -> Vec<String> {
    p.errors().map(|p| p.to_string()).collect()
}

#[test]
fn minimal_configuration_loads_with_defaults() {
    let f = Fixture::new();
    let l = f.load(MINIMAL).unwrap_or_else(|p| panic!("{p}"));
    let c = &l.config;
    assert_eq!(c.namespace, "/service");
    assert_eq!(c.base_path(), "/service/s");
    assert_eq!(c.restapi.listen.to_string(), "0.0.0.0:8008");
    assert_eq!(c.postgresql.config_dir, c.postgresql.data_dir);
    assert_eq!(c.postgresql.create_replica_methods, ["basebackup"]);
    assert_eq!(c.manning.fence_margin, 3);
    assert_eq!(c.manning.user, "postgres");
    assert_eq!(c.watchdog.mode, WatchdogMode::Automatic);
    assert_eq!(c.etcd3.endpoints(), ["http://127.0.0.1:2379"]);
    assert!(c.bootstrap.is_none());
    assert_eq!(
        c.postgresql
            .authentication
            .superuser
            .password
            .as_ref()
            .unwrap()
            .expose(),
        "pw"
    );
    let d = c.effective_dynamic(None);
    assert_eq!((d.ttl(), d.loop_wait(), d.retry_timeout()), (30, 10, 10));
}

#[test]
fn environment_beats_file() {
    let mut f = Fixture::new();
    f.env("PATRONI_SCOPE", "from-env")
        .env("PATRONI_RESTAPI_LISTEN", "127.0.0.1:9000")
        .env("PATRONI_SUPERUSER_PASSWORD", "envpw")
        .env("PATRONI_NAME", "");
    let l = f.load(MINIMAL).unwrap();
    assert_eq!(l.config.scope, "from-env");
    assert_eq!(l.config.name, "n", "an empty variable is ignored");
    assert_eq!(l.config.restapi.listen.to_string(), "127.0.0.1:9000");
    let su = &l.config.postgresql.authentication.superuser;
    assert_eq!(su.password.as_ref().unwrap().expose(), "envpw");
    assert_eq!(
        su.username, "postgres",
        "the mapping is merged, not replaced"
    );
}

#[test]
fn patroni_configuration_variable_holds_the_whole_yaml() {
    let mut f = Fixture::new();
    f.env("PATRONI_CONFIGURATION", MINIMAL)
        .env("PATRONI_NAME", "ignored");
    let l = f.load_path(None).unwrap();
    assert_eq!(
        l.config.name, "n",
        "other variables are ignored, as in Patroni"
    );
    assert_eq!(l.source, "$PATRONI_CONFIGURATION");
    assert!(
        l.warnings
            .iter()
            .any(|w| w.message.contains("PATRONI_NAME") && w.message.contains("ignored")),
        "{:?}",
        l.warnings
    );
}

#[test]
fn no_configuration_at_all_is_an_error() {
    let f = Fixture::new();
    let p = f.load_path(None).unwrap_err();
    assert!(p.to_string().contains("PATRONI_CONFIGURATION"), "{p}");
    let p = f
        .load_path(Some(f.dir.path().join("missing.yml")))
        .unwrap_err();
    assert!(p.to_string().contains("missing.yml: cannot read"), "{p}");
}

#[test]
fn a_directory_of_files_is_merged_in_name_order() {
    let f = Fixture::new();
    std::fs::create_dir(f.dir.path().join("conf.d")).unwrap();
    std::fs::write(f.dir.path().join("conf.d/10-base.yml"), MINIMAL).unwrap();
    std::fs::write(
        f.dir.path().join("conf.d/20-site.yaml"),
        "name: override\ntags: {nosync: true}\n",
    )
    .unwrap();
    std::fs::write(f.dir.path().join("conf.d/README"), "not yaml: [").unwrap();
    let l = f.load_path(Some(f.dir.path().join("conf.d"))).unwrap();
    assert_eq!(l.config.name, "override");
    assert_eq!(l.config.tags.nosync, Some(true));
    assert_eq!(l.config.scope, "s");
}

#[test]
fn templates_render_secrets_and_env_exactly() {
    let mut f = Fixture::new();
    let nasty = "#x: 'y\" {z} *a %b \\c";
    f.secret("su", &format!("{nasty}\n"));
    f.env("SCOPE_FROM_ENV", "on");
    let text = MINIMAL
        .replace("scope: s", "scope: {{ env \"SCOPE_FROM_ENV\" }}")
        .replace(
            "{username: postgres, password: pw}",
            "{username: postgres, password: {{ secret \"su\" }}}",
        );
    let l = f.load(&text).unwrap_or_else(|p| panic!("{p}"));
    assert_eq!(
        l.config.scope, "on",
        "a template value is a string, not YAML's `on`"
    );
    let su = &l.config.postgresql.authentication.superuser;
    assert_eq!(su.password.as_ref().unwrap().expose(), nasty);
    let shown = l.config.to_json(false).to_string();
    assert!(!shown.contains(nasty) && shown.contains("<redacted>"));
    let revealed = l.config.to_json(true);
    assert_eq!(
        revealed["postgresql"]["authentication"]["superuser"]["password"],
        nasty
    );
}

#[test]
fn secrets_in_plain_fields_are_redacted_too() {
    let f = Fixture::new();
    f.secret("cluster", "top-secret-scope");
    let text = MINIMAL.replace("scope: s", "scope: {{ secret \"cluster\" }}");
    let l = f.load(&text).unwrap();
    assert_eq!(l.config.scope, "top-secret-scope");
    let shown = l.config.to_json(false);
    assert_eq!(shown["scope"], "<redacted>");
    assert!(!format!("{:?}", l.config).contains("top-secret-scope"));
    assert_eq!(l.config.to_json(true)["scope"], "top-secret-scope");
}

#[test]
fn template_problems_point_at_the_call() {
    let f = Fixture::new();
    let text = MINIMAL.replace("name: n", "name: {{ env \"NOPE\" }}");
    let p = f.load(&text).unwrap_err();
    let e = errors(&p);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].ends_with("patroni.yml:2:7: name: environment variable NOPE is not set"),
        "{}",
        e[0]
    );
}

#[test]
fn every_problem_is_reported_in_one_run() {
    let f = Fixture::new();
    let text = "\
scpoe: s
restapi:
  connect_address: 0.0.0.0:8008
  verify_client: maybe
etcd3:
  hosts: [a:1, b]
postgresql:
  listen: 0.0.0.0:5432
  connect_address: 10.0.0.1:99999
  authentication:
    superuser: {username: postgres}
bootstrap:
  dcs:
    ttl: -1
    synchronus_mode: true
";
    let p = f.load(text).unwrap_err();
    let e = errors(&p);
    let joined = e.join("\n");
    for needle in [
        "1:1: scpoe: unknown key `scpoe` (did you mean `scope`?)",
        "restapi.connect_address: 0.0.0.0:8008 is a listen-on-everything address",
        "4:18: restapi.verify_client: must be one of",
        "6:16: etcd3.hosts[1]: expected `host:port`",
        "9:20: postgresql.connect_address: port \"99999\"",
        "postgresql.authentication.replication: is required",
        "14:10: bootstrap.dcs.ttl: must be at least 0",
        "15:5: bootstrap.dcs.synchronus_mode: unknown key `synchronus_mode` (did you mean `synchronous_mode`?)",
        "name: is required",
        "scope: is required",
    ] {
        assert!(joined.contains(needle), "missing {needle:?} in\n{joined}");
    }
}

#[test]
fn timeout_adjustments_are_warnings_at_the_key() {
    let f = Fixture::new();
    let text = format!(
        "{MINIMAL}bootstrap:\n  dcs:\n    ttl: 10\n    loop_wait: 10\n    retry_timeout: 10\n"
    );
    let l = f.load(&text).unwrap_or_else(|p| panic!("{p}"));
    let w: Vec<String> = l.warnings.iter().map(|w| w.to_string()).collect();
    let joined = w.join("\n");
    assert!(
        joined.contains(
            "16:5: bootstrap.dcs.ttl: warning: ttl=10 can't be smaller than 20, adjusting..."
        ),
        "{joined}"
    );
    assert!(
        joined.contains("bootstrap.dcs.retry_timeout: warning: Violated the rule"),
        "{joined}"
    );
    let d = l.config.effective_dynamic(None);
    assert_eq!((d.ttl(), d.loop_wait(), d.retry_timeout()), (20, 1, 9));
    let written = l.config.initial_dcs_config().unwrap();
    assert_eq!(written.ttl, Some(20));
    assert_eq!(
        written.maximum_lag_on_failover, None,
        "defaults are not written"
    );
}

#[test]
fn dcs_value_beats_bootstrap_and_local_beats_both() {
    let f = Fixture::new();
    let text = format!(
        "{MINIMAL}  parameters: {{work_mem: 8MB, max_connections: 999}}\n  use_slots: false\nbootstrap:\n  dcs:\n    ttl: 40\n    postgresql:\n      parameters: {{work_mem: 1MB, max_connections: 50}}\n"
    );
    let l = f.load(&text).unwrap_or_else(|p| panic!("{p}"));
    let w: Vec<String> = l.warnings.iter().map(|w| w.to_string()).collect();
    assert!(w.iter().any(|w| w.contains("postgresql.parameters.max_connections: warning: `max_connections` can only be set in the dynamic configuration")), "{w:?}");
    assert!(
        w.iter()
            .any(|w| w.contains("postgresql.use_slots: warning:")),
        "{w:?}"
    );
    let c = &l.config;
    // before the DCS has /config: bootstrap.dcs
    let d = c.effective_dynamic(None);
    assert_eq!(d.ttl(), 40);
    let params = d.pg().parameters.unwrap();
    assert_eq!(params["work_mem"], "8MB", "local wins");
    assert_eq!(
        params["max_connections"], 50,
        "cmdline parameters are dynamic only"
    );
    assert!(d.pg().use_slots(), "use_slots is global only");
    // once the DCS has a value it replaces bootstrap.dcs
    let (dcs, _) = DynamicConfig::from_dcs_json(
        r#"{"ttl": 60, "postgresql": {"parameters": {"max_connections": 300}}}"#,
    );
    let d = c.effective_dynamic(Some(&dcs));
    assert_eq!(d.ttl(), 60);
    assert_eq!(d.pg().parameters.unwrap()["max_connections"], 300);
    // an empty DCS value counts as missing
    let d = c.effective_dynamic(Some(&DynamicConfig::default()));
    assert_eq!(d.ttl(), 40);
}

#[test]
fn yaml_11_booleans_and_string_numbers_are_accepted() {
    let f = Fixture::new();
    let text = format!(
        "{MINIMAL}tags: {{nofailover: 'no', noloadbalance: yes, clonefrom: on}}\nbootstrap:\n  dcs:\n    ttl: '25'\n    synchronous_mode: quorum\n    synchronous_mode_strict: 'on'\n    member_slots_ttl: 30min\n"
    );
    let l = f.load(&text).unwrap_or_else(|p| panic!("{p}"));
    let t = &l.config.tags;
    assert_eq!(
        (t.nofailover, t.noloadbalance, t.clonefrom),
        (Some(false), true, true)
    );
    let d = l.config.effective_dynamic(None);
    assert_eq!(d.ttl(), 25);
    assert_eq!(d.synchronous_mode(), SynchronousMode::Quorum);
    assert!(d.synchronous_mode_strict());
    assert_eq!(d.member_slots_ttl(), 1800);
}

#[test]
fn custom_methods_and_option_lists() {
    let f = Fixture::new();
    let text = format!(
        "{MINIMAL}  create_replica_methods: [wal_g, basebackup]\n  wal_g: {{command: /usr/bin/wal-g-restore, no_leader: true, threads: 4}}\n  basebackup: {{max-rate: 100M, checkpoint: fast}}\nbootstrap:\n  method: restore\n  restore: {{command: /restore.sh, keep_existing_recovery_conf: true, target: latest}}\n  dcs: {{}}\n  initdb: {{encoding: UTF8, data-checksums: true}}\n"
    );
    let l = f.load(&text).unwrap_or_else(|p| panic!("{p}"));
    let pg = &l.config.postgresql;
    let m = &pg.replica_methods["wal_g"];
    assert!(m.no_leader);
    assert_eq!(m.params["threads"], 4);
    let args: Vec<String> = pg.basebackup.iter().map(CmdOption::to_arg).collect();
    assert_eq!(args, ["--max-rate=100M", "--checkpoint=fast"]);
    let b = l.config.bootstrap.as_ref().unwrap();
    assert_eq!(b.method.as_deref(), Some("restore"));
    assert!(b.methods["restore"].keep_existing_recovery_conf);
    let args: Vec<String> = b.initdb.iter().map(CmdOption::to_arg).collect();
    assert_eq!(args, ["--encoding=UTF8", "--data-checksums"]);
}

#[test]
fn bin_dir_explicit_must_hold_the_programs() {
    let f = Fixture::new();
    let bin = f.dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let text = MINIMAL.replace(
        "  data_dir:",
        &format!("  bin_dir: {}\n  data_dir:", bin.display()),
    );
    let p = f.load(&text).unwrap_err();
    let e = errors(&p).join("\n");
    assert!(
        e.contains("postgresql.bin_dir: ") && e.contains("has no executable pg_ctl, initdb"),
        "{e}"
    );
}

#[test]
fn data_dir_must_look_like_a_data_directory() {
    let f = Fixture::new();
    let data = f.dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("random-file"), "x").unwrap();
    let text = MINIMAL.replace(
        "/nonexistent/manning-test/data",
        &data.display().to_string(),
    );
    let e = errors(&f.load(&text).unwrap_err()).join("\n");
    assert!(
        e.contains("does not look like a PostgreSQL data directory"),
        "{e}"
    );
    std::fs::write(data.join("PG_VERSION"), "15\n").unwrap();
    let e = errors(&f.load(&text).unwrap_err()).join("\n");
    assert!(e.contains("has no pg_wal directory"), "{e}");
    std::fs::create_dir(data.join("pg_wal")).unwrap();
    f.load(&text).unwrap_or_else(|p| panic!("{p}"));
    let file = f.file("plainfile", "x");
    let text = MINIMAL.replace(
        "/nonexistent/manning-test/data",
        &file.display().to_string(),
    );
    let e = errors(&f.load(&text).unwrap_err()).join("\n");
    assert!(e.contains("is not a directory"), "{e}");
}

#[test]
fn fence_margin_is_checked_against_the_timeouts() {
    let f = Fixture::new();
    let text = format!(
        "{MINIMAL}manning: {{fence_margin: 25}}\nbootstrap:\n  dcs: {{ttl: 30, loop_wait: 10}}\n"
    );
    let e = errors(&f.load(&text).unwrap_err()).join("\n");
    assert!(e.contains("manning.fence_margin: 25s with ttl 30s"), "{e}");
    let text = format!("{MINIMAL}manning: {{fence_margin: 1}}\n");
    let e = errors(&f.load(&text).unwrap_err()).join("\n");
    assert!(
        e.contains("manning.fence_margin: must be at least 2"),
        "{e}"
    );
    let text = format!("{MINIMAL}manning: {{fence_margin: 15}}\n");
    let l = f.load(&text).unwrap();
    assert!(
        l.warnings
            .iter()
            .any(|w| w.key_path == "manning.fence_margin"),
        "{:?}",
        l.warnings
    );
}

#[test]
fn load_options_debug_shows_no_values() {
    let mut f = Fixture::new();
    f.env("PATRONI_SUPERUSER_PASSWORD", "hunter2-value");
    let opts = LoadOptions {
        path: None,
        env: f.env.clone(),
        secrets_dir: f.dir.path().to_path_buf(),
    };
    let shown = format!("{opts:?}");
    assert!(shown.contains("PATRONI_SUPERUSER_PASSWORD"));
    assert!(!shown.contains("hunter2-value"));
}
