// Ridge moments of a tile of kinetics features, accumulated on the device.
// CPU twin: RidgeMoments::accumulate in src/readout/moments.rs (same matrix).
//
// The tile holds the DDK states of `rows` samples under `sets` parameter sets
// ([sets, rows * spp, T] as shaders/ddk.wgsl writes them; a sample's F = spp * T
// features are contiguous). Per set p the kernel adds A^T A of the augmented
// rows a = [x - shift_p, onehot(label)] (g = F + C columns) into acc_hi/acc_lo
// [sets, g, g] (lower triangle): Z^T Z, the per-class sums and the counts.
//
// Precision: a workgroup owns a 16 x 16 block of A^T A; it walks the rows 16 at
// a time through workgroup memory, sums the 16 products in f32, and adds that
// partial into a compensated pair (hi + lo, Knuth's two-sum), in registers for
// the tile and then into the global pair. The host sums hi + lo in f64.

// Keep in sync with MomentsUniform in src/engine/gpu/moments.rs.
struct MomentsUniform {
    f: u32,          // features per sample
    c: u32,          // classes
    g: u32,          // f + c
    rows: u32,       // samples in the tile
    seqs: u32,       // trajectories per set in the tile (rows * spp)
    steps: u32,      // T
    sets: u32,       // parameter sets in the tile
    blocks: u32,     // ceil(g / 16): 16 x 16 blocks per dimension
    grid_x: u32,     // workgroups along x
    one: f32,        // 1.0, opaque to the compiler (see add2)
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> u: MomentsUniform;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read> shift: array<f32>;
@group(0) @binding(4) var<storage, read_write> acc_hi: array<f32>;
@group(0) @binding(5) var<storage, read_write> acc_lo: array<f32>;

// Keep in sync with MOMENTS_WORKGROUP_SIZE in src/engine/gpu/moments.rs.
const WG: u32 = 256u;
const B: u32 = 16u;
var<workgroup> sa: array<f32, 272>; // [B rows][B + 1]
var<workgroup> sb: array<f32, 272>;

// Element (row, col) of the augmented matrix of set p.
fn aug(p: u32, row: u32, col: u32) -> f32 {
    if (row >= u.rows || col >= u.g) {
        return 0.0;
    }
    if (col < u.f) {
        return w[(p * u.seqs) * u.steps + row * u.f + col] - shift[p * u.f + col];
    }
    return select(0.0, 1.0, labels[row] == col - u.f);
}

// (hi, lo) + v, compensated (Knuth's two-sum), renormalised. WGSL has no
// `precise`: a shader compiler may treat (a + b) - a as b and fold the error
// term to 0 (Mesa's NIR does for inexact operations). Every intermediate is
// multiplied by u.one, 1.0 known only at run time, so no identity applies;
// x * 1 is exact, so the arithmetic is Knuth's.
fn add2(acc: vec2<f32>, v: f32) -> vec2<f32> {
    let one = u.one;
    let s = (acc.x + v) * one;
    let bp = (s - acc.x) * one;
    let ap = (s - bp) * one;
    let e = ((acc.x - ap) * one) + ((v - bp) * one);
    let lo = (acc.y + e) * one;
    let hi = (s + lo) * one;
    let back = (hi - s) * one;
    return vec2<f32>(hi, (lo - back) * one);
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let id = wid.y * u.grid_x + wid.x;
    let per_set = u.blocks * u.blocks;
    if (id >= u.sets * per_set) {
        return; // uniform per workgroup
    }
    let p = id / per_set;
    let bi = (id % per_set) / u.blocks;
    let bj = id % u.blocks;
    if (bj > bi) {
        return; // upper triangle: the host mirrors the lower one (uniform)
    }
    let lx = lid.x % B;
    let ly = lid.x / B;
    let i = bi * B + ly; // row of A^T A this invocation owns
    let j = bj * B + lx; // column
    var acc = vec2<f32>(0.0, 0.0);
    for (var r0 = 0u; r0 < u.rows; r0 += B) {
        // Invocation (ly, lx) stages A[r0 + ly][bi*B + lx] and A[r0 + ly][bj*B + lx].
        sa[ly * (B + 1u) + lx] = aug(p, r0 + ly, bi * B + lx);
        sb[ly * (B + 1u) + lx] = aug(p, r0 + ly, bj * B + lx);
        workgroupBarrier();
        var part = 0.0;
        for (var q = 0u; q < B; q++) {
            part += sa[q * (B + 1u) + ly] * sb[q * (B + 1u) + lx];
        }
        acc = add2(acc, part);
        workgroupBarrier();
    }
    if (i < u.g && j < u.g && i >= j) {
        let k = p * u.g * u.g + i * u.g + j;
        var tot = add2(vec2<f32>(acc_hi[k], acc_lo[k]), acc.x);
        tot = add2(tot, acc.y);
        acc_hi[k] = tot.x;
        acc_lo[k] = tot.y;
    }
}
