//! Physical replication slots for the members (`postgresql.use_slots`, Patroni's default):
//! the primary keeps one slot per other member so a replica that falls behind or restarts
//! finds its WAL still there, and each replica names its slot in `primary_slot_name`.
//!
//! Slot names follow Patroni's rule so a mixed or migrated cluster agrees on them. Slots are
//! created, never dropped here: a slot of a member that left keeps WAL until an operator
//! drops it (Patroni drops unknown slots; manning does not yet tell a member's old slot from
//! one a user made by hand).

use std::collections::BTreeSet;

use tokio_postgres::Client;

/// Patroni's `slot_name_from_member_name`: lower case; `-` and `.` become `_`; any other
/// character outside `[a-z0-9_]` becomes `u` and its code point in (at least) four decimal
/// digits; at most
/// 63 bytes.
pub fn slot_name(member: &str) -> String {
    let mut out = String::with_capacity(member.len());
    for c in member.chars().flat_map(char::to_lowercase) {
        match c {
            'a'..='z' | '0'..='9' | '_' => out.push(c),
            '-' | '.' => out.push('_'),
            other => out.push_str(&format!("u{:04}", u32::from(other))),
        }
    }
    out.truncate(63);
    out
}

/// Create the physical slots in `wanted` that do not exist yet; returns the ones created.
pub async fn create_missing(
    client: &Client,
    wanted: &BTreeSet<String>,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT slot_name::text FROM pg_catalog.pg_replication_slots \
             WHERE slot_type = 'physical'",
            &[],
        )
        .await?;
    let existing: BTreeSet<String> = rows.iter().map(|r| r.get(0)).collect();
    let mut created = Vec::new();
    for name in wanted.difference(&existing) {
        // `immediately_reserve`: the slot holds WAL from now on, before the replica connects.
        client
            .execute(
                "SELECT pg_catalog.pg_create_physical_replication_slot($1, true)",
                &[name],
            )
            .await?;
        created.push(name.clone());
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_patroni() {
        assert_eq!(slot_name("node1"), "node1");
        assert_eq!(slot_name("Node-1.dc"), "node_1_dc");
        assert_eq!(slot_name("pg@host"), "pgu0064host");
        assert_eq!(slot_name("é"), "u0233");
        assert_eq!(slot_name(&"x".repeat(80)).len(), 63);
    }
}
