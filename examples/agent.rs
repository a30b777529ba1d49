//! A research agent: a model decides, one step at a time, whether to search for more facts or
//! to answer, and the flow loops until it answers.
//!
//! This is the loop behind most "agents". A `decide` node shows the model the question and
//! everything gathered so far and asks what to do next. Its action routes the flow: `"search"`
//! goes to a `search` node, which runs a search tool, adds what it found to the shared store
//! and goes back to `decide`; `"answer"` goes to an `answer` node, which writes the final
//! answer and ends the run. The loop is nothing but two edges of the graph.
//!
//! It also shows how to rely on a model's structured output. `decide` asks for a few
//! `key: value` lines and parses them in `exec`; a reply that does not parse is an error from
//! `exec`, so `max_retries` simply asks again. Offline, the stand-in's first decision is
//! rambling prose on purpose, and the output shows the next attempt getting it right. The
//! search tool is a handful of built-in documents standing in for a web search, and the run
//! has a step limit, as every loop driven by a model should.
//!
//! Run with: `cargo run --example agent`. Offline it decides and answers through a rule-based
//! stand-in; set `MINIFLOW_BASE_URL` and `MINIFLOW_MODEL` to let a real model do both (see
//! `support/mod.rs`).

use std::cmp::Reverse;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use miniflow::{Action, Ctx, Flow, Node, Params, Result, RunOptions};
use support::{Model, Rules, text};

mod support;

/// The shared store: the question, what the agent has gathered, and its answer.
#[derive(Debug, Default)]
struct Research {
    question: String,
    /// The documents the searches found, each once, in the order they were found.
    notes: Vec<&'static Doc>,
    /// Every search made, in order.
    searches: Vec<String>,
    /// The search `decide` asked for, which `search` runs next.
    next_query: Option<String>,
    answer: Option<String>,
}

// ---------------------------------------------------------------------------------------
// decide: ask the model what to do next, and route on its decision.
// ---------------------------------------------------------------------------------------

/// What the model chose to do.
#[derive(Debug)]
enum Decision {
    Search { query: String, reason: String },
    Answer { reason: String },
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Search { query, reason } => write!(f, "search {query:?} ({reason})"),
            Decision::Answer { reason } => write!(f, "answer ({reason})"),
        }
    }
}

/// Asks the model whether to search or to answer.
struct Decide {
    model: Arc<dyn Model>,
}

impl Node<Research> for Decide {
    /// The prompt, built from the store; a retry sends the same one again.
    type Prep = String;
    type Output = Decision;

    fn prep(&self, research: &Research, _: &Params) -> Result<String> {
        Ok(decision_prompt(research))
    }

    async fn exec(&self, prompt: &String, cx: Ctx<'_>) -> Result<Decision> {
        let reply = self.model.ask(prompt).await?;
        // A reply we cannot read is an error like a failed request: returning it makes the
        // flow call `exec` again (see `max_retries`), and a model that rambled once usually
        // follows the format on the next try.
        // `Ctx::attempt` counts from 0; people count tries from 1.
        let attempt = cx.attempt() + 1;
        match parse_decision(&reply) {
            Ok(decision) => {
                println!("decide [attempt {attempt}]: {decision}");
                Ok(decision)
            }
            Err(error) => {
                println!("decide [attempt {attempt}]: could not read the reply: {error}");
                Err(error)
            }
        }
    }

    fn post(&self, research: &mut Research, _: String, decision: Decision) -> Result<Action> {
        Ok(match decision {
            Decision::Search { query, .. } => {
                research.next_query = Some(query);
                "search".into()
            }
            Decision::Answer { .. } => "answer".into(),
        })
    }

    /// Three tries in all: enough to get past an unreadable reply or two, few enough that a
    /// model that cannot follow the format fails the run quickly, with its last error.
    fn max_retries(&self) -> usize {
        3
    }
}

/// The prompt for `decide`: the question, the searches made, the notes, and the reply format.
fn decision_prompt(research: &Research) -> String {
    let searches = match research.searches.is_empty() {
        true => "none".to_string(),
        false => research.searches.iter().map(|q| format!("{q:?}")).collect::<Vec<_>>().join(", "),
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
        question = research.question,
        notes = notes_text(&research.notes),
    )
}

