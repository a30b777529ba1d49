//! A research agent: a model decides, step by step, whether to search for more facts or to
//! answer, and the flow loops until it answers.
//!
//! This is the loop behind most agents. `decide` shows the model the question and the notes
//! so far and asks what to do next; its action routes the flow: `"search"` runs the search
//! tool, adds what it found to the notes and goes back to `decide`; `"answer"` writes the
//! answer and ends the run. The loop is two edges, and a step limit bounds it. `decide` reads
//! the reply in `exec`, so an unreadable reply is a failed attempt, asked again (offline, the
//! stand-in rambles on its first try to show it).
//!
//! Run with: `cargo run --example agent`. Offline a stand-in answers and a few documents
//! stand in for the web (`support/research.rs`, with the prompts and the parser); set
//! `MINIFLOW_BASE_URL` and `MINIFLOW_MODEL` to ask a real model (see `support/mod.rs`).

use std::sync::Arc;
use std::time::Duration;

use miniflow::{Action, Ctx, Error, Flow, Node, Params, Result, RunOptions, exec_fn};
use support::Model;
use support::research::{self, Decision, Doc};

mod support;

fn main() -> support::Main {
    let model = support::model(research::stand_in())?;

    // decide → search → decide → … → answer
    let mut flow = Flow::new();
    let decide = flow.add("decide", Decide { model: model.clone() });
    let search = flow.add("search", search());
    let answer = flow.add("answer", Answer { model });
    flow.edge(decide, "search", search).edge(decide, "answer", answer);
    flow.then(search, decide); // the loop: after each search, decide again

    let mut store = Research { question: research::QUESTION.into(), ..Research::default() };
    println!("question: {}", store.question);
    // A model that never answers would loop, and spend, for ever: the limit makes that an
    // error naming the nodes it looped through (12 node runs leave room for five searches).
    smol::block_on(flow.run_with(&mut store, RunOptions::new().max_steps(12)))?;

    println!("searches: {}", store.searches.join(" | "));
    let notes: Vec<&str> = store.notes.iter().map(|doc| doc.title).collect();
    println!("notes: {}", notes.join(", "));
    println!("answer: {}", store.answer.as_deref().unwrap_or("(none)"));
    Ok(())
}

/// The shared store: the question, the documents found (each once), every search made, the
/// search `decide` chose for `search` to run next, and the answer.
#[derive(Debug, Default)]
struct Research {
    question: String,
    notes: Vec<&'static Doc>,
    searches: Vec<String>,
    next_query: Option<String>,
    answer: Option<String>,
}

/// Asks the model whether to search or to answer, and routes on its decision.
struct Decide {
    model: Arc<dyn Model>,
}

impl Node<Research> for Decide {
    type Prep = String; // the prompt: a retry sends the same one again
    type Output = Decision;

    fn prep(&self, store: &Research, _: &Params) -> Result<String> {
        Ok(research::decision_prompt(&store.question, &store.searches, &store.notes))
    }

    async fn exec(&self, prompt: &String, cx: Ctx<'_>) -> Result<Decision> {
        // A reply it cannot read is an error, like a failed request: the node asks again.
        let decision = research::parse_decision(&self.model.ask(prompt).await?);
        let attempt = cx.attempt() + 1; // `attempt` counts from 0, people from 1
        match &decision {
            Ok(decision) => println!("decide [attempt {attempt}]: {decision}"),
            Err(error) => println!("decide [attempt {attempt}]: could not read the reply: {error}"),
        }
        decision
    }

    fn post(&self, store: &mut Research, _: String, decision: Decision) -> Result<Action> {
        Ok(match decision {
            Decision::Search { query, .. } => {
                store.next_query = Some(query);
                "search".into()
            }
            Decision::Answer { .. } => "answer".into(),
        })
    }

    /// Three tries: enough to get past an unreadable reply or two.
    fn max_retries(&self) -> usize {
        3
    }

    /// The pause the model's error asks for, or a backoff; no retry for a refused key.
    fn wait(&self, error: &Error, cx: Ctx<'_>) -> Option<Duration> {
        support::wait(error, cx)
    }
}

/// Runs the search `decide` chose and keeps what it found: a node of three closures.
fn search() -> impl Node<Research> {
    exec_fn(
        |store: &Research, _: &Params| store.next_query.clone().ok_or_else(|| "no query".into()),
        |query| async move { Ok(research::search(&query, 2)) }, // HTTP in real life
        |store: &mut Research, query, mut found: Vec<&'static Doc>| {
            let titles: Vec<&str> = found.iter().map(|doc| doc.title).collect();
            println!("search: {query:?} found {}", titles.join(", "));
            found.retain(|doc| !store.notes.contains(doc)); // keep each document once
            store.notes.extend(found);
            store.searches.push(query);
            store.next_query = None;
            Ok(Action::DEFAULT)
        },
    )
}

/// Writes the answer from the question and the notes.
struct Answer {
    model: Arc<dyn Model>,
}

impl Node<Research> for Answer {
    type Prep = String;
    type Output = String;

    fn prep(&self, store: &Research, _: &Params) -> Result<String> {
        Ok(research::answer_prompt(&store.question, &store.notes))
    }

    async fn exec(&self, prompt: &String, _: Ctx<'_>) -> Result<String> {
        Ok(support::text::body(&self.model.ask(prompt).await?)) // without fences or <think>
    }

    fn post(&self, store: &mut Research, _: String, answer: String) -> Result<Action> {
        store.answer = Some(answer);
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        3
    }

    fn wait(&self, error: &Error, cx: Ctx<'_>) -> Option<Duration> {
        support::wait(error, cx)
    }
}
