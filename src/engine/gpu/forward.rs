//! The readout's forward pass on the device (`shaders/forward.wgsl`) and the
//! failed-trajectory count (`shaders/count_bad.wgsl`): what a sweep point or a
//! Monte Carlo draw downloads instead of its features. Dispatched by
//! [`super::GpuReducer::forward`]; CPU twin of the forward pass:
//! [`crate::readout::forward_correct`] (layer 3; it lives with the readout).

/// Invocations per workgroup of `shaders/forward.wgsl` (its `WG`).
pub const FORWARD_WORKGROUP_SIZE: u32 = 64;
/// Invocations per workgroup of `shaders/count_bad.wgsl` (its `WG`).
pub const COUNT_WORKGROUP_SIZE: u32 = 64;
/// Most classes the forward kernel scores (its `MAX_C`: one register array).
pub const MAX_CLASSES: usize = 64;

/// Uniform block of `shaders/forward.wgsl`. Keep in sync with `ForwardUniform` there.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ForwardUniform {
    /// Features per sample.
    pub f: u32,
    /// Classes.
    pub c: u32,
    /// Samples in the tile.
    pub rows: u32,
    /// Trajectories per set in the tile.
    pub seqs: u32,
    /// T.
    pub steps: u32,
    /// Parameter sets in the tile.
    pub sets: u32,
    /// Workgroups along x.
    pub grid_x: u32,
    /// Padding to 16 bytes.
    pub pad: u32,
}

/// Uniform block of `shaders/count_bad.wgsl`. Keep in sync with `CountUniform` there.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct CountUniform {
    /// Trajectories in the tile.
    pub n_traj: u32,
    /// Trajectories per set.
    pub seqs: u32,
    /// Workgroups along x.
    pub grid_x: u32,
    /// Padding to 16 bytes.
    pub pad: u32,
}

/// A linear readout per parameter set (or per draw), in the layout the
/// forward kernel binds: `z = (x - mean) * scale`, `scores = bias + z W`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReadoutArrays {
    /// Features.
    pub f: usize,
    /// Classes (at most [`MAX_CLASSES`]).
    pub c: usize,
    /// `[sets, f]`.
    pub mean: Vec<f32>,
    /// `[sets, f]`.
    pub scale: Vec<f32>,
    /// `[sets, f, c]`.
    pub weights: Vec<f32>,
    /// `[sets, c]`.
    pub bias: Vec<f32>,
}

impl ReadoutArrays {
    /// Parameter sets (or draws) held.
    pub fn sets(&self) -> usize {
        self.bias.len() / self.c.max(1)
    }

    /// Checks the shapes against `sets` sets.
    pub(super) fn check(&self, sets: usize) -> crate::Result<()> {
        let (f, c) = (self.f, self.c);
        if !(2..=MAX_CLASSES).contains(&c)
            || self.mean.len() != sets * f
            || self.scale.len() != sets * f
            || self.weights.len() != sets * f * c
            || self.bias.len() != sets * c
        {
            return Err(crate::Error::invalid(
                "readout arrays",
                format!(
                    "{} means, {} scales, {} weights, {} biases",
                    self.mean.len(),
                    self.scale.len(),
                    self.weights.len(),
                    self.bias.len()
                ),
                format!(
                    "{sets} sets x ({f} features, {f} x {c} weights, {c} biases), 2 to {MAX_CLASSES} classes"
                ),
            ));
        }
        Ok(())
    }
}
