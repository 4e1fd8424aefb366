//! Technology cards: every constant the cost model uses, with its source.
//!
//! A card is a TOML (or JSON) file with a `name`, a `description`, a
//! `[values]` table (SI units, the field names below) and a `[sources]` table
//! naming where each value comes from. Unknown keys are rejected, and every
//! value is checked against its named range before any work ([`Card::check`]).
//!
//! | field | unit | range | meaning |
//! |---|---|---|---|
//! | `feature_size_m` | m | 22e-9 ..= 1e-6 | technology node F (bulk CMOS formulas only: >= 22 nm) |
//! | `vdd_v` | V | (0, 5] | logic supply |
//! | `temperature_k` | K | 200 ..= 400 | temperature (ADC power correction) |
//! | `read_voltage_v` | V | (0, 2] | array read voltage |
//! | `read_pulse_s` | s | (0, 1e-3] | read pulse width per input bit / state read |
//! | `r_on_ohm`, `r_off_ohm` | ohm | 1e2 ..= 1e10, `r_off > r_on` | device on / off resistance at the read voltage |
//! | `wire_cap_f_per_m` | F/m | (0, 1e-8] | wire capacitance per length |
//! | `cell_height_f`, `cell_width_f` | F | 1 ..= 100 | memory cell footprint in feature sizes |
//! | `subarray_rows`, `subarray_cols` | - | 8 ..= 4096 | crossbar subarray size |
//! | `cols_per_adc` | - | 1 ..= 1024 | columns multiplexed onto one ADC |
//! | `adc_bits` | bit | 1 ..= 12 | ADC resolution |
//! | `adc_power_per_bit_w`, `adc_power_base_w` | W | 0 ..= 1e-2 | SAR ADC power fit: (a log2 L + b) |
//! | `adc_column_coeff` | - | 0 ..= 10 | SAR ADC column-current term c exp(-k log10 R) |
//! | `adc_column_exponent` | - | (0, 5] | k of that term |
//! | `adc_fit_read_voltage_v` | V | (0, 2] | read voltage of the fit (column R rescaled by it / `read_voltage_v`) |
//! | `adc_cycle_s` | s | 1e-12 ..= 1e-6 | one SAR cycle (bits + 1 cycles per conversion) |
//! | `input_bits` | bit | 1 ..= 16 | input precision, applied bit-serially |
//! | `columns_per_weight` | - | 1 ..= 64 | cells (columns) per weight |
//! | `row_activity` | - | (0, 1] | share of rows driven per input bit |
//! | `cap_ideal_gate_f_per_m`, `cap_fringe_f_per_m` | F/m | (0, 1e-7] | gate capacitance per width |
//! | `pn_size_ratio` | - | 0.2 ..= 5 | PMOS / NMOS width ratio |
//! | `adder_activity` | - | (0, 1] | switching activity of the adders |
//! | `clock_hz` | Hz | 1e6 ..= 1e11 | digital clock (one accumulation per cycle) |
//! | `pulse_voltage_v` | V | (0, 10] | kinetics pulse amplitude at input 1 (V = x * this) |
//! | `pulse_width_s` | s | (0, 1e-2] | kinetics pulse width |
//! | `state_at_g_on` | - | (0, 1e6] | kinetics state w at which the device reaches 1 / r_on |
//! | `kinetics_devices_per_adc` | - | 1 ..= 1024 | kinetics devices sharing one ADC |

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The numbers of a technology card (SI units). See the module table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct CardValues {
    pub feature_size_m: f64,
    pub vdd_v: f64,
    pub temperature_k: f64,
    pub read_voltage_v: f64,
    pub read_pulse_s: f64,
    pub r_on_ohm: f64,
    pub r_off_ohm: f64,
    pub wire_cap_f_per_m: f64,
    pub cell_height_f: f64,
    pub cell_width_f: f64,
    pub subarray_rows: u32,
    pub subarray_cols: u32,
    pub cols_per_adc: u32,
    pub adc_bits: u32,
    pub adc_power_per_bit_w: f64,
    pub adc_power_base_w: f64,
    pub adc_column_coeff: f64,
    pub adc_column_exponent: f64,
    pub adc_fit_read_voltage_v: f64,
    pub adc_cycle_s: f64,
    pub input_bits: u32,
    pub columns_per_weight: u32,
    pub row_activity: f64,
    pub cap_ideal_gate_f_per_m: f64,
    pub cap_fringe_f_per_m: f64,
    pub pn_size_ratio: f64,
    pub adder_activity: f64,
    pub clock_hz: f64,
    pub pulse_voltage_v: f64,
    pub pulse_width_s: f64,
    pub state_at_g_on: f64,
    pub kinetics_devices_per_adc: u32,
}

