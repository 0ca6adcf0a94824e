SELECT distinct_id, p AS person FROM (SELECT distinct_id, argMax(person_id, version) AS p FROM person_distinct_ids WHERE app_id = ? GROUP BY distinct_id) WHERE p IN (SELECT argMax(person_id, version) FROM person_distinct_ids WHERE app_id = ? AND distinct_id IN (SELECT arrayJoin(?)) GROUP BY distinct_id)
-- binds: ["app-1","app-1",["anon-1", "user-1"]]
