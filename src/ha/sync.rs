//! Synchronous replication, decided without IO (Patroni's `synchronous_mode`).
//!
//! The leader chooses which streaming members must confirm each commit
//! (`synchronous_standby_names`) and publishes the ones that are known to hold every
//! acknowledged commit in the `sync` key; only members listed there may take over. Two
//! orderings make that safe (DESIGN.md, invariant 2):
//! - a standby is **added** to `synchronous_standby_names` first and published in `sync`
//!   only once postgres reports it `sync` and it has flushed the WAL the primary had flushed
//!   when the setting changed (commits acknowledged before it became synchronous are then on
//!   it too);
//! - a standby is **removed** from `sync` first and from `synchronous_standby_names` after.
//!
//! With `synchronous_mode_strict` and no standby to wait for, the setting names a member
//! that cannot exist (Patroni's placeholder), so commits wait rather than go unreplicated.
//! `quorum` mode is handled like `on` (FIRST semantics) for now.

use std::collections::BTreeSet;

use crate::config::SynchronousMode;

/// The name Patroni puts in `synchronous_standby_names` when strict mode has nobody to wait
/// for; no member may be called this.
pub const STRICT_PLACEHOLDER: &str = "__patroni_strict_sync_replica_placeholder__";

/// One walsender as `pg_stat_replication` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandbyRow {
    /// `application_name`: the member's name.
    pub name: String,
    /// `state = 'streaming'`.
    pub streaming: bool,
    /// `sync_state` is `sync` or `quorum`: postgres waits for it now.
    pub sync: bool,
    /// `flush_lsn` in bytes.
    pub flush_lsn: u64,
}

/// Everything the leader's sync decision looks at.
#[derive(Debug, Clone)]
pub struct SyncInputs<'a> {
    pub mode: SynchronousMode,
    pub strict: bool,
    /// `synchronous_node_count` (at least 1 in strict mode).
    pub count: usize,
    /// Members that may be synchronous: registered, not us, no `nosync` tag.
    pub eligible: &'a BTreeSet<String>,
    pub rows: &'a [StandbyRow],
    /// Standbys listed in the `sync` key now (when we are its leader).
    pub published: &'a [String],
    /// Standbys in our `synchronous_standby_names` now.
    pub current: &'a [String],
    /// The primary's flush LSN when `synchronous_standby_names` last changed.
    pub changed_at_lsn: u64,
}

/// What the leader should have: the standbys postgres waits for, and the ones published.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncTarget {
    /// Names for `synchronous_standby_names` (sorted; may be the placeholder).
    pub standbys: Vec<String>,
    /// Names for the `sync` key (sorted; never the placeholder).
    pub publish: Vec<String>,
}

/// Decide the target state. The caller writes `publish` to the `sync` key **before**
/// applying `standbys`, which makes removals safe; additions reach `publish` only on a later
/// call, once confirmed.
pub fn decide_sync(i: &SyncInputs<'_>) -> SyncTarget {
    if !i.mode.is_enabled() {
        return SyncTarget::default();
    }
    let mut candidates: Vec<&StandbyRow> = i
        .rows
        .iter()
        .filter(|r| r.streaming && i.eligible.contains(&r.name))
        .collect();
    // Those postgres already waits for first (no needless changes), then the most advanced.
    candidates.sort_by(|a, b| b.sync.cmp(&a.sync).then(b.flush_lsn.cmp(&a.flush_lsn)));
    let mut standbys: Vec<String> = candidates
        .iter()
        .take(i.count.max(1))
        .map(|r| r.name.clone())
        .collect();
    standbys.sort();
    standbys.dedup();
    if standbys.is_empty() && i.strict {
        // Nobody to wait for: keep waiting for the published ones (they may come back),
        // else for a member that cannot exist. Commits wait; none is lost.
        standbys = if i.published.is_empty() {
            vec![STRICT_PLACEHOLDER.to_string()]
        } else {
            i.published.to_vec()
        };
    }
    let confirmed = |name: &String| {
        i.current.contains(name)
            && i.rows
                .iter()
                .any(|r| &r.name == name && r.sync && r.flush_lsn >= i.changed_at_lsn)
    };
    let publish: Vec<String> = standbys
        .iter()
        .filter(|n| n.as_str() != STRICT_PLACEHOLDER)
        .filter(|n| i.published.contains(n) || confirmed(n))
        .cloned()
        .collect();
    SyncTarget { standbys, publish }
}

