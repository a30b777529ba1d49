//! Torture tests for the concurrent structures: randomized, and
//! repeated many times.
//!
//! - Concurrent batch nodes with random limits, item counts, yields and scripted failing
//!   attempts (retried, sometimes recovered by `exec_fallback`, sometimes fatal): `post` runs
//!   exactly once with the outputs in input order, the limit is never exceeded, attempt numbers
//!   are counted per item, and an item that cannot recover fails the node fast.
//! - `BatchAsyncFlow` with random limits and sub-runs of 1–3 nodes: every sub-run's posts land
//!   exactly once, sub-runs in flight stay within the limit, the batch post sees the sub-runs'
//!   actions in input order; a failing sub-run or a step limit stops it with the posts made so
//!   far each applied once and in order.
//! - `Parallel` with random branches (nodes, flows, batch nodes): every branch posts once,
//!   branches in flight stay within the limit, the post sees the actions in the order added; a
//!   branch that fails for good fails the node fast.
//! - Nestings of the three, whose final store must equal a direct computation.
//! - One `Arc<Flow>` run 96 times at once on tokio's multi-thread runtime, each run with its own
//!   store and params.
//! - Cancellation after every poll of a flow holding all three: only whole posts, each one the
//!   full run also makes; no `exec` left running; exactly one terminal event; the flow then runs
//!   to completion on the same store.
//!
//! Runs are driven by `smol::block_on`, `futures::executor::block_on` or a hand poll loop with a
//! no-op waker, picked at random. No assertion depends on timing: only counts and orders.
//!
//! Everything is derived from one seed, `common::seed()`, and every assertion message names it
//! with the iteration. To replay a failure, or to search other cases, set the seed:
//! `MINIFLOW_SEED=99 cargo test --test torture`.

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error as _;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use miniflow::{
    Action, BatchAsyncFlow, BatchNode, Ctx, Error, Event, Flow, FlowError, Node, Parallel, Params,
    Phase, Result, RunOptions, node_fn,
};

mod common;
use common::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// More polls than any run here needs: a run still pending after this many has hung.
const MAX_POLLS: usize = 1_000_000;

/// The executors [`drive`] can run a future on, by number.
const EXECUTORS: [&str; 3] = ["smol", "futures", "hand-polled"];

/// Runs `future` to completion on executor number `executor` (see [`EXECUTORS`]).
fn drive<F: Future>(executor: usize, future: F) -> F::Output {
    match executor {
        0 => smol::block_on(future),
        1 => futures::executor::block_on(future),
        _ => match poll_by_hand(future, MAX_POLLS) {
            (Some(output), _) => output,
            (None, _) => panic!("the run was still pending after {MAX_POLLS} polls"),
        },
    }
}

/// The `count` cases of test number `test`: each a label for assertion messages (the seed and
/// the iteration) and a random number generator of its own, derived from the seed and `test`,
/// so that each test draws its own numbers.
fn cases(test: u64, count: usize) -> impl Iterator<Item = (String, Rng)> {
    let seed = seed();
    let mut master = Rng::new(seed ^ test.wrapping_mul(0xa076_1d64_78bd_642f));
    (0..count).map(move |i| (format!("seed {seed}, iteration {i}"), Rng::new(master.next_u64())))
}

/// An in-flight limit in `low..=high`, or no limit (`usize::MAX`) one time in five.
fn limit(rng: &mut Rng, low: usize, high: usize) -> usize {
    if rng.chance(20) { usize::MAX } else { low + rng.below(high - low + 1) }
}

/// A limit for messages: "none" for `usize::MAX`.
fn shown(limit: usize) -> String {
    if limit == usize::MAX { "none".into() } else { limit.to_string() }
}

/// Counts what is in flight between an `enter` and a `leave` (sub-runs, branches), and the
/// most that ever was at once.
#[derive(Debug, Default)]
struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Gauge {
    fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
    }

    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }

    fn now(&self) -> usize {
        self.now.load(Ordering::SeqCst)
    }

    fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
}

/// An observer's event, as the tests compare them.
#[derive(Clone, Debug, PartialEq)]
enum Rec {
    RunStart,
    Start(String),
    End { node: String, action: String, attempts: usize },
    Retry { node: String, attempt: usize },
    Fallback(String),
    Finished(String),
    Failed(String),
    Cancelled,
    Other(String),
}

impl Rec {
    fn of(event: &Event<'_>) -> Rec {
        match event {
            Event::RunStart => Rec::RunStart,
            Event::NodeStart { node, .. } => Rec::Start(node.to_string()),
            Event::NodeEnd { node, action, attempts, .. } => {
                Rec::End { node: node.to_string(), action: action.to_string(), attempts: *attempts }
            }
            Event::Retry { node, attempt, .. } => {
                Rec::Retry { node: node.to_string(), attempt: *attempt }
            }
            Event::Fallback { node, .. } => Rec::Fallback(node.to_string()),
            Event::Finished { action, .. } => Rec::Finished(action.to_string()),
            Event::Failed { error, .. } => Rec::Failed(error.to_string()),
            Event::Cancelled => Rec::Cancelled,
            other => Rec::Other(other.to_string()),
        }
    }

    fn is_terminal(&self) -> bool {
        matches!(self, Rec::Finished(_) | Rec::Failed(_) | Rec::Cancelled)
    }

    fn finished(&self) -> bool {
        matches!(self, Rec::Finished(_))
    }

    fn failed(&self) -> bool {
        matches!(self, Rec::Failed(_))
    }

    fn cancelled(&self) -> bool {
        matches!(self, Rec::Cancelled)
    }
}

/// An observer that appends every event of the run to `log`.
fn recorder(log: &Mutex<Vec<Rec>>) -> impl Fn(&Event<'_>) + Sync + '_ {
    move |event: &Event<'_>| log.lock().unwrap().push(Rec::of(event))
}

/// Checks a run's events: `RunStart` first, then exactly one terminal event, the last, which
/// `ending` accepts.
fn assert_ending(events: &[Rec], ending: fn(&Rec) -> bool, label: &str) {
    assert_eq!(events.first(), Some(&Rec::RunStart), "{label}: the first event: {events:?}");
    let terminals: Vec<usize> = (0..events.len()).filter(|&i| events[i].is_terminal()).collect();
    assert_eq!(
        terminals,
        [events.len() - 1],
        "{label}: one terminal event, and it is the last: {events:?}"
    );
    assert!(ending(&events[events.len() - 1]), "{label}: the last event: {:?}", events.last());
}

/// The nodes the events say ended, sorted, leaving out `skip` (nodes without a post).
fn ended(events: &[Rec], skip: &[&str]) -> Vec<String> {
    let mut nodes: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Rec::End { node, .. } if !skip.contains(&node.as_str()) => Some(node.clone()),
            _ => None,
        })
        .collect();
    nodes.sort();
    nodes
}

// ---------------------------------------------------------------------------------------------
// 1. Concurrent batch nodes
// ---------------------------------------------------------------------------------------------

/// One item of [`Jobs`]: its index, how many of its attempts fail before one succeeds, the
/// yields of each attempt, and whether its fallback recovers once every attempt failed.
#[derive(Clone, Debug)]
struct Job {
    index: usize,
    fails: usize,
    yields: Vec<usize>,
    recover: bool,
}

impl Job {
    /// The calls of exec this item gets when it may make `retries` attempts.
    fn execs(&self, retries: usize) -> usize {
        (self.fails + 1).min(retries)
    }

    /// Whether all its attempts fail (so that its fallback is called).
    fn exhausted(&self, retries: usize) -> bool {
        self.fails >= retries
    }

    /// What exec and exec_fallback note for this item in a run that lets it finish.
    fn notes(&self, retries: usize) -> Vec<String> {
        let mut notes: Vec<String> =
            (0..self.execs(retries)).map(|attempt| format!("exec {attempt}")).collect();
        if self.exhausted(retries) {
            let last = retries - 1;
            notes.push(format!("fallback {last}: job {} attempt {last} failed", self.index));
        }
        notes
    }
}

/// What exec (or the fallback) produced for an item: its index, and the attempt that did.
#[derive(Debug, PartialEq)]
struct Done {
    index: usize,
    attempt: usize,
    recovered: bool,
}

#[derive(Debug, Default)]
struct JobStore {
    jobs: Vec<Job>,
    posts: usize,
    /// The indices of the items post got back.
    items: Vec<usize>,
    outputs: Vec<Done>,
}

