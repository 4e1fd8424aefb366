//! Readouts: ridge against scikit-learn, gradients against finite differences,
//! learning on toy problems, early stopping, determinism, config errors.

use std::path::PathBuf;

use memkin::readout::{
    Activation, Model, Optimizer, ReadoutKind, Ridge, RidgeGram, Rng, Standardizer, TrainConfig,
    Trainer, confusion_matrix, select_lambda, stratified_split, train,
};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/readout")
        .join(name);
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn usize_of(v: &Value) -> usize {
    v.as_u64().unwrap() as usize
}

/// Two interleaved half circles with Gaussian noise (scikit-learn's make_moons).
fn two_moons(n: usize, noise: f64, seed: u64) -> (Vec<f32>, Vec<u32>) {
    let mut rng = Rng::new(seed);
    let mut normal = || {
        // Box–Muller.
        let (u1, u2) = (1.0 - rng.next_f64(), rng.next_f64());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    };
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for i in 0..n {
        let c = (i % 2) as u32;
        let t = std::f64::consts::PI * (i / 2) as f64 / (n / 2) as f64;
        let (a, b) = if c == 0 {
            (t.cos(), t.sin())
        } else {
            (1.0 - t.cos(), 0.5 - t.sin())
        };
        x.push((a + noise * normal()) as f32);
        x.push((b + noise * normal()) as f32);
        y.push(c);
    }
    (x, y)
}

#[test]
fn ridge_matches_sklearn_ridge_classifier_fixture() {
    let fx = fixture("ridge.json");
    let (n, f, c) = (
        usize_of(&fx["n"]),
        usize_of(&fx["f"]),
        usize_of(&fx["n_classes"]),
    );
    let x = f32s(&fx["x"]);
    let y = u32s(&fx["y"]);
    let model = Ridge::fit(&x, n, f, &y, c, fx["alpha"].as_f64().unwrap()).unwrap();
    // Both sides solve the same f64 normal equations from the same (f32-exact)
    // inputs; they differ only in summation order and factorisation, whose
    // rounding is ~cond(G) * 1e-16 with cond(G) ~ 1e2 here. 1e-6 relative leaves
    // orders of magnitude of margin while still catching any modelling mismatch
    // (centring, target coding, penalty on the intercept), which shows at 1e-2.
    let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(1e-3);
    let coef = fx["coef"].as_array().unwrap();
    for k in 0..c {
        for i in 0..f {
            let want = coef[k][i].as_f64().unwrap();
            let got = model.weights[i * c + k];
            assert!(
                rel(got, want) < 1e-6,
                "coef[{k}][{i}]: got {got}, sklearn {want}"
            );
        }
        let want = fx["intercept"][k].as_f64().unwrap();
        assert!(
            rel(model.intercept[k], want) < 1e-6,
            "intercept[{k}]: {} vs {want}",
            model.intercept[k]
        );
    }
    assert_eq!(model.predict(&x, n), u32s(&fx["predictions"]));

    // The same through `train`, without standardisation.
    let cfg = TrainConfig {
        kind: ReadoutKind::Ridge,
        ridge_lambda: fx["alpha"].as_f64().unwrap(),
        standardize: false,
        ..TrainConfig::default()
    };
    let trained = train(&x, n, f, &y, c, &cfg, None).unwrap();
    assert_eq!(trained.predict(&x, n), u32s(&fx["predictions"]));
    assert_eq!(trained.parameters(), f * c + c);
    assert_eq!(trained.ridge_lambda, Some(2.5));
}

