//! Watching a run: a model's answer streamed to the console token by token, a timing table,
//! and the flow drawn as a diagram.
//!
//! Only `exec` waits on a model, so only `exec` sees the answer arrive piece by piece. It
//! passes each piece on with `cx.emit("token", piece)`, and the run hands it to the run's
//! *observer*, as it does every other event (a node's start and end, a retry, the run's
//! end). The observer here is a closure: it prints each node as it starts, lets a
//! `TokenPrinter` print the tokens as they come, and forwards every event to a `Trace`, which
//! times each node (both are recipes in `support/`, to copy). The observer belongs to the
//! run, not to the flow, so the flow knows nothing about consoles or tables.
//!
//! The flow writes a short paragraph: a nested `draft` flow (outline, then the streamed
//! text), then a title. After the run it prints the trace table and `Flow::to_mermaid()`,
//! whose output GitHub draws as a diagram, the nested flow as a box of its own.
//!
//! Run with: `cargo run --example observe`. Offline, a slow stand-in streams its answer a
//! word every 30 ms (`support/bees.rs`, with the prompts); set `MINIFLOW_BASE_URL` and
//! `MINIFLOW_MODEL` to watch a real model stream (see `support/mod.rs`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use miniflow::{
    Action, Ctx, Error, Event, Flow, Node, Observer, Params, Result, RunOptions, Value,
};
use support::trace::Trace;
use support::{Message, Model, TokenPrinter, bees};

mod support;

/// A nested flow, `draft`, plans and writes; the outer flow then titles the result.
fn flow(model: &Arc<dyn Model>) -> Flow<Article> {
    let mut draft = Flow::new();
    let outline = draft.add("outline", Outline { model: Arc::clone(model) });
    let write = draft.add("write", Compose { model: Arc::clone(model) });
    draft.then(outline, write);

    let mut flow = Flow::new();
    let draft = flow.add("draft", draft);
    let title = flow.add("title", Title { model: Arc::clone(model) });
    flow.then(draft, title);
    flow
}

fn main() -> support::Main {
    let model = support::model(bees::stand_in())?;
    let flow = flow(&model);

    // The observer is called from inside the run, so it only prints and records.
    let tokens = TokenPrinter::new(); // prints the "token" events as they come
    // The tokens of `write`'s last attempt, to compare with the text it stored.
    let streamed = Mutex::new(String::new());
    let trace = Trace::new();
    let observer = |event: &Event<'_>| {
        tokens.event(event); // first: it ends a streamed line before anything else is printed
        match event {
            Event::Custom { kind: "token", data: Value::Str(text), .. } => {
                streamed.lock().unwrap().push_str(text)
            }
            // An attempt that broke off mid-stream is not the answer: its tokens go.
            Event::Retry { node, .. } if node.to_string() == "draft/write" => {
                streamed.lock().unwrap().clear();
            }
            Event::NodeStart { node, .. } => println!("[{node}] started"),
            _ => {}
        }
        trace.event(event);
    };

    let mut article = Article { topic: bees::TOPIC.to_string(), ..Article::default() };
    smol::block_on(flow.run_with(&mut article, RunOptions::new().observer(&observer)))?;

    println!("\ntitle: {}", article.title);
    println!("outline: {}", article.outline.join("; "));
    let streamed = streamed.into_inner().unwrap();
    let same = streamed.trim() == article.text;
    println!("the last attempt's tokens add up to the stored text: {same}");

    // Timings vary from run to run: the table is printed on lines of its own.
    println!("\n{trace}\n");
    print!("{}", flow.to_mermaid());
    Ok(())
}

/// The shared store: the topic, and what each node adds to it.
#[derive(Debug, Default)]
struct Article {
    topic: String,
    outline: Vec<String>,
    text: String,
    title: String,
}

/// Plans the paragraph: a few points, one per line.
struct Outline {
    model: Arc<dyn Model>,
}

impl Node<Article> for Outline {
    type Prep = String;
    type Output = Vec<String>;

    fn prep(&self, article: &Article, _: &Params) -> Result<String> {
        Ok(bees::outline_prompt(&article.topic))
    }

    async fn exec(&self, prompt: &String, _: Ctx<'_>) -> Result<Vec<String>> {
        bees::outline(&self.model.ask(prompt).await?)
    }

    fn post(&self, article: &mut Article, _: String, points: Vec<String>) -> Result<Action> {
        article.outline = points;
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        3
    }

    fn wait(&self, error: &Error, cx: Ctx<'_>) -> Option<Duration> {
        support::wait(error, cx) // the model's error says whether, and when, to try again
    }
}

/// Writes the paragraph, streaming it: every piece the model sends becomes a "token" event.
struct Compose {
    model: Arc<dyn Model>,
}

impl Node<Article> for Compose {
    type Prep = Vec<Message>;
    type Output = String;

    fn prep(&self, article: &Article, _: &Params) -> Result<Vec<Message>> {
        Ok(bees::paragraph_prompt(&article.topic, &article.outline))
    }

    async fn exec(&self, messages: &Vec<Message>, cx: Ctx<'_>) -> Result<String> {
        // `cx` is `Copy`, so the callback can own a copy; `emit` reaches the run's observer
        // (or does nothing, cheaply, when the run has none).
        let on_token = move |piece: &str| cx.emit("token", piece);
        let text = self.model.chat_stream(messages, &on_token).await?;
        match text.trim() {
            "" => Err("the model wrote nothing".into()),
            text => Ok(text.to_string()),
        }
    }

    fn post(&self, article: &mut Article, _: Vec<Message>, text: String) -> Result<Action> {
        article.text = text;
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        3
    }

    fn wait(&self, error: &Error, cx: Ctx<'_>) -> Option<Duration> {
        support::wait(error, cx)
    }
}

/// Gives the paragraph a title.
struct Title {
    model: Arc<dyn Model>,
}

impl Node<Article> for Title {
    type Prep = String;
    type Output = String;

    fn prep(&self, article: &Article, _: &Params) -> Result<String> {
        Ok(bees::title_prompt(&article.text))
    }

    async fn exec(&self, prompt: &String, _: Ctx<'_>) -> Result<String> {
        bees::title(&self.model.ask(prompt).await?)
    }

    fn post(&self, article: &mut Article, _: String, title: String) -> Result<Action> {
        article.title = title;
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        3
    }

    fn wait(&self, error: &Error, cx: Ctx<'_>) -> Option<Duration> {
        support::wait(error, cx)
    }
}
