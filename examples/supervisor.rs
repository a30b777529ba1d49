//! A supervisor: a whole agent flow runs as one node of an outer flow, and a reviewer after it
//! sends a bad answer back for another try.
//!
//! Flows are nodes, so an agent built as its own flow (`decide` ⇄ `search`, then `answer`)
//! can be added to a bigger flow like any single step; the action its last node returns
//! routes the outer flow. Here the outer flow is `agent` → `supervisor`. The supervisor
//! shows the answer to a model acting as a reviewer; if the reviewer rejects it, the
//! supervisor writes the reason into the shared store and returns `"retry"`, an edge that
//! leads back into the agent flow, which runs again from its start, sees what it gathered
//! before and the reason its answer was rejected, and writes a new answer. An approved answer
//! ends the run.
//!
//! Offline, the stand-in's first answer is unsafe (it suggests mixing bleach with vinegar);
//! the supervisor rejects it with the reviewer's reason, and the second answer is approved.
//!
//! Run with: `cargo run --example supervisor`. Offline it answers and reviews through a
//! rule-based stand-in; set `MINIFLOW_BASE_URL` and `MINIFLOW_MODEL` to use a real model for
//! both (see `support/mod.rs`).

use std::sync::Arc;

use miniflow::{Action, Ctx, Flow, Node, Params, Result, RunOptions};
use support::{Model, Rules, text};

mod support;

/// How many answers the supervisor rejects before it gives up.
const MAX_REJECTIONS: usize = 3;

/// The shared store of both flows: the outer one and the agent nested in it.
#[derive(Debug, Default)]
struct Desk {
    question: String,
    /// What the agent's searches found, one line per document.
    notes: Vec<String>,
    searches: Vec<String>,
    /// The search `decide` asked for, which `search` runs next.
    next_query: Option<String>,
    /// The latest answer, until the supervisor rejects it.
    answer: Option<String>,
    /// Every rejected answer, with the reviewer's reason.
    rejected: Vec<(String, String)>,
    approved: bool,
}

// ---------------------------------------------------------------------------------------
// The agent: decide ⇄ search, then answer. A flow of its own.
// ---------------------------------------------------------------------------------------

/// Asks the model whether to search or to answer.
struct Decide {
    model: Arc<dyn Model>,
}

impl Node<Desk> for Decide {
    type Prep = String;
    /// `Some(query)` to search, `None` to answer.
    type Output = Option<String>;

    fn prep(&self, desk: &Desk, _: &Params) -> Result<String> {
        Ok(format!(
            "You are a research assistant. Answer the question below, searching the web first \
             if you need facts that your notes do not have.\n\n\
             Question: {}\n\nSearches made so far: {}\n\nNotes:\n{}\n\n\
             Reply with these lines and nothing else:\n\
             action: search or answer\n\
             query: a few search keywords (only when the action is search)",
            desk.question,
            if desk.searches.is_empty() { "none".to_string() } else { desk.searches.join(", ") },
            notes_text(&desk.notes),
        ))
    }

    async fn exec(&self, prompt: &String, cx: Ctx<'_>) -> Result<Option<String>> {
        // An unreadable reply is an error, so `max_retries` asks again.
        let reply = self.model.ask(prompt).await?;
        // `word` reads "Search", "search." or "**search**" alike.
        let query = match text::field(&reply, "action").map(|a| text::word(&a)).as_deref() {
            Some("search") => match text::field(&reply, "query").filter(|q| !q.is_empty()) {
                Some(query) => Some(query),
                None => return Err("the action is `search` but there is no `query:` line".into()),
            },
            Some("answer") => None,
            _ => {
                let error = format!("expected `action: search` or `action: answer`, got {reply:?}");
                return Err(error.into());
            }
        };
        // `cx.node()` is the node's path through the nested flows: "agent/decide".
        match &query {
            Some(query) => println!("{}: search {query:?}", cx.node()),
            None => println!("{}: answer now", cx.node()),
        }
        Ok(query)
    }

    fn post(&self, desk: &mut Desk, _: String, query: Option<String>) -> Result<Action> {
        Ok(match query {
            Some(query) => {
                desk.next_query = Some(query);
                "search".into()
            }
            None => "answer".into(),
        })
    }

