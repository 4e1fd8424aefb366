// A Monte Carlo draw's readout on a tile of kinetics states, reduced to
// counts: per (draw, sample) the host-side steps of a draw on the device
// (stuck devices pinned back to stuck_w under cycle noise, read noise from
// the Philox counter [draw, sequence, READ_NOISE, step / 2], a sample with a
// failed trajectory counted wrong), then the readout's full inference (the
// standardiser if any, every dense layer, BatchNorm in inference form, the
// hidden activation), the argmax (NaN never wins), and 1 added to
// out[p] when the class is the label. out[sets + p] counts the draw's failed
// trajectories; with predictions on, out[2 sets + p * n_samples + sample]
// holds the class (BAD_PRED for a failed sample).
// Each draw carries its own network parameters (conductance noise).
// CPU twin: study::montecarlo::device::forward_twin (same loop order).

// Keep in sync with McForwardUniform in src/engine/gpu/mc_forward.rs.
struct McForwardUniform {
    f: u32,          // features per sample (spp * steps)
    c: u32,          // classes (<= MAX_W)
    rows: u32,       // samples in the tile
    seqs: u32,       // trajectories per draw in the tile (rows * spp)
    steps: u32,      // T
    sets: u32,       // draws in the run
    grid_x: u32,     // workgroups along x
    layers: u32,     // dense layers (>= 1)
    n_params: u32,   // network parameters per draw
    spp: u32,        // sequences per sample
    groups: u32,     // devices per draw (sequence s uses device s % groups)
    row_offset: u32, // global index of the tile's first sample
    n_samples: u32,  // samples of the whole side (stride of the predictions)
    flags: u32,      // FLAG_* bits
    read_sigma: f32, // read noise standard deviation (0: off)
    stuck_w: f32,    // what a stuck device reads
    key0: u32,       // Philox key of the draws' stream (the study seed)
    key1: u32,
    draw_offset: u32, // global index of the run's first draw
    units: u32,      // hidden units of all layers (BatchNorm statistics)
}

@group(0) @binding(0) var<uniform> u: McForwardUniform;
@group(0) @binding(1) var<storage, read> w: array<f32>;      // [sets, seqs, steps]
@group(0) @binding(2) var<storage, read> status: array<u32>; // [sets, seqs]
@group(0) @binding(3) var<storage, read> labels: array<u32>; // [rows]
@group(0) @binding(4) var<storage, read> net: array<f32>;    // [sets, n_params]
// [f] standardiser mean, [f] scale, [units] BatchNorm running mean, [units] 1 / sqrt(var + eps)
@group(0) @binding(5) var<storage, read> aux: array<f32>;
// [layers + 1] widths, then [sets, groups] stuck flags
@group(0) @binding(6) var<storage, read> shape: array<u32>;
@group(0) @binding(7) var<storage, read_write> out: array<atomic<u32>>;

// Keep in sync with src/engine/gpu/mc_forward.rs.
const WG: u32 = 64u;
const MAX_W: u32 = 256u;
const FLAG_STANDARDIZE: u32 = 1u;
const FLAG_BATCH_NORM: u32 = 2u;
const FLAG_SIGMOID: u32 = 4u;
const FLAG_PREDICTIONS: u32 = 8u;
const FLAG_PIN_STUCK: u32 = 16u;
const BAD_PRED: u32 = 0xffffffffu;

// Two ping-pong activation vectors of one invocation.
var<private> h: array<f32, 512>; // 2 * MAX_W

fn stuck(p: u32, gseq: u32) -> bool {
    return shape[u.layers + 1u + p * u.groups + gseq % u.groups] != 0u;
}

