//! Human in the loop: a flow that stops to ask a person, and goes on when the answer comes.
//!
//! A model drafts a reply to a customer's email, and a person must approve it before it is
//! sent. The person may answer in a minute or next week, so the flow does not wait for them:
//! `notify` tells the reviewer that a draft awaits them, and `ask_human`, finding no decision
//! in the store, returns `"pause"`, an action the flow declares as an end (`Flow::end`). The
//! run is over; the program saves the store and may exit. When the answer comes, a later
//! session loads the store, writes the answer into it, and resumes the run at `ask_human`
//! (`RunOptions::start_at`): `approve` sends the reply, `revise: <notes>` goes back to the
//! draft with the notes, and `later` pauses again.
//!
//! A resumed run runs its first node again, from its `prep`. So the node that pauses touches
//! nothing but the store, and the side effect, the notification, is a node of its own *before*
//! the pause: it has finished when the run resumes after it, and is not repeated. The reviewer
//! hears once per draft, however many times the run is resumed.
//!
//! When stdin is a terminal you are the reviewer; otherwise a scripted reviewer first answers
//! `later`, then asks for a revision, then approves.
//!
//! Run with: `cargo run --example human-in-the-loop`. Offline a stand-in drafts
//! (`support/helpdesk.rs`, with the email, the prompt and the reviewer); set
//! `MINIFLOW_BASE_URL` and `MINIFLOW_MODEL` to have a real model write (see `support/mod.rs`).

use std::sync::Arc;
use std::time::Duration;

use miniflow::{Action, Ctx, Error, Flow, Node, Params, Result, RunOptions, node_fn};
use serde::{Deserialize, Serialize};
use support::helpdesk::{self, Decision, Reviewer};
use support::{Message, Model, text};

mod support;

/// The node that asks the person, where a paused run resumes.
const ASK_HUMAN: &str = "ask_human";
/// The action that pauses the run until the person answers.
const PAUSE: Action = Action::new("pause");

/// The flow: draft → notify → ask_human, which pauses, sends, or goes back to draft.
fn flow(model: Arc<dyn Model>) -> Flow<Ticket> {
    let mut flow = Flow::new();
    let draft = flow.add("draft", DraftReply { model });
    let notify = flow.add("notify", node_fn(notify));
    let ask_human = flow.add(ASK_HUMAN, node_fn(ask_human));
    // Sending is a stand-in here; a real mail API call is I/O, and would be awaited in `exec`.
    let send = flow.add(
        "send",
        node_fn(|ticket: &mut Ticket, _| {
            ticket.sent = true;
            println!("  sent reply v{} to the customer", ticket.version);
            Ok("sent".into())
        }),
    );
    flow.chain(&[draft, notify, ask_human]).end(ask_human, PAUSE);
    flow.edge(ask_human, "approve", send).edge(ask_human, "revise", draft);
    flow
}

fn main() -> support::Main {
    let flow = flow(support::model(helpdesk::stand_in())?);
    let mut reviewer = Reviewer::new();

    // Session 1: the email arrives; the run drafts a reply, notifies the reviewer, and pauses.
    println!("session 1: a customer email arrives");
    let mut ticket = Ticket { email: helpdesk::EMAIL.to_string(), ..Ticket::default() };
    let mut ended = smol::block_on(flow.run(&mut ticket))?;
    let mut session: u32 = 1;

    while ended == PAUSE {
        // The run has ended: nothing waits in memory, so the program could exit now. What it
        // keeps is the ticket, saved as JSON (a file or a database row in real life), and
        // where to resume, which is always `ask_human`: the only node that pauses.
        let saved = serde_json::to_string(&ticket)?;
        println!("  paused at `{ASK_HUMAN}`, ticket saved");

        // A later session: everything it knows comes from what was saved.
        session += 1;
        ticket = serde_json::from_str(&saved)?;
        println!("\nsession {session}: the reviewer reads draft v{}", ticket.version);
        for line in ticket.draft.lines() {
            println!("{}", format!("  | {line}").trim_end());
        }
        ticket.decision = Some(reviewer.decide()?);
        let resume = RunOptions::new().start_at(ASK_HUMAN);
        ended = smol::block_on(flow.run_with(&mut ticket, resume))?;
    }

    let (sessions, drafts) = (plural(session, "session"), plural(ticket.version, "draft"));
    println!("\nthe flow ended with {ended:?} after {sessions} and {drafts}");
    println!("notifications sent: {}, for {drafts}", ticket.notifications);
    println!("sent: {}", ticket.sent);
    match ticket.notifications == ticket.version {
        true => Ok(()),
        false => Err("a resumed run notified the reviewer again".into()),
    }
}

