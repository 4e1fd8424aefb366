//! Philox4x32-10: the Rust generator against Random123, the WGSL twin validated
//! by naga, and the 16-bit-halves product the WGSL uses checked against u64.

use memkin::rng::{
    Stream, normal_pair, philox4x32_10, purpose, truncated_normal_positive, uniform_f32,
    uniform_f64,
};

pub const RNG_WGSL: &str = include_str!("../../shaders/rng.wgsl");
pub const RNG_TEST_WGSL: &str = include_str!("../../shaders/rng_test.wgsl");

/// Parses and validates a WGSL source with naga; panics with naga's report.
pub fn validate_wgsl(name: &str, src: &str) -> naga::Module {
    let module = naga::front::wgsl::parse_str(src)
        .unwrap_or_else(|e| panic!("{name}: parse error:\n{}", e.emit_to_string(src)));
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::empty(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("{name}: validation error:\n{}", e.emit_to_string(src)));
    module
}

/// The WGSL algorithm (`rng_mulhilo` in shaders/rng.wgsl), transcribed to Rust with
/// only wrapping u32 arithmetic, as WGSL has it.
fn mulhilo_via_halves(a: u32, b: u32) -> (u32, u32) {
    let (a_lo, a_hi) = (a & 0xFFFF, a >> 16);
    let (b_lo, b_hi) = (b & 0xFFFF, b >> 16);
    let ll = a_lo.wrapping_mul(b_lo);
    let lh = a_lo.wrapping_mul(b_hi);
    let hl = a_hi.wrapping_mul(b_lo);
    let hh = a_hi.wrapping_mul(b_hi);
    let mid = (ll >> 16)
        .wrapping_add(lh & 0xFFFF)
        .wrapping_add(hl & 0xFFFF);
    let hi = hh
        .wrapping_add(lh >> 16)
        .wrapping_add(hl >> 16)
        .wrapping_add(mid >> 16);
    let lo = (mid << 16) | (ll & 0xFFFF);
    (hi, lo)
}

