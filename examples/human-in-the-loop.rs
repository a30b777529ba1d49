//! Human in the loop: a flow that stops to ask a person, and goes on when the answer comes.
//!
//! A model drafts a reply to a customer's email, and a person must approve it before it is
//! sent. The person may answer in a minute or next week, so the flow does not wait for them:
//! the `ask_human` node, finding no decision in the store, returns the action `"pause"`,
//! which the flow declares as an end (`Flow::end`). The run is over; the program saves the
//! store, and can exit. When the answer comes, a later session loads the store, writes the
//! answer into it, and resumes the run at `ask_human` (`RunOptions::start_at`), which now
//! finds a decision: `approve` sends the reply, `revise: <notes>` goes back to the draft with
//! the notes, and the new draft pauses for review again.
//!
//! When stdin is a terminal you are the reviewer; otherwise (say, with stdin at /dev/null)
//! a scripted reviewer first asks for a revision, then approves.
//!
//! Run with: `cargo run --example human-in-the-loop`. Offline the drafts come from a
//! rule-based stand-in; set `MINIFLOW_BASE_URL` and `MINIFLOW_MODEL` to have a real model
//! write them (see `support/mod.rs`).

use std::collections::VecDeque;
use std::io::{self, BufRead, IsTerminal, Write};
use std::sync::Arc;

use miniflow::{Action, Ctx, Flow, Node, Params, Result, RunOptions, node_fn};
use serde::{Deserialize, Serialize};
use support::{Message, Model, Rules, text};

mod support;

/// The node that asks the person, where a paused run resumes.
const ASK_HUMAN: &str = "ask_human";
/// The action that pauses the run until the person answers.
const PAUSE: Action = Action::new("pause");

const EMAIL: &str = "Hello, my Aurora desk lamp (order #4471) arrived today with the glass \
shade cracked in two places. I'd like a refund, please. — Maria";

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
    /// The reviewer's answer, once there is one; `ask_human` takes it out.
    decision: Option<Decision>,
    sent: bool,
}

/// What the reviewer can say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Decision {
    Approve,
    Revise(String),
}

impl Decision {
    /// Reads `approve` or `revise: <notes>` (any case, spaces around it are fine).
    fn parse(answer: &str) -> Option<Decision> {
        let answer = answer.trim();
        if answer.eq_ignore_ascii_case("approve") {
            return Some(Decision::Approve);
        }
        let (word, notes) = answer.split_once(':')?;
        let notes = notes.trim();
        (word.trim().eq_ignore_ascii_case("revise") && !notes.is_empty())
            .then(|| Decision::Revise(notes.to_string()))
    }
}

/// Asks the model for a reply, or for a better one when the reviewer left notes.
struct DraftReply {
    model: Arc<dyn Model>,
}

impl Node<Ticket> for DraftReply {
    type Prep = Vec<Message>;
    type Output = String;

    fn prep(&self, ticket: &Ticket, _: &Params) -> Result<Vec<Message>> {
        let mut prompt = format!("The customer's email:\n\n{}", ticket.email);
        if let Some(notes) = &ticket.notes {
            prompt += &format!(
                "\n\nYour previous draft:\n\n{}\n\nReviewer's notes: {notes}\n\n\
                 Rewrite the draft so that it follows the reviewer's notes.",
                ticket.draft
            );
        }
        Ok(vec![
            Message::system(
                "You are Sam, a friendly and concise customer-support agent at Lumen Lamps. \
                 Write the reply to the customer's email. Answer with the body of the email \
                 only, signed \"Sam, Lumen Lamps support\": no subject line, no comments.",
            ),
            Message::user(prompt),
        ])
    }

