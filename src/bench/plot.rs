//! Plots with plotters, as PNG and SVG: completion-time CDFs per variant
//! (one panel per cell) and goodput vs loss (one panel per RTT).

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::report::Summary;
use super::runner::RunResult;
use super::scenario::Scenario;

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

fn color(i: usize) -> RGBColor {
    COLORS.get(i % COLORS.len()).copied().unwrap_or(BLACK)
}

/// The font is compiled in (DejaVu Sans) so plots look the same on a bare
/// machine; registering twice is harmless.
fn register_font() {
    let _ =
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotting failed: {e:?}")
}

/// Writes `<base>.png` and `<base>.svg`, running `$body` with `$root` bound
/// to each backend's drawing area (a macro: the body is generic code that
/// must be compiled once per backend).
macro_rules! both {
    ($base:expr, $size:expr, $root:ident => $body:expr) => {{
        register_font();
        let png = $base.with_extension("png");
        {
            let $root = BitMapBackend::new(&png, $size).into_drawing_area();
            $root.fill(&WHITE).map_err(err)?;
            $body?;
            $root.present().map_err(err)?;
        }
        let svg = $base.with_extension("svg");
        {
            let $root = SVGBackend::new(&svg, $size).into_drawing_area();
            $root.fill(&WHITE).map_err(err)?;
            $body?;
            $root.present().map_err(err)?;
        }
        Ok::<(), anyhow::Error>(())
    }};
}

/// Panels laid out as rows × columns: a grid's RTTs by its losses.
fn layout(sc: &Scenario) -> (usize, usize) {
    let mut rtts: Vec<f64> = sc.cells.iter().map(|c| c.link.rtt_ms).collect();
    rtts.dedup();
    let n = sc.cells.len();
    if rtts.len() > 1 && n.is_multiple_of(rtts.len()) {
        (rtts.len(), n / rtts.len())
    } else {
        let cols = (n as f64).sqrt().ceil() as usize;
        (n.div_ceil(cols.max(1)), cols.max(1))
    }
}

struct CdfPanel {
    title: String,
    /// Per variant: sorted completion times and how many were expected.
    series: Vec<(String, Vec<f64>, usize)>,
}

pub fn completion_cdf(
    base: &Path,
    sc: &Scenario,
    runs: &[RunResult],
    variants: &[String],
) -> Result<()> {
    let panels: Vec<CdfPanel> = sc
        .cells
        .iter()
        .enumerate()
        .map(|(ci, cell)| CdfPanel {
            title: cell.label.clone(),
            series: variants
                .iter()
                .map(|v| {
                    let rs = runs.iter().filter(|r| r.cell == ci && &r.variant == v);
                    let mut done = Vec::new();
                    let mut expected = 0;
                    for r in rs {
                        for p in r.expected() {
                            expected += 1;
                            done.extend(p.completed_s);
                        }
                    }
                    done.sort_by(|a, b| a.total_cmp(b));
                    (v.clone(), done, expected)
                })
                .collect(),
        })
        .collect();
    let (rows, cols) = layout(sc);
    let size = ((cols as u32 * 420).max(640), (rows as u32 * 320).max(420));
    // Up to the last completion when everyone finished, else the limit.
    let all_done = panels
        .iter()
        .flat_map(|p| &p.series)
        .all(|(_, done, expected)| done.len() == *expected);
    let last = panels
        .iter()
        .flat_map(|p| &p.series)
        .flat_map(|(_, done, _)| done.last().copied())
        .fold(0.0, f64::max);
    let x_max = if all_done && last > 0.0 {
        (last * 1.15).min(sc.time_limit_s)
    } else {
        sc.time_limit_s
    };
    let title = format!("{}: completion time CDF per variant", sc.name);
    both!(base, size, root => draw_cdf(&root, &title, &panels, (rows, cols), x_max))
}

fn draw_cdf<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    panels: &[CdfPanel],
    layout: (usize, usize),
    x_max: f64,
) -> Result<()> {
    let root = root.titled(title, ("sans-serif", 22)).map_err(err)?;
    let areas = root.split_evenly(layout);
    for (panel, area) in panels.iter().zip(areas.iter()) {
        cdf_panel(area, panel, x_max)?;
    }
    Ok(())
}

