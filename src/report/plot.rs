//! PNG plots: a heatmap for 2-D sweeps, a histogram for Monte Carlo studies,
//! and line plots for benchmarks and fits.
//!
//! Text is drawn with DejaVu Sans embedded in the binary
//! (`assets/fonts/DejaVuSans.ttf`, Bitstream Vera licence, see
//! `assets/fonts/README.md`), so plots need no system font library and look
//! the same everywhere. Log axes are drawn in log10 coordinates with ticks
//! labelled in data units. Every file is written atomically (temporary name,
//! then rename).

use crate::report::npy::Outputs;
use crate::{Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::Path;
use std::sync::Once;

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Registers the embedded font as plotters' `sans-serif` (every style), once.
fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for style in [
            FontStyle::Normal,
            FontStyle::Bold,
            FontStyle::Italic,
            FontStyle::Oblique,
        ] {
            // The font is a valid TTF checked in with the code; a failure
            // here would show as missing text, caught by the plot tests.
            let _ = plotters::style::register_font("sans-serif", style, FONT);
        }
    });
}

const SIZE: (u32, u32) = (960, 720);
const NAN_GRAY: RGBColor = RGBColor(170, 170, 170);

fn draw_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("{}: drawing failed: {e}", path.display()))
}

/// Renders into `path` atomically with a drawing closure.
fn render(
    path: &Path,
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>,
) -> Result<()> {
    register_font();
    let mut out = Outputs::new();
    out.with_path(path, |tmp| {
        let root = BitMapBackend::new(tmp, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_err(path, e))?;
        draw(&root)?;
        root.present().map_err(|e| draw_err(path, e))
    })?;
    out.commit()
}

/// Maps a data value to plot coordinates (log10 on a log axis).
fn to_axis(v: f64, log: bool) -> f64 {
    if log { v.log10() } else { v }
}

