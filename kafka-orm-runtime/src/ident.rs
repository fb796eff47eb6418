//! SQL identifiers taken from a [`TopicSpec`]: checked with the rules `#[derive(Topic)]`
//! enforces at compile time, and quoted wherever SQL text is built from them.
//!
//! A derived spec always passes; a hand-written `impl Topic` can put anything in its
//! spec, so the runtime checks every spec before any SQL runs
//! ([`crate::registry::validate`] at `build()`, [`crate::schema::statements`], and each
//! `publish` / inbox statement for types that were never registered).

use sea_orm::DatabaseBackend;

use crate::error::{Error, Result};
use crate::topic::TopicSpec;

/// PostgreSQL's limit on identifier length (`NAMEDATALEN - 1`), as the derive checks it.
pub(crate) const MAX_TABLE_LEN: usize = 63;

/// Checks an SQL table name with the derive's rule: ASCII letters, digits and `_`, not
/// starting with a digit, at most 63 bytes.
pub(crate) fn check_table_name(name: &str) -> Result<(), String> {
    const RULE: &str = "a table name is ASCII letters, digits and `_`, not starting with a digit";
    let Some(first) = name.chars().next() else {
        return Err(format!("the table name is empty; {RULE}"));
    };
    if first.is_ascii_digit() {
        return Err(format!("it starts with a digit; {RULE}"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return Err(format!("{bad:?} is not allowed; {RULE}"));
    }
    if name.len() > MAX_TABLE_LEN {
        return Err(format!(
            "it is {} characters long; PostgreSQL's limit is {MAX_TABLE_LEN}",
            name.len()
        ));
    }
    Ok(())
}

/// Checks a key or dedup field name: the derive takes them from the struct's fields, so
/// they are Rust identifiers (without `r#`): letters, digits and `_`, not starting with a
/// digit, not `_` alone. Letters and digits are Unicode's (as Rust's), which PostgreSQL
/// and SQLite accept in identifiers.
pub(crate) fn check_field_name(name: &str) -> Result<(), String> {
    const RULE: &str = "a key or dedup field is a Rust field name: letters, digits and `_`, not starting with a digit";
    let Some(first) = name.chars().next() else {
        return Err(format!("the field name is empty; {RULE}"));
    };
    if name == "_" {
        return Err(format!("`_` cannot name a field; {RULE}"));
    }
    if !(first.is_alphabetic() || first == '_') {
        return Err(format!("it starts with {first:?}; {RULE}"));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_alphanumeric() || *c == '_')) {
        return Err(format!("{bad:?} is not allowed; {RULE}"));
    }
    Ok(())
}

/// `name` as a quoted SQL identifier on `backend`, whatever `name` holds: `"name"` on
/// PostgreSQL, `` `name` `` on SQLite (the quote character doubled inside). Names in a
/// spec are checked first; quoting keeps the SQL text well-formed even so.
///
/// Not `"name"` on SQLite: there a double-quoted name that matches no column silently
/// becomes a string literal (`SELECT "no_such_column" FROM t` succeeds), which would turn
/// a missing column into wrong data instead of an error. A backquoted name is always an
/// identifier.
pub(crate) fn quoted(backend: DatabaseBackend, name: &str) -> String {
    let q = match backend {
        DatabaseBackend::Postgres => '"',
        _ => '`',
    };
    let inner = name.replace(q, &format!("{q}{q}"));
    format!("{q}{inner}{q}")
}

/// The name of the index `suffix` of `table`: `<table>_<suffix>` when that fits
/// PostgreSQL's 63 bytes, else the table name cut short, a hash of the whole name and the
/// suffix. PostgreSQL truncates longer names silently: a 63-byte table's
/// `<table>_dedup` and `<table>_processed_at` would both become the table's own name, and
/// `CREATE INDEX IF NOT EXISTS` would then skip them (the inbox without its unique index).
pub(crate) fn index_name(table: &str, suffix: &str) -> String {
    let full = format!("{table}_{suffix}");
    if full.len() <= MAX_TABLE_LEN {
        return full;
    }
    let hash = crate::util::stable_hash(&[table.as_bytes()]) as u32;
    let room = MAX_TABLE_LEN.saturating_sub(suffix.len() + 10);
    let mut stem = String::new();
    for c in table.chars() {
        if stem.len() + c.len_utf8() > room {
            break;
        }
        stem.push(c);
    }
    format!("{stem}_{hash:08x}_{suffix}")
}

/// The column name of a typed key (`key`) or dedup (`dedup`) field: `<prefix>_<field>`
/// with ASCII letters lowercased. It is quoted in SQL, so this is the name PostgreSQL
/// stores; it is also the name an unquoted `key_<field>` folds to, which the generated
/// SeaORM entities (and tables created by earlier versions) use.
pub(crate) fn typed_column(prefix: &str, field: &str) -> String {
    format!("{prefix}_{}", field.to_ascii_lowercase())
}

/// Checks every table and column name `spec` puts into SQL: the outbox and inbox table
/// names, the key fields (the outbox's `key_<field>` columns) and the dedup fields (the
/// inbox's `dedup_<field>` columns). Repeated fields are refused too, as the derive does.
pub(crate) fn check_spec(spec: &TopicSpec) -> Result<()> {
    let bad = |field: &'static str, name: &str, reason: String| Error::InvalidIdentifier {
        type_name: spec.type_name,
        field,
        name: name.to_string(),
        reason,
    };
    if let Some(outbox) = spec.outbox {
        check_table_name(outbox.table).map_err(|r| bad("outbox.table", outbox.table, r))?;
    }
    if let Some(inbox) = spec.inbox {
        check_table_name(inbox.table).map_err(|r| bad("inbox.table", inbox.table, r))?;
        check_fields(inbox.dedup_fields, "inbox.dedup_fields", &bad)?;
    }
    // Key fields name columns only in an outbox table, but they are the struct's fields
    // whatever the topic has: check them always.
    check_fields(spec.key_fields, "key_fields", &bad)?;
    Ok(())
}

