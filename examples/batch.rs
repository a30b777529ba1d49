//! One text, eight languages: a batch node runs its `exec` once per item, one at a time or
//! several at once.
//!
//! A [`BatchNode`] is a node whose `prep` returns a list of items instead of one value. The
//! framework calls `exec` once per item — each item with its own retries — and hands `post`
//! every output, in the order of the items, however the calls overlapped. Here the items are
//! the languages to translate one text into, and each `exec` is one request to a model.
//!
//! The same node runs twice: first with `max_in_flight` 1 (items one after another), then
//! with 4 (up to four requests waiting on the model at once). Nothing is spawned: the four
//! calls are futures polled together in the run's own task, and they overlap because each
//! one spends its time waiting. The stand-in model takes 100 ms per reply, so the first run
//! takes about 800 ms and the second about 200 ms; the translations are the same, in the same
//! order.
//!
//! Run with: `cargo run --example batch`. Offline a stand-in translates from a small table;
//! set `MINIFLOW_BASE_URL` and `MINIFLOW_MODEL` to ask a real model (see `support/mod.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use miniflow::{Action, BatchNode, Ctx, Flow, Params, Result};
use support::{Model, Rules, Slow, text};

mod support;

/// The shared store: the text, where it should go, and what came back.
#[derive(Debug, Default)]
struct Store {
    text: String,
    languages: Vec<String>,
    /// `(language, translation)`, in the order of `languages`.
    translations: Vec<(String, String)>,
}

/// One item of the batch: everything one `exec` needs (it cannot see the store).
struct Request {
    language: String,
    text: String,
}

/// Translates the store's text into every language the store lists.
struct Translate {
    model: Arc<dyn Model>,
    /// How many requests may wait on the model at once.
    in_flight: usize,
}

impl BatchNode<Store> for Translate {
    type Item = Request;
    type Output = String;

    fn prep(&self, store: &Store, _params: &Params) -> Result<Vec<Request>> {
        // One item per language. Each carries its own copy of the text, so that the items are
        // independent of each other and of the store.
        let text = &store.text;
        Ok(store
            .languages
            .iter()
            .map(|l| Request { language: l.clone(), text: text.clone() })
            .collect())
    }

    async fn exec(&self, request: &Request, _cx: Ctx<'_>) -> Result<String> {
        let prompt = format!(
            "Translate the following text into {}. Reply with the translation only: no quotes, \
             no notes, no explanation.\n\nText: {}",
            request.language, request.text
        );
        let reply = self.model.ask(&prompt).await?;
        // Without a code fence or a `<think>` block, and without the quotes models like to put
        // around a translation (straight, curly or French ones).
        let body = text::body(&reply);
        let translation = body.trim_matches(|c| matches!(c, '"' | '“' | '”' | '«' | '»')).trim();
        match translation.is_empty() {
            true => Err(format!("the model sent no translation into {}", request.language).into()),
            false => Ok(translation.to_string()),
        }
    }

    fn post(
        &self,
        store: &mut Store,
        _: &Params,
        requests: Vec<Request>,
        outputs: Vec<String>,
    ) -> Result<Action> {
        // `outputs[i]` belongs to `requests[i]`, whichever reply arrived first.
        store.translations = requests.into_iter().map(|r| r.language).zip(outputs).collect();
        Ok(Action::DEFAULT)
    }

    fn max_in_flight(&self) -> usize {
        self.in_flight
    }
}

/// The offline stand-in: a fixed table of translations of the example's one text, picked by
/// the language the prompt names.
fn stand_in(prompt: &str) -> String {
    const TABLE: [(&str, &str); 8] = [
        ("French", "Les petites étapes font les grands voyages."),
        ("Spanish", "Los pequeños pasos hacen los grandes viajes."),
        ("German", "Kleine Schritte machen große Reisen."),
        ("Italian", "I piccoli passi fanno i grandi viaggi."),
        ("Portuguese", "Pequenos passos fazem grandes viagens."),
        ("Dutch", "Kleine stappen maken grote reizen."),
        ("Swedish", "Små steg gör stora resor."),
        ("Japanese", "小さな一歩が大きな旅になる。"),
    ];
    TABLE
        .iter()
        .find(|(language, _)| prompt.contains(&format!("into {language}.")))
        .map_or_else(|| "(the stand-in knows no such language)".to_string(), |(_, t)| t.to_string())
}

/// A flow of one node: the translator, allowed `in_flight` requests at once.
fn translator(model: &Arc<dyn Model>, in_flight: usize) -> Flow<Store> {
    let mut flow = Flow::new();
    flow.add("translate", Translate { model: model.clone(), in_flight });
    flow
}

fn main() -> support::Main {
    // 100 ms per reply: slow enough that running the requests together visibly pays off.
    let slow = Slow::new(Arc::new(Rules::new(stand_in)), Duration::from_millis(100));
    let model = support::model(slow)?;

    let languages =
        ["French", "Spanish", "German", "Italian", "Portuguese", "Dutch", "Swedish", "Japanese"];
    let new_store = || Store {
        text: "Small steps make great journeys.".to_string(),
        languages: languages.map(String::from).to_vec(),
        translations: Vec::new(),
    };

    // First one request at a time...
    let mut one_by_one = new_store();
    let started = Instant::now();
    smol::block_on(translator(&model, 1).run(&mut one_by_one))?;
    println!("one at a time: {} ms", started.elapsed().as_millis());

    // ...then up to four at once.
    let mut four_at_once = new_store();
    let started = Instant::now();
    smol::block_on(translator(&model, 4).run(&mut four_at_once))?;
    println!("four at once: {} ms", started.elapsed().as_millis());

    println!("text: {}", four_at_once.text);
    for (i, (language, translation)) in four_at_once.translations.iter().enumerate() {
        println!("{}. {language}: {translation}", i + 1);
    }

    // The concurrent replies arrived in whatever order the model sent them, but `post` got them
    // in the order of the items: both runs stored their results in the order of `languages`.
    let order =
        |store: &Store| store.translations.iter().map(|(l, _)| l.clone()).collect::<Vec<_>>();
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    println!("one at a time, in input order: {}", yes_no(order(&one_by_one) == languages));
    println!("four at once, in input order: {}", yes_no(order(&four_at_once) == languages));
    Ok(())
}
