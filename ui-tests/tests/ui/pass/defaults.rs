use kafka_orm::Topic;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Topic)]
#[topic(outbox, inbox, retry, dlq)]
pub struct HTTPRequestLogged {
    pub path: String,
}

fn main() {
    let spec = HTTPRequestLogged::SPEC;
    assert_eq!(spec.name, "http-request-logged");
    assert_eq!(spec.outbox.unwrap().table, "http_request_logged_outbox");
    assert_eq!(spec.inbox.unwrap().table, "http_request_logged_inbox");
    let retry = spec.retry.unwrap();
    assert_eq!(
        (retry.attempts, retry.backoff_ms, retry.max_backoff_ms),
        (3, 100, 30_000)
    );
    assert_eq!(spec.dlq.unwrap().topic, "http-request-logged.dlq");
}
