//! What `examples/agent.rs` works with: the documents its search tool finds, the prompts it
//! sends, the reading of the model's decision, and the offline stand-in.

use std::cmp::Reverse;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Model, Rules, text};
use miniflow::Result;

/// The question the agent researches.
pub const QUESTION: &str = "Who started the programming language whose mascot is Ferris the \
                            crab, and when did it reach version 1.0?";

/// One document the search tool can find.
#[derive(Debug, PartialEq, Eq)]
pub struct Doc {
    /// A few words that name the document.
    pub title: &'static str,
    /// What it says.
    pub text: &'static str,
}

/// The documents the search tool knows: a stand-in for the web, so the example runs offline.
const CORPUS: &[Doc] = &[
    Doc {
        title: "Ferris",
        text: "Ferris the crab is the unofficial mascot of the Rust programming language; \
               Rust programmers put it on stickers and T-shirts.",
    },
    Doc {
        title: "Crabs",
        text: "Crabs are crustaceans with a thick shell and one pair of claws; most of them \
               walk sideways.",
    },
    Doc {
        title: "Rust history",
        text: "The history of Rust began in 2006 as a personal project of Graydon Hoare, then \
               a programmer at Mozilla, which began sponsoring it in 2009.",
    },
    Doc {
        title: "Rust 1.0",
        text: "Rust 1.0, the first stable release of the language, was released on \
               15 May 2015 with a promise of backward compatibility.",
    },
    Doc {
        title: "Python",
        text: "Python was started by Guido van Rossum in the late 1980s; Python 1.0 was \
               released in January 1994.",
    },
    Doc {
        title: "Go",
        text: "Go was designed at Google by Robert Griesemer, Rob Pike and Ken Thompson; Go 1.0 \
               was released in March 2012. Its mascot is a gopher.",
    },
];

/// The search tool: the `max` documents that contain the most of the query's words (ties
/// keep corpus order). A real web search is an HTTP request; this one is instant.
pub fn search(query: &str, max: usize) -> Vec<&'static Doc> {
    let words: Vec<String> = query
        .split(|c: char| !c.is_alphanumeric() && c != '.')
        .filter(|word| word.len() >= 3)
        .map(str::to_lowercase)
        .collect();
    let mut scored: Vec<(usize, &'static Doc)> = CORPUS
        .iter()
        .map(|doc| {
            let text = format!("{} {}", doc.title, doc.text).to_lowercase();
            (words.iter().filter(|word| text.contains(word.as_str())).count(), doc)
        })
        .filter(|(score, _)| *score > 0)
        .collect();
    // Best first; the sort is stable, so equal scores stay in corpus order.
    scored.sort_by_key(|(score, _)| Reverse(*score));
    scored.into_iter().take(max).map(|(_, doc)| doc).collect()
}

/// The notes as the prompts show them: one `- [title] text` line per document.
fn notes_text(notes: &[&Doc]) -> String {
    match notes.is_empty() {
        true => "(none yet)".to_string(),
        false => notes
            .iter()
            .map(|doc| format!("- [{}] {}", doc.title, doc.text))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// The prompt that asks what to do next: the question, the searches made, the notes, and
/// the reply format that [`parse_decision`] reads.
pub fn decision_prompt(question: &str, searches: &[String], notes: &[&Doc]) -> String {
    let searches = match searches.is_empty() {
        true => "none".to_string(),
        false => searches.iter().map(|q| format!("{q:?}")).collect::<Vec<_>>().join(", "),
    };
    format!(
        "You are a research assistant. Answer the question below, searching the web first if \
         you need facts that your notes do not have.\n\n\
         Question: {question}\n\n\
         Searches made so far: {searches}\n\n\
         Notes from those searches:\n{notes}\n\n\
         Decide what to do next: search for a fact the notes lack, or answer now. Answer once \
         the notes cover the question, or when another search is unlikely to find anything new.\n\n\
         Reply with these lines and nothing else:\n\
         action: search or answer\n\
         reason: one short sentence saying why\n\
         query: a few search keywords (only when the action is search)",
        notes = notes_text(notes),
    )
}

/// The prompt that asks for the final answer, from the notes alone.
pub fn answer_prompt(question: &str, notes: &[&Doc]) -> String {
    format!(
        "Answer the question in two or three sentences, using only the notes below. If \
         the notes do not say, say so.\n\n\
         Question: {question}\n\nNotes:\n{}",
        notes_text(notes),
    )
}

/// What the model chose to do next.
#[derive(Debug)]
pub enum Decision {
    /// Search for `query`.
    Search {
        /// The search keywords.
        query: String,
        /// Why, in the model's words.
        reason: String,
    },
    /// Answer from the notes.
    Answer {
        /// Why, in the model's words.
        reason: String,
    },
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Search { query, reason } => write!(f, "search {query:?} ({reason})"),
            Decision::Answer { reason } => write!(f, "answer ({reason})"),
        }
    }
}

