//! `;json`: HAProxy's typed JSON stats. An array with one array per row; each present
//! field is an object with its position and name, the row's kind and ids, HAProxy's tags,
//! and a typed value. Empty fields are left out, as HAProxy does.

use serde_json::{Value as Json, json};

use super::Snapshot;
use super::fields::{COLUMNS, Value, tags};

/// Render the snapshot as HAProxy's JSON.
pub fn render(snap: &Snapshot) -> String {
    let mut rows = Vec::new();
    for p in &snap.proxies {
        for row in &p.rows {
            let mut fields = Vec::new();
            for (pos, name) in COLUMNS.iter().enumerate() {
                let Some(v) = row.field(name, snap.pid) else {
                    continue;
                };
                let (origin, nature, scope) = tags(name, row.kind);
                let value = match &v {
                    Value::Str(s) => json!(s),
                    Value::U32(n) | Value::U64(n) => json!(n),
                    Value::S32(n) => json!(n),
                };
                fields.push(json!({
                    "objType": row.kind.obj_type(),
                    "proxyId": row.iid,
                    "id": row.sid,
                    "field": {"pos": pos, "name": name},
                    "processNum": 1,
                    "tags": {"origin": origin, "nature": nature, "scope": scope},
                    "value": {"type": v.json_type(), "value": value},
                }));
            }
            rows.push(Json::Array(fields));
        }
    }
    Json::Array(rows).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::stats::testdata::seed_snapshot;

    #[test]
    fn haproxys_shape_and_types() {
        let v: Json = serde_json::from_str(&render(&seed_snapshot())).unwrap();
        let rows = v.as_array().unwrap();
        assert_eq!(rows.len(), 5);
        let server = rows[1].as_array().unwrap();
        let field = |name: &str| {
            server
                .iter()
                .find(|f| f["field"]["name"] == name)
                .unwrap_or_else(|| panic!("no {name}"))
                .clone()
        };
        let px = field("pxname");
        assert_eq!(px["objType"], "Server");
        assert_eq!(px["proxyId"], 2);
        assert_eq!(px["id"], 1);
        assert_eq!(px["processNum"], 1);
        assert_eq!(px["field"]["pos"], 0);
        assert_eq!(px["tags"]["origin"], "Key");
        assert_eq!(px["value"], json!({"type": "str", "value": "manning"}));
        assert_eq!(field("status")["value"]["value"], "UP");
        assert_eq!(field("check_status")["value"]["value"], "L7OK");
        assert_eq!(field("slim")["value"], json!({"type": "u32", "value": 128}));
        assert_eq!(field("slim")["tags"]["nature"], "Limit");
        assert_eq!(field("stot")["value"]["type"], "u64");
        assert_eq!(
            field("lastsess")["value"],
            json!({"type": "s32", "value": 2})
        );
        assert_eq!(field("check_health")["field"]["pos"], 69);
        assert!(
            server.iter().all(|f| f["field"]["name"] != "hrsp_2xx"),
            "empty fields omitted"
        );
        assert_eq!(rows[0][0]["objType"], "Frontend");
        assert_eq!(rows[4][0]["objType"], "Backend");
        assert_eq!(rows[4][0]["id"], 0);
    }
}
