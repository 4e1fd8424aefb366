//! NeuroSim V1.4's circuit models, re-implemented for bulk CMOS (F >= 22 nm).
//!
//! Each function follows one routine of github.com/neurosim/DNN_NeuroSim_V1.4
//! (folder `Inference_pytorch/NeuroSIM/`, commit ac828e6); the file and line
//! are given on each. Only the bulk-CMOS branches are carried over (FinFET and
//! GAA nodes below 22 nm take other branches there), which is why a card's
//! `feature_size_m` must be at least 22 nm. All quantities are SI.

use super::card::CardValues;

/// constant.h:53 `MIN_NMOS_SIZE` (in F).
pub const MIN_NMOS_SIZE: f64 = 2.0;
/// constant.h:56 `MAX_TRANSISTOR_HEIGHT` (standard-cell height, in F).
pub const MAX_TRANSISTOR_HEIGHT: f64 = 28.0;
/// constant.h:94 `POLY_WIDTH` (in F).
pub const POLY_WIDTH: f64 = 1.0;
/// constant.h:96 `MIN_GAP_BET_GATE_POLY` (in F).
pub const MIN_GAP_BET_GATE_POLY: f64 = 2.8;
/// constant.h:72 `MIN_GAP_BET_P_AND_N_DIFFS` (in F).
pub const MIN_GAP_BET_P_AND_N_DIFFS: f64 = 3.5;
/// constant.h:73 `MIN_POLY_EXT_DIFF` (in F).
pub const MIN_POLY_EXT_DIFF: f64 = 1.0;
/// constant.h:74 `MIN_GAP_BET_FIELD_POLY` (in F).
pub const MIN_GAP_BET_FIELD_POLY: f64 = 1.6;
/// Technology.cpp:1662 `capOverlap = capIdealGate * 0.2` (nodes >= 22 nm).
pub const CAP_OVERLAP_RATIO: f64 = 0.2;
/// Technology.cpp:1669-1675: junction constants (BSIM4) and the grading coefficients.
const CJD: f64 = 1e-3;
const CJSWD: f64 = 2.5e-10;
const CJSWGD: f64 = 0.5e-10;
const MJD: f64 = 0.5;
const MJSWD: f64 = 0.33;
const MJSWGD: f64 = 0.33;
const BUILT_IN_POTENTIAL: f64 = 0.9;
/// SarADC.cpp:241 temperature coefficient of the ADC power.
const ADC_TEMP_COEFF: f64 = 1.3e-3;
/// SarADC.cpp:165: the power of an open column (1/R = 0).
const ADC_OPEN_COLUMN_POWER: f64 = 1e-6;

/// A logic gate NeuroSim lays out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// An inverter.
    Inv,
    /// A NAND with this many inputs.
    Nand(u32),
}

/// Junction capacitances of the card's node (Technology.cpp:1676-1678):
/// (bottom per area, sidewall per length, drain-to-channel per length).
pub fn junction_caps(c: &CardValues) -> (f64, f64, f64) {
    let f = 1.0 + c.vdd_v / BUILT_IN_POTENTIAL;
    (
        CJD / f.powf(MJD),
        CJSWD / f.powf(MJSWD),
        CJSWGD / f.powf(MJSWGD),
    )
}

/// formula.cpp:54 `CalculateGateCap` (bulk): (capIdealGate + capOverlap +
/// capFringe) * width (capPolywire is 0, Technology.cpp:1692).
pub fn gate_cap(c: &CardValues, width: f64) -> f64 {
    (c.cap_ideal_gate_f_per_m * (1.0 + CAP_OVERLAP_RATIO) + c.cap_fringe_f_per_m) * width
}

