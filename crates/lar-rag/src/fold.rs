//! Accent and case folding for the full-text side, the same for every store: "Reunión" and "reunion" index and match
//! alike. Text is decomposed (NFKD), combining marks dropped and the rest lower-cased; `ß`, `æ`, `ø` and friends get
//! their usual spellings.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// `text` without accents, in lower case.
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.nfkd() {
        if is_combining_mark(c) {
            continue;
        }
        match c {
            'ß' => out.push_str("ss"),
            'æ' | 'Æ' => out.push_str("ae"),
            'œ' | 'Œ' => out.push_str("oe"),
            'ø' | 'Ø' => out.push('o'),
            'đ' | 'Đ' => out.push('d'),
            'ł' | 'Ł' => out.push('l'),
            'ı' => out.push('i'),
            c => out.extend(c.to_lowercase()),
        }
    }
    out
}

/// The words of a query, folded: runs of letters and digits. What both stores match on.
pub fn terms(text: &str) -> Vec<String> {
    fold(text)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_accents_and_case() {
        assert_eq!(fold("Reunión en CÓRDOBA, año"), "reunion en cordoba, ano");
        assert_eq!(fold("Straße Ærø"), "strasse aero");
        assert_eq!(
            terms("¿Dónde está el informe-2024?"),
            ["donde", "esta", "el", "informe", "2024"]
        );
    }
}
