//! Device models and continuous-time integrators: the exact DDK solution and the
//! integrators against DOP853 references, the paper's map as Euler's special
//! case, convergence orders, the adaptive integrator's efficiency, and the WGSL
//! twins validated by naga.

use memkin::batch::{DeviceParams, Status};
use memkin::engine::cpu::ddk_trajectory;
use memkin::engine::gpu::shaders::COMMON;
use memkin::model::ddk_ode::ddk_exact;
use memkin::model::integrate::{AdaptiveOptions, Integrator, PulseProtocol, simulate_cpu};
use memkin::model::{INTEGRATE_WGSL, Model};

use super::rng::validate_wgsl;

const SIMULATE_TEST_WGSL: &str = include_str!("../../shaders/models/simulate_test.wgsl");

/// `(w0, alpha, c, t, w(t))` from scipy 1.17 `solve_ivp(method="DOP853",
/// rtol=1e-13, atol=1e-15)` on `dw/dt = alpha / w - c`.
const DDK_DOP853: [(f64, f64, f64, f64, f64); 15] = [
    (1.0, 0.7, 1.0, 1.0, 0.7961936184952415),
    (0.1, 0.7, 1.0, 2.0, 0.6850608454213567),
    (0.01, 0.7, 2.0, 0.5, 0.3424469277928715),
    (5.0, 0.7, 0.3, 3.0, 4.540878738896617),
    (50.0, 0.7, 1.0, 40.0, 11.089958958246747),
    (1.0, 0.7, -1.0, 2.0, 3.659154983468781),
    (0.2, 0.7, -0.5, 10.0, 7.621440558995816),
    (1.0, 0.7, 0.0, 3.0, 2.2803508501982788),
    (1.0, 0.7, 1e-06, 1.0, 1.5491925030055118),
    (1.0, 0.7, -1e-06, 1.0, 1.5491941739605368),
    (0.7, 0.7, 1.0, 1.0, 0.7),
    (0.69, 0.7, 1.0, 5.0, 0.699992207134406),
    (1.0, 0.143, 0.838, 1.0, 0.38940940009243297),
    (0.001, 1.0, 1.0, 1e-06, 0.0017312433134352696),
    (2.0, 0.5, 4.0, 30.0, 0.125),
];

/// The pulse trains of the reference trajectories below (f32, as the engine reads them).
const X_DDK: [f32; 8] = [0.0, 0.3, 1.0, 0.77, -0.4, 0.9, 0.1, 0.6];
const X_DIFFUSIVE: [f32; 8] = [0.2, 1.0, 0.5, 0.0, 0.9, 0.3, 0.7, 0.4];
const X_DRIFT: [f32; 8] = [0.5, 1.0, -0.3, 0.8, 0.2, -0.6, 1.0, 0.4];

/// DOP853 (rtol 1e-13) features, each segment integrated separately.
/// ddk-ode, alpha 0.7, beta 1, w0 1, v_scale 1.5, tau 0.8, rest 0.3.
const DDK_TRAIN: [f64; 8] = [
    1.0,
    1.5937377450509245,
    1.7133000415017012,
    1.152300999611285,
    1.0404071974586222,
    2.0138246539753695,
    1.4366945806880955,
    1.7970660402005296,
];
/// diffusive, defaults, w0 0, v_scale 1, tau 1, rest 2 (read currents, µA).
const DIFFUSIVE_TRAIN: [f64; 8] = [
    0.3884349199257851,
    0.564052308398435,
    2.069201668990176,
    2.1360354773685635,
    1.683089255352924,
    2.6054666336348937,
    2.30305401506738,
    2.621004777134496,
];
/// linear-drift, defaults (Joglekar, p = 1), w0 0.1, v_scale 1, tau 0.2, rest 0.1 (S).
const JOGLEKAR_TRAIN: [f64; 8] = [
    6.939625260235948e-05,
    7.163935310243746e-05,
    7.9134258641813e-05,
    7.630929938388508e-05,
    8.558978160134735e-05,
    8.904029292258209e-05,
    8.022707401629678e-05,
    9.824546824508608e-05,
];
/// linear-drift, Biolek window, p = 2, otherwise as above.
const BIOLEK_TRAIN: [f64; 8] = [
    6.939625260235948e-05,
    7.540774768674501e-05,
    9.424860843846898e-05,
    8.856185940048159e-05,
    0.00011346663310021322,
    0.00012346809814553836,
    0.00010011548351905409,
    0.0001578412166690839,
];

/// A model, its parameters, w0, inputs, protocol and DOP853 features.
type Case<'a> = (
    Model,
    Vec<f64>,
    f64,
    &'a [f32; 8],
    PulseProtocol,
    &'a [f64; 8],
);

