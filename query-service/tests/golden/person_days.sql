SELECT DISTINCT toString(event_date) AS d0 FROM events WHERE app_id = ? AND has(?, distinct_id) ORDER BY d0
-- binds: ["app-1",["anon-1","user-1"]]
