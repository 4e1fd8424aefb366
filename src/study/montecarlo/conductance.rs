//! The analog conductance model of the readout weights: each weight matrix
//! mapped onto `[g_min, g_max]`, quantised, perturbed by programming noise,
//! clamped and mapped back (see the table in [`super`]).

use crate::readout::{Model, Network, Trained};
use crate::rng::{Stream, purpose};
use serde::Serialize;

/// The paper's smallest conductance (uS).
pub const PAPER_G_MIN: f64 = 40.0;
/// The paper's largest conductance (uS).
pub const PAPER_G_MAX: f64 = 300.0;

/// Readout weights stored as analog conductances (see the module docs).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Conductance {
    /// Smallest conductance.
    pub g_min: f64,
    /// Largest conductance.
    pub g_max: f64,
    /// Mean of the additive programming noise.
    pub noise_mean: f64,
    /// Standard deviation of the programming noise.
    pub noise_std: f64,
    /// Quantisation to `2^bits` levels, if any.
    pub quant_bits: Option<u32>,
}

impl Conductance {
    /// Programs one weight matrix in place: map, quantise, add noise, clamp,
    /// map back. `offset` is the flat index of `w[0]` in the model's
    /// parameters (it addresses the noise counters).
    pub fn program(&self, w: &mut [f64], stream: &Stream, draw: u32, offset: usize) {
        self.program_at(w, stream, [draw, 0], offset)
    }

    /// [`Conductance::program`] with the noise at counters `[draw, j / 2,
    /// CONDUCTANCE, step]` (a later programming of the same draw's weights,
    /// as the paper protocol's evaluations do, takes another `step`).
    pub fn program_at(&self, w: &mut [f64], stream: &Stream, at: [u32; 2], offset: usize) {
        let [draw, step] = at;
        let m = w.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        if m <= 0.0 || !m.is_finite() {
            return;
        }
        let c = 0.5 * (self.g_min + self.g_max);
        let s = 0.5 * (self.g_max - self.g_min) / m;
        let noisy = self.noise_std > 0.0 || self.noise_mean != 0.0;
        let level = self
            .quant_bits
            .map(|b| (self.g_max - self.g_min) / ((1u64 << b) - 1) as f64);
        for (j, v) in w.iter_mut().enumerate() {
            let mut g = c + s * *v;
            if let Some(step) = level {
                g = self.g_min + ((g - self.g_min) / step).round() * step;
            }
            if noisy {
                let i = offset + j;
                let (z0, z1) = stream.normal_pair(draw, (i / 2) as u32, purpose::CONDUCTANCE, step);
                let z = if i.is_multiple_of(2) { z0 } else { z1 };
                g += self.noise_mean + self.noise_std * z;
            }
            *v = (g.clamp(self.g_min, self.g_max) - c) / s;
        }
    }

    /// Programs every weight matrix of `net` in place for `draw` (biases stay
    /// digital).
    pub fn program_network(&self, net: &mut Network, stream: &Stream, draw: u32) {
        self.program_network_at(net, stream, [draw, 0])
    }

    /// [`Conductance::program_network`] at counters `[draw, .., CONDUCTANCE,
    /// step]` (see [`Conductance::program_at`]).
    pub fn program_network_at(&self, net: &mut Network, stream: &Stream, at: [u32; 2]) {
        for l in 1..=net.n_layers() {
            let (wo, bo, _) = net.layer_range(l);
            let mut w: Vec<f64> = net.params[wo..bo].iter().map(|&v| v as f64).collect();
            self.program_at(&mut w, stream, at, wo);
            for (p, v) in net.params[wo..bo].iter_mut().zip(w) {
                *p = v as f32;
            }
        }
    }

    /// A copy of `readout` with every weight matrix programmed for `draw`.
    pub fn perturb(&self, readout: &Trained, stream: &Stream, draw: u32) -> Trained {
        let mut out = readout.clone();
        match &mut out.model {
            Model::Net(net) => self.program_network(net, stream, draw),
            Model::Ridge(r) => self.program(&mut r.weights, stream, draw, 0),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conductance_round_trip_without_noise_keeps_weights_and_clamps_with_it() {
        let c = Conductance {
            g_min: 40.0,
            g_max: 300.0,
            noise_mean: 0.0,
            noise_std: 0.0,
            quant_bits: None,
        };
        let s = Stream::new(1);
        let mut w = vec![-2.0, 0.5, 1.0, 2.0];
        c.program(&mut w, &s, 0, 0);
        for (a, b) in w.iter().zip([-2.0, 0.5, 1.0, 2.0]) {
            assert!((a - b).abs() < 1e-12);
        }
        // One bit: every weight becomes -max or +max.
        let q = Conductance {
            quant_bits: Some(1),
            ..c.clone()
        };
        let mut w = vec![-2.0, -0.1, 0.1, 2.0];
        q.program(&mut w, &s, 0, 0);
        assert_eq!(w, vec![-2.0, -2.0, 2.0, 2.0]);
        // Huge noise is clamped to the range: |W'| <= max|W|.
        let n = Conductance {
            noise_std: 1e4,
            ..c
        };
        let mut w = vec![-2.0, 0.5, 1.0, 2.0];
        n.program(&mut w, &s, 3, 0);
        assert!(w.iter().all(|v| v.abs() <= 2.0 + 1e-12));
        let mut again = vec![-2.0, 0.5, 1.0, 2.0];
        n.program(&mut again, &s, 3, 0);
        assert_eq!(w, again);
    }
}
