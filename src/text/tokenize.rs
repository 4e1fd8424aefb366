//! The authors' text cleaning and word tokens.
//!
//! [`clean`] is Kim's `clean_str` (github.com/yoonkim/CNN_sentence,
//! `process_data.py`) as the authors apply it (gllspeed/DDK,
//! `DDK/text_classification/DDK-text-classification-pytorch-master/utils.py`,
//! `preprocess_text`): lower case; every character outside `[a-z0-9(),!?'`]`
//! becomes a space; the clitics `'s 've n't 're 'd 'll` are split off; `, ! ( ) ?`
//! become tokens of their own; runs of white space collapse. [`tokenize`] then
//! splits on white space. The authors split with NLTK's `word_tokenize`, which
//! on cleaned text differs only in rare cases (it also splits quote marks
//! `'` / `` ` `` off words); their replacement strings also leave a literal
//! backslash before `(`, `)` and `?` (`\(`), which only renames those tokens.
//! memkin emits the bare `(`, `)`, `?`.

/// The characters `clean` keeps (after lower-casing).
fn kept(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || "(),!?'`".contains(c)
}

/// The clitics split off the word before them, as in `clean_str`.
const CLITICS: [&str; 6] = ["'s", "'ve", "n't", "'re", "'d", "'ll"];

/// Kim-CNN `clean_str` with lower casing (see the module docs).
pub fn clean(text: &str) -> String {
    let lower: Vec<char> = text
        .to_lowercase()
        .chars()
        .map(|c| if kept(c) { c } else { ' ' })
        .collect();
    let mut out = String::with_capacity(lower.len() + 16);
    let mut i = 0;
    while i < lower.len() {
        let c = lower[i];
        if let Some(cl) = CLITICS.iter().find(|cl| {
            let n = cl.chars().count();
            i + n <= lower.len() && lower[i..i + n].iter().copied().eq(cl.chars())
        }) {
            out.push(' ');
            out.push_str(cl);
            i += cl.chars().count();
            continue;
        }
        if ",!()?".contains(c) {
            out.push(' ');
            out.push(c);
            out.push(' ');
        } else {
            out.push(c);
        }
        i += 1;
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The word tokens of `text`: [`clean`], then split on white space.
pub fn tokenize(text: &str) -> Vec<String> {
    clean(text).split_whitespace().map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_matches_kim_clean_str() {
        // Python: preprocess_text("Wall St. Bears Claw Back Into the Black (Reuters)")
        assert_eq!(
            clean("Wall St. Bears Claw Back Into the Black (Reuters)"),
            "wall st bears claw back into the black ( reuters )"
        );
        assert_eq!(
            clean("It's 5,000 dollars! Don't we've? You'd I'll they're"),
            "it 's 5 , 000 dollars ! do n't we 've ? you 'd i 'll they 're"
        );
        assert_eq!(clean("  #36;10 million\\team -- "), "36 10 million team");
        assert_eq!(clean("Café über"), "caf ber");
    }

    #[test]
    fn tokens_split_on_white_space() {
        assert_eq!(
            tokenize("AP - It's barely dawn."),
            vec!["ap", "it", "'s", "barely", "dawn"]
        );
        assert!(tokenize(" ... ").is_empty());
    }
}
