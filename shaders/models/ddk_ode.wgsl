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

// Non-finite by the bit-pattern test of common.wgsl (`w != w` may be folded
// away under WGSL's finite-math rules).
fn model_status(w: f32) -> u32 {
    if (!is_finite_f32(w)) {
        return MODEL_STATUS_NON_FINITE;
    }
    if (w <= 0.0) {
        return MODEL_STATUS_NON_POSITIVE;
    }
    return MODEL_STATUS_OK;
}

// ---------------------------------------------------------------------------
// Exact solution under a constant voltage (Integrator::Exact), f32.
// Keep in sync with src/model/ddk_ode.rs (ddk_exact, phi, polish) and
// src/model/lambert_w.rs (one_plus_w_branch_series, lambert_w0_exp,
// lambert_w0_below_branch, lambert_wm1_below_branch, fritsch).
//
// Same method and branches as the CPU. f32 differences, all for range or
// because WGSL lacks the builtin:
// - every Fritsch iteration takes ln(x / w) in logarithmic form,
//   l - ln|w| with l = ln|x| (the CPU does so beyond exp's range only), so no
//   argument is ever formed by exp and none can overflow or underflow;
// - Fritsch runs a fixed 3 times (4th order: from the few-percent initial
//   guesses, 1e-5 then 1e-20 relative), polish's Newton a fixed 4 times;
// - expm1 (not a WGSL builtin) is a Taylor polynomial for |x| < 0.3;
// - phi is summed through atanh on [-1, 1/2] (see ddk_phi), and polish also
//   runs on [-1, -1/2];
// - when |c| sqrt(w0^2 + 2 alpha t) < 1e-8 alpha the drift changes w by
//   less than 5e-9 relative (|q| / 2), and q^2 would underflow f32, so the
//   c = 0 solution is returned.

// Below this p the branch-point series is exact in f32 and returned as is.
const LW_SERIES_P: f32 = 0.03;

// exp(x) - 1 without cancellation for small |x| (Taylor to x^9 / 9! below 0.3:
// the remainder is under 1e-10 relative).
fn lw_expm1(x: f32) -> f32 {
    if (abs(x) < 0.3) {
        var s = 1.0 / 362880.0;
        s = s * x + 1.0 / 40320.0;
        s = s * x + 1.0 / 5040.0;
        s = s * x + 1.0 / 720.0;
        s = s * x + 1.0 / 120.0;
        s = s * x + 1.0 / 24.0;
        s = s * x + 1.0 / 6.0;
        s = s * x + 0.5;
        s = s * x + 1.0;
        return s * x;
    }
    return exp(x) - 1.0;
}

// The branch-point series W = sum_k MU[k] p^k (use -p for W-1); twin of
// branch_series in lambert_w.rs. The one series is lw_one_plus_w_series.
fn lw_branch_series(p: f32) -> f32 {
    return lw_one_plus_w_series(p) - 1.0;
}

// 1 + W from the branch-point series, without its constant term (small 1 + W
// keeps its relative precision); twin of one_plus_w_branch_series in
// lambert_w.rs.
fn lw_one_plus_w_series(p: f32) -> f32 {
    var s = 226287557.0 / 37623398400.0;
    s = s * p - 1963.0 / 204120.0;
    s = s * p + 680863.0 / 43545600.0;
    s = s * p - 221.0 / 8505.0;
    s = s * p + 769.0 / 17280.0;
    s = s * p - 43.0 / 540.0;
    s = s * p + 11.0 / 72.0;
    s = s * p - 1.0 / 3.0;
    s = s * p + 1.0;
    return s * p;
}

// Fritsch's iteration for W e^W = x with l = ln|x| (ln(x / w) = l - ln|w|, x and
// w of one sign); twin of fritsch in lambert_w.rs.
fn lw_fritsch(w_in: f32, l: f32) -> f32 {
    var w = w_in;
    for (var i = 0u; i < 3u; i = i + 1u) {
        let z = l - log(abs(w)) - w;
        let w1 = 1.0 + w;
        let q = 2.0 * w1 * (w1 + 2.0 * z / 3.0);
        let eps = z / w1 * (q - z) / (q - 2.0 * z);
        // Also false for NaN.
        if (!(abs(eps) <= 3.4028235e38)) {
            break;
        }
        w = w * (1.0 + eps);
    }
    return w;
}

// W0(e^l) for any real l; twin of lambert_w0_exp.
fn lambert_w0_exp(l: f32) -> f32 {
    if (l < -9.0) {
        // x < 1.3e-4: x - x^2 + 3/2 x^3 (next term 8/3 x^4, below 1e-11 relative).
        let x = exp(l);
        return x * (1.0 - x * (1.0 - 1.5 * x));
    }
    var w: f32;
    if (l < 2.9957323) {
        // x < 20: Winitzki (2003), within a few percent.
        let lp = log(1.0 + exp(l));
        w = lp * (1.0 - log(1.0 + lp) / (2.0 + lp));
    } else {
        let l2 = log(l);
        w = l - l2 + l2 / l;
    }
    return lw_fritsch(w, l);
}

