ALTER TABLE persons DELETE WHERE app_id = ? AND has(?, person_id)
-- binds: ["app-1",["anon-1"]]
