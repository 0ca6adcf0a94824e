//! `tally-admin storage` and `tally-admin retention` (issue 17): what each
//! table holds on disk, and dropping raw partitions past the retention once
//! (the report refresher does it on a schedule).
//!
//! ```text
//! tally-admin storage [--database DB] [--json]
//!     per table: rows, bytes on disk, uncompressed bytes, compression ratio,
//!     partitions, oldest day kept
//! tally-admin retention [--days N] [--database DB] [--dry-run]
//!     drop the day partitions of events and sessions older than their
//!     retention class keeps them: N days for apps without an override
//!     (default TALLY_RETENTION_DAYS, 730), an app's override for its rows
//! tally-admin apps retention APP_ID [DAYS|default]
//!     show or set an app's retention override (1 to 3650 days): events it
//!     sends from then on are kept that long, and the gateway refuses events
//!     older than it (within a minute: the key cache's refresh). Rows keep the
//!     class they were written with.
//! ```

use super::flag;
use tally_common::clickhouse::ClickHouseConfig;
use tally_common::lifecycle;
use tally_common::postgres;
use tally_common::Clock;

fn config(args: &[String]) -> Result<ClickHouseConfig, String> {
    let mut config = ClickHouseConfig::from_env().map_err(|e| e.to_string())?;
    if let Some(database) = flag(args, "--database").pop() {
        config.database = database;
    }
    Ok(config)
}

/// Bytes as text with a binary unit.
fn size(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", units[unit])
}

/// `tally-admin storage`.
pub async fn storage(args: &[String]) -> Result<(), String> {
    let config = config(args)?;
    let tables = lifecycle::storage(&config.client(), config.layout())
        .await
        .map_err(|e| format!("clickhouse: {e}"))?;
    if args.iter().any(|a| a == "--json") {
        let json = serde_json::to_string_pretty(&tables).map_err(|e| e.to_string())?;
        println!("{json}");
        return Ok(());
    }
    println!(
        "{:<24} {:>14} {:>12} {:>14} {:>7} {:>10}  oldest day",
        "table", "rows", "on disk", "uncompressed", "ratio", "partitions"
    );
    for t in &tables {
        println!(
            "{:<24} {:>14} {:>12} {:>14} {:>6.1}× {:>10}  {}",
            t.table,
            t.rows,
            size(t.bytes_on_disk),
            size(t.uncompressed),
            t.ratio(),
            t.partitions,
            t.oldest().unwrap_or("-")
        );
    }
    Ok(())
}

/// `tally-admin retention`.
pub async fn retention(args: &[String]) -> Result<(), String> {
    let days: u32 = match flag(args, "--days").pop() {
        Some(days) => days.parse().map_err(|_| "--days: a number of days")?,
        None => tally_common::config::env_or("TALLY_RETENTION_DAYS", 730u32)
            .map_err(|e| e.to_string())?,
    };
    if days == 0 {
        return Err("--days: at least 1".into());
    }
    let config = config(args)?;
    let client = config.client();
    let now_ms = tally_common::SystemClock.now_ms();
    let cutoff = lifecycle::cutoff_day(now_ms, days);
    let dry = args.iter().any(|a| a == "--dry-run");
    let found = if dry {
        lifecycle::expired(&client, config.layout(), now_ms, days).await
    } else {
        lifecycle::drop_expired(&client, config.layout(), now_ms, days).await
    }
    .map_err(|e| format!("clickhouse: {e}"))?;
    let verb = if dry { "would drop" } else { "dropped" };
    for p in &found {
        println!(
            "{verb} {} partition {} (newest day {})",
            p.table, p.partition_id, p.newest_day
        );
    }
    println!(
        "{} partition(s) past their retention (apps without an override: {days} days, before {cutoff}; \
         apps with one: their own days); persons, reports and rollups are kept forever",
        found.len()
    );
    Ok(())
}

/// The days of `apps retention APP_ID DAYS|default` (`None`: default).
fn override_days(text: &str) -> Result<Option<u16>, String> {
    if text == "default" {
        return Ok(None);
    }
    let max = lifecycle::MAX_RETENTION_DAYS;
    match text.parse::<u16>() {
        Ok(days) if (1..=max).contains(&days) => Ok(Some(days)),
        _ => Err(format!(
            "retention {text:?}: a number of days from 1 to {max}, or `default`"
        )),
    }
}

/// `tally-admin apps retention APP_ID [DAYS|default]`.
pub async fn app_retention(client: &tokio_postgres::Client, args: &[String]) -> Result<(), String> {
    let app_id = args.first().ok_or("apps retention APP_ID [DAYS|default]")?;
    let pg = |e: tokio_postgres::Error| format!("postgresql: {e}");
    if let Some(text) = args.get(1) {
        let days = override_days(text)?;
        if !postgres::set_retention(client, app_id, days)
            .await
            .map_err(pg)?
        {
            return Err(format!("no app {app_id}"));
        }
    }
    let days = postgres::retention(client, app_id)
        .await
        .map_err(pg)?
        .ok_or_else(|| format!("no app {app_id}"))?;
    match days {
        Some(days) => println!("app {app_id}: raw events and sessions kept {days} days (override)"),
        None => println!(
            "app {app_id}: raw events and sessions kept TALLY_RETENTION_DAYS (no override)"
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{override_days, size};

    #[test]
    fn overrides_are_days_or_default() {
        assert_eq!(override_days("90"), Ok(Some(90)));
        assert_eq!(override_days("default"), Ok(None));
        assert!(override_days("0").is_err());
        assert!(override_days("3651").is_err());
        assert!(override_days("-1").is_err());
    }

    #[test]
    fn sizes_have_binary_units() {
        assert_eq!(size(0), "0.0 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
