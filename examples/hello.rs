//! Hello: one node answers one question. The smallest complete flow, and the place to start.
//!
//! A flow is a graph of **nodes** that share a **store** (a struct of yours). Each node runs
//! in three phases: `prep` reads what it needs from the store, `exec` does the slow part —
//! here it asks a language model — and `post` writes the result back and returns an
//! **action**, the name of the edge to follow next. This flow has one node, so the run ends
//! after it, with the action as its result.
//!
//! Run with: `cargo run --example hello`. Offline, a stand-in model answers
//! (`support/oracle.rs`); set `MINIFLOW_BASE_URL` and `MINIFLOW_MODEL` to ask a real model
//! (see `support/mod.rs`).

use std::sync::Arc;

use miniflow::{Action, Ctx, Flow, Node, Params, Result};
use support::Model;

mod support;

fn main() -> support::Main {
    let model = support::model(support::oracle::stand_in())?;

    // The graph: one node, named "answer" (errors and events name it so).
    let mut flow = Flow::new();
    flow.add("answer", Answer { model });

    let question = "What is the answer to life, the universe and everything?";
    let mut store = Store { question: question.to_string(), answer: None };
    // Any executor drives a run; miniflow has none of its own.
    let action = futures::executor::block_on(flow.run(&mut store))?;

    println!("question: {}", store.question);
    println!("answer:   {}", store.answer.as_deref().unwrap_or("(none)"));
    println!("the flow ended with action {action:?}");
    Ok(())
}

/// The shared store: everything the nodes of this flow read and write.
#[derive(Debug)]
struct Store {
    question: String,
    answer: Option<String>,
}

/// Answers the question in the store. The node holds the model; only `exec` awaits it.
struct Answer {
    model: Arc<dyn Model>,
}

impl Node<Store> for Answer {
    /// What `prep` hands to `exec`: a copy of the question (`exec` cannot see the store)...
    type Prep = String;
    /// ...and what `exec` hands to `post`: the answer.
    type Output = String;

    fn prep(&self, store: &Store, _params: &Params) -> Result<String> {
        println!("prep: reading the question from the store");
        Ok(store.question.clone())
    }

    async fn exec(&self, question: &String, cx: Ctx<'_>) -> Result<String> {
        // `exec` is the phase a node may retry (see `retry-fallback`); `attempt` counts from 0.
        println!("exec: answering (attempt {})", cx.attempt() + 1);
        self.model.ask(question).await
    }

    fn post(&self, store: &mut Store, _question: String, answer: String) -> Result<Action> {
        println!("post: writing the answer to the store");
        store.answer = Some(answer);
        Ok(Action::DEFAULT) // "default": the edge a flow follows unless told otherwise
    }
}
