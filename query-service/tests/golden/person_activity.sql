SELECT name AS d0, toFloat64(count()) AS m0, toFloat64(min(ts_ms)) AS m1, toFloat64(max(ts_ms)) AS m2 FROM events WHERE app_id = ? AND has(?, distinct_id) GROUP BY name ORDER BY m0 DESC, d0
-- binds: ["app-1",["anon-1","user-1"]]
