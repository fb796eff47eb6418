//! Expansion snapshots: what `cargo expand` shows users, reviewed by eye.

use syn::{DeriveInput, parse_quote};

fn expand(input: DeriveInput) -> String {
    let tokens = super::derive(&input);
    let file: syn::File = syn::parse2(tokens).expect("expansion parses as items");
    prettyplease::unparse(&file)
}

#[test]
fn minimal() {
    insta::assert_snapshot!(expand(parse_quote! {
        #[derive(Topic)]
        pub struct OrderCreated {
            pub order_id: i64,
            pub customer_id: String,
        }
    }));
}

#[test]
fn design_example() {
    insta::assert_snapshot!(expand(parse_quote! {
        #[derive(Topic)]
        #[topic(name = "order-events", key = "customer_id", outbox, inbox(dedup = "order_id"))]
        pub struct OrderCreated {
            pub order_id: i64,
            pub customer_id: String,
        }
    }));
}

#[test]
fn full_featured() {
    insta::assert_snapshot!(expand(parse_quote! {
        #[derive(Topic)]
        #[topic(
            name = "payments.v1",
            key = ["tenant", "account_id"],
            inbox(dedup = ["tenant", "payment_id"], retention = "1d", table = "payment_inbox"),
            group = "ledger",
            partitions = 12,
            replication = 3,
            retry(attempts = 5, backoff = "250ms", max_backoff = "1m"),
            retry_topics,
            dlq,
            consume_only,
        )]
        pub struct PaymentReceived {
            pub tenant: String,
            pub account_id: u64,
            pub payment_id: uuid::Uuid,
            pub r#type: String,
        }
    }));
}

#[test]
fn entities_of_composite_and_custom_keys() {
    insta::assert_snapshot!(expand(parse_quote! {
        #[derive(Topic)]
        #[topic(
            key = ["tenant", "order_id", "region", "customerId"],
            outbox(table = "type"),
            inbox(dedup = ["number", "ref_id"]),
            crate = "platform::kafka_orm",
        )]
        pub(crate) struct OrderPlaced {
            pub tenant: String,
            pub order_id: u64,
            pub region: RegionCode,
            pub customerId: &'static str,
            pub number: OrderNumber,
            pub ref_id: ::uuid::Uuid,
        }
    }));
}

#[test]
fn crate_override_with_codec() {
    insta::assert_snapshot!(expand(parse_quote! {
        #[derive(Topic)]
        #[topic(crate = "my::kafka_orm", codec = "codecs::Avro", key = "r#type", produce_only)]
        struct HTTPRequestLogged {
            r#type: String,
        }
    }));
}

#[test]
fn errors_come_with_a_stub() {
    insta::assert_snapshot!(expand(parse_quote! {
        #[derive(Topic)]
        #[topic(nmae = "x", key = "id")]
        struct Broken {
            id: f64,
        }
    }));
}

#[test]
fn generic_types_get_no_stub() {
    let out = expand(parse_quote! {
        struct Wrapper<T> { t: T }
    });
    assert!(out.contains("compile_error!"), "{out}");
    assert!(!out.contains("impl"), "{out}");
}

#[test]
fn topic_enum() {
    insta::assert_snapshot!(expand(parse_quote! {
        #[derive(Topic)]
        #[topic(name = "orders", key = "order_id", outbox, inbox(dedup = "order_id"), dlq)]
        pub enum OrderEvent {
            Created(OrderCreated),
            #[topic(type_name = "order.paid")]
            Paid(events::OrderPaid),
        }
    }));
}

#[test]
fn topic_enum_errors_come_with_a_stub() {
    insta::assert_snapshot!(expand(parse_quote! {
        #[derive(Topic)]
        #[topic(type_name = "x")]
        enum OrderEvent {
            Created(OrderCreated),
            Unit,
        }
    }));
}
