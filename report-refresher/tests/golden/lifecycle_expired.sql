SELECT table, partition_id, toString(max(max_date)) AS newest_day FROM system.parts WHERE database = currentDatabase() AND active = 1 AND table IN ('events', 'sessions') GROUP BY table, partition_id HAVING max(max_date) < toDate(?) ORDER BY table, partition_id
-- binds: ["2023-11-16"]
