//! What `examples/chat.rs` talks through: where the user's turns come from, the system
//! prompt, and the offline stand-in that remembers your name.

use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Write};
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use miniflow::Result;

use super::{Message, Model};

/// What the assistant is told before the conversation.
pub const SYSTEM: &str = "You are a friendly assistant in a terminal chat. Answer in one to \
                          three short sentences, in plain text without markdown.";

/// Where the user's turns come from: the terminal, a pipe or a script file.
#[derive(Clone)]
pub struct Input {
    /// The lines to read. Behind an `Arc` so that a clone can go to the thread that reads;
    /// behind a `Mutex` because that thread needs it mutably.
    lines: Arc<Mutex<Box<dyn BufRead + Send>>>,
    /// Whether a person is typing: then [`prompt`](Input::prompt) shows `you> `; otherwise
    /// the chat echoes each turn it reads, so that the output reads as a conversation.
    pub interactive: bool,
}

impl Input {
    /// Where the command line says the turns come from: `--script FILE`, else stdin. Only a
    /// terminal counts as interactive.
    pub fn from_args() -> Result<Input> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let (lines, interactive): (Box<dyn BufRead + Send>, bool) = match args.as_slice() {
            [] => (Box::new(BufReader::new(io::stdin())), io::stdin().is_terminal()),
            [flag, path] if flag == "--script" => {
                let file = File::open(path).map_err(|e| format!("cannot open {path:?}: {e}"))?;
                (Box::new(BufReader::new(file)), false)
            }
            _ => return Err("usage: chat [--script FILE]".into()),
        };
        Ok(Input { lines: Arc::new(Mutex::new(lines)), interactive })
    }

    /// Shows `you> ` when a person is typing.
    pub fn prompt(&self) -> io::Result<()> {
        if self.interactive {
            print!("you> ");
            io::stdout().flush()?;
        }
        Ok(())
    }

    /// The next line, or `None` at the end of the input. It blocks until the line is there,
    /// which at a terminal can take minutes: call it on a thread of its own.
    pub fn read_line(&self) -> io::Result<Option<String>> {
        let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        let mut line = String::new();
        Ok(match lines.read_line(&mut line)? {
            0 => None, // end of input
            _ => Some(line),
        })
    }
}

/// The offline stand-in. Unlike [`Rules`](super::Rules), which sees only the last message, it
/// reads the whole conversation, as a real model does: that is how it knows your name.
pub struct Remembers;

impl Model for Remembers {
    fn chat<'a>(&'a self, messages: &'a [Message]) -> BoxFuture<'a, Result<String>> {
        let said: Vec<&str> =
            messages.iter().filter(|m| m.role == "user").map(|m| m.content.as_str()).collect();
        // Which turn said the name, and the name: found anywhere in the history.
        let name = said.iter().enumerate().find_map(|(i, turn)| Some((i + 1, name_in(turn)?)));
        let last = said.last().copied().unwrap_or_default().to_lowercase();
        let reply = if last.contains("my name is") {
            let name = name.map_or("friend", |(_, name)| name);
            format!("Nice to meet you, {name}! What shall we talk about?")
        } else if last.contains("what is my name") || last.contains("what's my name") {
            match name {
                Some((turn, name)) => {
                    format!("Your name is {name}; you told me in message {turn}.")
                }
                None => "You have not told me your name yet.".to_string(),
            }
        } else if last.contains("project") {
            "Try a small command-line tool, such as a to-do list that saves to a file: it \
             touches parsing, files and error handling."
                .to_string()
        } else {
            format!(
                "That is message {} of our chat, and I am only a stand-in: ask me my name.",
                said.len()
            )
        };
        Box::pin(async move { Ok(reply) })
    }
}

/// The name in "... my name is Ada ...", if the turn says it.
fn name_in(turn: &str) -> Option<&str> {
    // ASCII lowercase keeps every byte where it was, so `at` is an index into `turn` too.
    let at = turn.to_ascii_lowercase().find("my name is ")? + "my name is ".len();
    let word = turn[at..].split(|c: char| !c.is_alphanumeric()).next()?;
    (!word.is_empty()).then_some(word)
}