/// The widest N and P transistors that fit the standard-cell height without
/// folding (formula.cpp:159-170, bulk branch of `CalculateGateArea`).
fn max_widths(f: f64, wn: f64, wp: f64) -> (f64, f64) {
    let h = MAX_TRANSISTOR_HEIGHT * f;
    let ratio = wp / (wp + wn);
    let edge = (MIN_POLY_EXT_DIFF + MIN_GAP_BET_FIELD_POLY / 2.0) * 2.0 * f;
    if ratio == 0.0 {
        (h - edge, 0.0)
    } else if ratio == 1.0 {
        (0.0, h - edge)
    } else {
        let p = ratio * (h - MIN_GAP_BET_P_AND_N_DIFFS * f - edge);
        (p / ratio * (1.0 - ratio), p)
    }
}

/// formula.cpp:1508 `EnlargeSize` (bulk): transistors smaller than the cell
/// height allows are widened to fill it. Returns (wn, wp).
pub fn enlarge_size(c: &CardValues, wn: f64, wp: f64) -> (f64, f64) {
    let (max_n, max_p) = max_widths(c.feature_size_m, wn, wp);
    let ratio = wp / (wp + wn);
    if ratio == 0.0 && wn < max_n {
        (max_n, wp)
    } else if ratio == 1.0 && wp < max_p {
        (wn, max_p)
    } else if wp > 0.0 && wp < max_p && wn > 0.0 && wn < max_n {
        (max_n, max_p)
    } else {
        (wn, wp)
    }
}

/// formula.cpp:70 `CalculateGateArea` (bulk): (height, width) of a gate at the
/// standard-cell height 28 F.
pub fn gate_area(c: &CardValues, gate: Gate, wn: f64, wp: f64) -> (f64, f64) {
    let f = c.feature_size_m;
    let cpp = POLY_WIDTH + MIN_GAP_BET_GATE_POLY;
    let (max_n, max_p) = max_widths(f, wn, wp);
    let region = |w: f64, max: f64| -> (f64, u32) {
        if w <= 0.0 {
            (0.0, 1)
        } else if w <= max {
            (2.0 * cpp * f, 1)
        } else {
            let folds = (w / max).ceil();
            ((folds + 1.0) * cpp * f, folds as u32)
        }
    };
    let (unit_p, fold_p) = region(wp, max_p);
    let (unit_n, fold_n) = region(wn, max_n);
    let (width_p, width_n) = match gate {
        Gate::Inv => (unit_p, unit_n),
        Gate::Nand(n) => {
            let n = n as f64;
            if fold_p == 1 && fold_n == 1 {
                (
                    unit_p * n - (n - 1.0) * f * cpp,
                    unit_n * n - (n - 1.0) * f * cpp,
                )
            } else {
                (unit_p * n, unit_n * n)
            }
        }
    };
    (MAX_TRANSISTOR_HEIGHT * f, width_p.max(width_n))
}

/// Area of a gate (m^2), [`gate_area`] height times width.
pub fn gate_area_m2(c: &CardValues, gate: Gate, wn: f64, wp: f64) -> f64 {
    let (h, w) = gate_area(c, gate, wn, wp);
    h * w
}

