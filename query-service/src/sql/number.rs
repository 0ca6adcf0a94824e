//! Numbers in property values, which are stored as text: a value is numeric
//! when its text is a decimal number ([`NUMBER_PATTERN`]: `20`, `-3.5`,
//! `20.00`, `1e-7`; not `2.`, `.5`, `+5`, `free`, the empty string) with a
//! finite value. [`number_of`] is that value in SQL (NULL otherwise, so
//! aggregates skip it), [`parse_number`] the same rule in Rust (filter values,
//! tests' brute force). Both ClickHouse 18.16 and current releases read the
//! pattern alike (`testkit/tests/sql_versions.rs`).

use super::Bind;

/// The text form of a decimal number. Written without `?` (a placeholder to
/// the client's binder) and without `\` (`[.]` reads the same inside a SQL
/// string literal on every version).
pub const NUMBER_PATTERN: &str = "^-{0,1}[0-9]+([.][0-9]+){0,1}([eE][-+]{0,1}[0-9]+){0,1}$";

/// The numeric value of the text expression `expr` (whose placeholders take
/// `binds`): NULL unless it is numeric (see the module doc). Aggregates skip
/// NULLs, so `sum`/`avg` of it count only the events whose value is a number.
/// `expr` appears three times, so do its binds.
pub fn number_of(expr: &str, binds: &[Bind]) -> (String, Vec<Bind>) {
    (
        format!(
            "if(match({expr}, '{NUMBER_PATTERN}') AND isFinite(toFloat64OrZero({expr})), toFloat64OrZero({expr}), NULL)"
        ),
        [binds, binds, binds].concat(),
    )
}

/// Whether `text` is numeric by [`NUMBER_PATTERN`] (the same rule in Rust: for
/// filter values and for tests' brute force), and its value.
pub fn parse_number(text: &str) -> Option<f64> {
    let body = text.strip_prefix('-').unwrap_or(text);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (mantissa, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['-', '+']).unwrap_or(e)));
    if !(digits(int) && frac.is_none_or(digits) && exponent_ok) {
        return None;
    }
    text.parse::<f64>().ok().filter(|n| n.is_finite())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_decimal_texts() {
        for (text, want) in [
            ("20", Some(20.0)),
            ("20.00", Some(20.0)),
            ("-3.5", Some(-3.5)),
            ("1e-7", Some(1e-7)),
            ("1E+3", Some(1000.0)),
            ("1e400", None),
            ("abc", None),
            ("", None),
            ("2.", None),
            (".5", None),
            ("+5", None),
            (" 5", None),
            ("0x10", None),
            ("NaN", None),
            ("inf", None),
        ] {
            assert_eq!(parse_number(text), want, "{text:?}");
        }
    }
}