#[test]
fn ridge_gram_is_reused_across_lambdas_and_selection_uses_validation_only() {
    let fx = fixture("ridge.json");
    let (n, f, c) = (
        usize_of(&fx["n"]),
        usize_of(&fx["f"]),
        usize_of(&fx["n_classes"]),
    );
    let x = f32s(&fx["x"]);
    let y = u32s(&fx["y"]);
    let gram = RidgeGram::new(&x, n, f, &y, c).unwrap();
    for lambda in [0.1, 2.5, 100.0] {
        assert_eq!(
            gram.solve(lambda).unwrap(),
            Ridge::fit(&x, n, f, &y, c, lambda).unwrap()
        );
    }
    let (fit, val) = stratified_split(&y, c, 0.2, 3);
    assert_eq!(fit.len() + val.len(), n);
    let rows = |idx: &[usize]| {
        idx.iter()
            .flat_map(|&i| x[i * f..(i + 1) * f].to_vec())
            .collect::<Vec<f32>>()
    };
    let labels = |idx: &[usize]| idx.iter().map(|&i| y[i]).collect::<Vec<u32>>();
    let g = RidgeGram::new(&rows(&fit), fit.len(), f, &labels(&fit), c).unwrap();
    let scan = select_lambda(
        &g,
        &rows(&val),
        val.len(),
        &labels(&val),
        &[0.01, 1.0, 100.0, 1e4],
    )
    .unwrap();
    let best_acc = scan.scores.iter().map(|s| s.1).fold(0.0, f64::max);
    assert_eq!(
        scan.scores.iter().find(|s| s.0 == scan.best).unwrap().1,
        best_acc
    );

    let cfg = TrainConfig {
        kind: ReadoutKind::Ridge,
        ridge_lambdas: vec![0.01, 1.0, 100.0, 1e4],
        ..TrainConfig::default()
    };
    let t = train(&x, n, f, &y, c, &cfg, None).unwrap();
    assert!(cfg.ridge_lambdas.contains(&t.ridge_lambda.unwrap()));
    assert!(t.history[0].val_accuracy.is_some());
}

/// Central differences of the training objective against the analytic
/// gradient, for every weight and every input of a small batch.
fn check_gradients(activation: Activation) {
    let (f, c, b) = (5, 3, 7);
    let mut rng = Rng::new(11);
    // Raw features with mean 2 and scale 3, so the standardiser's chain rule
    // (divide by std) is exercised.
    let x: Vec<f32> = (0..40 * f)
        .map(|_| (2.0 + 3.0 * rng.uniform(-1.0, 1.0)) as f32)
        .collect();
    let y: Vec<u32> = (0..40).map(|i| (i % c) as u32).collect();
    let std = Standardizer::fit(&x, 40, f).unwrap();
    let cfg = TrainConfig {
        kind: ReadoutKind::Mlp,
        hidden: vec![6, 4],
        activation,
        l2: 0.05,
        seed: 5,
        ..TrainConfig::default()
    };
    let mut t = Trainer::new(&cfg, f, c, Some(std)).unwrap();
    // A few steps so the weights are not at their initial values.
    for _ in 0..5 {
        t.train_step(&x, &y).unwrap();
    }
    let (xb, yb) = (&x[..b * f], &y[..b]);
    let objective = |t: &mut Trainer, xb: &[f32]| {
        let (loss, _) = t.input_gradient(xb, yb).unwrap();
        loss + cfg.l2 / 2.0 * t.network().weight_sq_norm()
    };
    let (_, grad_w) = t.parameter_gradient(xb, yb).unwrap();
    let (_, grad_x) = t.input_gradient(xb, yb).unwrap();
    // f32 forward passes: the loss carries ~1e-7 relative rounding, so with
    // h = 1e-3 the difference quotient is good to ~1e-4 absolute; truncation
    // error is O(h^2) ~ 1e-6.
    let close = |fd: f64, an: f64| (fd - an).abs() <= 5e-4 + 1e-2 * an.abs();
    let h = 1e-3f32;
    for i in 0..t.network().params.len() {
        let w0 = t.network().params[i];
        t.network_mut().params[i] = w0 + h;
        let lp = objective(&mut t, xb);
        let wp = t.network().params[i];
        t.network_mut().params[i] = w0 - h;
        let lm = objective(&mut t, xb);
        let wm = t.network().params[i];
        t.network_mut().params[i] = w0;
        let fd = (lp - lm) / (wp - wm) as f64;
        assert!(
            close(fd, grad_w[i] as f64),
            "{activation:?} dL/dparam[{i}]: fd {fd}, analytic {}",
            grad_w[i]
        );
    }
    let mut xp = xb.to_vec();
    for i in 0..xb.len() {
        let x0 = xp[i];
        let hx = 1e-2f32; // raw features have std ~ 1.7: same step in z as above
        xp[i] = x0 + hx;
        let lp = objective(&mut t, &xp);
        let a = xp[i];
        xp[i] = x0 - hx;
        let lm = objective(&mut t, &xp);
        let bm = xp[i];
        xp[i] = x0;
        let fd = (lp - lm) / (a - bm) as f64;
        assert!(
            close(fd, grad_x[i] as f64),
            "{activation:?} dL/dx[{i}]: fd {fd}, analytic {}",
            grad_x[i]
        );
    }
}

