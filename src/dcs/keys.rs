//! Patroni's key layout in etcd: every key of a cluster lives under
//! `/<namespace>/<scope>/`, with runs of slashes collapsed (`AbstractDCS.__init__`), and the
//! namespace defaults to `/service`. Pure string work, no IO.
//!
//! Real Patroni members, `patronictl` and our own roles all read the same keys, so the names
//! here are a compatibility contract (`shared/reference/patroni.md` §1.1).

/// Patroni's default namespace.
pub const DEFAULT_NAMESPACE: &str = "/service";

/// Relative key names (after the base path and one `/`).
pub const LEADER: &str = "leader";
/// Prefix of member keys; a member key is `members/<name>`.
pub const MEMBERS: &str = "members/";
/// Dynamic configuration (JSON object).
pub const CONFIG: &str = "config";
/// Bootstrap race and system identifier.
pub const INITIALIZE: &str = "initialize";
/// Synchronous replication state.
pub const SYNC: &str = "sync";
/// Leader's last LSN, permanent slots and retained slots.
pub const STATUS: &str = "status";
/// Timeline history.
pub const HISTORY: &str = "history";
/// Requested switchover/failover.
pub const FAILOVER: &str = "failover";
/// Failsafe topology (`{name: api_url}`).
pub const FAILSAFE: &str = "failsafe";
/// Legacy leader optime (plain integer), written only for Patroni < 2.1 members.
pub const LEADER_OPTIME: &str = "optime/leader";

/// What a key under the cluster prefix means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind<'a> {
    Leader,
    /// `members/<name>`; the name is the basename.
    Member(&'a str),
    Config,
    Initialize,
    Sync,
    Status,
    History,
    Failover,
    Failsafe,
    LeaderOptime,
    /// Anything else under the prefix (other tools' keys, Citus groups, `members/a/b`):
    /// Patroni ignores them and so do we.
    Other,
}

/// The keys of one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// `/<namespace>/<scope>` with slashes collapsed, no trailing slash added.
    base: String,
    /// `base` + `/`: the range every key of the cluster shares.
    prefix: String,
}

impl Keys {
    /// The keys of cluster `scope` in `namespace` (e.g. `/manning`, `manning` or `/service/`).
    pub fn new(namespace: &str, scope: &str) -> Keys {
        let base = collapse_slashes(&format!("/{namespace}/{scope}"));
        let prefix = format!("{base}/");
        Keys { base, prefix }
    }

    /// `/<namespace>/<scope>`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `/<namespace>/<scope>/`: the prefix to range over and watch.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Full key for a relative name (`leader`, `members/x`, ...).
    pub fn key(&self, relative: &str) -> String {
        format!("{}{relative}", self.prefix)
    }

    pub fn leader(&self) -> String {
        self.key(LEADER)
    }
    pub fn member(&self, name: &str) -> String {
        self.key(&format!("{MEMBERS}{name}"))
    }
    pub fn members_prefix(&self) -> String {
        self.key(MEMBERS)
    }
    pub fn config(&self) -> String {
        self.key(CONFIG)
    }
    pub fn initialize(&self) -> String {
        self.key(INITIALIZE)
    }
    pub fn sync(&self) -> String {
        self.key(SYNC)
    }
    pub fn status(&self) -> String {
        self.key(STATUS)
    }
    pub fn history(&self) -> String {
        self.key(HISTORY)
    }
    pub fn failover(&self) -> String {
        self.key(FAILOVER)
    }
    pub fn failsafe(&self) -> String {
        self.key(FAILSAFE)
    }
    pub fn leader_optime(&self) -> String {
        self.key(LEADER_OPTIME)
    }

    /// The key relative to the prefix, or `None` when it is outside the cluster.
    pub fn relative<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(self.prefix.as_str())
    }

    /// Classify a full key. `None` when the key is outside this cluster's prefix.
    pub fn classify<'k>(&self, key: &'k str) -> Option<KeyKind<'k>> {
        self.relative(key).map(classify_relative)
    }
}

