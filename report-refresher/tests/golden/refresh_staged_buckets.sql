SELECT app_id, toString(event_date) AS day, count() AS rows FROM (SELECT * FROM refresh_facts_8 WHERE NOT has(?, concat(app_id, '|', toString(event_date)))) GROUP BY app_id, event_date
-- binds: [["app-1|2023-11-15"]]
