// Reverse mode (the adjoint) of the DDK map, one invocation per trajectory
// from the last step back to the first.
// CPU twin: vjp_loop / ddk_vjp_trajectory_f32 in src/engine/vjp.rs (same loop,
// same order of operations).
//
//   lambda[T-1] = g[T-1]
//   lambda[k-1] = g[k-1] + lambda[k] * (1 - alpha[k] / w[k-1]^2)
//   dL/dx[k-1]  = -lambda[k] * beta[k];   dL/dx[T-1] = 0
//   dL/dalpha[k] = lambda[k] / w[k-1];    dL/dbeta[k] = -lambda[k] * x[k-1]
//
// Parameter terms are written per trajectory (summed over the steps for scalar
// parameters, per step otherwise); the host sums them per device in f64.

// Keep in sync with VjpUniform in src/engine/gpu/vjp.rs.
struct VjpUniform {
    n_traj: u32,     // trajectories in this chunk
    seqs: u32,       // sequences bound in `x` (the chunk's sequence block)
    steps: u32,      // T
    groups: u32,     // devices per parameter set (sequence s uses device s % groups)
    seq_offset: u32, // global index of the chunk's first sequence
    per_step: u32,   // 1: alpha/beta are [sets*groups, T]; 0: [sets*groups]
    grid_x: u32,     // workgroups along x (2-D dispatch beyond 65535 workgroups)
    pad: u32,
}

@group(0) @binding(0) var<uniform> u: VjpUniform;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> alpha: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read> w: array<f32>;
@group(0) @binding(5) var<storage, read> g: array<f32>;
@group(0) @binding(6) var<storage, read_write> gx: array<f32>;
// Scalar parameters: [n_traj, 2] (alpha, beta); per step: [n_traj, T, 2].
@group(0) @binding(7) var<storage, read_write> gp: array<f32>;

// Keep WG in sync with VJP_WORKGROUP_SIZE in src/engine/gpu/vjp.rs.
const WG: u32 = 64u;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let i = (wid.y * u.grid_x + wid.x) * WG + lid.x;
    if (i >= u.n_traj) {
        return;
    }
    let seq = i % u.seqs;
    let dev = (i / u.seqs) * u.groups + (u.seq_offset + seq) % u.groups;
    let t = u.steps;
    let base = i * t;   // this trajectory's states, cotangents and dL/dx
    let xb = seq * t;   // its inputs

    gx[base + t - 1u] = 0.0;
    var lam = g[base + t - 1u];
    var sa = 0.0;
    var sb = 0.0;
    if (u.per_step != 0u) {
        gp[base * 2u] = 0.0;
        gp[base * 2u + 1u] = 0.0;
    }
    // Scalar parameters: loaded once (per-step ones are read per step below).
    let a0 = alpha[dev];
    let b0 = beta[dev];
    var k = t - 1u;
    loop {
        if (k == 0u) {
            break;
        }
        var a = a0;
        var b = b0;
        if (u.per_step != 0u) {
            a = alpha[dev * t + k];
            b = beta[dev * t + k];
        }
        let wp = w[base + k - 1u];
        let xp = x[xb + k - 1u];
        gx[base + k - 1u] = -(lam * b);
        let da = lam / wp;
        let db = -(lam * xp);
        if (u.per_step != 0u) {
            gp[(base + k) * 2u] = da;
            gp[(base + k) * 2u + 1u] = db;
        } else {
            sa += da;
            sb += db;
        }
        lam = g[base + k - 1u] + lam * (1.0 - a / (wp * wp));
        k -= 1u;
    }
    if (u.per_step == 0u) {
        gp[i * 2u] = sa;
        gp[i * 2u + 1u] = sb;
    }
}
