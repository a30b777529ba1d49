//! A movie's theme song, written and reviewed: parallel branches, a concurrent batch, and a
//! trace that shows what overlapped.
//!
//! From a movie title, two steps that do not need each other — inventing the song's title and
//! naming the two main characters — run side by side in a [`Parallel`] node. The lyrics need
//! both, so they come next. Then five critics, each with a persona of their own, review the song
//! at the same time: a [`BatchNode`] whose items run concurrently. Concurrent work writes to its
//! own part of the store (the song branch to `song`, the characters branch to `characters`;
//! the batch's reviews come back in critic order to one `post`), so nothing is overwritten.
//!
//! A [`Trace`] observer (a recipe in `support/trace.rs`, to copy), attached with
//! [`RunOptions::observer`], times every node; its table shows song and characters starting
//! together, and the critics' five calls fitting in the time of about one. Nothing is spawned:
//! the overlap comes from futures polled together.
//!
//! Run with: `cargo run --example soundtrack`. Offline a slow rule-based stand-in answers (150 ms
//! a call, so the overlap is real); set `MINIFLOW_BASE_URL` and `MINIFLOW_MODEL` to use a real
//! model (see `support/mod.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use miniflow::{Action, BatchNode, Ctx, Flow, Node, Parallel, Params, Result, RunOptions};
use support::trace::Trace;
use support::{Model, Rules, Slow, text};

mod support;

/// The shared store. Each step, and each parallel branch, has a field of its own.
#[derive(Debug, Default)]
struct Soundtrack {
    movie: String,
    song: String,
    characters: Vec<String>,
    lyrics: String,
    reviews: Vec<Review>,
}

#[derive(Debug)]
struct Review {
    critic: &'static str,
    text: String,
    /// How long this critic's model call took (for the timing line only).
    took: Duration,
}

/// A critic and the voice they write in.
#[derive(Clone, Copy, Debug)]
struct Critic {
    name: &'static str,
    persona: &'static str,
}

