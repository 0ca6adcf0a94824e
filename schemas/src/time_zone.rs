//! Time zones: the rule for the names an app's setting and a query's `tz`
//! may use — IANA names (`Europe/Berlin`, `America/New_York`, `UTC`) — once,
//! for the query service and `tally-admin`. Days, weeks and months of answers
//! (time buckets, retention cohorts, reports) are calendar periods of the
//! chosen zone; ranges stay absolute instants.

/// The zone of an app without a setting.
pub const DEFAULT_TIME_ZONE: &str = "UTC";

/// `tz`, or [`DEFAULT_TIME_ZONE`] when none is given.
pub fn or_default(tz: Option<&str>) -> &str {
    tz.unwrap_or(DEFAULT_TIME_ZONE)
}

/// Whether `name` is an IANA time zone name (at most 64 characters).
pub fn valid_time_zone(name: &str) -> bool {
    name.len() <= 64 && name.parse::<chrono_tz::Tz>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iana_names_only() {
        for ok in [
            "UTC",
            "Europe/Berlin",
            "America/New_York",
            "Asia/Kolkata",
            "Pacific/Chatham",
        ] {
            assert!(valid_time_zone(ok), "{ok}");
        }
        for bad in [
            "",
            "utc ",
            "Mars/Olympus",
            "+05:30",
            "Europe/Berlin'",
            "../etc/passwd",
        ] {
            assert!(!valid_time_zone(bad), "{bad}");
        }
    }
}