/// Tick label of a plot coordinate, in data units.
fn tick(v: f64, log: bool) -> String {
    let x = if log { 10f64.powf(v) } else { v };
    if x == 0.0 {
        return "0".into();
    }
    let a = x.abs();
    if !(1e-3..1e4).contains(&a) {
        format!("{x:.2e}")
    } else {
        // Three significant digits, trailing zeros dropped.
        let digits = (2 - a.log10().floor() as i32).max(0) as usize;
        let s = format!("{x:.digits$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    }
}

/// Cell edges around sorted axis coordinates: midpoints inside, half a step
/// outside (one value: +-0.5 in plot coordinates, i.e. a factor sqrt(10) on
/// a log axis).
fn edges(c: &[f64]) -> Vec<f64> {
    let n = c.len();
    if n == 1 {
        return vec![c[0] - 0.5, c[0] + 0.5];
    }
    let mut e = Vec::with_capacity(n + 1);
    e.push(c[0] - (c[1] - c[0]) / 2.0);
    for k in 1..n {
        e.push((c[k - 1] + c[k]) / 2.0);
    }
    e.push(c[n - 1] + (c[n - 1] - c[n - 2]) / 2.0);
    e
}

/// A heatmap of a metric over two parameters.
#[derive(Debug, Clone)]
pub struct Heatmap<'a> {
    /// Values of the x parameter (columns), increasing.
    pub x: &'a [f64],
    /// Values of the y parameter (rows), increasing.
    pub y: &'a [f64],
    /// Row-major `z[iy * x.len() + ix]`; NaN cells are drawn gray.
    pub z: &'a [f64],
    /// Axis label of x (e.g. `alpha`).
    pub x_label: &'a str,
    /// Axis label of y (e.g. `beta`).
    pub y_label: &'a str,
    /// Label of the colour bar (e.g. `test accuracy`).
    pub z_label: &'a str,
    /// Log scale on x (for a logspace parameter).
    pub log_x: bool,
    /// Log scale on y.
    pub log_y: bool,
    /// A curve drawn over the map, with its legend (e.g. the stability
    /// boundary `beta = 2 sqrt(alpha)`); points in data units, outside parts
    /// clipped.
    pub overlay: Option<(&'a str, Vec<(f64, f64)>)>,
    /// A point marked on the map, with its legend (e.g. the point selected on
    /// validation accuracy), in data units.
    pub marker: Option<((f64, f64), &'a str)>,
    /// Plot title.
    pub title: &'a str,
}

/// `n` points of `y = f(x)` for x from `x0` to `x1`, evenly spaced in x, or in
/// log x when `log` (a smooth overlay on a log axis).
pub fn sample_curve(
    f: impl Fn(f64) -> f64,
    x0: f64,
    x1: f64,
    n: usize,
    log: bool,
) -> Vec<(f64, f64)> {
    let n = n.max(2);
    (0..n)
        .map(|k| {
            let t = k as f64 / (n - 1) as f64;
            let x = if log {
                10f64.powf(x0.log10() + t * (x1.log10() - x0.log10()))
            } else {
                x0 + t * (x1 - x0)
            };
            (x, f(x))
        })
        .collect()
}

/// Draws a [`Heatmap`] to a PNG (viridis, with a colour bar).
pub fn heatmap_png(path: &Path, h: &Heatmap<'_>) -> Result<()> {
    let (nx, ny) = (h.x.len(), h.y.len());
    if nx == 0 || ny == 0 || h.z.len() != nx * ny {
        return Err(Error::Internal(format!(
            "heatmap: {} values for a {nx} x {ny} grid",
            h.z.len()
        )));
    }
    for (axis, vals, log) in [("x", h.x, h.log_x), ("y", h.y, h.log_y)] {
        if vals.windows(2).any(|w| w[1] <= w[0]) || (log && vals.iter().any(|v| *v <= 0.0)) {
            return Err(Error::Internal(format!(
                "heatmap: {axis} values must increase (and be > 0 on a log axis)"
            )));
        }
    }
    let cx: Vec<f64> = h.x.iter().map(|&v| to_axis(v, h.log_x)).collect();
    let cy: Vec<f64> = h.y.iter().map(|&v| to_axis(v, h.log_y)).collect();
    let (ex, ey) = (edges(&cx), edges(&cy));
    let finite: Vec<f64> = h.z.iter().copied().filter(|v| v.is_finite()).collect();
    let (mut zmin, mut zmax) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if finite.is_empty() {
        (zmin, zmax) = (0.0, 1.0);
    } else if zmax <= zmin {
        (zmin, zmax) = (zmin - 0.5, zmax + 0.5);
    }
    let color = |v: f64| -> RGBColor {
        if v.is_finite() {
            ViridisRGB.get_color_normalized(v as f32, zmin as f32, zmax as f32)
        } else {
            NAN_GRAY
        }
    };
    render(path, |root| {
        let e = |err| draw_err(path, err);
        let (main, bar) = root.split_horizontally(SIZE.0 - 150);
        let mut chart = ChartBuilder::on(&main)
            .caption(h.title, ("sans-serif", 26))
            .margin(16)
            .x_label_area_size(56)
            .y_label_area_size(76)
            .build_cartesian_2d(ex[0]..ex[nx], ey[0]..ey[ny])
            .map_err(e)?;
        let (lx, ly) = (h.log_x, h.log_y);
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(h.x_label)
            .y_desc(h.y_label)
            .x_label_formatter(&|v| tick(*v, lx))
            .y_label_formatter(&|v| tick(*v, ly))
            .axis_desc_style(("sans-serif", 20))
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(e)?;
        chart
            .draw_series((0..ny).flat_map(|iy| {
                let (ex, ey) = (&ex, &ey);
                (0..nx).map(move |ix| {
                    Rectangle::new(
                        [(ex[ix], ey[iy]), (ex[ix + 1], ey[iy + 1])],
                        color(h.z[iy * nx + ix]).filled(),
                    )
                })
            }))
            .map_err(e)?;
        let legend = h.overlay.is_some() || h.marker.is_some();
        if let Some(((x, y), label)) = h.marker {
            let p = (to_axis(x, lx), to_axis(y, ly));
            chart
                .draw_series([
                    Circle::new(p, 11, WHITE.stroke_width(4)),
                    Circle::new(p, 11, RED.stroke_width(2)),
                ])
                .map_err(e)?
                .label(label)
                .legend(|(x, y)| Circle::new((x + 12, y), 6, RED.stroke_width(2)));
        }
        if let Some((label, pts)) = &h.overlay {
            let (x0, x1, y0, y1) = (ex[0], ex[nx], ey[0], ey[ny]);
            let line: Vec<(f64, f64)> = pts
                .iter()
                .filter(|(x, y)| (!lx || *x > 0.0) && (!ly || *y > 0.0))
                .map(|&(x, y)| (to_axis(x, lx), to_axis(y, ly)))
                .filter(|(x, y)| x.is_finite() && y.is_finite() && *x >= x0 && *x <= x1)
                // Keep the line inside the plot (plotters does not clip it).
                .map(|(x, y)| (x, y.clamp(y0, y1)))
                .collect();
            chart
                .draw_series(LineSeries::new(line, RED.stroke_width(3)))
                .map_err(e)?
                .label(*label)
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], RED.stroke_width(3)));
        }
        if legend {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 16))
                .position(SeriesLabelPosition::UpperLeft)
                .draw()
                .map_err(e)?;
        }
        // Colour bar.
        let mut cb = ChartBuilder::on(&bar)
            .margin_top(58)
            .margin_bottom(72)
            .margin_right(16)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..1.0, zmin..zmax)
            .map_err(e)?;
        cb.configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_desc(h.z_label)
            .axis_desc_style(("sans-serif", 18))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(e)?;
        let steps = 128;
        cb.draw_series((0..steps).map(|k| {
            let a = zmin + (zmax - zmin) * k as f64 / steps as f64;
            let b = zmin + (zmax - zmin) * (k + 1) as f64 / steps as f64;
            Rectangle::new([(0.0, a), (1.0, b)], color((a + b) / 2.0).filled())
        }))
        .map_err(e)?;
        if finite.len() < h.z.len() {
            bar.draw(&Text::new(
                "gray: no value",
                (8, (SIZE.1 - 40) as i32),
                ("sans-serif", 14).into_font(),
            ))
            .map_err(e)?;
        }
        Ok(())
    })
}

