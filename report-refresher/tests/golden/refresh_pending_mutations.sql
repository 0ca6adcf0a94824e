SELECT count() FROM system.mutations WHERE database = currentDatabase() AND is_done = 0
-- binds: []
