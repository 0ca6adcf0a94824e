SELECT toString(received_date) AS day, kafka_topic, toInt32(kafka_partition) AS kafka_partition, toInt64(max(kafka_offset)) AS top FROM arrivals GROUP BY received_date, kafka_topic, kafka_partition
-- binds: []
