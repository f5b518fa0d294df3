//! Checks of the test harness itself: the real etcd and PostgreSQL it starts answer.

mod support;

use support::*;

#[test]
fn etcd_starts_and_stores_keys() {
    let etcd = Etcd::start();
    etcd.ctl(&["put", "/harness/k", "v"]);
    assert_eq!(etcd.get("/harness/k").as_deref(), Some("v"));
}

#[test]
fn postgres_starts_as_postgres_user_and_answers() {
    let pg = Postgres::start();
    let who = Postgres::psql_at("127.0.0.1", pg.port, "select current_user").expect("psql");
    assert_eq!(who, "postgres");
    let owner = std::fs::metadata(pg.dir.path().join("data"))
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .expect("stat data dir");
    if nix::unistd::geteuid().is_root() {
        assert_eq!(owner, postgres_user().uid.as_raw());
    }
}
