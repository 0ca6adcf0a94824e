-- Per-app retention (issue 17): how many days an app's raw events and
-- sessions are kept; NULL = the installation's TALLY_RETENTION_DAYS. The
-- gateway stamps the value on every event it accepts (the row's retention
-- class) and refuses events older than it; the lifecycle drops each class's
-- day partitions past its days. Rows keep the class they were written with.
ALTER TABLE apps ADD COLUMN IF NOT EXISTS retention_days INTEGER
    CHECK (retention_days IS NULL OR retention_days BETWEEN 1 AND 3650);
