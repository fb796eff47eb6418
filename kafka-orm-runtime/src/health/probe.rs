//! The two questions every health check asks right then: does a broker answer a metadata
//! request, and does the database answer a ping — concurrently, each within
//! [`HEALTH_PROBE_TIMEOUT`](crate::defaults::HEALTH_PROBE_TIMEOUT).

use rdkafka::producer::Producer;
use sea_orm::DatabaseConnection;

use super::Reason;
use crate::context::KafkaOrm;
use crate::defaults::HEALTH_PROBE_TIMEOUT as PROBE_TIMEOUT;

/// The broker's and the database's reasons, if any (`db`: the database to ping, if any).
pub(crate) async fn connections(orm: &KafkaOrm, db: Option<&DatabaseConnection>) -> Vec<Reason> {
    let (broker, database) = tokio::join!(broker(orm), async {
        match db {
            Some(db) => database(db).await,
            None => None,
        }
    });
    broker.into_iter().chain(database).collect()
}

/// A metadata request on the context's producer (for one registered topic, so a large
/// cluster is not asked for all of its topics).
async fn broker(orm: &KafkaOrm) -> Option<Reason> {
    let producer = orm.producer().clone();
    let topic = orm.topics().first().map(|spec| orm.topic_name(spec));
    let fetched = tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(topic.as_deref(), PROBE_TIMEOUT)
            .map(|m| m.brokers().len())
    });
    let error = match tokio::time::timeout(PROBE_TIMEOUT * 2, fetched).await {
        Ok(Ok(Ok(brokers))) if brokers > 0 => return None,
        Ok(Ok(Ok(_))) => "the cluster reported no brokers".to_string(),
        Ok(Ok(Err(e))) => e.to_string(),
        Ok(Err(e)) => format!("the probe thread failed: {e}"),
        Err(_) => format!("no answer within {:?}", PROBE_TIMEOUT * 2),
    };
    Some(Reason::BrokerUnreachable { error })
}

async fn database(db: &DatabaseConnection) -> Option<Reason> {
    let error = match tokio::time::timeout(PROBE_TIMEOUT, db.ping()).await {
        Ok(Ok(())) => return None,
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {PROBE_TIMEOUT:?}"),
    };
    Some(Reason::DatabaseUnreachable { error })
}
