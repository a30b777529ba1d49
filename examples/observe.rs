//! Watching a run: a model's answer streamed to the console token by token, a timing table,
//! and the flow drawn as a diagram.
//!
//! A node's `exec` is the only phase that waits on a model, so it is the only one that sees the
//! answer arrive piece by piece. It passes each piece on with `Ctx::emit("token", piece)`, and
//! the run hands it to an *observer*: here a closure that prints tokens as they come and
//! forwards every event to a [`Trace`] (an observer of its own, in `support/trace.rs`: a recipe
//! to copy), which times each node. The observer belongs to the run, not to the flow, so the
//! flow itself knows nothing about consoles or tables.
//!
//! The flow writes a short paragraph: a nested `draft` flow (outline, then the streamed text),
//! then a title. After the run it prints the trace table and `Flow::to_mermaid()`, whose output
//! GitHub draws as a diagram, the nested flow as a box of its own.
//!
//! Run with: `cargo run --example observe`. Offline a slow rule-based stand-in streams its
//! answer a word every 30 ms; set `MINIFLOW_BASE_URL` and `MINIFLOW_MODEL` to watch a real
//! model stream (see `support/mod.rs`).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use miniflow::{Action, Ctx, Event, Flow, Node, Observer, Params, Result, RunOptions};
use support::trace::Trace;
use support::{Message, Model, Rules, Slow, text};

mod support;

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
        Ok(article.topic.clone())
    }

    async fn exec(&self, topic: &String, _: Ctx<'_>) -> Result<Vec<String>> {
        let prompt = format!(
            "Write a three-point outline for one short paragraph about {topic}. \
             One point per line, a few words each, nothing else."
        );
        let reply = self.model.ask(&prompt).await?;
        let points = text::lines(&reply);
        match points.is_empty() {
            true => Err(format!("no outline points in the model's reply {reply:?}").into()),
            false => Ok(points),
        }
    }

    fn post(&self, article: &mut Article, _: String, points: Vec<String>) -> Result<Action> {
        article.outline = points;
        Ok(Action::DEFAULT)
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
        let points: String = article.outline.iter().map(|p| format!("- {p}\n")).collect();
        Ok(vec![
            Message::system("You write clear, friendly prose for curious readers."),
            Message::user(format!(
                "Write one paragraph of about 50 words about {}, following this outline:\n{points}\
                 Reply with the paragraph only, on a single line.",
                article.topic
            )),
        ])
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
}

/// Gives the paragraph a title.
struct Title {
    model: Arc<dyn Model>,
}

impl Node<Article> for Title {
    type Prep = String;
    type Output = String;

    fn prep(&self, article: &Article, _: &Params) -> Result<String> {
        Ok(article.text.clone())
    }

    async fn exec(&self, paragraph: &String, _: Ctx<'_>) -> Result<String> {
        let prompt = format!(
            "Give this paragraph a short title of at most six words. \
             Reply with the title only.\n\n{paragraph}"
        );
        let reply = self.model.ask(&prompt).await?;
        // Models like to label their answer ("Title: …", "**title:** …"); `field` finds the
        // label in any case and returns what follows it. Without a label, the title is the
        // reply's first line.
        let labelled = text::field(&reply, "title").filter(|title| !title.is_empty());
        let title = labelled.or_else(|| text::lines(&reply).into_iter().next());
        title.ok_or_else(|| format!("no title in the model's reply {reply:?}").into())
    }

    fn post(&self, article: &mut Article, _: String, title: String) -> Result<Action> {
        article.title = title;
        Ok(Action::DEFAULT)
    }
}

/// The offline stand-in: one rule per prompt.
fn stand_in(prompt: &str) -> String {
    let reply = match prompt {
        p if p.contains("three-point outline") => {
            "1. What a honeybee dance is\n2. How it points to food\n3. Why it matters to the hive"
        }
        p if p.contains("Write one paragraph") => {
            "A honeybee that finds flowers comes home and dances. Its waggle run points toward \
             the food, measured against the sun, and its length tells how far away it is. \
             Sisters follow the steps, then fly straight there, so one good find feeds the \
             whole hive."
        }
        p if p.contains("short title") => "Title: \"The Waggle Dance\"",
        _ => "I have no rule for that prompt.",
    };
    reply.to_string()
}

fn main() -> support::Main {
    let rules = Arc::new(Rules::new(stand_in));
    let model = support::model(Slow::new(rules, Duration::from_millis(30)))?;

    // A nested flow: `draft` plans and writes; the outer flow then titles the result.
    let mut draft = Flow::new();
    let outline = draft.add("outline", Outline { model: model.clone() });
    let write = draft.add("write", Compose { model: model.clone() });
    draft.then(outline, write);

    let mut flow = Flow::new();
    let draft = flow.add("draft", draft);
    let title = flow.add("title", Title { model });
    flow.then(draft, title);

    // The observer: print each node as it starts, each token as it arrives, and hand every
    // event to the trace. It is called from inside the run, so it only prints and records.
    let trace = Trace::new();
    let mid_line = AtomicBool::new(false); // a streamed line waiting for its newline
    let streamed = Mutex::new(String::new()); // the tokens, to compare with the stored text
    let observer = |event: &Event<'_>| {
        match event {
            Event::Custom { kind: "token", data, .. } => {
                print!("{data}");
                let _ = std::io::stdout().flush(); // show it now, not when the line ends
                mid_line.store(true, Ordering::Relaxed);
                streamed.lock().unwrap().push_str(data);
            }
            Event::NodeStart { node, .. } => println!("[{node}] started"),
            // The streaming node has ended: finish its line.
            Event::NodeEnd { .. } if mid_line.swap(false, Ordering::Relaxed) => println!(),
            _ => {}
        }
        trace.event(event);
    };

    let mut article = Article {
        topic: "how honeybees tell each other where flowers are".into(),
        ..Article::default()
    };
    smol::block_on(flow.run_with(&mut article, RunOptions::new().observer(&observer)))?;

    println!("\ntitle: {}", article.title);
    println!("outline: {}", article.outline.join("; "));
    let streamed = streamed.into_inner().unwrap();
    println!("the tokens add up to the stored text: {}", streamed.trim() == article.text);

    // Timings vary from run to run: the table is printed on lines of its own.
    println!("\n{trace}\n");
    print!("{}", flow.to_mermaid());
    Ok(())
}