const CRITICS: [Critic; 5] = [
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

// ---- the two parallel branches ----

/// Invents the title of the movie's theme song.
struct SongTitle {
    model: Arc<dyn Model>,
}

impl Node<Soundtrack> for SongTitle {
    type Prep = String;
    type Output = String;

    fn prep(&self, store: &Soundtrack, _: &Params) -> Result<String> {
        Ok(store.movie.clone())
    }

    async fn exec(&self, movie: &String, _: Ctx<'_>) -> Result<String> {
        let prompt = format!(
            "Invent a title for a new theme song for the movie \"{movie}\". \
             Reply with the song title only."
        );
        let reply = self.model.ask(&prompt).await?;
        let title = text::lines(&reply).into_iter().next();
        title.ok_or_else(|| format!("no song title in the model's reply {reply:?}").into())
    }

    fn post(&self, store: &mut Soundtrack, _: String, title: String) -> Result<Action> {
        store.song = title;
        Ok(Action::DEFAULT)
    }
}

/// Names the movie's two main characters.
struct MainCharacters {
    model: Arc<dyn Model>,
}

impl Node<Soundtrack> for MainCharacters {
    type Prep = String;
    type Output = Vec<String>;

    fn prep(&self, store: &Soundtrack, _: &Params) -> Result<String> {
        Ok(store.movie.clone())
    }

    async fn exec(&self, movie: &String, _: Ctx<'_>) -> Result<Vec<String>> {
        let prompt = format!(
            "Who are the two main characters of the movie \"{movie}\"? \
             Reply with their full names, one per line, and nothing else."
        );
        let reply = self.model.ask(&prompt).await?;
        let names = text::lines(&reply);
        if names.len() < 2 {
            return Err(format!("expected two names, one per line, got {reply:?}").into());
        }
        Ok(names.into_iter().take(2).collect())
    }

    fn post(&self, store: &mut Soundtrack, _: String, names: Vec<String>) -> Result<Action> {
        store.characters = names;
        Ok(Action::DEFAULT)
    }
}

// ---- the lyrics, which need both branches ----

struct Lyrics {
    model: Arc<dyn Model>,
}

impl Node<Soundtrack> for Lyrics {
    type Prep = String;
    type Output = String;

    fn prep(&self, store: &Soundtrack, _: &Params) -> Result<String> {
        let [a, b] = &store.characters[..] else {
            return Err("the lyrics need the two main characters".into());
        };
        Ok(format!(
            "Write the lyrics of \"{}\", the theme song of the movie \"{}\": a short duet of \
             two verses and a chorus, sung by {a} and {b}. Reply with the lyrics only.",
            store.song, store.movie
        ))
    }

    async fn exec(&self, prompt: &String, _: Ctx<'_>) -> Result<String> {
        let lyrics = text::body(&self.model.ask(prompt).await?);
        match lyrics.is_empty() {
            true => Err("the model wrote no lyrics".into()),
            false => Ok(lyrics),
        }
    }

    fn post(&self, store: &mut Soundtrack, _: String, lyrics: String) -> Result<Action> {
        store.lyrics = lyrics;
        Ok(Action::DEFAULT)
    }
}

// ---- five critics at once ----

struct Reviews {
    model: Arc<dyn Model>,
}

impl BatchNode<Soundtrack> for Reviews {
    /// A critic and the prompt written for them: everything one `exec` needs.
    type Item = (Critic, String);
    type Output = (String, Duration);

    fn prep(&self, store: &Soundtrack, _: &Params) -> Result<Vec<(Critic, String)>> {
        let items = CRITICS.map(|critic| {
            let prompt = format!(
                "You are {}, {}. Review the song \"{}\" from the movie \"{}\" in two or three \
                 sentences, in your own voice. Reply with the review only.\n\nLyrics:\n{}",
                critic.name, critic.persona, store.song, store.movie, store.lyrics
            );
            (critic, prompt)
        });
        Ok(items.to_vec())
    }

    async fn exec(&self, (_, prompt): &(Critic, String), _: Ctx<'_>) -> Result<(String, Duration)> {
        let started = Instant::now();
        let review = text::body(&self.model.ask(prompt).await?);
        Ok((review, started.elapsed()))
    }

    fn post(
        &self,
        store: &mut Soundtrack,
        _: &Params,
        items: Vec<(Critic, String)>,
        reviews: Vec<(String, Duration)>,
    ) -> Result<Action> {
        // Outputs come back in the order of the items, whatever order they finished in.
        let pairs = items.into_iter().zip(reviews);
        store.reviews = pairs
            .map(|((critic, _), (text, took))| Review { critic: critic.name, text, took })
            .collect();
        Ok(Action::DEFAULT)
    }

    fn max_in_flight(&self) -> usize {
        CRITICS.len() // every critic at once
    }
}

/// The offline stand-in: one rule per kind of prompt, and one review per critic.
fn stand_in(prompt: &str) -> String {
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
}

fn main() -> support::Main {
    let rules = Arc::new(Rules::new(stand_in));
    let model = support::model(Slow::new(rules, Duration::from_millis(150)))?;

    // Song title and characters do not need each other: one parallel node runs both.
    let ideas = Parallel::new()
        .branch("song", SongTitle { model: model.clone() })
        .branch("characters", MainCharacters { model: model.clone() });

    let mut flow = Flow::new();
    let ideas = flow.add("ideas", ideas);
    let lyrics = flow.add("lyrics", Lyrics { model: model.clone() });
    let critics = flow.add("critics", Reviews { model });
    flow.then(ideas, lyrics);
    flow.then(lyrics, critics);

    let mut store = Soundtrack { movie: "Casablanca".to_string(), ..Soundtrack::default() };
    let trace = Trace::new();
    let started = Instant::now();
    smol::block_on(flow.run_with(&mut store, RunOptions::new().observer(&trace)))?;
    let wall = started.elapsed();

    println!("movie: {}", store.movie);
    println!("song: {}", store.song);
    println!("sung by: {}", store.characters.join(" and "));
    println!("\nlyrics:\n{}\n", store.lyrics);
    for review in &store.reviews {
        println!("{}: {}", review.critic, review.text);
    }

    // Timings vary from run to run, so they are printed apart from the lines above.
    println!("\n{trace}");
    let rows = trace.rows();
    // Add up the nodes that do work; `ideas` is left out, since it only holds song and characters.
    let holds_others = |node: &str| rows.iter().any(|r| r.node.starts_with(&format!("{node}/")));
    let node_sum: Duration = rows.iter().filter(|r| !holds_others(&r.node)).map(|r| r.busy).sum();
    let calls: Duration = store.reviews.iter().map(|r| r.took).sum();
    let critics_busy = rows.iter().find(|r| r.node == "critics").map_or(Duration::ZERO, |r| r.busy);
    println!("wall time {:.0} ms; the nodes' times add up to {:.0} ms", ms(wall), ms(node_sum));
    println!(
        "the {} critics' calls add up to {:.0} ms, done in {:.0} ms",
        store.reviews.len(),
        ms(calls),
        ms(critics_busy)
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
