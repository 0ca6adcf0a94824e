SELECT toString(prop_values[indexOf(prop_keys, ?)]) AS d0, toFloat64(count()) AS m0 FROM events WHERE app_id = ? AND event_date >= toDate(?) AND event_date <= toDate(?) AND ts_ms >= ? AND ts_ms < ? AND is_bot = 0 AND d0 != '' AND startsWith(lowerUTF8(d0), lowerUTF8(?)) GROUP BY d0 ORDER BY m0 DESC, d0 LIMIT 100
-- binds: ["plan","app-1","2023-11-14","2023-11-21",1700000000000,1700604800000,"Pr"]
