//! Classification metrics.

/// Fraction of positions where `pred` equals `truth` (0 for empty input).
///
/// # Panics
/// If the lengths differ.
pub fn accuracy(pred: &[u32], truth: &[u32]) -> f64 {
    assert_eq!(pred.len(), truth.len(), "accuracy: length mismatch");
    if pred.is_empty() {
        return 0.0;
    }
    let hits = pred.iter().zip(truth).filter(|(p, t)| p == t).count();
    hits as f64 / pred.len() as f64
}

/// `m[truth][pred]` counts; labels at or above `n_classes` are ignored.
///
/// # Panics
/// If the lengths differ.
pub fn confusion_matrix(pred: &[u32], truth: &[u32], n_classes: usize) -> Vec<Vec<u64>> {
    assert_eq!(pred.len(), truth.len(), "confusion_matrix: length mismatch");
    let mut m = vec![vec![0u64; n_classes]; n_classes];
    for (&p, &t) in pred.iter().zip(truth) {
        if (p as usize) < n_classes && (t as usize) < n_classes {
            m[t as usize][p as usize] += 1;
        }
    }
    m
}

/// Index of the largest score in each row of `scores` (`[n, c]` row-major).
/// NaN never wins; ties go to the lowest index (as NumPy's `argmax`).
pub fn argmax_rows<T: Copy + PartialOrd>(scores: &[T], c: usize) -> Vec<u32> {
    scores
        .chunks_exact(c)
        .map(|row| {
            let mut best = 0usize;
            for j in 1..c {
                // `!(a <= b)` would let NaN win; `a > b` is false for NaN.
                if row[j] > row[best] || row[best].partial_cmp(&row[best]).is_none() {
                    best = j;
                }
            }
            best as u32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_matrix_counts_truth_by_prediction() {
        let m = confusion_matrix(&[0, 1, 1, 2], &[0, 1, 2, 2], 3);
        assert_eq!(m, vec![vec![1, 0, 0], vec![0, 1, 0], vec![0, 1, 1]]);
        assert_eq!(accuracy(&[0, 1, 1, 2], &[0, 1, 2, 2]), 0.75);
        assert_eq!(
            argmax_rows(&[1.0, 3.0, 3.0, f64::NAN, 0.5, 0.2], 3),
            vec![1, 1]
        );
    }
}

/// Majority vote per group (an object's slices): for each group, in order of
/// first appearance, the class most of its answered samples predict (ties:
/// the smaller class; `None` when no sample of the group was answered) and
/// the group's label (its first sample's). `bad[i]` marks sample `i`
/// unanswered (a failed trajectory); `None`: every sample answered. The one
/// vote of the crate: `memkin run`, `--tune` and Monte Carlo all use it.
pub fn vote(
    pred: &[u32],
    bad: Option<&[bool]>,
    y: &[u32],
    groups: &[u32],
    n_classes: usize,
) -> (Vec<Option<u32>>, Vec<u32>) {
    let mut order: Vec<u32> = Vec::new();
    let mut counts: std::collections::HashMap<u32, (Vec<u32>, u32)> =
        std::collections::HashMap::new();
    for i in 0..y.len() {
        let e = counts.entry(groups[i]).or_insert_with(|| {
            order.push(groups[i]);
            (vec![0; n_classes], y[i])
        });
        if !bad.is_some_and(|b| b[i]) {
            e.0[pred[i] as usize] += 1;
        }
    }
    let mut vp = Vec::with_capacity(order.len());
    let mut vy = Vec::with_capacity(order.len());
    for g in order {
        let (c, t) = &counts[&g];
        let best = c
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))
            .filter(|(_, n)| **n > 0)
            .map(|(i, _)| i as u32);
        vp.push(best);
        vy.push(*t);
    }
    (vp, vy)
}

/// A confusion matrix as CSV: a header `true\predicted,<names>`, then one row
/// per true class, its name first (`names[c]`, or the index when absent).
pub fn confusion_csv(confusion: &[Vec<u64>], names: &[String]) -> String {
    let name = |c: usize| names.get(c).cloned().unwrap_or_else(|| c.to_string());
    let mut csv = String::from("true\\predicted");
    for c in 0..confusion.len() {
        csv.push_str(&format!(",{}", name(c)));
    }
    csv.push('\n');
    for (c, row) in confusion.iter().enumerate() {
        csv.push_str(&name(c));
        for v in row {
            csv.push_str(&format!(",{v}"));
        }
        csv.push('\n');
    }
    csv
}

#[cfg(test)]
mod vote_tests {
    use super::vote;

    #[test]
    fn vote_takes_the_majority_of_answered_samples_ties_to_the_smaller_class() {
        // Group 7: classes 2, 2, 1 -> 2. Group 3: 0 and 1 tie -> 0. Group 5:
        // its only sample unanswered -> None.
        let pred = [2, 2, 1, 1, 0, 1];
        let y = [2, 2, 2, 1, 1, 0];
        let groups = [7, 7, 7, 3, 3, 5];
        let bad = [false, false, false, false, false, true];
        let (vp, vy) = vote(&pred, Some(&bad), &y, &groups, 3);
        assert_eq!(vp, vec![Some(2), Some(0), None]);
        assert_eq!(vy, vec![2, 1, 0]);
        // Unanswered samples do not vote: one bad sample flips group 7 to a tie.
        let bad = [true, false, false, false, false, false];
        let (vp, _) = vote(&pred, Some(&bad), &y, &groups, 3);
        assert_eq!(vp, vec![Some(1), Some(0), Some(1)]);
    }
}