    async fn exec(&self, messages: &Vec<Message>, _: Ctx<'_>) -> Result<String> {
        let reply = self.model.chat(messages).await?;
        // `body` drops the code fence some models put around an email (and a reasoning
        // model's `<think>` block), and the blank space around it.
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
}

/// The flow: draft → ask_human, which pauses, sends, or goes back to draft.
fn build(model: Arc<dyn Model>) -> Result<Flow<Ticket>> {
    let mut flow = Flow::new();
    let draft = flow.add("draft", DraftReply { model });
    let ask_human = flow.add(
        ASK_HUMAN,
        node_fn(|ticket: &mut Ticket, _| {
            Ok(match ticket.decision.take() {
                None => PAUSE, // no answer yet: end the run here, to resume here later
                Some(Decision::Approve) => "approve".into(),
                Some(Decision::Revise(notes)) => {
                    ticket.notes = Some(notes);
                    "revise".into()
                }
            })
        }),
    );
    // Sending is a stand-in here; a real mail API call is I/O, and would be a `Node` that
    // awaits it in `exec`.
    let send = flow.add(
        "send",
        node_fn(|ticket: &mut Ticket, _| {
            ticket.sent = true;
            println!("  sent reply v{} to the customer", ticket.version);
            Ok("sent".into())
        }),
    );
    flow.then(draft, ask_human);
    flow.end(ask_human, PAUSE);
    flow.edge(ask_human, "approve", send);
    flow.edge(ask_human, "revise", draft);
    Ok(flow)
}

/// Who answers: the person at the terminal, or a script.
enum Reviewer {
    Person,
    Scripted(VecDeque<&'static str>),
}

impl Reviewer {
    /// The person if stdin is a terminal; the script otherwise, so that the example runs
    /// unattended (in CI, or with stdin at /dev/null).
    fn new() -> Self {
        match io::stdin().is_terminal() {
            true => Reviewer::Person,
            false => Reviewer::Scripted(VecDeque::from([
                "revise: Say when the refund will arrive (within 5 business days), and that \
                 she does not need to send the lamp back.",
                "approve",
            ])),
        }
    }

    /// The reviewer's decision on the draft they have just read.
    ///
    /// For a person this is a blocking read of stdin, and that is fine: it happens in `main`
    /// between two runs, when no run is in progress and no future is waiting to be polled.
    /// Inside a run it would not be: a blocking read in `exec` would hold up the executor's
    /// thread and everything else polled on it, and could not be cancelled. A node that waits
    /// for a person inside a run awaits a channel instead (see the crate docs' FAQ).
    fn decide(&mut self) -> Result<Decision> {
        match self {
            Reviewer::Person => loop {
                print!("  your decision (`approve`, or `revise: <notes>`): ");
                io::stdout().flush()?;
                let mut answer = String::new();
                if io::stdin().lock().read_line(&mut answer)? == 0 {
                    return Err("stdin closed before the reviewer answered".into());
                }
                match Decision::parse(&answer) {
                    Some(decision) => return Ok(decision),
                    None => println!("  please answer `approve` or `revise: <what to change>`"),
                }
            },
            Reviewer::Scripted(answers) => {
                let answer =
                    answers.pop_front().ok_or("the scripted reviewer has no answers left")?;
                println!("  reviewer (scripted): {answer}");
                Decision::parse(answer)
                    .ok_or_else(|| format!("bad scripted answer {answer:?}").into())
            }
        }
    }
}

/// The offline stand-in: a first draft, and a revised one once the reviewer left notes.
fn stand_in(prompt: &str) -> String {
    if prompt.contains("Reviewer's notes") {
        "Hi Maria,\n\nI'm so sorry your Aurora desk lamp arrived cracked. I have refunded the \
         full price of order #4471; the money will be back on your card within 5 business \
         days. There is no need to send the lamp back.\n\nSam, Lumen Lamps support"
            .to_string()
    } else {
        // Fenced, as real models often answer, to show that the node copes.
        "```\nHi Maria,\n\nSorry to hear about the cracked shade! I have started a refund for \
         order #4471.\n\nSam, Lumen Lamps support\n```"
            .to_string()
    }
}

fn main() -> support::Main {
    let model = support::model(Rules::new(stand_in))?;
    let flow = build(model)?;
    let mut reviewer = Reviewer::new();

    // Session 1: the email arrives; the run drafts a reply and pauses for the reviewer.
    println!("session 1: a customer email arrives");
    let mut ticket = Ticket { email: EMAIL.to_string(), ..Ticket::default() };
    let mut ended = smol::block_on(flow.run(&mut ticket))?;
    let mut session = 1;

    while ended == PAUSE {
        // The run has ended: nothing is waiting in memory, so the program could exit now.
        // What it keeps is the ticket, saved as JSON (a file or a database row in real life),
        // and where to resume, which is always `ask_human`: the only node that pauses.
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

    println!(
        "\nthe flow ended with {ended:?} after {session} sessions and {} drafts",
        ticket.version
    );
    println!("sent: {}", ticket.sent);
    Ok(())
}
