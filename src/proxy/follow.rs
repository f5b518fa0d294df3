//! `manning proxy --etcd`: route by the leader key instead of polling health checks.
//!
//! HAProxy learns about a new primary from its checks: with the seed's `inter 2500ms rise 2
//! fall 4`, seconds after a switchover, and meanwhile it sends clients to the old primary,
//! now a read-only replica. With `--etcd`, the proxy watches the cluster's keys (Patroni's
//! layout, the same watch the supervisor uses) and a server is UP exactly while
//! - the `leader` key names its member, and
//! - that member's key says `role: primary` (written after the promotion completes, so a
//!   member that holds the lock but is still promoting gets no writes), and
//! - the server is that member: same name, or the host:port of its `conn_url`.
//!
//! Every other server is DOWN at once, which cuts its sessions (`on-marked-down
//! shutdown-sessions`). When etcd cannot be read the last known routing stays: the leader
//! fences itself before its lease can expire, so it cannot take writes for long unseen.
//! [`primary_server`] is the pure part.

use std::sync::Arc;

use tracing::{info, warn};

use super::backend::Backend;
use super::haproxy_cfg::ServerSpec;
use crate::dcs::model::{Cluster, Role};
use crate::dcs::{Dcs, DcsSettings};

/// The one server that is the primary according to `cluster`, and why; `None` with the
/// reason when there is none.
pub fn primary_server(cluster: &Cluster, servers: &[ServerSpec]) -> Result<usize, String> {
    let Some(leader) = cluster.leader.as_ref().map(|l| l.name.as_str()) else {
        return Err("no leader in etcd".into());
    };
    let Some(member) = cluster.members.iter().find(|m| m.name == leader) else {
        return Err(format!("the leader {leader} has no member key"));
    };
    if member.data.role != Some(Role::Primary) {
        return Err(format!("the leader {leader} is not running as primary yet"));
    }
    let address = member
        .data
        .conn_url
        .as_deref()
        .and_then(crate::api::client::split_url)
        .map(|(host, port, _)| (host, port));
    servers
        .iter()
        .position(|s| s.name == leader)
        .or_else(|| {
            let (host, port) = address.as_ref()?;
            servers
                .iter()
                .position(|s| s.host.eq_ignore_ascii_case(host) && s.port == *port)
        })
        .ok_or_else(|| {
            format!(
                "no server is named {leader} or at its address {}",
                member.data.conn_url.as_deref().unwrap_or("(no conn_url)")
            )
        })
}

/// Follow the cluster in etcd and set each backend's servers UP or DOWN; runs until the
/// task is aborted.
pub async fn run(settings: DcsSettings, backends: Vec<Arc<Backend>>) {
    let dcs = match Dcs::new(settings) {
        Ok(d) => d,
        Err(e) => {
            warn!("cannot follow etcd: {e}; every server stays DOWN");
            return;
        }
    };
    let mut watch = dcs.watch();
    let mut last: Option<Result<String, String>> = None;
    loop {
        let cluster = watch.changed().await;
        if cluster.revision == 0 {
            continue; // not read yet
        }
        for backend in &backends {
            let specs: Vec<ServerSpec> = backend.servers().iter().map(|s| s.spec.clone()).collect();
            let primary = primary_server(&cluster, &specs);
            for i in 0..specs.len() {
                let up = primary.as_ref().is_ok_and(|p| *p == i);
                let why = match &primary {
                    Ok(_) if up => "the leader key in etcd names it".to_string(),
                    Ok(p) => format!("the leader key in etcd names {}", specs[*p].name),
                    Err(e) => e.clone(),
                };
                backend.set_server_up(i, up, &why);
            }
            let now = primary.map(|i| specs[i].name.clone());
            if last.as_ref() != Some(&now) {
                match &now {
                    Ok(name) => info!("etcd: {name} is the primary"),
                    Err(why) => info!("etcd: no primary to route to ({why})"),
                }
                last = Some(now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcs::keys::Keys;
    use crate::dcs::model::Kv;

    fn spec(name: &str, host: &str, port: u16) -> ServerSpec {
        let cfg = format!(
            "defaults\n    mode tcp\nlisten l\n    bind 127.0.0.1:1\n    server {name} {host}:{port} check\n"
        );
        crate::proxy::haproxy_cfg::parse("t", &cfg, &|_| None)
            .unwrap()
            .listens[0]
            .servers[0]
            .clone()
    }

    fn cluster(leader: Option<&str>, members: &[(&str, &str, &str)]) -> Cluster {
        let keys = Keys::new("/service", "demo");
        let mut kvs = Vec::new();
        let mut rev = 1;
        let mut kv = |key: String, value: String| {
            rev += 1;
            kvs.push(Kv {
                key,
                value: value.into_bytes(),
                create_revision: rev,
                mod_revision: rev,
                lease: 0,
            });
        };
        if let Some(l) = leader {
            kv(keys.leader(), l.to_string());
        }
        for (name, role, url) in members {
            kv(
                keys.member(name),
                format!(r#"{{"conn_url":"{url}","role":"{role}","state":"running"}}"#),
            );
        }
        Cluster::from_kvs(&keys, &kvs).0
    }

    #[test]
    fn the_leader_is_found_by_name_or_address_once_it_runs_as_primary() {
        let servers = [
            spec("manager", "10.0.0.1", 15432),
            spec("demo-2", "10.0.0.2", 15432),
        ];
        let c = cluster(
            Some("demo-2"),
            &[("demo-2", "primary", "postgres://10.0.0.2:15432/postgres")],
        );
        assert_eq!(primary_server(&c, &servers), Ok(1));
        // Found by address when the server is named after the host, not the member.
        let c = cluster(
            Some("manager_abc"),
            &[(
                "manager_abc",
                "primary",
                "postgres://10.0.0.1:15432/postgres",
            )],
        );
        assert_eq!(primary_server(&c, &servers), Ok(0));
        // Holding the lock while still promoting: nobody yet.
        let c = cluster(
            Some("demo-2"),
            &[("demo-2", "replica", "postgres://10.0.0.2:15432/postgres")],
        );
        assert!(
            primary_server(&c, &servers)
                .unwrap_err()
                .contains("not running as primary")
        );
        assert!(primary_server(&cluster(None, &[]), &servers).is_err());
        let c = cluster(
            Some("elsewhere"),
            &[("elsewhere", "primary", "postgres://10.9.9.9:5432/postgres")],
        );
        assert!(
            primary_server(&c, &servers)
                .unwrap_err()
                .contains("no server")
        );
    }
}
