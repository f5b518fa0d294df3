//! `manning ctl`: operator verbs against a running cluster, like patronictl's (which also
//! works against manning). It reads the cluster from etcd with the member configuration's
//! `etcd3`, `namespace` and `scope`, and asks the leader's REST API to act.
//!
//! Verbs so far: `list` and `switchover`. [`render_list`] is pure.

use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};

use crate::config::{LoadOptions, load};
use crate::dcs::Dcs;
use crate::dcs::model::Cluster;
use crate::error::usage;

/// Arguments of `manning ctl`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A member's patroni.yml (for `etcd3`, `namespace` and `scope`).
    #[arg(long, short = 'c', value_name = "FILE", env = "PATRONICTL_CONFIG_FILE")]
    pub config: PathBuf,

    #[command(subcommand)]
    pub verb: Verb,
}

/// What to do.
#[derive(Debug, clap::Subcommand)]
pub enum Verb {
    /// Members, their roles, states, timelines and lag (patronictl list).
    List,
    /// Hand the leader lock to another member: the leader stops, the candidate promotes,
    /// the old leader follows it (patronictl switchover --force).
    Switchover {
        /// The current leader; the request fails if someone else leads.
        #[arg(long)]
        leader: Option<String>,
        /// The member to promote (in synchronous mode: a synchronous standby).
        #[arg(long)]
        candidate: String,
    },
}

/// Run `manning ctl`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let loaded = load(&LoadOptions::from_process(Some(args.config.clone()))).map_err(|p| {
        for problem in &p.0 {
            eprintln!("{problem}");
        }
        usage(format!(
            "{}: the configuration has errors",
            args.config.display()
        ))
    })?;
    let cfg = loaded.config;
    let dynamic = cfg.effective_dynamic(None);
    let settings =
        crate::supervise::dcs_settings(&cfg, &dynamic).map_err(|e| usage(format!("etcd3: {e}")))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let dcs = Dcs::new(settings).map_err(|e| usage(format!("etcd3: {e}")))?;
        let cluster = dcs
            .get_cluster()
            .await
            .map_err(|e| anyhow!("reading the cluster from etcd: {e}"))?;
        match args.verb {
            Verb::List => {
                print!("{}", render_list(&cfg.scope, &cluster));
                Ok(())
            }
            Verb::Switchover { leader, candidate } => {
                switchover(&cluster, leader.as_deref(), &candidate).await
            }
        }
    })
}

/// The table `manning ctl list` prints.
pub fn render_list(scope: &str, cluster: &Cluster) -> String {
    let leader = cluster.leader.as_ref().map(|l| l.name.as_str());
    let voters = cluster.sync.voters();
    let leader_wal = leader
        .and_then(|l| cluster.members.iter().find(|m| m.name == l))
        .and_then(|m| m.data.xlog_location)
        .unwrap_or(cluster.status.optime);
    let mut rows = vec![[
        "Member".to_string(),
        "Host".into(),
        "Role".into(),
        "State".into(),
        "TL".into(),
        "Lag in MB".into(),
    ]];
    for m in &cluster.members {
        let d = &m.data;
        let role = if Some(m.name.as_str()) == leader {
            "Leader"
        } else if voters.contains(&m.name.as_str()) {
            "Sync Standby"
        } else {
            "Replica"
        };
        let state = if role == "Leader" {
            d.state.as_ref().map(|s| s.as_str().to_string())
        } else {
            d.replication_state
                .clone()
                .or_else(|| d.state.as_ref().map(|s| s.as_str().to_string()))
        };
        let host = d
            .conn_url
            .as_deref()
            .and_then(|u| u.split_once("://"))
            .and_then(|(_, rest)| rest.split('/').next())
            .unwrap_or("")
            .to_string();
        let lag = match (role, d.xlog_location) {
            ("Leader", _) => String::new(),
            (_, Some(x)) => format!("{}", leader_wal.saturating_sub(x) / (1024 * 1024)),
            (_, None) => "unknown".into(),
        };
        rows.push([
            m.name.clone(),
            host,
            role.into(),
            state.unwrap_or_default(),
            d.timeline.map(|t| t.to_string()).unwrap_or_default(),
            lag,
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = format!("cluster {scope}\n");
    for r in &rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join(" | ").trim_end());
        out.push('\n');
    }
    out
}

async fn switchover(
    cluster: &Cluster,
    leader: Option<&str>,
    candidate: &str,
) -> anyhow::Result<()> {
    let current = cluster
        .leader
        .as_ref()
        .map(|l| l.name.clone())
        .ok_or_else(|| anyhow!("the cluster has no leader: nothing to switch over from"))?;
    if let Some(l) = leader
        && l != current
    {
        bail!("{l} is not the leader ({current} is)");
    }
    if !cluster.members.iter().any(|m| m.name == candidate) {
        return Err(usage(format!("{candidate} is not a member of the cluster")));
    }
    let api = cluster
        .members
        .iter()
        .find(|m| m.name == current)
        .and_then(|m| m.data.api_url.clone())
        .ok_or_else(|| anyhow!("the leader {current} publishes no api_url"))?;
    let body = serde_json::json!({"leader": current, "candidate": candidate}).to_string();
    let answer =
        crate::api::client::request(hyper::Method::POST, &api, Some("/switchover"), Some(body));
    let (status, text) = tokio::time::timeout(std::time::Duration::from_secs(120), answer)
        .await
        .map_err(|_| anyhow!("{api} did not answer within 120 s"))?
        .map_err(|e| anyhow!("asking {current} to switch over: {e}"))?;
    println!("{}", String::from_utf8_lossy(&text).trim());
    if status != 200 {
        bail!("switchover failed: {status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcs::keys::Keys;
    use crate::dcs::model::Kv;

    #[test]
    fn list_shows_roles_states_and_lag() {
        let keys = Keys::new("/service", "demo");
        let kv = |key: String, value: &str, rev: i64| Kv {
            key,
            value: value.as_bytes().to_vec(),
            create_revision: rev,
            mod_revision: rev,
            lease: 0,
        };
        let kvs = vec![
            kv(keys.leader(), "a", 2),
            kv(keys.sync(), r#"{"leader":"a","sync_standby":"b"}"#, 3),
            kv(
                keys.member("a"),
                r#"{"conn_url":"postgres://10.0.0.1:5432/postgres","role":"primary","state":"running","timeline":2,"xlog_location":10485760}"#,
                4,
            ),
            kv(
                keys.member("b"),
                r#"{"conn_url":"postgres://10.0.0.2:5432/postgres","role":"replica","state":"running","replication_state":"streaming","timeline":2,"xlog_location":10485760}"#,
                5,
            ),
            kv(
                keys.member("c"),
                r#"{"conn_url":"postgres://10.0.0.3:5432/postgres","role":"replica","state":"running","timeline":2,"xlog_location":3145728}"#,
                6,
            ),
        ];
        let cluster = Cluster::from_kvs(&keys, &kvs).0;
        let out = render_list("demo", &cluster);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "cluster demo");
        assert!(
            lines[2].starts_with("a      | 10.0.0.1:5432 | Leader       | running"),
            "{out}"
        );
        assert!(
            lines[3].contains("| Sync Standby | streaming | 2  | 0"),
            "{out}"
        );
        assert!(
            lines[4].contains("| Replica      | running   | 2  | 7"),
            "{out}"
        );
    }
}
