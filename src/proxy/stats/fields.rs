//! The field names of HAProxy's stats, their order, and each row's value for each field.
//!
//! The names and their order are HAProxy 2.6's `show stat` / `;csv` output (an interface
//! that scrapers rely on); the JSON types and tags are those HAProxy's `;json` output gives
//! them.

use super::{Kind, Row};

/// The 128 columns of HAProxy 2.6's CSV, in order.
pub const COLUMNS: [&str; 128] = [
    "pxname",
    "svname",
    "qcur",
    "qmax",
    "scur",
    "smax",
    "slim",
    "stot",
    "bin",
    "bout",
    "dreq",
    "dresp",
    "ereq",
    "econ",
    "eresp",
    "wretr",
    "wredis",
    "status",
    "weight",
    "act",
    "bck",
    "chkfail",
    "chkdown",
    "lastchg",
    "downtime",
    "qlimit",
    "pid",
    "iid",
    "sid",
    "throttle",
    "lbtot",
    "tracked",
    "type",
    "rate",
    "rate_lim",
    "rate_max",
    "check_status",
    "check_code",
    "check_duration",
    "hrsp_1xx",
    "hrsp_2xx",
    "hrsp_3xx",
    "hrsp_4xx",
    "hrsp_5xx",
    "hrsp_other",
    "hanafail",
    "req_rate",
    "req_rate_max",
    "req_tot",
    "cli_abrt",
    "srv_abrt",
    "comp_in",
    "comp_out",
    "comp_byp",
    "comp_rsp",
    "lastsess",
    "last_chk",
    "last_agt",
    "qtime",
    "ctime",
    "rtime",
    "ttime",
    "agent_status",
    "agent_code",
    "agent_duration",
    "check_desc",
    "agent_desc",
    "check_rise",
    "check_fall",
    "check_health",
    "agent_rise",
    "agent_fall",
    "agent_health",
    "addr",
    "cookie",
    "mode",
    "algo",
    "conn_rate",
    "conn_rate_max",
    "conn_tot",
    "intercepted",
    "dcon",
    "dses",
    "wrew",
    "connect",
    "reuse",
    "cache_lookups",
    "cache_hits",
    "srv_icur",
    "src_ilim",
    "qtime_max",
    "ctime_max",
    "rtime_max",
    "ttime_max",
    "eint",
    "idle_conn_cur",
    "safe_conn_cur",
    "used_conn_cur",
    "need_conn_est",
    "uweight",
    "agg_server_status",
    "agg_server_check_status",
    "agg_check_status",
    "-",
    "ssl_sess",
    "ssl_reused_sess",
    "ssl_failed_handshake",
    "h2_headers_rcvd",
    "h2_data_rcvd",
    "h2_settings_rcvd",
    "h2_rst_stream_rcvd",
    "h2_goaway_rcvd",
    "h2_detected_conn_protocol_errors",
    "h2_detected_strm_protocol_errors",
    "h2_rst_stream_resp",
    "h2_goaway_resp",
    "h2_open_connections",
    "h2_backend_open_streams",
    "h2_total_connections",
    "h2_backend_total_streams",
    "h1_open_connections",
    "h1_open_streams",
    "h1_total_connections",
    "h1_total_streams",
    "h1_bytes_in",
    "h1_bytes_out",
    "h1_spliced_bytes_in",
    "h1_spliced_bytes_out",
];

/// A field's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    /// JSON type `u32`.
    U32(u64),
    /// JSON type `u64`.
    U64(u64),
    /// JSON type `s32`.
    S32(i64),
}

impl Value {
    /// The JSON `type`.
    pub fn json_type(&self) -> &'static str {
        match self {
            Value::Str(_) => "str",
            Value::U32(_) => "u32",
            Value::U64(_) => "u64",
            Value::S32(_) => "s32",
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Str(s) => f.write_str(s),
            Value::U32(n) | Value::U64(n) => write!(f, "{n}"),
            Value::S32(n) => write!(f, "{n}"),
        }
    }
}