/// The batch node under test: its limit and attempts per item as drawn; it notes every call of
/// exec and exec_fallback, per item, with the attempt number `Ctx` gave it.
struct Jobs {
    limit: usize,
    retries: usize,
    probe: Arc<Probe>,
    notes: Arc<Mutex<Vec<Vec<String>>>>,
}

impl Jobs {
    fn note(&self, index: usize, note: String) {
        self.notes.lock().unwrap()[index].push(note);
    }
}

impl BatchNode<JobStore> for Jobs {
    type Item = Job;
    type Output = Done;

    fn prep(&self, store: &JobStore, _: &Params) -> Result<Vec<Job>> {
        Ok(store.jobs.clone())
    }

    async fn exec(&self, job: &Job, cx: Ctx<'_>) -> Result<Done> {
        let attempt = cx.attempt();
        self.note(job.index, format!("exec {attempt}"));
        let in_flight = InFlight::enter(&self.probe);
        yield_times(job.yields[attempt]).await;
        in_flight.finish();
        if attempt < job.fails {
            return Err(failure(format!("job {} attempt {attempt} failed", job.index)));
        }
        Ok(Done { index: job.index, attempt, recovered: false })
    }

    async fn exec_fallback(&self, job: &Job, error: Error, cx: Ctx<'_>) -> Result<Done> {
        self.note(job.index, format!("fallback {}: {error}", cx.attempt()));
        if !job.recover {
            return Err(error);
        }
        let in_flight = InFlight::enter(&self.probe);
        yield_times(job.yields[0]).await;
        in_flight.finish();
        Ok(Done { index: job.index, attempt: cx.attempt(), recovered: true })
    }

    fn post(
        &self,
        store: &mut JobStore,
        _: &Params,
        items: Vec<Job>,
        outputs: Vec<Done>,
    ) -> Result<Action> {
        store.posts += 1;
        store.items = items.iter().map(|job| job.index).collect();
        store.outputs = outputs;
        Ok("done".into())
    }

    fn max_retries(&self) -> usize {
        self.retries
    }

    fn max_in_flight(&self) -> usize {
        self.limit
    }
}

/// The retries and fallback an item's events show: the attempts that were retried, and
/// whether it fell back.
fn retries_seen(events: &[Rec], path: &str) -> (Vec<usize>, usize) {
    let retried = events
        .iter()
        .filter_map(|e| match e {
            Rec::Retry { node, attempt } if node == path => Some(*attempt),
            _ => None,
        })
        .collect();
    let fell_back = events.iter().filter(|e| matches!(e, Rec::Fallback(n) if n == path)).count();
    (retried, fell_back)
}

#[test]
fn concurrent_batch_nodes_post_once_in_order_within_the_limit_with_attempts_per_item() {
    let (mut overlapped, mut reached_limit, mut failed_runs) = (0, 0, 0);
    for (label, mut rng) in cases(1, 2000) {
        let n = rng.below(65);
        let retries = 1 + rng.below(4);
        let limit = limit(&mut rng, 2, 8);
        let mut jobs: Vec<Job> = (0..n)
            .map(|index| {
                // Up to `retries + 1` failing attempts: from `retries` on, the fallback recovers.
                let fails = if rng.chance(35) { 1 + rng.below(retries + 1) } else { 0 };
                let yields = (0..retries).map(|_| rng.below(6)).collect();
                Job { index, fails, yields, recover: true }
            })
            .collect();
        // Sometimes one or two items fail every attempt and their fallback gives up.
        let mut doomed = BTreeSet::new();
        if n > 0 && rng.chance(15) {
            for _ in 0..=rng.below(2) {
                let d = rng.below(n);
                (jobs[d].fails, jobs[d].recover) = (retries, false);
                doomed.insert(d);
            }
        }
        let executor = rng.below(3);
        let label = format!(
            "{label} ({n} items, limit {}, {retries} attempts, doomed {doomed:?}, {})",
            shown(limit),
            EXECUTORS[executor]
        );

        let probe = Arc::new(Probe::default());
        let notes = Arc::new(Mutex::new(vec![Vec::new(); n]));
        let mut flow = Flow::new();
        flow.add("batch", Jobs { limit, retries, probe: probe.clone(), notes: notes.clone() });
        let mut store = JobStore { jobs: jobs.clone(), ..JobStore::default() };
        let events = Mutex::new(Vec::new());
        let result = {
            let observer = recorder(&events);
            drive(executor, flow.run_with(&mut store, RunOptions::new().observer(&observer)))
        };
        let events = events.into_inner().unwrap();
        let notes = notes.lock().unwrap().clone();

        assert!(probe.max_in_flight() <= limit, "{label}: {} in flight", probe.max_in_flight());
        assert_eq!(probe.now(), 0, "{label}: an exec is still in flight");
        for job in &jobs {
            // Per item: attempts 0, 1, 2, … in order, whatever the other items did.
            let expected = job.notes(retries);
            let seen = &notes[job.index];
            assert!(
                expected.starts_with(seen),
                "{label}: item {} saw {seen:?}, expected (the start of) {expected:?}",
                job.index
            );
        }
        if doomed.is_empty() {
            let action = result.unwrap_or_else(|e| panic!("{label}: the run failed: {e}"));
            assert_eq!(action, "done", "{label}");
            assert_eq!(store.posts, 1, "{label}: post runs exactly once");
            assert_eq!(store.items, (0..n).collect::<Vec<_>>(), "{label}: the items post got");
            let expected: Vec<Done> = jobs
                .iter()
                .map(|job| Done {
                    index: job.index,
                    attempt: job.execs(retries) - 1,
                    recovered: job.exhausted(retries),
                })
                .collect();
            assert_eq!(store.outputs, expected, "{label}: outputs in input order");
            for job in &jobs {
                assert_eq!(notes[job.index], job.notes(retries), "{label}: item {}", job.index);
            }
            assert_eq!(probe.dropped(), 0, "{label}: no exec was dropped");

            assert_ending(&events, Rec::finished, &label);
            let attempts = jobs.iter().map(|job| job.execs(retries)).sum();
            let ends: Vec<&Rec> = events.iter().filter(|e| matches!(e, Rec::End { .. })).collect();
            let end = Rec::End { node: "batch".into(), action: "done".into(), attempts };
            assert_eq!(ends, [&end], "{label}: the node's end, with every item's attempts");
            for job in &jobs {
                let retried = (0..job.fails.min(retries - 1)).collect();
                let expected = (retried, usize::from(job.exhausted(retries)));
                let path = format!("batch[{}]", job.index);
                assert_eq!(retries_seen(&events, &path), expected, "{label}: events of {path}");
            }
            overlapped += usize::from(probe.max_in_flight() >= 2);
            reached_limit += usize::from(limit <= n && probe.max_in_flight() == limit);
        } else {
            failed_runs += 1;
            let error = result.expect_err(&format!("{label}: a doomed item must fail the run"));
            let FlowError::NodeFailed { node, phase: Phase::Exec, attempts, .. } = &error else {
                panic!("{label}: expected an exec failure, got {error:?}");
            };
            let d: usize = node
                .strip_prefix("batch[")
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|index| index.parse().ok())
                .unwrap_or_else(|| panic!("{label}: the failing node is {node:?}"));
            assert!(doomed.contains(&d), "{label}: item {d} failed, but it could recover");
            assert_eq!(*attempts, retries, "{label}: the failure counts the item's attempts");
            assert_eq!(notes[d], jobs[d].notes(retries), "{label}: the failed item's calls");
            let source = error.source().and_then(|s| s.downcast_ref::<Failure>());
            let last = format!("job {d} attempt {} failed", retries - 1);
            assert_eq!(source, Some(&Failure(last)), "{label}: the user's error is the source");
            assert_eq!(store.posts, 0, "{label}: post does not run after a failure");
            assert_ending(&events, Rec::failed, &label);
            assert!(
                !events.iter().any(|e| matches!(e, Rec::End { .. })),
                "{label}: the failed node has no end: {events:?}"
            );
        }
    }
    assert!(overlapped > 0, "no batch ever had two items in flight");
    assert!(reached_limit > 0, "no batch ever filled its limit");
    assert!(failed_runs > 0, "no run had an item that could not recover");
}

