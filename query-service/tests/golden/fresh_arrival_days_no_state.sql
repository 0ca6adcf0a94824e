SELECT DISTINCT toString(event_date) AS day FROM arrivals WHERE app_id = ? AND (1)
-- binds: ["app-1"]
