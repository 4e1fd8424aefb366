//! Dataset loaders: one file per format. Samples are f32 in [0, 1] with integer labels.