// ---------------------------------------------------------------------------------------------
// 2. BatchAsyncFlow
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default, PartialEq)]
struct FanStore {
    /// How many times the post of each (sub-run, step) ran.
    hits: BTreeMap<(i64, usize), usize>,
    /// The steps of each sub-run, in the order their posts ran.
    trail: BTreeMap<i64, Vec<usize>>,
    posts: usize,
    /// The `tag` param each post saw: inherited from the run's params.
    tags: BTreeSet<i64>,
    /// What each batch post received: the `i` of every params set, and the actions.
    batch_posts: Vec<(Vec<i64>, Vec<String>)>,
}

/// Step `step` of a sub-run: yields as its param `y{step}` says, and fails (once, for good) if
/// its param `fail` names its step. The first step's prep counts the sub-run in flight, the last
/// step's post counts it out and ends the sub-run with `"end{i}"`.
struct Leg {
    step: usize,
    last: bool,
    probe: Arc<Probe>,
    sub_runs: Arc<Gauge>,
}

/// What a [`Leg`] reads from its params.
struct LegPrep {
    i: i64,
    yields: usize,
    tag: i64,
    fail: bool,
}

impl Node<FanStore> for Leg {
    type Prep = LegPrep;
    type Output = ();

    fn prep(&self, _: &FanStore, params: &Params) -> Result<LegPrep> {
        let i = params.int("i")?;
        let yields = params.int(&format!("y{}", self.step))? as usize;
        let tag = params.int("tag")?;
        let fail = params.int("fail")? == self.step as i64;
        if self.step == 0 {
            self.sub_runs.enter();
        }
        Ok(LegPrep { i, yields, tag, fail })
    }

    async fn exec(&self, prep: &LegPrep, _: Ctx<'_>) -> Result<()> {
        let in_flight = InFlight::enter(&self.probe);
        yield_times(prep.yields).await;
        in_flight.finish();
        match prep.fail {
            true => Err(failure(format!("sub-run {} step {} failed", prep.i, self.step))),
            false => Ok(()),
        }
    }

    fn post(&self, store: &mut FanStore, prep: LegPrep, _: ()) -> Result<Action> {
        *store.hits.entry((prep.i, self.step)).or_default() += 1;
        store.trail.entry(prep.i).or_default().push(self.step);
        store.posts += 1;
        store.tags.insert(prep.tag);
        if !self.last {
            return Ok(Action::DEFAULT);
        }
        self.sub_runs.leave();
        Ok(format!("end{}", prep.i).into())
    }
}

#[test]
fn batch_async_flow_applies_every_sub_run_post_once_within_its_limit() {
    let (mut overlapped, mut failed_runs, mut limited_runs) = (0, 0, 0);
    for (label, mut rng) in cases(2, 1500) {
        let m = rng.below(51);
        let steps = 1 + rng.below(3);
        let limit = limit(&mut rng, 1, 8);
        // No limit: sometimes said explicitly, sometimes the default.
        let explicit = limit != usize::MAX || rng.chance(50);
        let tag = rng.below(1000) as i64;
        // Sometimes a sub-run or two fail at one of their steps: the batch flow fails fast.
        let mut doomed: BTreeMap<i64, usize> = BTreeMap::new();
        if m > 0 && rng.chance(15) {
            for _ in 0..=rng.below(2) {
                doomed.insert(rng.below(m) as i64, rng.below(steps));
            }
        }
        // Sometimes a step limit (every node run is a step: the batch flow and each sub-run's
        // steps), which trips if it is below the run's steps.
        let max_steps = (doomed.is_empty() && rng.chance(20)).then(|| rng.below(m * steps + 3));
        let limited = max_steps.is_some_and(|max| 1 + m * steps > max);
        let executor = rng.below(3);
        let sets: Vec<Params> = (0..m as i64)
            .map(|i| {
                let fail = doomed.get(&i).map_or(-1, |&step| step as i64);
                let mut set = Params::new().with("i", i).with("fail", fail);
                for step in 0..steps {
                    set.insert(format!("y{step}"), rng.below(6) as i64);
                }
                set
            })
            .collect();
        let label = format!(
            "{label} ({m} sub-runs of {steps} steps, limit {}, failing {doomed:?}, \
             max steps {max_steps:?}, {})",
            shown(limit),
            EXECUTORS[executor]
        );

        let (probe, sub_runs) = (Arc::new(Probe::default()), Arc::new(Gauge::default()));
        let mut inner = Flow::new();
        let mut previous = None;
        for step in 0..steps {
            let (probe, sub_runs) = (probe.clone(), sub_runs.clone());
            let id = inner
                .add(format!("s{step}"), Leg { step, last: step + 1 == steps, probe, sub_runs });
            if let Some(previous) = previous {
                inner.then(previous, id);
            }
            previous = Some(id);
        }
        let mut fan = BatchAsyncFlow::new(inner, move |_: &FanStore, _: &Params| Ok(sets.clone()))
            .post(|store: &mut FanStore, sets: Vec<Params>, actions: Vec<Action>| {
                let ids = sets.iter().map(|set| set.int("i")).collect::<Result<Vec<_>, _>>()?;
                store.batch_posts.push((ids, actions.iter().map(Action::to_string).collect()));
                Ok("fanned".into())
            });
        if explicit {
            fan = fan.max_in_flight(limit);
        }
        let mut flow = Flow::new();
        flow.add("fan", fan);
        let mut store = FanStore::default();
        let mut options = RunOptions::new().params(Params::new().with("tag", tag));
        if let Some(max) = max_steps {
            options = options.max_steps(max);
        }
        let result = drive(executor, flow.run_with(&mut store, options));

        assert!(sub_runs.max() <= limit, "{label}: {} sub-runs in flight", sub_runs.max());
        assert!(probe.max_in_flight() <= limit, "{label}: {} execs", probe.max_in_flight());
        assert_eq!(probe.now(), 0, "{label}: an exec is still in flight");
        if doomed.is_empty() && !limited {
            let action = result.unwrap_or_else(|e| panic!("{label}: the run failed: {e}"));
            assert_eq!(action, "fanned", "{label}");
            let ids: Vec<i64> = (0..m as i64).collect();
            let expected = FanStore {
                hits: ids.iter().flat_map(|&i| (0..steps).map(move |s| ((i, s), 1))).collect(),
                trail: ids.iter().map(|&i| (i, (0..steps).collect())).collect(),
                posts: m * steps,
                tags: if m > 0 { BTreeSet::from([tag]) } else { BTreeSet::new() },
                batch_posts: vec![(ids.clone(), ids.iter().map(|i| format!("end{i}")).collect())],
            };
            assert_eq!(store, expected, "{label}");
            assert_eq!(sub_runs.now(), 0, "{label}: a sub-run never finished");
            assert_eq!(probe.dropped(), 0, "{label}: an exec was dropped");
            overlapped += usize::from(sub_runs.max() >= 2);
            continue;
        }
        let error = result.expect_err(&format!("{label}: the run must fail"));
        let trail = |i: &i64| store.trail.get(i).map_or(&[][..], Vec::as_slice);
        if limited {
            limited_runs += 1;
            let max = max_steps.unwrap();
            let FlowError::StepLimit { limit: tripped, .. } = &error else {
                panic!("{label}: expected the step limit, got {error:?}");
            };
            assert_eq!(*tripped, max, "{label}");
            // The batch flow and `max - 1` sub-run steps started; not every one posted.
            assert!(store.posts <= max.saturating_sub(1), "{label}: {} posts", store.posts);
            if limit == 1 {
                // One after another: every step that started before the limit posted.
                assert_eq!(store.posts, max.saturating_sub(1), "{label}: posts");
            }
        } else {
            failed_runs += 1;
            let FlowError::NodeFailed { node, phase: Phase::Exec, attempts: 1, .. } = &error else {
                panic!("{label}: expected an exec failure, got {error:?}");
            };
            let (i, step) = doomed
                .iter()
                .find(|&(i, step)| *node == format!("fan[{i}]/s{step}"))
                .unwrap_or_else(|| panic!("{label}: {node} failed, but it could not"));
            let source = error.source().and_then(|s| s.downcast_ref::<Failure>());
            let message = format!("sub-run {i} step {step} failed");
            assert_eq!(source, Some(&Failure(message)), "{label}: the user's error is the source");
            assert_eq!(trail(i), (0..*step).collect::<Vec<_>>(), "{label}: the failed sub-run");
        }
        // The posts that ran stay, once each; every sub-run's in its own order, and none past
        // its failing step; the batch post does not run.
        for i in store.trail.keys() {
            let most = doomed.get(i).copied().unwrap_or(steps);
            let expected: Vec<usize> = (0..trail(i).len().min(most)).collect();
            assert_eq!(trail(i), expected, "{label}: sub-run {i}");
        }
        assert!(store.hits.values().all(|&hits| hits == 1), "{label}: {:?}", store.hits);
        assert_eq!(store.posts, store.hits.len(), "{label}");
        assert_eq!(store.batch_posts, [], "{label}: the batch post ran");
    }
    assert!(overlapped > 0, "sub-runs never overlapped");
    assert!(failed_runs > 0, "no sub-run ever failed");
    assert!(limited_runs > 0, "no run reached its step limit");
}

