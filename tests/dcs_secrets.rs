//! etcd authentication, and that passwords never reach a log line or an error message.
//!
//! This test is alone in its binary on purpose: it captures logs with a thread-scoped
//! `tracing` subscriber, and when another test thread registers the same callsite at the same
//! moment, tracing-core can cache that callsite as disabled, so the expected log line goes
//! missing (seen once in CI). One test per process removes the race.

mod support;

use std::sync::{Arc, Mutex};

use manning::dcs::{Dcs, DcsError};
use support::*;

/// A `tracing` writer into a shared buffer, to check what the client logs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn etcd_authentication_and_passwords_stay_secret() {
    let etcd = Etcd::start();
    etcd.ctl(&["user", "add", "root:Pa55w0rd%#'\\"]);
    etcd.ctl(&["auth", "enable"]);
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut s = etcd.dcs_settings("n1", 30, 3);
    s.username = Some("root".into());
    s.password = Some("Pa55w0rd%#'\\".into());
    let d = Dcs::new(s.clone()).unwrap();
    assert!(d.attempt_acquire_leader().await.unwrap());
    d.update_leader().await.unwrap();
    assert_eq!(d.get_cluster().await.unwrap().leader_name(), Some("n1"));

    s.password = Some("wrong-Secret-123".into());
    let bad = Dcs::new(s).unwrap();
    let err = bad.get_cluster().await.unwrap_err();
    assert!(matches!(err, DcsError::Auth { .. }), "{err:?}");
    let text = format!("{err} {err:?} {bad:?}");
    assert!(!text.contains("wrong-Secret-123"), "{text}");

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("leader lock acquired"), "{logs}");
    assert!(
        !logs.contains("Pa55w0rd") && !logs.contains("wrong-Secret"),
        "{logs}"
    );
}
