//! The curves' plot: line charts drawn as SVG here (axes, ticks, one
//! polyline per series, a legend), turned into a PNG by Chromium
//! (`loadgen/plot/svg-png.mjs`, playwright-core from `web/node_modules`).

use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;

/// One line: its name, colour and a value per x position (`None`: no point).
pub struct Series {
    /// Legend text.
    pub name: String,
    /// CSS colour.
    pub color: &'static str,
    /// Values, one per x label.
    pub values: Vec<Option<f64>>,
    /// Dashed (a peer, not Tally).
    pub dashed: bool,
}

/// A chart: title, x labels, y axis label, series.
pub struct Chart {
    /// Title.
    pub title: String,
    /// X positions' labels (evenly spaced).
    pub x: Vec<String>,
    /// Y axis label.
    pub y: String,
    /// Lines.
    pub series: Vec<Series>,
}

const W: f64 = 480.0;
const H: f64 = 400.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 130.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

/// A tick step of about a fifth of `max`, rounded to 1, 2 or 5 × 10ⁿ.
pub fn tick_step(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let rough = max / 5.0;
    let magnitude = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .find(|m| m * magnitude >= rough)
        .unwrap_or(10.0);
    step * magnitude
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn label(value: f64) -> String {
    if value >= 1_000_000.0 {
        format!("{}M", value / 1_000_000.0)
    } else if value >= 1_000.0 {
        format!("{}k", value / 1_000.0)
    } else {
        format!("{value}")
    }
}

/// The chart as an SVG group at (`x0`, 0), `W` × `H`.
pub fn chart_svg(chart: &Chart, x0: f64) -> String {
    let mut svg = String::new();
    let max = chart
        .series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .fold(0.0f64, |a, b| a.max(*b));
    let step = tick_step(max);
    let top = (max / step).ceil().max(1.0) * step;
    let (plot_w, plot_h) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let n = chart.x.len().max(1);
    let x_at = |i: usize| x0 + LEFT + plot_w * (i as f64 + 0.5) / n as f64;
    let y_at = |v: f64| TOP + plot_h * (1.0 - v / top);
    let _ = write!(
        svg,
        r#"<text x="{}" y="22" font-size="15" font-weight="bold" text-anchor="middle">{}</text>"#,
        x0 + W / 2.0,
        escape(&chart.title)
    );
    let mut tick = 0.0;
    while tick <= top + step / 2.0 {
        let y = y_at(tick);
        let _ = write!(
            svg,
            r##"<line x1="{}" x2="{}" y1="{y}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" font-size="11" text-anchor="end">{}</text>"##,
            x0 + LEFT,
            x0 + W - RIGHT,
            x0 + LEFT - 6.0,
            y + 4.0,
            label(tick)
        );
        tick += step;
    }
    let _ = write!(
        svg,
        r#"<text transform="translate({},{}) rotate(-90)" font-size="12" text-anchor="middle">{}</text>"#,
        x0 + 16.0,
        TOP + plot_h / 2.0,
        escape(&chart.y)
    );
    for (i, x) in chart.x.iter().enumerate() {
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">{}</text>"#,
            x_at(i),
            TOP + plot_h + 16.0,
            escape(x)
        );
    }
    let _ = write!(
        svg,
        r#"<line x1="{l}" x2="{l}" y1="{TOP}" y2="{b}" stroke="black"/><line x1="{l}" x2="{r}" y1="{b}" y2="{b}" stroke="black"/>"#,
        l = x0 + LEFT,
        r = x0 + W - RIGHT,
        b = TOP + plot_h
    );
    for (k, series) in chart.series.iter().enumerate() {
        let points: Vec<String> = series
            .values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| format!("{:.1},{:.1}", x_at(i), y_at(v))))
            .collect();
        let dash = if series.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = write!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#,
            points.join(" "),
            series.color
        );
        for point in &points {
            let (x, y) = point.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(
                svg,
                r#"<circle cx="{x}" cy="{y}" r="3" fill="{}"/>"#,
                series.color
            );
        }
        let ly = TOP + plot_h + 36.0 + 16.0 * k as f64;
        let _ = write!(
            svg,
            r#"<line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="{}" stroke-width="2"{dash}/><text x="{}" y="{}" font-size="11">{}</text>"#,
            x0 + LEFT,
            x0 + LEFT + 24.0,
            series.color,
            x0 + LEFT + 30.0,
            ly + 4.0,
            escape(&series.name)
        );
    }
    svg
}

/// Several charts side by side in one SVG document.
pub fn svg(charts: &[Chart]) -> String {
    let width = W * charts.len().max(1) as f64;
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{H}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>"#
    );
    for (i, chart) in charts.iter().enumerate() {
        out += &chart_svg(chart, W * i as f64);
    }
    out += "</svg>\n";
    out
}

fn values(points: &[&Value], key: impl Fn(&Value) -> &Value) -> Vec<Option<f64>> {
    points.iter().map(|p| key(p).as_f64()).collect()
}

