SELECT k AS d0, toFloat64(count()) AS m0 FROM events ARRAY JOIN prop_keys AS k WHERE app_id = ? AND event_date >= toDate(?) AND event_date <= toDate(?) AND ts_ms >= ? AND ts_ms < ? AND is_bot = 0 GROUP BY k ORDER BY m0 DESC, d0 LIMIT 100
-- binds: ["app-1","2023-11-14","2023-11-21",1700000000000,1700604800000]
