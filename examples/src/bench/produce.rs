//! `raw_produce`: the baseline of every Kafka figure. librdkafka's idempotent producer
//! (configured as kafka-orm's), the same keys, payloads and headers as the relay sends,
//! every delivery awaited.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_orm::deps::rdkafka::error::{KafkaError, RDKafkaErrorCode};
use kafka_orm::deps::rdkafka::message::{Header, OwnedHeaders};
use kafka_orm::deps::rdkafka::producer::future_producer::OwnedDeliveryResult;
use kafka_orm::deps::rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use kafka_orm::{MESSAGE_ID_HEADER, TYPE_HEADER, Topic};

use crate::Config;
use crate::infra::{BenchEvent, Infra, PARTITIONS, Result};
use crate::report::{Figure, Outcome, Params, Progress};

/// One message ready to send, as the relay has it after reading its row.
pub struct Msg {
    pub key: String,
    pub payload: Vec<u8>,
    pub id: String,
}

impl Msg {
    pub fn new(seq: u64, payload_bytes: usize) -> Self {
        let e = BenchEvent::new(seq, payload_bytes);
        Msg {
            // A UUID-sized id, as kafka-orm stamps.
            id: format!("00000000-0000-7000-8000-{seq:012x}"),
            payload: e.payload(),
            key: e.key,
        }
    }

    fn headers(&self) -> OwnedHeaders {
        OwnedHeaders::new_with_capacity(2)
            .insert(Header {
                key: MESSAGE_ID_HEADER,
                value: Some(self.id.as_bytes()),
            })
            .insert(Header {
                key: TYPE_HEADER,
                value: Some(BenchEvent::SPEC.type_name.as_bytes()),
            })
    }
}

/// The outcome of an awaited delivery future.
pub fn delivered<E>(result: std::result::Result<OwnedDeliveryResult, E>) -> Result<()> {
    match result {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(format!("delivery failed: {e}").into()),
        Err(_) => Err("the producer was dropped".into()),
    }
}

/// Sends `msgs` as fast as librdkafka takes them and waits for every acknowledgement.
pub async fn send_all(
    producer: &FutureProducer,
    topic: &str,
    msgs: &[Msg],
    progress: Option<&Progress>,
) -> Result<()> {
    let total = msgs.len() as u64;
    let mut pending: VecDeque<DeliveryFuture> = VecDeque::new();
    let mut acked = 0u64;
    for m in msgs {
        loop {
            let record = FutureRecord::to(topic)
                .key(m.key.as_bytes())
                .payload(&m.payload)
                .headers(m.headers());
            match producer.send_result(record) {
                Ok(f) => {
                    pending.push_back(f);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    match pending.pop_front() {
                        Some(f) => {
                            delivered(f.await)?;
                            acked += 1;
                            if let Some(p) = progress {
                                p.count(acked, total);
                            }
                        }
                        None => tokio::time::sleep(Duration::from_millis(1)).await,
                    }
                }
                Err((e, _)) => return Err(format!("enqueueing a message: {e}").into()),
            }
        }
    }
    for f in pending {
        delivered(f.await)?;
        acked += 1;
        if let Some(p) = progress {
            p.count(acked, total);
        }
    }
    Ok(())
}

pub async fn run(config: &Config, infra: &Infra, progress: &Arc<Progress>) -> Result<Vec<Outcome>> {
    let sc = infra.scenario("raw_produce").await?;
    let result = measure(config, infra, &sc.topic(), progress).await;
    sc.cleanup().await;
    let (rate, secs, cpu) = result?;
    let params = Params {
        messages: config.messages,
        payload_bytes: config.payload_bytes,
        partitions: PARTITIONS,
        concurrency: 1,
    };
    Ok(vec![Outcome::measured(
        "raw_produce",
        params,
        Figure::new(rate, "msg/s")
            .extra("seconds", secs)
            .extra("machine_cpu_busy", cpu)
            .extra(
                "what",
                "rdkafka FutureProducer, idempotent, acks=all, linger.ms=1, all deliveries awaited",
            ),
    )])
}

async fn measure(
    config: &Config,
    infra: &Infra,
    topic: &str,
    progress: &Progress,
) -> Result<(f64, f64, serde_json::Value)> {
    let producer = infra.raw_producer()?;
    let warm = (config.messages / 20).max(500);
    progress.phase(format!("warm-up, {warm} messages"));
    let msgs: Vec<Msg> = (0..warm)
        .map(|i| Msg::new(i, config.payload_bytes))
        .collect();
    send_all(&producer, topic, &msgs, None).await?;
    let msgs: Vec<Msg> = (warm..warm + config.messages)
        .map(|i| Msg::new(i, config.payload_bytes))
        .collect();
    progress.phase(format!("producing {} messages", config.messages));
    let (t0, cpu) = (Instant::now(), crate::cpu::CpuSample::now());
    send_all(&producer, topic, &msgs, Some(progress)).await?;
    let secs = t0.elapsed().as_secs_f64();
    Ok((
        config.messages as f64 / secs,
        secs,
        crate::cpu::busy_extra(&cpu),
    ))
}
