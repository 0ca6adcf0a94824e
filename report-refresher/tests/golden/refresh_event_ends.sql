SELECT kafka_topic, kafka_partition, max(kafka_offset) AS top FROM events GROUP BY kafka_topic, kafka_partition
-- binds: []
