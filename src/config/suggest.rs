//! "Did you mean …?" for unknown keys and environment variables.
//!
//! Patroni silently ignores keys it does not know, so a typo such as `synchronus_mode`
//! quietly turns synchronous replication off. manning reports unknown keys and names the
//! closest known one, using the optimal-string-alignment edit distance (insertions,
//! deletions, substitutions and swaps of neighbours each cost 1).

/// Edit distance between `a` and `b`, case-insensitive, counting a swap of two adjacent
/// characters as one edit.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().flat_map(char::to_lowercase).collect();
    let b: Vec<char> = b.chars().flat_map(char::to_lowercase).collect();
    let (n, m) = (a.len(), b.len());
    // d[i][j] = distance between a[..i] and b[..j]
    let mut d = vec![vec![0usize; m + 1]; n + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=n {
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[n][m]
}

/// The known name closest to `unknown`, if it is close enough to be a plausible typo:
/// at most one edit for short names, up to a third of the length for longer ones.
/// An exact case-insensitive match (`TTL` for `ttl`) always qualifies.
pub fn closest<'a>(unknown: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (unknown.chars().count() / 3).max(1);
    let mut best: Option<(usize, &str)> = None;
    for candidate in known {
        let d = edit_distance(unknown, candidate);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, candidate));
        }
    }
    best.map(|(_, c)| c)
}

/// `" (did you mean `x`?)"` or an empty string.
pub fn did_you_mean<'a>(unknown: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    match closest(unknown, known) {
        Some(c) => format!(" (did you mean `{c}`?)"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("ttl", "ttl"), 0);
        assert_eq!(edit_distance("TTL", "ttl"), 0);
        assert_eq!(edit_distance("synchronus_mode", "synchronous_mode"), 1);
        assert_eq!(
            edit_distance("loop_wiat", "loop_wait"),
            1,
            "a swap is one edit"
        );
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn closest_known_key() {
        let known = [
            "synchronous_mode",
            "synchronous_mode_strict",
            "ttl",
            "loop_wait",
        ];
        assert_eq!(closest("synchronus_mode", known), Some("synchronous_mode"));
        assert_eq!(
            closest("synchronous_mode_stritc", known),
            Some("synchronous_mode_strict")
        );
        assert_eq!(closest("tll", known), Some("ttl"));
        assert_eq!(closest("loopwait", known), Some("loop_wait"));
        assert_eq!(closest("completely_different", known), None);
        assert_eq!(closest("x", known), None);
    }

    #[test]
    fn message_form() {
        assert_eq!(
            did_you_mean("scpoe", ["scope", "name"]),
            " (did you mean `scope`?)"
        );
        assert_eq!(did_you_mean("zzzzzz", ["scope"]), "");
    }
}
