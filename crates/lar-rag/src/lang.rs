//! Language for the full-text side: words are folded ([`crate::fold`]) then reduced to their Snowball stem, so
//! "alquilar" finds "alquiler" and "albergue" finds "albergues". A knowledge base's [`Analyzer`] is set when it is
//! created: one language for everything, `auto` (each chunk's language detected from its most common words, and a
//! query stemmed in every language the knowledge base holds, plus its plain words), or `none` (folded words only,
//! what knowledge bases made before stemming have). Folding comes first on both sides, so a question typed without
//! accents stems like the accented text.

use rust_stemmers::{Algorithm, Stemmer};
use serde::{Deserialize, Serialize};

use crate::fold;

/// A language with a Snowball stemmer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lang {
    En,
    Es,
    Fr,
    De,
    It,
    Pt,
    Nl,
    Da,
    Sv,
    No,
    Fi,
    Ro,
    Hu,
    Tr,
}

impl Lang {
    pub const ALL: [Lang; 14] = [
        Lang::En,
        Lang::Es,
        Lang::Fr,
        Lang::De,
        Lang::It,
        Lang::Pt,
        Lang::Nl,
        Lang::Da,
        Lang::Sv,
        Lang::No,
        Lang::Fi,
        Lang::Ro,
        Lang::Hu,
        Lang::Tr,
    ];

    /// ISO 639-1 code.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Es => "es",
            Lang::Fr => "fr",
            Lang::De => "de",
            Lang::It => "it",
            Lang::Pt => "pt",
            Lang::Nl => "nl",
            Lang::Da => "da",
            Lang::Sv => "sv",
            Lang::No => "no",
            Lang::Fi => "fi",
            Lang::Ro => "ro",
            Lang::Hu => "hu",
            Lang::Tr => "tr",
        }
    }

    pub fn parse(code: &str) -> Option<Lang> {
        Lang::ALL.into_iter().find(|l| l.code() == code)
    }

    fn algorithm(self) -> Algorithm {
        match self {
            Lang::En => Algorithm::English,
            Lang::Es => Algorithm::Spanish,
            Lang::Fr => Algorithm::French,
            Lang::De => Algorithm::German,
            Lang::It => Algorithm::Italian,
            Lang::Pt => Algorithm::Portuguese,
            Lang::Nl => Algorithm::Dutch,
            Lang::Da => Algorithm::Danish,
            Lang::Sv => Algorithm::Swedish,
            Lang::No => Algorithm::Norwegian,
            Lang::Fi => Algorithm::Finnish,
            Lang::Ro => Algorithm::Romanian,
            Lang::Hu => Algorithm::Hungarian,
            Lang::Tr => Algorithm::Turkish,
        }
    }

    /// The stems of already folded words.
    pub fn stem_all(self, words: &[String]) -> Vec<String> {
        let s = Stemmer::create(self.algorithm());
        words
            .iter()
            .map(|w| fold::fold(&s.stem(&self.unfold(w))))
            .collect()
    }

    /// Puts back the one accent folding takes from a suffix the stemmer knows only accented, where the plain
    /// spelling cannot be another word: Spanish singular `-cion`/`-sion` are always `-ción`/`-sión`, Portuguese
    /// `-cao`/`-coes` always `-ção`/`-ções`. Without it "instalacion" would not meet "instalaciones".
    fn unfold(self, w: &str) -> std::borrow::Cow<'_, str> {
        let swap = |from: &str, to: &str| {
            w.strip_suffix(from)
                .filter(|stem| stem.len() >= 2)
                .map(|stem| std::borrow::Cow::Owned(format!("{stem}{to}")))
        };
        let restored = match self {
            Lang::Es => swap("cion", "ción").or_else(|| swap("sion", "sión")),
            Lang::Pt => swap("cao", "ção").or_else(|| swap("coes", "ções")),
            _ => None,
        };
        restored.unwrap_or(std::borrow::Cow::Borrowed(w))
    }
}