/// Philox4x32-10 built on `mulhilo_via_halves`, round for round like the WGSL.
fn philox_via_halves(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (ctr, key);
    for r in 0..10 {
        if r > 0 {
            k = [
                k[0].wrapping_add(0x9E37_79B9),
                k[1].wrapping_add(0xBB67_AE85),
            ];
        }
        let (hi0, lo0) = mulhilo_via_halves(0xD251_1F53, c[0]);
        let (hi1, lo1) = mulhilo_via_halves(0xCD9E_8D57, c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// What `shaders/rng_test.wgsl` must write for one case (counter, key): three
/// vec4<u32>: the raw bits, the four uniforms' bits, and four normals' bits (the
/// last row only agrees statistically with the GPU; here computed in f32 like it).
pub fn expected_rng_test_outputs(ctr: [u32; 4], key: [u32; 2]) -> [[u32; 4]; 3] {
    let b = philox4x32_10(ctr, key);
    let u = b.map(uniform_f32);
    let np = |u1: f32, u2: f32| {
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f32::consts::TAU * u2;
        (r * t.cos(), r * t.sin())
    };
    let (n0, n1) = np(u[0], u[1]);
    let (n2, n3) = np(u[2], u[3]);
    [
        b,
        u.map(f32::to_bits),
        [n0.to_bits(), n1.to_bits(), n2.to_bits(), n3.to_bits()],
    ]
}

#[test]
fn wgsl_mulhilo_via_16_bit_halves_matches_u64_multiplication() {
    // Edge cases, then a million pseudo-random pairs from Philox itself.
    let edges = [
        0u32,
        1,
        0xFFFF,
        0x1_0000,
        0xFFFF_FFFF,
        0x8000_0000,
        0xD251_1F53,
    ];
    for &a in &edges {
        for &b in &edges {
            let p = a as u64 * b as u64;
            assert_eq!(
                mulhilo_via_halves(a, b),
                ((p >> 32) as u32, p as u32),
                "{a:#x} * {b:#x}"
            );
        }
    }
    let s = Stream::new(7);
    for i in 0..250_000u32 {
        let r = s.at(i, 0, 0, 0);
        for (a, b) in [(r[0], r[1]), (r[2], r[3]), (r[0], r[3]), (r[1], r[2])] {
            let p = a as u64 * b as u64;
            assert_eq!(
                mulhilo_via_halves(a, b),
                ((p >> 32) as u32, p as u32),
                "{a:#x} * {b:#x}"
            );
        }
    }
}

#[test]
fn philox_built_from_16_bit_halves_matches_random123_and_the_u64_version() {
    assert_eq!(
        philox_via_halves(
            [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
            [0xa4093822, 0x299f31d0]
        ),
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
    );
    let s = Stream::new(0xdead_beef_0bad_f00d);
    for i in 0..20_000u32 {
        let ctr = s.at(i, 1, 2, 3);
        let key = [ctr[3] ^ 0x5555_5555, ctr[0]];
        assert_eq!(philox_via_halves(ctr, key), philox4x32_10(ctr, key));
    }
}

#[test]
fn rng_wgsl_and_its_test_kernel_validate_with_naga() {
    // rng.wgsl alone must be includable (no entry points, no bindings).
    let lib = validate_wgsl("rng.wgsl", RNG_WGSL);
    assert!(
        lib.entry_points.is_empty(),
        "rng.wgsl must not declare entry points"
    );
    assert!(
        lib.global_variables
            .iter()
            .all(|(_, g)| g.binding.is_none()),
        "rng.wgsl must not declare bindings"
    );
    for f in [
        "philox4x32_10",
        "uniform_f32",
        "normal_pair_f32",
        "philox_normal4",
    ] {
        assert!(
            lib.functions
                .iter()
                .any(|(_, func)| func.name.as_deref() == Some(f)),
            "rng.wgsl lacks fn {f}"
        );
    }
    let src = format!("{RNG_WGSL}\n{RNG_TEST_WGSL}");
    let m = validate_wgsl("rng.wgsl + rng_test.wgsl", &src);
    assert_eq!(m.entry_points.len(), 1);
    assert_eq!(m.entry_points[0].name, "main");
    assert_eq!(m.entry_points[0].workgroup_size, [64, 1, 1]);
}

#[test]
fn rng_test_expected_outputs_start_with_the_raw_bits() {
    let out = expected_rng_test_outputs([0; 4], [0; 2]);
    assert_eq!(out[0], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
    assert_eq!(f32::from_bits(out[1][0]), uniform_f32(0x6627e8d5));
}

#[test]
fn philox_uniforms_have_the_moments_of_the_uniform_distribution() {
    let s = Stream::new(2025);
    let n = 200_000u32;
    let (mut m1, mut m2) = (0.0f64, 0.0f64);
    let mut bit_counts = [0u32; 32];
    for i in 0..n {
        let r = s.at(0, i, purpose::SHUFFLE, 0);
        for w in r {
            let u = uniform_f32(w) as f64;
            assert!(u > 0.0 && u < 1.0);
            m1 += u;
            m2 += u * u;
            for (b, c) in bit_counts.iter_mut().enumerate() {
                *c += (w >> b) & 1;
            }
        }
    }
    let count = 4.0 * n as f64;
    let mean = m1 / count;
    let var = m2 / count - mean * mean;
    // Standard errors: 1/sqrt(12 count) ~ 3.2e-4 for the mean.
    assert!(
        (mean - 0.5).abs() < 5.0 * (1.0 / (12.0 * count)).sqrt(),
        "mean {mean}"
    );
    assert!((var - 1.0 / 12.0).abs() < 1e-3, "var {var}");
    for (b, c) in bit_counts.iter().enumerate() {
        let p = *c as f64 / count;
        assert!(
            (p - 0.5).abs() < 5.0 * (0.25 / count).sqrt(),
            "bit {b}: {p}"
        );
    }
}

#[test]
fn box_muller_normals_have_unit_variance_and_no_skew() {
    let s = Stream::new(99);
    let n = 100_000u32;
    let (mut m1, mut m2, mut m3, mut m4) = (0.0, 0.0, 0.0, 0.0);
    for i in 0..n {
        let r = s.at(1, i, purpose::STATE_NOISE, 0);
        let (a, b) = normal_pair(uniform_f64(r[0], r[1]), uniform_f64(r[2], r[3]));
        for z in [a, b] {
            m1 += z;
            m2 += z * z;
            m3 += z * z * z;
            m4 += z * z * z * z;
        }
    }
    let c = 2.0 * n as f64;
    let (mean, var, skew, kurt) = (m1 / c, m2 / c, m3 / c, m4 / c);
    assert!(mean.abs() < 0.01, "mean {mean}");
    assert!((var - 1.0).abs() < 0.015, "var {var}");
    assert!(skew.abs() < 0.03, "third moment {skew}");
    assert!((kurt - 3.0).abs() < 0.08, "fourth moment {kurt}");
}

#[test]
fn truncated_normal_matches_the_conditional_mean() {
    // E[X | X > 0] for N(mu, s^2) = mu + s * phi(mu/s) / Phi(mu/s).
    // With mu = 0: s * sqrt(2/pi).
    let s = Stream::new(3);
    let n = 40_000u32;
    let mut sum = 0.0;
    for d in 0..n {
        let v = truncated_normal_positive(&s, 0.0, 0.5, 0, d, purpose::BETA).unwrap();
        assert!(v > 0.0);
        sum += v;
    }
    let mean = sum / n as f64;
    let want = 0.5 * (2.0 / std::f64::consts::PI).sqrt();
    assert!((mean - want).abs() < 0.01, "mean {mean}, want {want}");
}

#[test]
fn every_purpose_gets_its_own_numbers() {
    let s = Stream::new(1);
    let all = [
        purpose::ALPHA,
        purpose::BETA,
        purpose::W0,
        purpose::STATE_NOISE,
        purpose::READ_NOISE,
        purpose::SHUFFLE,
    ];
    let outs: Vec<_> = all.iter().map(|&p| s.at(0, 0, p, 0)).collect();
    for i in 0..outs.len() {
        for j in 0..i {
            assert_ne!(outs[i], outs[j]);
        }
    }
}

/// The WGSL Philox and uniforms run on the GPU backend (lavapipe in CI) and
/// match Rust bit for bit, on the Random123 known-answer vectors and on 1,000
/// further counters; the normals agree to f32 rounding of log/sqrt/sin.
#[test]
#[cfg_attr(
    skip_gpu,
    ignore = "no GPU driver at build time (build.rs), or MEMKIN_SKIP_GPU=1"
)]
fn wgsl_philox_matches_rust_bit_for_bit_on_the_gpu() {
    let ctx = crate::common::gpu_context();
    let mut cases: Vec<([u32; 4], [u32; 2])> = vec![
        ([0, 0, 0, 0], [0, 0]),
        ([u32::MAX; 4], [u32::MAX; 2]),
        (
            [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
            [0xa4093822, 0x299f31d0],
        ),
    ];
    let mut s = crate::common::TestRng(7);
    for i in 0..1000u32 {
        let r = s.next_u64();
        cases.push((
            [i, r as u32, (r >> 32) as u32, 3],
            [(r >> 7) as u32, 0xDEAD_BEEF ^ i],
        ));
    }
    let mut input: Vec<u32> = Vec::new();
    for (c, k) in &cases {
        input.extend_from_slice(c);
        input.extend_from_slice(&[k[0], k[1], 0, 0]);
    }
    let src = format!(
        "{}\n{}",
        include_str!("../../shaders/rng.wgsl"),
        include_str!("../../shaders/rng_test.wgsl")
    );
    let out_bytes = (cases.len() * 3 * 16) as u64;
    let out = crate::common::run_test_kernel(
        &ctx,
        "rng_test",
        &src,
        bytemuck::cast_slice(&input),
        out_bytes,
        cases.len() as u32,
    );
    let got: &[u32] = bytemuck::cast_slice(&out);
    let kat = [
        [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8],
        [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
    ];
    for (i, want) in kat.iter().enumerate() {
        assert_eq!(
            &got[12 * i..12 * i + 4],
            want,
            "known-answer vector {i} on the GPU"
        );
    }
    for (i, (c, k)) in cases.iter().enumerate() {
        let want = expected_rng_test_outputs(*c, *k);
        let g = &got[12 * i..12 * i + 12];
        assert_eq!(&g[0..4], &want[0], "raw bits, case {i}");
        assert_eq!(&g[4..8], &want[1], "uniform_f32 bits, case {i}");
        for j in 0..4 {
            let (gn, wn) = (f32::from_bits(g[8 + j]), f32::from_bits(want[2][j]));
            assert!(
                (gn - wn).abs() <= 1e-4 * (1.0 + wn.abs()),
                "normal case {i} lane {j}: {gn} vs {wn}"
            );
        }
    }
}