/// Reads the model's `key: value` lines into a [`Decision`].
///
/// Real models wrap such lines in code fences, add blank lines, bold the keys, capitalize
/// the action or end it with a full stop; [`text::field`] and [`text::word`] accept all of
/// that. Anything else is an error that says what was expected and shows the start of the
/// reply.
fn parse_decision(reply: &str) -> Result<Decision> {
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

// ---------------------------------------------------------------------------------------
// search: run the query `decide` chose, and keep what it found.
// ---------------------------------------------------------------------------------------

/// Runs the search `decide` asked for and adds the documents found to the notes.
struct Search;

impl Node<Research> for Search {
    type Prep = String;
    type Output = Vec<&'static Doc>;

    fn prep(&self, research: &Research, _: &Params) -> Result<String> {
        // Only `decide` leads here, and only after setting a query: if there is none, the
        // flow was wired wrongly, and saying so beats searching for nothing.
        research
            .next_query
            .clone()
            .ok_or_else(|| "no query to search: route here from `decide`".into())
    }

    async fn exec(&self, query: &String, _: Ctx<'_>) -> Result<Vec<&'static Doc>> {
        // A real web search is an HTTP request awaited right here; this one is instant.
        Ok(search(query, 2))
    }

    fn post(
        &self,
        research: &mut Research,
        query: String,
        found: Vec<&'static Doc>,
    ) -> Result<Action> {
        let titles: Vec<&str> = found.iter().map(|doc| doc.title).collect();
        println!("search: {query:?} found {}", titles.join(", "));
        for doc in found {
            if !research.notes.iter().any(|note| note.title == doc.title) {
                research.notes.push(doc);
            }
        }
        research.searches.push(query);
        research.next_query = None;
        Ok(Action::DEFAULT)
    }
}

/// One document of the offline corpus.
#[derive(Debug)]
struct Doc {
    title: &'static str,
    text: &'static str,
}

/// The search tool: a stand-in for a web search, so the example runs offline. A handful of
/// short documents, of which a query finds those that share the most words with it.
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

/// The `max` documents that contain the most of the query's words (ties keep corpus order).
fn search(query: &str, max: usize) -> Vec<&'static Doc> {
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

// ---------------------------------------------------------------------------------------
// answer: write the final answer from the notes.
// ---------------------------------------------------------------------------------------

/// Writes the answer from the question and the notes.
struct Answer {
    model: Arc<dyn Model>,
}

impl Node<Research> for Answer {
    type Prep = String;
    type Output = String;

    fn prep(&self, research: &Research, _: &Params) -> Result<String> {
        Ok(format!(
            "Answer the question in two or three sentences, using only the notes below. If \
             the notes do not say, say so.\n\n\
             Question: {}\n\nNotes:\n{}",
            research.question,
            notes_text(&research.notes),
        ))
    }

    async fn exec(&self, prompt: &String, _: Ctx<'_>) -> Result<String> {
        // `body` drops what a model may wrap the answer in: fences, a `<think>` block.
        Ok(text::body(&self.model.ask(prompt).await?))
    }

    fn post(&self, research: &mut Research, _: String, answer: String) -> Result<Action> {
        research.answer = Some(answer);
        Ok(Action::DEFAULT)
    }
}

// ---------------------------------------------------------------------------------------
// The offline stand-in, and the run.
// ---------------------------------------------------------------------------------------

/// How the stand-in answers a prompt. It reads the notes in the prompt, as a model would: it
/// searches until they cover both halves of the question, then answers from them. Its very
/// first decision is prose instead of the format asked for, to show the retry.
fn stand_in(prompt: &str, rambled: &AtomicBool) -> String {
    let deciding = prompt.contains("action: search or answer");
    if deciding && !rambled.swap(true, Ordering::Relaxed) {
        return "Good question! I think we should first find out which language Ferris \
                belongs to, and then look into its history."
            .to_string();
    }
    let knows_language = prompt.contains("mascot of the Rust");
    let knows_dates = prompt.contains("Graydon Hoare") && prompt.contains("released on");
    match (deciding, knows_language, knows_dates) {
        (true, false, _) => "action: search\n\
                             reason: I need to know which language has Ferris as its mascot.\n\
                             query: Ferris crab mascot"
            .to_string(),
        // Fenced and capitalized, as real models often reply: the parser copes.
        (true, true, false) => "```\n\
                                Action: Search\n\
                                Reason: I still need who started Rust, and when 1.0 came out.\n\
                                Query: Rust history 1.0 release\n\
                                ```"
        .to_string(),
        (true, true, true) => "action: answer\n\
                               reason: The notes cover both halves of the question."
            .to_string(),
        (false, true, true) => "Ferris the crab is the mascot of Rust, which Graydon Hoare \
                                started in 2006 as a personal project. Rust 1.0 was released \
                                on 15 May 2015."
            .to_string(),
        (false, _, _) => "The notes do not say enough to answer that.".to_string(),
    }
}

fn main() -> support::Main {
    let rambled = AtomicBool::new(false);
    let model = support::model(Rules::new(move |prompt: &str| stand_in(prompt, &rambled)))?;

    let mut flow = Flow::new();
    let decide = flow.add("decide", Decide { model: model.clone() });
    let search = flow.add("search", Search);
    let answer = flow.add("answer", Answer { model });
    flow.edge(decide, "search", search);
    flow.edge(decide, "answer", answer);
    flow.then(search, decide); // the loop: after each search, decide again

    let mut research = Research {
        question: "Who started the programming language whose mascot is Ferris the crab, \
                   and when did it reach version 1.0?"
            .to_string(),
        ..Research::default()
    };
    println!("question: {}", research.question);

    // The model, not the code, decides when this loop ends. A model that never says
    // "answer" (or keeps searching for the same thing) would loop, and spend, forever; the
    // step limit turns that into an error that lists the nodes it was looping through. Each
    // round is two node runs (decide, search), so 12 leaves room for five searches.
    let options = RunOptions::new().max_steps(12);
    // Any executor can run a flow: smol here, `tokio` or `futures::executor::block_on` too.
    smol::block_on(flow.run_with(&mut research, options))?;

    println!("searches: {}", research.searches.join(" | "));
    let notes: Vec<&str> = research.notes.iter().map(|doc| doc.title).collect();
    println!("notes: {}", notes.join(", "));
    println!("answer: {}", research.answer.as_deref().unwrap_or("(none)"));
    Ok(())
}
