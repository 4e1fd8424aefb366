// The linear readout's forward pass over a tile of kinetics features, reduced
// to a count: per (parameter set or draw, sample) standardise, score, argmax,
// and add 1 to correct[p] when the class is the label. Each set carries its
// own mean, scale, weights and bias (a Monte Carlo draw its noisy weights).
// CPU twin: forward_correct in src/readout/moments.rs (same loop order).
// Also here: count_bad, the number of failed trajectories per set in the tile
// (from the DDK status words), so statuses come back as counts.

// Keep in sync with ForwardUniform in src/engine/gpu/forward.rs.
struct ForwardUniform {
    f: u32,       // features per sample
    c: u32,       // classes (<= MAX_C)
    rows: u32,    // samples in the tile
    seqs: u32,    // trajectories per set in the tile (rows * spp)
    steps: u32,   // T
    sets: u32,    // parameter sets in the tile
    grid_x: u32,  // workgroups along x
    _pad: u32,
}

@group(0) @binding(0) var<uniform> u: ForwardUniform;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read> mean: array<f32>;    // [sets, f]
@group(0) @binding(4) var<storage, read> scale: array<f32>;   // [sets, f]
@group(0) @binding(5) var<storage, read> weights: array<f32>; // [sets, f, c]
@group(0) @binding(6) var<storage, read> bias: array<f32>;    // [sets, c]
@group(0) @binding(7) var<storage, read_write> correct: array<atomic<u32>>; // [sets]

// Keep in sync with FORWARD_WORKGROUP_SIZE and MAX_CLASSES in src/engine/gpu/forward.rs.
const WG: u32 = 64u;
const MAX_C: u32 = 64u;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let id = gid.y * (u.grid_x * WG) + gid.x;
    if (id >= u.sets * u.rows) {
        return;
    }
    let p = id / u.rows;
    let row = id % u.rows;
    let base = (p * u.seqs) * u.steps + row * u.f;
    var acc: array<f32, MAX_C>;
    for (var k = 0u; k < u.c; k++) {
        acc[k] = bias[p * u.c + k];
    }
    for (var j = 0u; j < u.f; j++) {
        let z = (w[base + j] - mean[p * u.f + j]) * scale[p * u.f + j];
        let wr = (p * u.f + j) * u.c;
        for (var k = 0u; k < u.c; k++) {
            acc[k] += z * weights[wr + k];
        }
    }
    var best = 0u;
    for (var k = 1u; k < u.c; k++) {
        // NaN never wins (as argmax_rows): a NaN best is replaced.
        if (acc[k] > acc[best] || acc[best] != acc[best]) {
            best = k;
        }
    }
    if (best == labels[row]) {
        atomicAdd(&correct[p], 1u);
    }
}
