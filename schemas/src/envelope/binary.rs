//! Envelope format 2 ([`FORMAT_BIN_V2`]): a compact binary encoding of an
//! [`Envelope`], decoded without a JSON parser.
//!
//! Layout after the format byte: the length of the rest (varint), then
//! fields, each a *tag* (varint: field number × 8 + wire type) and a value:
//! wire type 0 = varint, 1 = 8 bytes little-endian, 2 = length (varint) and
//! that many bytes. Signed integers are zigzag varints; texts are UTF-8.
//!
//! Adding fields without breaking older consumers: a new field gets a new
//! number; a decoder skips every field number it does not know (the wire
//! type says how far), so an old aggregator reads a newer message as the
//! envelope it knows. Field numbers are never reused. A field that needs a
//! different meaning is a new number. A message cut short or carrying a
//! wrong length is refused (the length prefix), as is a required field
//! missing or a text that is not UTF-8.
//!
//! Fields of the envelope: 1 event_id, 2 app_id, 3 name, 4 distinct_id,
//! 5 user_id, 6 anonymous_id (texts); 7 timestamp_ms, 8 received_at_ms,
//! 9 sent_at_ms (zigzag); 10 ip, 11 user_agent (texts); 12 a property
//! (repeated; bytes: key length, key, kind byte, value — kinds: 0 null,
//! 1 false, 2 true, 3 integer (zigzag), 4 unsigned (varint), 5 float (8
//! bytes), 6 text, 7 any other JSON value as JSON text); 13 enrichment
//! (bytes: its own fields 1–16 in [`Enrichment`] order, `is_bot` a varint);
//! 14 retention_days (varint). Defaults (absent optional texts, empty
//! enrichment texts, false, 0) are not written.

use super::{DecodeError, Enrichment, Envelope};
use serde_json::{Map, Value};

/// Format byte of the binary encoding (version 2 of the envelope).
pub const FORMAT_BIN_V2: u8 = 2;

const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const BYTES: u64 = 2;

/// Encodes `envelope` in format 2.
pub fn encode(envelope: &Envelope) -> Vec<u8> {
    let mut body = Vec::with_capacity(256);
    let e = envelope;
    text(&mut body, 1, &e.event_id);
    text(&mut body, 2, &e.app_id);
    text(&mut body, 3, &e.name);
    text(&mut body, 4, &e.distinct_id);
    optional(&mut body, 5, e.user_id.as_deref());
    optional(&mut body, 6, e.anonymous_id.as_deref());
    signed(&mut body, 7, e.timestamp_ms);
    signed(&mut body, 8, e.received_at_ms);
    if let Some(sent) = e.sent_at_ms {
        signed(&mut body, 9, sent);
    }
    optional(&mut body, 10, e.ip.as_deref());
    optional(&mut body, 11, e.user_agent.as_deref());
    let mut entry = Vec::new();
    for (key, value) in &e.properties {
        entry.clear();
        property(&mut entry, key, value);
        bytes(&mut body, 12, &entry);
    }
    if !e.enrichment.is_empty() {
        let mut inner = Vec::with_capacity(64);
        for (number, value) in enrichment_texts(&e.enrichment).into_iter().enumerate() {
            if !value.is_empty() {
                text(&mut inner, number as u64 + 1, value);
            }
        }
        if e.enrichment.is_bot {
            tag(&mut inner, IS_BOT, VARINT);
            varint(&mut inner, 1);
        }
        bytes(&mut body, 13, &inner);
    }
    if e.retention_days != 0 {
        tag(&mut body, 14, VARINT);
        varint(&mut body, u64::from(e.retention_days));
    }
    let mut out = Vec::with_capacity(body.len() + 6);
    out.push(FORMAT_BIN_V2);
    varint(&mut out, body.len() as u64);
    out.extend_from_slice(&body);
    out
}

/// Field number of `is_bot` inside the enrichment (after its 15 texts).
const IS_BOT: u64 = 16;

