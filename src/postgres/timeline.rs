//! Timeline history files (`pg_wal/<TL>.history`): where each earlier timeline ended.
//!
//! A promotion starts a new timeline and postgres writes its history file: one line per
//! ancestor timeline, `<parent TL>\t<switch LSN>\t<reason>`. Patroni publishes these lines in
//! the DCS `history` key (what `patronictl history` shows), adding when the last switch
//! happened (the file's modification time) and who was promoted.

use std::path::Path;
use std::time::SystemTime;

use super::Lsn;

/// One line of a history file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    /// The timeline that ended.
    pub timeline: u32,
    /// Where it ended.
    pub lsn: Lsn,
    /// postgres' reason text (e.g. `no recovery target specified`).
    pub reason: String,
}

/// Parse a history file; comment and blank lines are skipped, a malformed line is an error.
pub fn parse(text: &str) -> Result<Vec<Switch>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.splitn(3, char::is_whitespace);
        let (Some(tl), Some(lsn)) = (fields.next(), fields.next()) else {
            return Err(format!("line {}: expected `TLI LSN reason`", i + 1));
        };
        let timeline = tl
            .parse()
            .map_err(|_| format!("line {}: {tl:?} is not a timeline", i + 1))?;
        let lsn = lsn.parse().map_err(|e| format!("line {}: {e}", i + 1))?;
        out.push(Switch {
            timeline,
            lsn,
            reason: fields.next().unwrap_or("").trim().to_string(),
        });
    }
    Ok(out)
}

/// The history of `timeline` from the data directory, with the file's modification time.
/// `Ok(None)` for timeline 1 (it has no history) or a missing file.
pub fn read(data_dir: &Path, timeline: u32) -> Result<Option<(Vec<Switch>, SystemTime)>, String> {
    if timeline <= 1 {
        return Ok(None);
    }
    let path = data_dir
        .join("pg_wal")
        .join(format!("{timeline:08X}.history"));
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mtime = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| SystemTime::now());
    parse(&text)
        .map(|s| Some((s, mtime)))
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_files_parse() {
        let text = "1\t0/3000158\tno recovery target specified\n\n\
                    2\t0/5000060\tno recovery target specified\n";
        let s = parse(text).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].timeline, 1);
        assert_eq!(s[0].lsn, Lsn(0x3000158));
        assert_eq!(s[1].reason, "no recovery target specified");
        assert!(parse("1 zz reason").unwrap_err().contains("line 1"));
        assert!(parse("x 0/1 r").unwrap_err().contains("not a timeline"));
        assert_eq!(parse("# comment\n").unwrap(), vec![]);
    }

    #[test]
    fn timeline_one_has_no_history() {
        assert_eq!(read(Path::new("/nonexistent"), 1), Ok(None));
        assert_eq!(read(Path::new("/nonexistent"), 2), Ok(None));
    }
}
