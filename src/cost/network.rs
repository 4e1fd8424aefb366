//! Networks as the chip would run them, and their cost per inference.
//!
//! A [`Network`] is a list of [`Layer`]s: a kinetics layer (one device per
//! sequence, one pulse per step, one conversion per state read) and crossbar
//! layers (a dense `inputs x outputs` weight matrix, applied `uses` times per
//! inference: once for a fully connected layer, once per output position for
//! an unrolled convolution, once per step for a recurrent cell). [`cost`]
//! turns a network and a card into a [`NetworkCost`]: per layer, per
//! component, energy, latency and area, whose totals are sums of their parts.

use super::card::CardValues;
use super::neurosim::{
    Gate, MIN_NMOS_SIZE, adder_area, adder_energy, gate_area_m2, mean_cell_conductance,
    sar_adc_area, sar_adc_energy, sar_adc_latency, wire_cap, wordline_energy,
};
use serde::Serialize;

/// What the kinetics devices did during one inference, summed over every
/// device and step (from simulated trajectories, or a bound).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KineticsActivity {
    /// Joule energy of the programming pulses, sum of (V x)^2 G(w) t_pulse (J).
    pub pulse_j: f64,
    /// Joule energy of the state reads, sum of V_read^2 G(w) t_read (J).
    pub read_j: f64,
    /// SAR ADC energy of the conversions at each read's column resistance 1/G(w) (J).
    pub adc_j: f64,
    /// Driver switching energy of the pulse lines, sum of C_line (V x)^2 (J).
    pub driver_j: f64,
    /// "measured" (from trajectories, `samples` of them) or "bound" (every
    /// state at 1/r_on and every pulse at full amplitude).
    pub basis: String,
    /// Inputs the activity was averaged over (0 for a bound).
    pub samples: usize,
}

/// The kinetics layer: `devices` devices in parallel, `steps` pulses each,
/// `passes` times per inference (voxel slices run one after another).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KineticsLayer {
    /// Devices driven at once (sequences per readout sample).
    pub devices: usize,
    /// Steps per sequence (T; T reads, T - 1 pulses).
    pub steps: usize,
    /// Passes per inference.
    pub passes: usize,
    /// Device parameters (2 for scalar alpha, beta; 2 T per step).
    pub parameters: usize,
    /// Energy of what the devices did.
    pub activity: KineticsActivity,
}

/// A crossbar layer: an `inputs x outputs` matrix applied `uses` times.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CrossbarLayer {
    /// Rows of the weight matrix (fan-in).
    pub inputs: usize,
    /// Columns of the weight matrix (fan-out), before `columns_per_weight`.
    pub outputs: usize,
    /// Applications per inference.
    pub uses: usize,
    /// Parameters beyond the weights (biases, normalisation), counted but
    /// not mapped onto the array.
    pub extra_parameters: usize,
}

/// One layer of a network.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum LayerKind {
    /// The kinetics layer.
    Kinetics(KineticsLayer),
    /// A crossbar layer.
    Crossbar(CrossbarLayer),
}

/// A named layer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Layer {
    /// Name, e.g. `conv1`, `fc 784-48`.
    pub name: String,
    /// What it is.
    #[serde(flatten)]
    pub kind: LayerKind,
}

impl Layer {
    /// A fully connected layer with biases, applied `uses` times.
    pub fn fc(name: &str, inputs: usize, outputs: usize, uses: usize) -> Layer {
        Layer {
            name: name.to_string(),
            kind: LayerKind::Crossbar(CrossbarLayer {
                inputs,
                outputs,
                uses,
                extra_parameters: outputs,
            }),
        }
    }

    /// A crossbar layer with `extra` non-weight parameters.
    pub fn crossbar(name: &str, inputs: usize, outputs: usize, uses: usize, extra: usize) -> Layer {
        Layer {
            name: name.to_string(),
            kind: LayerKind::Crossbar(CrossbarLayer {
                inputs,
                outputs,
                uses,
                extra_parameters: extra,
            }),
        }
    }

