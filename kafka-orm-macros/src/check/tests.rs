//! Unit tests of the checks: the messages, in the order they are reported.

use super::*;
use syn::parse_quote;

fn errors(input: DeriveInput) -> Vec<String> {
    let cx = Ctxt::new();
    let attrs = crate::attr::parse(&cx, &input.attrs);
    let model = check(&cx, &input, &attrs);
    match cx.check() {
        Ok(()) => {
            assert!(model.is_some(), "no error, so a model");
            Vec::new()
        }
        Err(err) => {
            assert!(model.is_none(), "errors, so no model");
            err.into_iter().map(|e| e.to_string()).collect()
        }
    }
}

/// The model of a topic without errors.
fn with_model<R>(input: DeriveInput, f: impl FnOnce(&TopicModel) -> R) -> R {
    let cx = Ctxt::new();
    let attrs = crate::attr::parse(&cx, &input.attrs);
    let model = check(&cx, &input, &attrs);
    cx.check().expect("no errors");
    f(&model.expect("a model"))
}

#[test]
fn valid_topic_has_no_errors() {
    let errs = errors(parse_quote! {
        #[topic(name = "orders", key = ["tenant", "r#type"], outbox, inbox(dedup = "id"),
                retry(backoff = "1s", max_backoff = "1m"), retry_topics, dlq)]
        struct Order { tenant: String, r#type: String, id: i64 }
    });
    assert!(errs.is_empty(), "{errs:?}");
}

#[test]
fn shapes() {
    let tuple = errors(parse_quote!(
        struct T(i64);
    ));
    assert!(tuple[0].contains("tuple struct"), "{tuple:?}");
    let unit = errors(parse_quote!(
        struct U;
    ));
    assert!(unit[0].contains("unit struct"), "{unit:?}");
    let en = errors(parse_quote!(
        enum E {
            A,
        }
    ));
    assert!(en[0].contains("holds one message struct"), "{en:?}");
    let generic = errors(parse_quote!(
        struct G<T> {
            t: T,
        }
    ));
    assert!(generic[0].contains("must be concrete"), "{generic:?}");
    let lifetime = errors(parse_quote!(
        struct L<'a> {
            s: &'a str,
        }
    ));
    assert!(lifetime[0].contains("must own its data"), "{lifetime:?}");
    let konst = errors(parse_quote!(
        struct C<const N: usize> {
            a: [u8; N],
        }
    ));
    assert!(konst[0].contains("must be concrete"), "{konst:?}");
    let field_attr = errors(parse_quote!(
        struct F {
            #[topic(key)]
            id: i64,
        }
    ));
    assert_eq!(
        field_attr,
        ["`#[topic]` belongs on the struct or enum, not on a field"]
    );
}

