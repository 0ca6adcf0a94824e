SELECT DISTINCT toString(toDate(hour, 'UTC')) AS day FROM id_hours WHERE app_id = ? AND distinct_id IN (SELECT distinct_id FROM person_distinct_ids WHERE app_id = ? AND version > ? AND version <= ?)
-- binds: ["app-1","app-1",12,20]