/// formula.cpp:427 `CalculateGateCapacitance` (bulk): (input, output)
/// capacitance of a gate.
pub fn gate_caps(c: &CardValues, gate: Gate, wn: f64, wp: f64) -> (f64, f64) {
    let f = c.feature_size_m;
    let cap_in = gate_cap(c, wn) + gate_cap(c, wp);
    let (max_n, max_p) = max_widths(f, wn, wp);
    // (unit drain width, unit source width, drain height, folds)
    let drain = |w: f64, max: f64| -> (f64, f64, f64, f64) {
        if w <= 0.0 {
            (0.0, 0.0, 0.0, 1.0)
        } else if w <= max {
            let u = f * MIN_GAP_BET_GATE_POLY;
            (u, u, w, 1.0)
        } else {
            let folds = (w / max).ceil();
            (
                ((folds + 1.0) / 2.0).ceil() * f * MIN_GAP_BET_GATE_POLY,
                ((folds + 1.0) / 2.0).floor() * f * MIN_GAP_BET_GATE_POLY,
                max,
                folds,
            )
        }
    };
    let (ud_p, us_p, h_p, nf_p) = drain(wp, max_p);
    let (ud_n, us_n, h_n, nf_n) = drain(wn, max_n);
    let odd = |k: f64| (k as i64 % 2) as f64;
    let (wd_p, sw_p, wd_n, sw_n) = match gate {
        Gate::Inv => (
            ud_p,
            ud_p * 2.0 + h_p * (1.0 + odd(nf_p + 1.0)),
            ud_n,
            // formula.cpp (INV branch) uses numFoldedPMOS for the NMOS sidewall too.
            ud_n * 2.0 + h_n * (1.0 + odd(nf_p + 1.0)),
        ),
        Gate::Nand(n) => {
            let n = n as f64;
            if nf_p == 1.0 && nf_n == 1.0 {
                let wd_p = if wp > 0.0 {
                    ud_p * ((n + 1.0) / 2.0).floor()
                } else {
                    0.0
                };
                let wd_n = if wn > 0.0 { ud_n * n } else { 0.0 };
                (
                    wd_p,
                    if wp > 0.0 {
                        wd_p * 2.0 + h_p * (1.0 - odd(n + 1.0))
                    } else {
                        0.0
                    },
                    wd_n,
                    if wn > 0.0 { wd_n * 2.0 + h_n } else { 0.0 },
                )
            } else {
                let wd_p = ud_p * n;
                let wd_n = ud_n * n + (n - 1.0) * us_n;
                (
                    wd_p,
                    wd_p * 2.0 + h_p * (1.0 + odd(nf_p + 1.0)) * n,
                    wd_n,
                    wd_n * 2.0
                        + h_n * (1.0 + odd(nf_n + 1.0)) * n
                        + h_n * (1.0 - odd(nf_n + 1.0)) * (n - 1.0),
                )
            }
        }
    };
    let _ = us_p;
    let (cj, csw, cdc) = junction_caps(c);
    let cap_out =
        (wd_n * h_n + wd_p * h_p) * cj + (sw_p + sw_n) * csw + (nf_n * h_n + nf_p * h_p) * cdc;
    (cap_in, cap_out)
}

/// SarADC.cpp:155 `GetColumnPower` with the card's fit: energy of one
/// conversion of a column of resistance `column_res` (ohm):
/// P = (a log2 L + b) + c exp(-k log10(R * Vfit / Vread)), times
/// (1 + 1.3e-3 (T - 300)), over (log2 L + 1) cycles.
pub fn sar_adc_energy(c: &CardValues, column_res: f64) -> f64 {
    let bits = c.adc_bits as f64;
    let r = column_res * c.adc_fit_read_voltage_v / c.read_voltage_v;
    let mut p = if r.is_infinite() {
        ADC_OPEN_COLUMN_POWER
    } else if r == 0.0 {
        0.0
    } else {
        c.adc_power_per_bit_w * bits
            + c.adc_power_base_w
            + c.adc_column_coeff * (-c.adc_column_exponent * r.log10()).exp()
    };
    p *= 1.0 + ADC_TEMP_COEFF * (c.temperature_k - 300.0);
    p * sar_adc_latency(c)
}

/// SarADC.cpp:131 `CalculateLatency`: (log2 L + 1) cycles per conversion.
pub fn sar_adc_latency(c: &CardValues) -> f64 {
    (c.adc_bits as f64 + 1.0) * c.adc_cycle_s
}

