//! The shader registry: every WGSL kernel, loaded with `include_str!`, with the
//! shared `common.wgsl` prepended. A plain CPU test validates each with naga and
//! checks that its workgroup size equals the Rust constant.

use crate::model::ddk_ode::DdkOde;
use crate::model::diffusive::Diffusive;
use crate::model::linear_drift::LinearDrift;
use crate::model::{DeviceModel, INTEGRATE_WGSL, Model};

/// Shared helpers prepended to every kernel.
pub const COMMON: &str = include_str!("../../../shaders/common.wgsl");

/// One compute kernel.
#[derive(Clone, Copy, Debug)]
pub struct ShaderSource {
    /// Registry name (also the pipeline label).
    pub name: &'static str,
    /// The kernel's own WGSL (without the prepended parts).
    pub body: &'static str,
    /// Extra includable WGSL files prepended after `common.wgsl`.
    pub includes: &'static [&'static str],
    /// Entry point.
    pub entry: &'static str,
    /// `@workgroup_size` x of the entry point, as the Rust side dispatches it.
    pub workgroup_size: u32,
}

impl ShaderSource {
    /// The full source handed to wgpu: common, includes, then the body.
    pub fn full_source(&self) -> String {
        let mut s = String::from(COMMON);
        for inc in self.includes {
            s.push('\n');
            s.push_str(inc);
        }
        s.push('\n');
        s.push_str(self.body);
        s
    }
}

/// Philox4x32-10 and its uniforms/normals (twin: `rng`).
pub const RNG: &str = include_str!("../../../shaders/rng.wgsl");

/// The DDK map kernel.
pub const DDK: ShaderSource = ShaderSource {
    name: "ddk",
    body: include_str!("../../../shaders/ddk.wgsl"),
    includes: &[RNG],
    entry: "main",
    workgroup_size: super::ddk::DDK_WORKGROUP_SIZE,
};

/// The reverse (adjoint) DDK kernel.
pub const DDK_VJP: ShaderSource = ShaderSource {
    name: "ddk_vjp",
    body: include_str!("../../../shaders/ddk_vjp.wgsl"),
    includes: &[],
    entry: "main",
    workgroup_size: super::vjp::VJP_WORKGROUP_SIZE,
};

/// Ridge moments of a kinetics tile (`A^T A` of `[x - shift, onehot(y)]`).
pub const MOMENTS: ShaderSource = ShaderSource {
    name: "moments",
    body: include_str!("../../../shaders/moments.wgsl"),
    includes: &[],
    entry: "main",
    workgroup_size: super::moments::MOMENTS_WORKGROUP_SIZE,
};

/// The linear readout's forward pass over a kinetics tile, as correct counts.
pub const FORWARD: ShaderSource = ShaderSource {
    name: "forward",
    body: include_str!("../../../shaders/forward.wgsl"),
    includes: &[],
    entry: "main",
    workgroup_size: super::forward::FORWARD_WORKGROUP_SIZE,
};

/// A Monte Carlo draw's host steps and readout inference over a kinetics
/// tile, as counts per draw.
pub const MC_FORWARD: ShaderSource = ShaderSource {
    name: "mc_forward",
    body: include_str!("../../../shaders/mc_forward.wgsl"),
    includes: &[RNG],
    entry: "main",
    workgroup_size: super::mc_forward::MC_FORWARD_WORKGROUP_SIZE,
};

/// Failed trajectories per parameter set of a DDK tile.
pub const COUNT_BAD: ShaderSource = ShaderSource {
    name: "count_bad",
    body: include_str!("../../../shaders/count_bad.wgsl"),
    includes: &[],
    entry: "main",
    workgroup_size: super::forward::COUNT_WORKGROUP_SIZE,
};

/// The entry point of the continuous-time kernels (`shaders/ode.wgsl`).
const ODE_BODY: &str = include_str!("../../../shaders/ode.wgsl");

/// The continuous-time kernel of one device model: `common.wgsl`, the model's
/// WGSL, the integrator loops and `shaders/ode.wgsl`.
const fn ode(name: &'static str, includes: &'static [&'static str]) -> ShaderSource {
    ShaderSource {
        name,
        body: ODE_BODY,
        includes,
        entry: "main",
        workgroup_size: super::ode::ODE_WORKGROUP_SIZE,
    }
}

/// `ddk-ode` over a pulse protocol.
pub const ODE_DDK: ShaderSource = ode(
    "ode ddk-ode",
    &[<DdkOde as DeviceModel>::WGSL, INTEGRATE_WGSL],
);
/// `diffusive` over a pulse protocol.
pub const ODE_DIFFUSIVE: ShaderSource = ode(
    "ode diffusive",
    &[<Diffusive as DeviceModel>::WGSL, INTEGRATE_WGSL],
);
/// `linear-drift` over a pulse protocol.
pub const ODE_LINEAR_DRIFT: ShaderSource = ode(
    "ode linear-drift",
    &[<LinearDrift as DeviceModel>::WGSL, INTEGRATE_WGSL],
);

/// The continuous-time kernel of `model`.
pub fn ode_kernel(model: Model) -> &'static ShaderSource {
    match model {
        Model::DdkOde => &ODE_DDK,
        Model::Diffusive => &ODE_DIFFUSIVE,
        Model::LinearDrift => &ODE_LINEAR_DRIFT,
    }
}

/// Every kernel memkin dispatches.
pub const ALL: &[ShaderSource] = &[
    DDK,
    DDK_VJP,
    ODE_DDK,
    ODE_DIFFUSIVE,
    ODE_LINEAR_DRIFT,
    MOMENTS,
    FORWARD,
    MC_FORWARD,
    COUNT_BAD,
];
