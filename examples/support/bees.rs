//! What `examples/observe.rs` asks a model about honeybees, how it reads the replies, and
//! its offline stand-in.

use std::sync::Arc;
use std::time::Duration;

use miniflow::Result;

use super::{Message, Model, Rules, Slow, text};

/// What the paragraph is about.
pub const TOPIC: &str = "how honeybees tell each other where flowers are";

/// The prompt for a three-point outline of a paragraph about `topic`.
pub fn outline_prompt(topic: &str) -> String {
    format!(
        "Write a three-point outline for one short paragraph about {topic}. \
         One point per line, a few words each, nothing else."
    )
}

/// The outline's points in a model's reply (without list markers, fences or an
/// introduction), or an error if there are none.
pub fn outline(reply: &str) -> Result<Vec<String>> {
    let points = text::lines(reply);
    match points.is_empty() {
        true => Err(format!("no outline points in the model's reply {reply:?}").into()),
        false => Ok(points),
    }
}

/// The conversation that asks for the paragraph about `topic`, following `outline`.
pub fn paragraph_prompt(topic: &str, outline: &[String]) -> Vec<Message> {
    let points: String = outline.iter().map(|p| format!("- {p}\n")).collect();
    vec![
        Message::system("You write clear, friendly prose for curious readers."),
        Message::user(format!(
            "Write one paragraph of about 50 words about {topic}, following this outline:\n\
             {points}Reply with the paragraph only, on a single line."
        )),
    ]
}

/// The prompt for a title of `paragraph`.
pub fn title_prompt(paragraph: &str) -> String {
    format!(
        "Give this paragraph a short title of at most six words. \
         Reply with the title only.\n\n{paragraph}"
    )
}

/// The title in a model's reply. Models like to label their answer ("Title: …",
/// "**title:** …"): [`text::field`] finds the label in any case and returns what follows it.
/// Without a label, the title is the reply's first line.
pub fn title(reply: &str) -> Result<String> {
    let labelled = text::field(reply, "title").filter(|title| !title.is_empty());
    let title = labelled.or_else(|| text::lines(reply).into_iter().next());
    title.ok_or_else(|| format!("no title in the model's reply {reply:?}").into())
}

/// The offline stand-in: one rule per prompt. It is slow on purpose: 30 ms before a reply,
/// and when streaming, 30 ms before each word, so the paragraph appears word by word.
pub fn stand_in() -> impl Model {
    let rules = Rules::new(|prompt: &str| {
        let reply = match prompt {
            p if p.contains("three-point outline") => {
                "1. What a honeybee dance is\n2. How it points to food\n3. Why it matters to the \
                 hive"
            }
            p if p.contains("Write one paragraph") => {
                "A honeybee that finds flowers comes home and dances. Its waggle run points \
                 toward the food, measured against the sun, and its length tells how far away \
                 it is. Sisters follow the steps, then fly straight there, so one good find \
                 feeds the whole hive."
            }
            p if p.contains("short title") => "Title: \"The Waggle Dance\"",
            _ => "I have no rule for that prompt.",
        };
        reply.to_string()
    });
    Slow::new(Arc::new(rules), Duration::from_millis(30))
}
