//! The one integration-test binary: each module covers one stage of the data flow.

mod common;
mod cost;
mod data;
mod dispatch;
mod engine;
mod mc;
mod mc_gpu;
mod mc_hardware;
mod mc_paper;
mod models;
mod moments;
mod ode;
mod paper;
mod protocol;
mod readout;
mod rng;
mod safety;
mod study;
mod sweep;
mod text;
mod vjp;
mod vjp_cli;