// ---------------------------------------------------------------------------------------------
// 3. Parallel
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default, PartialEq)]
struct ParStore {
    /// Every post, in the order they ran.
    log: Vec<String>,
    /// How many times each post ran.
    counts: BTreeMap<String, usize>,
    /// What the batch-node branches produced.
    squares: BTreeMap<String, Vec<u64>>,
    /// What the parallel post received, once per call.
    joined: Vec<Vec<String>>,
}

impl ParStore {
    fn posted(&mut self, key: &str) {
        self.log.push(key.to_string());
        *self.counts.entry(key.to_string()).or_default() += 1;
    }
}

/// A step of a branch, posting as `key`. Exec yields, and fails its first `fails` attempts of
/// `attempts` (so the step fails for good if `fails` is not less). The branch's first step counts
/// it in flight in prep; its last step counts it out in post and returns `action`.
struct Piece {
    key: String,
    yields: usize,
    fails: usize,
    attempts: usize,
    first: bool,
    action: Option<String>,
    probe: Arc<Probe>,
    branches: Arc<Gauge>,
}

impl Node<ParStore> for Piece {
    type Prep = ();
    type Output = ();

    fn prep(&self, _: &ParStore, _: &Params) -> Result<()> {
        if self.first {
            self.branches.enter();
        }
        Ok(())
    }

    async fn exec(&self, _: &(), cx: Ctx<'_>) -> Result<()> {
        let in_flight = InFlight::enter(&self.probe);
        yield_times(self.yields).await;
        in_flight.finish();
        match cx.attempt() < self.fails {
            true => Err(failure(format!("{} attempt {}", self.key, cx.attempt()))),
            false => Ok(()),
        }
    }

    fn post(&self, store: &mut ParStore, _: (), _: ()) -> Result<Action> {
        store.posted(&self.key);
        match &self.action {
            None => Ok(Action::DEFAULT),
            Some(action) => {
                self.branches.leave();
                Ok(action.clone().into())
            }
        }
    }

    fn max_retries(&self) -> usize {
        self.attempts
    }
}

/// A batch-node branch posting as `key`: squares `0..yields.len()`, item `i` yielding
/// `yields[i]` times, `limit` at once.
struct Squares {
    key: String,
    yields: Vec<usize>,
    limit: usize,
    probe: Arc<Probe>,
    branches: Arc<Gauge>,
}

impl BatchNode<ParStore> for Squares {
    type Item = u64;
    type Output = u64;

    fn prep(&self, _: &ParStore, _: &Params) -> Result<Vec<u64>> {
        self.branches.enter();
        Ok((0..self.yields.len() as u64).collect())
    }

    async fn exec(&self, item: &u64, _: Ctx<'_>) -> Result<u64> {
        let in_flight = InFlight::enter(&self.probe);
        yield_times(self.yields[*item as usize]).await;
        in_flight.finish();
        Ok(item * item)
    }

    fn post(
        &self,
        store: &mut ParStore,
        _: &Params,
        _: Vec<u64>,
        squares: Vec<u64>,
    ) -> Result<Action> {
        store.squares.insert(self.key.clone(), squares);
        store.posted(&self.key);
        self.branches.leave();
        Ok(format!("{}!", self.key).into())
    }

    fn max_in_flight(&self) -> usize {
        self.limit
    }
}

#[test]
fn parallel_branches_post_once_within_the_limit_and_join_in_the_order_added() {
    let (mut overlapped, mut failed_runs) = (0, 0);
    for (label, mut rng) in cases(3, 2000) {
        let count = rng.below(11);
        let limit = limit(&mut rng, 1, 8);
        let explicit = limit != usize::MAX || rng.chance(50);
        // Sometimes one step of one branch fails for good: the parallel node fails fast.
        let doom = (count > 0 && rng.chance(15)).then(|| rng.below(count));
        let executor = rng.below(3);

        let (probe, branches) = (Arc::new(Probe::default()), Arc::new(Gauge::default()));
        let piece = |key: String, rng: &mut Rng, first: bool, action: Option<String>, doomed| {
            let fails = if doomed || rng.chance(20) { 1 + rng.below(2) } else { 0 };
            let attempts = if doomed { fails } else { fails + 1 };
            let (probe, branches) = (probe.clone(), branches.clone());
            Piece { key, yields: rng.below(6), fails, attempts, first, action, probe, branches }
        };
        let mut par = Parallel::new();
        // Per branch, the keys its posts write, in order; the batch branches' squares; the
        // failing step's key and attempts.
        let mut keys: Vec<Vec<String>> = Vec::new();
        let mut squares = BTreeMap::new();
        let mut doomed = None;
        for b in 0..count {
            let (name, action) = (format!("b{b}"), Some(format!("b{b}!")));
            match rng.below(3) {
                0 => {
                    let step = piece(name.clone(), &mut rng, true, action, doom == Some(b));
                    if doom == Some(b) {
                        doomed = Some((step.key.clone(), step.attempts));
                    }
                    par = par.branch(&name, step);
                    keys.push(vec![name]);
                }
                1 => {
                    let steps = 1 + rng.below(3);
                    let failing = (doom == Some(b)).then(|| rng.below(steps));
                    let mut flow = Flow::new();
                    let mut previous = None;
                    let mut branch_keys = Vec::new();
                    for j in 0..steps {
                        let key = format!("{name}/s{j}");
                        let last = (j + 1 == steps).then(|| action.clone()).flatten();
                        let step = piece(key.clone(), &mut rng, j == 0, last, failing == Some(j));
                        if failing == Some(j) {
                            doomed = Some((step.key.clone(), step.attempts));
                        }
                        let id = flow.add(format!("s{j}"), step);
                        if let Some(previous) = previous {
                            flow.then(previous, id);
                        }
                        previous = Some(id);
                        branch_keys.push(key);
                    }
                    par = par.branch(&name, flow);
                    keys.push(branch_keys);
                }
                _ => {
                    let yields: Vec<usize> = (0..rng.below(7)).map(|_| rng.below(6)).collect();
                    squares.insert(name.clone(), (0..yields.len() as u64).map(|i| i * i).collect());
                    let limit = 2 + rng.below(3);
                    let (probe, branches) = (probe.clone(), branches.clone());
                    let key = name.clone();
                    par = par.branch(&name, Squares { key, yields, limit, probe, branches });
                    keys.push(vec![name]);
                }
            }
        }
        if explicit {
            par = par.max_in_flight(limit);
        }
        let label = format!(
            "{label} ({count} branches, limit {}, failing {doomed:?}, {})",
            shown(limit),
            EXECUTORS[executor]
        );
        let par = par.post(|store: &mut ParStore, actions: Vec<Action>| {
            store.joined.push(actions.iter().map(Action::to_string).collect());
            store.posted("par");
            Ok("joined".into())
        });
        let mut flow = Flow::new();
        let before = flow.add(
            "before",
            node_fn(|s: &mut ParStore, _| {
                s.posted("before");
                Ok(Action::DEFAULT)
            }),
        );
        let par = flow.add("par", par);
        let after = flow.add(
            "after",
            node_fn(|s: &mut ParStore, _| {
                s.posted("after");
                Ok(Action::DEFAULT)
            }),
        );
        flow.then(before, par);
        flow.edge(par, "joined", after);

        let mut store = ParStore::default();
        let events = Mutex::new(Vec::new());
        let result = {
            let observer = recorder(&events);
            drive(executor, flow.run_with(&mut store, RunOptions::new().observer(&observer)))
        };
        let events = events.into_inner().unwrap();

        assert!(branches.max() <= limit, "{label}: {} branches in flight", branches.max());
        assert_eq!(probe.now(), 0, "{label}: an exec is still in flight");
        let log = &store.log;
        for branch_keys in &keys {
            // Each branch's steps in order (all of them, or the first ones after a failure).
            let in_log: Vec<&String> = log.iter().filter(|k| branch_keys.contains(k)).collect();
            let expected: Vec<&String> = branch_keys.iter().take(in_log.len()).collect();
            assert_eq!(in_log, expected, "{label}: a branch's order");
        }
        assert!(store.counts.values().all(|&n| n == 1), "{label}: {:?}", store.counts);
        let Some((key, attempts)) = doomed else {
            let action = result.unwrap_or_else(|e| panic!("{label}: the run failed: {e}"));
            assert_eq!(action, Action::DEFAULT, "{label}");
            let all_keys = keys.iter().flatten().map(String::as_str);
            let expected: BTreeMap<String, usize> = ["before", "par", "after"]
                .into_iter()
                .chain(all_keys)
                .map(|key| (key.to_string(), 1))
                .collect();
            assert_eq!(store.counts, expected, "{label}: each post exactly once");
            assert_eq!(log.first().map(String::as_str), Some("before"), "{label}: {log:?}");
            assert_eq!(log[log.len() - 2..], ["par", "after"], "{label}: {log:?}");
            let actions: Vec<String> = (0..count).map(|b| format!("b{b}!")).collect();
            assert_eq!(store.joined, [actions], "{label}: the actions in the order added");
            assert_eq!(store.squares, squares, "{label}");
            assert_eq!(branches.now(), 0, "{label}: a branch never finished");
            assert_eq!(probe.dropped(), 0, "{label}: an exec was dropped");

            assert_ending(&events, Rec::finished, &label);
            let mut nodes: Vec<String> = ["before", "par", "after"].map(String::from).to_vec();
            nodes.extend((0..count).map(|b| format!("par/b{b}")));
            // A flow branch's steps end as `par/b{b}/s{j}`.
            let steps = keys.iter().flatten().filter(|k| k.contains('/'));
            nodes.extend(steps.map(|k| format!("par/{k}")));
            nodes.sort();
            assert_eq!(ended(&events, &[]), nodes, "{label}: every node ended once");
            overlapped += usize::from(branches.max() >= 2);
            continue;
        };
        failed_runs += 1;
        let error = result.expect_err(&format!("{label}: a failing branch fails the run"));
        let FlowError::NodeFailed { node, phase: Phase::Exec, attempts: made, .. } = &error else {
            panic!("{label}: expected an exec failure, got {error:?}");
        };
        assert_eq!((node.as_str(), *made), (format!("par/{key}").as_str(), attempts), "{label}");
        let source = error.source().and_then(|s| s.downcast_ref::<Failure>());
        let message = format!("{key} attempt {}", attempts - 1);
        assert_eq!(source, Some(&Failure(message)), "{label}: the user's error is the source");
        assert!(!store.counts.contains_key(&key), "{label}: the failing step posted");
        assert!(!store.counts.contains_key("par"), "{label}: the parallel post ran");
        assert!(!store.counts.contains_key("after"), "{label}: the next node ran");
        assert_eq!(log.first().map(String::as_str), Some("before"), "{label}: {log:?}");
        assert_eq!(store.joined, Vec::<Vec<String>>::new(), "{label}");
        assert_ending(&events, Rec::failed, &label);
    }
    assert!(overlapped > 0, "branches never overlapped");
    assert!(failed_runs > 0, "no branch ever failed");
}

