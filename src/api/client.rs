//! The one small HTTP/1 client manning needs: asking another member's REST API (`GET
//! /patroni` in a leader race, `POST /switchover` from `manning ctl`). Plain `http://` only.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;

/// Largest answer read.
const MAX_BODY: usize = 64 * 1024;

/// `scheme://[user@]host:port[/path]` → (host, port, path; `/` when absent). `None` without
/// a port.
pub fn split_url(url: &str) -> Option<(String, u16, String)> {
    let rest = url.split_once("://")?.1;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let authority = authority.rsplit('@').next()?;
    let (host, port) = crate::net::endpoint::split_host_port(authority)?;
    Some((host.to_string(), port.parse().ok()?, path.to_string()))
}

/// One request to `url` (`http://host:port/...`); `path` replaces the URL's path when given.
/// Returns the status and at most 64 KB of the body. No timeout: callers bound it.
pub async fn request(
    method: Method,
    url: &str,
    path: Option<&str>,
    body: Option<String>,
) -> Result<(u16, Bytes), String> {
    if !url.starts_with("http://") {
        return Err(format!("{url}: only http:// URLs are supported"));
    }
    let (host, port, url_path) = split_url(url).ok_or(format!("{url}: not http://host:port"))?;
    let stream = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path.unwrap_or(&url_path))
        .header(hyper::header::HOST, format!("{host}:{port}"));
    if body.is_some() {
        req = req.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let bytes = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    conn.abort();
    Ok((status, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            split_url("http://10.0.0.2:8008/patroni"),
            Some(("10.0.0.2".into(), 8008, "/patroni".into()))
        );
        assert_eq!(
            split_url("http://[::1]:8008"),
            Some(("::1".into(), 8008, "/".into()))
        );
        assert_eq!(
            split_url("postgres://u@10.0.0.2:5432/postgres"),
            Some(("10.0.0.2".into(), 5432, "/postgres".into()))
        );
        assert_eq!(split_url("http://host/patroni"), None);
        assert_eq!(split_url("garbage"), None);
    }
}
