//! The figure: one panel per run, stacked, per-flow throughput over time with the total and
//! the cap; PNG and SVG from the same drawing code.
//!
//! Text needs a font: plotters is built with `ab_glyph` (pure Rust, no fontconfig or
//! freetype), which loads no system fonts, so [`register_font`] reads a TTF file (by
//! default Debian's fonts-dejavu-core `DejaVuSans.ttf`) before anything is drawn.

use super::analysis::{BinReport, RunReport};
use anyhow::{anyhow, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::Path;

/// Debian's fonts-dejavu-core.
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

const FONT: &str = "sans-serif";
const WIDTH: u32 = 1400;
const PANEL_HEIGHT: u32 = 480;

/// Flows 1-4 as in the blog post (green, red, blue, orange), then others.
const COLOURS: [RGBColor; 8] = [
    RGBColor(0, 150, 0),
    RGBColor(214, 39, 40),
    RGBColor(31, 90, 220),
    RGBColor(255, 140, 0),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];
const GREY: RGBColor = RGBColor(130, 130, 130);
const LIGHT: RGBColor = RGBColor(200, 200, 200);

/// Reads a TrueType font and registers it as plotters' `sans-serif`.
pub fn register_font(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow!(
                "font {} not found: the plots need a TrueType font; install it with \
                 `apt-get install fonts-dejavu-core` or pass --font FILE.ttf",
                path.display()
            )
        } else {
            anyhow!("reading font {}: {e}", path.display())
        }
    })?;
    // plotters keeps a 'static reference: the font lives as long as the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font(FONT, FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("{} is not a usable TrueType font", path.display()))
}

/// One panel.
#[derive(Debug, Clone, Copy)]
pub struct Panel<'a> {
    /// Run name.
    pub name: &'a str,
    /// Its report.
    pub report: &'a RunReport,
}

/// What the figure shows besides the runs.
#[derive(Debug, Clone)]
pub struct Figure<'a> {
    /// Top to bottom.
    pub panels: Vec<Panel<'a>>,
    /// The cap (Mbit/s).
    pub cap_mbit: f64,
    /// Event times (s, scaled), drawn as faint vertical lines.
    pub events_s: Vec<f64>,
    /// The schedule's end (s, scaled).
    pub end_s: f64,
    /// One legend label per flow, flow 1 first.
    pub flow_labels: Vec<String>,
}

fn fmt_opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "n/a".to_string(), f)
}

/// The panel's title: run, mean Jain, utilisation, loss.
pub fn title(p: &Panel<'_>) -> String {
    let o = &p.report.overall;
    format!(
        "{}: mean Jain {}, utilisation {} of the cap (congested periods), loss {}",
        p.name,
        fmt_opt(o.mean_jain_multi_flow, |j| format!("{j:.3}")),
        fmt_opt(o.utilisation_congested, |u| format!("{:.1} %", u * 100.0)),
        fmt_opt(o.loss, |l| format!("{:.3} %", l * 100.0)),
    )
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    fig: &Figure<'_>,
    panel: &Panel<'_>,
) -> DrawResult<DB> {
    let bins = &panel.report.per_bin;
    let bin_s = match (bins.first(), bins.get(1)) {
        (Some(a), Some(b)) => b.t_s - a.t_s,
        _ => 0.1,
    };
    let x0 = bins.first().map_or(0.0, |b| b.t_s).min(0.0);
    let x1 = bins.last().map_or(0.0, |b| b.t_s + bin_s).max(fig.end_s);
    let top = bins.iter().map(|b| b.total_mbit_s).fold(0.0, f64::max);
    let y1 = (fig.cap_mbit * 1.45).max(top * 1.05);

    let mut chart = ChartBuilder::on(area)
        .caption(title(panel), (FONT, 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, 0.0..y1)?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("Mbit/s")
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .light_line_style(RGBColor(238, 238, 238))
        .draw()?;

    for &t in &fig.events_s {
        chart.draw_series(DashedLineSeries::new(
            [(t, 0.0), (t, y1)],
            4,
            4,
            LIGHT.stroke_width(1),
        ))?;
    }

    // Points at bin centres.
    let half = bin_s / 2.0;
    let total = LineSeries::new(
        bins.iter().map(|b| (b.t_s + half, b.total_mbit_s)),
        GREY.stroke_width(1),
    );
    chart
        .draw_series(total)?
        .label("total")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], GREY.stroke_width(1)));

    let cap = fig.cap_mbit;
    chart
        .draw_series(DashedLineSeries::new(
            [(x0, cap), (x1, cap)],
            8,
            6,
            BLACK.stroke_width(2),
        ))?
        .label(format!("cap {cap} Mbit/s"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], BLACK.stroke_width(2)));

    let n = bins.first().map_or(0, |b| b.mbit_s.len());
    for f in 0..n {
        let colour = COLOURS.get(f % COLOURS.len()).copied().unwrap_or(BLACK);
        let value = |b: &BinReport| b.mbit_s.get(f).copied().unwrap_or(0.0);
        // From the flow's first non-zero bin to its last (not along the axis elsewhere).
        let first = bins.iter().position(|b| value(b) > 0.0).unwrap_or(0);
        let last = bins.iter().rposition(|b| value(b) > 0.0).unwrap_or(0);
        let series = LineSeries::new(
            bins.iter()
                .enumerate()
                .filter(|&(i, _)| (first..=last).contains(&i))
                .map(|(_, b)| (b.t_s + half, value(b))),
            colour.stroke_width(2),
        );
        let label = fig
            .flow_labels
            .get(f)
            .cloned()
            .unwrap_or_else(|| format!("flow {}", f + 1));
        chart
            .draw_series(series)?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(3))
            });
    }

    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(GREY)
        .draw()?;
    Ok(())
}

fn draw_all<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, fig: &Figure<'_>) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let areas = root.split_evenly((fig.panels.len().max(1), 1));
    for (area, panel) in areas.iter().zip(&fig.panels) {
        draw_panel(area, fig, panel)?;
    }
    root.present()
}

fn size(fig: &Figure<'_>) -> (u32, u32) {
    let n = u32::try_from(fig.panels.len().max(1)).unwrap_or(1);
    (WIDTH, PANEL_HEIGHT.saturating_mul(n))
}

/// Draws the figure as a PNG. [`register_font`] first.
pub fn png(path: &Path, fig: &Figure<'_>) -> Result<()> {
    draw_all(BitMapBackend::new(path, size(fig)).into_drawing_area(), fig)
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("drawing {}", path.display()))
}

/// Draws the figure as an SVG. [`register_font`] first.
pub fn svg(path: &Path, fig: &Figure<'_>) -> Result<()> {
    draw_all(SVGBackend::new(path, size(fig)).into_drawing_area(), fig)
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("drawing {}", path.display()))
}
