// Test kernel for shaders/rng.wgsl (concatenate rng.wgsl + rng_test.wgsl).
//
// Case i reads inputs[2i] = counter and inputs[2i + 1].xy = key, and writes
//   outputs[3i]     = philox4x32_10(counter, key)                       (bit-exact)
//   outputs[3i + 1] = bitcast<u32>(uniform_f32(lane)) for the 4 lanes   (bit-exact)
//   outputs[3i + 2] = bitcast<u32>(philox_normal4(counter, key))        (statistical)
// The CPU twin is `expected_rng_test_outputs` in tests/integration/rng.rs.

@group(0) @binding(0) var<storage, read> inputs: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> outputs: array<vec4<u32>>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= arrayLength(&inputs) / 2u || 3u * i + 2u >= arrayLength(&outputs)) {
        return;
    }
    let ctr = inputs[2u * i];
    let key = inputs[2u * i + 1u].xy;
    let bits = philox4x32_10(ctr, key);
    outputs[3u * i] = bits;
    outputs[3u * i + 1u] = vec4<u32>(
        bitcast<u32>(uniform_f32(bits.x)),
        bitcast<u32>(uniform_f32(bits.y)),
        bitcast<u32>(uniform_f32(bits.z)),
        bitcast<u32>(uniform_f32(bits.w)),
    );
    outputs[3u * i + 2u] = bitcast<vec4<u32>>(philox_normal4(ctr, key));
}
