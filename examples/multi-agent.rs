//! Two agents play a word-guessing game, each one a flow of its own, talking through channels.
//!
//! The hinter knows a secret word and gives hints without saying it; the guesser reads the hints
//! and answers with one word. Each agent is a separate [`Flow`] with its own store, looping
//! until the word is found (or the hinter runs out of rounds). Neither flow knows the other
//! exists: they only share two async channels, one for each direction, kept in their stores.
//!
//! The pattern to take away is where the waiting happens. `prep` hands a channel end out of the
//! store, `exec` awaits `send` or `recv` on it, and `post` writes what arrived back into the
//! store: the store is never touched across an `.await`. Both runs are futures polled together
//! in one task (`smol::future::try_zip`), so nothing is spawned, and when one agent fails the
//! other is dropped rather than left waiting for a message that will never come.
//!
//! Run with: `cargo run --example multi-agent`. Offline both agents are rule-based stand-ins;
//! set `MINIFLOW_BASE_URL` and `MINIFLOW_MODEL` to let a real model play both parts (see
//! `support/mod.rs`).

use std::sync::Arc;

use miniflow::{Action, Ctx, Flow, Node, Params, Result};
use smol::channel::{self, Receiver, Sender};
use support::{Message, Model, Rules, text};

mod support;

/// What the hinter tells the guesser: a hint, or that the game is over.
#[derive(Clone, Debug)]
enum Turn {
    Hint(String),
    Won,
    Lost { secret: String },
}

/// The hinter's store: the secret, the game so far, and its ends of the two channels.
struct Hinter {
    secret: String,
    max_rounds: usize,
    hints: Vec<String>,
    guesses: Vec<String>,
    solved: bool,
    to_guesser: Sender<Turn>,
    from_guesser: Receiver<String>,
}

/// The guesser's store: what it has heard and guessed, and its ends of the two channels.
struct Guesser {
    hints: Vec<String>,
    guesses: Vec<String>,
    from_hinter: Receiver<Turn>,
    to_hinter: Sender<String>,
}

// ---- the hinter's nodes ----

/// Writes the next hint and sends it to the guesser.
struct GiveHint {
    model: Arc<dyn Model>,
}

/// Everything `GiveHint::exec` needs, copied out of the store by `prep`.
struct HintJob {
    secret: String,
    hints: Vec<String>,
    guesses: Vec<String>,
    to_guesser: Sender<Turn>,
}

impl Node<Hinter> for GiveHint {
    type Prep = HintJob;
    type Output = String;

    fn prep(&self, store: &Hinter, _: &Params) -> Result<HintJob> {
        Ok(HintJob {
            secret: store.secret.clone(),
            hints: store.hints.clone(),
            guesses: store.guesses.clone(),
            // A `Sender` is a cheap handle: cloning it is how the channel leaves the store.
            to_guesser: store.to_guesser.clone(),
        })
    }

    async fn exec(&self, job: &HintJob, _: Ctx<'_>) -> Result<String> {
        let system = format!(
            "You are the hinter in a word-guessing game. The secret word is \"{}\". \
             Give the guesser one short hint, a single sentence, that brings them closer to \
             the word. Never write the secret word or any word derived from it. Do not repeat \
             an earlier hint. Reply with the hint only.",
            job.secret
        );
        let user = format!(
            "Hints given so far:\n{}\nWrong guesses so far: {}\nGive hint number {}.",
            numbered(&job.hints),
            list_or_none(&job.guesses),
            job.hints.len() + 1
        );
        let reply = self.model.chat(&[Message::system(system), Message::user(user)]).await?;
        // The first line that says something: without fences, quotes or a "Here is a hint:".
        let hint = text::lines(&reply).into_iter().next().unwrap_or_default();
        // The prompt asks the model not to give the word away; the code checks that it did not
        // write the word itself. An error is a failed attempt: the node tries again (see
        // `max_retries`), and gives up with this error after the last one.
        if hint.is_empty() {
            return Err(format!("no hint in the model's reply {reply:?}").into());
        }
        if hint.to_lowercase().contains(&job.secret.to_lowercase()) {
            return Err(format!("the hint gives the secret word away: {hint:?}").into());
        }
        // Only a hint that passed the checks is sent: a retried attempt sends nothing twice.
        job.to_guesser.send(Turn::Hint(hint.clone())).await?;
        Ok(hint)
    }

    fn post(&self, store: &mut Hinter, _: HintJob, hint: String) -> Result<Action> {
        println!("hinter  > hint {}: {hint}", store.hints.len() + 1);
        store.hints.push(hint);
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        3
    }
}