#[test]
fn mlp_gradients_match_central_differences_with_sigmoid() {
    check_gradients(Activation::Sigmoid);
}

#[test]
fn mlp_gradients_match_central_differences_with_relu() {
    check_gradients(Activation::Relu);
}

#[test]
fn mlp_learns_two_moons_above_95_percent_on_held_out_points() {
    let (x, y) = two_moons(600, 0.1, 1);
    let (xt, yt) = two_moons(400, 0.1, 2);
    let cfg = TrainConfig {
        hidden: vec![16],
        lr: 0.01,
        epochs: 200,
        batch_size: 32,
        patience: 30,
        seed: 7,
        ..TrainConfig::default()
    };
    let m = train(&x, 600, 2, &y, 2, &cfg, None).unwrap();
    let acc = m.accuracy(&xt, 400, &yt);
    assert!(acc > 0.95, "two moons test accuracy {acc}");
}

#[test]
fn mlp_with_sgd_and_sigmoid_learns_xor() {
    let mut rng = Rng::new(3);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for _ in 0..400 {
        let (a, b) = (rng.uniform(-1.0, 1.0), rng.uniform(-1.0, 1.0));
        x.extend([a as f32, b as f32]);
        y.push(((a > 0.0) ^ (b > 0.0)) as u32);
    }
    let cfg = TrainConfig {
        hidden: vec![16],
        activation: Activation::Sigmoid,
        optimizer: Optimizer::Sgd,
        lr: 0.2,
        epochs: 300,
        batch_size: 16,
        patience: 0,
        l2: 0.0,
        seed: 1,
        ..TrainConfig::default()
    };
    let m = train(&x, 400, 2, &y, 2, &cfg, None).unwrap();
    let acc = m.accuracy(&x, 400, &y);
    assert!(acc > 0.95, "xor accuracy {acc}");
}

#[test]
fn softmax_reaches_sklearn_logistic_regression_accuracy_within_two_points() {
    let fx = fixture("softmax.json");
    let (f, c) = (usize_of(&fx["f"]), usize_of(&fx["n_classes"]));
    let (x, y) = (f32s(&fx["x_train"]), u32s(&fx["y_train"]));
    let (xt, yt) = (f32s(&fx["x_test"]), u32s(&fx["y_test"]));
    let cfg = TrainConfig {
        kind: ReadoutKind::Softmax,
        lr: 0.01,
        epochs: 100,
        patience: 20,
        ..TrainConfig::default()
    };
    let m = train(&x, y.len(), f, &y, c, &cfg, None).unwrap();
    let acc = m.accuracy(&xt, yt.len(), &yt);
    let sk = fx["sklearn_test_accuracy"].as_f64().unwrap();
    assert!(acc >= sk - 0.02, "softmax {acc} vs sklearn {sk}");
    assert_eq!(m.parameters(), f * c + c);
    assert_eq!(m.operations(), f * c);
}

