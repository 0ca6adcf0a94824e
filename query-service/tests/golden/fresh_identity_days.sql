SELECT DISTINCT toString(event_date) AS day FROM events WHERE app_id = ? AND distinct_id IN (SELECT distinct_id FROM person_distinct_ids WHERE app_id = ? AND version > ? AND version <= ?)
-- binds: ["app-1","app-1",12,20]
