//! Two agents play a word-guessing game, each a flow of its own, talking through channels.
//!
//! The hinter knows a secret word and gives hints; the guesser answers each with one word.
//! Each agent is a [`Flow`] with its own store, and they share only two async channels, one
//! each way, kept in their stores. Where the waiting happens is the pattern: `prep` hands a
//! channel end out of the store, `exec` awaits `send` or `recv` on it, `post` writes what
//! arrived. Both runs are polled together in one task (`try_zip`): nothing is spawned, and
//! when one agent fails, the other is dropped rather than left waiting for ever.
//!
//! Run with: `cargo run --example multi-agent`. Offline a stand-in plays both parts
//! (`support/game.rs`, with the prompts and the reading of the replies); set
//! `MINIFLOW_BASE_URL` and `MINIFLOW_MODEL` to let a real model play (see `support/mod.rs`).

use std::sync::Arc;
use std::time::Duration;

use miniflow::{Action, Ctx, Error, Flow, Node, Params, Result, exec_fn};
use smol::channel::{self, Receiver, Sender};
use smol::future::try_zip;
use support::game::{self, MAX_ROUNDS, SECRET, Turn};
use support::{Message, Model};

mod support;

fn main() -> support::Main {
    let model = support::model(game::stand_in())?; // one model plays both parts

    // The hinter: hint → hear the guess → another hint, or announce the end.
    let mut hinter_flow = Flow::new();
    let hint = hinter_flow.add("hint", GiveHint { model: model.clone() });
    let hear = hinter_flow.add("hear_guess", receive(|h: &Hinter| &h.from_guesser, judge));
    let announce = hinter_flow.add("announce", announce());
    hinter_flow.then(hint, hear).edge(hear, "wrong", hint);
    hinter_flow.edge(hear, "correct", announce).edge(hear, "out_of_rounds", announce);

    // The guesser: hear a message → guess and listen again, or stop when the game is over.
    let mut guesser_flow = Flow::new();
    let listen = guesser_flow.add("hear_hint", receive(|g: &Guesser| &g.from_hinter, heard));
    let guess = guesser_flow.add("guess", MakeGuess { model });
    guesser_flow.edge(listen, "hint", guess).then(guess, listen);
    guesser_flow.end(listen, "won").end(listen, "lost");

    // One channel each way; each store gets the ends its agent uses.
    let (to_guesser, from_hinter) = channel::unbounded();
    let (to_hinter, from_guesser) = channel::unbounded();
    let secret = SECRET.to_string();
    let mut hinter =
        Hinter { secret, hints: vec![], guesses: vec![], solved: false, to_guesser, from_guesser };
    let mut guesser = Guesser { hints: vec![], guesses: vec![], from_hinter, to_hinter };

    println!("the hinter's secret word: {:?}", hinter.secret);
    // Both runs in one task; at the first error, `try_zip` drops the other run.
    let both = try_zip(hinter_flow.run(&mut hinter), guesser_flow.run(&mut guesser));
    let (hinter_end, guesser_end) = smol::block_on(both)?;
    let ends = format!("the hinter ended with {hinter_end:?}, the guesser with {guesser_end:?}");
    println!("{ends}, after {} hints and {} guesses", hinter.hints.len(), guesser.guesses.len());
    Ok(())
}

/// The hinter's store: the secret, the game so far, and its ends of the two channels.
struct Hinter {
    secret: String,
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

/// The hinter's first node: writes the next hint and sends it to the guesser.
struct GiveHint {
    model: Arc<dyn Model>,
}

impl Node<Hinter> for GiveHint {
    type Prep = (Vec<Message>, String, Sender<Turn>); // the prompt, the secret, the channel
    type Output = String;

    fn prep(&self, store: &Hinter, _: &Params) -> Result<Self::Prep> {
        let prompt = game::hint_prompt(&store.secret, &store.hints, &store.guesses);
        // A `Sender` is a cheap handle: cloning it is how the channel leaves the store.
        Ok((prompt, store.secret.clone(), store.to_guesser.clone()))
    }