/// HAProxy's JSON tags of a field: (origin, nature, scope).
pub fn tags(name: &str, kind: Kind) -> (&'static str, &'static str, &'static str) {
    match name {
        "pxname" | "svname" => ("Key", "Name", "Service"),
        "pid" => ("Key", "Gauge", "Process"),
        "iid" | "sid" => ("Key", "Gauge", "Service"),
        "slim" | "rate_lim" => ("Config", "Limit", "Process"),
        "type" | "check_rise" | "check_fall" | "check_health" | "mode" => {
            ("Config", "Gauge", "Service")
        }
        "status" => ("Status", "Gauge", "Process"),
        "act" | "bck" if kind == Kind::Server => ("Status", "Gauge", "Process"),
        "qcur" | "scur" | "act" | "bck" => ("Metric", "Gauge", "Process"),
        "qmax" | "smax" | "qtime_max" | "ctime_max" | "rtime_max" | "ttime_max"
        | "conn_rate_max" => ("Metric", "Max", "Process"),
        "rate_max" if kind == Kind::Backend => ("Metric", "Gauge", "Process"),
        "rate_max" => ("Metric", "Max", "Process"),
        "rate" if kind == Kind::Backend => ("Metric", "Gauge", "Process"),
        "rate" | "conn_rate" => ("Metric", "Rate", "Process"),
        "weight" | "qtime" | "ctime" | "rtime" | "ttime" => ("Metric", "Avg", "Process"),
        "lastchg" | "lastsess" => ("Metric", "Age", "Process"),
        "check_duration" => ("Metric", "Duration", "Process"),
        "check_status" | "check_code" | "last_chk" | "check_desc" | "addr" => {
            ("Metric", "Output", "Process")
        }
        _ => ("Metric", "Counter", "Process"),
    }
}

impl Row {
    /// The value of field `name`, or `None` when this row has none (rendered empty).
    pub fn field(&self, name: &str, pid: u32) -> Option<Value> {
        use Value::*;
        let is_fe = self.kind == Kind::Frontend;
        let is_sv = self.kind == Kind::Server;
        let check = self.check.as_ref();
        Some(match name {
            "pxname" => Str(self.pxname.clone()),
            "svname" => Str(self.svname.clone()),
            "qcur" => U32(self.qcur?),
            "qmax" => U32(self.qmax?),
            "scur" => U32(self.scur),
            "smax" => U32(self.smax),
            "slim" => U32(self.slim?),
            "stot" => U64(self.stot),
            "bin" => U64(self.bin),
            "bout" => U64(self.bout),
            // manning has no deny rules and parses no requests: these are truly zero.
            "dreq" if !is_sv => U64(0),
            "dresp" => U64(0),
            "ereq" if is_fe => U64(0),
            "econ" => U64(self.econ?),
            "wretr" => U64(self.wretr?),
            // No `option redispatch`: never redispatched.
            "wredis" if !is_fe => U64(0),
            "status" => Str(self.status.clone()),
            "weight" => U32(self.weight?),
            "act" => U32(self.act?),
            "bck" => U32(self.bck?),
            "chkfail" => U64(self.chkfail?),
            "chkdown" => U64(self.chkdown?),
            "lastchg" => U32(self.lastchg?),
            "downtime" => U32(self.downtime?),
            "pid" => U32(u64::from(pid)),
            "iid" => U32(u64::from(self.iid)),
            "sid" => U32(u64::from(self.sid)),
            "lbtot" => U64(self.lbtot?),
            "type" => U32(self.kind.type_code()),
            "rate" => U32(self.rate),
            "rate_lim" if is_fe => U32(0),
            "rate_max" => U32(self.rate_max),
            "check_status" => Str(check?.status.name().to_string()),
            "check_code" => U32(u64::from(check?.code?)),
            "check_duration" => U64(check?.duration_ms),
            "lastsess" => S32(self.lastsess?),
            "last_chk" => Str(check?.info.clone()),
            "qtime" => U32(self.qtime?.0),
            "ctime" => U32(self.ctime?.0),
            "ttime" => U32(self.ttime?.0),
            "qtime_max" => U32(self.qtime?.1),
            "ctime_max" => U32(self.ctime?.1),
            "ttime_max" => U32(self.ttime?.1),
            "check_desc" => Str(check?.status.description().to_string()),
            "check_rise" => U32(u64::from(check?.rise)),
            "check_fall" => U32(u64::from(check?.fall)),
            "check_health" => U32(u64::from(check?.health)),
            "addr" => Str(self.addr.clone()?),
            "mode" => Str("tcp".into()),
            "conn_rate" if is_fe => U32(self.rate),
            "conn_rate_max" if is_fe => U32(self.rate_max),
            "conn_tot" if is_fe => U64(self.stot),
            "connect" => U64(self.connect?),
            _ => return None,
        })
    }
}
