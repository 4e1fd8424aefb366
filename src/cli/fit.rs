//! `memkin fit`: least-squares fit of a device model's parameters to a
//! measured pulse-response trace (CSV), with a plot of measured against fitted.
//!
//! The CSV has a header row naming its columns (case-insensitive, in any order,
//! other columns ignored): `time`, `voltage`, and the measured quantity under
//! one of `conductance`, `current`, `state`, `observed` (exactly one of them).
//! That quantity is what the model observes: `ddk-ode` the state `w`,
//! `diffusive` the read current at `v_read` (µA), `linear-drift` the
//! conductance `1/R` (S). See docs/models.md.

use super::simulate::{IntegratorArg, ModelArg, OdeArgs};
use super::{Common, print_json};
use memkin::Error;
use memkin::model::Model;
use memkin::model::fit::{FitOptions, FitResult, Trace, default_free, fit};
use std::path::{Path, PathBuf};

/// Arguments of `memkin fit`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    /// The trace: CSV with header `time,voltage,<conductance|current|state|observed>`.
    #[arg(long)]
    trace: PathBuf,
    /// The device model to fit (a continuous-time one).
    #[arg(long, value_enum)]
    model: ModelArg,
    /// Integrator settings (default rk4 with 16 sub-steps per sample interval)
    /// and starting / fixed values (--set NAME=VALUE).
    #[command(flatten)]
    ode: OdeArgs,
    /// The parameters to fit, comma-separated (default: ddk-ode alpha,beta;
    /// diffusive lambda,eta,tau; linear-drift r_on,r_off,mu_v); `w0` may be
    /// listed too. The others stay at their --set or default values.
    #[arg(long, value_delimiter = ',')]
    free: Option<Vec<String>>,
    /// Initial state (default: the model's).
    #[arg(long, allow_hyphen_values = true)]
    w0: Option<f64>,
    /// Most Levenberg-Marquardt iterations.
    #[arg(long, default_value_t = 200)]
    max_iter: u32,
    /// Directory for fit.json and fit.png (created).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The names `fit` accepts for the measured column.
const QUANTITIES: [&str; 4] = ["conductance", "current", "state", "observed"];

/// Reads a trace CSV (module docs): the trace and the name of its measured column.
pub fn read_trace(path: &Path) -> Result<(Trace, String), Error> {
    let bad = |m: String| Error::bad_file(path, m);
    let text = std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound {
                path: path.to_path_buf(),
                hint: String::new(),
            }
        } else {
            Error::Io {
                path: path.to_path_buf(),
                source: e,
            }
        }
    })?;
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let header: Vec<String> = rdr
        .headers()
        .map_err(|e| bad(format!("header: {e}")))?
        .iter()
        .map(|h| h.to_lowercase())
        .collect();
    let col = |name: &str| header.iter().position(|h| h == name);
    let expected = format!(
        "a header with time, voltage and one of {}",
        QUANTITIES.join(", ")
    );
    let (Some(ct), Some(cv)) = (col("time"), col("voltage")) else {
        return Err(bad(format!("columns {header:?}: expected {expected}")));
    };
    let found: Vec<&str> = QUANTITIES
        .iter()
        .copied()
        .filter(|q| col(q).is_some())
        .collect();
    let [quantity] = found[..] else {
        return Err(bad(format!("columns {header:?}: expected {expected}")));
    };
    let cy = col(quantity).expect("found");
    let mut tr = Trace {
        time: vec![],
        voltage: vec![],
        observed: vec![],
    };
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| bad(format!("row {}: {e}", i + 1)))?;
        let get = |c: usize, name: &str| -> Result<f64, Error> {
            let s = rec.get(c).unwrap_or("");
            s.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| {
                    bad(format!(
                        "row {} {name} = {s:?}: expected a finite number",
                        i + 1
                    ))
                })
        };
        tr.time.push(get(ct, "time")?);
        tr.voltage.push(get(cv, "voltage")?);
        tr.observed.push(get(cy, quantity)?);
    }
    tr.check("trace").map_err(|e| bad(e.to_string()))?;
    Ok((tr, quantity.to_string()))
}

/// Resolved `fit` arguments.
fn resolve(a: &Args) -> Result<(Model, FitOptions), Error> {
    let Some(model) = a.model.ode() else {
        return Err(Error::invalid(
            "--model",
            "ddk",
            "a continuous-time model: ddk-ode, diffusive or linear-drift",
        ));
    };
    let start = a.ode.params(model)?;
    let w0 = a.w0.unwrap_or(model.w0_spec().default);
    model.w0_spec().check("--w0", w0)?;
    let integrator = a.ode.integrator(model, IntegratorArg::Rk4, 16)?;
    let names: Vec<String> = match &a.free {
        Some(v) => v.iter().map(|s| s.trim().to_string()).collect(),
        None => default_free(model).iter().map(|s| s.to_string()).collect(),
    };
    let mut free = vec![];
    let mut fit_w0 = false;
    let valid: Vec<&str> = model.params().iter().map(|p| p.name).collect();
    for n in &names {
        if n == "w0" {
            fit_w0 = true;
        } else if let Some(j) = valid.iter().position(|v| v == n) {
            if !free.contains(&j) {
                free.push(j);
            }
        } else {
            return Err(Error::invalid(
                "--free",
                n,
                format!("parameters of {}: {}, w0", model.name(), valid.join(", ")),
            ));
        }
    }
    if a.max_iter == 0 {
        return Err(Error::invalid("--max-iter", 0, "at least 1"));
    }
    Ok((
        model,
        FitOptions {
            model,
            integrator,
            start,
            w0,
            free,
            fit_w0,
            max_iter: a.max_iter,
        },
    ))
}

