//! A topic enum: three message types on one topic, with an outbox, an inbox, a key and
//! dedup fields every variant's struct has, and a variant with its own `type_name`.
#![deny(missing_docs, unused_qualifications, warnings)]
#![deny(clippy::all)]

use kafka_orm::{DedupValue, Member, Topic};
use serde::{Deserialize, Serialize};

/// Created.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderCreated {
    /// Id.
    pub order_id: i64,
    /// Total.
    pub total_cents: i64,
}

/// Paid.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderPaid {
    /// Id.
    pub order_id: i32,
}

mod shipping {
    /// Shipped.
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct OrderShipped {
        /// Id.
        pub order_id: u16,
        /// Carrier.
        pub carrier: String,
    }
}

/// The `orders` topic.
#[derive(Debug, PartialEq, Topic)]
#[topic(name = "orders", key = "order_id", outbox, inbox(dedup = "order_id"), group = "billing", dlq)]
pub enum OrderEvent {
    /// Created.
    Created(OrderCreated),
    /// Paid.
    #[topic(type_name = "order.paid")]
    Paid(OrderPaid),
    /// Shipped.
    Shipped(shipping::OrderShipped),
}

fn main() {
    let spec = OrderEvent::SPEC;
    assert_eq!(spec.message_types, ["OrderCreated", "order.paid", "OrderShipped"]);
    assert_eq!(spec.outbox.unwrap().table, "order_event_outbox");
    assert_eq!(spec.inbox.unwrap().dedup_fields, ["message_type", "order_id"]);
    let paid = OrderEvent::from(OrderPaid { order_id: 7 });
    assert_eq!(paid.message_type(), "order.paid");
    assert_eq!(paid.key(), Some(b"7".to_vec()));
    assert_eq!(
        paid.dedup_key(),
        [DedupValue::Text("order.paid".into()), DedupValue::Int(7)]
    );
    let mut payload = Vec::new();
    paid.encode_payload(&mut payload).unwrap();
    assert_eq!(payload, br#"{"order_id":7}"#);
    let back = OrderEvent::decode_payload(Some("order.paid"), &payload).unwrap();
    assert_eq!(<OrderPaid as Member<OrderEvent>>::peel(&back), Some(&OrderPaid { order_id: 7 }));
    assert!(OrderEvent::decode_payload(Some("OrderCreated"), &payload).is_err());
    assert!(OrderEvent::decode_payload(None, &payload).is_err());
    let _row: order_event_outbox::Model;
    let _inbox: Option<order_event_inbox::Model> = None;
}