    fn max_retries(&self) -> usize {
        3
    }
}

/// Runs the search `decide` asked for and keeps what it found.
struct Search;

impl Node<Desk> for Search {
    type Prep = String;
    type Output = Vec<String>;

    fn prep(&self, desk: &Desk, _: &Params) -> Result<String> {
        desk.next_query.clone().ok_or_else(|| "no query to search: route here from `decide`".into())
    }

    async fn exec(&self, query: &String, cx: Ctx<'_>) -> Result<Vec<String>> {
        let found = search(query); // a web search would be awaited here
        println!("{}: found {} documents", cx.node(), found.len());
        Ok(found)
    }

    fn post(&self, desk: &mut Desk, query: String, found: Vec<String>) -> Result<Action> {
        for note in found {
            if !desk.notes.contains(&note) {
                desk.notes.push(note);
            }
        }
        desk.searches.push(query);
        desk.next_query = None;
        Ok(Action::DEFAULT)
    }
}

/// Writes an answer from the notes, taking the last rejection into account.
struct Answer {
    model: Arc<dyn Model>,
}

impl Node<Desk> for Answer {
    type Prep = String;
    type Output = String;

    fn prep(&self, desk: &Desk, _: &Params) -> Result<String> {
        let mut prompt = format!(
            "Answer the question in two or three sentences, from the notes below.\n\n\
             Question: {}\n\nNotes:\n{}",
            desk.question,
            notes_text(&desk.notes),
        );
        // The reviewer's reason is what makes the next try better than the last; without it
        // the model would likely write the same answer again.
        if let Some((answer, reason)) = desk.rejected.last() {
            prompt += &format!(
                "\n\nYour previous answer was rejected by a reviewer.\n\
                 Previous answer: {answer}\nReason: {reason}\nWrite a better answer."
            );
        }
        Ok(prompt)
    }

    async fn exec(&self, prompt: &String, cx: Ctx<'_>) -> Result<String> {
        let answer = text::body(&self.model.ask(prompt).await?); // without fences or `<think>`
        println!("{}: {answer}", cx.node());
        Ok(answer)
    }

    fn post(&self, desk: &mut Desk, _: String, answer: String) -> Result<Action> {
        desk.answer = Some(answer);
        Ok(Action::DEFAULT) // the agent flow's last node: this action routes the outer flow
    }
}

// ---------------------------------------------------------------------------------------
// The supervisor: approve the answer, or send the agent back to work.
// ---------------------------------------------------------------------------------------

/// The reviewer's verdict on one answer.
#[derive(Debug)]
struct Verdict {
    approved: bool,
    reason: String,
}

/// Has the answer reviewed, and routes: `"approved"` ends the run, `"retry"` reruns the agent.
struct Supervisor {
    model: Arc<dyn Model>,
}

impl Node<Desk> for Supervisor {
    /// The answer under review, and the prompt that asks for its review.
    type Prep = (String, String);
    type Output = Verdict;

    fn prep(&self, desk: &Desk, _: &Params) -> Result<(String, String)> {
        let answer = desk.answer.clone().ok_or("no answer to review: the agent runs first")?;
        let prompt = format!(
            "You review answers before a user sees them. Reject an answer that is unsafe, \
             wrong, or not supported by the notes; approve it otherwise.\n\n\
             Question: {}\n\nNotes:\n{}\n\nAnswer under review: {answer}\n\n\
             Reply with these lines and nothing else:\n\
             verdict: approve or reject\n\
             reason: one short sentence",
            desk.question,
            notes_text(&desk.notes),
        );
        Ok((answer, prompt))
    }

    async fn exec(&self, (_, prompt): &(String, String), _: Ctx<'_>) -> Result<Verdict> {
        let reply = self.model.ask(prompt).await?;
        let reason = text::field(&reply, "reason").unwrap_or_default();
        match text::field(&reply, "verdict").map(|v| text::word(&v)).as_deref() {
            Some("approve" | "approved") => Ok(Verdict { approved: true, reason }),
            Some("reject" | "rejected") => Ok(Verdict { approved: false, reason }),
            _ => {
                Err(format!("expected `verdict: approve` or `verdict: reject`, got {reply:?}")
                    .into())
            }
        }
    }

