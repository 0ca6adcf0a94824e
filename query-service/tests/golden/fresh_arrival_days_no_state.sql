SELECT DISTINCT toString(event_date) AS d0 FROM arrivals WHERE app_id = ? AND (1)
-- binds: ["app-1"]