#[test]
fn early_stopping_restores_the_best_validation_weights() {
    // Few noisy rows and a wide net at a high learning rate: validation loss
    // peaks early and then worsens, so the patience rule fires.
    let mut rng = Rng::new(9);
    let (n, f) = (240, 20);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for i in 0..n {
        let c = (i % 2) as u32;
        for j in 0..f {
            let signal = if j == 0 { c as f64 * 0.8 } else { 0.0 };
            x.push((signal + rng.uniform(-1.0, 1.0)) as f32);
        }
        y.push(c);
    }
    let cfg = TrainConfig {
        hidden: vec![128],
        lr: 0.01,
        epochs: 300,
        batch_size: 16,
        l2: 0.0,
        patience: 8,
        val_fraction: 0.25,
        seed: 4,
        ..TrainConfig::default()
    };
    let m = train(&x, n, f, &y, 2, &cfg, None).unwrap();
    let h = &m.history;
    assert!(h.len() < cfg.epochs, "patience never fired");
    let best = h.len() - 1 - cfg.patience; // index of the best epoch
    // The restored model scores exactly the best epoch's validation numbers.
    let (_, val) = stratified_split(&y, 2, cfg.val_fraction, cfg.seed);
    let xv: Vec<f32> = val
        .iter()
        .flat_map(|&i| x[i * f..(i + 1) * f].to_vec())
        .collect();
    let yv: Vec<u32> = val.iter().map(|&i| y[i]).collect();
    assert_eq!(Some(m.accuracy(&xv, yv.len(), &yv)), h[best].val_accuracy);
    let logits = m.scores(&xv, yv.len());
    let loss: f64 = logits
        .chunks_exact(2)
        .zip(&yv)
        .map(|(r, &t)| {
            let mx = r[0].max(r[1]);
            let s: f64 = r.iter().map(|&v| ((v - mx) as f64).exp()).sum();
            s.ln() - (r[t as usize] - mx) as f64
        })
        .sum::<f64>()
        / yv.len() as f64;
    let want = h[best].val_loss.unwrap();
    assert!(
        (loss - want).abs() < 1e-6,
        "restored val loss {loss}, best epoch {want}"
    );
    assert_ne!(h.last().unwrap().val_loss, h[best].val_loss);
}

#[test]
fn same_seed_gives_identical_models_and_different_seed_does_not() {
    let (x, y) = two_moons(300, 0.2, 5);
    let cfg = TrainConfig {
        hidden: vec![8, 8],
        epochs: 5,
        seed: 42,
        ..TrainConfig::default()
    };
    let a = train(&x, 300, 2, &y, 2, &cfg, None).unwrap();
    let b = train(&x, 300, 2, &y, 2, &cfg, None).unwrap();
    assert_eq!(a.model, b.model);
    assert_eq!(a.predict(&x, 300), b.predict(&x, 300));
    let losses =
        |m: &memkin::readout::Trained| m.history.iter().map(|r| r.train_loss).collect::<Vec<_>>();
    assert_eq!(losses(&a), losses(&b));
    let c = train(&x, 300, 2, &y, 2, &TrainConfig { seed: 43, ..cfg }, None).unwrap();
    assert_ne!(a.model, c.model);
}

