//! Randomness for every layer (a leaf module: it depends on nothing else in
//! memkin but the error type). Philox4x32-10 for everything a shader must
//! reproduce, SplitMix64 for plans and seeds, xoshiro256** ([`Rng`]) for the
//! host-only readout training.
//!
//! Philox4x32-10: the counter-based random number generator shared bit for bit
//! by the host and the shaders (twin of `shaders/rng.wgsl`).
//!
//! Philox (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11,
//! the Random123 library) maps a 128-bit counter and a 64-bit key to 128 random
//! bits through ten rounds of multiply-and-xor. Nothing is carried from one call
//! to the next, so any number in a study can be recomputed alone, on either
//! backend, in any order.
//!
//! # Counter scheme
//!
//! Every random number in memkin is a pure function of
//! `(seed, draw, device, purpose, step)`:
//!
//! ```text
//! key     = [seed as u32, (seed >> 32) as u32]        (low word first)
//! counter = [draw, device, purpose, step]
//! ```
//!
//! | word | name | meaning |
//! |---|---|---|
//! | `counter[0]` | `draw` | Monte Carlo draw (replica) index |
//! | `counter[1]` | `device` | device (trajectory, or device within a parameter set) |
//! | `counter[2]` | `purpose` | what the bits are for: one of the [`purpose`] constants |
//! | `counter[3]` | `step` | time step for in-loop noise; attempt index for host-side rejection sampling |
//!
//! One call yields four `u32` words: four `f32` uniforms, or two `f64`
//! uniforms (see [`uniform_f64`]). Different purposes never share a counter, so
//! adding a new random quantity never shifts the existing ones.
//!
//! Floats derived through `ln`/`sqrt`/`cos` (Box-Muller) are not bit-identical
//! between CPU and GPU: device-to-device parameters are sampled on the host
//! ([`truncated_normal_positive`]) and uploaded; GPU-side normals (in-loop
//! noise) are compared statistically only. The raw bits and [`uniform_f32`] are
//! bit-identical.

use crate::{Error, Result};

pub mod xoshiro;
pub use xoshiro::Rng;

/// Philox multiplier for word 0.
const M0: u32 = 0xD251_1F53;
/// Philox multiplier for word 2.
const M1: u32 = 0xCD9E_8D57;
/// Weyl key increment for key word 0 (golden ratio).
const W0: u32 = 0x9E37_79B9;
/// Weyl key increment for key word 1 (sqrt(3) - 1).
const W1: u32 = 0xBB67_AE85;

/// The `purpose` word of the counter (see the module docs). Keep in sync with
/// the `PURPOSE_*` constants of `shaders/rng.wgsl`.
pub mod purpose {
    /// Device-to-device variability of `alpha` (host side).
    pub const ALPHA: u32 = 0;
    /// Device-to-device variability of `beta` (host side).
    pub const BETA: u32 = 1;
    /// Device-to-device variability of the initial state `w0` (host side).
    pub const W0: u32 = 2;
    /// Cycle-to-cycle (in-loop) noise on the state, drawn per step (GPU side).
    pub const STATE_NOISE: u32 = 3;
    /// Read noise on the features, drawn per step.
    pub const READ_NOISE: u32 = 4;
    /// Train/test shuffles and other bookkeeping.
    pub const SHUFFLE: u32 = 5;
    /// Whether a device is stuck (host side, Monte Carlo).
    pub const STUCK: u32 = 6;
    /// Programming noise of readout weights stored as conductances (host side).
    pub const CONDUCTANCE: u32 = 7;
    /// Device-to-device variability of a continuous-time model's parameter
    /// `i` (in the model's table order): purpose `PARAM_BASE + i` (host side).
    pub const PARAM_BASE: u32 = 16;
}

/// `(hi, lo)` words of the 64-bit product `a * b`.
#[inline(always)]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = (a as u64) * (b as u64);
    ((p >> 32) as u32, p as u32)
}

/// One Philox round.
#[inline(always)]
fn round(c: [u32; 4], k: [u32; 2]) -> [u32; 4] {
    let (hi0, lo0) = mulhilo(M0, c[0]);
    let (hi1, lo1) = mulhilo(M1, c[2]);
    [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0]
}

/// Philox4x32 with 10 rounds: 128 random bits from a counter and a key.
///
/// Matches the Random123 known-answer vectors and `philox4x32_10` in
/// `shaders/rng.wgsl` bit for bit.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for r in 0..10 {
        if r > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        c = round(c, k);
    }
    c
}

