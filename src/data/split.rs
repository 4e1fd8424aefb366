//! Seeded, stratified train/test splits.
//!
//! Randomness comes from [`SplitMix64`], a tiny self-contained generator, so a
//! split is reproducible from its `u64` seed on every platform and never
//! depends on an external crate's algorithm choices.

use crate::{Error, Result};

pub use crate::rng::SplitMix64;

/// Indices of a train/test split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitIndices {
    /// Indices of training samples, in a seeded shuffled order.
    pub train: Vec<usize>,
    /// Indices of test samples, in a seeded shuffled order.
    pub test: Vec<usize>,
}

/// Checks that a test fraction lies strictly between 0 and 1.
pub fn check_test_fraction(test_fraction: f64) -> Result<()> {
    if test_fraction.is_finite() && test_fraction > 0.0 && test_fraction < 1.0 {
        Ok(())
    } else {
        Err(Error::invalid(
            "test_fraction",
            test_fraction,
            "a number strictly between 0 and 1 (e.g. 0.2 for an 80/20 split)",
        ))
    }
}

/// Splits samples stratified by label, keeping every group (e.g. all slices
/// of one object) on one side. `groups = None` treats each sample as its own
/// group.
///
/// Per class, the class's groups are shuffled and `round(n_groups *
/// test_fraction)` of them go to test. Both sides are then shuffled as whole
/// groups (a group's samples stay contiguous, in their original order). The
/// result depends only on the inputs and `seed`.
pub fn stratified_split(
    labels: &[u32],
    groups: Option<&[u32]>,
    test_fraction: f64,
    seed: u64,
) -> Result<SplitIndices> {
    check_test_fraction(test_fraction)?;
    if let Some(g) = groups
        && g.len() != labels.len()
    {
        return Err(Error::invalid(
            "groups",
            format!("{} entries", g.len()),
            format!("one group id per sample ({} samples)", labels.len()),
        ));
    }
    // Group id -> (label, member sample indices), in order of first appearance.
    let mut order: Vec<u32> = Vec::new();
    let mut members: std::collections::HashMap<u32, (u32, Vec<usize>)> =
        std::collections::HashMap::new();
    for (i, &label) in labels.iter().enumerate() {
        let gid = groups.map_or(i as u32, |g| g[i]);
        let entry = members.entry(gid).or_insert_with(|| {
            order.push(gid);
            (label, Vec::new())
        });
        if entry.0 != label {
            return Err(Error::invalid(
                format!("label of sample {i} (group {gid})"),
                label,
                format!("the label {} shared by every sample of the group", entry.0),
            ));
        }
        entry.1.push(i);
    }
    let n_classes = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
    let mut by_class: Vec<Vec<u32>> = vec![Vec::new(); n_classes];
    for &gid in &order {
        by_class[members[&gid].0 as usize].push(gid);
    }
    let mut rng = SplitMix64::new(seed);
    let mut train_groups = Vec::new();
    let mut test_groups = Vec::new();
    for class_groups in &mut by_class {
        rng.shuffle(class_groups);
        let n_test = (class_groups.len() as f64 * test_fraction).round() as usize;
        test_groups.extend_from_slice(&class_groups[..n_test]);
        train_groups.extend_from_slice(&class_groups[n_test..]);
    }
    rng.shuffle(&mut train_groups);
    rng.shuffle(&mut test_groups);
    let flatten = |gs: &[u32]| -> Vec<usize> {
        gs.iter()
            .flat_map(|g| members[g].1.iter().copied())
            .collect()
    };
    let split = SplitIndices {
        train: flatten(&train_groups),
        test: flatten(&test_groups),
    };
    if split.train.is_empty() || split.test.is_empty() {
        return Err(Error::invalid(
            "test_fraction",
            test_fraction,
            format!(
                "a fraction leaving samples on both sides ({} groups in {} classes)",
                order.len(),
                n_classes
            ),
        ));
    }
    Ok(split)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_reference_sequence() {
        // First outputs for seed 1234567 from the reference C implementation.
        let mut r = SplitMix64::new(1_234_567);
        assert_eq!(r.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(r.next_u64(), 3_203_168_211_198_807_973);
    }

    #[test]
    fn stratified_split_keeps_class_proportions_and_is_deterministic() {
        let labels: Vec<u32> = (0..600).map(|i| i / 150).collect();
        let a = stratified_split(&labels, None, 0.2, 0).unwrap();
        let b = stratified_split(&labels, None, 0.2, 0).unwrap();
        assert_eq!(a, b);
        assert_eq!((a.train.len(), a.test.len()), (480, 120));
        for c in 0..4 {
            assert_eq!(a.test.iter().filter(|&&i| labels[i] == c).count(), 30);
        }
        let mut all: Vec<usize> = a.train.iter().chain(&a.test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..600).collect::<Vec<_>>());
        let c = stratified_split(&labels, None, 0.2, 1).unwrap();
        assert_ne!(a.test, c.test);
    }

    #[test]
    fn group_split_never_separates_a_groups_samples() {
        let labels: Vec<u32> = (0..200).map(|i| (i / 4 % 2) as u32).collect();
        let groups: Vec<u32> = (0..200).map(|i| (i / 4) as u32).collect();
        let s = stratified_split(&labels, Some(&groups), 0.25, 7).unwrap();
        let test_groups: std::collections::HashSet<u32> =
            s.test.iter().map(|&i| groups[i]).collect();
        assert!(s.train.iter().all(|&i| !test_groups.contains(&groups[i])));
        assert_eq!(s.test.len() % 4, 0);
    }

    #[test]
    fn split_rejects_fraction_outside_unit_interval() {
        let err = stratified_split(&[0, 1], None, 1.5, 0).unwrap_err();
        assert!(
            err.to_string().contains("strictly between 0 and 1"),
            "{err}"
        );
    }
}
