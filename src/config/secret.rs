//! [`Secret`]: a string that never shows itself by accident.
//!
//! Passwords and anything read through `{{ secret "NAME" }}` are held in this type. Its
//! `Debug`, `Display` and `Serialize` implementations print `<redacted>`, so a secret cannot
//! reach a log line, an error message or `manning config show` unless code asks for it by
//! name with [`Secret::expose`]. The single sanctioned way to serialize the real values is
//! [`reveal_secrets`], which `manning config show --show-secrets` uses.

use std::cell::Cell;
use std::fmt;

/// What every redacted value looks like in output.
pub const REDACTED: &str = "<redacted>";

/// A secret string (password, key passphrase, anything from `{{ secret "..." }}`).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The real value. Call this only where the value is handed to its consumer (a pgpass
    /// file, an authentication header), never to format a message.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

thread_local! {
    static REVEAL: Cell<bool> = const { Cell::new(false) };
}

/// Run `f` with secrets serialized as their real values on this thread (for
/// `config show --show-secrets`). Everywhere else they serialize as `"<redacted>"`.
pub fn reveal_secrets<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            REVEAL.with(|r| r.set(self.0));
        }
    }
    let _reset = Reset(REVEAL.with(|r| r.replace(true)));
    f()
}

/// True inside [`reveal_secrets`].
pub(crate) fn revealing() -> bool {
    REVEAL.with(|r| r.get())
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if revealing() {
            s.serialize_str(&self.0)
        } else {
            s.serialize_str(REDACTED)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed_unless_asked() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), REDACTED);
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"<redacted>\"");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn reveal_is_scoped() {
        let s = Secret::new("a\"b");
        let shown = reveal_secrets(|| serde_json::to_string(&s).unwrap());
        assert_eq!(shown, r#""a\"b""#);
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"<redacted>\"");
    }
}
