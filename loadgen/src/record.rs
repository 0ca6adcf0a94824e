//! The generator's record: one line per acknowledged event, tab-separated,
//! written as acknowledgements arrive and read back by the checker.
//!
//! `event_id  app_id  name  distinct_id  bot(0|1)  ts_ms  sent_ms  acked_ms`
//!
//! Ids and names never contain tabs or newlines (the model makes them).

use std::io::{BufRead, Write};

/// One acknowledged event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    /// Client event id.
    pub event_id: String,
    /// App.
    pub app_id: String,
    /// Event name.
    pub name: String,
    /// Counted identity.
    pub distinct_id: String,
    /// Sent by a bot client.
    pub bot: bool,
    /// Event time as sent, epoch ms.
    pub ts_ms: i64,
    /// When the request was sent, epoch ms.
    pub sent_ms: i64,
    /// When the gateway's 200 arrived, epoch ms.
    pub acked_ms: i64,
}

impl Acked {
    /// The record line (with trailing newline).
    pub fn line(&self) -> String {
        format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            self.event_id,
            self.app_id,
            self.name,
            self.distinct_id,
            u8::from(self.bot),
            self.ts_ms,
            self.sent_ms,
            self.acked_ms
        )
    }

    /// Parses a record line.
    pub fn parse(line: &str) -> Option<Self> {
        let mut fields = line.trim_end_matches('\n').split('\t');
        let mut next = || fields.next();
        Some(Acked {
            event_id: next()?.to_owned(),
            app_id: next()?.to_owned(),
            name: next()?.to_owned(),
            distinct_id: next()?.to_owned(),
            bot: next()? == "1",
            ts_ms: next()?.parse().ok()?,
            sent_ms: next()?.parse().ok()?,
            acked_ms: next()?.parse().ok()?,
        })
    }
}

/// Reads a record file.
pub fn read(path: &std::path::Path) -> std::io::Result<Vec<Acked>> {
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut out = Vec::new();
    for (number, line) in file.lines().enumerate() {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        out.push(Acked::parse(&line).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}:{}: malformed record line", path.display(), number + 1),
            )
        })?);
    }
    Ok(out)
}

/// Writes records (buffered).
pub fn write_all(writer: &mut impl Write, records: &[Acked]) -> std::io::Result<()> {
    for record in records {
        writer.write_all(record.line().as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_round_trip() {
        let record = Acked {
            event_id: "r-1".into(),
            app_id: "r-app-00".into(),
            name: "page_view".into(),
            distinct_id: "anon-3".into(),
            bot: true,
            ts_ms: 1,
            sent_ms: 2,
            acked_ms: 3,
        };
        assert_eq!(Acked::parse(&record.line()), Some(record));
        assert_eq!(Acked::parse("too\tfew"), None);
    }
}