/// The enrichment's texts in field order (numbers 1–15).
fn enrichment_texts(e: &Enrichment) -> [&str; 15] {
    [
        &e.country,
        &e.region,
        &e.city,
        &e.browser,
        &e.browser_version,
        &e.os,
        &e.device_type,
        &e.url_host,
        &e.url_path,
        &e.referrer_host,
        &e.utm_source,
        &e.utm_medium,
        &e.utm_campaign,
        &e.utm_term,
        &e.utm_content,
    ]
}

fn enrichment_slot(e: &mut Enrichment, number: u64) -> Option<&mut String> {
    Some(match number {
        1 => &mut e.country,
        2 => &mut e.region,
        3 => &mut e.city,
        4 => &mut e.browser,
        5 => &mut e.browser_version,
        6 => &mut e.os,
        7 => &mut e.device_type,
        8 => &mut e.url_host,
        9 => &mut e.url_path,
        10 => &mut e.referrer_host,
        11 => &mut e.utm_source,
        12 => &mut e.utm_medium,
        13 => &mut e.utm_campaign,
        14 => &mut e.utm_term,
        15 => &mut e.utm_content,
        _ => return None,
    })
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

fn tag(out: &mut Vec<u8>, number: u64, wire: u64) {
    varint(out, number << 3 | wire);
}

fn bytes(out: &mut Vec<u8>, number: u64, value: &[u8]) {
    tag(out, number, BYTES);
    varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

fn text(out: &mut Vec<u8>, number: u64, value: &str) {
    bytes(out, number, value.as_bytes());
}

fn optional(out: &mut Vec<u8>, number: u64, value: Option<&str>) {
    if let Some(value) = value {
        text(out, number, value);
    }
}

fn signed(out: &mut Vec<u8>, number: u64, value: i64) {
    tag(out, number, VARINT);
    varint(out, zigzag(value));
}

fn property(out: &mut Vec<u8>, key: &str, value: &Value) {
    varint(out, key.len() as u64);
    out.extend_from_slice(key.as_bytes());
    match value {
        Value::Null => out.push(0),
        Value::Bool(false) => out.push(1),
        Value::Bool(true) => out.push(2),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push(3);
                varint(out, zigzag(i));
            } else if let Some(u) = n.as_u64() {
                out.push(4);
                varint(out, u);
            } else {
                out.push(5);
                out.extend_from_slice(&n.as_f64().unwrap_or_default().to_le_bytes());
            }
        }
        Value::String(s) => {
            out.push(6);
            varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        other => {
            let json = other.to_string();
            out.push(7);
            varint(out, json.len() as u64);
            out.extend_from_slice(json.as_bytes());
        }
    }
}

/// A cursor over encoded bytes; every read checks the bounds.
struct Reader<'a> {
    rest: &'a [u8],
}

fn malformed(what: &str) -> DecodeError {
    DecodeError::Binary(what.to_owned())
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self
                .rest
                .split_first()
                .ok_or_else(|| malformed("cut short"))?;
            self.rest = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed("varint longer than 10 bytes"))
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8], DecodeError> {
        let len = usize::try_from(len).map_err(|_| malformed("length"))?;
        if len > self.rest.len() {
            return Err(malformed("cut short"));
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.varint()?;
        self.take(len)
    }

    fn text(&mut self) -> Result<String, DecodeError> {
        let raw = self.bytes()?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| malformed("text is not UTF-8"))
    }

    /// Skips a value of wire type `wire` (a field this build does not know).
    fn skip(&mut self, wire: u64) -> Result<(), DecodeError> {
        match wire {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            BYTES => self.bytes().map(drop),
            _ => Err(malformed("unknown wire type")),
        }
    }

    /// The next field's number and wire type, or `None` at the end.
    fn field(&mut self) -> Result<Option<(u64, u64)>, DecodeError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let tag = self.varint()?;
        Ok(Some((tag >> 3, tag & 7)))
    }
}

