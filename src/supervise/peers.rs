//! Asking the other members about themselves when the leader lock is free (Patroni's
//! `fetch_nodes_statuses`): `GET <api_url>` of each member in parallel, two seconds at most,
//! no retries. A member that does not answer in time is left out: a dead node must not stop
//! a failover. What the answers mean is decided by the pure [`crate::ha::decide`].

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tracing::debug;

use crate::ha::decide::Peer;

/// How long a member has to answer (Patroni's fixed 2 s).
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// A member to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub api_url: String,
    /// The `nofailover` tag from its member key.
    pub nofailover: bool,
}

impl Target {
    /// The member to ask, if it publishes an `api_url`.
    pub fn of(m: &crate::dcs::model::ClusterMember) -> Option<Target> {
        Some(Target {
            name: m.name.clone(),
            api_url: m.data.api_url.clone()?,
            nofailover: m.data.tag_bool("nofailover"),
        })
    }
}

/// Read a peer's `GET /patroni` document: primary or not, its WAL position, its tags.
pub fn parse_status(target: &Target, body: &[u8]) -> Option<Peer> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let role = v.get("role")?.as_str()?;
    let xlog = v.get("xlog");
    let field = |k: &str| xlog.and_then(|x| x.get(k)).and_then(Value::as_u64);
    let primary = matches!(role, "primary" | "master");
    let wal = if primary {
        field("location").unwrap_or(0)
    } else {
        field("received_location")
            .unwrap_or(0)
            .max(field("replayed_location").unwrap_or(0))
    };
    let tagged = v
        .get("tags")
        .and_then(|t| t.get("nofailover"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Some(Peer {
        name: target.name.clone(),
        primary,
        wal,
        nofailover: target.nofailover || tagged,
    })
}

async fn get(url: &str) -> Result<Bytes, String> {
    crate::api::client::request(hyper::Method::GET, url, None, None)
        .await
        .map(|(_, body)| body)
}

/// Ask every target at once; returns the ones that answered with a status document, in
/// the order of `targets`.
pub async fn fetch_all(targets: &[Target]) -> Vec<Peer> {
    let mut set = tokio::task::JoinSet::new();
    for (i, t) in targets.iter().cloned().enumerate() {
        set.spawn(async move {
            let peer = match tokio::time::timeout(TIMEOUT, get(&t.api_url)).await {
                Ok(Ok(body)) => parse_status(&t, &body),
                Ok(Err(e)) => {
                    debug!(member = %t.name, "status request failed: {e}");
                    None
                }
                Err(_) => {
                    debug!(member = %t.name, "no status within {TIMEOUT:?}");
                    None
                }
            };
            (i, peer)
        });
    }
    let mut out: Vec<(usize, Peer)> = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok((i, Some(p))) = r {
            out.push((i, p));
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, p)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(nofailover: bool) -> Target {
        Target {
            name: "m2".into(),
            api_url: "http://127.0.0.1:8008/patroni".into(),
            nofailover,
        }
    }

    #[test]
    fn primary_and_replica_documents() {
        let p = parse_status(
            &target(false),
            br#"{"state":"running","role":"primary","xlog":{"location":500}}"#,
        )
        .unwrap();
        assert!(p.primary);
        assert_eq!(p.wal, 500);
        let r = parse_status(
            &target(false),
            br#"{"role":"replica","xlog":{"received_location":700,"replayed_location":650},
                "tags":{"nofailover":true}}"#,
        )
        .unwrap();
        assert!(!r.primary);
        assert_eq!(r.wal, 700);
        assert!(r.nofailover, "the tag in the document counts");
        let r = parse_status(&target(true), br#"{"role":"replica"}"#).unwrap();
        assert_eq!(r.wal, 0);
        assert!(r.nofailover, "the tag in the member key counts");
    }

    #[test]
    fn garbage_is_no_answer() {
        for body in [&b"not json"[..], b"{}", br#"{"role":5}"#, b"[]"] {
            assert_eq!(parse_status(&target(false), body), None);
        }
    }

    /// Without the timeout this would wait forever; the paused clock jumps to it.
    #[tokio::test(start_paused = true)]
    async fn a_silent_member_is_left_out_within_the_timeout() {
        // Accepts and never answers.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let _hold = tokio::spawn(async move {
            let mut keep = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                keep.push(s);
            }
        });
        let t = Target {
            name: "silent".into(),
            api_url: format!("http://{addr}/patroni"),
            nofailover: false,
        };
        let started = tokio::time::Instant::now();
        assert!(fetch_all(&[t]).await.is_empty());
        assert!(started.elapsed() >= TIMEOUT);
    }
}