pub fn run(a: Args) -> anyhow::Result<()> {
    a.common.refuse_seed(
        "not used: a fit makes no random choice (Levenberg-Marquardt from the model's defaults)",
    )?;
    // The output paths checked before the work; the trace is an input.
    memkin::report::output::check_input_file("--trace", &a.trace)?;
    let mut out = memkin::report::output::Outputs::new();
    out.input(&a.trace);
    if let Some(dir) = &a.out {
        out.plan_in_dir("--out", dir, &["fit.png", "fit.json"])?;
    }
    let (model, o) = resolve(&a)?;
    let (trace, quantity) = read_trace(&a.trace)?;
    let r = fit(&trace, &o)?;
    let names: Vec<&str> = model.params().iter().map(|p| p.name).collect();
    let mut params = serde_json::Map::new();
    for (n, v) in names.iter().zip(&r.params) {
        params.insert(n.to_string(), serde_json::json!(v));
    }
    let mut free = serde_json::Map::new();
    for (k, &j) in o.free.iter().enumerate() {
        free.insert(
            names[j].to_string(),
            serde_json::json!({ "start": o.start[j], "value": r.params[j], "std_err": r.std_err[k] }),
        );
    }
    if o.fit_w0 {
        free.insert(
            "w0".into(),
            serde_json::json!({ "start": o.w0, "value": r.w0, "std_err": r.std_err[o.free.len()] }),
        );
    }
    let mut summary = serde_json::json!({
        "model": model.name(),
        "integrator": o.integrator.name(),
        "trace": a.trace,
        "quantity": quantity,
        "samples": trace.time.len(),
        "params": params,
        "w0": r.w0,
        "free": free,
        "ssr": r.ssr,
        "ssr_start": r.ssr_start,
        "rmse": r.rmse,
        "iterations": r.iterations,
        "evaluations": r.evaluations,
        "converged": r.converged,
    });
    if let Some(dir) = &a.out {
        let png = dir.join("fit.png");
        out.with_path(&png, |tmp| plot_fit(tmp, model, &quantity, &trace, &r))?;
        summary["plot"] = serde_json::json!(png);
        let mut full = summary.clone();
        full["fitted"] = serde_json::json!(r.fitted);
        let json = dir.join("fit.json");
        out.text(&json, &(serde_json::to_string_pretty(&full)? + "\n"))?;
        out.commit()?;
        summary["json"] = serde_json::json!(json);
    }
    if a.common.json {
        print_json(&summary);
    } else {
        let list: Vec<String> = o
            .free
            .iter()
            .enumerate()
            .map(|(k, &j)| format!("{} = {:.6} ± {:.2e}", names[j], r.params[j], r.std_err[k]))
            .chain(o.fit_w0.then(|| format!("w0 = {:.6}", r.w0)))
            .collect();
        eprintln!(
            "{} fitted to {} samples in {} iterations: {}; SSR {:.4e} (start {:.4e}), RMSE {:.4e}{}",
            model.name(),
            trace.time.len(),
            r.iterations,
            list.join(", "),
            r.ssr,
            r.ssr_start,
            r.rmse,
            if r.converged {
                ""
            } else {
                " (max-iter reached)"
            }
        );
    }
    Ok(())
}

/// The font every memkin figure uses (shared with src/report/plot.rs).
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Measured (points) against fitted (line) over time. A minimal plotters
/// figure; it can move to `report::plot` once that lands.
fn plot_fit(
    path: &Path,
    model: Model,
    quantity: &str,
    trace: &Trace,
    r: &FitResult,
) -> Result<(), Error> {
    use plotters::prelude::*;
    let err = |e: String| Error::Internal(format!("plot {}: {e}", path.display()));
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    let (t0, t1) = (trace.time[0], *trace.time.last().expect("checked"));
    let ys = trace.observed.iter().chain(&r.fitted);
    let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
        (a.min(v), b.max(v))
    });
    let pad = 0.05 * (hi - lo).max(1e-12);
    let root = BitMapBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{} fit: SSR {:.3e}, {} samples",
                model.name(),
                r.ssr,
                trace.time.len()
            ),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(t0..t1, (lo - pad)..(hi + pad))
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("time")
        .y_desc(quantity)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    let blue = RGBColor(31, 119, 180);
    let orange = RGBColor(255, 127, 14);
    chart
        .draw_series(
            trace
                .time
                .iter()
                .zip(&trace.observed)
                .map(|(&t, &y)| Circle::new((t, y), 2, blue.filled())),
        )
        .map_err(|e| err(e.to_string()))?
        .label("measured")
        .legend(move |(x, y)| Circle::new((x + 10, y), 3, blue.filled()));
    chart
        .draw_series(LineSeries::new(
            trace.time.iter().copied().zip(r.fitted.iter().copied()),
            orange.stroke_width(2),
        ))
        .map_err(|e| err(e.to_string()))?
        .label("fitted")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], orange.stroke_width(2)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}