/// Decodes the bytes after the format byte.
pub fn decode(body: &[u8]) -> Result<Envelope, DecodeError> {
    let mut reader = Reader { rest: body };
    let len = reader.varint()?;
    if usize::try_from(len).ok() != Some(reader.rest.len()) {
        return Err(malformed("length does not match the message"));
    }
    let mut e = Envelope {
        event_id: String::new(),
        app_id: String::new(),
        name: String::new(),
        distinct_id: String::new(),
        user_id: None,
        anonymous_id: None,
        timestamp_ms: 0,
        received_at_ms: 0,
        sent_at_ms: None,
        ip: None,
        user_agent: None,
        properties: Map::new(),
        enrichment: Enrichment::default(),
        retention_days: 0,
    };
    // Required fields seen (bits 1–4 texts, 7–8 times).
    let mut seen = 0u32;
    while let Some((number, wire)) = reader.field()? {
        let expect = |want: u64| {
            if wire == want {
                Ok(())
            } else {
                Err(malformed("field of the wrong wire type"))
            }
        };
        match number {
            1..=6 | 10 | 11 => {
                expect(BYTES)?;
                let value = reader.text()?;
                match number {
                    1 => e.event_id = value,
                    2 => e.app_id = value,
                    3 => e.name = value,
                    4 => e.distinct_id = value,
                    5 => e.user_id = Some(value),
                    6 => e.anonymous_id = Some(value),
                    10 => e.ip = Some(value),
                    _ => e.user_agent = Some(value),
                }
            }
            7..=9 => {
                expect(VARINT)?;
                let value = unzigzag(reader.varint()?);
                match number {
                    7 => e.timestamp_ms = value,
                    8 => e.received_at_ms = value,
                    _ => e.sent_at_ms = Some(value),
                }
            }
            12 => {
                expect(BYTES)?;
                let (key, value) = read_property(reader.bytes()?)?;
                e.properties.insert(key, value);
            }
            13 => {
                expect(BYTES)?;
                e.enrichment = read_enrichment(reader.bytes()?)?;
            }
            14 => {
                expect(VARINT)?;
                e.retention_days = u16::try_from(reader.varint()?)
                    .map_err(|_| malformed("retention_days out of range"))?;
            }
            _ => {
                reader.skip(wire)?;
                continue;
            }
        }
        if number < 32 {
            seen |= 1 << number;
        }
    }
    const REQUIRED: u32 = 1 << 1 | 1 << 2 | 1 << 3 | 1 << 4 | 1 << 7 | 1 << 8;
    if seen & REQUIRED != REQUIRED {
        return Err(malformed("a required field is missing"));
    }
    Ok(e)
}

fn read_property(raw: &[u8]) -> Result<(String, Value), DecodeError> {
    let mut reader = Reader { rest: raw };
    let key = reader.text()?;
    let (&kind, rest) = reader
        .rest
        .split_first()
        .ok_or_else(|| malformed("cut short"))?;
    reader.rest = rest;
    let value = match kind {
        0 => Value::Null,
        1 => Value::Bool(false),
        2 => Value::Bool(true),
        3 => Value::from(unzigzag(reader.varint()?)),
        4 => Value::from(reader.varint()?),
        5 => {
            let raw: [u8; 8] = reader
                .take(8)?
                .try_into()
                .map_err(|_| malformed("cut short"))?;
            Value::from(f64::from_le_bytes(raw))
        }
        6 => Value::String(reader.text()?),
        7 => serde_json::from_slice(reader.bytes()?)?,
        _ => return Err(malformed("unknown property kind")),
    };
    if !reader.rest.is_empty() {
        return Err(malformed("bytes after a property"));
    }
    Ok((key, value))
}

fn read_enrichment(raw: &[u8]) -> Result<Enrichment, DecodeError> {
    let mut reader = Reader { rest: raw };
    let mut out = Enrichment::default();
    while let Some((number, wire)) = reader.field()? {
        match (number, enrichment_slot(&mut out, number)) {
            (_, Some(slot)) if wire == BYTES => *slot = reader.text()?,
            (IS_BOT, _) if wire == VARINT => out.is_bot = reader.varint()? != 0,
            (1..=IS_BOT, _) => return Err(malformed("field of the wrong wire type")),
            _ => reader.skip(wire)?,
        }
    }
    Ok(out)
}
