SELECT prop_keys AS d0, prop_values AS d1, is_deleted AS d2 FROM persons WHERE app_id = ? AND person_id = ? ORDER BY version DESC LIMIT 1
-- binds: ["app-1","anon-1"]
