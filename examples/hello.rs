//! One node answers one question: the smallest complete flow.
//!
//! It shows the three phases of a node — `prep` reads the question from the shared store,
//! `exec` asks a language model, `post` writes the answer back — and how a run borrows the
//! store. The node holds the model; `exec` is the only phase that awaits it.
//!
//! Run with: `cargo run --example hello`. Offline it answers through a rule-based stand-in;
//! set `MINIFLOW_BASE_URL` and `MINIFLOW_MODEL` to ask a real model (see `support/mod.rs`).

use std::sync::Arc;

use miniflow::{Action, Ctx, Flow, Node, Params, Result};
use support::{Model, Rules};

mod support;

/// The shared store: everything the nodes of this flow read and write.
#[derive(Debug, Default)]
struct Store {
    question: String,
    answer: Option<String>,
}

/// Answers the question in the store.
struct Answer {
    model: Arc<dyn Model>,
}

impl Node<Store> for Answer {
    /// `exec` gets a copy of the question...
    type Prep = String;
    /// ...and produces the answer.
    type Output = String;

    fn prep(&self, store: &Store, _params: &Params) -> Result<String> {
        println!("prep: reading the question from the store");
        Ok(store.question.clone())
    }

    async fn exec(&self, question: &String, cx: Ctx<'_>) -> Result<String> {
        // `Ctx::attempt` counts from 0; people count attempts from 1.
        println!("exec: answering (attempt {})", cx.attempt() + 1);
        self.model.ask(question).await
    }

    fn post(&self, store: &mut Store, _question: String, answer: String) -> Result<Action> {
        println!("post: writing the answer to the store");
        store.answer = Some(answer);
        Ok(Action::DEFAULT)
    }
}

/// The offline stand-in's one rule.
fn stand_in(question: &str) -> String {
    match question {
        q if q.contains("life, the universe and everything") => "42".to_string(),
        q => format!("I do not know yet what to say about {q:?}."),
    }
}

fn main() -> support::Main {
    let model = support::model(Rules::new(stand_in))?;
    let mut flow = Flow::new();
    flow.add("answer", Answer { model });

    let mut store = Store {
        question: "What is the answer to life, the universe and everything?".to_string(),
        answer: None,
    };
    // Any executor drives a run; miniflow has none of its own.
    let action = futures::executor::block_on(flow.run(&mut store))?;

    println!("question: {}", store.question);
    println!("answer:   {}", store.answer.as_deref().unwrap_or("(none)"));
    println!("the flow ended with action {action:?}");
    Ok(())
}
