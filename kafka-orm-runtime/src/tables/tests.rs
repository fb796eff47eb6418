use sea_orm::DatabaseBackend::{Postgres, Sqlite};

use super::*;

fn names(columns: &[Column]) -> Vec<&str> {
    columns.iter().map(|c| c.name.as_ref()).collect()
}

#[test]
fn typed_columns_take_their_place() {
    let typed = [
        ("tenant", ColumnKind::Text),
        ("orderId", ColumnKind::BigInt),
    ];
    let outbox = OUTBOX.columns(typed);
    assert_eq!(names(&outbox)[..2], ["id", "message_id"]);
    assert_eq!(names(&outbox)[10..], ["key_tenant", "key_orderid"]);
    assert_eq!(outbox[11].sql, SqlType::BigInt);
    assert!(!outbox[11].nullable);
    assert_eq!(names(&OUTBOX.columns([])).len(), 10);

    let dedup = INBOX.columns([("ref", ColumnKind::Uuid)]);
    assert_eq!(
        names(&dedup),
        [
            "id",
            "consumer_group",
            "dedup_ref",
            "topic",
            "kafka_partition",
            "kafka_offset",
            "processed_at"
        ]
    );
    let bare = INBOX.columns([]);
    assert_eq!(names(&bare)[2], "message_id");
    assert_eq!(bare[2].sql, SqlType::Text);
    assert_eq!(LEASES.columns(typed), LEASES.head, "no typed place");
}

#[test]
fn a_description_gives_types_nullability_and_defaults() {
    let column = |def: &TableDef, name| def.column(name).unwrap().clone();
    let key = column(&OUTBOX, "message_key");
    assert_eq!(
        (key.sql, key.nullable, key.rust),
        (SqlType::Text, true, "Option<String>")
    );
    let payload = column(&OUTBOX, "payload");
    assert_eq!((payload.sql, payload.nullable), (SqlType::Bytes, false));
    assert_eq!(column(&OUTBOX, "attempts").default, Some(0));
    assert_eq!(column(&LEASES, "epoch").default, Some(0));
    assert_eq!(column(&MEMBERS, "expires_at").default, None);
    assert_eq!(OUTBOX.primary_key, PrimaryKey::RowId);
    assert_eq!(
        LEASES.primary_key,
        PrimaryKey::Columns(&["outbox", "bucket"])
    );
    assert_eq!(OUTBOX.name("bucket"), "bucket");
    assert_eq!(
        OUTBOX.required(),
        ["message_id", "bucket", "payload", "headers", "created_at"]
    );
    assert_eq!(
        INBOX.required(),
        [
            "consumer_group",
            "topic",
            "kafka_partition",
            "kafka_offset",
            "processed_at"
        ]
    );
}

#[test]
fn sql_types_per_backend() {
    let both = |t: SqlType| (t.name(Postgres), t.name(Sqlite));
    assert_eq!(both(SqlType::Bytes), ("BYTEA", "BLOB"));
    assert_eq!(both(SqlType::Uuid), ("UUID", "BLOB"));
    assert_eq!(both(SqlType::Int), ("INTEGER", "INTEGER"));
    for kind in [
        ColumnKind::BigInt,
        ColumnKind::Text,
        ColumnKind::Uuid,
        ColumnKind::Bool,
    ] {
        assert_eq!(Column::typed("k".into(), kind).sql, SqlType::from(kind));
    }
}

#[test]
fn the_outbox_ddl_on_both_backends() {
    let columns = OUTBOX.columns([("ref", ColumnKind::Uuid)]);
    assert_eq!(
        ddl::create_table(&OUTBOX, "t_outbox", &columns, Postgres),
        "CREATE TABLE IF NOT EXISTS \"t_outbox\" ( \"id\" BIGSERIAL NOT NULL PRIMARY KEY, \
         \"message_id\" TEXT NOT NULL, \"message_key\" TEXT NULL, \"bucket\" INTEGER NOT NULL, \
         \"payload\" BYTEA NOT NULL, \"headers\" BYTEA NOT NULL, \"created_at\" BIGINT NOT NULL, \
         \"attempts\" INTEGER NOT NULL DEFAULT 0, \"next_attempt_at\" BIGINT NOT NULL DEFAULT 0, \
         \"last_error\" TEXT NULL, \"key_ref\" UUID NOT NULL )"
    );
    let sqlite = ddl::create_table(&OUTBOX, "t_outbox", &columns, Sqlite);
    assert!(
        sqlite.starts_with(
            "CREATE TABLE IF NOT EXISTS \"t_outbox\" ( \"id\" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, "
        ),
        "{sqlite}"
    );
    assert!(
        sqlite.contains("\"payload\" BLOB NOT NULL")
            && sqlite.ends_with("\"key_ref\" BLOB NOT NULL )"),
        "{sqlite}"
    );
}

