// Ridge moments of a tile of kinetics features, accumulated on the device.
// CPU twin: RidgeMoments::accumulate in src/readout/moments.rs (same matrix).
//
// The tile holds the DDK states of `rows` samples under `sets` parameter sets
// ([sets, rows * spp, T] as shaders/ddk.wgsl writes them; a sample's F = spp * T
// features are contiguous). Per set p the kernel adds A^T A of the augmented
// rows a = [x - shift_p, onehot(label)] (g = F + C columns) into acc_hi/acc_lo
// [sets, g, g] (lower triangle): Z^T Z, the per-class sums and the counts.
//
// Precision: a workgroup owns a 16 x 16 block of A^T A; it walks the rows R = 32
// at a time through workgroup memory. Each product is exact: the staged values
// are split into 12-bit halves (split, below) and Dekker's two-product gives
// a * b = p + e exactly, p the rounded product. The R products' p go through a
// two-sum into a partial pair (ph, pl); each two-sum's error and each e are
// added to pl in plain f32 (|pl| <= R ulp(ph), so pl's own rounding is ~2^-40
// of the partial). The partial is added into a compensated pair (hi + lo,
// renormalised: add2) in registers for the tile and then into the global pair.
// The host sums hi + lo in f64. What is left is the f32 rounding of x - shift
// (a perturbation of the rows, not of the Gram; see moments::ridge_from_gpu in
// the tests).

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
const R: u32 = 32u; // rows staged per pass (a multiple of B)
// [R rows][B + 1] values, each as its split (hi, lo): hi + lo is the value exactly.
var<workgroup> sa: array<vec2<f32>, 544>;
var<workgroup> sb: array<vec2<f32>, 544>;

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

// v = hi + lo exactly, hi rounded to 12 significant bits (half away from zero,
// on the bits: a carry out of the mantissa bumps the exponent, as it should) and
// |lo| <= ulp(hi) / 2, so lo has at most 12 bits: the split Veltkamp's
// 4097 = 2^12 + 1 gives, but in integer operations, which no float
// contraction or reassociation can touch. v - hi is exact (Sterbenz: hi is
// within 2^-12 of v).
fn split(v: f32) -> vec2<f32> {
    let hi = bitcast<f32>((bitcast<u32>(v) + 0x800u) & 0xfffff000u);
    return vec2<f32>(hi, v - hi);
}

// a * b = p + e exactly (Dekker's two-product on the splits of a and b; no
// overflow or underflow at the sizes of DDK states). The four half products
// are exact (12 x 12 bits), so a compiler fusing any of them into an
// add (fma) changes nothing; p is multiplied by u.one (1.0, known only at run
// time) so that it cannot be fused into a consumer: fma(a * b, 1, c) rounds
// a * b first, as the unfused code does.
fn two_prod(x: vec2<f32>, y: vec2<f32>) -> vec2<f32> {
    let p = ((x.x + x.y) * (y.x + y.y)) * u.one;
    let e = (((x.x * y.x - p) + x.x * y.y) + x.y * y.x) + x.y * y.y;
    return vec2<f32>(p, e);
}

// (hi, lo) + (v, w), compensated (Knuth's two-sum on hi + v; w goes into the
// low part), renormalised. WGSL has no `precise`: a shader compiler may treat
// (a + b) - a as b and fold the error term to 0 (Mesa's NIR does for inexact
// operations). Every intermediate is multiplied by u.one, 1.0 known only at run
// time, so no identity applies; x * 1 is exact, so the arithmetic is Knuth's.
fn add2(acc: vec2<f32>, v: vec2<f32>) -> vec2<f32> {
    let one = u.one;
    let s = (acc.x + v.x) * one;
    let bp = (s - acc.x) * one;
    let ap = (s - bp) * one;
    let e = ((acc.x - ap) * one) + ((v.x - bp) * one);
    let lo = (acc.y + (e + v.y)) * one;
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
    let one = u.one;
    let lx = lid.x % B;
    let ly = lid.x / B;
    let i = bi * B + ly; // row of A^T A this invocation owns
    let j = bj * B + lx; // column
    var acc = vec2<f32>(0.0, 0.0);
    for (var r0 = 0u; r0 < u.rows; r0 += R) {
        // Invocation (ly, lx) stages A[r0 + ly + k B][bi*B + lx] and
        // A[r0 + ly + k B][bj*B + lx], split, for k < R / B.
        for (var k = 0u; k < R / B; k++) {
            let r = ly + k * B;
            sa[r * (B + 1u) + lx] = split(aug(p, r0 + r, bi * B + lx));
            sb[r * (B + 1u) + lx] = split(aug(p, r0 + r, bj * B + lx));
        }
        workgroupBarrier();
        // The R products, exact, through a two-sum (Knuth's, as in add2).
        var ph = 0.0;
        var pl = 0.0;
        for (var q = 0u; q < R; q++) {
            let pe = two_prod(sa[q * (B + 1u) + ly], sb[q * (B + 1u) + lx]);
            let s = (ph + pe.x) * one;
            let bp = (s - ph) * one;
            let ap = (s - bp) * one;
            pl += (((ph - ap) * one) + ((pe.x - bp) * one)) + pe.y;
            ph = s;
        }
        acc = add2(acc, vec2<f32>(ph, pl));
        workgroupBarrier();
    }
    if (i < u.g && j < u.g && i >= j) {
        let k = p * u.g * u.g + i * u.g + j;
        let tot = add2(vec2<f32>(acc_hi[k], acc_lo[k]), acc);
        acc_hi[k] = tot.x;
        acc_lo[k] = tot.y;
    }
}
