ALTER TABLE id_keys DELETE WHERE app_id = ? AND has(?, distinct_id)
-- binds: ["app-1",["anon-1","user-1"]]
