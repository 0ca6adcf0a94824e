SELECT kafka_topic, kafka_partition, toString(event_date) AS day, max(kafka_offset) AS top FROM events GROUP BY kafka_topic, kafka_partition, event_date
-- binds: []
