//! Encoders: how a sample becomes sequences (image rows, voxel slices, pooled waveforms).
