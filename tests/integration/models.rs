//! Device models and continuous-time integrators.