/// Classify a key relative to the cluster prefix, as `Etcd3._cluster_from_nodes` does:
/// members are `members/<name>` with exactly one slash in the relative key.
pub fn classify_relative(rel: &str) -> KeyKind<'_> {
    match rel {
        LEADER => KeyKind::Leader,
        CONFIG => KeyKind::Config,
        INITIALIZE => KeyKind::Initialize,
        SYNC => KeyKind::Sync,
        STATUS => KeyKind::Status,
        HISTORY => KeyKind::History,
        FAILOVER => KeyKind::Failover,
        FAILSAFE => KeyKind::Failsafe,
        LEADER_OPTIME => KeyKind::LeaderOptime,
        _ => match rel.strip_prefix(MEMBERS) {
            Some(name) if !name.is_empty() && !name.contains('/') => KeyKind::Member(name),
            _ => KeyKind::Other,
        },
    }
}

fn collapse_slashes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_slash = false;
    for c in s.chars() {
        if c == '/' {
            if !prev_slash {
                out.push(c);
            }
            prev_slash = true;
        } else {
            out.push(c);
            prev_slash = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_namespace_layout() {
        let k = Keys::new(DEFAULT_NAMESPACE, "batman");
        assert_eq!(k.base(), "/service/batman");
        assert_eq!(k.prefix(), "/service/batman/");
        assert_eq!(k.leader(), "/service/batman/leader");
        assert_eq!(k.member("node1"), "/service/batman/members/node1");
        assert_eq!(k.members_prefix(), "/service/batman/members/");
        assert_eq!(k.config(), "/service/batman/config");
        assert_eq!(k.initialize(), "/service/batman/initialize");
        assert_eq!(k.sync(), "/service/batman/sync");
        assert_eq!(k.status(), "/service/batman/status");
        assert_eq!(k.history(), "/service/batman/history");
        assert_eq!(k.failover(), "/service/batman/failover");
        assert_eq!(k.failsafe(), "/service/batman/failsafe");
        assert_eq!(k.leader_optime(), "/service/batman/optime/leader");
    }

    #[test]
    fn slashes_are_collapsed_like_patroni() {
        // The seed's PATRONI_NAMESPACE=/manning with PATRONI_SCOPE=enterprises.
        assert_eq!(
            Keys::new("/manning", "enterprises").base(),
            "/manning/enterprises"
        );
        assert_eq!(
            Keys::new("manning", "enterprises").base(),
            "/manning/enterprises"
        );
        assert_eq!(Keys::new("//a//", "//b").base(), "/a/b");
        assert_eq!(Keys::new("/service/", "s").leader(), "/service/s/leader");
    }

    #[test]
    fn classify_keys() {
        let k = Keys::new("/service", "c");
        assert_eq!(k.classify("/service/c/leader"), Some(KeyKind::Leader));
        assert_eq!(
            k.classify("/service/c/members/n1"),
            Some(KeyKind::Member("n1"))
        );
        assert_eq!(
            k.classify("/service/c/optime/leader"),
            Some(KeyKind::LeaderOptime)
        );
        assert_eq!(k.classify("/service/c/config"), Some(KeyKind::Config));
        assert_eq!(k.classify("/service/c/failsafe"), Some(KeyKind::Failsafe));
        // Nested member keys and Citus group keys are not ours.
        assert_eq!(k.classify("/service/c/members/a/b"), Some(KeyKind::Other));
        assert_eq!(k.classify("/service/c/members/"), Some(KeyKind::Other));
        assert_eq!(k.classify("/service/c/1/leader"), Some(KeyKind::Other));
        // Another cluster whose name starts with ours is outside the prefix.
        assert_eq!(k.classify("/service/cc/leader"), None);
        assert_eq!(k.classify("/service/c"), None);
    }
}