// W0(-e^(-1-h)) for h >= 0; twin of lambert_w0_below_branch.
fn lambert_w0_below_branch(h: f32) -> f32 {
    let p = sqrt(-2.0 * lw_expm1(-h));
    if (p < LW_SERIES_P) {
        return lw_branch_series(p);
    }
    let l = -1.0 - h;
    if (l < -9.0) {
        let x = -exp(l);
        return x * (1.0 - x * (1.0 - 1.5 * x));
    }
    let x = -exp(l);
    var w: f32;
    if (x < -0.25) {
        w = lw_branch_series(p);
    } else {
        let lp = log(1.0 + x);
        w = lp * (1.0 - log(1.0 + lp) / (2.0 + lp));
    }
    return lw_fritsch(w, l);
}

// W-1(-e^(-1-h)) for h >= 0; twin of lambert_wm1_below_branch.
fn lambert_wm1_below_branch(h: f32) -> f32 {
    let p = sqrt(-2.0 * lw_expm1(-h));
    if (p < LW_SERIES_P) {
        return lw_branch_series(-p);
    }
    let l = -1.0 - h;
    var w: f32;
    // x = -e^l < -0.25, i.e. l > ln(1/4).
    if (l > -1.3862944) {
        w = lw_branch_series(-p);
    } else {
        let l2 = log(-l);
        w = l - l2 + l2 / l;
    }
    return lw_fritsch(w, l);
}

// phi(q) = -q - ln|1 - q|; twin of phi in ddk_ode.rs. On [-1, 1/2] (where the
// CPU uses its series or ln) it is summed as q^2 / (2 - q) - 2 (u^3/3 + u^5/5
// + ...) with u = -q / (2 - q) (ln(1 - q) = 2 atanh(u), |u| <= 1/3, 9 terms:
// 1e-10 relative), because GPU log is only accurate to 2^-21 absolute on
// [0.5, 2] (Vulkan) and phi cancels there.
fn ddk_phi(q: f32) -> f32 {
    if (q >= -1.0 && q <= 0.5) {
        let u = -q / (2.0 - q);
        let u2 = u * u;
        var s = 1.0 / 19.0;
        for (var k = 17; k >= 3; k = k - 2) {
            s = s * u2 + 1.0 / f32(k);
        }
        return q * q / (2.0 - q) - 2.0 * u * u2 * s;
    }
    return -q - log(abs(1.0 - q));
}

// Newton steps on phi(q) = big_phi; twin of polish.
fn ddk_polish(q_in: f32, big_phi: f32) -> f32 {
    var q = q_in;
    for (var i = 0u; i < 4u; i = i + 1u) {
        let dq = (ddk_phi(q) - big_phi) * (1.0 - q) / q;
        if (!(abs(dq) <= 3.4028235e38)) {
            break;
        }
        q = q - dq;
    }
    return q;
}

// The exact state after time t >= 0 under a constant drive c = beta V from
// w0 > 0; twin of ddk_exact (see the notes above for the f32 differences).
fn ddk_exact(w0: f32, alpha: f32, c: f32, t: f32) -> f32 {
    let w_free = sqrt(fma(w0, w0, 2.0 * alpha * t));
    if (c == 0.0 || abs(c) * w_free < 1e-8 * alpha) {
        return w_free;
    }
    let q0 = c * w0 / alpha;
    let s = c * c * t / alpha;
    let big_phi = ddk_phi(q0) + s;
    var q: f32;
    if (q0 == 1.0) {
        q = 1.0;
    } else if (q0 > 1.0) {
        q = 1.0 + lambert_w0_exp(-1.0 - big_phi);
    } else {
        let sigma = select(-1.0, 1.0, q0 > 0.0);
        if (big_phi < 0.05) {
            q = lw_one_plus_w_series(sigma * sqrt(-2.0 * lw_expm1(-big_phi)));
        } else if (q0 > 0.0) {
            q = 1.0 + lambert_w0_below_branch(big_phi);
        } else {
            q = 1.0 + lambert_wm1_below_branch(big_phi);
        }
        // The CPU polishes |q| < 1/2; f32 also polishes [-1, -1/2], where
        // Fritsch's log(-w) carries GPU log's 2^-21 absolute error.
        if (q >= -1.0 && q < 0.5) {
            q = ddk_polish(q, big_phi);
        }
    }
    return alpha / c * q;
}

// The model interface's closed form: w after time t at constant voltage v.
fn model_exact(w: f32, v: f32, t: f32, p: array<f32, 8>) -> f32 {
    return ddk_exact(w, p[0], p[1] * v, t);
}
