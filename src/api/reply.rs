//! A response as the pure layers decide it: status, optional body and its kind, extra
//! headers. The server turns it into an HTTP response; tests inspect it directly.

/// The body of a reply and its content type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// `application/json`.
    Json(String),
    /// A human-readable message. Patroni sends these as `text/html`, and so do we, because
    /// clients (patronictl) print the text whatever the type.
    Text(String),
    /// `text/plain` (Prometheus exposition).
    Plain(String),
}

impl Body {
    /// The `Content-Type` header value.
    pub fn content_type(&self) -> &'static str {
        match self {
            Body::Json(_) => "application/json",
            Body::Text(_) => "text/html",
            Body::Plain(_) => "text/plain",
        }
    }

    /// The body text, owned.
    pub fn into_string(self) -> String {
        match self {
            Body::Json(s) | Body::Text(s) | Body::Plain(s) => s,
        }
    }

    /// The body text.
    pub fn as_str(&self) -> &str {
        match self {
            Body::Json(s) | Body::Text(s) | Body::Plain(s) => s,
        }
    }
}

/// A decided response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// `None`: the status line alone (HEAD, OPTIONS, `/liveness`, `/readiness`), which is
    /// what HAProxy's `option httpchk` reads.
    pub body: Option<Body>,
    /// Extra response headers (`WWW-Authenticate`, `lsn`).
    pub headers: Vec<(String, String)>,
}

impl Reply {
    /// Status only.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            body: None,
            headers: Vec::new(),
        }
    }

    /// A JSON document.
    pub fn json(status: u16, json: String) -> Reply {
        Reply {
            status,
            body: Some(Body::Json(json)),
            headers: Vec::new(),
        }
    }

    /// A message.
    pub fn text(status: u16, text: impl Into<String>) -> Reply {
        Reply {
            status,
            body: Some(Body::Text(text.into())),
            headers: Vec::new(),
        }
    }

    /// Plain text (metrics).
    pub fn plain(status: u16, text: String) -> Reply {
        Reply {
            status,
            body: Some(Body::Plain(text)),
            headers: Vec::new(),
        }
    }

    /// Add a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The body text, empty when there is none (for tests and logs).
    pub fn body_str(&self) -> &str {
        self.body.as_ref().map_or("", Body::as_str)
    }
}

/// The standard reason phrase, used as the message of bare error replies (Patroni's
/// `send_error(code)`).
pub fn reason(status: u16) -> &'static str {
    hyper::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
}

/// Patroni's `send_error(code)`: the status with its reason phrase as the message.
pub fn error(status: u16) -> Reply {
    Reply::text(status, reason(status))
}