#[test]
fn trained_model_survives_a_json_round_trip() {
    let (x, y) = two_moons(200, 0.2, 8);
    let cfg = TrainConfig {
        epochs: 3,
        ..TrainConfig::default()
    };
    let m = train(&x, 200, 2, &y, 2, &cfg, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.json");
    m.save(&path).unwrap();
    let back = memkin::readout::Trained::load(&path).unwrap();
    assert_eq!(back.predict(&x, 200), m.predict(&x, 200));
    assert_eq!(back.scores(&x, 200), m.scores(&x, 200));
    assert_eq!(back.history(), m.history());
}

#[test]
fn config_check_errors_name_the_field_and_range() {
    let bad: Vec<(TrainConfig, &str)> = vec![
        (
            TrainConfig {
                lr: 0.0,
                ..Default::default()
            },
            "lr",
        ),
        (
            TrainConfig {
                lr: f64::NAN,
                ..Default::default()
            },
            "lr",
        ),
        (
            TrainConfig {
                epochs: 0,
                ..Default::default()
            },
            "epochs",
        ),
        (
            TrainConfig {
                batch_size: 0,
                ..Default::default()
            },
            "batch_size",
        ),
        (
            TrainConfig {
                l2: -1.0,
                ..Default::default()
            },
            "l2",
        ),
        (
            TrainConfig {
                val_fraction: 0.7,
                ..Default::default()
            },
            "val_fraction",
        ),
        (
            TrainConfig {
                momentum: 1.0,
                ..Default::default()
            },
            "momentum",
        ),
        (
            TrainConfig {
                hidden: vec![],
                ..Default::default()
            },
            "hidden",
        ),
        (
            TrainConfig {
                hidden: vec![4, 0],
                ..Default::default()
            },
            "hidden[1]",
        ),
        (
            TrainConfig {
                ridge_lambda: -1.0,
                ..Default::default()
            },
            "ridge_lambda",
        ),
    ];
    for (cfg, field) in bad {
        let e = cfg.check().unwrap_err().to_string();
        assert!(e.starts_with(field), "error for {field} reads {e:?}");
        assert!(!e.contains('\n'), "{e:?} is not one line");
    }
    assert!(TrainConfig::default().check().is_ok());
}

#[test]
fn nan_features_and_bad_labels_are_rejected_before_training() {
    let (mut x, y) = two_moons(50, 0.1, 1);
    x[2 * 17 + 1] = f32::NAN;
    let e = train(&x, 50, 2, &y, 2, &TrainConfig::default(), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("row 17, column 1"), "{e}");
    let (x, mut y) = two_moons(50, 0.1, 1);
    y[3] = 5;
    let e = train(&x, 50, 2, &y, 2, &TrainConfig::default(), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("labels[3]"), "{e}");
}

#[test]
fn paper_fc_784_48_10_counts_parameters_and_operations_as_the_paper() {
    let t = Trainer::new(&TrainConfig::default(), 784, 10, None).unwrap();
    let m = t.finish();
    assert_eq!(m.operations(), 784 * 48 + 48 * 10);
    assert_eq!(m.parameters(), 784 * 48 + 48 + 48 * 10 + 10);
    assert!(matches!(m.model, Model::Net(_)));
}

#[test]
fn trainer_step_lowers_the_loss_and_input_gradient_leaves_weights_alone() {
    let (x, y) = two_moons(128, 0.1, 4);
    let cfg = TrainConfig {
        lr: 0.05,
        ..TrainConfig::default()
    };
    let mut t = Trainer::new(&cfg, 2, 2, None).unwrap();
    let before = t.network().clone();
    let (l0, dx) = t.input_gradient(&x, &y).unwrap();
    assert_eq!(dx.len(), x.len());
    assert_eq!(t.network(), &before);
    for _ in 0..50 {
        t.step(&x, &y).unwrap();
    }
    let e = t.evaluate(&x, &y).unwrap();
    assert!(e.loss < l0, "loss {l0} -> {}", e.loss);
}

#[test]
fn confusion_matrix_rows_are_truth_and_columns_predictions() {
    let m = confusion_matrix(&[1, 1, 0], &[0, 1, 0], 2);
    assert_eq!(m, vec![vec![1, 1], vec![0, 1]]);
}

#[test]
fn models_are_bit_identical_on_one_thread_and_on_the_default_pool() {
    // Sizes above the parallel thresholds, so faer really splits the products
    // on the default pool (at least 2 threads on any CI machine worth the name).
    let (n, f) = (512, 300);
    let mut rng = Rng::new(21);
    let x: Vec<f32> = (0..n * f).map(|_| rng.next_f64() as f32).collect();
    let y: Vec<u32> = x
        .chunks_exact(f)
        .map(|r| ((r[0] + r[1]) * 1.5) as u32)
        .collect();
    let mlp = TrainConfig {
        hidden: vec![64],
        epochs: 2,
        batch_size: 256, // 256 x 300 x 64 multiply-adds: above PAR_MIN_MADDS
        ..TrainConfig::default()
    };
    let ridge = TrainConfig {
        kind: ReadoutKind::Ridge,
        ..TrainConfig::default()
    };
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    for cfg in [mlp, ridge] {
        let serial = one.install(|| train(&x, n, f, &y, 3, &cfg, None).unwrap());
        let default = train(&x, n, f, &y, 3, &cfg, None).unwrap();
        assert_eq!(serial.model, default.model, "{:?}", cfg.kind);
    }
}
