//! The text network (memkin::text): the gradient of the whole network against
//! central finite differences, the vocabulary built from the training split
//! only, a CI-sized AG News run with an accuracy threshold, and the CLI's
//! error paths.

use memkin::engine::cpu::CpuEngine;
use memkin::engine::{Engine, Precision};
use memkin::text::net::{Cache, Engines, Grads, Shape, TextNet};
use memkin::text::vocab::{PAD, UNK};

/// The mean cross-entropy of a batch, from the network's logits, in f64.
fn loss(net: &TextNet, eng: &Engines, toks: &[u32], ys: &[u32]) -> f64 {
    let mut cache = Cache::default();
    net.forward(eng, toks, &mut cache).unwrap();
    let c = net.shape.classes;
    let mut l = 0.0;
    for (row, &y) in cache.logits().chunks_exact(c).zip(ys) {
        let m = row.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v)) as f64;
        let s: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
        l += s.ln() + m - row[y as usize] as f64;
    }
    l / ys.len() as f64
}

/// Backprop of the whole text network (embedding through min-max and the
/// DDK adjoint, both Linear layers, alpha and beta) against central finite
/// differences on a tiny network, with and without the device.
///
/// The network computes in f32 (the engine's states and the Linear layers), so
/// the loss carries ~1e-7 relative rounding; with step h = 1e-3 the
/// difference quotient carries ~1e-4 absolute noise, and its truncation error
/// is O(h^2) ~ 1e-6. Max-pool and min-max are piecewise smooth: a step could
/// cross a tie, so the check allows 3e-3 absolute + 3% relative, far below the
/// size of the terms a missing path drops (the min-max terms at the extreme
/// entries, the adjoint's memory, the pooled token's rows are O(1e-2..1e-1)).
fn gradient_check(device: bool) {
    let shape = Shape {
        vocab: 9,
        dim: 4,
        tokens: 6,
        hidden: 5,
        classes: 3,
    };
    let mut net = TextNet::new(shape, device, 7);
    (net.alpha, net.beta) = (0.5, 0.6);
    let fwd = CpuEngine::new(Precision::F64);
    let rev = CpuEngine::new(Precision::F64);
    let eng = Engines {
        forward: &fwd as &dyn Engine,
        reverse: &rev,
    };
    let toks: Vec<u32> = vec![
        2, 3, 4, 2, PAD, PAD, //
        5, 6, 7, 8, 1, 3, //
        8, 8, 2, PAD, PAD, PAD,
    ];
    let ys = [0u32, 2, 1];
    let mut cache = Cache::default();
    let mut g = Grads::default();
    net.forward(&eng, &toks, &mut cache).unwrap();
    net.backward(&eng, &ys, &mut cache, &mut g).unwrap();
    let h = 1e-3f64;
    let check = |what: String, fd: f64, bp: f64| {
        assert!(
            (fd - bp).abs() <= 3e-3 + 0.03 * bp.abs().max(fd.abs()),
            "{what}: finite differences {fd:.6e}, backprop {bp:.6e} (device {device})"
        );
    };
    let mut checked = 0;
    let mut largest = 0.0f64;
    // Every entry of every embedding row the batch uses.
    for (slot, &row) in g.rows.iter().enumerate() {
        for k in 0..shape.dim {
            let i = row * shape.dim + k;
            let mut p = net.clone();
            p.embedding[i] += h as f32;
            let mut m = net.clone();
            m.embedding[i] -= h as f32;
            let fd = (loss(&p, &eng, &toks, &ys) - loss(&m, &eng, &toks, &ys)) / (2.0 * h);
            let bp = g.embedding[slot * shape.dim + k] as f64;
            largest = largest.max(bp.abs());
            check(format!("embedding[{row}, {k}]"), fd, bp);
            checked += 1;
        }
    }
    assert!(!g.rows.contains(&(PAD as usize)), "PAD gets no gradient");
    assert_eq!(g.rows.len(), 8, "rows 1..=8 are used");
    // Every dense parameter.
    for i in 0..net.dense.len() {
        let mut p = net.clone();
        p.dense[i] += h as f32;
        let mut m = net.clone();
        m.dense[i] -= h as f32;
        let fd = (loss(&p, &eng, &toks, &ys) - loss(&m, &eng, &toks, &ys)) / (2.0 * h);
        check(format!("dense[{i}]"), fd, g.dense[i] as f64);
        checked += 1;
    }
    if device {
        let mut p = net.clone();
        p.alpha += h;
        let mut m = net.clone();
        m.alpha -= h;
        let fd = (loss(&p, &eng, &toks, &ys) - loss(&m, &eng, &toks, &ys)) / (2.0 * h);
        check("alpha".into(), fd, g.alpha);
        let mut p = net.clone();
        p.beta += h;
        let mut m = net.clone();
        m.beta -= h;
        let fd = (loss(&p, &eng, &toks, &ys) - loss(&m, &eng, &toks, &ys)) / (2.0 * h);
        check("beta".into(), fd, g.beta);
        assert!(
            g.alpha.abs() > 1e-3 && g.beta.abs() > 1e-3,
            "the device parameters carry gradient"
        );
    } else {
        assert_eq!((g.alpha, g.beta), (0.0, 0.0));
    }
    assert!(checked > 70);
    assert!(
        largest > 1e-2,
        "the embedding gradient is not negligible ({largest})"
    );
}

#[test]
fn whole_network_gradient_matches_finite_differences_with_the_device() {
    gradient_check(true);
}

#[test]
fn whole_network_gradient_matches_finite_differences_without_the_device() {
    gradient_check(false);
}

#[test]
fn vocabulary_comes_from_the_training_split_only() {
    use memkin::text::TextData;
    use memkin::text::train::{Encoded, Settings, split_rows};
    // 20 samples per class; every sample has a word of its own ("only<i>").
    let rows: Vec<(String, String)> = (0..40)
        .map(|i| ((i % 2).to_string(), format!("common word{} only{i}", i % 2)))
        .collect();
    let data = TextData::from_pairs("toy", rows).unwrap();
    let s = Settings::default();
    let split = split_rows(&data, &s, 0).unwrap();
    assert_eq!(split.test.len(), 8);
    assert_eq!(split.fit.len() + split.val.len(), 32);
    let v = &split.vocab;
    // PAD, UNK, common, word0, word1 and the 32 training samples' own words.
    assert_eq!(v.len(), 2 + 3 + 32);
    for &i in &split.test {
        assert_eq!(
            v.id(&format!("only{i}")),
            UNK,
            "only{i} is only in the test split"
        );
    }
    for &i in split.fit.iter().chain(&split.val) {
        assert_ne!(
            v.id(&format!("only{i}")),
            UNK,
            "only{i} is in the training split"
        );
    }
    let enc = Encoded::new(&data, &split.test, v, 4);
    assert_eq!(enc.tokens.len(), split.test.len() * 4);
    assert_eq!(
        &enc.tokens[0..4],
        &[
            v.id("common"),
            v.id(&format!("word{}", data.labels[split.test[0]])),
            UNK,
            PAD
        ]
    );
}
