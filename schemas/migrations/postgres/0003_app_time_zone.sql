-- Each app's time zone (an IANA name): the calendar of its days, weeks and
-- months in answers (time buckets, retention cohorts, reports) unless a query
-- names another with `tz`.
ALTER TABLE apps ADD COLUMN IF NOT EXISTS time_zone TEXT NOT NULL DEFAULT 'UTC';
