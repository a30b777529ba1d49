//! Map-reduce: judge a pile of résumés one by one (the map), then sum up the verdicts (the
//! reduce).
//!
//! The map step is a [`BatchNode`]: its `prep` lists the résumés, its `exec` asks a model
//! about one résumé and turns the answer into a structured verdict, and its `post` stores all
//! verdicts, in the order of the résumés. Up to three résumés are with the model at once, so
//! the pile takes a fraction of the time it would one by one. The reduce step is a plain
//! [`Node`] that reads every verdict and writes the summary: how many candidates qualify, and
//! who. Splitting the work like this keeps each model call small and independent — it can be
//! retried alone — and leaves the counting to ordinary code.
//!
//! The model's answer is parsed in `exec`, so an answer that does not parse is a failed
//! attempt and is asked again, like a dropped connection would be.
//!
//! Run with: `cargo run --example map-reduce`. Offline a stand-in judges the résumés; set
//! `MINIFLOW_BASE_URL` and `MINIFLOW_MODEL` to ask a real model (see `support/mod.rs`).

use std::sync::Arc;
use std::time::Duration;

use miniflow::{Action, BatchNode, Ctx, Flow, Node, Params, Result};
use support::{Model, Rules, Slow, text};

mod support;

/// What the candidates are judged against.
const JOB: &str = "Backend engineer. Must have: at least 3 years of professional experience \
                   with Rust, Go or C++, and experience running services in production.";

/// The shared store: the résumés, a verdict per résumé, and the summary.
#[derive(Debug, Default)]
struct Store {
    resumes: Vec<Resume>,
    /// One verdict per résumé, in the same order.
    verdicts: Vec<Verdict>,
    summary: String,
}

#[derive(Clone, Debug)]
struct Resume {
    name: String,
    text: String,
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
        let prompt = format!(
            "You screen job applications.\n\nThe job: {JOB}\n\nRésumé of {}:\n{}\n\n\
             Does this candidate meet every requirement of the job? Answer in exactly two lines, \
             nothing else:\nqualified: yes or no\nreason: one short sentence",
            resume.name, resume.text
        );
        let answer = self.model.ask(&prompt).await?;
        let (qualified, reason) = parse(&answer)
            .map_err(|what| format!("the answer about {} {what}: {answer:?}", resume.name))?;
        Ok(Verdict { name: resume.name.clone(), qualified, reason })
    }

    fn post(
        &self,
        store: &mut Store,
        _: &Params,
        _resumes: Vec<Resume>,
        verdicts: Vec<Verdict>,
    ) -> Result<Action> {
        store.verdicts = verdicts;
        Ok(Action::DEFAULT)
    }

    /// A model that formatted one answer badly often gets it right when asked again.
    fn max_retries(&self) -> usize {
        2
    }

    /// Up to three résumés with the model at once: faster than one by one, without flooding
    /// the server with the whole pile.
    fn max_in_flight(&self) -> usize {
        3
    }
}

/// Reads `qualified: yes|no` and `reason: …` out of a model's answer, tolerating what real
/// models add: a code fence, bold markers, capitals, blank lines, a full stop after "yes"
/// ([`text::field`] finds the lines, [`text::word`] reads the first word of the verdict).
/// On failure, says what is missing.
fn parse(answer: &str) -> std::result::Result<(bool, String), &'static str> {
    let qualified = text::field(answer, "qualified").ok_or("has no `qualified: yes/no` line")?;
    // The first word decides: "Yes.", "no -- too junior" and "YES" all count.
    let qualified = match text::word(&qualified).as_str() {
        "yes" => true,
        "no" => false,
        _ => return Err("says neither yes nor no after `qualified:`"),
    };
    let reason = text::field(answer, "reason").unwrap_or_default();
    // The reason is printed inside parentheses: its full stop would be one too many.
    let reason = reason.trim_end_matches('.').trim();
    match reason.is_empty() {
        true => Err("has no `reason:` line"),
        false => Ok((qualified, reason.to_string())),
    }
}

/// The reduce: counts the qualified candidates and names them.
struct Summarise;

impl Node<Store> for Summarise {
    type Prep = Vec<(String, bool)>;
    type Output = String;

