// Model `linear-drift`: HP linear ion drift with a Joglekar or Biolek window.
//   dw/dt = mu_v r_on / d^2 * i * f(w),  i = v / R(w),  R(w) = r_on w + r_off (1 - w)
//   Joglekar (window 0): f = 1 - (2w - 1)^(2p);  Biolek (window 1): f = 1 - (w - stp(-i))^(2p)
// Keep in sync with src/model/linear_drift.rs.
//
// Includable (no bindings, no entry points). Parameters:
// p = [r_on, r_off, d, mu_v, p, window, -, -].

const MODEL_STATUS_OK: u32 = 0u;
const MODEL_STATUS_NON_POSITIVE: u32 = 1u;
const MODEL_STATUS_NON_FINITE: u32 = 2u;

fn linear_drift_resistance(w: f32, p: array<f32, 8>) -> f32 {
    return p[0] * w + p[1] * (1.0 - w);
}

fn model_rhs(w: f32, v: f32, p: array<f32, 8>) -> f32 {
    let i = v / linear_drift_resistance(w, p);
    var f: f32;
    if (p[5] == 0.0) {
        let u = 2.0 * w - 1.0;
        f = 1.0 - pow(u * u, p[4]);
    } else {
        let stp = select(0.0, 1.0, i <= 0.0);
        let u = w - stp;
        f = 1.0 - pow(u * u, p[4]);
    }
    return p[3] * p[0] / (p[2] * p[2]) * i * f;
}

fn model_euler(w: f32, v: f32, h: f32, p: array<f32, 8>) -> f32 {
    return w + h * model_rhs(w, v, p);
}

// A NaN stays NaN (twin: f64::clamp), so model_status flags it.
fn model_project(w: f32, p: array<f32, 8>) -> f32 {
    return clamp_keep_nan(w, 0.0, 1.0);
}

fn model_observe(w: f32, p: array<f32, 8>) -> f32 {
    return 1.0 / linear_drift_resistance(w, p);
}

fn model_status(w: f32) -> u32 {
    if (!is_finite_f32(w)) {
        return MODEL_STATUS_NON_FINITE;
    }
    return MODEL_STATUS_OK;
}

// No closed form: Integrator::Exact is refused for this model on the host, so
// this is never called; it exists because integrate.wgsl's pulse_fixed names it.
fn model_exact(w: f32, v: f32, t: f32, p: array<f32, 8>) -> f32 {
    return bitcast<f32>(0x7fc00000u);
}