fn cdf_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    p: &CdfPanel,
    x_max: f64,
) -> Result<()> {
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, ("sans-serif", 15))
        .margin(8)
        .x_label_area_size(32)
        .y_label_area_size(40)
        .build_cartesian_2d(0.0..x_max, 0.0..1.0)
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("seconds")
        .y_desc("peers done")
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(err)?;
    for (i, (name, done, expected)) in p.series.iter().enumerate() {
        if *expected == 0 {
            continue;
        }
        let mut pts = vec![(0.0, 0.0)];
        for (k, t) in done.iter().enumerate() {
            let before = k as f64 / *expected as f64;
            let after = (k + 1) as f64 / *expected as f64;
            pts.push((*t, before));
            pts.push((*t, after));
        }
        let last = pts.last().map_or(0.0, |p| p.1);
        pts.push((x_max, last));
        let c = color(i);
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(2)))
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 12))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// Goodput against loss, one panel per RTT; skipped (false) when the
/// scenario has a single loss value.
pub fn goodput_vs_loss(
    base: &Path,
    sc: &Scenario,
    summary: &[Summary],
    variants: &[String],
) -> Result<bool> {
    let mut losses: Vec<f64> = sc.cells.iter().map(|c| c.link.loss_percent).collect();
    losses.sort_by(|a, b| a.total_cmp(b));
    losses.dedup();
    if losses.len() < 2 {
        return Ok(false);
    }
    let mut rtts: Vec<f64> = sc.cells.iter().map(|c| c.link.rtt_ms).collect();
    rtts.sort_by(|a, b| a.total_cmp(b));
    rtts.dedup();
    let rate = sc.cells.first().map_or(100.0, |c| c.link.rate_mbit);
    let loss_max = losses.last().copied().unwrap_or(10.0);
    let y_max = summary
        .iter()
        .filter_map(|s| s.goodput_mbit.map(|g| g.max))
        .fold(rate, f64::max)
        * 1.4; // room above the ceiling line for the legend
    let size = ((rtts.len() as u32 * 440).max(640), 420);
    let g = GoodputPlot {
        title: format!("{}: median goodput per leecher vs loss", sc.name),
        rtts,
        rate,
        loss_max,
        y_max,
        summary,
        variants,
    };
    both!(base, size, root => draw_goodput(&root, &g))?;
    Ok(true)
}

struct GoodputPlot<'a> {
    title: String,
    rtts: Vec<f64>,
    rate: f64,
    loss_max: f64,
    y_max: f64,
    summary: &'a [Summary],
    variants: &'a [String],
}

fn draw_goodput<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    g: &GoodputPlot<'_>,
) -> Result<()> {
    let root = root.titled(&g.title, ("sans-serif", 22)).map_err(err)?;
    let areas = root.split_evenly((1, g.rtts.len()));
    for (rtt, area) in g.rtts.iter().zip(areas.iter()) {
        let mut chart = ChartBuilder::on(area)
            .caption(format!("RTT {rtt} ms"), ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(32)
            .y_label_area_size(44)
            .build_cartesian_2d(0.0..g.loss_max, 0.0..g.y_max)
            .map_err(err)?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .x_desc("loss %")
            .y_desc("Mbit/s")
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(err)?;
        // The ceiling: a lossy link delivers at most (1 - p) of its rate.
        let ceiling: Vec<(f64, f64)> = (0..=20)
            .map(|k| {
                let l = g.loss_max * k as f64 / 20.0;
                (l, g.rate * (1.0 - l / 100.0))
            })
            .collect();
        chart
            .draw_series(LineSeries::new(ceiling, BLACK.mix(0.4).stroke_width(1)))
            .map_err(err)?
            .label("(1 − p) × link rate")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK.mix(0.4)));
        for (i, v) in g.variants.iter().enumerate() {
            let mut pts: Vec<(f64, f64)> = g
                .summary
                .iter()
                .filter(|s| &s.variant == v && s.rtt_ms == *rtt)
                .filter_map(|s| s.goodput_mbit.map(|m| (s.loss_percent, m.median)))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let c = color(i);
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(err)?
                .label(v.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                });
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled())))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font(("sans-serif", 12))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    }
    Ok(())
}
