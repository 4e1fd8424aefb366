// Test kernel: one invocation integrates one trajectory of the concatenated model
// through its pulse protocol and writes its T features. Concatenate
// models/<model>.wgsl + models/integrate.wgsl + this file. CPU twin:
// memkin::model::integrate::simulate_cpu (f64; compare at f32 tolerances).
//
// Trajectory i drives sequence x[i * T .. (i + 1) * T] through the device with
// parameters params[i].p; features go to out[i * T ..], status to status[i].

struct Config {
    steps: u32,         // T
    trajectories: u32,
    method: u32,        // METHOD_EULER, METHOD_HEUN, METHOD_RK4, or 3 = adaptive
    substeps: u32,
    tau: f32,
    rest: f32,
    v_scale: f32,
    w0: f32,
    rtol: f32,
    atol: f32,
    max_steps: u32,
    _pad: u32,
}

struct Params {
    p: array<f32, 8>,
}

@group(0) @binding(0) var<uniform> cfg: Config;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> params: array<Params>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> status: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= cfg.trajectories) {
        return;
    }
    let p = params[i].p;
    let base = i * cfg.steps;
    var w = cfg.w0;
    var st = AdaptiveState(cfg.w0, 0.0, 0u, 0u, 0u, 1u);
    let opts = AdaptiveOptions(cfg.rtol, cfg.atol, cfg.max_steps);
    var code = MODEL_STATUS_OK;
    out[base] = model_observe(w, p);
    for (var k = 1u; k < cfg.steps; k = k + 1u) {
        if (code != MODEL_STATUS_OK) {
            out[base + k] = bitcast<f32>(0x7fc00000u); // NaN from the first bad step on
            continue;
        }
        let v = cfg.v_scale * x[base + k - 1u];
        if (cfg.method == 3u) {
            st = pulse_adaptive(st, v, cfg.tau, cfg.rest, opts, p);
            w = st.w;
            if (st.ok == 0u) {
                code = MODEL_STATUS_NON_FINITE;
            }
        } else {
            w = pulse_fixed(cfg.method, w, v, cfg.tau, cfg.rest, cfg.substeps, p);
        }
        if (code == MODEL_STATUS_OK) {
            code = model_status(w);
        }
        if (code == MODEL_STATUS_OK) {
            out[base + k] = model_observe(w, p);
        } else {
            out[base + k] = bitcast<f32>(0x7fc00000u);
        }
    }
    status[i] = code;
}
