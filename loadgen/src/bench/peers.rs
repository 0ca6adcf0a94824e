//! The peers the Tally figures are compared with: a plain rdkafka producer (B1)
//! and a plain consumer (B2), doing only what the broker needs.

use crate::model::{Model, ModelConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message as _;
use std::time::{Duration, Instant};
use tally_common::kafka::KafkaConfig;
use tally_common::{Clock, SystemClock};
use tally_schemas::Envelope;

/// B1 peer: the same messages produced by a plain rdkafka producer.
pub async fn plain_produce(brokers: &str, topic: &str, events: u64) -> Result<f64, String> {
    let kafka = KafkaConfig {
        brokers: brokers.into(),
        topic: topic.into(),
        dlq_topic: format!("{topic}_dlq"),
    };
    let producer: FutureProducer = kafka
        .client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // The gateway's default (`TALLY_KAFKA_LINGER_MS`).
        .set("linger.ms", "20")
        .set("queue.buffering.max.kbytes", "262144")
        .create()
        .map_err(|e| e.to_string())?;
    let mut model = Model::new(&ModelConfig {
        seed: 99,
        run_id: "peer".into(),
        ..ModelConfig::default()
    });
    let now = SystemClock.now_ms();
    // The encoding the gateways of the run write (they read the same variable).
    let format: tally_schemas::Format = std::env::var("TALLY_ENVELOPE_FORMAT")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_default();
    let mut payloads = Vec::with_capacity(events as usize);
    while (payloads.len() as u64) < events {
        let batch = model.next_server_batch(now, 50);
        for event in batch.events {
            let envelope = Envelope {
                event_id: event.event_id.clone(),
                app_id: batch.app_id.clone(),
                name: event.name.clone(),
                distinct_id: event.distinct_id().to_owned(),
                user_id: event.user_id,
                anonymous_id: event.anonymous_id,
                timestamp_ms: now,
                received_at_ms: now,
                sent_at_ms: None,
                ip: Some(batch.ip.clone()),
                user_agent: Some(batch.user_agent.to_owned()),
                properties: event.properties,
                enrichment: Default::default(),
                retention_days: 0,
            };
            payloads.push((envelope.partition_key(), envelope.encode_as(format)));
        }
    }
    let started = Instant::now();
    for chunk in payloads.chunks(20_000) {
        let mut deliveries = Vec::with_capacity(chunk.len());
        for (key, payload) in chunk {
            let record = FutureRecord::to(topic).key(key).payload(payload);
            deliveries.push(
                producer
                    .send_result(record)
                    .map_err(|(e, _)| e.to_string())?,
            );
        }
        for delivery in futures::future::join_all(deliveries).await {
            match delivery {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(e.to_string()),
                Err(_) => return Err("delivery dropped".into()),
            }
        }
    }
    Ok(payloads.len() as f64 / started.elapsed().as_secs_f64())
}

/// B2 peer: a plain consumer reading `events` messages of `topic`; events/s first→last.
pub async fn plain_consume(brokers: &str, topic: &str, events: u64) -> Result<f64, String> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", super::unique("bench_plain"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            // The aggregator's fetch wait (`TALLY_AGGREGATOR_FETCH_WAIT_MS`), so
            // both consumers ask the broker alike.
            .set(
                "fetch.wait.max.ms",
                std::env::var("TALLY_AGGREGATOR_FETCH_WAIT_MS").unwrap_or_else(|_| "100".into()),
            )
            .create()
            .map_err(|e| e.to_string())?;
        consumer.subscribe(&[&topic]).map_err(|e| e.to_string())?;
        let (mut seen, mut first) = (0u64, None);
        let deadline = Instant::now() + Duration::from_secs(300);
        while seen < events && Instant::now() < deadline {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                first.get_or_insert_with(Instant::now);
                let _ = message.payload().map(Envelope::decode);
                seen += 1;
            }
        }
        let elapsed = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
        Ok(seen as f64 / elapsed.max(1e-9))
    })
    .await
    .map_err(|e| e.to_string())?
}
