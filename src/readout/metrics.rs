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