/// A uniform `f32` in the open interval (0, 1) from 32 random bits.
///
/// Uses the top 23 bits `n = bits >> 9` and returns `(2n + 1) * 2^-24`, i.e.
/// `n * 2^-23 + 2^-24`. Every step is exact in `f32` (the result has at most
/// 24 significant bits), so the WGSL twin gives the same bits whatever the GPU's
/// rounding mode; the range is `[2^-24, 1 - 2^-24]`, never 0 or 1.
///
/// (With the top 24 bits, `n * 2^-24 + 2^-25` needs 25 significant bits: it
/// rounds for `n >= 2^23` and reaches exactly 1.0 for `n = 2^24 - 1`.)
#[inline(always)]
pub fn uniform_f32(bits: u32) -> f32 {
    (bits >> 9) as f32 * (1.0 / 8_388_608.0) + (1.0 / 16_777_216.0)
}

/// A uniform `f64` in the open interval (0, 1) from 64 random bits (`a` high,
/// `b` low): the top 52 bits `n` give `(2n + 1) * 2^-53`, exact in `f64`.
#[inline(always)]
pub fn uniform_f64(a: u32, b: u32) -> f64 {
    let n = (((a as u64) << 32) | b as u64) >> 12;
    n as f64 * (1.0 / 4_503_599_627_370_496.0) + (1.0 / 9_007_199_254_740_992.0)
}

/// Two independent standard normals from two uniforms in (0, 1) (Box-Muller).
#[inline]
pub fn normal_pair(u1: f64, u2: f64) -> (f64, f64) {
    let r = (-2.0 * u1.ln()).sqrt();
    let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
    (r * c, r * s)
}

/// SplitMix64's output function (Steele, Lea, Flood 2014): a bijective 64-bit mixer.
#[inline]
pub fn splitmix64_mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The golden-ratio increment of SplitMix64.
pub const SPLITMIX64_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// One step of SplitMix64: advances `state` and returns the next output.
#[inline]
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(SPLITMIX64_GAMMA);
    splitmix64_mix(*state)
}

/// SplitMix64: a 64-bit generator with one word of state, for host-side
/// shuffles, splits and test inputs (the one implementation in the crate; the
/// readouts' xoshiro256** is seeded from it). Not a stream with a WGSL twin:
/// random numbers that the GPU must reproduce come from Philox.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        splitmix64(&mut self.state)
    }

    /// A uniform variate in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in `0..n` (`n > 0`), by Lemire's multiply-shift with
    /// rejection, so it carries no modulo bias.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "SplitMix64::below(0)");
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// Fisher-Yates shuffle in place.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// A random stream: the key derived from a study's seed. Every number is then
/// addressed by its counter, `(draw, device, purpose, step)` (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stream {
    /// The Philox key: `[seed low word, seed high word]`.
    pub key: [u32; 2],
}

impl Stream {
    /// The stream of a 64-bit seed.
    pub fn new(seed: u64) -> Self {
        Self {
            key: [seed as u32, (seed >> 32) as u32],
        }
    }

    /// The 128 random bits at counter `[draw, device, purpose, step]`.
    #[inline]
    pub fn at(&self, draw: u32, device: u32, purpose: u32, step: u32) -> [u32; 4] {
        philox4x32_10([draw, device, purpose, step], self.key)
    }

    /// Two independent standard normals (f64, host side) at one counter.
    #[inline]
    pub fn normal_pair(&self, draw: u32, device: u32, purpose: u32, step: u32) -> (f64, f64) {
        let r = self.at(draw, device, purpose, step);
        normal_pair(uniform_f64(r[0], r[1]), uniform_f64(r[2], r[3]))
    }
}

/// The most counters [`truncated_normal_positive`] tries before giving up.
pub const MAX_TRUNCATED_ATTEMPTS: u32 = 1 << 16;

/// A draw from the normal `N(mean, sigma^2)` conditioned on being `> 0`, by
/// deterministic rejection: attempt `j` = 0, 1, ... uses the counter
/// `[draw, device, purpose, j]` (the `step` word) and its two normals in order;
/// the first positive one wins. `sigma = 0` returns `mean`.
///
/// Errors (one line, naming the range) when `mean` or `sigma` is not finite,
/// `sigma < 0`, `sigma = 0` with `mean <= 0`, or no positive value shows up in
/// [`MAX_TRUNCATED_ATTEMPTS`] counters (`mean` many sigmas below zero).
pub fn truncated_normal_positive(
    stream: &Stream,
    mean: f64,
    sigma: f64,
    draw: u32,
    device: u32,
    purpose: u32,
) -> Result<f64> {
    truncated_normal_range(
        stream,
        mean,
        sigma,
        (0.0, true, f64::INFINITY),
        [draw, device, purpose],
    )
}