#[test]
fn topic_enums() {
    let errs = errors(parse_quote! {
        #[topic(key = "order_id", inbox(dedup = "order_id"))]
        enum OrderEvent {
            Created(events::OrderCreated),
            #[topic(type_name = "order.paid")]
            Paid(OrderPaid),
        }
    });
    assert!(errs.is_empty(), "{errs:?}");
    let names = with_model(
        parse_quote! {
            enum E { A(a::OrderCreated), #[topic(type_name = "b")] B(B) }
        },
        |m| match &m.messages {
            Messages::Enum(vs) => vs.iter().map(|v| v.name.clone()).collect::<Vec<_>>(),
            Messages::Struct { .. } => panic!("an enum"),
        },
    );
    assert_eq!(names, ["OrderCreated", "b"]);
    let errs = errors(parse_quote! {
        #[topic(type_name = "x")]
        enum E {
            A(a::Same),
            B(b::Same),
            C(a::Same),
            D { id: i64 },
            F(Box<Inner>),
            #[topic(key = "id", type_nme = "f")]
            G(G),
        }
    });
    assert_eq!(
        errs,
        [
            "`type_name` names one message type, and a topic enum has one per variant: put it on the variant, `#[topic(type_name = \"order.created\")] Created(OrderCreated)`",
            "variants `A` and `B` have one message type name, `Same`, so their messages could not be told apart; give one of them another with `#[topic(type_name = \"..\")]`",
            "`a::Same` is already the struct of variant `A`: each message type is one variant",
            "a variant of a topic enum holds one message struct, not fields of its own: move them into a struct, `struct D { .. }`, and write `D(D)`",
            "`Box<Inner>` has no plain name to send as its message type: name it, `#[topic(type_name = \"..\")] F(Box<Inner>)`",
            "`key` belongs on the enum, not on a variant: it is a setting of the whole topic; on a variant `#[topic(..)]` takes only `type_name`",
            "unknown key `type_nme` in `#[topic(..)]` on a variant; did you mean `type_name`?",
        ]
    );
    let empty = errors(parse_quote!(
        enum E {}
    ));
    assert!(empty[0].contains("at least one variant"), "{empty:?}");
    let dedup = errors(parse_quote! {
        #[topic(inbox(dedup = ["message_type", "order id"]))]
        enum E { A(A) }
    });
    assert!(
        dedup[0].contains("`message_type` cannot be a dedup field"),
        "{dedup:?}"
    );
    assert!(
        dedup[1].contains("`order id` in `dedup` is not a field name"),
        "{dedup:?}"
    );
    let bad = errors(parse_quote! {
        #[topic(type_name = "events::OrderCreated")]
        struct OrderCreated { id: i64 }
    });
    assert!(bad[0].contains("`:` is not allowed"), "{bad:?}");
}

#[test]
fn field_references() {
    let errs = errors(parse_quote! {
        #[topic(key = "custmer_id", inbox(dedup = ["order_id", "zzz", "order_id"]))]
        struct Order { order_id: i64, customer_id: String }
    });
    assert_eq!(
        errs,
        [
            "unknown field `custmer_id` in `key`; did you mean `customer_id`?",
            "unknown field `zzz` in `dedup`; expected one of: `order_id`, `customer_id`",
            "field `order_id` appears twice in `dedup`",
        ]
    );
    let empty = errors(parse_quote!(
        #[topic(key = [])]
        struct A {
            id: i64,
        }
    ));
    assert!(empty[0].starts_with("`key` names no field"), "{empty:?}");
}

#[test]
fn bad_field_types() {
    let errs = errors(parse_quote! {
        #[topic(key = ["f", "v", "o", "t", "a"], inbox(dedup = ["u", "m", "ok"]))]
        struct A { f: f64, v: Vec<String>, o: Option<i64>, t: (i32, i32), a: [u8; 4],
                   u: u64, m: std::collections::HashMap<String, i64>, ok: i64 }
    });
    assert_eq!(
        errs,
        [
            "`f64` cannot be a message key: floats don't compare exactly; use an integer or a string",
            "`Vec<String>` cannot be a message key: a key is one value, not a collection; name several fields with `key = [\"a\", \"b\"]` for a composite key",
            "`Option<i64>` cannot be a message key: a key cannot be absent; use a field that is not an `Option`",
            "`(i32, i32)` cannot be a message key: a key is one value, not a tuple; name several fields with `key = [\"a\", \"b\"]` for a composite key",
            "`[u8; 4]` cannot be a message key: a key is one value, not a collection; name several fields with `key = [\"a\", \"b\"]` for a composite key",
            "`u64` cannot be part of an inbox dedup key: it does not fit a BIGINT column; use `i64` or a smaller integer",
            "`std::collections::HashMap<String, i64>` cannot be part of an inbox dedup key: a key is one value, not a collection; name several fields with `dedup = [\"a\", \"b\"]` for a composite key",
        ]
    );
    // u64 is a fine message key.
    assert!(
        errors(parse_quote!(
            #[topic(key = "u")]
            struct B {
                u: u64,
            }
        ))
        .is_empty()
    );
}

#[test]
fn values() {
    let errs = errors(parse_quote! {
        #[topic(name = "bad name", partitions = 0, replication = 40000, format = "avro",
                group = " g", outbox(table = "order-outbox"),
                retry(attempts = 0, backoff = "5", max_backoff = "1h"))]
        struct A { id: i64 }
    });
    assert_eq!(
        errs,
        [
            "invalid Kafka topic name `bad name`: a space is not allowed; a topic name uses only ASCII letters, digits, `.`, `_` and `-`",
            "invalid table name `order-outbox`: `-` is not allowed; a table name is ASCII letters, digits and `_`, not starting with a digit",
            "the consumer group ` g` has leading or trailing whitespace; remove it",
            "unknown format `avro`; the built-in format is `json`; for another encoding implement `kafka_orm::Codec` and write `codec = \"path::to::YourCodec\"`",
            "`partitions` must be at least 1",
            "`replication` must be at most 32767",
            "`attempts` must be at least 1 (the first attempt counts)",
            "invalid duration `5`: a number needs a unit (`ms`, `s`, `m`, `h` or `d`); expected a duration like `500ms`, `30s`, `5m`, `1h30m` or `7d`",
        ]
    );
}