    async fn exec(&self, (prompt, secret, to_guesser): &Self::Prep, _: Ctx<'_>) -> Result<String> {
        // A hint that gives the word away fails the attempt; only a hint that passed is sent.
        let hint = game::read_hint(&self.model.chat(prompt).await?, secret)?;
        to_guesser.send(Turn::Hint(hint.clone())).await?;
        Ok(hint)
    }

    fn post(&self, store: &mut Hinter, _: Self::Prep, hint: String) -> Result<Action> {
        println!("hinter  > hint {}: {hint}", store.hints.len() + 1);
        store.hints.push(hint);
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        3
    }

    fn wait(&self, error: &Error, cx: Ctx<'_>) -> Option<Duration> {
        support::wait(error, cx) // a server's pause, a backoff, or none for a refused key
    }
}

/// A node that awaits the next message on the store's channel `inbox`, for `post` to read.
fn receive<S, T: Send + 'static>(
    inbox: fn(&S) -> &Receiver<T>,
    post: impl Fn(&mut S, T) -> Result<Action> + Send + Sync,
) -> impl Node<S> {
    exec_fn(
        move |store: &S, _| Ok(inbox(store).clone()), // a cheap handle, like a Sender
        |inbox| async move { inbox.recv().await.map_err(|_| Error::from("the other agent left")) },
        move |store, _, message| post(store, message),
    )
}

/// The hinter's judgement of a guess (its case does not matter): right, or wrong.
fn judge(store: &mut Hinter, guess: String) -> Result<Action> {
    store.solved = guess.eq_ignore_ascii_case(&store.secret);
    store.guesses.push(guess);
    if store.solved || store.hints.len() >= MAX_ROUNDS {
        return Ok(if store.solved { "correct" } else { "out_of_rounds" }.into());
    }
    println!("hinter  > no, that is not it");
    Ok("wrong".into())
}

/// The guesser's reading of the hinter's message: a hint to guess from, or the end.
fn heard(store: &mut Guesser, turn: Turn) -> Result<Action> {
    match turn {
        Turn::Hint(hint) => store.hints.push(hint),
        Turn::Won => return Ok("won".into()),
        Turn::Lost { secret } => {
            println!("guesser > {secret}? I would never have guessed");
            return Ok("lost".into());
        }
    }
    Ok("hint".into())
}

/// Tells the guesser how the game ended.
fn announce() -> impl Node<Hinter> {
    exec_fn(
        |store: &Hinter, _| Ok((store.solved, store.secret.clone(), store.to_guesser.clone())),
        |(won, secret, to_guesser)| async move {
            to_guesser.send(if won { Turn::Won } else { Turn::Lost { secret } }).await?;
            Ok(if won { ("yes!", "won") } else { ("out of rounds;", "lost") })
        },
        |store: &mut Hinter, _, (how, action)| {
            println!("hinter  > {how} the word was {:?}", store.secret);
            Ok(action.into())
        },
    )
}

/// Guesses a word from the hints so far and sends it to the hinter.
struct MakeGuess {
    model: Arc<dyn Model>,
}

impl Node<Guesser> for MakeGuess {
    type Prep = (Vec<Message>, Sender<String>);
    type Output = String;

    fn prep(&self, store: &Guesser, _: &Params) -> Result<Self::Prep> {
        Ok((game::guess_prompt(&store.hints, &store.guesses), store.to_hinter.clone()))
    }

    async fn exec(&self, (prompt, to_hinter): &Self::Prep, _: Ctx<'_>) -> Result<String> {
        let guess = game::read_guess(&self.model.chat(prompt).await?)?; // one word, or try again
        to_hinter.send(guess.clone()).await?;
        Ok(guess)
    }

    fn post(&self, store: &mut Guesser, _: Self::Prep, guess: String) -> Result<Action> {
        println!("guesser > {guess}");
        store.guesses.push(guess);
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        3
    }

    fn wait(&self, error: &Error, cx: Ctx<'_>) -> Option<Duration> {
        support::wait(error, cx)
    }
}
