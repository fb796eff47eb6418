//! Two independent types on one topic: the context refuses to start, because the consumer
//! of one would decode the other's messages. (Its own test binary: the two types would
//! break every other context in the binary.)
//!
//! Before multi-type topics (issue 11), `build()` accepted this, and a consumer of
//! `OrderPaid` (a subset of `OrderCreated`'s fields) decoded `OrderCreated` messages as
//! `OrderPaid` without a word; the test then fails with that decode.

use kafka_orm::{Error, Topic};
use kafka_orm_tests::{real_kafka, within};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, Topic)]
#[topic(name = "mixed.orders", key = "order_id", group = "mixed")]
pub struct OrderCreated {
    pub order_id: i64,
    pub total_cents: i64,
}

#[derive(Debug, Serialize, Deserialize, Topic)]
#[topic(name = "mixed.orders", key = "order_id", group = "mixed")]
pub struct OrderPaid {
    pub order_id: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_independent_types_on_one_topic_are_rejected_at_build() {
    let Some(builder) = real_kafka("mixed") else {
        return;
    };
    let orm = match builder.build().await {
        Err(err @ Error::SharedTopic { .. }) => {
            let Error::SharedTopic { topic, types, .. } = &err else {
                unreachable!()
            };
            assert_eq!(topic, "mixed.orders");
            assert_eq!(
                types,
                &[
                    "wrong_type_registry::OrderCreated",
                    "wrong_type_registry::OrderPaid"
                ]
            );
            let text = err.to_string();
            assert!(
                text.contains("enum"),
                "the error says how to fix it: {text}"
            );
            return;
        }
        Err(other) => panic!("expected Error::SharedTopic, got {other}"),
        Ok(orm) => orm,
    };
    // What happened before: the configuration starts, and a message of one type is decoded
    // as the other.
    let created = OrderCreated {
        order_id: 7,
        total_cents: 1999,
    };
    orm.topic::<OrderCreated>().produce(&created).await.unwrap();
    let mut paid = orm.topic::<OrderPaid>().consume().await.unwrap();
    let got = within(60, "consuming", paid.next()).await.unwrap();
    panic!(
        "build() accepted two types on one topic, and the consumer of `OrderPaid` got {got:?} from an `OrderCreated` message"
    );
}
