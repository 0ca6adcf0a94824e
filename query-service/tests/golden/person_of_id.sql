SELECT argMax(person_id, version) AS d0, argMax(is_deleted, version) AS d1 FROM person_distinct_ids WHERE app_id = ? AND distinct_id = ?
-- binds: ["app-1","anon-1"]
