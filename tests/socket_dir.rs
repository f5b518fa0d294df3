//! `manning socket-dir`: creates, fixes and refuses as the seed's `mk-socket-dir` job needs.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use support::*;

fn socket_dir(args: &[&str]) -> std::process::Output {
    Command::new(manning_bin())
        .arg("socket-dir")
        .args(args)
        .output()
        .expect("run manning")
}

#[test]
fn creates_parents_and_is_idempotent() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run/patroni");
    let p = dir.to_str().unwrap();
    for _ in 0..2 {
        let out = socket_dir(&[p]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let meta = std::fs::metadata(&dir).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
    }
}

#[test]
fn fixes_mode_and_owner_of_existing_directory() {
    require_root("chown to the postgres user");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sock");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = socket_dir(&[
        dir.to_str().unwrap(),
        "--mode",
        "2775",
        "--owner",
        "postgres:",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta = std::fs::metadata(&dir).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o2775);
    let pg = postgres_user();
    assert_eq!(meta.uid(), pg.uid.as_raw());
    assert_eq!(meta.gid(), pg.gid.as_raw());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("changed mode"), "{log}");
    assert!(log.contains("changed owner"), "{log}");
}

#[test]
fn a_file_in_the_way_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("patroni");
    std::fs::write(&file, b"").unwrap();
    let out = socket_dir(&[file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exists and is not a directory"), "{err}");
    assert!(err.contains(file.to_str().unwrap()), "{err}");
}

#[test]
fn bad_mode_and_unknown_owner_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("d");
    let out = socket_dir(&[p.to_str().unwrap(), "--mode", "999"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("octal"));
    let out = socket_dir(&[p.to_str().unwrap(), "--owner", "nobody-like-this"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user named"));
    assert!(!p.exists(), "nothing is created when the arguments are bad");
}