    /// Parameters: weights + extra (crossbar), device parameters (kinetics).
    pub fn parameters(&self) -> usize {
        match &self.kind {
            LayerKind::Kinetics(k) => k.parameters,
            LayerKind::Crossbar(c) => c.inputs * c.outputs + c.extra_parameters,
        }
    }

    /// Operations as the paper counts them: multiply-adds of the weights per
    /// use, 2 per device step.
    pub fn operations(&self) -> usize {
        match &self.kind {
            LayerKind::Kinetics(k) => 2 * k.devices * k.steps * k.passes,
            LayerKind::Crossbar(c) => c.inputs * c.outputs * c.uses,
        }
    }
}

/// A network: what one inference runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Network {
    /// Name, e.g. `DDK + FC 784-48-10`.
    pub name: String,
    /// Where its architecture comes from.
    pub source: String,
    /// The layers, in order.
    pub layers: Vec<Layer>,
}

/// Energy, latency and area of one component of one layer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Component {
    /// Component name (`device pulses`, `adc`, `array`, `accumulation`, ...).
    pub name: String,
    /// Energy per inference (J).
    pub energy_j: f64,
    /// Time per inference spent in this component (s).
    pub latency_s: f64,
    /// Silicon area (m^2).
    pub area_m2: f64,
}

/// The cost of one layer: its components and their sums.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerCost {
    /// Layer name.
    pub name: String,
    /// `kinetics` or `crossbar`.
    pub kind: String,
    /// Parameters.
    pub parameters: usize,
    /// Operations per inference.
    pub operations: usize,
    /// Subarrays (crossbar) or devices (kinetics) allocated.
    pub arrays: usize,
    /// Per component.
    pub components: Vec<Component>,
    /// Sum of the components' energies (J).
    pub energy_j: f64,
    /// Sum of the components' latencies (s).
    pub latency_s: f64,
    /// Sum of the components' areas (m^2).
    pub area_m2: f64,
}

/// The cost of one network per inference.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NetworkCost {
    /// Network name.
    pub name: String,
    /// Where its architecture comes from.
    pub source: String,
    /// Parameters (sum over layers).
    pub parameters: usize,
    /// Operations per inference (sum over layers).
    pub operations: usize,
    /// Per layer.
    pub layers: Vec<LayerCost>,
    /// Energy per inference, sum over layers (J).
    pub energy_j: f64,
    /// Latency per inference, sum over layers run one after another (s).
    pub latency_s: f64,
    /// Area, sum over layers (m^2; every weight stationary on its own arrays).
    pub area_m2: f64,
    /// How the kinetics layer's device energy was obtained (`measured` or
    /// `bound`); `None` without a kinetics layer.
    pub kinetics_basis: Option<String>,
}

impl NetworkCost {
    /// Area in mm^2.
    pub fn area_mm2(&self) -> f64 {
        self.area_m2 * 1e6
    }
}

fn component(name: &str, energy_j: f64, latency_s: f64, area_m2: f64) -> Component {
    Component {
        name: name.to_string(),
        energy_j,
        latency_s,
        area_m2,
    }
}

fn layer_cost(
    name: &str,
    kind: &str,
    l: &Layer,
    arrays: usize,
    components: Vec<Component>,
) -> LayerCost {
    LayerCost {
        name: name.to_string(),
        kind: kind.to_string(),
        parameters: l.parameters(),
        operations: l.operations(),
        arrays,
        energy_j: components.iter().map(|c| c.energy_j).sum(),
        latency_s: components.iter().map(|c| c.latency_s).sum(),
        area_m2: components.iter().map(|c| c.area_m2).sum(),
        components,
    }
}

/// Area of one minimum-size inverter (a line driver), m^2.
fn driver_area(c: &CardValues) -> f64 {
    let f = c.feature_size_m;
    gate_area_m2(
        c,
        Gate::Inv,
        MIN_NMOS_SIZE * f,
        c.pn_size_ratio * MIN_NMOS_SIZE * f,
    )
}