// ---------------------------------------------------------------------------------------------
// 4. Nested combinations
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default, PartialEq)]
struct NestStore {
    /// Per (fan, sub-run): the squares of its items, in item order.
    squares: BTreeMap<(usize, i64), Vec<i64>>,
    /// Per fan: the sum of all its sub-runs' squares.
    totals: BTreeMap<usize, i64>,
    /// Per (fan, sub-run): how many times its side branch posted (when it has one).
    sides: BTreeMap<(usize, i64), usize>,
    /// Per fan: the sub-runs' actions its batch post received.
    fan_actions: BTreeMap<usize, Vec<String>>,
    solo: Option<i64>,
    /// The branch actions the outer parallel post received.
    par_actions: Vec<String>,
    /// Every post of every kind.
    posts: usize,
}

/// How often item `value`'s attempt `attempt` yields.
fn item_yields(value: i64, attempt: usize) -> usize {
    (value as usize * 31 + attempt * 7) % 6
}

/// Whether item `value`'s first attempt fails (the second succeeds).
fn item_flaky(value: i64) -> bool {
    value % 5 == 0
}

/// The concurrent batch node of fan `fan`'s sub-runs: squares the items `base..base + k`.
struct Sq {
    fan: usize,
    limit: usize,
    probe: Arc<Probe>,
}

impl BatchNode<NestStore> for Sq {
    type Item = (i64, i64);
    type Output = i64;

    fn prep(&self, _: &NestStore, params: &Params) -> Result<Vec<(i64, i64)>> {
        let (s, base, k) = (params.int("s")?, params.int("base")?, params.int("k")?);
        Ok((0..k).map(|j| (s, base + j)).collect())
    }

    async fn exec(&self, &(_, value): &(i64, i64), cx: Ctx<'_>) -> Result<i64> {
        let in_flight = InFlight::enter(&self.probe);
        yield_times(item_yields(value, cx.attempt())).await;
        in_flight.finish();
        match item_flaky(value) && cx.attempt() == 0 {
            true => Err(failure(format!("{value} is flaky"))),
            false => Ok(value * value),
        }
    }

    fn post(
        &self,
        store: &mut NestStore,
        _: &Params,
        items: Vec<(i64, i64)>,
        out: Vec<i64>,
    ) -> Result<Action> {
        if let Some(&(s, _)) = items.first() {
            store.squares.insert((self.fan, s), out);
        }
        store.posts += 1;
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        2
    }

    fn max_in_flight(&self) -> usize {
        self.limit
    }
}

/// What the other nodes of the nested test do.
enum Role {
    /// Beside `Sq` in a sub-run: counts itself in `sides`.
    Side,
    /// After `Sq` in a sub-run: adds its squares to the fan's total; ends the sub-run `"t{s}"`.
    Tally,
    /// A branch of the outer parallel node: writes `solo`.
    Solo(i64),
}

struct Other {
    fan: usize,
    role: Role,
    probe: Arc<Probe>,
}

impl Node<NestStore> for Other {
    /// The sub-run, the yields, and (for a tally) the sum of the sub-run's squares.
    type Prep = (i64, usize, i64);
    type Output = ();

    fn prep(&self, store: &NestStore, params: &Params) -> Result<(i64, usize, i64)> {
        Ok(match self.role {
            Role::Side => {
                let s = params.int("s")?;
                (s, s as usize % 3, 0)
            }
            Role::Tally => {
                let s = params.int("s")?;
                let sum = store.squares.get(&(self.fan, s)).map_or(0, |sq| sq.iter().sum());
                (s, params.int("ty")? as usize, sum)
            }
            Role::Solo(value) => (0, value as usize % 6, 0),
        })
    }

    async fn exec(&self, &(_, yields, _): &(i64, usize, i64), _: Ctx<'_>) -> Result<()> {
        let in_flight = InFlight::enter(&self.probe);
        yield_times(yields).await;
        in_flight.finish();
        Ok(())
    }

    fn post(&self, store: &mut NestStore, (s, _, sum): (i64, usize, i64), _: ()) -> Result<Action> {
        store.posts += 1;
        match self.role {
            Role::Side => {
                *store.sides.entry((self.fan, s)).or_default() += 1;
                Ok(Action::DEFAULT)
            }
            Role::Tally => {
                store.squares.entry((self.fan, s)).or_default();
                *store.totals.entry(self.fan).or_default() += sum;
                Ok(format!("t{s}").into())
            }
            Role::Solo(value) => {
                store.solo = Some(value * 3);
                Ok("solo".into())
            }
        }
    }
}

/// One sub-run of a fan.
struct SubPlan {
    base: i64,
    k: i64,
    tally_yields: i64,
}

