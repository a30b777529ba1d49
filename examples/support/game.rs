//! The word game of `examples/multi-agent.rs`: what the hinter sends, the prompts of both
//! players, the reading of their replies, and the offline stand-in that plays both parts.

use miniflow::Result;

use super::{Message, Model, Rules, text};

/// The word the hinter knows and the guesser must find.
pub const SECRET: &str = "lighthouse";

/// How many hints the hinter gives before it gives up.
pub const MAX_ROUNDS: usize = 5;

/// What the hinter tells the guesser: a hint, or that the game is over.
#[derive(Clone, Debug)]
pub enum Turn {
    /// The next hint.
    Hint(String),
    /// The last guess was right.
    Won,
    /// The hinter ran out of rounds; the word was `secret`.
    Lost {
        /// The word the guesser did not find.
        secret: String,
    },
}

/// What the hinter asks the model for its next hint, given the hints and the wrong guesses
/// so far.
pub fn hint_prompt(secret: &str, hints: &[String], guesses: &[String]) -> Vec<Message> {
    let system = format!(
        "You are the hinter in a word-guessing game. The secret word is \"{secret}\". \
         Give the guesser one short hint, a single sentence, that brings them closer to \
         the word. Never write the secret word or any word derived from it. Do not repeat \
         an earlier hint. Reply with the hint only."
    );
    let user = format!(
        "Hints given so far:\n{}\nWrong guesses so far: {}\nGive hint number {}.",
        numbered(hints),
        list_or_none(guesses),
        hints.len() + 1
    );
    vec![Message::system(system), Message::user(user)]
}

/// The hint in the model's reply: its first line that says something (without fences,
/// quotes or a "Here is a hint:"). An error if there is none, or if it gives `secret` away:
/// the prompt asks the model not to, and this checks that it did not.
pub fn read_hint(reply: &str, secret: &str) -> Result<String> {
    let hint = text::lines(reply).into_iter().next().unwrap_or_default();
    if hint.is_empty() {
        return Err(format!("no hint in the model's reply {reply:?}").into());
    }
    if hint.to_lowercase().contains(&secret.to_lowercase()) {
        return Err(format!("the hint gives the secret word away: {hint:?}").into());
    }
    Ok(hint)
}

/// What the guesser asks the model, given the hints heard and its own wrong guesses.
pub fn guess_prompt(hints: &[String], guesses: &[String]) -> Vec<Message> {
    let system = "You are the guesser in a word-guessing game. Someone who knows a secret \
                  word gives you hints, one at a time. Guess the word. Answer with exactly \
                  one word and nothing else.";
    let user = format!(
        "Hints so far:\n{}\nYour earlier guesses, all wrong: {}\nYour guess (one word):",
        numbered(hints),
        list_or_none(guesses)
    );
    vec![Message::system(system), Message::user(user)]
}

/// The one word a guess should be, or an error saying what came instead. Punctuation around
/// the word is not part of the guess: a model's "Lighthouse." is the guess "Lighthouse".
pub fn read_guess(reply: &str) -> Result<String> {
    let line = text::lines(reply).into_iter().next().unwrap_or_default();
    let word = line.trim_matches(|c: char| !c.is_alphanumeric());
    match word.split_whitespace().count() {
        1 => Ok(word.to_string()),
        _ => Err(format!("expected a one-word guess, the model said {reply:?}").into()),
    }
}

/// The items as a numbered list, one a line.
fn numbered(items: &[String]) -> String {
    match items {
        [] => "(none yet)".to_string(),
        _ => items.iter().enumerate().map(|(i, s)| format!("{}. {s}\n", i + 1)).collect(),
    }
}

/// The items separated by commas.
fn list_or_none(items: &[String]) -> String {
    match items {
        [] => "none yet".to_string(),
        _ => items.join(", "),
    }
}

/// The offline stand-in for both players. One model plays both parts, as a real one would:
/// the prompt says which part it is playing. The hinter gives a fixed hint per round; the
/// guesser's guess depends on how many hints it has heard.
pub fn stand_in() -> impl Model {
    Rules::new(|prompt: &str| {
        let reply = if prompt.contains("Give hint number") {
            match prompt {
                p if p.contains("hint number 1.") => {
                    "It is a tall, narrow building that stands by the sea."
                }
                p if p.contains("hint number 2.") => {
                    "Ships watch for it at night, to keep away from the rocks."
                }
                _ => "A keeper once lived in it and kept the lamp at its top burning.",
            }
        } else {
            let hints =
                prompt.lines().filter(|l| l.starts_with(|c: char| c.is_ascii_digit())).count();
            match hints {
                1 => "Tower",
                2 => "beacon",
                _ => "Lighthouse.", // capitalized and with a full stop, as a model might answer
            }
        };
        reply.to_string()
    })
}
