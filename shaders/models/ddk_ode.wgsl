// Model `ddk-ode`: dw/dt = alpha / w - beta * v.
// Keep in sync with src/model/ddk_ode.rs.
//
// Includable (no bindings, no entry points). Defines the model interface used by
// shaders/models/integrate.wgsl: model_rhs, model_euler, model_project,
// model_observe, model_status. Parameters: p[0] = alpha, p[1] = beta.

// Status codes; keep in sync with src/batch.rs `Status`.
const MODEL_STATUS_OK: u32 = 0u;
const MODEL_STATUS_NON_POSITIVE: u32 = 1u;
const MODEL_STATUS_NON_FINITE: u32 = 2u;

fn model_rhs(w: f32, v: f32, p: array<f32, 8>) -> f32 {
    return p[0] / w - p[1] * v;
}

// w + h (alpha / w) - h (beta v): with h = 1 the operations of ddk_step.
fn model_euler(w: f32, v: f32, h: f32, p: array<f32, 8>) -> f32 {
    return w + h * (p[0] / w) - h * (p[1] * v);
}

fn model_project(w: f32, p: array<f32, 8>) -> f32 {
    return w;
}

fn model_observe(w: f32, p: array<f32, 8>) -> f32 {
    return w;
}

// WGSL has no isnan/isinf: x != x catches NaN; |x| > max finite catches inf.
fn model_status(w: f32) -> u32 {
    if (w != w || abs(w) > 3.4028235e38) {
        return MODEL_STATUS_NON_FINITE;
    }
    if (w <= 0.0) {
        return MODEL_STATUS_NON_POSITIVE;
    }
    return MODEL_STATUS_OK;
}