/// The shared store: one support ticket. It is saved between sessions, so it derives
/// `Serialize` and `Deserialize`, and it holds everything the flow needs to go on.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Ticket {
    /// The customer's email.
    email: String,
    /// The current draft of the reply, and how many drafts there have been.
    draft: String,
    version: u32,
    /// What the reviewer asked to change, for the next draft.
    notes: Option<String>,
    /// How many times the reviewer was told that a draft awaits them.
    notifications: u32,
    /// The reviewer's answer, once there is one; `ask_human` takes it out.
    decision: Option<Decision>,
    sent: bool,
}

/// Tells the reviewer that a draft awaits them: the side effect, in a node of its own before
/// the pause, so that resuming at `ask_human` never repeats it. (A real notification, an
/// email or a chat message, is I/O, and would be awaited in `exec`.)
fn notify(ticket: &mut Ticket, _: &Params) -> Result<Action> {
    ticket.notifications += 1;
    println!("  notified the reviewer: draft v{} awaits review", ticket.version);
    Ok(Action::DEFAULT)
}

/// Pauses the run until there is a decision, then routes on it. It touches nothing but the
/// store, so running it again on every resume is harmless.
fn ask_human(ticket: &mut Ticket, _: &Params) -> Result<Action> {
    Ok(match ticket.decision.take() {
        None | Some(Decision::Later) => PAUSE, // no answer yet: end the run here, to resume here
        Some(Decision::Approve) => "approve".into(),
        Some(Decision::Revise(notes)) => {
            ticket.notes = Some(notes);
            "revise".into()
        }
    })
}

/// `n` and `noun`, in the plural unless `n` is 1: "1 draft", "2 drafts".
fn plural(n: u32, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// Asks the model for a reply, or for a better one when the reviewer left notes.
struct DraftReply {
    model: Arc<dyn Model>,
}

impl Node<Ticket> for DraftReply {
    type Prep = Vec<Message>;
    type Output = String;

    fn prep(&self, ticket: &Ticket, _: &Params) -> Result<Vec<Message>> {
        Ok(helpdesk::draft_prompt(&ticket.email, &ticket.draft, ticket.notes.as_deref()))
    }

    async fn exec(&self, messages: &Vec<Message>, _: Ctx<'_>) -> Result<String> {
        let reply = self.model.chat(messages).await?;
        // `body` drops the code fence some models put around an email (and a `<think>` block).
        let email = text::body(&reply);
        match email.is_empty() {
            true => Err(format!("the model's answer holds no email: {reply:?}").into()),
            false => Ok(email),
        }
    }

    fn post(&self, ticket: &mut Ticket, _: Vec<Message>, draft: String) -> Result<Action> {
        ticket.draft = draft;
        ticket.version += 1;
        ticket.notes = None; // used up
        println!("  drafted reply v{}", ticket.version);
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        2 // a real model server sometimes fails a request
    }

    fn wait(&self, error: &Error, cx: Ctx<'_>) -> Option<Duration> {
        support::wait(error, cx) // its pause, a backoff, or none for a refused key
    }
}
