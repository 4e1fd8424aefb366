// Continuous-time device models over a pulse protocol, one invocation per
// trajectory through all T pulses. Built by concatenating common.wgsl, one
// shaders/models/<model>.wgsl, shaders/models/integrate.wgsl and this file (see
// src/engine/gpu/shaders.rs). CPU twin: run_ode_cpu in src/engine/ode.rs, which
// calls memkin::model::integrate::simulate_into (same loop, same status rules).
//
//   feature[0] = observe(w0)
//   feature[k] = observe(w after the pulse v_scale * x[k-1] of width tau and its rest)
//
// Trajectory i of a chunk is (set i / seqs, sequence i % seqs) of the chunk's
// block: x holds the chunk's sequences, params and w0 the chunk's sets.

// Keep in sync with OdeUniform in src/engine/gpu/ode.rs.
struct OdeUniform {
    n_traj: u32,    // trajectories in this chunk
    seqs: u32,      // sequences bound in `x`
    steps: u32,     // T
    method: u32,    // METHOD_EULER, METHOD_HEUN, METHOD_RK4, ODE_METHOD_ADAPTIVE or METHOD_EXACT
    substeps: u32,  // sub-steps per segment (fixed-step methods)
    max_steps: u32, // adaptive: attempts per segment
    grid_x: u32,    // workgroups along x (2-D dispatch beyond 65535 workgroups)
    _pad0: u32,
    tau: f32,       // pulse width
    rest: f32,      // rest after each pulse (0: none)
    v_scale: f32,   // volts per unit input
    rtol: f32,      // adaptive: relative tolerance
    atol: f32,      // adaptive: absolute tolerance
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

// One parameter set; keep in sync with MAX_PARAMS in src/model/mod.rs.
struct OdeParams {
    p: array<f32, 8>,
}

@group(0) @binding(0) var<uniform> u: OdeUniform;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> params: array<OdeParams>;
@group(0) @binding(3) var<storage, read> w0: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> status: array<u32>;

// Method code of the adaptive integrator (the fixed ones are in integrate.wgsl).
const ODE_METHOD_ADAPTIVE: u32 = 3u;
// "No bad step" in the packed status word.
const ODE_NO_BAD_STEP: u32 = 0x3fffffffu;

// Keep the workgroup size in sync with ODE_WORKGROUP_SIZE in src/engine/gpu/ode.rs.
@compute @workgroup_size(64)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let i = (wid.y * u.grid_x + wid.x) * 64u + lid.x;
    if (i >= u.n_traj) {
        return;
    }
    let pset = i / u.seqs;
    let seq = i % u.seqs;
    let p = params[pset].p;
    let t = u.steps;
    let xb = seq * t;
    let ob = i * t;
    var w = w0[pset];
    var st = AdaptiveState(w, 0.0, 0u, 0u, 0u, 1u);
    let opts = AdaptiveOptions(u.rtol, u.atol, u.max_steps);
    var code = MODEL_STATUS_OK;
    var first_bad = ODE_NO_BAD_STEP;
    out[ob] = model_observe(w, p);
    for (var k = 1u; k < t; k = k + 1u) {
        if (code != MODEL_STATUS_OK) {
            out[ob + k] = nan_f32(); // NaN from the first bad step on
            continue;
        }
        let v = u.v_scale * x[xb + k - 1u];
        if (u.method == ODE_METHOD_ADAPTIVE) {
            st = pulse_adaptive(st, v, u.tau, u.rest, opts, p);
            w = st.w;
            if (st.ok == 0u) {
                code = MODEL_STATUS_NON_FINITE; // stalled
            }
        } else {
            w = pulse_fixed(u.method, w, v, u.tau, u.rest, u.substeps, p);
        }
        if (code == MODEL_STATUS_OK) {
            code = model_status(w);
        }
        if (code == MODEL_STATUS_OK) {
            out[ob + k] = model_observe(w, p);
        } else {
            first_bad = k;
            out[ob + k] = nan_f32();
        }
    }
    status[i] = pack_status(code, first_bad);
}
