SELECT distinct_id AS d0 FROM person_distinct_ids WHERE app_id = ? GROUP BY distinct_id HAVING argMax(person_id, version) = ? AND argMax(is_deleted, version) = 0 ORDER BY d0 LIMIT 1000
-- binds: ["app-1","anon-1"]
