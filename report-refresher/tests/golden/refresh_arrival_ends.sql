SELECT kafka_topic, kafka_partition, max(kafka_offset) AS top FROM arrivals GROUP BY kafka_topic, kafka_partition
-- binds: []
