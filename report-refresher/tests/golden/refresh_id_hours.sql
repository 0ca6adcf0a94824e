SELECT DISTINCT toUInt32(hour) AS hour FROM id_hours WHERE app_id = ? AND distinct_id IN (SELECT arrayJoin(?))
-- binds: ["app-1",["anon-1", "user-1"]]
