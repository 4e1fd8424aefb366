//! Loaders against the real datasets (MEMKIN_DATA; skipped locally without it)
//! and the embedded default.

use std::time::Instant;

use memkin::data::{self, NamedDataset, mat};
use memkin::encode::{Encoding, default_encoding, encode, expand_labels};

use crate::common;

fn all_labels(d: &data::Dataset) -> Vec<usize> {
    let (a, b) = d.class_counts();
    a.iter().zip(&b).map(|(x, y)| x + y).collect()
}

#[test]
fn embedded_digits_load_from_any_directory_and_encode_as_rows() {
    let d = data::load("default", None).unwrap();
    assert_eq!(d.name, "digits");
    assert_eq!(d.n_train() + d.n_test(), 1797);
    assert_eq!(default_encoding(&d.sample_shape), Encoding::Rows);
    let e = encode(&d.x_test, &d.sample_shape, Encoding::Rows).unwrap();
    assert_eq!((e.seqs, e.steps), (d.n_test() * 8, 8));
}

#[test]
#[cfg_attr(skip_data, ignore = "MEMKIN_DATA unset at build time (build.rs)")]
fn mnist_has_the_standard_split_and_pixels_in_unit_range() {
    let dir = common::data_dir();
    let t = Instant::now();
    let d = data::load("mnist", Some(&dir)).unwrap();
    eprintln!("mnist load (sha256 + gunzip + parse): {:.2?}", t.elapsed());
    assert_eq!(
        (d.n_train(), d.n_test(), d.sample_shape.clone(), d.n_classes),
        (60000, 10000, vec![28, 28], 10)
    );
    let (train, test) = d.class_counts();
    assert_eq!(
        train,
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!(
        test,
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    assert_eq!(d.y_train[..5], [5, 0, 4, 1, 9]);
    assert!(d.x_train.iter().all(|&v| (0.0..=1.0).contains(&v)));
    // The IDX-directory path gives the same data, without the registry.
    let same = data::load(dir.join("mnist").to_str().unwrap(), None).unwrap();
    assert_eq!(same.x_test, d.x_test);
}

#[test]
#[cfg_attr(skip_data, ignore = "MEMKIN_DATA unset at build time (build.rs)")]
fn wmms_has_600_clips_150_per_class_split_480_120() {
    let dir = common::data_dir();
    let d = data::load("wmms", Some(&dir)).unwrap();
    assert_eq!(
        (d.n_train(), d.n_test(), d.sample_shape.clone(), d.n_classes),
        (480, 120, vec![64], 4)
    );
    assert_eq!(all_labels(&d), [150; 4]);
    assert_eq!(d.class_counts().1, [30; 4]);
    assert!(d.x_train.iter().all(|&v| (0.0..=1.0).contains(&v)));
    // Clip 0 (class 0) as scipy.io.loadmat reads it: whaleInputNorm[:3, 0].
    let clip0 = (0..d.n_train())
        .map(|i| (d.train_sample(i), d.y_train[i]))
        .chain((0..d.n_test()).map(|i| (d.test_sample(i), d.y_test[i])))
        .find(|(s, _)| (f64::from(s[0]) - 0.214_716_38).abs() < 1e-7)
        .expect("clip 0 present");
    assert!((f64::from(clip0.0[1]) - 0.585_462_39).abs() < 1e-7);
    assert!((f64::from(clip0.0[2]) - 0.067_143_31).abs() < 1e-7);
    assert_eq!(clip0.1, 0);
    let again = d.resplit(0.2, 5).unwrap();
    assert!(
        again.y_test == d.resplit(0.2, 5).unwrap().y_test,
        "resplit is deterministic"
    );
    let other = d.resplit(0.2, 1).unwrap();
    assert!(other.y_test != d.y_test);
    assert_eq!(other.class_counts().1, [30; 4]);
}

#[test]
#[cfg_attr(skip_data, ignore = "MEMKIN_DATA unset at build time (build.rs)")]
fn sitw_has_1250_clips_125_per_speaker_split_1000_250() {
    let dir = common::data_dir();
    let d = data::load("sitw", Some(&dir)).unwrap();
    assert_eq!(
        (d.n_train(), d.n_test(), d.sample_shape.clone(), d.n_classes),
        (1000, 250, vec![128], 10)
    );
    assert_eq!(all_labels(&d), [125; 10]);
    let sum: f64 = d
        .x_train
        .iter()
        .chain(&d.x_test)
        .map(|&v| f64::from(v))
        .sum();
    assert!((sum - 76_716.894_086_778).abs() < 0.05, "sum {sum}");
}

#[test]
#[cfg_attr(skip_data, ignore = "MEMKIN_DATA unset at build time (build.rs)")]
fn mat_reader_reads_the_authors_files_as_scipy_does() {
    let dir = common::data_dir();
    let path = dir.join("wmms/WhaleSong_no_fft_abs_mean_64.mat");
    let m = mat::read_mat(&path).unwrap();
    let x = m.get_2d("whaleInputNorm", Some(64), Some(600)).unwrap();
    assert_eq!(x.class, "double");
    // scipy: x[:3, 0], x[:3, 599], x[63, 599], x.sum()
    for (got, want) in x.column(0)[..3]
        .iter()
        .zip([0.2147163812, 0.5854623879, 0.0671433102])
    {
        assert!((got - want).abs() < 1e-10);
    }
    for (got, want) in x.column(599)[..3]
        .iter()
        .zip([0.6263499619, 0.3339924407, 0.5201438857])
    {
        assert!((got - want).abs() < 1e-10);
    }
    assert_eq!(x.column(599)[63], 0.10240241294119243);
    assert!((x.data.iter().sum::<f64>() - 13615.233937165956).abs() < 1e-8);
    let t = m.get_2d("whaleTargetNorm", Some(4), Some(600)).unwrap();
    // A double-class matrix stored as miUINT8 (scipy, without mat_dtype=True,
    // reports the storage type uint8).
    assert_eq!(
        (t.class, t.column(0), t.column(599)),
        (
            "double",
            &[1.0, 0.0, 0.0, 0.0][..],
            &[0.0, 0.0, 0.0, 1.0][..]
        )
    );
    let q = mat::read_mat(&dir.join("sitw/speaker_no_fft_norm_128_1250.mat")).unwrap();
    let q = q.get_2d("samples", Some(128), Some(1250)).unwrap();
    assert_eq!(&q.column(0)[2..3], &[0.0]);
    assert!((q.column(1249)[0] - 0.7363311143).abs() < 1e-10);
}

#[test]
#[cfg_attr(skip_data, ignore = "MEMKIN_DATA unset at build time (build.rs)")]
fn modelnet10_has_889_chairs_and_465_monitors_split_by_object() {
    let dir = common::data_dir();
    let t = Instant::now();
    let d = data::load("modelnet10", Some(&dir)).unwrap();
    eprintln!("modelnet10 load: {:.2?}", t.elapsed());
    assert_eq!((d.sample_shape.clone(), d.n_classes), (vec![32, 32, 32], 2));
    assert_eq!(all_labels(&d), [889, 465]);
    assert_eq!(d.class_counts().1, [178, 93]);
    let (gtr, gte) = (
        d.groups_train.as_ref().unwrap(),
        d.groups_test.as_ref().unwrap(),
    );
    assert!(gte.iter().all(|g| !gtr.contains(g)));
    // The placeholder rows (all zero) were dropped: every object has voxels.
    assert!((0..d.n_test()).all(|i| d.test_sample(i).contains(&1.0)));
    let e = encode(&d.x_test, &d.sample_shape, Encoding::VoxelSlices).unwrap();
    assert_eq!(
        (e.samples, e.seqs_per_sample, e.steps),
        (d.n_test() * 32, 32, 32)
    );
    assert_eq!(expand_labels(&d.y_test, 32).len(), e.samples);
}

#[test]
#[cfg_attr(skip_data, ignore = "MEMKIN_DATA unset at build time (build.rs)")]
fn check_verifies_every_file_of_the_data_directory() {
    let dir = common::data_dir();
    let t = Instant::now();
    let status = data::check(Some(&dir));
    eprintln!("check (sha256 of every file): {:.2?}", t.elapsed());
    for s in &status {
        assert_eq!((s.present, s.verified), (true, Some(true)), "{s:?}");
    }
    let n_files: usize = status.iter().map(|s| s.files.len()).sum();
    assert_eq!(n_files, 12, "11 data-directory files + the embedded digits");
    assert!(
        data::list(Some(&dir))
            .iter()
            .all(|s| s.present && s.verified.is_none())
    );
    serde_json::to_string(&status).unwrap();
}

#[test]
fn named_dataset_names_round_trip() {
    for d in NamedDataset::ALL {
        assert_eq!(NamedDataset::from_name(d.name()), Some(d));
    }
    assert_eq!(
        NamedDataset::from_name("DEFAULT"),
        Some(NamedDataset::Digits)
    );
}
