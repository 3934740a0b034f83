//! The SVG plot: throughput and p99 against tenant count, one line per
//! workload and distribution (solid: uniform, dashed: Zipf); W6 (sign-in,
//! hashing-bound, measured on one dataset) is left out.

use std::path::Path;

use anyhow::Context;
use plotters::{coord::combinators::IntoLogRange, prelude::*};

/// One line: its label, whether it is the Zipf one, and (tenants, value) points.
pub struct Line {
    pub label: String,
    pub colour: usize,
    pub dashed: bool,
    pub points: Vec<(f64, f64)>,
}

/// Draws `throughput` (req/s) and `p99` (ms) side by side into `path`.
pub fn draw(path: &Path, title: &str, throughput: &[Line], p99: &[Line]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (1400, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let root = root.titled(title, ("sans-serif", 20)).map_err(plot_error)?;
    let (left, right) = root.split_horizontally(700);
    panel(&left, "requests per second (median)", "req/s", throughput)?;
    panel(&right, "p99 latency (median of repetitions)", "ms", p99)?;
    root.present()
        .map_err(plot_error)
        .context("could not write the SVG")?;
    Ok(())
}

fn panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    caption: &str,
    unit: &str,
    lines: &[Line],
) -> anyhow::Result<()> {
    let xs = lines
        .iter()
        .flat_map(|line| line.points.iter().map(|(x, _)| *x));
    let (x_min, x_max) = xs.fold((f64::INFINITY, 0.0_f64), |(lo, hi), x| {
        (lo.min(x), hi.max(x))
    });
    let (x_min, x_max) = if x_min.is_finite() && x_max > x_min {
        (x_min / 1.5, x_max * 1.5)
    } else {
        (1.0, 100_000.0)
    };
    let y_max = lines
        .iter()
        .flat_map(|line| line.points.iter().map(|(_, y)| *y))
        .filter(|y| y.is_finite())
        .fold(0.0_f64, f64::max)
        .max(1.0)
        * 1.5;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((x_min..x_max).log_scale(), 0.0..y_max)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("tenants (log scale)")
        .y_desc(unit)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(plot_error)?;
    for line in lines {
        let colour = Palette99::pick(line.colour).to_rgba();
        let style = colour.stroke_width(2);
        let points: Vec<(f64, f64)> = line
            .points
            .iter()
            .copied()
            .filter(|(_, y)| y.is_finite())
            .collect();
        let legend = move |(x, y): (i32, i32)| PathElement::new(vec![(x, y), (x + 20, y)], style);
        if line.dashed {
            chart
                .draw_series(DashedLineSeries::new(points, 6, 4, style))
                .map_err(plot_error)?
                .label(&line.label)
                .legend(legend);
        } else {
            chart
                .draw_series(LineSeries::new(points, style))
                .map_err(plot_error)?
                .label(&line.label)
                .legend(legend);
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

fn plot_error(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("plotting failed: {error}")
}
