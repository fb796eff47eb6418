//! Unit tests of the attribute parser.

use super::*;
use syn::parse_quote;

fn errors(attrs: &[Attribute]) -> Vec<String> {
    let cx = Ctxt::new();
    let _ = parse(&cx, attrs);
    match cx.check() {
        Ok(()) => Vec::new(),
        Err(err) => err.into_iter().map(|e| e.to_string()).collect(),
    }
}

fn parsed(attrs: &[Attribute]) -> Attrs {
    let cx = Ctxt::new();
    let out = parse(&cx, attrs);
    cx.check().unwrap();
    out
}

#[test]
fn full_attribute_parses() {
    let a = parsed(&[parse_quote! {
        #[topic(
            name = "order-events", key = ["tenant", "id"], outbox(table = "ob"),
            inbox(dedup = ["a", "b"], retention = "1d", table = "ib"), group = "g",
            format = "json", partitions = 6, replication = 3,
            retry(attempts = 5, backoff = "1s", max_backoff = "1m"), retry_topics,
            dlq = "x.dlq", produce_only, crate = "my::kafka_orm"
        )]
    }]);
    assert_eq!(a.name.unwrap().value.value(), "order-events");
    let key: Vec<String> = a
        .key
        .unwrap()
        .value
        .fields
        .iter()
        .map(LitStr::value)
        .collect();
    assert_eq!(key, ["tenant", "id"]);
    assert_eq!(a.outbox.unwrap().value.table.unwrap().value.value(), "ob");
    let inbox = a.inbox.unwrap().value;
    assert_eq!(inbox.dedup.unwrap().value.fields.len(), 2);
    assert_eq!(inbox.retention.unwrap().value.value(), "1d");
    assert_eq!(a.partitions.unwrap().value.base10_digits(), "6");
    assert_eq!(
        a.retry
            .unwrap()
            .value
            .attempts
            .unwrap()
            .value
            .base10_digits(),
        "5"
    );
    assert!(a.retry_topics.is_some());
    assert_eq!(a.dlq.unwrap().value.unwrap().value(), "x.dlq");
    assert!(a.produce_only.is_some() && a.consume_only.is_none());
    assert_eq!(a.krate.unwrap().value.parsed.segments.len(), 2);
}

#[test]
fn bare_flags() {
    let a = parsed(&[parse_quote!(#[topic(outbox, inbox, retry, dlq)])]);
    assert!(a.outbox.unwrap().value.table.is_none());
    assert!(a.inbox.unwrap().value.dedup.is_none());
    assert!(a.retry.unwrap().value.attempts.is_none());
    assert!(a.dlq.unwrap().value.is_none());
    let empty = parsed(&[parse_quote!(#[topic]), parse_quote!(#[topic()])]);
    assert!(empty.name.is_none());
}

#[test]
fn several_attributes_merge_and_keep_order() {
    let a = parsed(&[
        parse_quote!(#[topic(name = "a")]),
        parse_quote!(#[topic(key = "id", produce_only)]),
    ]);
    assert!(a.name.is_some() && a.key.is_some());
    assert_eq!(a.produce_only.unwrap().order, 3);
}

#[test]
fn unknown_keys_are_reported_and_skipped() {
    let errs = errors(&[parse_quote!(#[topic(nmae = "a", bogus(x = 1), key = 5, whatever)])]);
    assert_eq!(
        errs,
        [
            "unknown key `nmae` in #[topic(..)]; did you mean `name`?",
            "unknown key `bogus` in #[topic(..)]; expected one of: `name`, `type_name`, `key`, `outbox`, `inbox`, `group`, `format`, `codec`, `partitions`, `replication`, `retry`, `retry_topics`, `dlq`, `produce_only`, `consume_only`, `crate`",
            "`key` expects a field name or a list of field names, like `key = \"customer_id\"` or `key = [\"tenant\", \"customer_id\"]`",
            "unknown key `whatever` in #[topic(..)]; expected one of: `name`, `type_name`, `key`, `outbox`, `inbox`, `group`, `format`, `codec`, `partitions`, `replication`, `retry`, `retry_topics`, `dlq`, `produce_only`, `consume_only`, `crate`",
        ]
    );
    let nested = errors(&[parse_quote!(#[topic(inbox(dedupe = "a"), retry(attempt = 1))])]);
    assert_eq!(
        nested,
        [
            "unknown key `dedupe` in `inbox(..)`; did you mean `dedup`?",
            "unknown key `attempt` in `retry(..)`; did you mean `attempts`?",
        ]
    );
}

#[test]
fn nested_keys_at_the_top_level_say_where_they_go() {
    let errs = errors(&[
        parse_quote!(#[topic(dedup = "id", backoff = "1s", outbox_table = "t", table = "t")]),
    ]);
    assert_eq!(
        errs,
        [
            "`dedup` belongs inside `inbox(..)`: write `inbox(dedup = \"order_id\")`",
            "`backoff` belongs inside `retry(..)`: write `retry(attempts = 5, backoff = \"100ms\")`",
            "`outbox_table` is written `table` and belongs inside `outbox(..)`: write `outbox(table = \"order_outbox\")`",
            "`table` belongs inside `outbox(..)` or `inbox(..)`, like `outbox(table = \"order_outbox\")`",
        ]
    );
}

#[test]
fn duplicates_across_attributes() {
    let errs = errors(&[
        parse_quote!(#[topic(name = "a")]),
        parse_quote!(#[topic(name = "b", inbox(table = "x", table = "y"))]),
    ]);
    assert_eq!(
        errs,
        [
            "duplicate `name` in #[topic(..)]",
            "duplicate `table` in `inbox(..)`"
        ]
    );
    // An invalid first value still makes the second one a duplicate.
    let errs = errors(&[parse_quote!(#[topic(partitions = "6", partitions = 6)])]);
    assert_eq!(errs.len(), 2);
    assert_eq!(errs[1], "duplicate `partitions` in #[topic(..)]");
}

#[test]
fn wrong_value_kinds() {
    let errs = errors(&[parse_quote!(#[topic(
        partitions = "6", name = 5, outbox = true, retry_topics = true, name2, dlq(x),
        codec = "not a type", crate = "1x", group
    )])]);
    assert_eq!(
        errs,
        [
            "`partitions` expects an integer, like `partitions = 6`",
            "`name` expects a string, like `name = \"order-events\"`",
            "`outbox` takes no `= value`; write `outbox` alone or `outbox(table = \"order_outbox\")`",
            "`retry_topics` is a flag and takes no value; write `retry_topics` alone",
            "unknown key `name2` in #[topic(..)]; did you mean `name`?",
            "`dlq` takes no parentheses; write `dlq` alone or `dlq = \"order-events.dlq\"`",
            "`codec = \"not a type\"` is not a type; write the path of a type that implements `kafka_orm::Codec<Self>`, like `codec = \"crate::codecs::MyCodec\"`",
            "`crate = \"1x\"` is not a path; write the path kafka-orm is reachable at, like `crate = \"my_reexport::kafka_orm\"`",
            "`group` expects a string, like `group = \"order-processor\"`",
        ]
    );
}

#[test]
fn name_value_form_is_rejected() {
    let errs = errors(&[parse_quote!(#[topic = "orders"])]);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].contains("in parentheses"), "{errs:?}");
}
