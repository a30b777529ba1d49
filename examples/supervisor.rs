//! A supervisor: an agent flow runs as one node of an outer flow, and a reviewer after it
//! sends a bad answer back for another try.
//!
//! Flows are nodes: the agent (`decide` ⇄ `search`, then `answer`) is a flow of its own, added
//! to the outer flow like a single step, and its last action leads on to `supervisor`. There a
//! model reviews the answer; a rejection goes into the store with its reason, and `"retry"`
//! runs the agent again. Offline, the first answer is unsafe (it mixes bleach with vinegar);
//! the second is approved. Each visit of the agent has a deadline ([`Flow::timeout`]): past it,
//! the agent is dropped where it waits, and the run fails with [`FlowError::Timeout`].
//!
//! Run with: `cargo run --example supervisor` (add `-- --stall` and the model hangs instead of
//! writing its second answer). Offline a stand-in answers and reviews (`support/kettle.rs`);
//! set `MINIFLOW_BASE_URL` and `MINIFLOW_MODEL` to use a real model (see `support/mod.rs`).

use std::sync::Arc;
use std::time::Duration;

use miniflow::{Action, Ctx, Error, Flow, FlowError, Node, Params, Result, RunOptions};
use support::{Model, kettle, text};

mod support;

const MAX_REJECTIONS: usize = 3; // then the supervisor gives up

fn main() -> support::Main {
    let (stall, model) = kettle::stall_if_asked(support::model(kettle::stand_in())?);

    // The agent, a flow of its own: decide ⇄ search, then answer.
    let mut agent = Flow::new();
    let decide = agent.add("decide", Decide { model: model.clone() });
    let search = agent.add("search", Search);
    let answer = agent.add("answer", Answer { model: model.clone() });
    agent.edge(decide, "search", search).edge(decide, "answer", answer).then(search, decide);

    // The outer flow: the whole agent is one node, the supervisor another.
    let mut flow = Flow::new();
    let agent = flow.add("agent", agent);
    let supervisor = flow.add("supervisor", Supervisor { model });
    flow.then(agent, supervisor).edge(supervisor, "retry", agent); // the agent from its start
    flow.end(supervisor, "approved").end(supervisor, "give_up");
    flow.timeout(agent, kettle::deadline()); // per visit: 200 ms offline, minutes with a server

    let mut desk = Desk { question: kettle::QUESTION.into(), ..Desk::default() };
    println!("question: {}", desk.question);
    // Models drive both loops, so bound the run: every node counts, the agent's nested ones too.
    match smol::block_on(flow.run_with(&mut desk, RunOptions::new().max_steps(40))) {
        Ok(last) => {
            println!("the run ended with {last:?} after {} rejection(s)", desk.rejected.len())
        }
        // Dropped where it waited, the agent left the store as its last finished `post` did.
        Err(error @ FlowError::Timeout { .. }) if stall => {
            println!("the agent ran out of time: {error}");
            println!("left in the store: notes: {}, answer: {:?}", desk.notes.len(), desk.answer);
        }
        Err(error) => return Err(error.into()), // a timeout too, unless `--stall` asked for it
    }
    Ok(())
}

/// The shared store of both flows: the outer one and the agent nested in it.
#[derive(Debug, Default)]
struct Desk {
    question: String,
    notes: Vec<String>,
    searches: Vec<String>,
    next_query: Option<String>,
    answer: Option<String>,
    rejected: Vec<(String, String)>,
}

/// Asks the model whether to search or to answer.
struct Decide {
    model: Arc<dyn Model>,
}

impl Node<Desk> for Decide {
    type Prep = String;
    type Output = Option<String>; // `Some(query)` to search, `None` to answer

    fn prep(&self, desk: &Desk, _: &Params) -> Result<String> {
        Ok(kettle::decide_prompt(&desk.question, &desk.searches, &desk.notes))
    }

