//! Map-reduce: judge a pile of résumés one by one (the map), then sum up the verdicts (the
//! reduce).
//!
//! The map is a [`BatchNode`]: `prep` lists the résumés, `exec` asks a model about one of
//! them and parses the answer into a verdict, and `post` stores the verdicts in the order of
//! the résumés. Up to three résumés are with the model at once. The reduce is a plain step
//! ([`node_fn`]) that reads every verdict and writes the summary. Each model call stays small
//! and independent, so it can be retried alone, and the counting is left to ordinary code.
//!
//! The answer is parsed in `exec`, so an answer that does not parse is a failed attempt and
//! is asked again, like a dropped connection would be.
//!
//! Run with: `cargo run --example map-reduce`. Offline, a stand-in judges the résumés
//! (`support/resumes.rs`, with the prompt and the parser); set `MINIFLOW_BASE_URL` and
//! `MINIFLOW_MODEL` to ask a real model (see `support/mod.rs`).

use std::sync::Arc;
use std::time::Duration;

use miniflow::{Action, BatchNode, Ctx, Error, Flow, Params, Result, node_fn};
use support::Model;
use support::resumes::{self, Resume};

mod support;

fn main() -> support::Main {
    let model = support::model(resumes::stand_in())?;

    // The map, then the reduce.
    let mut flow = Flow::new();
    let evaluate = flow.add("evaluate", Evaluate { model });
    let summarise = flow.add("summarise", node_fn(summarise));
    flow.then(evaluate, summarise);

    let mut store = Store { resumes: resumes::all(), verdicts: Vec::new(), summary: String::new() };
    smol::block_on(flow.run(&mut store))?;

    for verdict in &store.verdicts {
        let mark = if verdict.qualified { "qualified" } else { "not qualified" };
        println!("{}: {mark} ({})", verdict.name, verdict.reason);
    }
    println!("{}", store.summary);
    Ok(())
}

/// The shared store: the résumés, a verdict per résumé, and the summary.
#[derive(Debug)]
struct Store {
    resumes: Vec<Resume>,
    /// One verdict per résumé, in the same order.
    verdicts: Vec<Verdict>,
    summary: String,
}

/// The model's answer about one résumé, parsed.
#[derive(Debug)]
struct Verdict {
    name: String,
    qualified: bool,
    reason: String,
}

/// The map: one model call per résumé.
struct Evaluate {
    model: Arc<dyn Model>,
}

impl BatchNode<Store> for Evaluate {
    type Item = Resume;
    type Output = Verdict;

    fn prep(&self, store: &Store, _params: &Params) -> Result<Vec<Resume>> {
        Ok(store.resumes.clone())
    }

    async fn exec(&self, resume: &Resume, _cx: Ctx<'_>) -> Result<Verdict> {
        let answer = self.model.ask(&resumes::prompt(resume)).await?;
        let (qualified, reason) = resumes::parse(&answer)
            .map_err(|what| format!("the answer about {} {what}: {answer:?}", resume.name))?;
        Ok(Verdict { name: resume.name.clone(), qualified, reason })
    }

    fn post(
        &self,
        store: &mut Store,
        _params: &Params,
        _resumes: Vec<Resume>,
        verdicts: Vec<Verdict>,
    ) -> Result<Action> {
        store.verdicts = verdicts;
        Ok(Action::DEFAULT)
    }

    /// Up to three résumés with the model at once: faster than one by one, without flooding
    /// the server with the whole pile.
    fn max_in_flight(&self) -> usize {
        3
    }

    /// Three tries per résumé: a model that formatted one answer badly often gets it right
    /// when asked again...
    fn max_retries(&self) -> usize {
        3
    }

    /// ...after the pause the model's error asks for (a rate limit's `Retry-After`), or a
    /// backoff; no retry for an error that will not go away (a refused key).
    fn wait(&self, error: &Error, cx: Ctx<'_>) -> Option<Duration> {
        support::wait(error, cx)
    }
}

/// The reduce: counts the qualified candidates and names them.
fn summarise(store: &mut Store, _params: &Params) -> Result<Action> {
    let qualified: Vec<&str> =
        store.verdicts.iter().filter(|v| v.qualified).map(|v| v.name.as_str()).collect();
    let names = if qualified.is_empty() { "nobody".to_string() } else { qualified.join(", ") };
    let (yes, all) = (qualified.len(), store.verdicts.len());
    store.summary = format!("{yes} of {all} candidates qualify: {names}");
    Ok(Action::DEFAULT)
}
