//! What `examples/supervisor.rs` researches and reviews: the question, the search tool's
//! documents, the prompts of the agent and of the reviewer, the reading of their replies,
//! the offline stand-in, and the agent's deadline with a model that makes it pass.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use miniflow::Result;

use super::{Message, Model, Rules, text};

/// The question the agent answers.
pub const QUESTION: &str = "How do I get rid of limescale in my electric kettle?";

/// The search tool's documents: a stand-in for the web, so the example runs offline.
const CORPUS: &[&str] = &[
    "Limescale is calcium carbonate left behind when hard water is heated; it builds up as a \
     chalky crust inside kettles.",
    "To descale a kettle, fill it halfway with equal parts white vinegar and water, boil it, \
     leave it for an hour, then rinse it and boil clean water once to remove the taste.",
    "Citric acid works like vinegar on limescale without the smell: a tablespoon in a kettle \
     of water, boiled and left for twenty minutes.",
    "Bleach removes stains and kills germs, but it does nothing against mineral deposits.",
];

/// The search tool: the documents that share at least two words (of four letters or more)
/// with the query. A real web search is an HTTP request; this one is instant.
pub fn search(query: &str) -> Vec<String> {
    let words: Vec<String> =
        query.split_whitespace().filter(|w| w.len() >= 4).map(str::to_lowercase).collect();
    CORPUS
        .iter()
        .filter(|doc| {
            let doc = doc.to_lowercase();
            words.iter().filter(|word| doc.contains(word.as_str())).count() >= 2
        })
        .map(|doc| doc.to_string())
        .collect()
}

/// The notes as the prompts show them: one `- ` line per document.
fn notes_text(notes: &[String]) -> String {
    match notes.is_empty() {
        true => "(none yet)".to_string(),
        false => notes.iter().map(|note| format!("- {note}")).collect::<Vec<_>>().join("\n"),
    }
}

/// The prompt that asks the agent whether to search or to answer, in the format that
/// [`parse_decision`] reads.
pub fn decide_prompt(question: &str, searches: &[String], notes: &[String]) -> String {
    format!(
        "You are a research assistant. Answer the question below, searching the web first \
         if you need facts that your notes do not have.\n\n\
         Question: {question}\n\nSearches made so far: {}\n\nNotes:\n{}\n\n\
         Reply with these lines and nothing else:\n\
         action: search or answer\n\
         query: a few search keywords (only when the action is search)",
        if searches.is_empty() { "none".to_string() } else { searches.join(", ") },
        notes_text(notes),
    )
}

/// The agent's decision: `Some(query)` to search, `None` to answer. `word` reads "Search",
/// "search." or "**search**" alike; anything else is an error that shows the reply.
pub fn parse_decision(reply: &str) -> Result<Option<String>> {
    match text::field(reply, "action").map(|a| text::word(&a)).as_deref() {
        Some("search") => match text::field(reply, "query").filter(|q| !q.is_empty()) {
            Some(query) => Ok(Some(query)),
            None => Err("the action is `search` but there is no `query:` line".into()),
        },
        Some("answer") => Ok(None),
        _ => Err(format!("expected `action: search` or `action: answer`, got {reply:?}").into()),
    }
}

/// The prompt that asks for an answer from the notes, with the last rejected answer and the
/// reviewer's reason, if there is one: without them the model would likely write the same
/// answer again.
pub fn answer_prompt(
    question: &str,
    notes: &[String],
    rejected: Option<&(String, String)>,
) -> String {
    let mut prompt = format!(
        "Answer the question in two or three sentences, from the notes below.\n\n\
         Question: {question}\n\nNotes:\n{}",
        notes_text(notes),
    );
    if let Some((answer, reason)) = rejected {
        prompt += &format!(
            "\n\nYour previous answer was rejected by a reviewer.\n\
             Previous answer: {answer}\nReason: {reason}\nWrite a better answer."
        );
    }
    prompt
}

