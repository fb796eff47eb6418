//! The latency baselines, at the same rate and for as long, with a raw rdkafka producer:
//! produce → delivery future resolved (for `relay_latency`); produce → the same typed
//! consumer yielded it (for `outbox_to_consumer_latency`); produce → a raw per-message
//! transaction inserting the same row committed after receipt (for `end_to_end_latency`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_orm::deps::rdkafka::producer::FutureRecord;
use sea_orm::ConnectionTrait;

use super::receiver::Receiver;
use super::{Samples, pacer};
use crate::Config;
use crate::inbox::BUSINESS_TABLE;
use crate::infra::{BenchEvent, Result, Scenario, now_us};
use crate::produce::delivered;
use crate::report::Progress;

/// Raw produce at the steady rate: produce → ack, → consumer, → consumer's txn committed.
pub async fn raw_run(config: &Config, sc: &Scenario, progress: &Progress) -> Result<Samples> {
    sc.db.execute_unprepared(BUSINESS_TABLE).await?;
    let producer = sc.infra.raw_producer()?;
    let topic = sc.topic();
    let receiver = Receiver::start(&sc.orm, &sc.db, true).await?;
    let send = |seq: i64| {
        let mut e = BenchEvent::new(seq as u64, config.payload_bytes);
        let sent = now_us();
        e.sent_at_us = sent;
        let payload = e.payload();
        let record = FutureRecord::to(&topic)
            .key(e.key.as_bytes())
            .payload(&payload);
        producer
            .send_result(record)
            .map(|f| (sent, f))
            .map_err(|(e, _)| format!("enqueueing: {e}"))
    };
    // Warm-up: until the consumer has its partitions and sees messages flow.
    progress.phase("baseline: waiting for the consumer's assignment");
    let mut seq = 0i64;
    let mut ticks = pacer(config.latency_rate);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        ticks.tick().await;
        delivered(send(seq)?.1.await)?;
        seq += 1;
        if seq >= config.latency_rate as i64 && (0..seq).any(|s| receiver.received(s).is_some()) {
            break;
        }
        if Instant::now() > deadline {
            return Err("the consumer received nothing within 60 s".into());
        }
    }
    receiver.wait_all(0..seq, 60).await?;
    let first = seq;
    let commits = config.latency.as_secs() * config.latency_rate;
    progress.phase(format!(
        "baseline: {commits} raw produces at {}/s",
        config.latency_rate
    ));
    let acks: Arc<Mutex<Vec<f64>>> = Arc::default();
    let mut waiters = Vec::new();
    let mut sent_at = Vec::with_capacity(commits as usize);
    for i in 0..commits {
        ticks.tick().await;
        let (sent, future) = send(first + i as i64)?;
        sent_at.push(sent);
        let acks = Arc::clone(&acks);
        waiters.push(tokio::spawn(async move {
            let r = future.await;
            let at = now_us();
            delivered(r)?;
            acks.lock().unwrap().push((at - sent) as f64 / 1000.0);
            Result::Ok(())
        }));
        progress.count(i + 1, commits);
    }
    for w in waiters {
        w.await.map_err(|e| e.to_string())??;
    }
    receiver.wait_all(first..first + commits as i64, 60).await?;
    let mut samples = Samples {
        relay: std::mem::take(&mut *acks.lock().unwrap()),
        ..Samples::default()
    };
    for (k, sent) in sent_at.iter().enumerate() {
        let (got, committed) = receiver
            .received(first + k as i64)
            .ok_or("a message went missing")?;
        samples.consumer.push((got - sent) as f64 / 1000.0);
        samples.end_to_end.push((committed - sent) as f64 / 1000.0);
    }
    receiver.stop().await?;
    Ok(samples)
}