#[test]
fn indexes_are_named_quoted_and_partial() {
    use sea_orm::sea_query::{Expr, ExprTrait, IntoIden};
    let failing = ddl::create_index(
        "t_outbox",
        "failing",
        vec!["message_key".into_iden()],
        false,
        Some(Expr::col("attempts").gt(0)),
        Sqlite,
    );
    assert_eq!(
        failing,
        "CREATE INDEX IF NOT EXISTS \"t_outbox_failing\" ON \"t_outbox\" (\"message_key\") WHERE \"attempts\" > 0"
    );
    let dedup = ddl::create_index(
        "t\"x",
        "dedup",
        vec![
            "consumer_group".into_iden(),
            "dedup_a".to_string().into_iden(),
        ],
        true,
        None,
        Postgres,
    );
    assert_eq!(
        dedup,
        "CREATE UNIQUE INDEX IF NOT EXISTS \"t\"\"x_dedup\" ON \"t\"\"x\" (\"consumer_group\", \"dedup_a\")"
    );
}

/// The rows of the `| column | type | meaning |` table in a module's docs: the first two
/// cells of each.
fn doc_rows(source: &str) -> Vec<(String, String)> {
    source
        .lines()
        .filter_map(|l| l.strip_prefix("//! | `"))
        .filter_map(|row| {
            let mut cells = row.split(" | ");
            Some((format!("`{}", cells.next()?), cells.next()?.to_string()))
        })
        .collect()
}

/// What the docs' table says of `column`'s type: `` `PG` / `SQLITE` `` (one name when they
/// agree), ` NULL` inside the quotes for a nullable column.
fn doc_type(column: &Column, row_id: bool) -> String {
    if row_id {
        return "`BIGSERIAL` / `INTEGER`".into();
    }
    let null = if column.nullable { " NULL" } else { "" };
    let (pg, sqlite) = (column.sql.name(Postgres), column.sql.name(Sqlite));
    if pg == sqlite {
        format!("`{pg}{null}`")
    } else {
        format!("`{pg}{null}` / `{sqlite}{null}`")
    }
}

/// `def`'s columns as its docs' table should list them; the typed columns as one row
/// whose name is `` `<prefix>_<field>` `` (its type cell is prose).
fn expected_rows(def: &TableDef) -> Vec<(String, Option<String>)> {
    let row = |c: &Column, row_id| (format!("`{}`", c.name), Some(doc_type(c, row_id)));
    let mut rows: Vec<_> = def
        .head
        .iter()
        .enumerate()
        .map(|(i, c)| row(c, i == 0 && def.primary_key == PrimaryKey::RowId))
        .collect();
    if let Some(typed) = &def.typed {
        rows.push((format!("`{}_<field>`", typed.prefix), None));
        rows.extend(typed.bare.iter().map(|c| row(c, false)));
    }
    rows.extend(def.tail.iter().map(|c| row(c, false)));
    rows
}

#[test]
fn the_module_docs_list_each_tables_columns_as_described() {
    for (def, source) in [
        (&OUTBOX, include_str!("../outbox/mod.rs")),
        (&INBOX, include_str!("../inbox.rs")),
    ] {
        let documented = doc_rows(source);
        let expected = expected_rows(def);
        let names: Vec<_> = documented.iter().map(|(n, _)| n.as_str()).collect();
        let want: Vec<_> = expected.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, want, "the {} table's docs", def.what);
        for ((name, ty), (_, want)) in documented.iter().zip(&expected) {
            if let Some(want) = want {
                assert_eq!(ty, want, "the {} table's docs, {name}", def.what);
            }
        }
    }
}

#[test]
fn the_docs_show_each_entity_with_the_described_fields() {
    let topic_md = include_str!("../../../kafka-orm/docs/topic.md");
    for (def, module_docs) in [
        (&OUTBOX, include_str!("../outbox/mod.rs")),
        (&INBOX, include_str!("../inbox.rs")),
    ] {
        let fixed: Vec<&Column> = def.head.iter().chain(def.tail).collect();
        // The module docs name the fields in order: `name: Type`.
        let mut rest = module_docs;
        for c in &fixed {
            let field = format!("`{}: {}`", c.name, c.rust);
            let at = rest
                .find(&field)
                .unwrap_or_else(|| panic!("the {} module docs lack {field} (in order)", def.what));
            rest = &rest[at..];
        }
        // topic.md shows the `Model`s: `pub name: Type,` lines, in order.
        let mut rest = topic_md;
        for c in &fixed {
            let field = format!("pub {}: {},", c.name, c.rust);
            let at = rest.find(&field).unwrap_or_else(|| {
                panic!(
                    "docs/topic.md's {} Model lacks `{field}` (in order)",
                    def.what
                )
            });
            rest = &rest[at..];
        }
    }
}