/// A technology card: values plus the source of each.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Card {
    /// Short name (a preset's name).
    pub name: String,
    /// What the card describes.
    #[serde(default)]
    pub description: String,
    /// The numbers.
    pub values: CardValues,
    /// Field name -> where the value comes from.
    #[serde(default)]
    pub sources: BTreeMap<String, String>,
}

/// A closed or half-open range a field must lie in.
#[derive(Clone, Copy, Debug)]
struct Range {
    lo: f64,
    lo_open: bool,
    hi: f64,
}

impl Range {
    const fn closed(lo: f64, hi: f64) -> Self {
        Range {
            lo,
            lo_open: false,
            hi,
        }
    }
    const fn open_lo(lo: f64, hi: f64) -> Self {
        Range {
            lo,
            lo_open: true,
            hi,
        }
    }
    fn contains(&self, v: f64) -> bool {
        v.is_finite()
            && (if self.lo_open {
                v > self.lo
            } else {
                v >= self.lo
            })
            && v <= self.hi
    }
    fn render(&self) -> String {
        format!(
            "{}{}, {}]",
            if self.lo_open { "(" } else { "[" },
            self.lo,
            self.hi
        )
    }
}

/// The preset cards shipped with memkin: (name, TOML text).
pub const PRESETS: &[(&str, &str)] = &[
    (
        "neurosim-22nm",
        include_str!("../../assets/cards/neurosim-22nm.toml"),
    ),
    (
        "neurosim-130nm",
        include_str!("../../assets/cards/neurosim-130nm.toml"),
    ),
];

/// The default card: NeuroSim V1.4's default technology (22 nm LP, RRAM 1T1R).
pub const DEFAULT_PRESET: &str = "neurosim-22nm";

impl CardValues {
    /// Every field as (name, value, valid range), in table order.
    fn fields(&self) -> Vec<(&'static str, f64, Range)> {
        let r = Range::closed;
        let o = Range::open_lo;
        vec![
            ("feature_size_m", self.feature_size_m, r(22e-9, 1e-6)),
            ("vdd_v", self.vdd_v, o(0.0, 5.0)),
            ("temperature_k", self.temperature_k, r(200.0, 400.0)),
            ("read_voltage_v", self.read_voltage_v, o(0.0, 2.0)),
            ("read_pulse_s", self.read_pulse_s, o(0.0, 1e-3)),
            ("r_on_ohm", self.r_on_ohm, r(1e2, 1e10)),
            ("r_off_ohm", self.r_off_ohm, r(1e2, 1e10)),
            ("wire_cap_f_per_m", self.wire_cap_f_per_m, o(0.0, 1e-8)),
            ("cell_height_f", self.cell_height_f, r(1.0, 100.0)),
            ("cell_width_f", self.cell_width_f, r(1.0, 100.0)),
            ("subarray_rows", self.subarray_rows as f64, r(8.0, 4096.0)),
            ("subarray_cols", self.subarray_cols as f64, r(8.0, 4096.0)),
            ("cols_per_adc", self.cols_per_adc as f64, r(1.0, 1024.0)),
            ("adc_bits", self.adc_bits as f64, r(1.0, 12.0)),
            (
                "adc_power_per_bit_w",
                self.adc_power_per_bit_w,
                r(0.0, 1e-2),
            ),
            ("adc_power_base_w", self.adc_power_base_w, r(0.0, 1e-2)),
            ("adc_column_coeff", self.adc_column_coeff, r(0.0, 10.0)),
            ("adc_column_exponent", self.adc_column_exponent, o(0.0, 5.0)),
            (
                "adc_fit_read_voltage_v",
                self.adc_fit_read_voltage_v,
                o(0.0, 2.0),
            ),
            ("adc_cycle_s", self.adc_cycle_s, r(1e-12, 1e-6)),
            ("input_bits", self.input_bits as f64, r(1.0, 16.0)),
            (
                "columns_per_weight",
                self.columns_per_weight as f64,
                r(1.0, 64.0),
            ),
            ("row_activity", self.row_activity, o(0.0, 1.0)),
            (
                "cap_ideal_gate_f_per_m",
                self.cap_ideal_gate_f_per_m,
                o(0.0, 1e-7),
            ),
            ("cap_fringe_f_per_m", self.cap_fringe_f_per_m, o(0.0, 1e-7)),
            ("pn_size_ratio", self.pn_size_ratio, r(0.2, 5.0)),
            ("adder_activity", self.adder_activity, o(0.0, 1.0)),
            ("clock_hz", self.clock_hz, r(1e6, 1e11)),
            ("pulse_voltage_v", self.pulse_voltage_v, o(0.0, 10.0)),
            ("pulse_width_s", self.pulse_width_s, o(0.0, 1e-2)),
            ("state_at_g_on", self.state_at_g_on, o(0.0, 1e6)),
            (
                "kinetics_devices_per_adc",
                self.kinetics_devices_per_adc as f64,
                r(1.0, 1024.0),
            ),
        ]
    }