/// SarADC.cpp:81 `CalculateUnitArea`: 269 + 109 (log2 L - 1) minimum NMOS and
/// 209 + 73 (log2 L - 1) minimum PMOS inverters' areas per ADC.
pub fn sar_adc_area(c: &CardValues) -> f64 {
    let f = c.feature_size_m;
    let bits = c.adc_bits as f64;
    let wn = MIN_NMOS_SIZE * f;
    let wp = c.pn_size_ratio * MIN_NMOS_SIZE * f;
    let a_n = gate_area_m2(c, Gate::Inv, wn, 0.0);
    let a_p = gate_area_m2(c, Gate::Inv, 0.0, wp);
    a_n * (269.0 + (bits - 1.0) * 109.0) + a_p * (209.0 + (bits - 1.0) * 73.0)
}

/// The adder's NAND2 transistor widths (Adder.cpp:62-64: 2 x minimum NMOS,
/// pn x minimum PMOS, then [`enlarge_size`]).
pub fn adder_nand_widths(c: &CardValues) -> (f64, f64) {
    let f = c.feature_size_m;
    enlarge_size(
        c,
        2.0 * MIN_NMOS_SIZE * f,
        c.pn_size_ratio * MIN_NMOS_SIZE * f,
    )
}

/// Adder.cpp:245 `CalculatePower`: dynamic energy of one `bits`-bit
/// ripple-carry addition, NAND2 input/output capacitances switched at vdd,
/// times the adder switching activity (Adder.cpp:276, `delta`):
/// vdd^2 [14 Cin + 7 Cout + (bits - 1)(13 Cin + 7 Cout)] activity.
pub fn adder_energy(c: &CardValues, bits: u32) -> f64 {
    let (wn, wp) = adder_nand_widths(c);
    let (cin, cout) = gate_caps(c, Gate::Nand(2), wn, wp);
    let v2 = c.vdd_v * c.vdd_v;
    let extra = bits.saturating_sub(1) as f64;
    // Adder.cpp:256-271, term by term.
    let mut e = cin * 6.0 * v2 + cout * 2.0 * v2;
    e += cin * 7.0 * v2 * extra + cout * 3.0 * v2 * extra;
    e += (cout + cin) * v2 * 2.0;
    e += (cout + cin * 2.0) * v2;
    e += (cout + cin * 3.0) * v2;
    e += (cout + cin) * v2;
    e += (cout + cin * 3.0) * v2 * extra;
    e += (cout + cin) * v2 * extra;
    e += (cout + cin) * v2 * 2.0 * extra;
    e * c.adder_activity
}

/// Adder.cpp:86 `CalculateArea`: 9 NAND2 per bit.
pub fn adder_area(c: &CardValues, bits: u32) -> f64 {
    let (wn, wp) = adder_nand_widths(c);
    gate_area_m2(c, Gate::Nand(2), wn, wp) * 9.0 * bits as f64
}

/// SubArray.cpp:197-199: wire capacitance of a line `length` long.
pub fn wire_cap(c: &CardValues, length: f64) -> f64 {
    c.wire_cap_f_per_m * length
}

/// SubArray.cpp:165-176 (1T1R): row length = columns x cell width x F.
pub fn row_length(c: &CardValues, cols: u32) -> f64 {
    cols as f64 * c.cell_width_f * c.feature_size_m
}

/// SubArray.cpp:1853-1856 (1T1R, parallel read): wordline energy of one read
/// cycle of a subarray with `cols` columns, `rows` rows of which a share
/// `row_activity` is driven, repeated for each of `cols_per_adc` multiplexed
/// column groups: capRow2 vdd^2 rows activity cols_per_adc.
pub fn wordline_energy(c: &CardValues, rows: u32, cols: u32) -> f64 {
    let cap_row = wire_cap(c, row_length(c, cols));
    cap_row * c.vdd_v * c.vdd_v * rows as f64 * c.row_activity * c.cols_per_adc.min(cols) as f64
}

/// SubArray.cpp:354 `resMemCellAvg`: with half the cells on and half off, the
/// mean cell conductance (S) of the card's device (access transistor
/// resistance neglected: memkin's cards give the cell's total resistance).
pub fn mean_cell_conductance(c: &CardValues) -> f64 {
    0.5 * (c.g_on() + c.g_off())
}