#[test]
fn backoff_order() {
    let both = errors(parse_quote!(
        #[topic(retry(backoff = "1m", max_backoff = "30s"))]
        struct A {}
    ));
    assert_eq!(
        both,
        [
            "`backoff` (`1m`) is longer than `max_backoff` (`30s`); the backoff starts at `backoff` and doubles up to `max_backoff`, so `backoff` cannot exceed it"
        ]
    );
    // Against a default, the expansion checks it (the defaults are the runtime's).
    let one_sided = errors(parse_quote!(
        #[topic(retry(backoff = "1m"))]
        struct A {}
    ));
    assert!(one_sided.is_empty(), "{one_sided:?}");
}

#[test]
fn the_model_resolves_names_and_leaves_defaults_to_the_runtime() {
    with_model(
        parse_quote! {
            #[topic(key = "r#type", outbox, inbox(dedup = "id"), retry(attempts = 5), dlq)]
            struct HTTPRequestLogged { r#type: String, id: i64 }
        },
        |m| {
            assert_eq!(m.name, "http-request-logged");
            assert_eq!(m.key[0].name, "type");
            assert_eq!(
                m.outbox.as_ref().unwrap().table,
                "http_request_logged_outbox"
            );
            let inbox = m.inbox.as_ref().unwrap();
            assert_eq!(inbox.table, "http_request_logged_inbox");
            assert_eq!(inbox.retention_secs, None);
            let retry = m.retry.as_ref().unwrap();
            assert_eq!(retry.attempts, Some(5));
            assert!(retry.backoff.is_none() && retry.max_backoff.is_none());
            assert_eq!(m.dlq.as_deref(), Some("http-request-logged.dlq"));
        },
    );
    // A bare `retry` is the default policy, as no `retry` is.
    with_model(
        parse_quote!(
            #[topic(retry, retry_topics)]
            struct A {}
        ),
        |m| assert!(m.retry.is_none() && m.retry_topics),
    );
}

#[test]
fn contradictions() {
    let errs = errors(parse_quote! {
        #[topic(name = "t", produce_only, consume_only, inbox, outbox, retry_topics,
                dlq = "t", format = "json", codec = "C")]
        struct A {}
    });
    assert_eq!(
        errs,
        [
            "`format` and `codec` contradict each other: a `codec` replaces the format; keep one of them",
            "the dead-letter topic must differ from the topic itself; write `dlq` alone to use `t.dlq`",
            "`produce_only` and `consume_only` contradict each other: the topic would be neither produced nor consumed; remove one of them",
            "`inbox` contradicts `produce_only`: `inbox` is a consumer setting and a `produce_only` topic is never consumed; remove one of them",
            "`retry_topics` contradicts `produce_only`: `retry_topics` is a consumer setting and a `produce_only` topic is never consumed; remove one of them",
            "`dlq` contradicts `produce_only`: `dlq` is a consumer setting and a `produce_only` topic is never consumed; remove one of them",
            "`outbox` contradicts `consume_only`: the outbox produces to the topic and a `consume_only` topic is never produced; remove one of them",
        ]
    );
}

#[test]
fn default_names_are_checked() {
    let errs = errors(parse_quote!(
        #[topic(dlq)]
        struct Ördér {}
    ));
    assert!(
        errs[0].starts_with("the default topic name `ördér`"),
        "{errs:?}"
    );
    let long = format!("T{}", "x".repeat(60));
    let input: DeriveInput =
        syn::parse_str(&format!("#[topic(outbox)] struct {long} {{}}")).unwrap();
    let errs = errors(input);
    assert!(
        errs[0].starts_with("the default table name does not work"),
        "{errs:?}"
    );
}

#[test]
fn type_text_reads_like_source() {
    let t = |ty: syn::Type| fields::type_text(&ty);
    assert_eq!(t(parse_quote!(Vec<String>)), "Vec<String>");
    assert_eq!(
        t(parse_quote!(std::collections::HashMap<String, i64>)),
        "std::collections::HashMap<String, i64>"
    );
    assert_eq!(t(parse_quote!((i32, i32))), "(i32, i32)");
    assert_eq!(t(parse_quote!([u8; 4])), "[u8; 4]");
    assert_eq!(t(parse_quote!(&'static [u8])), "&'static [u8]");
    assert_eq!(t(parse_quote!(Option<Vec<u8>>)), "Option<Vec<u8>>");
}
