SELECT toFloat64(count()) AS m0 FROM events WHERE app_id = ? AND event_date >= toDate(?) AND event_date <= toDate(?) AND ts_ms >= ? AND ts_ms < ? AND is_bot = 0 LIMIT 101
-- binds: ["app-1","2023-11-14","2023-11-21",1700000000000,1700604800000]
