//! Columns, property lookups and filters of [`super`]: a filter names an
//! allowlisted column or a property (bound by name), an operator, and a value
//! that is always bound, never spliced.

use super::{invalid, Bind, Invalid, MAX_IN_VALUES};
use serde::Deserialize;
use serde_json::Value;

/// Enriched columns a query may filter and group on (the list lives in
/// `tally_schemas::columns`, checked there against the `events` table).
pub const COLUMNS: &[&str] = tally_schemas::columns::EVENT_QUERY_COLUMNS;

/// A filter on a column or a property.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Column (see the allowlist) or property name (`properties.x` or `x`).
    pub property: String,
    /// `eq`, `neq`, `in`, `not_in`, `contains`, `not_contains`, `gt`, `gte`,
    /// `lt`, `lte`, `is_set`, `is_not_set`.
    pub op: String,
    /// Value (a list for `in`/`not_in`; absent for `is_set`/`is_not_set`).
    #[serde(default)]
    pub value: Option<Value>,
}

/// A user segment: only users who did `did` in the range.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    /// Event name the users did.
    pub did: String,
}

/// The value expression of a column or property, and its binds.
pub fn field(name: &str) -> Result<(String, Vec<Bind>), Invalid> {
    field_in(name, COLUMNS, true)
}

/// A column of `columns`, else (when `properties`) a property lookup.
pub fn field_in(
    name: &str,
    columns: &[&str],
    properties: bool,
) -> Result<(String, Vec<Bind>), Invalid> {
    if columns.contains(&name) {
        return Ok((name.to_owned(), Vec::new()));
    }
    let property = name.strip_prefix("properties.").unwrap_or(name);
    let ok = properties
        && (1..=128).contains(&property.len())
        && property
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'$'));
    if !ok {
        return Err(invalid(
            "property",
            format!("unknown column or invalid property name {name:?}"),
        ));
    }
    Ok((
        "prop_values[indexOf(prop_keys, ?)]".to_owned(),
        vec![Bind::Text(property.to_owned())],
    ))
}

fn text_value(value: &Value) -> Result<String, Invalid> {
    match value {
        Value::String(s) if s.chars().count() <= 1_000 => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(invalid(
            "value",
            "a string (at most 1000 characters), number or boolean",
        )),
    }
}

/// Smallest magnitude a number filter compares with as itself; below it, 0.
pub const MIN_FILTER_MAGNITUDE: f64 = 1e-290;

/// `number` as bound in a comparison. The value is written in decimal, and
/// ClickHouse 18.16 refuses number literals longer than about 320 characters
/// and subnormal ones; below [`MIN_FILTER_MAGNITUDE`] (≤ 309 characters)
/// numbers compare as 0.
pub fn comparable(number: f64) -> f64 {
    if number.abs() < MIN_FILTER_MAGNITUDE {
        0.0
    } else {
        number
    }
}

/// A filter on an allowlisted column or a property.
pub fn filter(f: &Filter) -> Result<(String, Vec<Bind>), Invalid> {
    filter_in(f, COLUMNS, true)
}

/// A filter on `columns` (and on properties when `properties`).
pub fn filter_in(
    f: &Filter,
    columns: &[&str],
    properties: bool,
) -> Result<(String, Vec<Bind>), Invalid> {
    let (expr, mut binds) = field_in(&f.property, columns, properties)?;
    let is_property = !binds.is_empty();
    let value = || {
        f.value
            .as_ref()
            .ok_or_else(|| invalid("value", format!("{} needs a value", f.op)))
    };
    let sql = match f.op.as_str() {
        "eq" | "neq" | "contains" | "not_contains" => {
            binds.push(Bind::Text(text_value(value()?)?));
            match f.op.as_str() {
                "eq" => format!("{expr} = ?"),
                "neq" => format!("{expr} != ?"),
                "contains" => format!("position({expr}, ?) > 0"),
                _ => format!("position({expr}, ?) = 0"),
            }
        }
        "in" | "not_in" => {
            let list = value()?
                .as_array()
                .filter(|l| (1..=MAX_IN_VALUES).contains(&l.len()))
                .ok_or_else(|| {
                    invalid(
                        "value",
                        format!("{} needs a list of 1..={MAX_IN_VALUES} values", f.op),
                    )
                })?;
            let texts = list.iter().map(text_value).collect::<Result<Vec<_>, _>>()?;
            // The list's placeholder comes first in the text.
            binds.insert(0, Bind::List(texts));
            let negate = if f.op == "in" { "" } else { "NOT " };
            format!("{negate}has(?, {expr})")
        }
        "gt" | "gte" | "lt" | "lte" => {
            let number = value()?
                .as_f64()
                .filter(|n| n.is_finite())
                .ok_or_else(|| invalid("value", format!("{} needs a finite number", f.op)))?;
            binds.push(Bind::Float(comparable(number)));
            let op = match f.op.as_str() {
                "gt" => ">",
                "gte" => ">=",
                "lt" => "<",
                _ => "<=",
            };
            format!("toFloat64OrZero({expr}) {op} ?")
        }
        "is_set" | "is_not_set" => {
            let set = f.op == "is_set";
            if is_property {
                let negate = if set { "" } else { "NOT " };
                format!("{negate}has(prop_keys, ?)")
            } else {
                binds.clear();
                format!("{expr} {} ''", if set { "!=" } else { "=" })
            }
        }
        other => return Err(invalid("op", format!("unknown operator {other:?}"))),
    };
    Ok((sql, binds))
}
