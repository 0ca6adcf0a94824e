SELECT device_type AS d0, toFloat64(uniqExact(distinct_id)) AS m0 FROM events WHERE app_id = ? AND event_date >= toDate(?) AND event_date <= toDate(?) AND ts_ms >= ? AND ts_ms < ? AND is_bot = 0 AND country = ? GROUP BY d0 ORDER BY m0 DESC LIMIT 101
-- binds: ["app-1","2023-11-14","2023-11-21",1700000000000,1700604800000,"US"]