/// The most common words of the languages [`detect`] tells apart, folded.
const STOPWORDS: &[(Lang, &[&str])] = &[
    (
        Lang::En,
        &[
            "the", "and", "of", "to", "is", "in", "that", "it", "for", "with", "as", "was", "on",
            "are", "be", "this", "have", "from", "or", "by", "not", "but", "at", "they", "you",
            "we", "an", "which", "there", "their", "when", "can", "will", "if", "has", "should",
        ],
    ),
    (
        Lang::Es,
        &[
            "de", "la", "que", "el", "en", "y", "los", "del", "se", "las", "por", "un", "para",
            "con", "no", "una", "su", "al", "lo", "como", "mas", "pero", "sus", "le", "ya", "o",
            "este", "porque", "esta", "entre", "cuando", "muy", "sin", "sobre", "tambien", "hay",
            "es", "son", "donde", "cada",
        ],
    ),
    (
        Lang::Fr,
        &[
            "de", "la", "le", "et", "les", "des", "en", "un", "du", "une", "que", "est", "pour",
            "qui", "dans", "par", "pas", "au", "sur", "ne", "se", "plus", "avec", "ce", "il",
            "sont", "mais", "ou", "nous", "vous", "aux", "cette", "leur",
        ],
    ),
    (
        Lang::De,
        &[
            "der", "die", "und", "in", "den", "von", "zu", "das", "mit", "sich", "des", "auf",
            "fur", "ist", "im", "dem", "nicht", "ein", "eine", "als", "auch", "es", "an", "werden",
            "aus", "er", "hat", "dass", "sie", "nach", "wird", "bei", "oder", "wir",
        ],
    ),
    (
        Lang::It,
        &[
            "di", "e", "il", "la", "che", "in", "un", "per", "una", "del", "non", "con", "sono",
            "le", "si", "da", "gli", "della", "lo", "i", "ma", "come", "anche", "piu", "al", "nel",
            "alla", "questo", "dei", "delle",
        ],
    ),
    (
        Lang::Pt,
        &[
            "de", "a", "o", "que", "e", "do", "da", "em", "um", "para", "com", "nao", "uma", "os",
            "no", "se", "na", "por", "mais", "as", "dos", "como", "mas", "foi", "ao", "ele", "das",
            "tem", "seu", "sua", "ou", "ser", "quando", "muito", "nos", "ja", "esta", "voce",
        ],
    ),
    (
        Lang::Nl,
        &[
            "de", "en", "van", "het", "een", "in", "is", "dat", "op", "te", "zijn", "met", "voor",
            "niet", "aan", "er", "die", "maar", "om", "ook", "als", "dan", "bij", "of", "wordt",
            "naar", "hij",
        ],
    ),
];

/// The language of `words` (folded) by its most common words: the one whose list covers the most of them, when
/// that is at least a tenth of the text and at least a third more than the next; `None` when unsure.
pub fn detect_words(words: &[String]) -> Option<Lang> {
    if words.len() < 5 {
        return None;
    }
    let mut scores: Vec<(usize, Lang)> = STOPWORDS
        .iter()
        .map(|(l, list)| {
            let n = words.iter().filter(|w| list.contains(&w.as_str())).count();
            (n, *l)
        })
        .collect();
    scores.sort_by_key(|s| std::cmp::Reverse(s.0));
    let (best, lang) = scores[0];
    let second = scores[1].0;
    (best * 10 >= words.len() && best * 3 >= second * 4).then_some(lang)
}

/// The language of a text (see [`detect_words`]).
pub fn detect(text: &str) -> Option<Lang> {
    detect_words(&fold::terms(text))
}

/// How a knowledge base's full-text side treats words.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Analyzer {
    /// Folded words, no stems (knowledge bases made before stemming).
    #[default]
    Plain,
    /// Each chunk stemmed in its detected language; queries in all of the knowledge base's languages.
    Auto,
    /// Everything stemmed in one language.
    Fixed(Lang),
}

