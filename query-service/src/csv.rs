//! CSV answers (`format=csv` on `/query`): the answer's `results` rows as
//! RFC 4180 text. Columns are the union of the rows' keys in first-seen
//! order; a comparison's previous period follows as rows with `period =
//! previous` (the current ones say `current`). Cells with a comma, quote or
//! line break are quoted; a text cell that a spreadsheet would run as a
//! formula (starting with `=`, `+`, `-`, `@`, tab or CR, and not a number) is
//! prefixed with `'`. Nested values are written as JSON; `null` is empty.

use serde_json::Value;

fn cell(value: &Value) -> String {
    let text = match value {
        Value::Null => String::new(),
        Value::String(s) => {
            let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
            if formula && s.parse::<f64>().is_err() {
                format!("'{s}")
            } else {
                s.clone()
            }
        }
        Value::Bool(_) | Value::Number(_) | Value::Array(_) | Value::Object(_) => value.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// The CSV of a `/query` answer (`results`, and `previous.results` when compared).
pub fn query_answer(answer: &Value) -> String {
    let current = answer["results"].as_array().cloned().unwrap_or_default();
    let previous = answer["previous"]["results"].as_array().cloned();
    let compared = previous.is_some();
    let mut rows: Vec<(Option<&str>, &Value)> = current
        .iter()
        .map(|row| (compared.then_some("current"), row))
        .collect();
    if let Some(previous) = &previous {
        rows.extend(previous.iter().map(|row| (Some("previous"), row)));
    }
    let mut columns: Vec<String> = Vec::new();
    for (_, row) in &rows {
        for key in row.as_object().into_iter().flat_map(|o| o.keys()) {
            if !columns.contains(key) {
                columns.push(key.clone());
            }
        }
    }
    let mut out = String::new();
    let mut header: Vec<String> = columns
        .iter()
        .map(|c| cell(&Value::String(c.clone())))
        .collect();
    if compared {
        header.push("period".into());
    }
    out.push_str(&header.join(","));
    out.push_str("\r\n");
    for (period, row) in rows {
        let mut line: Vec<String> = columns.iter().map(|c| cell(&row[c.as_str()])).collect();
        if let Some(period) = period {
            line.push(period.into());
        }
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_become_quoted_csv_without_formulas() {
        let answer = json!({"results": [
            {"country": "DE", "events": 3},
            {"country": "a,\"b\"\nc", "events": 1.5, "extra": null},
            {"country": "=HYPERLINK(\"x\")", "events": -2, "extra": "-7"},
        ]});
        assert_eq!(
            query_answer(&answer),
            "country,events,extra\r\nDE,3,\r\n\"a,\"\"b\"\"\nc\",1.5,\r\n\"'=HYPERLINK(\"\"x\"\")\",-2,-7\r\n"
        );
    }

    #[test]
    fn a_comparison_adds_the_period() {
        let answer = json!({"results": [{"events": 5}], "previous": {"results": [{"events": 4}]}});
        assert_eq!(
            query_answer(&answer),
            "events,period\r\n5,current\r\n4,previous\r\n"
        );
        assert_eq!(query_answer(&json!({"results": []})), "\r\n");
    }
}
