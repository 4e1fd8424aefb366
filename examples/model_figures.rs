//! Writes the README material of the continuous-time models:
//!
//! - `docs/figures/models_w_t.png`: the state w(t) of each device model
//!   (ddk-ode, diffusive, linear-drift) driven by one pulse train, sampled 40
//!   times per pulse and per rest (RK4, 2 sub-steps per sample);
//! - `examples/traces/synthetic_ddk.csv` and `examples/traces/synthetic_diffusive.csv`:
//!   noisy synthetic pulse-response traces (1% Gaussian noise, seed 42) for
//!   `memkin fit` (truth: ddk-ode alpha 0.45, beta 1.3; diffusive lambda 0.05,
//!   eta 2.5, tau 6 ms, the rest at their defaults).
//!
//! Run from the repository root: `cargo run --release --example model_figures`.

use memkin::model::Model;
use memkin::model::fit::{SyntheticTrace, Trace, synthetic_trace};
use memkin::model::integrate::{Integrator, simulate_segments};
use plotters::prelude::*;
use std::error::Error;
use std::fmt::Write as _;

/// The font of every memkin figure.
const FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

/// One pulse train for all three models (inputs in [0, 1]).
const X: [f64; 8] = [0.2, 1.0, 0.5, 0.0, 0.9, 0.3, 0.7, 0.4];

/// `(t, V, w)` densely sampled through the pulse train of `model`.
fn curve(model: Model, v_scale: f64, tau: f64, rest: f64) -> Vec<(f64, f64, f64)> {
    let per = 40;
    let (mut v, mut dur) = (vec![], vec![]);
    for &x in &X {
        for _ in 0..per {
            v.push(v_scale * x);
            dur.push(tau / per as f64);
        }
        for _ in 0..per {
            v.push(0.0);
            dur.push(rest / per as f64);
        }
    }
    let integ = Integrator::Rk4 { substeps: 2 };
    let w0 = model.w0_spec().default;
    let (w, _) = simulate_segments(model, &integ, &v, &dur, &model.defaults(), w0);
    let mut t = 0.0;
    let mut out = vec![(0.0, v[0], w[0])];
    for i in 0..dur.len() {
        t += dur[i];
        out.push((t, v.get(i + 1).copied().unwrap_or(0.0), w[i + 1]));
    }
    out
}

fn write_trace(path: &str, header: &str, tr: &Trace) -> std::io::Result<()> {
    let mut s = format!("time,voltage,{header}\n");
    for i in 0..tr.time.len() {
        let _ = writeln!(
            s,
            "{:.6},{:.6},{:.9}",
            tr.time[i], tr.voltage[i], tr.observed[i]
        );
    }
    std::fs::write(path, s)
}

fn main() -> Result<(), Box<dyn Error>> {
    std::fs::create_dir_all("docs/figures")?;
    std::fs::create_dir_all("examples/traces")?;
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);

    // (model, v_scale, tau, rest, axis labels): each model at its own scales.
    let panels = [
        (Model::DdkOde, 1.0, 1.0, 1.0, "t (model units)", "w"),
        (Model::Diffusive, 1.0, 2.0, 4.0, "t (ms)", "w (filament)"),
        (
            Model::LinearDrift,
            1.5,
            0.2,
            0.2,
            "t (s)",
            "w (doped fraction)",
        ),
    ];
    let path = "docs/figures/models_w_t.png";
    let root = BitMapBackend::new(path, (1000, 1050)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((3, 1));
    let blue = RGBColor(31, 119, 180);
    let grey = RGBColor(150, 150, 150);
    for ((model, v_scale, tau, rest, xl, yl), area) in panels.into_iter().zip(&areas) {
        let c = curve(model, v_scale, tau, rest);
        let t1 = c.last().map_or(1.0, |p| p.0);
        let (lo, hi) = c
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                (a.min(p.2), b.max(p.2))
            });
        let pad = 0.08 * (hi - lo).max(1e-9);
        let (lo, hi) = (lo - pad, hi + pad);
        let vmax = c.iter().fold(1e-12f64, |m, p| m.max(p.1.abs()));
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!(
                    "{}: pulses V = {v_scale} x, width {tau}, rest {rest} (defaults, RK4)",
                    model.name()
                ),
                ("sans-serif", 20),
            )
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..t1, lo..hi)?;
        chart
            .configure_mesh()
            .x_desc(xl)
            .y_desc(yl)
            .label_style(("sans-serif", 14))
            .draw()?;
        // The pulse train, scaled into the lower part of the panel.
        let scale = |v: f64| lo + 0.3 * (hi - lo) * v / vmax;
        chart
            .draw_series(LineSeries::new(c.iter().map(|p| (p.0, scale(p.1))), grey))?
            .label(format!("V (scaled, max {vmax} V)"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey));
        chart
            .draw_series(LineSeries::new(
                c.iter().map(|p| (p.0, p.2)),
                blue.stroke_width(2),
            ))?
            .label("w(t)")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], blue.stroke_width(2))
            });
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()?;
    }
    root.present()?;
    eprintln!("wrote {path}");

    let integ = Integrator::Rk4 { substeps: 16 };
    let ddk = SyntheticTrace {
        amplitudes: (0..40)
            .map(|k| 0.3 + 0.7 * ((k * 7 % 13) as f64 / 12.0))
            .collect(),
        tau: 1.0,
        rest: 1.0,
        per_pulse: 5,
        per_rest: 5,
        noise: 0.01,
        seed: 42,
    };
    let tr = synthetic_trace(Model::DdkOde, &integ, &[0.45, 1.3], 1.0, &ddk);
    write_trace("examples/traces/synthetic_ddk.csv", "state", &tr)?;
    let mut p = Model::Diffusive.defaults();
    (p[0], p[1], p[2]) = (0.05, 2.5, 6.0);
    let diff = SyntheticTrace {
        amplitudes: (0..40)
            .map(|k| 0.2 + 0.8 * ((k * 5 % 11) as f64 / 10.0))
            .collect(),
        ..ddk
    };
    let tr = synthetic_trace(Model::Diffusive, &integ, &p, 0.0, &diff);
    write_trace("examples/traces/synthetic_diffusive.csv", "current", &tr)?;
    eprintln!("wrote examples/traces/synthetic_ddk.csv, examples/traces/synthetic_diffusive.csv");
    Ok(())
}