/// One `BatchAsyncFlow` branch of the outer parallel node.
struct FanPlan {
    subs: Vec<SubPlan>,
    limit: usize,
    item_limit: usize,
    /// Whether `Sq` runs in a parallel node beside a `Side` node.
    side: bool,
    /// Whether the fan sits inside a flow of its own.
    wrapped: bool,
}

#[test]
fn concurrent_batch_nodes_in_batch_async_flows_in_parallel_branches_give_the_computed_store() {
    for (label, mut rng) in cases(4, 600) {
        let fans: Vec<FanPlan> = (0..1 + rng.below(3))
            .map(|_| FanPlan {
                subs: (0..rng.below(11))
                    .map(|_| SubPlan {
                        base: rng.below(51) as i64,
                        k: rng.below(9) as i64,
                        tally_yields: rng.below(6) as i64,
                    })
                    .collect(),
                limit: limit(&mut rng, 1, 4),
                item_limit: limit(&mut rng, 2, 6),
                side: rng.chance(50),
                wrapped: rng.chance(30),
            })
            .collect();
        let solo = rng.chance(70).then(|| rng.below(100) as i64);
        let par_limit = limit(&mut rng, 1, 4);
        let executor = rng.below(3);
        let label = format!("{label} ({} fans, {})", fans.len(), EXECUTORS[executor]);

        let probe = Arc::new(Probe::default());
        let mut par = Parallel::new().max_in_flight(par_limit);
        for (b, plan) in fans.iter().enumerate() {
            let mut inner = Flow::new();
            let sq = Sq { fan: b, limit: plan.item_limit, probe: probe.clone() };
            let first = match plan.side {
                false => inner.add("sq", sq),
                true => {
                    let side = Other { fan: b, role: Role::Side, probe: probe.clone() };
                    inner.add("both", Parallel::new().branch("sq", sq).branch("side", side))
                }
            };
            let tally =
                inner.add("tally", Other { fan: b, role: Role::Tally, probe: probe.clone() });
            inner.then(first, tally);
            let sets: Vec<Params> = (0..)
                .zip(&plan.subs)
                .map(|(s, sub)| {
                    Params::new()
                        .with("s", s)
                        .with("base", sub.base)
                        .with("k", sub.k)
                        .with("ty", sub.tally_yields)
                })
                .collect();
            let fan = BatchAsyncFlow::new(inner, move |_: &NestStore, _: &Params| Ok(sets.clone()))
                .max_in_flight(plan.limit)
                .post(move |store: &mut NestStore, _: Vec<Params>, actions: Vec<Action>| {
                    store.fan_actions.insert(b, actions.iter().map(Action::to_string).collect());
                    store.totals.entry(b).or_insert(0);
                    store.posts += 1;
                    Ok(format!("fan{b}").into())
                });
            par = match plan.wrapped {
                false => par.branch(format!("fan{b}"), fan),
                true => {
                    let mut wrap = Flow::new();
                    wrap.add("fan", fan);
                    par.branch(format!("wrap{b}"), wrap)
                }
            };
        }
        if let Some(value) = solo {
            par =
                par.branch("solo", Other { fan: 0, role: Role::Solo(value), probe: probe.clone() });
        }
        let par = par.post(|store: &mut NestStore, actions: Vec<Action>| {
            store.par_actions = actions.iter().map(Action::to_string).collect();
            store.posts += 1;
            Ok(Action::DEFAULT)
        });
        let mut flow = Flow::new();
        flow.add("par", par);
        let mut store = NestStore::default();
        drive(executor, flow.run(&mut store))
            .unwrap_or_else(|e| panic!("{label}: the run failed: {e}"));

        // The same, computed directly.
        let mut expected = NestStore { solo: solo.map(|v| v * 3), ..NestStore::default() };
        for (b, plan) in fans.iter().enumerate() {
            let mut total = 0;
            for (s, sub) in (0..).zip(&plan.subs) {
                let squares: Vec<i64> = (sub.base..sub.base + sub.k).map(|v| v * v).collect();
                total += squares.iter().sum::<i64>();
                expected.squares.insert((b, s), squares);
                if plan.side {
                    expected.sides.insert((b, s), 1);
                }
                expected.posts += 2 + usize::from(plan.side);
            }
            expected.totals.insert(b, total);
            let actions = (0..plan.subs.len()).map(|s| format!("t{s}")).collect();
            expected.fan_actions.insert(b, actions);
            expected.par_actions.push(format!("fan{b}"));
            expected.posts += 1;
        }
        if solo.is_some() {
            expected.par_actions.push("solo".into());
            expected.posts += 1;
        }
        expected.posts += 1;
        assert_eq!(store, expected, "{label}");
        assert_eq!((probe.now(), probe.dropped()), (0, 0), "{label}: execs left or dropped");
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Many runs of one shared flow on tokio's multi-thread runtime
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default, PartialEq)]
struct RunStore {
    run: i64,
    log: Vec<String>,
    products: Vec<i64>,
    cells: BTreeMap<i64, i64>,
    x: i64,
    y: i64,
    loops: i64,
}

/// The params of one run, and the store it must end with.
#[derive(Clone, Copy, Debug)]
struct RunPlan {
    run: i64,
    n: i64,
    m: i64,
    salt: i64,
    loops: i64,
}

impl RunPlan {
    fn params(&self) -> Params {
        let RunPlan { run, n, m, salt, loops } = *self;
        Params::new()
            .with("run", run)
            .with("n", n)
            .with("m", m)
            .with("salt", salt)
            .with("loops", loops)
    }

    fn expected(&self) -> RunStore {
        let RunPlan { run, n, m, salt, loops } = *self;
        let mut log = vec!["load".to_string()];
        for _ in 0..loops {
            log.extend(["mul", "fan", "par"].map(String::from));
        }
        RunStore {
            run,
            log,
            products: (0..n).map(|i| i * salt).collect(),
            cells: (0..m).map(|j| (j, run * 1000 + j)).collect(),
            x: run + 1,
            y: run * 2,
            loops,
        }
    }
}

async fn tokio_yields(n: i64) {
    for _ in 0..n {
        tokio::task::yield_now().await;
    }
}

/// What a [`Plain`] node of the shared flow does.
#[derive(Clone, Copy)]
enum Chore {
    Load,
    Cell,
    X,
    Y,
}

struct Plain {
    chore: Chore,
    probe: Arc<Probe>,
}

impl Node<RunStore> for Plain {
    /// The run, and (for a cell) its `j`.
    type Prep = (i64, i64);
    type Output = ();

    fn prep(&self, _: &RunStore, params: &Params) -> Result<(i64, i64)> {
        let j = match self.chore {
            Chore::Cell => params.int("j")?,
            _ => 0,
        };
        Ok((params.int("run")?, j))
    }

    async fn exec(&self, &(run, j): &(i64, i64), _: Ctx<'_>) -> Result<()> {
        let in_flight = InFlight::enter(&self.probe);
        match self.chore {
            Chore::Load | Chore::X => tokio_yields(run % 3).await,
            Chore::Cell | Chore::Y => yield_times(((run + j) % 3) as usize).await,
        }
        in_flight.finish();
        Ok(())
    }

    fn post(&self, store: &mut RunStore, (run, j): (i64, i64), _: ()) -> Result<Action> {
        match self.chore {
            Chore::Load => {
                store.run = run;
                store.log.push("load".into());
            }
            Chore::Cell => {
                store.cells.insert(j, run * 1000 + j);
            }
            Chore::X => store.x = run + 1,
            Chore::Y => store.y = run * 2,
        }
        Ok(Action::DEFAULT)
    }
}

/// Multiplies `0..n` by `salt` (both params), four items at once.
struct Mul(Arc<Probe>);

impl BatchNode<RunStore> for Mul {
    type Item = (i64, i64);
    type Output = i64;

    fn prep(&self, _: &RunStore, params: &Params) -> Result<Vec<(i64, i64)>> {
        let (n, salt) = (params.int("n")?, params.int("salt")?);
        Ok((0..n).map(|i| (i, salt)).collect())
    }

    async fn exec(&self, &(i, salt): &(i64, i64), _: Ctx<'_>) -> Result<i64> {
        let in_flight = InFlight::enter(&self.0);
        tokio_yields((i + salt) % 4).await;
        in_flight.finish();
        Ok(i * salt)
    }

