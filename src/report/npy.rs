//! Outputs written atomically: `.npy` arrays (they load with `numpy.load`),
//! text and plots, through the one output layer [`crate::report::output`]
//! (re-exported here for the callers that name it by this path). Reading
//! `.npy` lives in [`crate::data::npy`].

pub use crate::report::output::{Outputs, write_atomic};
