INSERT INTO person_day_activity SELECT app_id, day, person_id, toUInt64(0), toUInt64(0), toUInt64(0), toUInt64(?) FROM person_day_activity WHERE app_id = ? AND day IN (?, ?) AND has(?, person_id) GROUP BY app_id, day, person_id HAVING max(version) < ? AND argMax(events, version) > 0
-- binds: [9,"app-1","2023-11-15","2023-11-16",["anon-1", "user-1"],9]
