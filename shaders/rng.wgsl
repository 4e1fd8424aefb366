// Philox4x32-10 counter-based RNG: twin of src/study/rng.rs (keep in sync).
//
// Includable: no bindings, no entry points. Concatenate it in front of the shader
// that uses it.
//
// Counter scheme (see src/study/rng.rs): every random number is a pure function of
// (seed, draw, device, purpose, step):
//   key     = vec2(seed low word, seed high word)
//   counter = vec4(draw, device, purpose, step)
//
// WGSL has no 64-bit integers and no mulhi: the 32x32 -> 64 product is built from
// 16-bit halves (rng_mulhilo). The raw bits and rng_uniform_f32 match Rust bit for
// bit; the Box-Muller normals do not (ln/cos differ), compare them statistically.

// The `purpose` counter word; keep in sync with src/study/rng.rs `purpose`.
const PURPOSE_ALPHA: u32 = 0u;
const PURPOSE_BETA: u32 = 1u;
const PURPOSE_W0: u32 = 2u;
const PURPOSE_STATE_NOISE: u32 = 3u;
const PURPOSE_READ_NOISE: u32 = 4u;
const PURPOSE_SHUFFLE: u32 = 5u;
// Host-side purposes (Monte Carlo), listed so the two tables stay one.
const PURPOSE_STUCK: u32 = 6u;
const PURPOSE_CONDUCTANCE: u32 = 7u;
const PURPOSE_PARAM_BASE: u32 = 16u;

const PHILOX_M0: u32 = 0xD2511F53u;
const PHILOX_M1: u32 = 0xCD9E8D57u;
const PHILOX_W0: u32 = 0x9E3779B9u;
const PHILOX_W1: u32 = 0xBB67AE85u;

// (hi, lo) words of the 64-bit product a * b, from 16-bit halves.
// Each partial product of two 16-bit halves fits in 32 bits; `mid` collects
// the bits 16..47 carries (at most 3 * (2^16 - 1) + 2^16 < 2^18, no overflow).
fn rng_mulhilo(a: u32, b: u32) -> vec2<u32> {
    let a_lo = a & 0xFFFFu;
    let a_hi = a >> 16u;
    let b_lo = b & 0xFFFFu;
    let b_hi = b >> 16u;
    let ll = a_lo * b_lo;
    let lh = a_lo * b_hi;
    let hl = a_hi * b_lo;
    let hh = a_hi * b_hi;
    let mid = (ll >> 16u) + (lh & 0xFFFFu) + (hl & 0xFFFFu);
    let hi = hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
    let lo = (mid << 16u) | (ll & 0xFFFFu);
    return vec2<u32>(hi, lo);
}

fn philox_round(c: vec4<u32>, k: vec2<u32>) -> vec4<u32> {
    let p0 = rng_mulhilo(PHILOX_M0, c.x);
    let p1 = rng_mulhilo(PHILOX_M1, c.z);
    return vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
}

// Philox4x32 with 10 rounds: 128 random bits from a counter and a key.
fn philox4x32_10(ctr: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = ctr;
    var k = key;
    c = philox_round(c, k);
    for (var r = 1u; r < 10u; r = r + 1u) {
        k = k + vec2<u32>(PHILOX_W0, PHILOX_W1);
        c = philox_round(c, k);
    }
    return c;
}

// Uniform f32 in (0, 1): (2n + 1) * 2^-24 with n the top 23 bits. Every operation
// is exact in f32, so it matches Rust `uniform_f32` bit for bit on any GPU.
fn uniform_f32(bits: u32) -> f32 {
    return f32(bits >> 9u) * (1.0 / 8388608.0) + (1.0 / 16777216.0);
}

// Two standard normals (Box-Muller) from two uniforms in (0, 1). Not bit-identical
// to the host (transcendentals differ): compare statistically.
fn normal_pair_f32(u1: f32, u2: f32) -> vec2<f32> {
    let r = sqrt(-2.0 * log(u1));
    let t = 6.283185307179586 * u2;
    return vec2<f32>(r * cos(t), r * sin(t));
}

// Four standard normals from the counter [draw, device, purpose, step].
fn philox_normal4(ctr: vec4<u32>, key: vec2<u32>) -> vec4<f32> {
    let b = philox4x32_10(ctr, key);
    let n01 = normal_pair_f32(uniform_f32(b.x), uniform_f32(b.y));
    let n23 = normal_pair_f32(uniform_f32(b.z), uniform_f32(b.w));
    return vec4<f32>(n01, n23);
}
