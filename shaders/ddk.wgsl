// The paper's DDK map, one invocation per trajectory through all T steps.
// CPU twin: ddk_trajectory in src/engine/cpu.rs (same loop, same status rules).
//
//   w[0] = w0;  w[k] = w[k-1] + alpha[k] / w[k-1] - beta[k] * x[k-1]
//
// Memory: the WG trajectories of a workgroup are consecutive, so their inputs
// and outputs are contiguous blocks. Steps are processed in tiles of TILE: the
// workgroup loads the tile's inputs cooperatively (coalesced) into workgroup
// memory, each invocation integrates its own trajectory from there, and the
// tile's states are stored back cooperatively (coalesced).

// Keep in sync with DdkUniform in src/engine/gpu/ddk.rs.
struct DdkUniform {
    n_traj: u32,     // trajectories in this chunk
    seqs: u32,       // sequences bound in `x` (the chunk's sequence block)
    steps: u32,      // T
    groups: u32,     // devices per parameter set (sequence s uses device s % groups)
    seq_offset: u32, // global index of the chunk's first sequence
    per_step: u32,   // 1: alpha/beta are [sets*groups, T]; 0: [sets*groups]
    want_grad: u32,  // 1: write sensitivities
    grid_x: u32,     // workgroups along x (2-D dispatch beyond 65535 workgroups)
    noise_sigma: f32, // cycle-to-cycle noise: w += sigma * N(0, 1) after each step (0: off)
    key0: u32,       // Philox key of the noise stream (the study seed)
    key1: u32,
    set_offset: u32, // global index of the chunk's first parameter set (the draw)
}

@group(0) @binding(0) var<uniform> u: DdkUniform;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> alpha: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read> w0: array<f32>;
@group(0) @binding(5) var<storage, read_write> w_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> status: array<u32>;
@group(0) @binding(7) var<storage, read_write> grad: array<f32>;

// Keep WG in sync with DDK_WORKGROUP_SIZE in src/engine/gpu/ddk.rs.
const WG: u32 = 64u;
const TILE: u32 = 16u;
const PITCH: u32 = 17u; // TILE + 1: an odd pitch avoids bank conflicts
// Workgroup memory, 3 x 1088 floats = 13 KiB (under WebGPU's 16 KiB default).
// tile_x: the tile's inputs, row lid.x read only by invocation lid.x, which
//         overwrites element j with d w / d alpha once step j consumed it;
// tile_w: the tile's states; tile_b: d w / d beta (sensitivities only).
var<workgroup> tile_x: array<f32, 1088>; // WG * PITCH
var<workgroup> tile_w: array<f32, 1088>;
var<workgroup> tile_b: array<f32, 1088>;
var<workgroup> row_of: array<u32, 64>; // WG: first input of each trajectory's sequence

// Twin of model::ddk::ddk_step.
fn ddk_step(w: f32, xv: f32, a: f32, b: f32) -> f32 {
    return w + a / w - b * xv;
}

// No integer division by a runtime value inside the step loop: the tile loops
// divide by the constants TILE and 2 * TILE (shifts and masks), and each
// trajectory's input row is computed once, before the loop, into row_of.
@compute @workgroup_size(64)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let base = (wid.y * u.grid_x + wid.x) * WG; // first trajectory of the workgroup
    if (base >= u.n_traj) {
        return; // whole workgroup idle (uniform)
    }
    let n_here = min(WG, u.n_traj - base);
    let i = base + lid.x;
    let live = lid.x < n_here;
    let ii = min(i, u.n_traj - 1u);
    let seq = ii % u.seqs;
    let pset = ii / u.seqs;
    let dev = pset * u.groups + (u.seq_offset + seq) % u.groups;
    let t = u.steps;
    let grad_on = u.want_grad != 0u;
    let per_step = u.per_step != 0u;
    row_of[lid.x] = seq * t;

    // Scalar parameters: loaded once (per-step ones are read per step below).
    let a0 = alpha[dev];
    let b0 = beta[dev];
    var w = w0[dev];
    var da = 0.0;
    var db = 0.0;
    var st = STATUS_OK;
    var first = 0x3fffffffu;
    workgroupBarrier(); // row_of complete

    var k0 = 0u;
    loop {
        if (k0 >= t) {
            break;
        }
        let len = min(TILE, t - k0);
        // Coalesced load: element e is (trajectory e / TILE, step k0 + e % TILE);
        // step k consumes x[k - 1].
        for (var e = lid.x; e < WG * TILE; e += WG) {
            let r = e / TILE;
            let j = e % TILE;
            if (r < n_here && j < len) {
                let k = k0 + j;
                var v = 0.0;
                if (k >= 1u) {
                    v = x[row_of[r] + k - 1u];
                }
                tile_x[r * PITCH + j] = v;
            }
        }
        workgroupBarrier();
        for (var j = 0u; j < len; j++) {
            let k = k0 + j;
            let xv = tile_x[lid.x * PITCH + j];
            if (k >= 1u && st == STATUS_OK) {
                var a = a0;
                var b = b0;
                if (per_step) {
                    a = alpha[dev * t + k];
                    b = beta[dev * t + k];
                }
                if (grad_on) {
                    let jac = 1.0 - a / (w * w);
                    da = da * jac + 1.0 / w;
                    db = db * jac - xv;
                }
                w = ddk_step(w, xv, a, b);
                if (u.noise_sigma != 0.0) {
                    // Counter [draw, sequence, purpose, step]: a pure function of the
                    // trajectory's identity, whatever the chunking (twin: cpu.rs step_noise).
                    let ctr = vec4<u32>(u.set_offset + pset, u.seq_offset + seq, PURPOSE_STATE_NOISE, k);
                    let bits = philox4x32_10(ctr, vec2<u32>(u.key0, u.key1));
                    w = w + u.noise_sigma * normal_pair_f32(uniform_f32(bits.x), uniform_f32(bits.y)).x;
                }
                let c = classify(w);
                if (c != STATUS_OK) {
                    st = c;
                    first = k;
                }
            }
            var out = w;
            var ga = da;
            var gb = db;
            if (st != STATUS_OK) {
                out = nan_f32();
                ga = nan_f32();
                gb = nan_f32();
            }
            tile_w[lid.x * PITCH + j] = out;
            if (grad_on) {
                tile_x[lid.x * PITCH + j] = ga; // x of step j is consumed
                tile_b[lid.x * PITCH + j] = gb;
            }
        }
        workgroupBarrier();
        // Coalesced stores of the tile's states, then (interleaved alpha, beta)
        // of its sensitivities: each trajectory's block is contiguous.
        for (var e = lid.x; e < WG * TILE; e += WG) {
            let r = e / TILE;
            let j = e % TILE;
            if (r < n_here && j < len) {
                w_out[(base + r) * t + k0 + j] = tile_w[r * PITCH + j];
            }
        }
        if (grad_on) {
            for (var e = lid.x; e < WG * TILE * 2u; e += WG) {
                let r = e / (2u * TILE);
                let j = (e % (2u * TILE)) / 2u;
                let which = e % 2u;
                if (r < n_here && j < len) {
                    var v = tile_x[r * PITCH + j];
                    if (which == 1u) {
                        v = tile_b[r * PITCH + j];
                    }
                    grad[((base + r) * t + k0 + j) * 2u + which] = v;
                }
            }
        }
        workgroupBarrier(); // the next tile reuses tile_x, tile_w and tile_b
        k0 += len;
    }
    if (live) {
        status[i] = pack_status(st, first);
    }
}
