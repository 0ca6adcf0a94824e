SELECT app_id, max(version) AS top FROM person_distinct_ids WHERE kafka_topic = '' GROUP BY app_id
-- binds: []