/// Draws a histogram of `values` (NaN and infinities are left out and
/// counted in the title), with a dashed line at the mean and a solid red line
/// at `nominal` when given.
pub fn histogram_png(
    path: &Path,
    values: &[f64],
    nominal: Option<f64>,
    title: &str,
    x_label: &str,
) -> Result<()> {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    let dropped = values.len() - v.len();
    let (mut lo, mut hi) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    if let Some(n) = nominal.filter(|n| n.is_finite()) {
        (lo, hi) = (lo.min(n), hi.max(n));
    }
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi <= lo {
        (lo, hi) = (lo - 0.5 * lo.abs().max(1e-3), hi + 0.5 * hi.abs().max(1e-3));
    }
    let pad = (hi - lo) * 0.04;
    let (lo, hi) = (lo - pad, hi + pad);
    let bins = ((v.len() as f64).sqrt().ceil() as usize).clamp(5, 60);
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0usize; bins];
    for &x in &v {
        counts[(((x - lo) / width) as usize).min(bins - 1)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(0).max(1) as f64 * 1.12;
    let mean = if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    };
    let caption = if dropped > 0 {
        format!("{title} ({} values, {dropped} not finite)", v.len())
    } else {
        format!("{title} ({} values)", v.len())
    };
    render(path, |root| {
        let e = |err| draw_err(path, err);
        let mut chart = ChartBuilder::on(root)
            .caption(&caption, ("sans-serif", 26))
            .margin(16)
            .x_label_area_size(56)
            .y_label_area_size(70)
            .build_cartesian_2d(lo..hi, 0.0..top)
            .map_err(e)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE.mix(0.0))
            .x_desc(x_label)
            .y_desc("count")
            .x_label_formatter(&|x| tick(*x, false))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .axis_desc_style(("sans-serif", 20))
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(e)?;
        let fill = RGBColor(70, 110, 180);
        chart
            .draw_series(counts.iter().enumerate().map(|(k, &c)| {
                let x0 = lo + width * k as f64;
                Rectangle::new([(x0, 0.0), (x0 + width, c as f64)], fill.mix(0.8).filled())
            }))
            .map_err(e)?;
        chart
            .draw_series(counts.iter().enumerate().map(|(k, &c)| {
                let x0 = lo + width * k as f64;
                Rectangle::new([(x0, 0.0), (x0 + width, c as f64)], WHITE.stroke_width(1))
            }))
            .map_err(e)?;
        if mean.is_finite() {
            let dashes: Vec<PathElement<(f64, f64)>> = (0..24)
                .filter(|k| k % 2 == 0)
                .map(|k| {
                    let (a, b) = (top * k as f64 / 24.0, top * (k + 1) as f64 / 24.0);
                    PathElement::new(vec![(mean, a), (mean, b)], BLACK.stroke_width(2))
                })
                .collect();
            chart
                .draw_series(dashes)
                .map_err(e)?
                .label(format!("mean {}", tick(mean, false)))
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], BLACK.stroke_width(2))
                });
        }
        if let Some(n) = nominal.filter(|n| n.is_finite()) {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(n, 0.0), (n, top)],
                    RED.stroke_width(3),
                )))
                .map_err(e)?
                .label(format!("nominal {}", tick(n, false)))
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], RED.stroke_width(3)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 16))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(e)?;
        Ok(())
    })
}

