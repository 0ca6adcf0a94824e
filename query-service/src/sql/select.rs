//! One aggregate `SELECT` as parts — dimensions, metrics, table, conditions,
//! each with its binds — so the builders of [`super`]'s callers can be answered
//! alone ([`Select::statement`]) or side by side ([`side_by_side`]): event and
//! session metrics of one request, each from its own table, joined on the
//! dimensions by `UNION ALL` and an outer `GROUP BY` (no JOIN: the same text
//! runs on ClickHouse 18.16 and current releases).

use super::{group_by_dimensions, Bind, Sql};

/// One table's aggregate: `SELECT dims, metrics FROM table WHERE conditions`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Select {
    /// Dimension expressions (aliased `d0`, `d1`, …) and their names.
    pub dims: Vec<(String, String)>,
    /// Binds of the dimension expressions, in text order.
    pub dim_binds: Vec<Bind>,
    /// Metric expressions (aliased `m0`, `m1`, … in order) and their names.
    pub metrics: Vec<(String, String)>,
    /// Binds of the metric expressions, in text order.
    pub metric_binds: Vec<Bind>,
    /// The table (`events`, `sessions FINAL`), with its join if any.
    pub from: String,
    /// Binds of `from`, in text order.
    pub from_binds: Vec<Bind>,
    /// Conditions, all of which hold (the app guard first).
    pub conditions: Vec<String>,
    /// Binds of the conditions, in text order.
    pub condition_binds: Vec<Bind>,
}

/// Whether a metric named `name` combines across rows by adding (counts and
/// sums, 0 when absent) rather than being one row's value (averages, rates).
pub fn additive(name: &str) -> bool {
    matches!(name, "events" | "unique_users" | "sessions") || name.starts_with("sum_")
}

impl Select {
    fn binds(&self) -> impl Iterator<Item = &Bind> {
        self.dim_binds
            .iter()
            .chain(&self.metric_binds)
            .chain(&self.from_binds)
            .chain(&self.condition_binds)
    }

    fn dim_list(&self) -> Vec<String> {
        let dims = self.dims.iter().enumerate();
        dims.map(|(i, (expr, _))| format!("{expr} AS d{i}"))
            .collect()
    }

    /// The statement of this one select: groups ordered by the first metric,
    /// at most `limit + 1` rows (the extra one tells "truncated").
    pub fn statement(self, limit: usize) -> Sql {
        let mut select = self.dim_list();
        let metrics = self.metrics.iter().enumerate();
        select.extend(metrics.map(|(i, (expr, _))| format!("{expr} AS m{i}")));
        let group = group_by_dimensions(self.dims.len());
        Sql {
            text: format!(
                "SELECT {} FROM {} WHERE {}{group} LIMIT {}",
                select.join(", "),
                self.from,
                self.conditions.join(" AND "),
                limit + 1
            ),
            binds: self.binds().cloned().collect(),
            dimensions: self.dims.into_iter().map(|(_, name)| name).collect(),
            metrics: self.metrics.into_iter().map(|(_, name)| name).collect(),
            max_groups: None,
        }
    }
}

/// One statement answering the metrics of several selects over the same
/// dimensions: `sides` are (select, the answer positions of its metrics); the
/// answer's metrics are named `names`. Each side groups by the dimensions and
/// fills the other sides' metrics with NULL; the outer query adds the sides
/// up per group (a count absent on its side is 0, an average or rate NULL).
pub fn side_by_side(sides: Vec<(Select, Vec<usize>)>, names: Vec<String>, limit: usize) -> Sql {
    let dims = sides
        .first()
        .map(|(s, _)| s.dims.clone())
        .unwrap_or_default();
    let group = if dims.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = (0..dims.len()).map(|i| format!("d{i}")).collect();
        format!(" GROUP BY {}", list.join(", "))
    };
    let mut parts = Vec::new();
    let mut binds = Vec::new();
    for (side, positions) in &sides {
        let mut select = side.dim_list();
        for slot in 0..names.len() {
            let expr = match positions.iter().position(|p| *p == slot) {
                Some(own) => format!("toNullable(toFloat64({}))", side.metrics[own].0),
                None => "CAST(NULL AS Nullable(Float64))".to_owned(),
            };
            select.push(format!("{expr} AS m{slot}"));
        }
        parts.push(format!(
            "SELECT {} FROM {} WHERE {}{group}",
            select.join(", "),
            side.from,
            side.conditions.join(" AND ")
        ));
        binds.extend(side.binds().cloned());
    }
    let mut outer: Vec<String> = (0..dims.len()).map(|i| format!("d{i}")).collect();
    for (slot, name) in names.iter().enumerate() {
        outer.push(if additive(name) {
            format!("ifNull(sum(m{slot}), 0) AS m{slot}")
        } else {
            format!("sum(m{slot}) AS m{slot}")
        });
    }
    let order = if dims.is_empty() {
        ""
    } else {
        " ORDER BY m0 DESC"
    };
    Sql {
        text: format!(
            "SELECT {} FROM ({}){group}{order} LIMIT {}",
            outer.join(", "),
            parts.join(" UNION ALL "),
            limit + 1
        ),
        binds,
        dimensions: dims.into_iter().map(|(_, name)| name).collect(),
        metrics: names,
        max_groups: None,
    }
}
