//! Batch: one text, eight languages. A batch node runs its `exec` once per item, one item at
//! a time or several at once.
//!
//! A [`BatchNode`] is a node whose `prep` returns a list of items. The flow calls `exec` once
//! per item, each item with its own retries, and hands `post` every output in the order of
//! the items, however the calls overlapped. Here an item is a language, and its `exec` one
//! request to a model.
//!
//! The same node runs twice: with `max_in_flight` 1 (one request after another), then with 4
//! (up to four requests waiting on the model at once). Nothing is spawned: the requests are
//! futures polled together in the run's own task. The stand-in takes 100 ms per reply, so
//! the first run takes about 800 ms and the second about 200 ms, with the same results in the
//! same order.
//!
//! Run with: `cargo run --example batch`. Offline, a stand-in translates from a table
//! (`support/translations.rs`); set `MINIFLOW_BASE_URL` and `MINIFLOW_MODEL` to ask a real
//! model (see `support/mod.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use miniflow::{Action, BatchNode, Ctx, Error, Flow, Params, Result};
use support::Model;
use support::translations::{self, LANGUAGES, TEXT};

mod support;

fn main() -> support::Main {
    let model = support::model(translations::stand_in())?;
    let one_by_one = translate(&model, 1, "one at a time")?;
    let four_at_once = translate(&model, 4, "four at once")?;

    println!("text: {}", four_at_once.text);
    for (i, (language, translation)) in four_at_once.translations.iter().enumerate() {
        println!("{}. {language}: {translation}", i + 1);
    }
    // The replies arrived in whatever order the model sent them, but `post` got them in the
    // order of the items: both runs stored them in the order of `LANGUAGES`.
    let in_order = |store: &Store| {
        let same = store.translations.iter().map(|(l, _)| l.as_str()).eq(LANGUAGES);
        if same { "yes" } else { "no" }
    };
    println!("one at a time, in input order: {}", in_order(&one_by_one));
    println!("four at once, in input order: {}", in_order(&four_at_once));
    Ok(())
}

/// Runs the translator by itself (a flow of one node) with up to `in_flight` requests at
/// once, and prints how long it took.
fn translate(model: &Arc<dyn Model>, in_flight: usize, label: &str) -> Result<Store> {
    let flow = Flow::of(Translate { model: Arc::clone(model), in_flight });
    let languages = LANGUAGES.map(String::from).to_vec();
    let mut store = Store { text: TEXT.to_string(), languages, translations: Vec::new() };
    let started = Instant::now();
    smol::block_on(flow.run(&mut store))?;
    println!("{label}: {} ms", started.elapsed().as_millis());
    Ok(store)
}

/// The shared store: the text, the languages wanted, and what came back.
#[derive(Debug)]
struct Store {
    text: String,
    languages: Vec<String>,
    /// `(language, translation)`, in the order of `languages`.
    translations: Vec<(String, String)>,
}

/// Translates the store's text into each of the store's languages.
struct Translate {
    model: Arc<dyn Model>,
    /// How many requests may wait on the model at once.
    in_flight: usize,
}

impl BatchNode<Store> for Translate {
    /// A language and the prompt that asks for it: all one `exec` needs (it cannot see the
    /// store).
    type Item = (String, String);
    type Output = String;

    fn prep(&self, store: &Store, _params: &Params) -> Result<Vec<(String, String)>> {
        let text = &store.text;
        Ok(store.languages.iter().map(|l| (l.clone(), translations::prompt(text, l))).collect())
    }

    async fn exec(&self, (language, prompt): &(String, String), _cx: Ctx<'_>) -> Result<String> {
        let reply = self.model.ask(prompt).await?;
        let no_translation = || format!("the model sent no translation into {language}").into();
        translations::translation(&reply).ok_or_else(no_translation)
    }

    fn post(
        &self,
        store: &mut Store,
        _params: &Params,
        items: Vec<(String, String)>,
        outputs: Vec<String>,
    ) -> Result<Action> {
        // `outputs[i]` belongs to `items[i]`, whichever reply arrived first.
        store.translations = items.into_iter().map(|(language, _)| language).zip(outputs).collect();
        Ok(Action::DEFAULT)
    }

    fn max_in_flight(&self) -> usize {
        self.in_flight
    }

    /// Up to three tries per item...
    fn max_retries(&self) -> usize {
        3
    }

    /// ...after the pause the model's error asks for (a rate limit's `Retry-After`), or a
    /// backoff; no retry for an error that will not go away (a refused key).
    fn wait(&self, error: &Error, cx: Ctx<'_>) -> Option<Duration> {
        support::wait(error, cx)
    }
}