/// Waits for the guesser's answer and judges it.
struct HearGuess;

impl Node<Hinter> for HearGuess {
    type Prep = Receiver<String>;
    type Output = String;

    fn prep(&self, store: &Hinter, _: &Params) -> Result<Receiver<String>> {
        Ok(store.from_guesser.clone())
    }

    async fn exec(&self, from_guesser: &Receiver<String>, _: Ctx<'_>) -> Result<String> {
        Ok(from_guesser.recv().await.map_err(|_| "the guesser left the game")?)
    }

    fn post(&self, store: &mut Hinter, _: Receiver<String>, guess: String) -> Result<Action> {
        // The guesser sends a bare word (see `one_word`); its case does not matter.
        store.solved = guess.eq_ignore_ascii_case(&store.secret);
        store.guesses.push(guess);
        Ok(if store.solved {
            "correct"
        } else if store.hints.len() >= store.max_rounds {
            "out_of_rounds"
        } else {
            println!("hinter  > no, that is not it");
            "wrong"
        }
        .into())
    }
}

/// Tells the guesser how the game ended.
struct Announce;

impl Node<Hinter> for Announce {
    type Prep = (Turn, Sender<Turn>);
    type Output = ();

    fn prep(&self, store: &Hinter, _: &Params) -> Result<(Turn, Sender<Turn>)> {
        let turn = match store.solved {
            true => Turn::Won,
            false => Turn::Lost { secret: store.secret.clone() },
        };
        Ok((turn, store.to_guesser.clone()))
    }

    async fn exec(&self, (turn, to_guesser): &(Turn, Sender<Turn>), _: Ctx<'_>) -> Result<()> {
        to_guesser.send(turn.clone()).await?;
        Ok(())
    }

    fn post(&self, store: &mut Hinter, (turn, _): (Turn, Sender<Turn>), _: ()) -> Result<Action> {
        Ok(match turn {
            Turn::Won => {
                println!("hinter  > yes! the word was {:?}", store.secret);
                "won"
            }
            _ => {
                println!("hinter  > out of rounds; the word was {:?}", store.secret);
                "lost"
            }
        }
        .into())
    }
}

// ---- the guesser's nodes ----

/// Waits for the hinter's next message.
struct HearHint;

impl Node<Guesser> for HearHint {
    type Prep = Receiver<Turn>;
    type Output = Turn;

    fn prep(&self, store: &Guesser, _: &Params) -> Result<Receiver<Turn>> {
        Ok(store.from_hinter.clone())
    }

    async fn exec(&self, from_hinter: &Receiver<Turn>, _: Ctx<'_>) -> Result<Turn> {
        Ok(from_hinter.recv().await.map_err(|_| "the hinter left the game")?)
    }

    fn post(&self, store: &mut Guesser, _: Receiver<Turn>, turn: Turn) -> Result<Action> {
        Ok(match turn {
            Turn::Hint(hint) => {
                store.hints.push(hint);
                "hint"
            }
            Turn::Won => "won",
            Turn::Lost { secret } => {
                println!("guesser > {secret}? I would never have guessed");
                "lost"
            }
        }
        .into())
    }
}

/// Guesses a word from the hints so far and sends it to the hinter.
struct MakeGuess {
    model: Arc<dyn Model>,
}

/// Everything `MakeGuess::exec` needs, copied out of the store by `prep`.
struct GuessJob {
    hints: Vec<String>,
    guesses: Vec<String>,
    to_hinter: Sender<String>,
}

impl Node<Guesser> for MakeGuess {
    type Prep = GuessJob;
    type Output = String;

    fn prep(&self, store: &Guesser, _: &Params) -> Result<GuessJob> {
        Ok(GuessJob {
            hints: store.hints.clone(),
            guesses: store.guesses.clone(),
            to_hinter: store.to_hinter.clone(),
        })
    }

    async fn exec(&self, job: &GuessJob, _: Ctx<'_>) -> Result<String> {
        let system = "You are the guesser in a word-guessing game. Someone who knows a secret \
                      word gives you hints, one at a time. Guess the word. Answer with exactly \
                      one word and nothing else.";
        let user = format!(
            "Hints so far:\n{}\nYour earlier guesses, all wrong: {}\nYour guess (one word):",
            numbered(&job.hints),
            list_or_none(&job.guesses)
        );
        let reply = self.model.chat(&[Message::system(system), Message::user(user)]).await?;
        let guess = one_word(&reply)?;
        job.to_hinter.send(guess.clone()).await?;
        Ok(guess)
    }

