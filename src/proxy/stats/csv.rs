//! `;csv`: HAProxy's CSV stats. The first line is `# ` and the column names; every line
//! ends with a comma, as HAProxy writes it; a field is quoted only when it holds a comma, a
//! quote or a line break (quotes doubled).

use super::Snapshot;
use super::fields::COLUMNS;

/// Render the snapshot as HAProxy's CSV.
pub fn render(snap: &Snapshot) -> String {
    let mut out = String::from("# ");
    for c in COLUMNS {
        out.push_str(c);
        out.push(',');
    }
    out.push('\n');
    for p in &snap.proxies {
        for row in &p.rows {
            for c in COLUMNS {
                if let Some(v) = row.field(c, snap.pid) {
                    push_field(&mut out, &v.to_string());
                }
                out.push(',');
            }
            out.push('\n');
        }
    }
    out
}

fn push_field(out: &mut String, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::stats::testdata::seed_snapshot;

    /// HAProxy 2.6's header line, captured from `haproxy -f` with the seed's config.
    const HAPROXY_26_HEADER: &str = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,need_conn_est,uweight,agg_server_status,agg_server_check_status,agg_check_status,-,ssl_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,h2_data_rcvd,h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors,h2_detected_strm_protocol_errors,h2_rst_stream_resp,h2_goaway_resp,h2_open_connections,h2_backend_open_streams,h2_total_connections,h2_backend_total_streams,h1_open_connections,h1_open_streams,h1_total_connections,h1_total_streams,h1_bytes_in,h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out,";

    /// Split one CSV line the way a scraper would (no quoted commas in this data).
    fn cells(line: &str) -> Vec<&str> {
        let mut v: Vec<&str> = line.split(',').collect();
        assert_eq!(v.pop(), Some(""), "every line ends with a comma");
        v
    }

    #[test]
    fn header_is_haproxys() {
        let csv = render(&seed_snapshot());
        assert_eq!(csv.lines().next().unwrap(), HAPROXY_26_HEADER);
    }

    #[test]
    fn rows_carry_states_and_checks_in_haproxys_columns() {
        let csv = render(&seed_snapshot());
        let mut lines = csv.lines();
        let header: Vec<&str> = cells(lines.next().unwrap().trim_start_matches("# "));
        let rows: Vec<Vec<&str>> = lines.map(cells).collect();
        assert_eq!(rows.len(), 5);
        for r in &rows {
            assert_eq!(r.len(), header.len(), "every row has every column");
        }
        let get = |row: &Vec<&str>, col: &str| -> String {
            row[header.iter().position(|h| *h == col).unwrap()].to_string()
        };
        let by_name = |n: &str| rows.iter().find(|r| r[1] == n).unwrap();
        let fe = by_name("FRONTEND");
        assert_eq!(
            (get(fe, "status"), get(fe, "slim"), get(fe, "type")),
            ("OPEN".into(), "384".into(), "0".into())
        );
        assert_eq!(get(fe, "check_status"), "");
        let up = by_name("manager");
        assert_eq!(get(up, "status"), "UP");
        assert_eq!(get(up, "check_status"), "L7OK");
        assert_eq!(get(up, "check_code"), "200");
        assert_eq!(get(up, "check_health"), "5");
        assert_eq!(get(up, "check_desc"), "Layer7 check passed");
        assert_eq!(
            (get(up, "scur"), get(up, "slim"), get(up, "stot")),
            ("3".into(), "128".into(), "42".into())
        );
        assert_eq!(
            (
                get(up, "iid"),
                get(up, "sid"),
                get(up, "type"),
                get(up, "pid")
            ),
            ("2".into(), "1".into(), "2".into(), "1".into())
        );
        let down = by_name("worker-01");
        assert_eq!(get(down, "status"), "DOWN");
        assert_eq!(
            (
                get(down, "check_status"),
                get(down, "check_code"),
                get(down, "last_chk")
            ),
            ("L7STS".into(), "503".into(), "Service Unavailable".into())
        );
        assert_eq!(
            (
                get(down, "chkfail"),
                get(down, "chkdown"),
                get(down, "downtime")
            ),
            ("1".into(), "1".into(), "7".into())
        );
        let missing = by_name("worker-02");
        assert_eq!(get(missing, "check_status"), "L4CON");
        assert_eq!(
            get(missing, "check_code"),
            "",
            "no HTTP code without an answer"
        );
        let be = by_name("BACKEND");
        assert_eq!(
            (
                get(be, "status"),
                get(be, "act"),
                get(be, "type"),
                get(be, "qmax")
            ),
            ("UP".into(), "1".into(), "1".into(), "1".into())
        );
        // Columns manning has no data for stay empty.
        assert_eq!(get(up, "hrsp_2xx"), "");
        assert_eq!(get(be, "comp_in"), "");
    }

    #[test]
    fn fields_with_commas_or_quotes_are_quoted() {
        let mut s = seed_snapshot();
        s.proxies[0].rows[2].check.as_mut().unwrap().info = "bad \"x\", y".into();
        let csv = render(&s);
        assert!(csv.contains(",\"bad \"\"x\"\", y\","), "{csv}");
    }
}
