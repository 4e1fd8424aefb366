// Integrator loops over one segment (a pulse or a rest) for any device model.
// Keep in sync with src/model/integrate.rs (same function names, same loop shape).
//
// Includable (no bindings, no entry points). Concatenate after exactly one
// shaders/models/<model>.wgsl, which provides model_rhs, model_euler,
// model_project, model_observe, model_status and model_exact (the closed form
// under a constant voltage; NaN for models without one); parameters travel as
// array<f32, 8>.

// n forward-Euler steps over a segment of length dur at voltage v.
fn segment_euler(w_in: f32, v: f32, dur: f32, n: u32, p: array<f32, 8>) -> f32 {
    let h = dur / f32(n);
    var w = w_in;
    for (var i = 0u; i < n; i = i + 1u) {
        w = model_project(model_euler(w, v, h, p), p);
    }
    return w;
}

// n Heun (explicit trapezoid) steps.
fn segment_heun(w_in: f32, v: f32, dur: f32, n: u32, p: array<f32, 8>) -> f32 {
    let h = dur / f32(n);
    var w = w_in;
    for (var i = 0u; i < n; i = i + 1u) {
        let k1 = model_rhs(w, v, p);
        let k2 = model_rhs(w + h * k1, v, p);
        w = model_project(w + 0.5 * h * (k1 + k2), p);
    }
    return w;
}

// n classical RK4 steps.
fn segment_rk4(w_in: f32, v: f32, dur: f32, n: u32, p: array<f32, 8>) -> f32 {
    let h = dur / f32(n);
    var w = w_in;
    for (var i = 0u; i < n; i = i + 1u) {
        let k1 = model_rhs(w, v, p);
        let k2 = model_rhs(w + 0.5 * h * k1, v, p);
        let k3 = model_rhs(w + 0.5 * h * k2, v, p);
        let k4 = model_rhs(w + h * k3, v, p);
        w = model_project(w + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4), p);
    }
    return w;
}

// What the adaptive integrator carries from segment to segment; twin of
// AdaptiveState + the RunStats counters in src/model/integrate.rs.
struct AdaptiveState {
    w: f32,
    // Proposed next step (0 before the first step).
    h: f32,
    rhs_evals: u32,
    accepted: u32,
    rejected: u32,
    // 1 while fine, 0 once it stalled.
    ok: u32,
}

// Settings of the adaptive integrator (AdaptiveOptions).
struct AdaptiveOptions {
    rtol: f32,
    atol: f32,
    max_steps: u32,
}