/// `synchronous_standby_names` for these standbys: empty, `name`, or `N (a,b)`; names are
/// double-quoted when they are not plain lower-case identifiers.
pub fn render_standby_names(standbys: &[String]) -> String {
    let quoted: Vec<String> = standbys.iter().map(|n| quote_ident(n)).collect();
    match quoted.len() {
        0 => String::new(),
        1 => quoted[0].clone(),
        n => format!("{n} ({})", quoted.join(",")),
    }
}

fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, sync: bool, lsn: u64) -> StandbyRow {
        StandbyRow {
            name: name.into(),
            streaming: true,
            sync,
            flush_lsn: lsn,
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    struct Case {
        strict: bool,
        eligible: BTreeSet<String>,
        rows: Vec<StandbyRow>,
        published: Vec<String>,
        current: Vec<String>,
        changed_at: u64,
    }

    impl Case {
        fn new(rows: Vec<StandbyRow>) -> Case {
            Case {
                strict: true,
                eligible: ["b", "c"].iter().map(|s| s.to_string()).collect(),
                rows,
                published: vec![],
                current: vec![],
                changed_at: 0,
            }
        }
        fn run(&self) -> SyncTarget {
            decide_sync(&SyncInputs {
                mode: SynchronousMode::On,
                strict: self.strict,
                count: 1,
                eligible: &self.eligible,
                rows: &self.rows,
                published: &self.published,
                current: &self.current,
                changed_at_lsn: self.changed_at,
            })
        }
    }

    #[test]
    fn off_means_nothing() {
        let c = Case::new(vec![row("b", true, 10)]);
        let t = decide_sync(&SyncInputs {
            mode: SynchronousMode::Off,
            ..SyncInputs {
                mode: SynchronousMode::On,
                strict: true,
                count: 1,
                eligible: &c.eligible,
                rows: &c.rows,
                published: &[],
                current: &[],
                changed_at_lsn: 0,
            }
        });
        assert_eq!(t, SyncTarget::default());
    }

    #[test]
    fn a_new_standby_is_set_first_and_published_once_confirmed_and_caught_up() {
        // Streaming but not yet in synchronous_standby_names: set it, publish nothing.
        let mut c = Case::new(vec![row("b", false, 100)]);
        let t = c.run();
        assert_eq!(t.standbys, names(&["b"]));
        assert!(t.publish.is_empty());
        // In the setting and sync, but behind the LSN of the change: still not published.
        c.current = names(&["b"]);
        c.rows = vec![row("b", true, 150)];
        c.changed_at = 200;
        assert!(c.run().publish.is_empty());
        // Caught up: published.
        c.rows = vec![row("b", true, 200)];
        assert_eq!(c.run().publish, names(&["b"]));
    }

    #[test]
    fn a_departing_standby_leaves_the_sync_key_first() {
        // b was published; now only c streams.
        let mut c = Case::new(vec![row("c", false, 300)]);
        c.published = names(&["b"]);
        c.current = names(&["b"]);
        let t = c.run();
        assert_eq!(t.standbys, names(&["c"]));
        assert!(t.publish.is_empty(), "b unpublished, c not yet confirmed");
    }

    #[test]
    fn strict_without_standbys_waits_for_the_published_or_the_placeholder() {
        let mut c = Case::new(vec![]);
        assert_eq!(c.run().standbys, names(&[STRICT_PLACEHOLDER]));
        assert!(c.run().publish.is_empty());
        c.published = names(&["b"]);
        c.current = names(&["b"]);
        let t = c.run();
        assert_eq!(t.standbys, names(&["b"]));
        assert_eq!(
            t.publish,
            names(&["b"]),
            "b stays the one that may take over"
        );
        c.strict = false;
        c.published = vec![];
        assert_eq!(c.run(), SyncTarget::default());
    }

    #[test]
    fn only_eligible_streaming_members_and_the_current_sync_one_is_kept() {
        let mut c = Case::new(vec![
            row("stranger", true, 999),
            StandbyRow {
                streaming: false,
                ..row("c", false, 500)
            },
            row("b", false, 100),
        ]);
        assert_eq!(c.run().standbys, names(&["b"]));
        // With two candidates, the one postgres already waits for stays.
        c.rows = vec![row("b", true, 100), row("c", false, 500)];
        assert_eq!(c.run().standbys, names(&["b"]));
    }

    #[test]
    fn rendering() {
        assert_eq!(render_standby_names(&[]), "");
        assert_eq!(render_standby_names(&names(&["node_b"])), "node_b");
        assert_eq!(
            render_standby_names(&names(&["a", "Node-C"])),
            "2 (a,\"Node-C\")"
        );
    }
}
