SELECT app_id, toString(event_date) AS day FROM events GROUP BY app_id, event_date UNION ALL SELECT app_id, toString(day) AS day FROM person_day_activity GROUP BY app_id, day UNION ALL SELECT app_id, toString(toDate(hour, 'UTC')) AS day FROM report_pages_hourly GROUP BY app_id, day
-- binds: []