    fn post(&self, store: &mut Guesser, _: GuessJob, guess: String) -> Result<Action> {
        println!("guesser > {guess}");
        store.guesses.push(guess);
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        3 // a model that answers with a sentence gets another chance
    }
}

// ---- text helpers ----

/// The one word a guess should be, or an error saying what came instead.
fn one_word(reply: &str) -> Result<String> {
    let line = text::lines(reply).into_iter().next().unwrap_or_default();
    // Punctuation around the word is not part of the guess: a model's "Lighthouse." is the
    // guess "Lighthouse", and a right one.
    let word = line.trim_matches(|c: char| !c.is_alphanumeric());
    match word.split_whitespace().count() {
        1 => Ok(word.to_string()),
        _ => Err(format!("expected a one-word guess, the model said {reply:?}").into()),
    }
}

fn numbered(items: &[String]) -> String {
    match items {
        [] => "(none yet)".to_string(),
        _ => items.iter().enumerate().map(|(i, s)| format!("{}. {s}\n", i + 1)).collect(),
    }
}

fn list_or_none(items: &[String]) -> String {
    match items {
        [] => "none yet".to_string(),
        _ => items.join(", "),
    }
}

// ---- the offline stand-ins ----

/// The stand-in for both players. One model plays both parts, as a real one would: the
/// prompt says which part it is playing.
fn stand_in(prompt: &str) -> String {
    match prompt.contains("Give hint number") {
        true => hinter_rule(prompt),
        false => guesser_rule(prompt),
    }
}

/// The hinter's rule: a fixed hint for each round, chosen by the number the prompt asks for.
fn hinter_rule(prompt: &str) -> String {
    let hint = match prompt {
        p if p.contains("hint number 1.") => {
            "It is a tall, narrow building that stands by the sea."
        }
        p if p.contains("hint number 2.") => {
            "Ships watch for it at night, to keep away from the rocks."
        }
        _ => "A keeper once lived in it and kept the lamp at its top burning.",
    };
    hint.to_string()
}

/// The guesser's rule: a guess that depends on how many hints it has heard.
fn guesser_rule(prompt: &str) -> String {
    let hints = prompt.lines().filter(|l| l.starts_with(|c: char| c.is_ascii_digit())).count();
    match hints {
        1 => "Tower",
        2 => "beacon",
        _ => "Lighthouse.", // capitalized and with a full stop, as a model might answer
    }
    .to_string()
}

fn main() -> support::Main {
    // One model for both agents: each node's system prompt tells it which part to play.
    let model = support::model(Rules::new(stand_in))?;

    // The hinter: hint → hear the guess → another hint, or announce the end.
    let mut hinter_flow = Flow::new();
    let hint = hinter_flow.add("hint", GiveHint { model: model.clone() });
    let hear = hinter_flow.add("hear_guess", HearGuess);
    let announce = hinter_flow.add("announce", Announce);
    hinter_flow.then(hint, hear);
    hinter_flow.edge(hear, "wrong", hint);
    hinter_flow.edge(hear, "correct", announce);
    hinter_flow.edge(hear, "out_of_rounds", announce);

    // The guesser: hear a message → guess and listen again, or stop when the game is over.
    let mut guesser_flow = Flow::new();
    let listen = guesser_flow.add("hear_hint", HearHint);
    let guess = guesser_flow.add("guess", MakeGuess { model });
    guesser_flow.edge(listen, "hint", guess);
    guesser_flow.then(guess, listen);
    guesser_flow.end(listen, "won");
    guesser_flow.end(listen, "lost");

    // One channel each way; each store gets the ends its agent uses.
    let (to_guesser, from_hinter) = channel::unbounded();
    let (to_hinter, from_guesser) = channel::unbounded();
    let mut hinter = Hinter {
        secret: "lighthouse".to_string(),
        max_rounds: 5,
        hints: Vec::new(),
        guesses: Vec::new(),
        solved: false,
        to_guesser,
        from_guesser,
    };
    let mut guesser = Guesser { hints: Vec::new(), guesses: Vec::new(), from_hinter, to_hinter };

    println!("the hinter's secret word: {:?}", hinter.secret);
    // Both runs in one task: each awaits the other's messages in its `exec`. `try_zip` returns
    // the first error at once and drops the other run, which would otherwise wait forever.
    let (hinter_end, guesser_end) = smol::block_on(smol::future::try_zip(
        hinter_flow.run(&mut hinter),
        guesser_flow.run(&mut guesser),
    ))?;

    println!(
        "the hinter ended with {hinter_end:?}, the guesser with {guesser_end:?}, after {} hints \
         and {} guesses",
        hinter.hints.len(),
        guesser.guesses.len()
    );
    Ok(())
}
