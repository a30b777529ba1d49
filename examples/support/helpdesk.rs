//! What `examples/human-in-the-loop.rs` handles: the customer's email, the prompt for a
//! draft reply, the reviewer's possible answers and who gives them, and the offline stand-in.

use std::collections::VecDeque;
use std::io::{self, BufRead, IsTerminal, Write};

use miniflow::Result;
use serde::{Deserialize, Serialize};

use super::{Message, Model, Rules};

/// The email that arrives.
pub const EMAIL: &str = "Hello, my Aurora desk lamp (order #4471) arrived today with the glass \
shade cracked in two places. I'd like a refund, please. — Maria";

/// The conversation that asks for a reply to `email`, or for a better one when the reviewer
/// left `notes` on the previous `draft`.
pub fn draft_prompt(email: &str, draft: &str, notes: Option<&str>) -> Vec<Message> {
    let mut prompt = format!("The customer's email:\n\n{email}");
    if let Some(notes) = notes {
        prompt += &format!(
            "\n\nYour previous draft:\n\n{draft}\n\nReviewer's notes: {notes}\n\n\
             Rewrite the draft so that it follows the reviewer's notes."
        );
    }
    vec![
        Message::system(
            "You are Sam, a friendly and concise customer-support agent at Lumen Lamps. \
             Write the reply to the customer's email. Answer with the body of the email \
             only, signed \"Sam, Lumen Lamps support\": no subject line, no comments.",
        ),
        Message::user(prompt),
    ]
}

/// What the reviewer can say about a draft.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Decision {
    /// Send it.
    Approve,
    /// Rewrite it, following these notes.
    Revise(String),
    /// Not now: the run pauses again, and asks no one twice.
    Later,
}

impl Decision {
    /// Reads `approve`, `revise: <notes>` or `later` (any case, spaces around it are fine).
    pub fn parse(answer: &str) -> Option<Decision> {
        let answer = answer.trim();
        if answer.eq_ignore_ascii_case("approve") {
            return Some(Decision::Approve);
        }
        if answer.eq_ignore_ascii_case("later") {
            return Some(Decision::Later);
        }
        let (word, notes) = answer.split_once(':')?;
        let notes = notes.trim();
        (word.trim().eq_ignore_ascii_case("revise") && !notes.is_empty())
            .then(|| Decision::Revise(notes.to_string()))
    }
}

/// Who answers: the person at the terminal, or a script.
pub enum Reviewer {
    /// The person at the terminal.
    Person,
    /// Answers given in order, for a run nobody watches.
    Scripted(VecDeque<&'static str>),
}

impl Reviewer {
    /// The person if stdin is a terminal; the script otherwise, so that the example runs
    /// unattended (in CI, or with stdin at /dev/null): not now, then a revision, then approval.
    pub fn new() -> Self {
        match io::stdin().is_terminal() {
            true => Reviewer::Person,
            false => Reviewer::Scripted(VecDeque::from([
                "later",
                "revise: Say when the refund will arrive (within 5 business days), and that \
                 she does not need to send the lamp back.",
                "approve",
            ])),
        }
    }

    /// The reviewer's decision on the draft they have just read.
    ///
    /// For a person this is a blocking read of stdin, and that is fine: it happens between
    /// two runs, when no run is in progress and no future is waiting to be polled. Inside a
    /// run it would not be: a blocking read in `exec` would hold up the executor's thread and
    /// everything else polled on it, and could not be cancelled. A node that waits for a
    /// person inside a run awaits a channel instead (see the crate docs' FAQ).
    pub fn decide(&mut self) -> Result<Decision> {
        match self {
            Reviewer::Person => loop {
                print!("  your decision (`approve`, `revise: <notes>` or `later`): ");
                io::stdout().flush()?;
                let mut answer = String::new();
                if io::stdin().lock().read_line(&mut answer)? == 0 {
                    return Err("stdin closed before the reviewer answered".into());
                }
                match Decision::parse(&answer) {
                    Some(decision) => return Ok(decision),
                    None => {
                        println!("  please answer `approve`, `revise: <what to change>` or `later`")
                    }
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
pub fn stand_in() -> impl Model {
    Rules::new(|prompt: &str| {
        if prompt.contains("Reviewer's notes") {
            "Hi Maria,\n\nI'm so sorry your Aurora desk lamp arrived cracked. I have refunded \
             the full price of order #4471; the money will be back on your card within 5 \
             business days. There is no need to send the lamp back.\n\nSam, Lumen Lamps support"
                .to_string()
        } else {
            // Fenced, as real models often answer, to show that the node copes.
            "```\nHi Maria,\n\nSorry to hear about the cracked shade! I have started a refund \
             for order #4471.\n\nSam, Lumen Lamps support\n```"
                .to_string()
        }
    })
}
