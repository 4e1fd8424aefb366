// Model `diffusive`: volatile diffusive memristor.
//   dw/dt = lambda sinh(eta v) - w / tau,   w clamped to [0, 1]
//   I(w, v) = (1 - w) alpha (1 - exp(-beta v)) + w gamma sinh(delta v)
// Keep in sync with src/model/diffusive.rs.
//
// Includable (no bindings, no entry points). Parameters:
// p = [lambda, eta, tau, alpha, beta, gamma, delta, v_read].

const MODEL_STATUS_OK: u32 = 0u;
const MODEL_STATUS_NON_POSITIVE: u32 = 1u;
const MODEL_STATUS_NON_FINITE: u32 = 2u;

fn model_rhs(w: f32, v: f32, p: array<f32, 8>) -> f32 {
    return p[0] * sinh(p[1] * v) - w / p[2];
}

fn model_euler(w: f32, v: f32, h: f32, p: array<f32, 8>) -> f32 {
    return w + h * model_rhs(w, v, p);
}

// A NaN stays NaN (twin: f64::clamp), so model_status flags it.
fn model_project(w: f32, p: array<f32, 8>) -> f32 {
    return clamp_keep_nan(w, 0.0, 1.0);
}

fn diffusive_read_current(w: f32, v: f32, p: array<f32, 8>) -> f32 {
    return (1.0 - w) * p[3] * (1.0 - exp(-p[4] * v)) + w * p[5] * sinh(p[6] * v);
}

fn model_observe(w: f32, p: array<f32, 8>) -> f32 {
    return diffusive_read_current(w, p[7], p);
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
