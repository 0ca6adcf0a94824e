SELECT toString(toDate(start)) AS d0, entry_page AS d1, toFloat64(count()) AS m0, avg(bounce) AS m1, avg(duration_ms) / 1000 AS m2 FROM sessions FINAL WHERE app_id = ? AND dropped = 0 AND start_ms >= ? AND start_ms < ? AND is_bot = 0 AND country != ? GROUP BY d0, d1 ORDER BY m0 DESC LIMIT 101
-- binds: [Text("app-1"), Int(1700000000000), Int(1700604800000), Text("XX")]
