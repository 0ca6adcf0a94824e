SELECT DISTINCT app_id, distinct_id FROM person_distinct_ids WHERE ((kafka_topic = ? AND kafka_partition = ? AND kafka_offset >= ? AND kafka_offset <= ?) OR (kafka_topic = ? AND kafka_partition = ? AND kafka_offset >= ? AND kafka_offset <= ?))
-- binds: ["events",0,0,10,"events",1,5,12]