/// The prompt that asks the reviewer for a verdict on `answer`, in the format that
/// [`parse_verdict`] reads.
pub fn review_prompt(question: &str, notes: &[String], answer: &str) -> String {
    format!(
        "You review answers before a user sees them. Reject an answer that is unsafe, \
         wrong, or not supported by the notes; approve it otherwise.\n\n\
         Question: {question}\n\nNotes:\n{}\n\nAnswer under review: {answer}\n\n\
         Reply with these lines and nothing else:\n\
         verdict: approve or reject\n\
         reason: one short sentence",
        notes_text(notes),
    )
}

/// The reviewer's verdict on one answer.
#[derive(Debug)]
pub struct Verdict {
    /// Whether the answer may go to the user.
    pub approved: bool,
    /// Why, in the reviewer's words.
    pub reason: String,
}

/// Reads the reviewer's `verdict:` and `reason:` lines; anything else is an error that shows
/// the reply.
pub fn parse_verdict(reply: &str) -> Result<Verdict> {
    let reason = text::field(reply, "reason").unwrap_or_default();
    match text::field(reply, "verdict").map(|v| text::word(&v)).as_deref() {
        Some("approve" | "approved") => Ok(Verdict { approved: true, reason }),
        Some("reject" | "rejected") => Ok(Verdict { approved: false, reason }),
        _ => Err(format!("expected `verdict: approve` or `verdict: reject`, got {reply:?}").into()),
    }
}

/// The offline stand-in, one rule per part it plays. As a researcher it searches once, then
/// answers. As a writer, its first answer is dangerous; once told why, it writes a safe one.
/// As a reviewer, it rejects any answer that puts bleach in the kettle.
pub fn stand_in() -> impl Model {
    Rules::new(|prompt: &str| {
        if prompt.contains("action: search or answer") {
            return match prompt.contains("calcium carbonate") {
                false => "action: search\nquery: kettle limescale descale vinegar".to_string(),
                true => "action: answer".to_string(),
            };
        }
        if let Some((_, answer)) = prompt.split_once("Answer under review:") {
            let answer = answer.split("\n\n").next().unwrap_or_default();
            return match answer.contains("bleach") {
                true => "verdict: reject\nreason: Mixing bleach with vinegar releases toxic \
                         chlorine gas; the answer must never suggest it."
                    .to_string(),
                false => "verdict: approve\nreason: Safe, and it follows the notes.".to_string(),
            };
        }
        match prompt.contains("was rejected") {
            false => "Fill the kettle with vinegar, add a splash of bleach to make it work \
                      faster, boil it and leave it overnight."
                .to_string(),
            true => "Fill the kettle halfway with equal parts white vinegar and water, boil it \
                     and leave it for an hour. Then empty it, rinse it, and boil clean water \
                     once to get rid of the taste."
                .to_string(),
        }
    })
}

/// How long each visit of the agent may take, every step inside it included: 200 ms offline,
/// ample for a stand-in that answers at once; two minutes when `MINIFLOW_BASE_URL` names a
/// real model, whose every answer can take seconds.
pub fn deadline() -> Duration {
    match std::env::var("MINIFLOW_BASE_URL").is_ok_and(|url| !url.is_empty()) {
        true => Duration::from_secs(120),
        false => Duration::from_millis(200),
    }
}

/// Whether `--stall` is on the command line, and `model`, wrapped in [`Stalling`] if it is.
pub fn stall_if_asked(model: Arc<dyn Model>) -> (bool, Arc<dyn Model>) {
    match std::env::args().skip(1).any(|arg| arg == "--stall") {
        true => (true, Arc::new(Stalling(model))),
        false => (false, model),
    }
}

/// A model that hangs when asked to write an answer again after a rejection, as a server can
/// stop responding without closing the connection; it answers everything else as the model
/// it wraps does. Only a deadline ends the wait.
pub struct Stalling(Arc<dyn Model>);

impl Model for Stalling {
    fn chat<'a>(&'a self, messages: &'a [Message]) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            let prompt = messages.last().map_or("", |message| message.content.as_str());
            if prompt.contains("Your previous answer was rejected") {
                miniflow::sleep(Duration::from_secs(3600)).await; // an hour: the deadline is first
            }
            self.0.chat(messages).await
        })
    }
}
