-- Enrichment columns (geo-IP, user agent, bot flag, page/referrer/UTM), appended so
-- older rows read as empty. ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS: the
-- runner treats "already exists" on ADD COLUMN as applied.
ALTER TABLE events
    ADD COLUMN country String DEFAULT '',
    ADD COLUMN region String DEFAULT '',
    ADD COLUMN city String DEFAULT '',
    ADD COLUMN browser String DEFAULT '',
    ADD COLUMN browser_version String DEFAULT '',
    ADD COLUMN os String DEFAULT '',
    ADD COLUMN device_type String DEFAULT '',
    ADD COLUMN is_bot UInt8 DEFAULT 0,
    ADD COLUMN url_host String DEFAULT '',
    ADD COLUMN url_path String DEFAULT '',
    ADD COLUMN referrer_host String DEFAULT '',
    ADD COLUMN utm_source String DEFAULT '',
    ADD COLUMN utm_medium String DEFAULT '',
    ADD COLUMN utm_campaign String DEFAULT '',
    ADD COLUMN utm_term String DEFAULT '',
    ADD COLUMN utm_content String DEFAULT '';
