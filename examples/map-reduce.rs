//! Map-reduce: judge a pile of résumés one by one (the map), then sum up the verdicts (the
//! reduce), going on without the résumés that could not be judged.
//!
//! The map is a [`BatchAsyncFlow`]: its prep gives each résumé a params set, and it runs a
//! small flow, one `judge` node, once per set, up to three at once. `judge` asks a model about
//! its résumé and parses the answer into a verdict. The reduce is a plain step ([`node_fn`])
//! that reads the verdicts and writes the summary. Each model call stays small and
//! independent, so it can be retried alone, and the counting is left to ordinary code.
//!
//! One failed résumé must not lose the others' verdicts, so the map's post is a
//! [`post_outcomes`](BatchAsyncFlow::post_outcomes): every sub-run runs to its end, and the
//! post sees each one's params set and its action or error. Each error names its sub-run by
//! path (`evaluate[6]/judge`); if every one failed, the post fails the run. Offline, two fail:
//! one file is empty (`prep` refuses it), and about one candidate the model never says yes or
//! no (the answer is parsed in `exec`, so a bad answer is a failed attempt, asked again at
//! once, up to three times in all).
//!
//! Run with: `cargo run --example map-reduce`. Offline, a stand-in judges the résumés
//! (`support/resumes.rs`, with the prompt and the parser); set `MINIFLOW_BASE_URL` and
//! `MINIFLOW_MODEL` to ask a real model (see `support/mod.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use miniflow::{
    Action, BatchAsyncFlow, Ctx, Error, Flow, FlowError, Node, Params, Result, node_fn,
};
use support::resumes::{self, Resume};
use support::{Model, ModelError};

mod support;

fn main() -> support::Main {
    let model = support::model(resumes::stand_in())?;

    // The map: a run of `judge` per résumé, three at once; its post sees how each one ended.
    let mut judge = Flow::new();
    judge.add("judge", Judge { model });
    let map = BatchAsyncFlow::new(judge, |store: &Store, _: &Params| {
        Ok((0..store.resumes.len()).map(|i| Params::new().with("resume", i)).collect())
    })
    .max_in_flight(3) // faster than one by one, without flooding the server with the pile
    .post_outcomes(note_failures);

    // The map, then the reduce.
    let mut flow = Flow::new();
    let evaluate = flow.add("evaluate", map);
    let summarise = flow.add("summarise", node_fn(summarise));
    flow.then(evaluate, summarise);

    let mut store = Store { resumes: resumes::all(), ..Store::default() };
    smol::block_on(flow.run(&mut store))?;

    for verdict in store.verdicts.values() {
        let mark = if verdict.qualified { "qualified" } else { "not qualified" };
        println!("{}: {mark} ({})", verdict.name, verdict.reason);
    }
    for failure in &store.failures {
        println!("{failure}");
    }
    println!("{}", store.summary);
    Ok(())
}

/// The shared store: the résumés, then what became of each.
#[derive(Debug, Default)]
struct Store {
    resumes: Vec<Resume>,
    /// The verdicts by résumé index: concurrent sub-runs each write their own.
    verdicts: BTreeMap<usize, Verdict>,
    /// A line for each résumé that could not be judged: whose, and why.
    failures: Vec<String>,
    summary: String,
}

/// The model's answer about one résumé, parsed.
#[derive(Debug)]
struct Verdict {
    name: String,
    qualified: bool,
    reason: String,
}

/// The map's step: one model call about the résumé its sub-run's params name.
struct Judge {
    model: Arc<dyn Model>,
}

impl Node<Store> for Judge {
    type Prep = (usize, Resume);
    type Output = Verdict;

    fn prep(&self, store: &Store, params: &Params) -> Result<(usize, Resume)> {
        let i = params.get_as::<usize>("resume")?;
        let resume = store.resumes.get(i).ok_or_else(|| format!("no résumé {i}"))?;
        match resume.text.trim().is_empty() {
            true => Err("the file is empty".into()),
            false => Ok((i, resume.clone())),
        }
    }

    async fn exec(&self, (_, resume): &(usize, Resume), _: Ctx<'_>) -> Result<Verdict> {
        let answer = self.model.ask(&resumes::prompt(resume)).await?;
        let (qualified, reason) =
            resumes::parse(&answer).map_err(|what| format!("the answer {what}: {answer:?}"))?;
        Ok(Verdict { name: resume.name.clone(), qualified, reason })
    }

    fn post(&self, store: &mut Store, (i, _): (usize, Resume), verdict: Verdict) -> Result<Action> {
        store.verdicts.insert(i, verdict);
        Ok(Action::DEFAULT)
    }

    /// Three tries per résumé: a model that formatted one answer badly often gets it right
    /// when asked again...
    fn max_retries(&self) -> usize {
        3
    }

    /// ...at once, for an answer that could not be read: the server is not busy. A model's
    /// own error waits the pause it asks for (a rate limit's `Retry-After`) or a backoff, and
    /// is not retried if it will not go away (a refused key).
    fn wait(&self, error: &Error, cx: Ctx<'_>) -> Option<Duration> {
        match error.is::<ModelError>() {
            true => support::wait(error, cx),
            false => Some(Duration::ZERO),
        }
    }
}

/// The map's post, once every sub-run has ended: notes each one that failed, with its
/// error's whole chain (`{:#}`), and goes on to the reduce with the rest, if there is any.
fn note_failures(
    store: &mut Store,
    sets: Vec<Params>,
    outcomes: Vec<Result<Action, FlowError>>,
) -> Result<Action> {
    // Each outcome is its params set's (in the same order), and the set names the résumé.
    for (set, outcome) in sets.iter().zip(outcomes) {
        if let Err(error) = outcome {
            let name = &store.resumes[set.get_as::<usize>("resume")?].name;
            store.failures.push(format!("{name}: not judged: {error:#}"));
        }
    }
    if store.verdicts.is_empty() {
        // Nothing to sum up: fail the map, and with it the run, saying why.
        return Err(format!("no résumé could be judged:\n{}", store.failures.join("\n")).into());
    }
    Ok(Action::DEFAULT)
}

/// The reduce: counts the qualified candidates among those judged, and names them.
fn summarise(store: &mut Store, _params: &Params) -> Result<Action> {
    let qualified: Vec<&str> =
        store.verdicts.values().filter(|v| v.qualified).map(|v| v.name.as_str()).collect();
    let names = if qualified.is_empty() { "nobody".to_string() } else { qualified.join(", ") };
    let (yes, judged) = (qualified.len(), store.verdicts.len());
    let candidates = if judged == 1 { "candidate" } else { "candidates" };
    store.summary = format!("{yes} of the {judged} judged {candidates} qualify: {names}");
    match store.failures.len() {
        0 => {}
        1 => store.summary += "; 1 résumé could not be judged",
        n => store.summary += &format!("; {n} résumés could not be judged"),
    }
    Ok(Action::DEFAULT)
}
