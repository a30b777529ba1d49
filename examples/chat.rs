//! A chat on the terminal: a loop of two nodes, one that reads what you type and one that
//! answers with the whole conversation so far.
//!
//! A chat is a flow with a cycle. `listen` reads your next line; `reply` sends the
//! conversation — every turn so far, kept in the shared store — to the model and prints its
//! answer, then the flow goes back to `listen`. The model "remembers" what you said earlier
//! only because each request carries the whole history. Typing `exit`, or the end of the
//! input, ends the run.
//!
//! It also shows where blocking I/O goes in async code: reading a line from a terminal can
//! take minutes, so it does not happen in `prep` (which must return quickly) but in `exec`,
//! on a helper thread (see `Listen`).
//!
//! Run with: `cargo run --example chat` and type (`exit` to leave). It also reads the turns
//! from a file, `cargo run --example chat -- --script examples/chat.script`, or from a pipe,
//! `cargo run --example chat < examples/chat.script`. Offline it answers through a
//! rule-based stand-in that remembers your name; set `MINIFLOW_BASE_URL` and
//! `MINIFLOW_MODEL` to chat with a real model (see `support/mod.rs`).

use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Write};
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use miniflow::{Action, Ctx, Flow, Node, Params, Result};
use support::{Message, Model};

mod support;

/// The shared store: the conversation, and where the user's turns come from.
struct Chat {
    /// Every turn so far, the user's and the model's, oldest first.
    history: Vec<Message>,
    input: Input,
}

/// Where the user's turns come from: the terminal, a pipe or a script file.
#[derive(Clone)]
struct Input {
    /// The lines to read. Behind an `Arc` so that `listen` can hand a clone to the thread
    /// that reads; behind a `Mutex` because that thread needs it mutably.
    lines: Arc<Mutex<Box<dyn BufRead + Send>>>,
    /// Whether a person is typing: then `listen` shows a prompt; otherwise it echoes each turn
    /// it reads, so that the output reads as a conversation.
    interactive: bool,
}

/// Reads the user's next turn.
///
/// Where does reading a line belong? Not in `prep`: `prep` is synchronous, and a read that
/// waits for a person would block the executor's thread — every other future on it (a timer,
/// another run, a progress spinner) would stop until the user pressed Enter. So `prep` only
/// hands out the input, and `exec`, the phase that may wait, reads the line on a helper
/// thread with `smol::unblock` and awaits it. (A channel fed by a reader thread, handed out
/// of `prep`, would work as well, but that thread would read ahead: lines the chat never asks
/// for would be taken from stdin.)
struct Listen;

impl Node<Chat> for Listen {
    type Prep = Input;
    /// The line read, or `None` at the end of the input.
    type Output = Option<String>;

    fn prep(&self, chat: &Chat, _: &Params) -> Result<Input> {
        Ok(chat.input.clone())
    }

    async fn exec(&self, input: &Input, _: Ctx<'_>) -> Result<Option<String>> {
        if input.interactive {
            print!("you> ");
            io::stdout().flush()?;
        }
        let lines = input.lines.clone();
        let line = smol::unblock(move || -> io::Result<Option<String>> {
            let mut lines = lines.lock().unwrap_or_else(PoisonError::into_inner);
            let mut line = String::new();
            Ok(match lines.read_line(&mut line)? {
                0 => None, // end of input
                _ => Some(line),
            })
        })
        .await?;
        Ok(line)
    }

    fn post(&self, chat: &mut Chat, input: Input, line: Option<String>) -> Result<Action> {
        let Some(line) = line else {
            // The end of a script or a pipe, or Ctrl-D at the terminal: a polite "exit".
            if input.interactive {
                println!();
            }
            return Ok("exit".into());
        };
        let text = line.trim();
        if !input.interactive && !text.is_empty() {
            println!("you> {text}");
        }
        if text.eq_ignore_ascii_case("exit") {
            return Ok("exit".into());
        }
        if text.is_empty() {
            return Ok("blank".into()); // nothing to answer: listen again
        }
        chat.history.push(Message::user(text));
        Ok(Action::DEFAULT)
    }
}

/// Answers the last turn, with the whole conversation as context.
struct Reply {
    model: Arc<dyn Model>,
}

impl Node<Chat> for Reply {
    type Prep = Vec<Message>;
    type Output = String;

    fn prep(&self, chat: &Chat, _: &Params) -> Result<Vec<Message>> {
        let system = Message::system(
            "You are a friendly assistant in a terminal chat. Answer in one to three short \
             sentences, in plain text without markdown.",
        );
        Ok(std::iter::once(system).chain(chat.history.iter().cloned()).collect())
    }

    async fn exec(&self, messages: &Vec<Message>, _: Ctx<'_>) -> Result<String> {
        Ok(self.model.chat(messages).await?.trim().to_string())
    }

    fn post(&self, chat: &mut Chat, _: Vec<Message>, reply: String) -> Result<Action> {
        println!("bot> {reply}");
        chat.history.push(Message::assistant(reply));
        Ok(Action::DEFAULT)
    }

    /// A real model behind a network can fail now and then; try twice before giving up.
    fn max_retries(&self) -> usize {
        2
    }
}

/// The offline stand-in. Unlike `support::Rules`, which sees only the last message, it reads
/// the whole conversation, as a real model does: that is how it knows your name.
struct Remembers;

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

/// Where the turns come from: `--script FILE`, else stdin. Only a terminal gets a prompt.
fn input_from_args() -> Result<Input> {
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

fn main() -> support::Main {
    let model = support::model(Remembers)?;

    let mut flow = Flow::new();
    let listen = flow.add("listen", Listen);
    let reply = flow.add("reply", Reply { model });
    flow.then(listen, reply);
    flow.edge(listen, "blank", listen);
    flow.then(reply, listen); // the loop: after each answer, listen again
    flow.end(listen, "exit");
    // No step limit here: the person at the keyboard decides when the loop ends, and a long
    // chat is not a bug. (A loop driven by a model's decisions needs one: see the agent.)

    let mut chat = Chat { history: Vec::new(), input: input_from_args()? };
    if chat.input.interactive {
        println!("Chat with the model; type `exit` to leave.");
    }
    smol::block_on(flow.run(&mut chat))?;

    let turns = chat.history.iter().filter(|m| m.role == "user").count();
    println!("Goodbye! ({turns} turns)");
    Ok(())
}
