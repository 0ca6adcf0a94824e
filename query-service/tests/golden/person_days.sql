SELECT DISTINCT toString(event_date) AS day FROM events WHERE app_id = ? AND has(?, distinct_id) ORDER BY day
-- binds: ["app-1",["anon-1","user-1"]]