    fn post(
        &self,
        store: &mut RunStore,
        _: &Params,
        _: Vec<(i64, i64)>,
        products: Vec<i64>,
    ) -> Result<Action> {
        store.products = products;
        store.log.push("mul".into());
        Ok(Action::DEFAULT)
    }

    fn max_in_flight(&self) -> usize {
        4
    }
}

/// `load -> mul -> fan -> par -> check`, where `check` loops back to `mul` until the run has
/// made `loops` rounds.
fn shared_flow(probe: &Arc<Probe>) -> Flow<RunStore> {
    let plain = |chore| Plain { chore, probe: probe.clone() };
    let mut cell = Flow::new();
    cell.add("cell", plain(Chore::Cell));
    let fan = BatchAsyncFlow::new(cell, |_: &RunStore, params: &Params| {
        Ok((0..params.int("m")?).map(|j| Params::new().with("j", j)).collect())
    })
    .max_in_flight(3)
    .post(|store: &mut RunStore, _: Vec<Params>, _: Vec<Action>| {
        store.log.push("fan".into());
        Ok(Action::DEFAULT)
    });
    let par = Parallel::new().branch("x", plain(Chore::X)).branch("y", plain(Chore::Y)).post(
        |store: &mut RunStore, _: Vec<Action>| {
            store.log.push("par".into());
            Ok(Action::DEFAULT)
        },
    );
    let mut flow = Flow::new();
    let load = flow.add("load", plain(Chore::Load));
    let mul = flow.add("mul", Mul(probe.clone()));
    let fan = flow.add("fan", fan);
    let par = flow.add("par", par);
    let check = flow.add(
        "check",
        node_fn(|store: &mut RunStore, params| {
            store.loops += 1;
            Ok(if store.loops < params.int("loops")? { "again" } else { "done" }.into())
        }),
    );
    flow.then(load, mul);
    flow.then(mul, fan);
    flow.then(fan, par);
    flow.then(par, check);
    flow.edge(check, "again", mul);
    flow.end(check, "done");
    flow
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shared_flow_serves_many_concurrent_runs_on_tokio_multi_thread() {
    const RUNS: i64 = 96;
    let probe = Arc::new(Probe::default());
    let flow = Arc::new(shared_flow(&probe));
    for (label, mut rng) in cases(5, 8) {
        let plans: Vec<RunPlan> = (0..RUNS)
            .map(|run| RunPlan {
                run,
                n: rng.below(17) as i64,
                m: rng.below(9) as i64,
                salt: 1 + rng.below(9) as i64,
                loops: 1 + rng.below(3) as i64,
            })
            .collect();
        let handles: Vec<_> = plans
            .iter()
            .map(|plan| {
                let (flow, params) = (Arc::clone(&flow), plan.params());
                tokio::spawn(async move {
                    let mut store = RunStore::default();
                    let events = Mutex::new(Vec::new());
                    let result = {
                        let observer = recorder(&events);
                        let options = RunOptions::new().params(params).observer(&observer);
                        flow.run_with(&mut store, options).await
                    };
                    (result, store, events.into_inner().unwrap())
                })
            })
            .collect();
        for (plan, handle) in plans.iter().zip(handles) {
            let label = format!("{label}, {plan:?}");
            let (result, store, events) = handle.await.expect("the run did not panic");
            let action = result.unwrap_or_else(|e| panic!("{label}: the run failed: {e}"));
            assert_eq!(action, "done", "{label}");
            assert_eq!(store, plan.expected(), "{label}");
            assert_ending(&events, Rec::finished, &label);
        }
    }
    assert_eq!((probe.now(), probe.dropped()), (0, 0), "execs left or dropped");
    assert_eq!(Arc::strong_count(&flow), 1, "every run let go of the flow");
}

// ---------------------------------------------------------------------------------------------
// 6. Cancellation at every poll
// ---------------------------------------------------------------------------------------------

/// The store. Every post pushes one entry, the path of its node, *and* bumps `posts`: a post
/// cut in half would leave them apart. The batch nodes, the batch flow and the parallel node
/// also write their results in the same post as their entry.
#[derive(Debug, Default, Clone, PartialEq)]
struct Ledger {
    entries: Vec<String>,
    posts: usize,
    /// Per batch node (by path): its outputs, all at once.
    squares: BTreeMap<String, Vec<u64>>,
    /// The sub-runs' actions, as the `BatchAsyncFlow`'s post got them.
    sub_actions: Vec<String>,
    /// The branches' actions, as the parallel node's post got them.
    par_actions: Vec<String>,
}

impl Ledger {
    fn record(&mut self, entry: String) {
        self.entries.push(entry);
        self.posts += 1;
    }
}

/// A leaf recording `path`; inside a sub-run of `fan` (param `i` set) it records
/// `fan[i]/{path}` and yields `extra` (a param) more times. A leaf that ends its flow returns
/// `"{entry}!"`, the others the default action.
struct Stage {
    path: &'static str,
    yields: usize,
    ends: bool,
    probe: Arc<Probe>,
}

impl Node<Ledger> for Stage {
    type Prep = (String, usize);
    type Output = ();

    fn prep(&self, _: &Ledger, params: &Params) -> Result<(String, usize)> {
        if !params.contains("i") {
            return Ok((self.path.to_string(), self.yields));
        }
        let (i, extra) = (params.int("i")?, params.int("extra")?);
        Ok((format!("fan[{i}]/{}", self.path), self.yields + extra as usize))
    }

    async fn exec(&self, &(_, yields): &(String, usize), _: Ctx<'_>) -> Result<()> {
        let in_flight = InFlight::enter(&self.probe);
        yield_times(yields).await;
        in_flight.finish();
        Ok(())
    }

    fn post(&self, ledger: &mut Ledger, (entry, _): (String, usize), _: ()) -> Result<Action> {
        let action = match self.ends {
            true => format!("{entry}!").into(),
            false => Action::DEFAULT,
        };
        ledger.record(entry);
        Ok(action)
    }
}

/// An item of [`Sq6`]: its value, its yields, whether its first attempt fails.
type Item6 = (u64, usize, bool);

/// A concurrent batch node recording `path` and the squares of its items.
struct Sq6 {
    path: &'static str,
    items: Vec<Item6>,
    limit: usize,
    action: &'static str,
    probe: Arc<Probe>,
}

impl BatchNode<Ledger> for Sq6 {
    type Item = Item6;
    type Output = u64;

    fn prep(&self, _: &Ledger, _: &Params) -> Result<Vec<Item6>> {
        Ok(self.items.clone())
    }

    async fn exec(&self, &(value, yields, flaky): &Item6, cx: Ctx<'_>) -> Result<u64> {
        let in_flight = InFlight::enter(&self.probe);
        yield_times(yields).await;
        in_flight.finish();
        match flaky && cx.attempt() == 0 {
            true => Err(failure(format!("{value} is flaky"))),
            false => Ok(value * value),
        }
    }

    fn post(
        &self,
        ledger: &mut Ledger,
        _: &Params,
        _: Vec<Item6>,
        squares: Vec<u64>,
    ) -> Result<Action> {
        ledger.squares.insert(self.path.to_string(), squares);
        ledger.record(self.path.to_string());
        Ok(self.action.into())
    }

    fn max_retries(&self) -> usize {
        2
    }

    fn max_in_flight(&self) -> usize {
        self.limit
    }
}

/// The random parts of the cancellation test's flow.
struct Config {
    a: usize,
    batch: Vec<Item6>,
    batch_limit: usize,
    /// Per sub-run of `fan`: its extra yields.
    subs: Vec<usize>,
    left: usize,
    right: usize,
    fan_limit: usize,
    x: usize,
    f1: usize,
    f2: usize,
    q: Vec<Item6>,
    q_limit: usize,
    par_limit: usize,
    z: usize,
}

impl Config {
    fn draw(rng: &mut Rng) -> Config {
        fn items(rng: &mut Rng, most: usize) -> Vec<Item6> {
            let n = 1 + rng.below(most);
            (1..=n as u64).map(|v| (v, rng.below(5), rng.chance(25))).collect()
        }
        let subs = 1 + rng.below(4);
        Config {
            a: rng.below(4),
            batch: items(rng, 6),
            batch_limit: 2 + rng.below(3),
            subs: (0..subs).map(|_| rng.below(4)).collect(),
            left: rng.below(3),
            right: rng.below(3),
            fan_limit: limit(rng, 1, 3),
            x: rng.below(5),
            f1: rng.below(3),
            f2: rng.below(3),
            q: items(rng, 4),
            q_limit: 2 + rng.below(2),
            par_limit: limit(rng, 1, 3),
            z: rng.below(3),
        }
    }
}

/// The nodes with no post of their own (a flow's end event comes after its last node's).
const NO_POST: [&str; 1] = ["par/f"];

/// `a -> batch -> fan -> par -> z`: `batch` a concurrent batch node; `fan` a `BatchAsyncFlow`
/// of `left -> right`; `par` a parallel node with a leaf `x`, a flow `f` of `f1 -> f2` and a
/// concurrent batch node `q`.
fn cancel_flow(c: &Config, probe: &Arc<Probe>) -> Flow<Ledger> {
    let stage = |path, yields, ends| Stage { path, yields, ends, probe: probe.clone() };
    let sq6 = |path, items: &Vec<Item6>, limit, action| Sq6 {
        path,
        items: items.clone(),
        limit,
        action,
        probe: probe.clone(),
    };
    let mut sub = Flow::new();
    let left = sub.add("left", stage("left", c.left, false));
    let right = sub.add("right", stage("right", c.right, true));
    sub.then(left, right);
    let subs = c.subs.clone();
    let fan = BatchAsyncFlow::new(sub, move |_: &Ledger, _: &Params| {
        let set = |(i, &extra): (usize, &usize)| {
            Params::new().with("i", i as i64).with("extra", extra as i64)
        };
        Ok(subs.iter().enumerate().map(set).collect())
    })
    .max_in_flight(c.fan_limit)
    .post(|ledger: &mut Ledger, _: Vec<Params>, actions: Vec<Action>| {
        ledger.sub_actions = actions.iter().map(Action::to_string).collect();
        ledger.record("fan".into());
        Ok(Action::DEFAULT)
    });
    let mut f = Flow::new();
    let f1 = f.add("f1", stage("par/f/f1", c.f1, false));
    let f2 = f.add("f2", stage("par/f/f2", c.f2, true));
    f.then(f1, f2);
    let par = Parallel::new()
        .branch("x", stage("par/x", c.x, true))
        .branch("f", f)
        .branch("q", sq6("par/q", &c.q, c.q_limit, "par/q!"))
        .max_in_flight(c.par_limit)
        .post(|ledger: &mut Ledger, actions: Vec<Action>| {
            ledger.par_actions = actions.iter().map(Action::to_string).collect();
            ledger.record("par".into());
            Ok(Action::DEFAULT)
        });
    let mut flow = Flow::new();
    let a = flow.add("a", stage("a", c.a, false));
    let batch = flow.add("batch", sq6("batch", &c.batch, c.batch_limit, "default"));
    let fan = flow.add("fan", fan);
    let par = flow.add("par", par);
    let z = flow.add("z", stage("z", c.z, true));
    flow.then(a, batch);
    flow.then(batch, fan);
    flow.then(fan, par);
    flow.then(par, z);
    flow
}

/// Checks what a cut run left in `store` against the full run's store.
fn assert_whole_posts(store: &Ledger, full: &Ledger, label: &str) {
    assert_eq!(store.posts, store.entries.len(), "{label}: a post was cut in half: {store:?}");
    let mut unmatched = full.entries.clone();
    for entry in &store.entries {
        let at = unmatched.iter().position(|e| e == entry);
        let at =
            at.unwrap_or_else(|| panic!("{label}: a post the full run does not make: {entry}"));
        unmatched.remove(at);
    }
    assert!(
        full.entries.starts_with(&store.entries),
        "{label}: the posts are not the first ones of the full run: {:?}, full {:?}",
        store.entries,
        full.entries
    );
    let posted = |entry: &str| store.entries.iter().any(|e| e == entry);
    for key in ["batch", "par/q"] {
        let expected = posted(key).then(|| &full.squares[key]);
        assert_eq!(store.squares.get(key), expected, "{label}: the outputs of {key}");
    }
    let expected: &[String] = if posted("fan") { &full.sub_actions } else { &[] };
    assert_eq!(store.sub_actions, expected, "{label}: the sub-runs' actions");
    let expected: &[String] = if posted("par") { &full.par_actions } else { &[] };
    assert_eq!(store.par_actions, expected, "{label}: the branches' actions");
}

/// Checks that the nodes that ended, by the events, are the nodes that posted.
fn assert_ends_match_posts(events: &[Rec], entries: &[String], label: &str) {
    let mut posted = entries.to_vec();
    posted.sort();
    assert_eq!(ended(events, &NO_POST), posted, "{label}: the ended nodes are those that posted");
}

#[test]
fn dropping_a_run_after_every_poll_leaves_whole_posts_and_the_flow_runs_again() {
    let (mut cuts, mut concurrent_cuts) = (0, 0);
    for (label, mut rng) in cases(6, 150) {
        let config = Config::draw(&mut rng);
        let probe = Arc::new(Probe::default());
        let flow = cancel_flow(&config, &probe);

        // The reference: a run polled by hand to its end.
        let mut full = Ledger::default();
        let (result, polls) = poll_by_hand(flow.run(&mut full), MAX_POLLS);
        let result = result.unwrap_or_else(|| panic!("{label}: the run hung"));
        assert_eq!(result.unwrap_or_else(|e| panic!("{label}: {e}")), "z!", "{label}");
        let subs = config.subs.len();
        assert_eq!(full.entries.len(), 2 + 2 * subs + 1 + 4 + 1 + 1, "{label}: {full:?}");
        assert_eq!(full.posts, full.entries.len(), "{label}");
        assert_eq!(probe.dropped(), 0, "{label}");

        let mut previous: Vec<String> = Vec::new();
        for k in 0..=polls {
            let label = format!("{label}, cut after {k} of {polls} polls");
            let mut store = Ledger::default();
            let events = Mutex::new(Vec::new());
            let dropped = probe.dropped();
            let (result, _) = {
                let observer = recorder(&events);
                let run = flow.run_with(&mut store, RunOptions::new().observer(&observer));
                poll_by_hand(run, k)
            };
            let events = events.into_inner().unwrap();
            assert_eq!(probe.now(), 0, "{label}: an exec is still running");
            assert_whole_posts(&store, &full, &label);
            if let Some(result) = result {
                assert_eq!(k, polls, "{label}: the run finished early");
                assert_eq!(result.unwrap_or_else(|e| panic!("{label}: {e}")), "z!", "{label}");
                assert_eq!(store, full, "{label}");
                assert_ending(&events, Rec::finished, &label);
                assert_ends_match_posts(&events, &store.entries, &label);
                break;
            }
            assert!(k < polls, "{label}: the run did not finish in as many polls as before");
            cuts += 1;
            assert!(
                store.entries.starts_with(&previous),
                "{label}: fewer posts than one poll before"
            );
            previous = store.entries.clone();
            match k {
                0 => assert_eq!(events, [], "{label}: a run never polled did nothing"),
                _ => {
                    assert_ending(&events, Rec::cancelled, &label);
                    assert_ends_match_posts(&events, &store.entries, &label);
                }
            }
            concurrent_cuts += usize::from(probe.dropped() - dropped >= 2);

            // The same store, run again to its end: the full run's posts after the cut's.
            let executor = rng.below(3);
            let label = format!("{label}, then run again ({})", EXECUTORS[executor]);
            let cut = store.entries.clone();
            let events = Mutex::new(Vec::new());
            let result = {
                let observer = recorder(&events);
                drive(executor, flow.run_with(&mut store, RunOptions::new().observer(&observer)))
            };
            let events = events.into_inner().unwrap();
            assert_eq!(result.unwrap_or_else(|e| panic!("{label}: {e}")), "z!", "{label}");
            assert_eq!(store.entries, [cut, full.entries.clone()].concat(), "{label}");
            assert_eq!(store.posts, store.entries.len(), "{label}");
            let rest = (&store.squares, &store.sub_actions, &store.par_actions);
            assert_eq!(rest, (&full.squares, &full.sub_actions, &full.par_actions), "{label}");
            assert_ending(&events, Rec::finished, &label);
            assert_ends_match_posts(&events, &full.entries, &label);
            assert_eq!(probe.now(), 0, "{label}: an exec is still running");
        }
    }
    assert!(cuts > 0, "no run was cut");
    assert!(concurrent_cuts > 0, "no cut dropped two execs in flight at once");
}
