SELECT DISTINCT toString(event_date) AS d0 FROM events WHERE app_id = ? AND distinct_id IN (SELECT distinct_id FROM person_distinct_ids WHERE app_id = ? AND version > ?)
-- binds: ["app-1","app-1",12]
