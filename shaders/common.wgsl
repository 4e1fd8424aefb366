// Shared helpers for every memkin kernel; prepended to each shader by
// src/engine/gpu/shaders.rs. Keep in sync with src/batch.rs (Status codes).

const STATUS_OK: u32 = 0u;
const STATUS_NON_POSITIVE: u32 = 1u;
const STATUS_NON_FINITE: u32 = 2u;

// WGSL has no isnan/isinf: test the exponent bits (all ones = inf or NaN).
fn is_finite_f32(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
}

// NaN by its bits (exponent all ones, mantissa not zero). `v != v` may be
// folded to false under WGSL's finite-math rules, so no shader uses it.
fn is_nan_f32(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// clamp(v, lo, hi) that keeps a NaN (twin: f64::clamp, which returns NaN for
// NaN). WGSL leaves clamp's result for a NaN to the implementation (min and
// max may return the other operand): a NaN state could be
// squashed into a finite one and never flagged.
fn clamp_keep_nan(v: f32, lo: f32, hi: f32) -> f32 {
    if (is_nan_f32(v)) {
        return v;
    }
    return clamp(v, lo, hi);
}

// Twin of Status::classify: non-finite first, then non-positive.
fn classify(w: f32) -> u32 {
    if (!is_finite_f32(w)) {
        return STATUS_NON_FINITE;
    }
    if (w <= 0.0) {
        return STATUS_NON_POSITIVE;
    }
    return STATUS_OK;
}

fn nan_f32() -> f32 {
    return bitcast<f32>(0x7fc00000u);
}

// Status word written per trajectory: code in the top 2 bits, first bad step below.
fn pack_status(code: u32, first_bad: u32) -> u32 {
    return (code << 30u) | (first_bad & 0x3fffffffu);
}
