SELECT toFloat64(count()) AS m0 FROM events WHERE app_id = ? AND event_date >= toDate(?) AND event_date <= toDate(?) AND ts_ms >= ? AND ts_ms < ? AND is_bot = 0 LIMIT 101
-- binds: [Text("app-1"), Text("2023-11-14"), Text("2023-11-21"), Int(1700000000000), Int(1700604800000)]
