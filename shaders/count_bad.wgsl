// Failed trajectories per parameter set of a DDK tile, counted from the status
// words of shaders/ddk.wgsl (code in the top 2 bits; 0 = ok). CPU twin: the
// status count in study::sweep (Status != Ok).

// Keep in sync with CountUniform in src/engine/gpu/forward.rs.
struct CountUniform {
    n_traj: u32, // trajectories in the tile
    seqs: u32,   // trajectories per set
    grid_x: u32, // workgroups along x
    _pad: u32,
}

@group(0) @binding(0) var<uniform> u: CountUniform;
@group(0) @binding(1) var<storage, read> status: array<u32>;
@group(0) @binding(2) var<storage, read_write> bad: array<atomic<u32>>; // [sets]

// Keep in sync with COUNT_WORKGROUP_SIZE in src/engine/gpu/forward.rs.
const WG: u32 = 64u;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * (u.grid_x * WG) + gid.x;
    if (i < u.n_traj && (status[i] >> 30u) != 0u) {
        atomicAdd(&bad[i / u.seqs], 1u);
    }
}
