//! The shader registry: every WGSL kernel, loaded with `include_str!`, with the
//! shared `common.wgsl` prepended. A plain CPU test validates each with naga and
//! checks that its workgroup size equals the Rust constant.

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

/// Philox4x32-10 and its uniforms/normals (twin: `study::rng`).
pub const RNG: &str = include_str!("../../../shaders/rng.wgsl");

/// The DDK map kernel.
pub const DDK: ShaderSource = ShaderSource {
    name: "ddk",
    body: include_str!("../../../shaders/ddk.wgsl"),
    includes: &[RNG],
    entry: "main",
    workgroup_size: super::ddk::DDK_WORKGROUP_SIZE,
};

/// Every kernel memkin dispatches.
pub const ALL: &[ShaderSource] = &[DDK];