/// Draws named series of (x, y) points as lines with markers and a legend;
/// log axes drop non-positive values.
pub fn line_plot_png(
    path: &Path,
    series: &[(String, Vec<(f64, f64)>)],
    log_x: bool,
    log_y: bool,
    title: &str,
    x_label: &str,
    y_label: &str,
) -> Result<()> {
    let styled: Vec<(&str, &[(f64, f64)], bool)> = series
        .iter()
        .map(|(n, p)| (n.as_str(), p.as_slice(), true))
        .collect();
    let legend = SeriesLabelPosition::UpperLeft;
    xy_plot_png(path, &styled, log_x, log_y, legend, title, x_label, y_label)
}

/// Draws all `points` as markers and the Pareto `front` among them as a line
/// with markers (cost on x, score on y), with a legend.
pub fn pareto_png(
    path: &Path,
    points: &[(f64, f64)],
    front: &[(f64, f64)],
    log_x: bool,
    title: &str,
    x_label: &str,
    y_label: &str,
) -> Result<()> {
    xy_plot_png(
        path,
        &[
            ("every point", points, false),
            ("Pareto front", front, true),
        ],
        log_x,
        false,
        SeriesLabelPosition::LowerRight,
        title,
        x_label,
        y_label,
    )
}

/// Named series of (x, y) points, each drawn with markers and, when its flag
/// is set, a line through them; log axes drop non-positive values.
fn xy_plot_png(
    path: &Path,
    series: &[(&str, &[(f64, f64)], bool)],
    log_x: bool,
    log_y: bool,
    legend: SeriesLabelPosition,
    title: &str,
    x_label: &str,
    y_label: &str,
) -> Result<()> {
    let data: Vec<(&str, Vec<(f64, f64)>, bool)> = series
        .iter()
        .map(|&(name, pts, line)| {
            let p = pts
                .iter()
                .filter(|(x, y)| (!log_x || *x > 0.0) && (!log_y || *y > 0.0))
                .map(|&(x, y)| (to_axis(x, log_x), to_axis(y, log_y)))
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect();
            (name, p, line)
        })
        .collect();
    let all = data.iter().flat_map(|d| d.1.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for &(x, y) in all {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if !x0.is_finite() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    let grow = |a: f64, b: f64| {
        let pad = if b > a { (b - a) * 0.05 } else { 0.5 };
        (a - pad, b + pad)
    };
    let ((x0, x1), (y0, y1)) = (grow(x0, x1), grow(y0, y1));
    render(path, |root| {
        let e = |err| draw_err(path, err);
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 26))
            .margin(16)
            .x_label_area_size(56)
            .y_label_area_size(80)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .x_label_formatter(&|v| tick(*v, log_x))
            .y_label_formatter(&|v| tick(*v, log_y))
            .axis_desc_style(("sans-serif", 20))
            .label_style(("sans-serif", 15))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(e)?;
        for (k, (name, pts, line)) in data.iter().enumerate() {
            let c = Palette99::pick(k).to_rgba();
            let markers = chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled())))
                .map_err(e)?;
            if *line {
                chart
                    .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                    .map_err(e)?
                    .label(*name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(2))
                    });
            } else {
                markers
                    .label(*name)
                    .legend(move |(x, y)| Circle::new((x + 12, y), 4, c.filled()));
            }
        }
        if !data.is_empty() {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 16))
                .position(legend)
                .draw()
                .map_err(e)?;
        }
        Ok(())
    })
}

