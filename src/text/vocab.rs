//! The vocabulary: the most frequent words of the training split, with PAD
//! (index 0) and UNK (index 1), as the authors build it (gllspeed/DDK,
//! `DDK/text_classification/DDK-text-classification-pytorch-master/build_vocab.py`:
//! `Counter.most_common(vocab_size - 2)`, ties in order of first appearance),
//! and the encoding of a sample into a fixed number of token ids
//! (`dataset.py`: unknown words map to UNK, short samples are padded with PAD at
//! the end, long ones cut).

use std::collections::HashMap;

/// Index of the padding token (its embedding row is fixed at zero).
pub const PAD: u32 = 0;
/// Index of the unknown-word token.
pub const UNK: u32 = 1;

/// A word-to-index map built from training texts only.
#[derive(Debug, Clone, PartialEq)]
pub struct Vocab {
    words: Vec<String>,
    index: HashMap<String, u32>,
}

impl Vocab {
    /// The `size - 2` most frequent words of `texts` (each a token list) after
    /// PAD and UNK; ties are broken by first appearance. `size` must be >= 2.
    pub fn build<'a, I>(texts: I, size: usize) -> Self
    where
        I: IntoIterator<Item = &'a [String]>,
    {
        assert!(size >= 2, "a vocabulary holds at least PAD and UNK");
        // word -> (count, first appearance)
        let mut counts: HashMap<&str, (u64, usize)> = HashMap::new();
        let mut order = 0usize;
        for text in texts {
            for w in text {
                let e = counts.entry(w.as_str()).or_insert_with(|| {
                    order += 1;
                    (0, order)
                });
                e.0 += 1;
            }
        }
        let mut ranked: Vec<(&str, u64, usize)> =
            counts.into_iter().map(|(w, (c, o))| (w, c, o)).collect();
        ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)));
        let mut words = vec!["<PAD>".to_string(), "<UNK>".to_string()];
        words.extend(ranked.iter().take(size - 2).map(|(w, _, _)| w.to_string()));
        let index = words
            .iter()
            .enumerate()
            .skip(2)
            .map(|(i, w)| (w.clone(), i as u32))
            .collect();
        Vocab { words, index }
    }

    /// Number of entries, PAD and UNK included (at most the requested size).
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// True when only PAD and UNK are present.
    pub fn is_empty(&self) -> bool {
        self.words.len() <= 2
    }

    /// The index of `word` (UNK when it is not in the vocabulary).
    pub fn id(&self, word: &str) -> u32 {
        self.index.get(word).copied().unwrap_or(UNK)
    }

    /// The word at `id`.
    pub fn word(&self, id: u32) -> &str {
        &self.words[id as usize]
    }

    /// `tokens` as exactly `len` ids: unknown words UNK, cut after `len`,
    /// padded with PAD.
    pub fn encode(&self, tokens: &[String], len: usize) -> Vec<u32> {
        let mut ids: Vec<u32> = tokens.iter().take(len).map(|w| self.id(w)).collect();
        ids.resize(len, PAD);
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn most_frequent_first_ties_by_first_appearance() {
        let texts = [toks("b a c a"), toks("c d a")];
        let v = Vocab::build(texts.iter().map(Vec::as_slice), 5);
        // a: 3; c: 2; b, d: 1 (b first) -> PAD UNK a c b.
        assert_eq!(v.len(), 5);
        assert_eq!(
            (0..5).map(|i| v.word(i)).collect::<Vec<_>>(),
            ["<PAD>", "<UNK>", "a", "c", "b"]
        );
        assert_eq!(v.id("d"), UNK);
    }

    #[test]
    fn encode_pads_and_cuts() {
        let texts = [toks("x y z")];
        let v = Vocab::build(texts.iter().map(Vec::as_slice), 10);
        assert_eq!(v.encode(&toks("x q"), 4), vec![v.id("x"), UNK, PAD, PAD]);
        assert_eq!(v.encode(&toks("x y z x y"), 3).len(), 3);
    }
}
