SELECT app_id, max(version) AS top FROM person_distinct_ids GROUP BY app_id
-- binds: []
