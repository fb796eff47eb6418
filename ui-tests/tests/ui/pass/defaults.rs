use kafka_orm::Topic;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Topic)]
#[topic(outbox, inbox, retry, dlq)]
pub struct HTTPRequestLogged {
    pub path: String,
}

/// `retry_topics` without `retry`: after the default policy's attempts.
#[derive(Serialize, Deserialize, Topic)]
#[topic(retry_topics, dlq)]
pub struct OrderCreated {
    pub order_id: i64,
}

fn main() {
    let spec = HTTPRequestLogged::SPEC;
    assert_eq!(spec.name, "http-request-logged");
    assert_eq!(spec.outbox.unwrap().table, "http_request_logged_outbox");
    assert_eq!(spec.inbox.unwrap().table, "http_request_logged_inbox");
    // A bare `retry` is the default policy, as no `retry` is.
    assert_eq!(spec.retry, None);
    let inbox = spec.inbox.unwrap();
    assert_eq!(
        inbox.retention_secs,
        kafka_orm::defaults::INBOX_RETENTION.as_secs()
    );
    assert_eq!(spec.dlq.unwrap().topic, "http-request-logged.dlq");
    let spec = OrderCreated::SPEC;
    assert!(spec.retry.is_none() && spec.retry_topics);
}