fn pulse(v_scale: f64, tau: f64, rest: f64) -> PulseProtocol {
    PulseProtocol { v_scale, tau, rest }
}

fn adaptive(rtol: f64, atol: f64) -> Integrator {
    Integrator::Adaptive(AdaptiveOptions {
        rtol,
        atol,
        max_steps: 100_000,
    })
}

/// Largest relative error (the worst index is reported on failure).
fn assert_close(what: &str, got: &[f64], want: &[f64], rtol: f64) {
    assert_eq!(got.len(), want.len());
    let (mut worst, mut at) = (0.0f64, 0);
    for i in 0..got.len() {
        let e = ((got[i] - want[i]) / want[i].abs().max(1e-300)).abs();
        // NaN counts as the worst.
        if e.is_nan() || e > worst {
            worst = e;
            at = i;
        }
    }
    assert!(
        worst <= rtol,
        "{what}: worst index {at}: got {:e}, want {:e}, rel err {worst:e} > {rtol:e}",
        got[at],
        want[at]
    );
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn exact_ddk_solution_matches_dop853_to_1e_10_on_every_branch() {
    for (w0, alpha, c, t, want) in DDK_DOP853 {
        let got = ddk_exact(w0, alpha, c, t);
        let err = ((got - want) / want).abs();
        assert!(
            err < 1e-10,
            "w0 {w0} alpha {alpha} c {c} t {t}: got {got}, want {want}, rel {err:e}"
        );
    }
}

#[test]
fn exact_integrator_matches_dop853_over_a_pulse_train_with_rests_and_negative_pulses() {
    let (f, stats) = simulate_cpu(
        Model::DdkOde,
        &Integrator::Exact,
        &X_DDK,
        &[0.7, 1.0],
        1.0,
        &pulse(1.5, 0.8, 0.3),
    );
    assert_eq!(stats.status, Status::Ok);
    assert_eq!(stats.rhs_evals, 0);
    assert_close("ddk exact train", &f, &DDK_TRAIN, 1e-10);
}

#[test]
fn euler_with_one_unit_substep_reproduces_the_papers_map_bit_for_bit() {
    // Includes the published constants (0.143, 0.838), which drive the map
    // non-positive: the status and the first bad step must agree too.
    let x: Vec<f32> = (0..64)
        .map(|k| ((k * 37 % 64) as f32 / 63.0).powf(0.7))
        .collect();
    for (alpha, beta) in [(0.7, 1.0), (0.3, 0.5), (0.143, 0.838), (2.0, 0.1)] {
        let params = DeviceParams::scalar(&[(alpha, beta)], 1.0).unwrap();
        let mut want = vec![0.0; x.len()];
        let (st, first) = ddk_trajectory(&x, &params, 0, &mut want, None, None);
        let (got, stats) = simulate_cpu(
            Model::DdkOde,
            &Integrator::Euler { substeps: 1 },
            &x,
            &[alpha, beta],
            1.0,
            &PulseProtocol::PAPER,
        );
        assert_eq!(
            (stats.status, stats.first_bad),
            (st, first),
            "alpha {alpha} beta {beta}"
        );
        for k in 0..x.len() {
            assert_eq!(
                got[k].to_bits(),
                want[k].to_bits(),
                "alpha {alpha} beta {beta} step {k}: {} vs {}",
                got[k],
                want[k]
            );
        }
        // One evaluation per step, up to the first bad one.
        let steps = if st == Status::Ok {
            x.len() as u32 - 1
        } else {
            first
        };
        assert_eq!(stats.rhs_evals, steps as u64);
    }
}

/// Error of fixed-step `method(n)` against the exact solution (max over features).
fn ddk_error(make: fn(u32) -> Integrator, n: u32) -> f64 {
    let p = pulse(1.0, 1.0, 0.5);
    let params = [0.7, 1.0];
    let (exact, _) = simulate_cpu(Model::DdkOde, &Integrator::Exact, &X_DDK, &params, 1.0, &p);
    let (got, st) = simulate_cpu(Model::DdkOde, &make(n), &X_DDK, &params, 1.0, &p);
    assert_eq!(st.status, Status::Ok);
    max_abs_diff(&got, &exact)
}

fn assert_order(name: &str, make: fn(u32) -> Integrator, n: u32, p: i32) -> f64 {
    let ratio = ddk_error(make, n) / ddk_error(make, 2 * n);
    let want = 2f64.powi(p);
    eprintln!(
        "{name}: error ratio n = {n} -> {}: {ratio:.4} (2^{p} = {want})",
        2 * n
    );
    assert!(
        ratio > 0.8 * want && ratio < 1.25 * want,
        "{name}: halving the step divided the error by {ratio}, want about {want}"
    );
    ratio
}

#[test]
fn euler_heun_and_rk4_converge_at_orders_1_2_and_4() {
    assert_order("euler", |n| Integrator::Euler { substeps: n }, 64, 1);
    assert_order("heun", |n| Integrator::Heun { substeps: n }, 32, 2);
    assert_order("rk4", |n| Integrator::Rk4 { substeps: n }, 8, 4);
}

#[test]
fn rk4_converges_at_order_4_on_the_diffusive_and_linear_drift_models() {
    let cases: [Case; 3] = [
        (
            Model::Diffusive,
            Model::Diffusive.defaults(),
            0.0,
            &X_DIFFUSIVE,
            pulse(1.0, 1.0, 2.0),
            &DIFFUSIVE_TRAIN,
        ),
        (
            Model::LinearDrift,
            Model::LinearDrift.defaults(),
            0.1,
            &X_DRIFT,
            pulse(1.0, 0.2, 0.1),
            &JOGLEKAR_TRAIN,
        ),
        (
            Model::LinearDrift,
            vec![100.0, 16e3, 10.0, 1e4, 2.0, 1.0],
            0.1,
            &X_DRIFT,
            pulse(1.0, 0.2, 0.1),
            &BIOLEK_TRAIN,
        ),
    ];
    for (model, params, w0, x, p, reference) in &cases {
        model.check(params, *w0).unwrap();
        let err = |n| {
            let (f, _) = simulate_cpu(*model, &Integrator::Rk4 { substeps: n }, *x, params, *w0, p);
            f.iter()
                .zip(reference.iter())
                .map(|(a, b)| ((a - b) / b).abs())
                .fold(0.0, f64::max)
        };
        let (e1, e2) = (err(8), err(16));
        let ratio = e1 / e2;
        eprintln!(
            "{} rk4: rel error {e1:.2e} -> {e2:.2e}, ratio n = 8 -> 16: {ratio:.3}",
            model.name()
        );
        assert!(
            e2 > 1e-11,
            "{}: error {e2:e} too close to the reference's accuracy",
            model.name()
        );
        assert!(
            ratio > 0.8 * 16.0 && ratio < 1.25 * 16.0,
            "{}: ratio {ratio}",
            model.name()
        );
    }
}

#[test]
fn adaptive_integrator_matches_dop853_references_of_every_model() {
    let cases: [Case; 4] = [
        (
            Model::DdkOde,
            vec![0.7, 1.0],
            1.0,
            &X_DDK,
            pulse(1.5, 0.8, 0.3),
            &DDK_TRAIN,
        ),
        (
            Model::Diffusive,
            Model::Diffusive.defaults(),
            0.0,
            &X_DIFFUSIVE,
            pulse(1.0, 1.0, 2.0),
            &DIFFUSIVE_TRAIN,
        ),
        (
            Model::LinearDrift,
            Model::LinearDrift.defaults(),
            0.1,
            &X_DRIFT,
            pulse(1.0, 0.2, 0.1),
            &JOGLEKAR_TRAIN,
        ),
        (
            Model::LinearDrift,
            vec![100.0, 16e3, 10.0, 1e4, 2.0, 1.0],
            0.1,
            &X_DRIFT,
            pulse(1.0, 0.2, 0.1),
            &BIOLEK_TRAIN,
        ),
    ];
    for (model, params, w0, x, p, reference) in &cases {
        let (f, st) = simulate_cpu(*model, &adaptive(1e-11, 1e-14), *x, params, *w0, p);
        assert_eq!(st.status, Status::Ok);
        eprintln!(
            "{}: adaptive used {} RHS evaluations ({} rejected steps)",
            model.name(),
            st.rhs_evals,
            st.steps_rejected
        );
        assert_close(model.name(), &f, *reference, 1e-9);
    }
}

#[test]
fn adaptive_integrator_meets_its_tolerance_with_fewer_evaluations_than_rk4() {
    // A stiff-ish start (w0 = 0.02: alpha / w is large) followed by slow relaxation:
    // the case where step control pays.
    let x: Vec<f32> = (0..40)
        .map(|k| if k % 5 == 0 { 1.0 } else { 0.2 })
        .collect();
    let (params, w0, p) = ([0.7, 1.0], 0.02, pulse(1.0, 1.0, 1.0));
    let (exact, _) = simulate_cpu(Model::DdkOde, &Integrator::Exact, &x, &params, w0, &p);
    for rtol in [1e-6, 1e-9] {
        let (f, st) = simulate_cpu(Model::DdkOde, &adaptive(rtol, 1e-14), &x, &params, w0, &p);
        let err = max_abs_diff(&f, &exact);
        let wmax = exact.iter().cloned().fold(0.0, f64::max);
        assert!(
            err <= 10.0 * rtol * wmax,
            "rtol {rtol}: global error {err:e}"
        );
        // The cheapest fixed RK4 reaching the same error.
        let mut n = 1;
        let rk4 = loop {
            let (g, s) = simulate_cpu(
                Model::DdkOde,
                &Integrator::Rk4 { substeps: n },
                &x,
                &params,
                w0,
                &p,
            );
            if s.status == Status::Ok && max_abs_diff(&g, &exact) <= err {
                break s;
            }
            n *= 2;
            assert!(n < 1 << 16);
        };
        eprintln!(
            "rtol {rtol:e}: adaptive error {err:.2e} with {} RHS evaluations; rk4 needs n = {n}, {} evaluations",
            st.rhs_evals, rk4.rhs_evals
        );
        assert!(
            st.rhs_evals < rk4.rhs_evals,
            "adaptive {} vs rk4 {}",
            st.rhs_evals,
            rk4.rhs_evals
        );
    }
}

#[test]
fn adaptive_integrator_that_runs_out_of_steps_marks_the_trajectory_stalled() {
    let o = AdaptiveOptions {
        rtol: 1e-12,
        atol: 1e-14,
        max_steps: 2,
    };
    let (f, st) = simulate_cpu(
        Model::DdkOde,
        &Integrator::Adaptive(o),
        &X_DDK,
        &[0.7, 1.0],
        0.01,
        &pulse(1.0, 1.0, 0.0),
    );
    assert!(st.stalled);
    assert_eq!(st.status, Status::NonFinite);
    assert_eq!(st.first_bad, 1);
    assert!(f[1..].iter().all(|v| v.is_nan()));
    assert_eq!(f[0], 0.01);
}

#[test]
fn settings_are_validated_with_one_line_errors() {
    let e = Integrator::Exact
        .check(Model::Diffusive)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "integrator = exact: a numerical method: model diffusive has no closed form"
    );
    Integrator::Exact.check(Model::DdkOde).unwrap();
    assert!(
        Integrator::Rk4 { substeps: 0 }
            .check(Model::DdkOde)
            .is_err()
    );
    assert!(adaptive(0.0, 1e-9).check(Model::DdkOde).is_err());
    assert!(adaptive(1e-6, -1.0).check(Model::DdkOde).is_err());
    let e = pulse(1.0, 0.0, 0.0).check().unwrap_err().to_string();
    assert_eq!(e, "pulse.tau = 0: finite, > 0");
    assert!(pulse(1.0, 1.0, -1.0).check().is_err());
    assert!(pulse(f64::NAN, 1.0, 0.0).check().is_err());
    let e = Model::Diffusive
        .check(&Model::Diffusive.defaults(), 1.5)
        .unwrap_err()
        .to_string();
    assert_eq!(e, "diffusive.w0 = 1.5: finite, in [0, 1]");
}