/// The three charts of the curves (`curves::run`'s JSON).
pub fn curves_svg(curves: &Value) -> String {
    let intake: Vec<&Value> = curves["intake"].as_array().into_iter().flatten().collect();
    let partitions: Vec<i64> = {
        let mut p: Vec<i64> = intake
            .iter()
            .filter_map(|v| v["partitions"].as_i64())
            .collect();
        p.dedup();
        p
    };
    let at = |gateways: i64| -> Vec<&Value> {
        partitions
            .iter()
            .filter_map(|p| {
                intake
                    .iter()
                    .find(|v| v["partitions"] == *p && v["gateways"] == gateways)
                    .copied()
            })
            .collect()
    };
    let (one, two) = (at(1), at(2));
    let x: Vec<String> = partitions
        .iter()
        .map(|p| format!("{p} partitions"))
        .collect();
    let line = |name: &str, k: usize, values: Vec<Option<f64>>, dashed: bool| Series {
        name: name.to_owned(),
        color: COLORS[k % COLORS.len()],
        values,
        dashed,
    };
    let intake_chart = Chart {
        title: "Intake (B1), events/s".into(),
        x: x.clone(),
        y: "events/s".into(),
        series: vec![
            line(
                "gateway ×1",
                0,
                values(&one, |v| &v["events_per_sec"]),
                false,
            ),
            line(
                "gateway ×2",
                1,
                values(&two, |v| &v["events_per_sec"]),
                false,
            ),
            line(
                "plain producer (same messages)",
                2,
                values(&one, |v| &v["plain_producer_events_per_sec"]),
                true,
            ),
            line(
                "events per gateway CPU-s ÷ 4 (×1)",
                3,
                values(&one, |v| &v["events_per_gateway_cpu_second"])
                    .into_iter()
                    .map(|v| v.map(|v| v / 4.0))
                    .collect(),
                false,
            ),
        ],
    };
    let aggregator_chart = Chart {
        title: "Aggregator (B2), events/s".into(),
        x,
        y: "events/s".into(),
        series: vec![
            line(
                "aggregator",
                0,
                values(&one, |v| &v["aggregator"]["events_per_sec"]),
                false,
            ),
            line(
                "plain consumer (same topic)",
                2,
                values(&one, |v| &v["aggregator"]["plain_consumer_events_per_sec"]),
                true,
            ),
        ],
    };
    let queries: Vec<&Value> = curves["queries"].as_array().into_iter().flatten().collect();
    let query_chart = Chart {
        title: "Queries (B5), p95 ms".into(),
        x: queries
            .iter()
            .map(|q| format!("{} rows", label(q["rows"].as_f64().unwrap_or(0.0))))
            .collect(),
        y: "p95 ms (answer cache off)".into(),
        series: vec![
            line(
                "group-by 90 d",
                0,
                values(&queries, |q| &q["group_by_90d_p95_ms"]),
                false,
            ),
            line(
                "page views 90 d, derived + raw",
                1,
                values(&queries, |q| &q["pages"]["derived_p95_ms"]),
                false,
            ),
            line(
                "page views 90 d, raw rows",
                1,
                values(&queries, |q| &q["pages"]["raw_p95_ms"]),
                true,
            ),
            line(
                "funnel 30 d",
                3,
                values(&queries, |q| &q["funnel_30d_p95_ms"]),
                false,
            ),
            line(
                "strict funnel 30 d",
                4,
                values(&queries, |q| &q["strict_funnel_30d_p95_ms"]),
                false,
            ),
        ],
    };
    svg(&[intake_chart, aggregator_chart, query_chart])
}

/// Renders `svg` to `png` in Chromium; the PNG's path, or why not.
pub async fn png(svg: &Path, png: &Path) -> Result<String, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("plot/svg-png.mjs");
    let run = tokio::process::Command::new("node")
        .arg(&script)
        .arg(svg)
        .arg(png)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(120), run)
        .await
        .map_err(|_| "the PNG was not rendered within 2 minutes".to_owned())?
        .map_err(|e| format!("node {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!(
            "no PNG (needs web/node_modules and Chromium): {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(png.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_values() {
        assert_eq!(tick_step(0.0), 1.0);
        assert_eq!(tick_step(9.0), 2.0);
        assert_eq!(tick_step(14_865.0), 5_000.0);
        assert_eq!(tick_step(1_000.0), 200.0);
        assert_eq!(label(25_000_000.0), "25M");
        assert_eq!(label(2_500.0), "2.5k");
    }

    #[test]
    fn every_series_is_drawn_with_its_points_and_legend() {
        let chart = Chart {
            title: "t <1>".into(),
            x: vec!["a".into(), "b".into(), "c".into()],
            y: "y".into(),
            series: vec![Series {
                name: "s".into(),
                color: "red",
                values: vec![Some(1.0), None, Some(3.0)],
                dashed: true,
            }],
        };
        let text = svg(&[chart]);
        assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
        assert_eq!(text.matches("<circle").count(), 2);
        assert_eq!(text.matches("<polyline").count(), 1);
        assert!(text.contains("t &lt;1&gt;"));
        assert!(text.contains("stroke-dasharray"));
    }
}