/// [`truncated_normal_positive`] generalised to the range `(lo, hi]`
/// (`lo_exclusive`) or `[lo, hi]`: `range = (lo, lo_exclusive, hi)`,
/// `at = [draw, device, purpose]`; the same counters and attempt order, so
/// `(0, true, inf)` gives exactly [`truncated_normal_positive`]'s values.
/// `sigma = 0` returns `mean` when it is in the range.
pub fn truncated_normal_range(
    stream: &Stream,
    mean: f64,
    sigma: f64,
    range: (f64, bool, f64),
    at: [u32; 3],
) -> Result<f64> {
    let (lo, lo_ex, hi) = range;
    let [draw, device, purpose] = at;
    let inside = |v: f64| (if lo_ex { v > lo } else { v >= lo }) && v <= hi;
    let range_text = format!(
        "{}{lo}, {hi}{}",
        if lo_ex { "(" } else { "[" },
        if hi.is_infinite() { ")" } else { "]" }
    );
    if !mean.is_finite() {
        return Err(Error::invalid("mean", mean, "finite"));
    }
    if !(sigma.is_finite() && sigma >= 0.0) {
        return Err(Error::invalid("sigma", sigma, "finite and >= 0"));
    }
    if sigma == 0.0 {
        return if inside(mean) {
            Ok(mean)
        } else {
            Err(Error::invalid(
                "mean",
                mean,
                format!("in {range_text} when sigma = 0"),
            ))
        };
    }
    for j in 0..MAX_TRUNCATED_ATTEMPTS {
        let (z0, z1) = stream.normal_pair(draw, device, purpose, j);
        for z in [z0, z1] {
            let v = mean + sigma * z;
            if inside(v) {
                return Ok(v);
            }
        }
    }
    Err(Error::invalid(
        "mean / sigma",
        mean / sigma,
        format!(
            "a normal with some mass in {range_text} (the truncated normal found no value there)"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_matches_random123_known_answers() {
        assert_eq!(
            philox4x32_10([0; 4], [0; 2]),
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0]
            ),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn uniform_f32_is_exact_and_stays_inside_the_open_interval() {
        assert_eq!(uniform_f32(0), 2f32.powi(-24));
        assert_eq!(uniform_f32(u32::MAX), 1.0 - 2f32.powi(-24));
        assert!(uniform_f32(u32::MAX) < 1.0);
        // Exactness: (2n + 1) * 2^-24 for a spread of n.
        for n in [0u32, 1, 12345, (1 << 22) + 7, (1 << 23) - 1] {
            let bits = n << 9 | 0x1ff;
            assert_eq!(
                uniform_f32(bits) as f64,
                (2 * n + 1) as f64 * 2f64.powi(-24)
            );
        }
    }

    #[test]
    fn uniform_f64_stays_inside_the_open_interval() {
        assert!(uniform_f64(0, 0) > 0.0);
        assert!(uniform_f64(u32::MAX, u32::MAX) < 1.0);
    }

    #[test]
    fn stream_key_splits_the_seed_low_word_first() {
        let s = Stream::new(0x0123_4567_89ab_cdef);
        assert_eq!(s.key, [0x89ab_cdef, 0x0123_4567]);
        assert_eq!(s.at(1, 2, 3, 4), philox4x32_10([1, 2, 3, 4], s.key));
    }

    #[test]
    fn truncated_normal_is_deterministic_positive_and_rejects_bad_ranges() {
        let s = Stream::new(42);
        for d in 0..200 {
            let a = truncated_normal_positive(&s, 0.1, 1.0, 0, d, purpose::ALPHA).unwrap();
            let b = truncated_normal_positive(&s, 0.1, 1.0, 0, d, purpose::ALPHA).unwrap();
            assert!(a > 0.0);
            assert_eq!(a.to_bits(), b.to_bits());
        }
        assert_eq!(
            truncated_normal_positive(&s, 0.7, 0.0, 0, 0, 0).unwrap(),
            0.7
        );
        assert!(truncated_normal_positive(&s, -1.0, 0.0, 0, 0, 0).is_err());
        assert!(truncated_normal_positive(&s, 1.0, -0.1, 0, 0, 0).is_err());
        assert!(truncated_normal_positive(&s, f64::NAN, 0.1, 0, 0, 0).is_err());
        assert!(truncated_normal_positive(&s, -100.0, 1.0, 0, 0, 0).is_err());
    }
}
