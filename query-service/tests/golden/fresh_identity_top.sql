SELECT toFloat64(max(version)) AS m0 FROM person_distinct_ids WHERE app_id = ?
-- binds: ["app-1"]