/// Device conductance at state `w` (S): linear from 1/r_off at w = 0 to 1/r_on
/// at `state_at_g_on`, clamped to that window.
pub fn conductance(c: &CardValues, w: f64) -> f64 {
    let s = (w / c.state_at_g_on).clamp(0.0, 1.0);
    c.g_off() + (c.g_on() - c.g_off()) * s
}

/// Capacitance of one kinetics device's pulse line: one cell width of wire.
fn pulse_line_cap(c: &CardValues) -> f64 {
    wire_cap(c, c.cell_width_f * c.feature_size_m)
}

/// The kinetics activity of one inference, averaged over inputs: `x` and `w`
/// hold `n` inputs, each `seqs` sequences of `steps` values (inputs in [0, 1]
/// and the states they produced, `w[0]` included).
pub fn kinetics_activity(
    c: &CardValues,
    x: &[f32],
    w: &[f32],
    n: usize,
    seqs: usize,
    steps: usize,
) -> KineticsActivity {
    let (mut pulse, mut read, mut adc, mut driver) = (0.0, 0.0, 0.0, 0.0);
    let c_line = pulse_line_cap(c);
    for s in 0..n * seqs {
        let xs = &x[s * steps..(s + 1) * steps];
        let ws = &w[s * steps..(s + 1) * steps];
        for k in 0..steps {
            let g = conductance(c, ws[k] as f64);
            read += c.read_voltage_v.powi(2) * g * c.read_pulse_s;
            adc += sar_adc_energy(c, 1.0 / g);
            if k >= 1 {
                // The pulse that moved w[k-1] to w[k] saw the device at G(w[k-1]).
                let v = c.pulse_voltage_v * xs[k - 1] as f64;
                pulse += v * v * conductance(c, ws[k - 1] as f64) * c.pulse_width_s;
                driver += c_line * v * v;
            }
        }
    }
    let per = 1.0 / n.max(1) as f64;
    KineticsActivity {
        pulse_j: pulse * per,
        read_j: read * per,
        adc_j: adc * per,
        driver_j: driver * per,
        basis: "measured".into(),
        samples: n,
    }
}

/// An upper bound on the kinetics activity with no trajectories: every state
/// at 1/r_on, every pulse at full amplitude, for `seqs` x `steps` per input.
pub fn kinetics_bound(c: &CardValues, seqs: usize, steps: usize) -> KineticsActivity {
    let reads = (seqs * steps) as f64;
    let pulses = (seqs * steps.saturating_sub(1)) as f64;
    let v2 = c.pulse_voltage_v.powi(2);
    KineticsActivity {
        pulse_j: pulses * v2 * c.g_on() * c.pulse_width_s,
        read_j: reads * c.read_voltage_v.powi(2) * c.g_on() * c.read_pulse_s,
        adc_j: reads * sar_adc_energy(c, c.r_on_ohm),
        driver_j: pulses * pulse_line_cap(c) * v2,
        basis: "bound".into(),
        samples: 0,
    }
}

fn kinetics_cost(c: &CardValues, l: &Layer, k: &KineticsLayer) -> LayerCost {
    let a = &k.activity;
    let passes = k.passes as f64;
    let pulses = k.steps.saturating_sub(1) as f64 * passes;
    let reads = k.steps as f64 * passes;
    let group = c.kinetics_devices_per_adc.min(k.devices.max(1) as u32) as f64;
    let adcs = (k.devices as f64 / group).ceil();
    // `activity` is per pass for every device; per inference it repeats `passes` times.
    let comps = vec![
        component(
            "device pulses",
            a.pulse_j * passes,
            pulses * c.pulse_width_s,
            k.devices as f64 * c.cell_area_m2(),
        ),
        component(
            "pulse drivers",
            a.driver_j * passes,
            0.0,
            k.devices as f64 * driver_area(c),
        ),
        component(
            "state reads",
            a.read_j * passes,
            reads * c.read_pulse_s,
            0.0,
        ),
        component(
            "adc",
            a.adc_j * passes,
            reads * group * sar_adc_latency(c),
            adcs * sar_adc_area(c),
        ),
    ];
    layer_cost(&l.name, "kinetics", l, k.devices, comps)
}

