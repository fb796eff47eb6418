//! [`Delivery::for_test`]: a delivery built by hand, to call a handler directly.

use crate::consumer::Delivery;
use crate::producer::{Headers, MESSAGE_ID_HEADER, TYPE_HEADER};
use crate::topic::Topic;
use crate::util::now_ms;

impl<T: Topic> Delivery<T> {
    /// A delivery of `value` as a consumer of its topic would receive it for the first
    /// time: topic `T`'s name (no namespace), partition 0, offset 0, the key from the key
    /// fields, a fresh message id and the value's type in the headers, the timestamp now,
    /// attempt 1. Change any of it with the `with_*` methods.
    ///
    /// A handler is a function (or a [`Handler`](crate::handler::Handler)), so a unit test
    /// calls it with such a delivery and a transaction of a test database:
    ///
    /// ```
    /// # use kafka_orm_runtime as kafka_orm;
    /// # use kafka_orm::{Delivery, Topic};
    /// # async fn handle<T>(_txn: &sea_orm::DatabaseTransaction, _msg: &Delivery<T>) -> Result<(), kafka_orm::handler::HandlerError> { Ok(()) }
    /// # async fn check<T: Topic>(value: T) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// use sea_orm::{Database, TransactionTrait};
    ///
    /// let db = Database::connect("sqlite::memory:").await?;
    /// let txn = db.begin().await?;
    /// let retried = Delivery::for_test(value).with_partition(2).with_offset(41).with_attempt(3);
    /// handle(&txn, &retried).await?;        // the handler `handler(..)` would run
    /// txn.commit().await?;
    /// # Ok(()) }
    /// ```
    pub fn for_test(value: T) -> Self {
        let headers = Headers::new()
            .with(MESSAGE_ID_HEADER, uuid::Uuid::now_v7().to_string())
            .with(TYPE_HEADER, value.message_type());
        Delivery {
            key: value.key(),
            value,
            topic: T::SPEC.name.to_string(),
            partition: 0,
            offset: 0,
            headers,
            timestamp_ms: Some(now_ms()),
            attempt: 1,
            span: tracing::Span::none(),
        }
    }

    /// With another topic name (e.g. the namespaced one, or a retry tier's).
    pub fn with_topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = topic.into();
        self
    }

    /// With another partition.
    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = partition;
        self
    }

    /// With another offset.
    pub fn with_offset(mut self, offset: i64) -> Self {
        self.offset = offset;
        self
    }

    /// With another raw key (`None`: no key).
    pub fn with_key(mut self, key: Option<impl Into<Vec<u8>>>) -> Self {
        self.key = key.map(Into::into);
        self
    }

    /// With header `name` set to `value` (replacing one of that name).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        let name = name.into();
        self.headers.remove(&name);
        self.headers.insert(name, value);
        self
    }

    /// With these headers instead (the message id and type headers included: add them
    /// back if the handler reads them).
    pub fn with_headers(mut self, headers: Headers) -> Self {
        self.headers = headers;
        self
    }

    /// With message id `id` ([`MESSAGE_ID_HEADER`]): the inbox's key for a topic with a
    /// bare `inbox`.
    pub fn with_message_id(self, id: impl Into<String>) -> Self {
        self.with_header(MESSAGE_ID_HEADER, id.into())
    }

    /// As attempt `attempt` (1 is the first delivery; a handler retrying sees 2, 3, ..).
    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt.max(1);
        self
    }

    /// With another timestamp (epoch milliseconds; `None`: the broker gave none).
    pub fn with_timestamp_ms(mut self, timestamp_ms: Option<i64>) -> Self {
        self.timestamp_ms = timestamp_ms;
        self
    }
}
