//! Columns, property lookups and filters of [`super`]: a filter names an
//! allowlisted column or a property (bound by name), an operator, and a value
//! that is always bound, never spliced.
//!
//! Names: `$name` is always a built-in field (an enriched column, or a time
//! bucket where dimensions allow one), `properties.name` always a property the
//! client sent. A bare name is the built-in field when there is one of that
//! name, else the property; the endpoint refuses a bare name that is both
//! (the app sent a property of a built-in field's name) with 400
//! `ambiguous_field` and a hint (see [`ambiguous`]), and every answer lists
//! what each name resolved to ([`resolved`]). So a built-in field and a
//! property never shadow each other silently.
//!
//! Numbers: property values are stored as text. A value is *numeric* when its
//! text is a decimal number ([`NUMBER_PATTERN`]: `20`, `-3.5`, `20.00`, `1e-7`)
//! with a finite value; [`number_of`] is its value, else NULL. Comparisons
//! (`gt` … `lte`) and `eq`/`neq`/`in`/`not_in` with numbers compare numerically,
//! so `20`, `20.0` and `"20.00"` are alike, and a value that is not numeric
//! never matches a number (it is not 0). Comparison values may be numbers or
//! numeric strings (`"50"`). `eq`/`neq` with a string compare text.
//! `null` means "not set": `eq null` is `is_not_set`, `neq null` is `is_set`.
//!
//! `person.name` is a current trait of the event's person (see
//! [`super::person`]): statements reading one join the persons' traits.

use super::number::{comparable, number_of, parse_number};
use super::person::{PERSON_TRAIT, TRAIT_VALUE};
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
    /// Value (a list for `in`/`not_in`; absent for `is_set`/`is_not_set`;
    /// `null` for "not set" with `eq`/`neq`, kept apart from absent).
    #[serde(default, deserialize_with = "present")]
    pub value: Option<Value>,
}

/// A present field as `Some` (so `"value": null` is `Some(Value::Null)`; an
/// absent one is `None` by `default`).
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
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

/// Prefix of the built-in namespace.
pub const BUILTIN: char = '$';
/// Prefix of the property namespace.
pub const PROPERTY: &str = "properties.";

/// A column of `columns` (bare or `$`-prefixed), else (when `properties`) a
/// property lookup (bare or `properties.`-prefixed).
pub fn field_in(
    name: &str,
    columns: &[&str],
    properties: bool,
) -> Result<(String, Vec<Bind>), Invalid> {
    if let Some(builtin) = name.strip_prefix(BUILTIN) {
        return match columns.iter().find(|c| **c == builtin) {
            Some(column) => Ok(((*column).to_owned(), Vec::new())),
            None => Err(invalid(
                "property",
                format!(
                    "no built-in field {name:?}; built-in fields: {}",
                    with_prefix(columns)
                ),
            )),
        };
    }
    if columns.contains(&name) {
        return Ok((name.to_owned(), Vec::new()));
    }
    let (property, value) = match name.strip_prefix(PERSON_TRAIT) {
        Some(name) => (name, TRAIT_VALUE),
        None => (
            name.strip_prefix(PROPERTY).unwrap_or(name),
            "prop_values[indexOf(prop_keys, ?)]",
        ),
    };
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
    Ok((value.to_owned(), vec![Bind::Text(property.to_owned())]))
}

fn with_prefix(names: &[&str]) -> String {
    let list: Vec<String> = names.iter().map(|n| format!("{BUILTIN}{n}")).collect();
    list.join(", ")
}

/// What `name` resolves to among the built-in `names`: `$name` for a built-in
/// field, `properties.name` for a property (the explicit, unambiguous form).
pub fn resolved(name: &str, builtins: &[&str]) -> String {
    if name.starts_with(BUILTIN) || name.starts_with(PROPERTY) || name.starts_with(PERSON_TRAIT) {
        name.to_owned()
    } else if builtins.contains(&name) {
        format!("{BUILTIN}{name}")
    } else {
        format!("{PROPERTY}{name}")
    }
}

/// The bare names among `names` that are built-in fields: each is ambiguous
/// when the app also sent a property of that name.
pub fn bare_builtins<'a>(names: &[&'a str], builtins: &[&str]) -> Vec<&'a str> {
    let mut bare: Vec<&str> = names
        .iter()
        .copied()
        .filter(|name| builtins.contains(name))
        .collect();
    bare.sort_unstable();
    bare.dedup();
    bare
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

