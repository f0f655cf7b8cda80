//! `--plot FILE.svg`: the run's latency distribution and delivered throughput over time, as
//! two charts in one SVG.
//!
//! - Latency by percentile: x is the number of nines (0 = p0, 1 = p90, 2 = p99, 3 = p99.9),
//!   up to what the sample count supports; y is microseconds on a log axis, so a tail ten
//!   thousand times the median still reads.
//! - Throughput over time: deliveries per second summed over subscribers, one point per
//!   100 ms bucket from the publishers' first send (the first and last buckets are partial,
//!   so they read low).
//! - Text is written as SVG `<text>` and laid out with an estimate of its width: no font
//!   files are read, so the plot is the same on every machine.

use std::path::Path;

use anyhow::{anyhow, Context};
use plotters::prelude::*;

use super::histogram::Histogram;

/// Title of the upper chart.
pub(crate) const LATENCY_TITLE: &str = "Latency by percentile";
/// Title of the lower chart.
pub(crate) const THROUGHPUT_TITLE: &str = "Throughput over time";

const WIDTH: u32 = 900;
const HEIGHT: u32 = 900;
/// Points of the percentile curve per nine.
const STEPS_PER_NINE: u32 = 20;
/// The deepest percentile drawn: p99.999 at most.
const MAX_NINES: f64 = 5.0;

/// The percentile curve: `(nines, microseconds)` where `nines = -log10(1 - q)`, up to the
/// deepest percentile `total` samples measure (a thousand samples say nothing of p99.99).
fn percentile_curve(latency: &Histogram) -> Vec<(f64, f64)> {
    let total = latency.total();
    if total == 0 {
        return Vec::new();
    }
    let deepest = (total as f64).log10().clamp(0.0, MAX_NINES);
    let steps = (deepest * f64::from(STEPS_PER_NINE)).ceil() as u32;
    (0..=steps)
        .map(|i| (f64::from(i) / f64::from(STEPS_PER_NINE)).min(deepest))
        .map(|nines| {
            let q = 1.0 - 10f64.powf(-nines);
            let us = latency.quantile(q) as f64 / 1000.0;
            // A log axis has no 0: below 1 ns is drawn as 1 ns.
            (nines, us.max(0.001))
        })
        .collect()
}

fn percentile_label(nines: f64) -> String {
    let q = 100.0 * (1.0 - 10f64.powf(-nines));
    let digits = (nines - 2.0).ceil().max(0.0) as usize;
    format!("p{q:.digits$}")
}

/// Writes the two charts to `path`; `caption` says what ran.
pub(crate) fn write(
    path: &Path,
    caption: &str,
    latency: &Histogram,
    throughput: &[(f64, f64)],
) -> anyhow::Result<()> {
    let curve = percentile_curve(latency);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, caption, &curve, throughput).map_err(|e| anyhow!("drawing the plot: {e}"))?;
        root.present()
            .map_err(|e| anyhow!("drawing the plot: {e}"))?;
    }
    std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))
}

type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;

fn draw(
    root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    caption: &str,
    curve: &[(f64, f64)],
    throughput: &[(f64, f64)],
) -> DrawResult {
    root.fill(&WHITE)?;
    let root = root.titled(caption, ("sans-serif", 18))?;
    let (upper, lower) = root.split_vertically(HEIGHT / 2 - 20);

    let max_nines = curve.last().map_or(1.0, |&(n, _)| n.max(1.0));
    let (lo, hi) = curve.iter().fold((f64::MAX, 0.0f64), |(lo, hi), &(_, us)| {
        (lo.min(us), hi.max(us))
    });
    let (lo, hi) = if curve.is_empty() {
        (1.0, 10.0)
    } else {
        (lo / 1.5, (hi * 1.5).max(lo * 10.0))
    };
    let mut chart = ChartBuilder::on(&upper)
        .caption(LATENCY_TITLE, ("sans-serif", 16))
        .margin(12)
        // Room for the last percentile's label, centred on the right edge.
        .margin_right(40)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..max_nines, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (us)")
        .x_labels((max_nines.ceil() as usize) + 1)
        .x_label_formatter(&|&n| percentile_label(n))
        .y_label_formatter(&|&us| format!("{us}"))
        .draw()?;
    chart.draw_series(LineSeries::new(curve.iter().copied(), BLUE.stroke_width(2)))?;

    let end = throughput.last().map_or(1.0, |&(t, _)| t.max(0.1) + 0.1);
    let top = throughput
        .iter()
        .map(|&(_, r)| r)
        .fold(0.0f64, f64::max)
        .max(1.0)
        * 1.1;
    let mut chart = ChartBuilder::on(&lower)
        .caption(THROUGHPUT_TITLE, ("sans-serif", 16))
        .margin(12)
        .margin_right(40)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..end, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the first send")
        .y_desc("delivered msg/s")
        .y_label_formatter(&|&r| format!("{r:.0}"))
        .draw()?;
    chart.draw_series(LineSeries::new(
        throughput.iter().copied(),
        RED.stroke_width(2),
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_labels_show_as_many_digits_as_nines_need() {
        assert_eq!(percentile_label(0.0), "p0");
        assert_eq!(percentile_label(2.0), "p99");
        assert_eq!(percentile_label(3.0), "p99.9");
    }

    #[test]
    fn the_curve_stops_where_the_samples_do() {
        let mut h = Histogram::default();
        for v in 1..=1000 {
            h.record(v * 1000);
        }
        let curve = percentile_curve(&h);
        assert_eq!(curve.first().map(|p| p.0), Some(0.0));
        assert!((curve.last().map_or(0.0, |p| p.0) - 3.0).abs() < 1e-9);
        assert!(curve.windows(2).all(|w| w[0].1 <= w[1].1));
    }

    #[test]
    fn the_svg_holds_both_charts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plot.svg");
        let mut h = Histogram::default();
        h.record(10_000);
        write(&path, "test", &h, &[(0.0, 5.0), (0.1, 7.0)]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains(LATENCY_TITLE) && svg.contains(THROUGHPUT_TITLE)
        );
    }
}