// Dormand-Prince 5(4), landing exactly on the end of the segment.
fn segment_adaptive(s_in: AdaptiveState, v: f32, dur: f32, o: AdaptiveOptions, p: array<f32, 8>) -> AdaptiveState {
    var s = s_in;
    var w = s.w;
    var h = s.h;
    var k1 = model_rhs(w, v, p);
    s.rhs_evals = s.rhs_evals + 1u;
    if (h <= 0.0) {
        let sc = o.atol + o.rtol * abs(w);
        let d0 = abs(w) / sc;
        let d1 = abs(k1) / sc;
        if (d0 < 1e-5 || d1 < 1e-5) {
            h = 1e-6 * dur;
        } else {
            h = 0.01 * d0 / d1;
        }
    }
    var t = 0.0;
    var attempts = 0u;
    loop {
        if (!(t < dur)) {
            break;
        }
        if (attempts >= o.max_steps || h < 1e-14 * dur) {
            s.ok = 0u;
            break;
        }
        attempts = attempts + 1u;
        let last = t + 1.01 * h >= dur;
        let hs = select(h, dur - t, last);
        let k2 = model_rhs(w + hs * (0.2 * k1), v, p);
        let k3 = model_rhs(w + hs * (0.075 * k1 + 0.225 * k2), v, p);
        let k4 = model_rhs(w + hs * (44.0 / 45.0 * k1 - 56.0 / 15.0 * k2 + 32.0 / 9.0 * k3), v, p);
        let k5 = model_rhs(w + hs * (19372.0 / 6561.0 * k1 - 25360.0 / 2187.0 * k2
            + 64448.0 / 6561.0 * k3 - 212.0 / 729.0 * k4), v, p);
        let k6 = model_rhs(w + hs * (9017.0 / 3168.0 * k1 - 355.0 / 33.0 * k2
            + 46732.0 / 5247.0 * k3 + 49.0 / 176.0 * k4 - 5103.0 / 18656.0 * k5), v, p);
        let y = w + hs * (35.0 / 384.0 * k1 + 500.0 / 1113.0 * k3 + 125.0 / 192.0 * k4
            - 2187.0 / 6784.0 * k5 + 11.0 / 84.0 * k6);
        let k7 = model_rhs(y, v, p);
        s.rhs_evals = s.rhs_evals + 6u;
        let err_abs = hs * (71.0 / 57600.0 * k1 - 71.0 / 16695.0 * k3 + 71.0 / 1920.0 * k4
            - 17253.0 / 339200.0 * k5 + 22.0 / 525.0 * k6 - 1.0 / 40.0 * k7);
        let err = abs(err_abs) / (o.atol + o.rtol * max(abs(w), abs(y)));
        if (err <= 1.0) {
            s.accepted = s.accepted + 1u;
            t = select(t + hs, dur, last);
            let wp = model_project(y, p);
            if (wp == y) {
                k1 = k7;
            } else {
                k1 = model_rhs(wp, v, p);
                s.rhs_evals = s.rhs_evals + 1u;
            }
            w = wp;
            var fac = 5.0;
            if (err > 0.0) {
                fac = clamp(0.9 * pow(err, -0.2), 0.2, 5.0);
            }
            if (last) {
                h = max(hs * fac, h);
            } else {
                h = hs * fac;
            }
        } else {
            s.rejected = s.rejected + 1u;
            var fac = 0.2;
            // A NaN or infinite error estimate shrinks hard. The bit-pattern
            // test of common.wgsl: `err == err` may be folded to true under
            // WGSL's finite-math rules. Twin: err.is_finite() in integrate.rs.
            if (is_finite_f32(err)) {
                fac = clamp(0.9 * pow(err, -0.2), 0.2, 1.0);
            }
            h = hs * fac;
        }
    }
    s.w = w;
    s.h = h;
    return s;
}

// The exact solution over one segment; twin of segment_exact.
fn segment_exact(w: f32, v: f32, dur: f32, p: array<f32, 8>) -> f32 {
    return model_project(model_exact(w, v, dur, p), p);
}

// Method codes for pulse_fixed; keep in sync with src/model/integrate.rs
// `Integrator` and the METHOD_* constants of src/engine/gpu/ode.rs (3 is the
// adaptive method, which has its own pulse_adaptive).
const METHOD_EULER: u32 = 0u;
const METHOD_HEUN: u32 = 1u;
const METHOD_RK4: u32 = 2u;
const METHOD_EXACT: u32 = 4u;

// One pulse (v for tau) and its rest (0 V for rest, skipped when rest = 0) with
// a fixed-step method or the exact solution (n unused); twin of the fixed-step
// and exact arms of `segment` in integrate.rs.
fn pulse_fixed(method: u32, w_in: f32, v: f32, tau: f32, rest: f32, n: u32, p: array<f32, 8>) -> f32 {
    var w = w_in;
    if (method == METHOD_EULER) {
        w = segment_euler(w, v, tau, n, p);
        if (rest > 0.0) {
            w = segment_euler(w, 0.0, rest, n, p);
        }
    } else if (method == METHOD_HEUN) {
        w = segment_heun(w, v, tau, n, p);
        if (rest > 0.0) {
            w = segment_heun(w, 0.0, rest, n, p);
        }
    } else if (method == METHOD_EXACT) {
        w = segment_exact(w, v, tau, p);
        if (rest > 0.0) {
            w = segment_exact(w, 0.0, rest, p);
        }
    } else {
        w = segment_rk4(w, v, tau, n, p);
        if (rest > 0.0) {
            w = segment_rk4(w, 0.0, rest, n, p);
        }
    }
    return w;
}

// One pulse and its rest with the adaptive method.
fn pulse_adaptive(s_in: AdaptiveState, v: f32, tau: f32, rest: f32, o: AdaptiveOptions, p: array<f32, 8>) -> AdaptiveState {
    var s = segment_adaptive(s_in, v, tau, o, p);
    if (rest > 0.0 && s.ok == 1u) {
        s = segment_adaptive(s, 0.0, rest, o, p);
    }
    return s;
}
