//! SVG line charts of benchmark results (plotters, SVG backend only).

use anyhow::Context;
use plotters::prelude::*;
use std::path::Path;

/// One named line.
pub struct Series {
    /// Legend label.
    pub label: String,
    /// (x, y) points, in x order.
    pub points: Vec<(f64, f64)>,
}

const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Draws `series` as lines with point markers into an 800x480 SVG at `path`.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> anyhow::Result<()> {
    let points = series.iter().flat_map(|s| s.points.iter());
    let (mut x_max, mut y_max) = (0f64, 0f64);
    let mut x_min = f64::MAX;
    for &(x, y) in points {
        x_min = x_min.min(x);
        x_max = x_max.max(x);
        y_max = y_max.max(y);
    }
    if x_min == f64::MAX {
        x_min = 0.0;
    }
    let x_max = if x_max > x_min { x_max } else { x_min + 1.0 };
    let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).context("chart background")?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(x_min..x_max, 0f64..y_max)
        .context("chart axes")?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style(("sans-serif", 13))
        .draw()
        .context("chart mesh")?;
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), colour.stroke_width(2)))
            .context("chart line")?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
            });
        chart
            .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, colour.filled())))
            .context("chart points")?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .context("chart legend")?;
    root.present().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// `ingest-chart`: ingest→queryable latency (p50, p90, p99) of the flashblocks served
/// preconfirmed (not the block's last one, which is sealed at once and served canonical)
/// against flashblock size, from the `ingest-latency` result files given (one per size).
pub fn ingest_by_size(
    files: &[std::path::PathBuf],
    out: &Path,
) -> anyhow::Result<serde_json::Value> {
    let mut rows = Vec::new();
    for f in files {
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?,
        )?;
        let r = &v["result"];
        let txs = r["tx_count_per_flashblock_measured"]["summary"]["p50"]
            .as_f64()
            .context("tx count in the result")?;
        let l = &r["latency_ms_served_preconfirmed"];
        rows.push(serde_json::json!({
            "file": f, "txs_per_flashblock_p50": txs, "samples": l["n"],
            "p50_ms": l["p50"], "p90_ms": l["p90"], "p99_ms": l["p99"], "max_ms": l["max"],
        }));
    }
    rows.sort_by(|a, b| {
        a["txs_per_flashblock_p50"]
            .as_f64()
            .partial_cmp(&b["txs_per_flashblock_p50"].as_f64())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let series = |label: &str, key: &str| Series {
        label: label.into(),
        points: rows
            .iter()
            .map(|r| {
                (
                    r["txs_per_flashblock_p50"].as_f64().unwrap_or_default(),
                    r[key].as_f64().unwrap_or_default(),
                )
            })
            .collect(),
    };
    line_chart(
        out,
        "Flashblock arrival to preconfirmed receipt queryable on the node's RPC",
        "transactions in the flashblock",
        "latency (ms)",
        &[series("p50", "p50_ms"), series("p90", "p90_ms"), series("p99", "p99_ms")],
    )?;
    Ok(serde_json::json!({"scenario": "ingest-by-size", "result": {"rows": rows, "chart": out}}))
}