/// Reads the model's `key: value` lines into a [`Decision`].
///
/// Real models wrap such lines in code fences, add blank lines, bold the keys, capitalize
/// the action or end it with a full stop; [`text::field`] and [`text::word`] accept all of
/// that. Anything else is an error that says what was expected and shows the start of the
/// reply.
pub fn parse_decision(reply: &str) -> Result<Decision> {
    let reason = text::field(reply, "reason").unwrap_or_default();
    let Some(action) = text::field(reply, "action") else {
        return Err(format!(
            "expected a line `action: search` or `action: answer`, got {:?}",
            shorten(reply)
        )
        .into());
    };
    // `word` keeps the first word, lowercase and without punctuation: "Answer." is "answer".
    match text::word(&action).as_str() {
        "search" => match text::field(reply, "query").filter(|q| !q.is_empty()) {
            Some(query) => Ok(Decision::Search { query, reason }),
            None => Err("the action is `search` but there is no `query:` line".into()),
        },
        "answer" => Ok(Decision::Answer { reason }),
        _ => Err(format!("unknown action {action:?}; expected `search` or `answer`").into()),
    }
}

/// The reply's first line of text, without fences or a `<think>` block, cut to 40
/// characters: enough to recognize the reply in an error.
fn shorten(reply: &str) -> String {
    let body = text::body(reply);
    let line = body.lines().map(str::trim).find(|line| !line.is_empty()).unwrap_or("");
    match line.char_indices().nth(40) {
        Some((end, _)) => format!("{}…", &line[..end]),
        None => line.to_string(),
    }
}

/// The offline stand-in. It reads the notes in the prompt, as a model would: it searches
/// until they cover both halves of the question, then answers from them. Its very first
/// decision is prose instead of the format asked for, to show the retry.
pub fn stand_in() -> impl Model {
    let rambled = AtomicBool::new(false);
    Rules::new(move |prompt: &str| {
        let deciding = prompt.contains("action: search or answer");
        if deciding && !rambled.swap(true, Ordering::Relaxed) {
            return "Good question! I think we should first find out which language Ferris \
                    belongs to, and then look into its history."
                .to_string();
        }
        let knows_language = prompt.contains("mascot of the Rust");
        let knows_dates = prompt.contains("Graydon Hoare") && prompt.contains("released on");
        let reply = match (deciding, knows_language, knows_dates) {
            (true, false, _) => {
                "action: search\n\
                 reason: I need to know which language has Ferris as its mascot.\n\
                 query: Ferris crab mascot"
            }
            // Fenced and capitalized, as real models often reply: the parser copes.
            (true, true, false) => {
                "```\n\
                 Action: Search\n\
                 Reason: I still need who started Rust, and when 1.0 came out.\n\
                 Query: Rust history 1.0 release\n\
                 ```"
            }
            (true, true, true) => {
                "action: answer\n\
                 reason: The notes cover both halves of the question."
            }
            (false, true, true) => {
                "Ferris the crab is the mascot of Rust, which Graydon Hoare started in 2006 as \
                 a personal project. Rust 1.0 was released on 15 May 2015."
            }
            (false, _, _) => "The notes do not say enough to answer that.",
        };
        reply.to_string()
    })
}