    fn post(
        &self,
        desk: &mut Desk,
        (answer, _): (String, String),
        verdict: Verdict,
    ) -> Result<Action> {
        if verdict.approved {
            println!("supervisor: approved: {}", verdict.reason);
            desk.approved = true;
            return Ok("approved".into());
        }
        desk.answer = None;
        desk.rejected.push((answer, verdict.reason.clone()));
        // A reviewer that rejects everything would send the agent round forever: give up
        // after a few tries and let the caller decide what to tell the user.
        if desk.rejected.len() >= MAX_REJECTIONS {
            println!("supervisor: rejected, giving up: {}", verdict.reason);
            return Ok("give_up".into());
        }
        println!("supervisor: rejected, back to the agent: {}", verdict.reason);
        Ok("retry".into())
    }

    fn max_retries(&self) -> usize {
        3
    }
}

// ---------------------------------------------------------------------------------------
// Helpers: the notes in prompts, the offline search, the offline model.
// ---------------------------------------------------------------------------------------

fn notes_text(notes: &[String]) -> String {
    match notes.is_empty() {
        true => "(none yet)".to_string(),
        false => notes.iter().map(|note| format!("- {note}")).collect::<Vec<_>>().join("\n"),
    }
}

/// A stand-in for a web search, so the example runs offline: the documents that share at
/// least two words with the query.
fn search(query: &str) -> Vec<String> {
    const CORPUS: &[&str] = &[
        "Limescale is calcium carbonate left behind when hard water is heated; it builds up \
         as a chalky crust inside kettles.",
        "To descale a kettle, fill it halfway with equal parts white vinegar and water, boil \
         it, leave it for an hour, then rinse it and boil clean water once to remove the taste.",
        "Citric acid works like vinegar on limescale without the smell: a tablespoon in a \
         kettle of water, boiled and left for twenty minutes.",
        "Bleach removes stains and kills germs, but it does nothing against mineral deposits.",
    ];
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

/// How the stand-in answers each kind of prompt. As a researcher it searches once, then
/// answers. As a writer, its first answer is dangerous; once told why, it writes a safe
/// one. As a reviewer, it rejects any answer that puts bleach in the kettle.
fn stand_in(prompt: &str) -> String {
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
        true => "Fill the kettle halfway with equal parts white vinegar and water, boil it and \
                 leave it for an hour. Then empty it, rinse it, and boil clean water once to \
                 get rid of the taste."
            .to_string(),
    }
}

fn main() -> support::Main {
    let model = support::model(Rules::new(stand_in))?;

    // The agent, built as a flow of its own.
    let mut agent = Flow::new();
    let decide = agent.add("decide", Decide { model: model.clone() });
    let search = agent.add("search", Search);
    let answer = agent.add("answer", Answer { model: model.clone() });
    agent.edge(decide, "search", search);
    agent.edge(decide, "answer", answer);
    agent.then(search, decide);

    // The outer flow: the whole agent is one node, the supervisor another.
    let mut flow = Flow::new();
    let agent = flow.add("agent", agent);
    let supervisor = flow.add("supervisor", Supervisor { model });
    flow.then(agent, supervisor); // the agent ends with "default" (its `answer` node's action)
    flow.edge(supervisor, "retry", agent); // back into the agent, which starts over
    flow.end(supervisor, "approved");
    flow.end(supervisor, "give_up");

    let mut desk = Desk {
        question: "How do I get rid of limescale in my electric kettle?".to_string(),
        ..Desk::default()
    };
    println!("question: {}", desk.question);

    // Models drive both loops (the agent's searches, the supervisor's retries), so bound the
    // run: every node counts, the nested flow and the nodes inside it alike.
    let options = RunOptions::new().max_steps(40);
    let last = smol::block_on(flow.run_with(&mut desk, options))?;

    println!("the run ended with {last:?} after {} rejection(s)", desk.rejected.len());
    match (desk.approved, &desk.answer) {
        (true, Some(answer)) => println!("final answer: {answer}"),
        _ => return Err(format!("no answer was approved in {MAX_REJECTIONS} tries").into()),
    }
    Ok(())
}
