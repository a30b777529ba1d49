//! A movie's theme song, written and reviewed: parallel branches, a concurrent batch, and a
//! trace that shows what overlapped.
//!
//! From a movie title, two steps that do not need each other — inventing the song's title and
//! naming the two main characters — run side by side in a [`Parallel`] node. The lyrics need
//! both, so they come next. Then five critics, each with a persona of their own, review the
//! song at the same time: a [`BatchNode`] whose items run concurrently. Concurrent work writes
//! to its own part of the store (each branch to its own field; the batch's reviews come back
//! in critic order to one `post`), so nothing is overwritten.
//!
//! A [`Trace`] observer (a recipe in `support/trace.rs`, to copy), attached with
//! [`RunOptions::observer`], times every node; its table shows song and characters starting
//! together, and the critics' five calls fitting in the time of about one. Nothing is
//! spawned: the overlap comes from futures polled together.
//!
//! Run with: `cargo run --example soundtrack`. Offline a slow stand-in answers (150 ms a
//! call, so the overlap is real; `support/songwriting.rs`, with the prompts and the readers);
//! set `MINIFLOW_BASE_URL` and `MINIFLOW_MODEL` to use a real model (see `support/mod.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use miniflow::{Action, BatchNode, Ctx, Error, Flow, Node, Parallel, Params, Result, RunOptions};
use support::songwriting::{self as songs, CRITICS, Critic};
use support::trace::Trace;
use support::{Model, text};

mod support;

/// The flow: song title and characters side by side, then the lyrics, then the critics. The
/// three single questions are one node type, [`Ask`], told what to ask and where to write.
fn flow(model: Arc<dyn Model>) -> Flow<Soundtrack> {
    let song = Ask {
        model: model.clone(),
        prompt: |s| Ok(songs::title_prompt(&s.movie)),
        read: songs::read_title,
        write: |s, title| s.song = title,
    };
    let characters = Ask {
        model: model.clone(),
        prompt: |s| Ok(songs::characters_prompt(&s.movie)),
        read: songs::read_names,
        write: |s, names| s.characters = names,
    };
    let lyrics = Ask {
        model: model.clone(),
        prompt: |s| songs::lyrics_prompt(&s.movie, &s.song, &s.characters),
        read: songs::read_lyrics,
        write: |s, lyrics| s.lyrics = lyrics,
    };
    // Song title and characters do not need each other: one parallel node runs both.
    let ideas = Parallel::new().branch("song", song).branch("characters", characters);

    let mut flow = Flow::new();
    let ideas = flow.add("ideas", ideas);
    let lyrics = flow.add("lyrics", lyrics);
    let critics = flow.add("critics", Reviews { model });
    flow.chain(&[ideas, lyrics, critics]);
    flow
}

fn main() -> support::Main {
    let flow = flow(support::model(songs::stand_in())?);

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
    let calls: Vec<Duration> = store.reviews.iter().map(|review| review.took).collect();
    println!("{}", songs::overlap(&trace.rows(), wall, &calls));
    Ok(())
}

/// The shared store. Each step, and each parallel branch, has a field of its own.
#[derive(Debug, Default)]
struct Soundtrack {
    movie: String,
    song: String,
    characters: Vec<String>,
    lyrics: String,
    reviews: Vec<Review>,
}

/// One critic's review.
#[derive(Debug)]
struct Review {
    critic: &'static str,
    text: String,
    took: Duration, // how long this critic's model call took, for the timing line
}

/// A step that asks the model one question: `prompt` reads it from the store, `read` takes
/// the reply apart (an error is a failed attempt, asked again), `write` stores the result.
struct Ask<T> {
    model: Arc<dyn Model>,
    prompt: fn(&Soundtrack) -> Result<String>,
    read: fn(&str) -> Result<T>,
    write: fn(&mut Soundtrack, T),
}

impl<T: Send + 'static> Node<Soundtrack> for Ask<T> {
    type Prep = String;
    type Output = T;

    fn prep(&self, store: &Soundtrack, _: &Params) -> Result<String> {
        (self.prompt)(store)
    }

    async fn exec(&self, prompt: &String, _: Ctx<'_>) -> Result<T> {
        (self.read)(&self.model.ask(prompt).await?)
    }

    fn post(&self, store: &mut Soundtrack, _: String, value: T) -> Result<Action> {
        (self.write)(store, value);
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        3
    }

    fn wait(&self, error: &Error, cx: Ctx<'_>) -> Option<Duration> {
        support::wait(error, cx) // a server's pause, a backoff, or none for a refused key
    }
}

/// Five critics at once: one model call per critic, all in flight together.
struct Reviews {
    model: Arc<dyn Model>,
}

impl BatchNode<Soundtrack> for Reviews {
    type Item = (Critic, String); // a critic, and the prompt written for them
    type Output = (String, Duration); // the review, and how long the call took

    fn prep(&self, store: &Soundtrack, _: &Params) -> Result<Vec<(Critic, String)>> {
        let (movie, song, lyrics) = (&store.movie, &store.song, &store.lyrics);
        let item = |critic: Critic| (critic, songs::review_prompt(&critic, movie, song, lyrics));
        Ok(CRITICS.map(item).to_vec())
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

    fn max_retries(&self) -> usize {
        3
    }

    fn wait(&self, error: &Error, cx: Ctx<'_>) -> Option<Duration> {
        support::wait(error, cx)
    }
}