    fn prep(&self, store: &Store, _params: &Params) -> Result<Vec<(String, bool)>> {
        Ok(store.verdicts.iter().map(|v| (v.name.clone(), v.qualified)).collect())
    }

    async fn exec(&self, verdicts: &Vec<(String, bool)>, _cx: Ctx<'_>) -> Result<String> {
        let qualified: Vec<&str> =
            verdicts.iter().filter(|(_, ok)| *ok).map(|(name, _)| name.as_str()).collect();
        let names = if qualified.is_empty() { "nobody".to_string() } else { qualified.join(", ") };
        Ok(format!("{} of {} candidates qualify: {names}", qualified.len(), verdicts.len()))
    }

    fn post(
        &self,
        store: &mut Store,
        _verdicts: Vec<(String, bool)>,
        summary: String,
    ) -> Result<Action> {
        store.summary = summary;
        Ok(Action::DEFAULT)
    }
}

/// The résumés. They stand in for reading a folder of files: in a real program `main` would
/// fill the store from `std::fs::read_dir`.
fn resumes() -> Vec<Resume> {
    let resume = |name: &str, text: &str| Resume { name: name.to_string(), text: text.to_string() };
    vec![
        resume(
            "Ana Lima",
            "Backend engineer, 6 years. Wrote and ran payment services in Rust and Go, \
             on call for a platform serving two million users.",
        ),
        resume(
            "Ben Okafor",
            "Graphic designer, 8 years. Brand identities, print, Figma; some HTML and CSS.",
        ),
        resume(
            "Chen Wei",
            "Systems programmer, 4 years of C++ at a trading firm, then 1 year of Rust. \
             Owns the order gateway in production.",
        ),
        resume(
            "Dara Novak",
            "Computer science graduate (2024). Rust side projects: a toy database and a \
             Discord bot. One summer internship in QA.",
        ),
        resume(
            "Eli Brandt",
            "Site reliability engineer, 5 years. Kubernetes, Terraform, Go tooling; led \
             incident response for production services.",
        ),
        resume(
            "Farah Haddad",
            "Data analyst, 3 years. SQL, Python, dashboards; no production services.",
        ),
    ]
}

/// The offline stand-in's verdicts, picked by the name in the prompt. Some are written the
/// way real models write them (bold, a code fence, capitals) to exercise the parser.
fn stand_in(prompt: &str) -> String {
    let verdicts = [
        (
            "Ana Lima",
            "qualified: yes\nreason: six years of Rust and Go services run in production.",
        ),
        ("Ben Okafor", "**Qualified:** No\n**Reason:** a designer with no backend experience."),
        (
            "Chen Wei",
            "```\nqualified: yes\n\
             reason: five years of C++ and Rust, and owns a production system.\n```",
        ),
        (
            "Dara Novak",
            "Qualified: no\nReason: no professional experience yet, only side projects.",
        ),
        (
            "Eli Brandt",
            "qualified: Yes.\nreason: five years of Go and of running production services.",
        ),
        ("Farah Haddad", "qualified: no\nreason: works in SQL and Python and runs no services."),
    ];
    verdicts
        .iter()
        .find(|(name, _)| prompt.contains(&format!("Résumé of {name}:")))
        .map_or("I cannot tell.", |(_, verdict)| verdict)
        .to_string()
}

fn main() -> support::Main {
    // 50 ms per answer, so the stand-in waits like a real model and the calls overlap.
    let slow = Slow::new(Arc::new(Rules::new(stand_in)), Duration::from_millis(50));
    let model = support::model(slow)?;

    let mut flow = Flow::new();
    let evaluate = flow.add("evaluate", Evaluate { model });
    let summarise = flow.add("summarise", Summarise);
    flow.then(evaluate, summarise);

    let mut store = Store { resumes: resumes(), ..Store::default() };
    smol::block_on(flow.run(&mut store))?;

    for verdict in &store.verdicts {
        let mark = if verdict.qualified { "qualified" } else { "not qualified" };
        println!("{}: {mark} ({})", verdict.name, verdict.reason);
    }
    println!("{}", store.summary);
    Ok(())
}