    async fn exec(&self, prompt: &String, cx: Ctx<'_>) -> Result<Option<String>> {
        let query = kettle::parse_decision(&self.model.ask(prompt).await?)?; // or ask again
        let what = query.as_ref().map_or("answer now".into(), |q| format!("search {q:?}"));
        println!("{}: {what}", cx.node()); // the node's path in the nested flows: agent/decide
        Ok(query)
    }

    fn post(&self, desk: &mut Desk, _: String, query: Option<String>) -> Result<Action> {
        desk.next_query = query;
        Ok(if desk.next_query.is_some() { "search" } else { "answer" }.into())
    }

    fn max_retries(&self) -> usize {
        3
    }

    fn wait(&self, error: &Error, cx: Ctx<'_>) -> Option<Duration> {
        support::wait(error, cx) // a server's pause, a backoff, or none for a refused key
    }
}

/// Runs the search `decide` chose and keeps what it found.
struct Search;

impl Node<Desk> for Search {
    type Prep = String;
    type Output = Vec<String>;

    fn prep(&self, desk: &Desk, _: &Params) -> Result<String> {
        desk.next_query.clone().ok_or_else(|| "no query to search: route here from `decide`".into())
    }

    async fn exec(&self, query: &String, cx: Ctx<'_>) -> Result<Vec<String>> {
        let found = kettle::search(query); // a web search would be awaited here
        println!("{}: found {} documents", cx.node(), found.len());
        Ok(found)
    }

    fn post(&self, desk: &mut Desk, query: String, found: Vec<String>) -> Result<Action> {
        desk.notes.extend(found);
        desk.searches.push(query);
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
        Ok(kettle::answer_prompt(&desk.question, &desk.notes, desk.rejected.last()))
    }

    async fn exec(&self, prompt: &String, cx: Ctx<'_>) -> Result<String> {
        let answer = text::body(&self.model.ask(prompt).await?); // without fences or <think>
        println!("{}: {answer}", cx.node());
        Ok(answer)
    }

    fn post(&self, desk: &mut Desk, _: String, answer: String) -> Result<Action> {
        desk.answer = Some(answer);
        Ok(Action::DEFAULT) // the agent flow's last node: this action routes the outer flow
    }

    fn max_retries(&self) -> usize {
        3
    }

    fn wait(&self, error: &Error, cx: Ctx<'_>) -> Option<Duration> {
        support::wait(error, cx)
    }
}

/// Has the answer reviewed, and routes: `"approved"` ends the run, `"retry"` reruns the agent.
struct Supervisor {
    model: Arc<dyn Model>,
}

impl Node<Desk> for Supervisor {
    type Prep = String;
    type Output = kettle::Verdict;

    fn prep(&self, desk: &Desk, _: &Params) -> Result<String> {
        let answer = desk.answer.as_deref().ok_or("no answer to review: the agent runs first")?;
        Ok(kettle::review_prompt(&desk.question, &desk.notes, answer))
    }

    async fn exec(&self, prompt: &String, _: Ctx<'_>) -> Result<kettle::Verdict> {
        kettle::parse_verdict(&self.model.ask(prompt).await?)
    }

    fn post(&self, desk: &mut Desk, _: String, verdict: kettle::Verdict) -> Result<Action> {
        if verdict.approved {
            println!("supervisor: approved: {}", verdict.reason);
            return Ok("approved".into());
        }
        desk.rejected.push((desk.answer.take().unwrap_or_default(), verdict.reason.clone()));
        let give_up = desk.rejected.len() >= MAX_REJECTIONS; // not round and round for ever
        let (what, action) =
            if give_up { ("giving up", "give_up") } else { ("back to the agent", "retry") };
        println!("supervisor: rejected, {what}: {}", verdict.reason);
        Ok(action.into())
    }

    fn max_retries(&self) -> usize {
        3
    }

    fn wait(&self, error: &Error, cx: Ctx<'_>) -> Option<Duration> {
        support::wait(error, cx)
    }
}
