SELECT table, sum(rows) AS rows, sum(bytes_on_disk) AS bytes_on_disk, sum(data_compressed_bytes) AS compressed, sum(data_uncompressed_bytes) AS uncompressed, uniqExact(partition_id) AS partitions, toString(min(min_date)) AS oldest_day FROM system.parts WHERE database = currentDatabase() AND active = 1 GROUP BY table ORDER BY table
-- binds: []
