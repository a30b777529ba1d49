//! What `examples/batch.rs` translates, how it asks, how it reads the answer, and its
//! offline stand-in.

use std::sync::Arc;
use std::time::Duration;

use super::{Model, Rules, Slow, text};

/// The text to translate.
pub const TEXT: &str = "Small steps make great journeys.";

/// The languages to translate it into, in the order the results are printed.
pub const LANGUAGES: [&str; 8] =
    ["French", "Spanish", "German", "Italian", "Portuguese", "Dutch", "Swedish", "Japanese"];

/// The stand-in's translations of [`TEXT`].
const TABLE: [(&str, &str); 8] = [
    ("French", "Les petites étapes font les grands voyages."),
    ("Spanish", "Los pequeños pasos hacen los grandes viajes."),
    ("German", "Kleine Schritte machen große Reisen."),
    ("Italian", "I piccoli passi fanno i grandi viaggi."),
    ("Portuguese", "Pequenos passos fazem grandes viagens."),
    ("Dutch", "Kleine stappen maken grote reizen."),
    ("Swedish", "Små steg gör stora resor."),
    ("Japanese", "小さな一歩が大きな旅になる。"),
];

/// The prompt that asks for `text` in `language`.
pub fn prompt(text: &str, language: &str) -> String {
    format!(
        "Translate the following text into {language}. Reply with the translation only: no \
         quotes, no notes, no explanation.\n\nText: {text}"
    )
}

/// The translation in a model's reply: without a code fence or a `<think>` block, and
/// without the quotes models like to put around a translation (straight, curly or French
/// ones). `None` if nothing is left.
pub fn translation(reply: &str) -> Option<String> {
    let body = text::body(reply);
    let translation = body.trim_matches(|c| matches!(c, '"' | '“' | '”' | '«' | '»')).trim();
    (!translation.is_empty()).then(|| translation.to_string())
}

/// The offline stand-in: it finds the language the prompt names in a fixed table, and takes
/// 100 ms per reply, slow enough that asking for several translations at once visibly pays
/// off.
pub fn stand_in() -> impl Model {
    let rules = Rules::new(|prompt: &str| {
        let known =
            TABLE.iter().find(|(language, _)| prompt.contains(&format!("into {language}.")));
        known.map_or("(the stand-in knows no such language)", |(_, t)| t).to_string()
    });
    Slow::new(Arc::new(rules), Duration::from_millis(100))
}