/// A filter value as a number: a JSON number, or a string that is numeric.
fn number_value(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64().filter(|n| n.is_finite()),
        Value::String(s) => parse_number(s),
        _ => None,
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
    // `null` means "not set".
    let op = match (f.op.as_str(), &f.value) {
        ("eq", Some(Value::Null)) => "is_not_set",
        ("neq", Some(Value::Null)) => "is_set",
        (op, _) => op,
    };
    let sql = match op {
        "eq" | "neq" if value()?.is_number() => {
            let number =
                number_value(value()?).ok_or_else(|| invalid("value", "a finite number"))?;
            let (number_expr, number_binds) = number_of(&expr, &binds);
            binds = number_binds;
            binds.push(Bind::Float(comparable(number)));
            let equal = format!("ifNull({number_expr} = ?, 0)");
            if op == "eq" {
                equal
            } else {
                format!("{equal} = 0")
            }
        }
        "eq" | "neq" | "contains" | "not_contains" => {
            binds.push(Bind::Text(text_value(value()?)?));
            match op {
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
                        format!("{op} needs a list of 1..={MAX_IN_VALUES} values"),
                    )
                })?;
            let negate = if op == "in" { "" } else { "NOT " };
            if list.iter().all(Value::is_number) {
                let numbers = list
                    .iter()
                    .map(|v| number_value(v).map(comparable))
                    .collect::<Option<Vec<f64>>>()
                    .ok_or_else(|| invalid("value", "finite numbers"))?;
                let (number_expr, number_binds) = number_of(&expr, &binds);
                binds = number_binds;
                // Bound as texts and read as Float64: an array literal of numbers
                // takes its type from its elements, and a mix that prints as
                // integers and fractions has no common type (schema fuzz).
                let texts = numbers.iter().map(|n| format!("{n:?}")).collect();
                binds.insert(0, Bind::List(texts));
                format!("{negate}ifNull(has(arrayMap(x -> toFloat64(x), ?), {number_expr}), 0)")
            } else {
                let texts = list.iter().map(text_value).collect::<Result<Vec<_>, _>>()?;
                // The list's placeholder comes first in the text.
                binds.insert(0, Bind::List(texts));
                format!("{negate}has(?, {expr})")
            }
        }
        "gt" | "gte" | "lt" | "lte" => {
            let number = number_value(value()?).ok_or_else(|| {
                invalid(
                    "value",
                    format!("{op} needs a finite number or a numeric string"),
                )
            })?;
            let (number_expr, number_binds) = number_of(&expr, &binds);
            binds = number_binds;
            binds.push(Bind::Float(comparable(number)));
            let op = match op {
                "gt" => ">",
                "gte" => ">=",
                "lt" => "<",
                _ => "<=",
            };
            format!("ifNull({number_expr} {op} ?, 0)")
        }
        "is_set" | "is_not_set" => {
            let set = op == "is_set";
            if is_property {
                binds.truncate(1);
                let negate = if set { "" } else { "NOT " };
                let keys = if expr == TRAIT_VALUE {
                    "pm_keys"
                } else {
                    "prop_keys"
                };
                format!("{negate}has({keys}, ?)")
            } else {
                binds.clear();
                format!("{expr} {} ''", if set { "!=" } else { "=" })
            }
        }
        other => return Err(invalid("op", format!("unknown operator {other:?}"))),
    };
    Ok((sql, binds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn built(property: &str, op: &str, value: Value) -> Result<(String, Vec<Bind>), Invalid> {
        filter(&Filter {
            property: property.into(),
            op: op.into(),
            value: Some(value),
        })
    }

    #[test]
    fn numbers_compare_as_numbers_and_null_means_not_set() {
        // A JSON number compares numerically (20 = "20.0" = "20.00"); a string compares text.
        let (sql, binds) = built("price", "eq", json!(20)).unwrap();
        assert!(sql.starts_with("ifNull(if(match("), "{sql}");
        assert_eq!(binds.last(), Some(&Bind::Float(20.0)));
        assert_eq!(
            binds
                .iter()
                .filter(|b| **b == Bind::Text("price".into()))
                .count(),
            3
        );
        assert_eq!(sql.matches('?').count(), binds.len());
        let (sql, _) = built("price", "eq", json!("20.00")).unwrap();
        assert_eq!(sql, "prop_values[indexOf(prop_keys, ?)] = ?");
        // Numeric strings are comparison values; other strings are refused.
        let (_, binds) = built("price", "gt", json!("50")).unwrap();
        assert_eq!(binds.last(), Some(&Bind::Float(50.0)));
        assert!(built("price", "gt", json!("fifty")).is_err());
        // null: not set.
        let (sql, _) = built("coupon", "eq", Value::Null).unwrap();
        assert_eq!(sql, "NOT has(prop_keys, ?)");
        let (sql, _) = built("coupon", "neq", Value::Null).unwrap();
        assert_eq!(sql, "has(prop_keys, ?)");
        // A list of numbers is a numeric membership.
        let (sql, binds) = built("price", "in", json!([20, 30.5])).unwrap();
        assert!(
            sql.starts_with("ifNull(has(arrayMap(x -> toFloat64(x), ?), if(match("),
            "{sql}"
        );
        assert_eq!(binds[0], Bind::List(vec!["20.0".into(), "30.5".into()]));
    }

    #[test]
    fn names_resolve_by_namespace() {
        let builtins = ["country", "region", "day"];
        assert_eq!(resolved("region", &builtins), "$region");
        assert_eq!(resolved("plan", &builtins), "properties.plan");
        assert_eq!(
            resolved("properties.region", &builtins),
            "properties.region"
        );
        assert_eq!(resolved("$region", &builtins), "$region");
        assert_eq!(
            bare_builtins(&["region", "$country", "plan", "region", "day"], &builtins),
            ["day", "region"]
        );
        // `$` always means the built-in field, `properties.` always the property.
        assert_eq!(field("$country").unwrap(), ("country".to_owned(), vec![]));
        let (expr, binds) = field("properties.country").unwrap();
        assert_eq!(
            (expr.as_str(), binds),
            (
                "prop_values[indexOf(prop_keys, ?)]",
                vec![Bind::Text("country".into())]
            )
        );
        let refused = field("$plan").unwrap_err();
        assert!(refused.1.contains("$country"), "{refused:?}");
    }
}