impl Analyzer {
    /// `none`, `auto` or a language code (`en`, `es`, `fr`, `de`, `it`, `pt`, `nl`, `da`, `sv`, `no`, `fi`,
    /// `ro`, `hu`, `tr`).
    pub fn parse(s: &str) -> crate::Result<Analyzer> {
        match s {
            "none" => Ok(Analyzer::Plain),
            "auto" => Ok(Analyzer::Auto),
            code => Lang::parse(code).map(Analyzer::Fixed).ok_or_else(|| {
                let codes: Vec<&str> = Lang::ALL.iter().map(|l| l.code()).collect();
                crate::Error::Invalid(format!(
                    "unknown language '{s}': use auto, none or one of {}",
                    codes.join(", ")
                ))
            }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Analyzer::Plain => "none",
            Analyzer::Auto => "auto",
            Analyzer::Fixed(l) => l.code(),
        }
    }

    /// The words a chunk is indexed by, and the language they were stemmed in. `title` is stemmed in the
    /// language of `body`.
    pub fn index(self, title: &str, body: &str) -> (String, String, Option<Lang>) {
        let (t, b) = (fold::terms(title), fold::terms(body));
        let lang = match self {
            Analyzer::Plain => None,
            Analyzer::Fixed(l) => Some(l),
            Analyzer::Auto => detect_words(&b).or_else(|| detect_words(&t)),
        };
        match lang {
            None => (t.join(" "), b.join(" "), None),
            Some(l) => (l.stem_all(&t).join(" "), l.stem_all(&b).join(" "), Some(l)),
        }
    }

    /// The terms a query matches on: its folded words and their stems in each language of `langs` (the
    /// knowledge base's languages), without repeats.
    pub fn query(self, terms: &[String], langs: &[Lang]) -> Vec<String> {
        let terms: Vec<String> = terms.iter().flat_map(|t| fold::terms(t)).collect();
        let terms = &terms[..];
        let mut out: Vec<String> = Vec::new();
        let mut add = |w: String| {
            if !out.contains(&w) {
                out.push(w);
            }
        };
        let langs: &[Lang] = match self {
            Analyzer::Plain => &[],
            Analyzer::Fixed(ref l) => std::slice::from_ref(l),
            Analyzer::Auto => langs,
        };
        for t in terms {
            add(t.clone());
        }
        for l in langs {
            for s in l.stem_all(terms) {
                add(s);
            }
        }
        out
    }
}

impl TryFrom<String> for Analyzer {
    type Error = crate::Error;
    fn try_from(s: String) -> crate::Result<Self> {
        Analyzer::parse(&s)
    }
}

impl From<Analyzer> for String {
    fn from(a: Analyzer) -> String {
        a.name().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_the_language_of_a_paragraph() {
        let es = "La renta se actualiza una vez al año, en la fecha del aniversario del contrato, y no puede subir más que el índice.";
        let en = "The boiler should show a pressure between one and one and a half bar when the heating is cold.";
        let fr = "La chaudière doit afficher une pression entre un et un bar et demi quand le chauffage est froid.";
        assert_eq!(detect(es), Some(Lang::Es));
        assert_eq!(detect(en), Some(Lang::En));
        assert_eq!(detect(fr), Some(Lang::Fr));
        assert_eq!(detect("4.500 6.000 IBI 2019 kW"), None);
    }

    #[test]
    fn inflections_meet_at_their_stem_with_or_without_accents() {
        let (_, idx, lang) = Analyzer::Auto.index(
            "Alquiler",
            "Para dormir en los albergues de peregrinos hace falta la credencial, y la instalación de las placas.",
        );
        assert_eq!(lang, Some(Lang::Es));
        let q = Analyzer::Auto.query(&fold::terms("albergue alquilar instalacion"), &[Lang::Es]);
        for t in ["alberg", "instal"] {
            assert!(
                q.contains(&t.to_string()) && idx.split(' ').any(|w| w == t),
                "{t}: {q:?} / {idx}"
            );
        }
        assert!(
            q.contains(&"albergue".to_string()),
            "the plain words stay: {q:?}"
        );
        // Plain: folded words only, as before stemming.
        assert_eq!(
            Analyzer::Plain.query(&fold::terms("Albergues"), &[Lang::Es]),
            ["albergues"]
        );
        let (_, plain, none) = Analyzer::Plain.index("", "Los albergues");
        assert_eq!((plain.as_str(), none), ("los albergues", None));
    }

    #[test]
    fn names_round_trip_and_bad_ones_are_refused() {
        for a in [Analyzer::Plain, Analyzer::Auto, Analyzer::Fixed(Lang::Es)] {
            assert_eq!(Analyzer::parse(a.name()).unwrap(), a);
        }
        let e = Analyzer::parse("klingon").unwrap_err().to_string();
        assert!(
            e.contains("unknown language 'klingon'") && e.contains("es"),
            "{e}"
        );
    }
}
