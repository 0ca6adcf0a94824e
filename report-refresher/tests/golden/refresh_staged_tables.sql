SELECT name FROM system.tables WHERE database = currentDatabase() AND startsWith(name, 'refresh_facts_')
-- binds: []