#[test]
fn model_wgsl_files_are_includable_and_validate_with_the_integrators() {
    for model in Model::ALL {
        // The model files use common.wgsl's helpers (is_finite_f32), which
        // the shader registry prepends to every kernel.
        let with_common = format!("{COMMON}\n{}", model.wgsl());
        let m = validate_wgsl(model.name(), &with_common);
        assert!(
            m.entry_points.is_empty(),
            "{}: no entry points in a model file",
            model.name()
        );
        assert!(m.global_variables.iter().all(|(_, g)| g.binding.is_none()));
        for f in [
            "model_rhs",
            "model_euler",
            "model_project",
            "model_observe",
            "model_status",
            "model_exact",
        ] {
            assert!(
                m.functions
                    .iter()
                    .any(|(_, func)| func.name.as_deref() == Some(f)),
                "{} lacks fn {f}",
                model.name()
            );
        }
        let lib = format!("{with_common}\n{INTEGRATE_WGSL}");
        let m = validate_wgsl(&format!("{} + integrate", model.name()), &lib);
        assert!(m.entry_points.is_empty());
        for f in [
            "segment_euler",
            "segment_heun",
            "segment_rk4",
            "segment_adaptive",
            "pulse_fixed",
            "pulse_adaptive",
            "segment_exact",
        ] {
            assert!(
                m.functions
                    .iter()
                    .any(|(_, func)| func.name.as_deref() == Some(f)),
                "integrate lacks fn {f}"
            );
        }
        let full = format!("{lib}\n{SIMULATE_TEST_WGSL}");
        let m = validate_wgsl(
            &format!("{} + integrate + simulate_test", model.name()),
            &full,
        );
        assert_eq!(m.entry_points.len(), 1);
        assert_eq!(m.entry_points[0].workgroup_size, [64, 1, 1]);
    }
}
