SELECT DISTINCT app_id, distinct_id FROM person_distinct_ids WHERE app_id = ? AND kafka_topic = '' AND version > ? AND version <= ?
-- binds: ["app-1",3,9]