/// A row-major matrix of values to draw as an image.
#[derive(Debug, Clone)]
pub struct Image {
    /// Rows (sequences).
    pub rows: usize,
    /// Columns (steps).
    pub cols: usize,
    /// `rows * cols` values; NaN drawn gray.
    pub data: Vec<f32>,
}

/// One example of a feature-map figure: an input beside its feature map.
#[derive(Debug, Clone)]
pub struct FeatureExample {
    /// Caption (e.g. the class name).
    pub label: String,
    /// The encoded input (sequences x steps).
    pub input: Image,
    /// The kinetics features (sequences x steps).
    pub features: Image,
}

fn viridis(t: f64) -> RGBColor {
    use plotters::style::colors::colormaps::{ColorMap, ViridisRGB};
    ViridisRGB.get_color(t.clamp(0.0, 1.0))
}

/// Draws `img` into `area` (each image scaled to its own min..max); a one-row
/// image (a single sequence) is drawn as a curve instead.
fn draw_image(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    img: &Image,
    caption: &str,
    path: &Path,
) -> Result<()> {
    let e = |err| draw_err(path, err);
    let finite = img.data.iter().copied().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let (lo, hi) = if lo.is_finite() {
        (lo as f64, (hi as f64).max(lo as f64 + 1e-12))
    } else {
        (0.0, 1.0)
    };
    if img.rows == 1 {
        let mut chart = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 14))
            .margin(4)
            .x_label_area_size(18)
            .y_label_area_size(40)
            .build_cartesian_2d(0f64..img.cols.max(2) as f64 - 1.0, lo..hi)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_labels(4)
            .y_labels(4)
            .label_style(("sans-serif", 10))
            .draw()
            .map_err(e)?;
        chart
            .draw_series(LineSeries::new(
                img.data
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| v.is_finite())
                    .map(|(i, &v)| (i as f64, v as f64)),
                &BLUE,
            ))
            .map_err(e)?;
        return Ok(());
    }
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 14))
        .margin(4)
        .build_cartesian_2d(0f64..img.cols as f64, 0f64..img.rows as f64)
        .map_err(e)?;
    chart
        .draw_series((0..img.rows).flat_map(|r| {
            (0..img.cols).map(move |c| {
                let v = img.data[r * img.cols + c] as f64;
                let color = if v.is_finite() {
                    viridis((v - lo) / (hi - lo))
                } else {
                    NAN_GRAY
                };
                // Row 0 at the top, as an image.
                let y = (img.rows - 1 - r) as f64;
                Rectangle::new([(c as f64, y), (c as f64 + 1.0, y + 1.0)], color.filled())
            })
        }))
        .map_err(e)?;
    Ok(())
}

/// The paper's Fig. 3b: for a few samples, the input beside its feature map,
/// one pair per cell of a grid with `per_row` pairs per row.
pub fn feature_maps_png(
    path: &Path,
    examples: &[FeatureExample],
    per_row: usize,
    title: &str,
) -> Result<()> {
    let per_row = per_row.max(1);
    let n_rows = examples.len().div_ceil(per_row).max(1);
    register_font();
    let size = ((per_row as u32) * 2 * 170, 40 + n_rows as u32 * 180);
    let mut out = Outputs::new();
    out.with_path(path, |tmp| {
        let root = BitMapBackend::new(tmp, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_err(path, e))?;
        let (head, body) = root.split_vertically(40);
        head.titled(title, ("sans-serif", 20))
            .map_err(|e| draw_err(path, e))?;
        let cells = body.split_evenly((n_rows, per_row * 2));
        for (i, ex) in examples.iter().enumerate() {
            let (r, c) = (i / per_row, i % per_row);
            draw_image(
                &cells[r * per_row * 2 + 2 * c],
                &ex.input,
                &format!("{}: input", ex.label),
                path,
            )?;
            draw_image(
                &cells[r * per_row * 2 + 2 * c + 1],
                &ex.features,
                &format!("{}: features", ex.label),
                path,
            )?;
        }
        root.present().map_err(|e| draw_err(path, e))
    })?;
    out.commit()
}
