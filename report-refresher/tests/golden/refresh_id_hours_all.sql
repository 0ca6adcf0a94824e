INSERT INTO id_hours (app_id, distinct_id, hour) SELECT app_id, distinct_id, toStartOfHour(timestamp) AS hour FROM events WHERE app_id = ? GROUP BY app_id, distinct_id, hour
-- binds: ["app-1"]
