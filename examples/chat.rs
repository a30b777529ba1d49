//! A chat on the terminal: a loop of two nodes, one that reads what you type and one that
//! answers with the whole conversation so far.
//!
//! A chat is a flow with a cycle. `listen` reads your next line; `reply` sends the
//! conversation — every turn so far, kept in the shared store — to the model, prints its
//! answer, and the flow goes back to `listen`. The model "remembers" what you said earlier
//! only because each request carries the whole history. Typing `exit`, or the end of the
//! input, ends the run.
//!
//! It also shows where blocking I/O goes in async code: reading a line can take minutes, so
//! it happens in `exec`, on a helper thread, not in `prep` (see `Listen`).
//!
//! Run with: `cargo run --example chat` and type (`exit` to leave). It also reads the turns
//! from a file, `cargo run --example chat -- --script examples/chat.script`, or a pipe,
//! `cargo run --example chat < examples/chat.script`. Offline a stand-in that remembers your
//! name answers (`support/chat.rs`, with the reading of the input); set `MINIFLOW_BASE_URL`
//! and `MINIFLOW_MODEL` to chat with a real model (see `support/mod.rs`).

use std::sync::Arc;
use std::time::Duration;

use miniflow::{Action, Ctx, Error, Flow, Node, Params, Result};
use support::chat::{Input, Remembers, SYSTEM};
use support::{Message, Model};

mod support;

fn main() -> support::Main {
    let model = support::model(Remembers)?;

    // listen → reply → listen → …, until `listen` hears "exit"
    let mut flow = Flow::new();
    let listen = flow.add("listen", Listen);
    let reply = flow.add("reply", Reply { model });
    flow.then(listen, reply).then(reply, listen); // the loop: after each answer, listen again
    flow.edge(listen, "blank", listen).end(listen, "exit");
    // No step limit: the person at the keyboard decides when the loop ends, and a long chat
    // is not a bug. (A loop driven by a model's decisions needs one: see the agent.)

    let mut store = Chat { history: Vec::new(), input: Input::from_args()? };
    if store.input.interactive {
        println!("Chat with the model; type `exit` to leave.");
    }
    smol::block_on(flow.run(&mut store))?;

    let turns = store.history.iter().filter(|m| m.role == "user").count();
    println!("Goodbye! ({turns} turns)");
    Ok(())
}

/// The shared store: the conversation, and where the user's turns come from.
struct Chat {
    /// Every turn so far, the user's and the model's, oldest first.
    history: Vec<Message>,
    input: Input,
}

/// Reads the user's next turn.
///
/// Where does reading a line belong? Not in `prep`: `prep` is synchronous, and a read that
/// waits for a person would block the executor's thread — every other future on it (a timer,
/// another run) would stop until the user pressed Enter. So `prep` only hands out the input,
/// and `exec`, the phase that may wait, reads the line on a helper thread (`smol::unblock`)
/// and awaits it. (A channel fed by a reader thread would work too, but that thread would
/// read ahead: lines the chat never asks for would be taken from stdin.)
struct Listen;

impl Node<Chat> for Listen {
    type Prep = Input;
    type Output = Option<String>; // the line read, or `None` at the end of the input

    fn prep(&self, chat: &Chat, _: &Params) -> Result<Input> {
        Ok(chat.input.clone())
    }

    async fn exec(&self, input: &Input, _: Ctx<'_>) -> Result<Option<String>> {
        input.prompt()?; // `you> `, at a terminal
        let input = input.clone();
        Ok(smol::unblock(move || input.read_line()).await?)
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
        let system = Message::system(SYSTEM);
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

    /// A model behind a network fails now and then: two tries...
    fn max_retries(&self) -> usize {
        2
    }

    /// ...after the pause its error asks for, or a backoff; none for a refused key.
    fn wait(&self, error: &Error, cx: Ctx<'_>) -> Option<Duration> {
        support::wait(error, cx)
    }
}