// Feature j of sample `row` (tile) of draw p, as the readout sees it.
fn feature(p: u32, row: u32, sample: u32, j: u32) -> f32 {
    let q = j / u.steps;
    let k = j % u.steps;
    let gseq = sample * u.spp + q;
    var v = w[(p * u.seqs + row * u.spp) * u.steps + j];
    if ((u.flags & FLAG_PIN_STUCK) != 0u && stuck(p, gseq)) {
        v = u.stuck_w;
    }
    if (u.read_sigma != 0.0) {
        let ctr = vec4<u32>(u.draw_offset + p, gseq, PURPOSE_READ_NOISE, k / 2u);
        let bits = philox4x32_10(ctr, vec2<u32>(u.key0, u.key1));
        let z = normal_pair_f32(uniform_f32(bits.x), uniform_f32(bits.y));
        var zk = z.x;
        if ((k & 1u) == 1u) {
            zk = z.y;
        }
        v = v + u.read_sigma * zk;
    }
    if ((u.flags & FLAG_STANDARDIZE) != 0u) {
        v = (v - aux[j]) * aux[u.f + j];
    }
    return v;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let id = gid.y * (u.grid_x * WG) + gid.x;
    if (id >= u.sets * u.rows) {
        return;
    }
    let p = id / u.rows;
    let row = id % u.rows;
    let sample = u.row_offset + row;
    let pred_at = 2u * u.sets + p * u.n_samples + sample;
    let want_pred = (u.flags & FLAG_PREDICTIONS) != 0u;

    // Failed trajectories (a pinned stuck device does not fail).
    var nbad = 0u;
    for (var q = 0u; q < u.spp; q++) {
        let failed = (status[p * u.seqs + row * u.spp + q] >> 30u) != 0u;
        let pinned = (u.flags & FLAG_PIN_STUCK) != 0u && stuck(p, sample * u.spp + q);
        if (failed && !pinned) {
            nbad += 1u;
        }
    }
    if (nbad > 0u) {
        atomicAdd(&out[u.sets + p], nbad);
        if (want_pred) {
            atomicStore(&out[pred_at], BAD_PRED);
        }
        return;
    }

    let base = p * u.n_params;
    var off = 0u; // this layer's weights in the draw's parameters
    var unit = 0u; // this layer's first unit in the BatchNorm statistics
    var bn_off = 0u; // this layer's gamma in the draw's parameters
    if ((u.flags & FLAG_BATCH_NORM) != 0u) {
        for (var l = 1u; l <= u.layers; l++) {
            bn_off += shape[l - 1u] * shape[l] + shape[l];
        }
    }
    var cur = 0u; // input vector of the layer (layers >= 2)
    var nxt = MAX_W; // its output
    for (var l = 1u; l <= u.layers; l++) {
        let n_in = shape[l - 1u];
        let n_out = shape[l];
        let bias = base + off + n_in * n_out;
        for (var k = 0u; k < n_out; k++) {
            h[nxt + k] = net[bias + k];
        }
        for (var j = 0u; j < n_in; j++) {
            var x: f32;
            if (l == 1u) {
                x = feature(p, row, sample, j);
            } else {
                x = h[cur + j];
            }
            let wr = base + off + j * n_out;
            for (var k = 0u; k < n_out; k++) {
                h[nxt + k] += x * net[wr + k];
            }
        }
        if (l < u.layers) {
            for (var k = 0u; k < n_out; k++) {
                var z = h[nxt + k];
                if ((u.flags & FLAG_BATCH_NORM) != 0u) {
                    let a = (z - aux[2u * u.f + unit + k]) * aux[2u * u.f + u.units + unit + k];
                    z = net[base + bn_off + k] * a + net[base + bn_off + n_out + k];
                }
                if ((u.flags & FLAG_SIGMOID) != 0u) {
                    z = 1.0 / (1.0 + exp(-z));
                } else {
                    z = max(z, 0.0);
                }
                h[nxt + k] = z;
            }
            bn_off += 2u * n_out;
            unit += n_out;
        }
        off += n_in * n_out + n_out;
        let t = cur;
        cur = nxt;
        nxt = t;
    }
    // The scores are at h[cur..cur + c].
    var best = 0u;
    for (var k = 1u; k < u.c; k++) {
        // NaN never wins (as argmax_rows): a NaN best is replaced.
        let s = h[cur + k];
        let b = h[cur + best];
        if (s > b || b != b) {
            best = k;
        }
    }
    if (best == labels[row]) {
        atomicAdd(&out[p], 1u);
    }
    if (want_pred) {
        atomicStore(&out[pred_at], best);
    }
}