/// Bits of the shift-add accumulator of a crossbar layer: ADC bits, plus the
/// input bits shifted in, plus the partial sums of `row_tiles` x
/// `columns_per_weight` columns.
pub fn accumulator_bits(c: &CardValues, row_tiles: usize) -> u32 {
    let parts = (row_tiles * c.columns_per_weight as usize).max(1);
    c.adc_bits + c.input_bits + (parts as f64).log2().ceil() as u32
}

fn crossbar_cost(c: &CardValues, l: &Layer, x: &CrossbarLayer) -> LayerCost {
    let (rows, cols) = (c.subarray_rows as usize, c.subarray_cols as usize);
    let total_cols = x.outputs * c.columns_per_weight as usize;
    let rt = x.inputs.div_ceil(rows);
    let ct = total_cols.div_ceil(cols);
    let tiles = rt * ct;
    let g = mean_cell_conductance(c);
    let acc_bits = accumulator_bits(c, rt);
    let e_add = adder_energy(c, acc_bits);
    // One read cycle (one input bit) over every tile.
    let (mut e_wl, mut e_adc, mut e_acc) = (0.0, 0.0, 0.0);
    for i in 0..rt {
        let r = rows.min(x.inputs - i * rows);
        let col_res = 1.0 / (r as f64 * c.row_activity * g);
        for j in 0..ct {
            let cc = cols.min(total_cols - j * cols);
            e_wl += wordline_energy(c, r as u32, cc as u32);
            e_adc += cc as f64 * sar_adc_energy(c, col_res);
            e_acc += cc as f64 * e_add;
        }
    }
    let cycles = (x.uses * c.input_bits as usize) as f64;
    let adcs_per_tile = cols.div_ceil(c.cols_per_adc as usize) as f64;
    let mux = c.cols_per_adc.min(cols as u32) as f64;
    let comps = vec![
        component(
            "array",
            e_wl * cycles,
            cycles * c.read_pulse_s,
            tiles as f64
                * (rows as f64 * cols as f64 * c.cell_area_m2() + rows as f64 * driver_area(c)),
        ),
        component(
            "adc",
            e_adc * cycles,
            cycles * mux * sar_adc_latency(c),
            tiles as f64 * adcs_per_tile * sar_adc_area(c),
        ),
        component(
            "accumulation",
            e_acc * cycles,
            cycles / c.clock_hz,
            tiles as f64 * adcs_per_tile * adder_area(c, acc_bits),
        ),
    ];
    layer_cost(&l.name, "crossbar", l, tiles, comps)
}

/// The cost of `net` on card `c`, per inference.
pub fn cost(c: &CardValues, net: &Network) -> NetworkCost {
    let layers: Vec<LayerCost> = net
        .layers
        .iter()
        .map(|l| match &l.kind {
            LayerKind::Kinetics(k) => kinetics_cost(c, l, k),
            LayerKind::Crossbar(x) => crossbar_cost(c, l, x),
        })
        .collect();
    NetworkCost {
        name: net.name.clone(),
        source: net.source.clone(),
        parameters: layers.iter().map(|l| l.parameters).sum(),
        operations: layers.iter().map(|l| l.operations).sum(),
        energy_j: layers.iter().map(|l| l.energy_j).sum(),
        latency_s: layers.iter().map(|l| l.latency_s).sum(),
        area_m2: layers.iter().map(|l| l.area_m2).sum(),
        kinetics_basis: net.layers.iter().find_map(|l| match &l.kind {
            LayerKind::Kinetics(k) => Some(k.activity.basis.clone()),
            LayerKind::Crossbar(_) => None,
        }),
        layers,
    }
}