    /// Names of every field, in table order.
    pub fn field_names(&self) -> Vec<&'static str> {
        self.fields().into_iter().map(|f| f.0).collect()
    }

    /// On conductance 1 / r_on (S).
    pub fn g_on(&self) -> f64 {
        1.0 / self.r_on_ohm
    }

    /// Off conductance 1 / r_off (S).
    pub fn g_off(&self) -> f64 {
        1.0 / self.r_off_ohm
    }

    /// Cell area in m^2: height x width in F^2, times F^2.
    pub fn cell_area_m2(&self) -> f64 {
        self.cell_height_f * self.cell_width_f * self.feature_size_m.powi(2)
    }
}

impl Card {
    /// Parses a card from text (TOML, or JSON when `path` ends in `.json`)
    /// and checks it. `path` names the card in errors.
    pub fn from_text(path: &Path, text: &str) -> Result<Card> {
        let card: Card = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(text).map_err(|e| Error::bad_file(path, format!("{e}")))?
        } else {
            toml::from_str(text).map_err(|e| {
                let msg = e.message().to_string();
                let line = e
                    .span()
                    .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
                match line {
                    Some(l) => Error::bad_file(path, format!("line {l}: {msg}")),
                    None => Error::bad_file(path, msg),
                }
            })?
        };
        card.check(&path.display().to_string())?;
        Ok(card)
    }

    /// A preset by name.
    pub fn preset(name: &str) -> Result<Card> {
        let (n, text) = PRESETS.iter().find(|(n, _)| *n == name).ok_or_else(|| {
            Error::invalid(
                "--card",
                name,
                format!(
                    "a card file (.toml/.json) or a preset: {}",
                    PRESETS.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
        Card::from_text(Path::new(&format!("preset {n}")), text)
    }

    /// The default card ([`DEFAULT_PRESET`]).
    pub fn default_card() -> Card {
        Card::preset(DEFAULT_PRESET).expect("the embedded default card is valid (tested)")
    }

    /// A preset name, or a path to a card file.
    pub fn resolve(spec: &str) -> Result<Card> {
        if PRESETS.iter().any(|(n, _)| *n == spec) {
            return Card::preset(spec);
        }
        let path = Path::new(spec);
        if !path.exists() {
            return Err(Error::NotFound {
                path: path.to_path_buf(),
                hint: format!(
                    "; --card takes a card file or a preset ({})",
                    PRESETS.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
                ),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Card::from_text(path, &text)
    }

    /// [`Card::resolve`] with a card file's path taken relative to `base` (a
    /// spec's folder) unless it is absolute; presets are names, not paths.
    pub fn resolve_in(spec: &str, base: Option<&Path>) -> Result<Card> {
        match base {
            Some(b)
                if !PRESETS.iter().any(|(n, _)| *n == spec) && Path::new(spec).is_relative() =>
            {
                Card::resolve(&b.join(spec).to_string_lossy())
            }
            _ => Card::resolve(spec),
        }
    }

    /// Checks every value against its range, `r_off > r_on`, and that every
    /// source names a field. Errors name `origin`, the field and its range.
    pub fn check(&self, origin: &str) -> Result<()> {
        let v = &self.values;
        for (name, value, range) in v.fields() {
            if !range.contains(value) {
                return Err(Error::invalid(
                    format!("{origin}: values.{name}"),
                    value,
                    format!("in {}", range.render()),
                ));
            }
        }
        if v.r_off_ohm <= v.r_on_ohm {
            return Err(Error::invalid(
                format!("{origin}: values.r_off_ohm"),
                v.r_off_ohm,
                format!("greater than r_on_ohm = {}", v.r_on_ohm),
            ));
        }
        let names = v.field_names();
        for k in self.sources.keys() {
            if !names.contains(&k.as_str()) {
                return Err(Error::invalid(
                    format!("{origin}: sources.{k}"),
                    k,
                    "the name of a field of [values]",
                ));
            }
        }
        Ok(())
    }

    /// Fields of `[values]` with no entry in `[sources]`.
    pub fn unsourced(&self) -> Vec<&'static str> {
        self.values
            .field_names()
            .into_iter()
            .filter(|n| self.sources.get(*n).is_none_or(|s| s.trim().is_empty()))
            .collect()
    }
}
