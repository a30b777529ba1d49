//! What `examples/soundtrack.rs` asks and how it reads the answers: the prompts for the
//! song's title, the characters, the lyrics and the reviews, the five critics, the offline
//! stand-in, and the timing summary printed under the trace.

use std::sync::Arc;
use std::time::Duration;

use miniflow::Result;

use super::trace::TraceRow;
use super::{Model, Rules, Slow, text};

/// A critic and the voice they write in.
#[derive(Clone, Copy, Debug)]
pub struct Critic {
    /// Their name, printed before their review.
    pub name: &'static str,
    /// Who they are, for the prompt.
    pub persona: &'static str,
}

/// The five critics who review the song.
pub const CRITICS: [Critic; 5] = [
    Critic {
        name: "Vera Strand",
        persona: "a professor of classical music who judges melody and form",
    },
    Critic { name: "DJ Koda", persona: "a club DJ who only cares whether people can dance to it" },
    Critic {
        name: "Maggie Oakes",
        persona: "a film historian who compares everything to old Hollywood",
    },
    Critic { name: "Theo Bright", persona: "a teenage pop fan who is easily delighted" },
    Critic { name: "Ruth Calder", persona: "a grumpy newspaper critic who is hard to please" },
];

/// Asks for a title for the theme song of `movie`.
pub fn title_prompt(movie: &str) -> String {
    format!(
        "Invent a title for a new theme song for the movie \"{movie}\". \
         Reply with the song title only."
    )
}

/// The title in the reply: its first line that says something.
pub fn read_title(reply: &str) -> Result<String> {
    let title = text::lines(reply).into_iter().next();
    title.ok_or_else(|| format!("no song title in the model's reply {reply:?}").into())
}

/// Asks for the two main characters of `movie`.
pub fn characters_prompt(movie: &str) -> String {
    format!(
        "Who are the two main characters of the movie \"{movie}\"? \
         Reply with their full names, one per line, and nothing else."
    )
}

/// The two names in the reply, one a line (list markers and quotes taken away).
pub fn read_names(reply: &str) -> Result<Vec<String>> {
    let names = text::lines(reply);
    if names.len() < 2 {
        return Err(format!("expected two names, one per line, got {reply:?}").into());
    }
    Ok(names.into_iter().take(2).collect())
}

/// Asks for the lyrics of `song`, a duet of the two `characters`.
pub fn lyrics_prompt(movie: &str, song: &str, characters: &[String]) -> Result<String> {
    let [a, b] = characters else {
        return Err("the lyrics need the two main characters".into());
    };
    Ok(format!(
        "Write the lyrics of \"{song}\", the theme song of the movie \"{movie}\": a short duet \
         of two verses and a chorus, sung by {a} and {b}. Reply with the lyrics only."
    ))
}

/// The lyrics in the reply, without fences or a `<think>` block; an error if there are none.
pub fn read_lyrics(reply: &str) -> Result<String> {
    let lyrics = text::body(reply);
    match lyrics.is_empty() {
        true => Err("the model wrote no lyrics".into()),
        false => Ok(lyrics),
    }
}

/// Asks `critic` to review `song` in their own voice.
pub fn review_prompt(critic: &Critic, movie: &str, song: &str, lyrics: &str) -> String {
    format!(
        "You are {}, {}. Review the song \"{song}\" from the movie \"{movie}\" in two or three \
         sentences, in your own voice. Reply with the review only.\n\nLyrics:\n{lyrics}",
        critic.name, critic.persona
    )
}

/// The offline stand-in: one rule per kind of prompt and one review per critic, each reply
/// 150 ms after it is asked, so that the overlap of concurrent calls is real.
pub fn stand_in() -> impl Model {
    let rules = Rules::new(|prompt: &str| {
        let reply = match prompt {
            p if p.contains("Invent a title") => "\"Letters of Transit\"",
            p if p.contains("two main characters") => "1. Rick Blaine\n2. Ilsa Lund",
            p if p.contains("Write the lyrics") => {
                "RICK: The fog rolls in, the planes go out,\n\
                 I never cared what it's about.\n\
                 ILSA: You kept the letters, kept the key,\n\
                 and kept a table just for me.\n\
                 BOTH: Letters of transit, signed in the rain,\n\
                 one of us leaves on the midnight plane."
            }
            p if p.starts_with("You are Vera") => {
                "A tidy AABB scheme and a chorus that resolves exactly where the ear expects. \
                 Competent, if a little too polite."
            }
            p if p.starts_with("You are DJ") => {
                "Slow it down, speed it up, I still cannot drop this in a set. \
                 Lovely for a bar at closing time, though."
            }
            p if p.starts_with("You are Maggie") => {
                "Pure Warner Brothers, 1942: fog, planes and sacrifice. \
                 Max Steiner would have scored it with a full string section."
            }
            p if p.starts_with("You are Theo") => {
                "The midnight plane line!!! I have listened to it eleven times and cried twice."
            }
            p if p.starts_with("You are Ruth") => {
                "Rhyming 'key' with 'me' should be a crime. Two stars, one of them for the fog."
            }
            _ => "I have no rule for that prompt.",
        };
        reply.to_string()
    });
    Slow::new(Arc::new(rules), Duration::from_millis(150))
}

/// The lines printed under the trace: the wall time against the nodes' times added up (the
/// difference is what overlapped), and the critics' calls added up against the time the
/// `critics` node took for all of them.
pub fn overlap(rows: &[TraceRow], wall: Duration, calls: &[Duration]) -> String {
    // Add up the nodes that do work, leaving out those that only hold others (`ideas`).
    let holds_others = |node: &str| rows.iter().any(|r| r.node.starts_with(&format!("{node}/")));
    let node_sum: Duration = rows.iter().filter(|r| !holds_others(&r.node)).map(|r| r.busy).sum();
    let critics = rows.iter().find(|r| r.node == "critics").map_or(Duration::ZERO, |r| r.busy);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "wall time {:.0} ms; the nodes' times add up to {:.0} ms\n\
         the {} critics' calls add up to {:.0} ms, done in {:.0} ms",
        ms(wall),
        ms(node_sum),
        calls.len(),
        ms(calls.iter().sum()),
        ms(critics)
    )
}