fn check_fields(
    fields: &[&str],
    what: &'static str,
    bad: &impl Fn(&'static str, &str, String) -> Error,
) -> Result<()> {
    for (i, field) in fields.iter().enumerate() {
        check_field_name(field).map_err(|r| bad(what, field, r))?;
        if fields[..i].iter().any(|f| f.eq_ignore_ascii_case(field)) {
            return Err(bad(
                what,
                field,
                "it appears twice (its column name would repeat)".into(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::{InboxSpec, OutboxSpec};

    #[test]
    fn table_names_follow_the_derives_rule() {
        assert!(check_table_name("order_created_outbox").is_ok());
        assert!(check_table_name("_t1").is_ok());
        assert!(check_table_name("MixedCase").is_ok());
        assert!(check_table_name(&"t".repeat(63)).is_ok());
        assert!(
            check_table_name(&"t".repeat(64))
                .unwrap_err()
                .contains("64")
        );
        assert!(check_table_name("").unwrap_err().contains("empty"));
        assert!(check_table_name("1t").unwrap_err().contains("digit"));
        for bad in [
            "order-outbox",
            "a b",
            "x\"; DROP TABLE y; --",
            "t'",
            "é",
            "a.b",
        ] {
            assert!(check_table_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn field_names_are_rust_identifiers() {
        for good in ["id", "customerId", "_x", "r2", "größe", "type"] {
            assert!(check_field_name(good).is_ok(), "{good}");
        }
        for bad in ["", "_", "1a", "a-b", "a b", "a\"b", "r#type", "x) ; --"] {
            assert!(check_field_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn quoting_doubles_the_quote_character() {
        let pg = DatabaseBackend::Postgres;
        let sqlite = DatabaseBackend::Sqlite;
        assert_eq!(quoted(pg, "orders"), "\"orders\"");
        assert_eq!(
            quoted(pg, "x\"; DROP TABLE y; --"),
            "\"x\"\"; DROP TABLE y; --\""
        );
        assert_eq!(quoted(sqlite, "orders"), "`orders`");
        assert_eq!(
            quoted(sqlite, "x`; DROP TABLE y; --"),
            "`x``; DROP TABLE y; --`"
        );
        assert_eq!(typed_column("key", "customerId"), "key_customerid");
        assert_eq!(typed_column("dedup", "Größe"), "dedup_größe");
    }

    #[test]
    fn index_names_fit_and_stay_distinct() {
        assert_eq!(index_name("orders_inbox", "dedup"), "orders_inbox_dedup");
        let fits = "t".repeat(MAX_TABLE_LEN - "_dedup".len());
        assert_eq!(index_name(&fits, "dedup"), format!("{fits}_dedup"));
        for len in 55..=MAX_TABLE_LEN {
            let table = "t".repeat(len);
            let names = [
                index_name(&table, "dedup"),
                index_name(&table, "processed_at"),
                index_name(&table, "failing"),
            ];
            for name in &names {
                assert!(name.len() <= MAX_TABLE_LEN, "{name}");
                assert_ne!(name, &table);
            }
            assert_ne!(names[0], names[1]);
            assert_ne!(names[1], names[2]);
        }
        // Two long tables sharing a prefix get different index names.
        let a = format!("{}a", "t".repeat(62));
        let b = format!("{}b", "t".repeat(62));
        assert_ne!(index_name(&a, "dedup"), index_name(&b, "dedup"));
    }

    #[test]
    fn a_spec_names_the_type_the_field_and_the_bad_name() {
        static OK: TopicSpec = TopicSpec::new("t::Ok", "ok")
            .key_fields(&["tenant", "id"])
            .outbox(OutboxSpec::new("ok_outbox"))
            .inbox(InboxSpec::new("ok_inbox", &["id"], 60));
        check_spec(&OK).unwrap();

        let cases: [(TopicSpec, &str, &str); 5] = [
            (
                TopicSpec::new("t::A", "a").outbox(OutboxSpec::new("x\"; DROP TABLE y; --")),
                "outbox.table",
                "x\"; DROP TABLE y; --",
            ),
            (
                TopicSpec::new("t::B", "b").inbox(InboxSpec::new("b inbox", &[], 60)),
                "inbox.table",
                "b inbox",
            ),
            (
                TopicSpec::new("t::C", "c").inbox(InboxSpec::new("c_inbox", &["id) --"], 60)),
                "inbox.dedup_fields",
                "id) --",
            ),
            (
                TopicSpec::new("t::D", "d")
                    .key_fields(&["a\"b"])
                    .outbox(OutboxSpec::new("d_outbox")),
                "key_fields",
                "a\"b",
            ),
            (
                TopicSpec::new("t::E", "e").key_fields(&["Id", "id"]),
                "key_fields",
                "id",
            ),
        ];
        for (spec, field, name) in cases {
            match check_spec(&spec) {
                Err(Error::InvalidIdentifier {
                    type_name,
                    field: f,
                    name: n,
                    ..
                }) => {
                    assert_eq!(type_name, spec.type_name);
                    assert_eq!((f, n.as_str()), (field, name));
                }
                other => panic!(
                    "{}: expected InvalidIdentifier, got {other:?}",
                    spec.type_name
                ),
            }
        }
    }
}
