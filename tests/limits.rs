//! Limits on a run: the step limit (`RunOptions::max_steps`), per-attempt timeouts
//! (`Node::timeout`) and the pauses between attempts (`Node::wait`, `Backoff`).
//!
//! Pins down that every node run counts against the limit wherever it runs (nested flows and
//! their nodes, a batch flow's sub-runs' nodes), that the limit fails the run before node run
//! `limit + 1` with `FlowError::StepLimit` listing the last (up to eight) node runs oldest
//! first, each flow's own completed runs in front of the inner ones; that there is no limit by
//! default; that a timed-out attempt is a failed attempt with a `TimedOut` error — retried,
//! then given to the fallback, and kept as the `source()` of the run's error — per item in a
//! batch node, and that a zero timeout is `InvalidConfig` before `prep`; and that `Backoff`
//! gives the exact documented schedule (doubling, capped, no overflow), that the default `wait`
//! retries at once and a fixed one pauses the same after every attempt, and that the run
//! really uses what the hook returns, as the `delay` of its `Retry` events shows.
//!
//! Times are checked as lower bounds only, never upper ones.

use std::error::Error as _;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures::future;
use miniflow::{
    Action, Backoff, BatchAsyncFlow, BatchFlow, BatchNode, Ctx, Error, Event, Flow, FlowError,
    Node, Parallel, Params, Phase, Result, RunOptions, TimedOut, node_fn,
};

mod common;
use common::*;

const MS: fn(u64) -> Duration = Duration::from_millis;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A node that records `label` in the store (a list of the node runs so far) and goes on with
/// the default action.
fn mark(label: &'static str) -> impl Node<Vec<String>> {
    node_fn(move |runs: &mut Vec<String>, _: &Params| {
        runs.push(label.to_string());
        Ok(Action::DEFAULT)
    })
}

/// `a ⇄ b`: a loop that never ends.
fn ping_pong() -> Flow<Vec<String>> {
    let mut flow = Flow::new();
    let a = flow.add("a", mark("a"));
    let b = flow.add("b", mark("b"));
    flow.then(a, b);
    flow.then(b, a);
    flow
}

/// `a → b → c → a`: a longer loop that never ends, so that the order of the list shows.
fn triangle() -> Flow<Vec<String>> {
    let mut flow = Flow::new();
    let a = flow.add("a", mark("a"));
    let b = flow.add("b", mark("b"));
    let c = flow.add("c", mark("c"));
    flow.then(a, b);
    flow.then(b, c);
    flow.then(c, a);
    flow
}

/// `plan → work → plan → …`, where `work` is a nested flow `x → y`. Node runs, numbered:
/// plan 1, work 2, work/x 3, work/y 4, plan 5, work 6, work/x 7, work/y 8, plan 9, …
fn plan_work() -> Flow<Vec<String>> {
    let mut work = Flow::new();
    let x = work.add("x", mark("work/x"));
    let y = work.add("y", mark("work/y"));
    work.then(x, y);

    let mut flow = Flow::new();
    let plan = flow.add("plan", mark("plan"));
    let work = flow.add("work", work);
    flow.then(plan, work);
    flow.then(work, plan);
    flow
}

/// Runs `flow` on an empty store with `max_steps(limit)`; returns the result and the store.
fn run_limited(
    flow: &Flow<Vec<String>>,
    limit: usize,
) -> (std::result::Result<Action, FlowError>, Vec<String>) {
    let mut runs = Vec::new();
    let result = smol::block_on(flow.run_with(&mut runs, RunOptions::new().max_steps(limit)));
    (result, runs)
}

/// `(limit, last)` of a `StepLimit`; panics on anything else.
fn step_limit(result: &std::result::Result<Action, FlowError>) -> (usize, Vec<&str>) {
    match result {
        Err(FlowError::StepLimit { limit, last, .. }) => {
            (*limit, last.iter().map(String::as_str).collect())
        }
        other => panic!("expected StepLimit, got {other:?}"),
    }
}

/// `(node, phase, attempts)` of a `NodeFailed`; panics on any other variant.
fn node_failed(err: &FlowError) -> (&str, Phase, usize) {
    match err {
        FlowError::NodeFailed { node, phase, attempts, .. } => (node.as_str(), *phase, *attempts),
        other => panic!("expected NodeFailed, got {other:?}"),
    }
}

/// The `after` of the `TimedOut` kept as the `source()` of `err`.
fn timed_out_source(err: &FlowError) -> Duration {
    err.source()
        .expect("a NodeFailed keeps the attempt's error as its source")
        .downcast_ref::<TimedOut>()
        .expect("the source is a TimedOut")
        .after
}

/// An error as the events below show it: `TimedOut(5ms)` for a timeout, else its message.
fn show(error: &Error) -> String {
    match error.downcast_ref::<TimedOut>() {
        Some(timed_out) => format!("TimedOut({:?})", timed_out.after),
        None => error.to_string(),
    }
}

/// An observer that keeps the retry, fallback and node-end events of a run as strings.
#[derive(Default)]
struct Events(Mutex<Vec<String>>);

impl Events {
    fn record(&self, event: &Event<'_>) {
        let line = match event {
            Event::Retry { node, attempt, error, delay, .. } => {
                format!("retry {node} #{attempt} in {delay:?}: {}", show(error))
            }
            Event::Fallback { node, error, .. } => format!("fallback {node}: {}", show(error)),
            Event::NodeEnd { node, attempts, .. } => format!("end {node} after {attempts}"),
            _ => return,
        };
        self.0.lock().unwrap().push(line);
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// What the `wait` hook of a `Hang` or `Flaky` node returns after a failed attempt: always
/// `Some` pause, so every attempt `max_retries` allows is made.
#[derive(Clone, Copy, Debug)]
enum Pause {
    /// Retry at once, as the default hook does.
    None,
    /// The same pause after every failed attempt.
    Fixed(Duration),
    /// The pauses of a backoff: `Backoff::delay` of the attempt that failed.
    Backoff(Backoff),
}

impl Pause {
    /// The pause after attempt `attempt` (0-based) failed.
    fn after(self, attempt: usize) -> Duration {
        match self {
            Pause::None => Duration::ZERO,
            Pause::Fixed(pause) => pause,
            Pause::Backoff(backoff) => backoff.delay(attempt),
        }
    }
}

/// What a `Hang` or `Items` node did, from inside its phases.
#[derive(Default)]
struct Probe {
    preps: AtomicUsize,
    log: Mutex<Vec<String>>,
}

impl Probe {
    fn preps(&self) -> usize {
        self.preps.load(Ordering::SeqCst)
    }

    fn push(&self, line: String) {
        self.log.lock().unwrap().push(line);
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

/// A node whose exec never finishes on the attempts listed in `hang_on` (and answers at once
/// on the others), with configurable attempts, wait, timeout and fallback value.
struct Hang {
    hang_on: Vec<usize>,
    max_retries: usize,
    wait: Pause,
    timeout: Option<Duration>,
    /// `Some`: `exec_fallback` returns this value; `None`: the default fallback.
    rescue: Option<&'static str>,
    probe: Arc<Probe>,
}

impl Hang {
    /// Hangs on every attempt, with a 5 ms timeout, one attempt and no fallback.
    fn new(probe: &Arc<Probe>) -> Self {
        Hang {
            hang_on: (0..1_000).collect(),
            max_retries: 1,
            wait: Pause::None,
            timeout: Some(MS(5)),
            rescue: None,
            probe: probe.clone(),
        }
    }
}

impl Node<Vec<String>> for Hang {
    type Prep = ();
    type Output = String;

    fn prep(&self, _: &Vec<String>, _: &Params) -> Result<()> {
        self.probe.preps.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn exec(&self, _: &(), cx: Ctx<'_>) -> Result<String> {
        self.probe.push(format!("exec #{} at {}", cx.attempt(), cx.node()));
        if self.hang_on.contains(&cx.attempt()) {
            future::pending::<()>().await;
        }
        Ok(format!("answer on attempt {}", cx.attempt()))
    }

    async fn exec_fallback(&self, _: &(), error: Error, cx: Ctx<'_>) -> Result<String> {
        self.probe.push(format!("fallback after #{}: {}", cx.attempt(), show(&error)));
        match self.rescue {
            Some(value) => Ok(value.to_string()),
            None => Err(error),
        }
    }

    fn post(&self, store: &mut Vec<String>, _: (), answer: String) -> Result<Action> {
        store.push(answer);
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        self.max_retries
    }

    fn wait(&self, _: &Error, cx: Ctx<'_>) -> Option<Duration> {
        Some(self.wait.after(cx.attempt()))
    }

    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
}

/// A batch node over items `0..3`: item `hang` never finishes, the others answer `item * 10`
/// at once. Timeout 5 ms per attempt.
struct Items {
    hang: usize,
    max_retries: usize,
    max_in_flight: usize,
    timeout: Option<Duration>,
    /// `Some`: `exec_fallback` returns this value; `None`: the default fallback.
    rescue: Option<u32>,
    probe: Arc<Probe>,
}

impl Items {
    fn new(probe: &Arc<Probe>) -> Self {
        Items {
            hang: 1,
            max_retries: 1,
            max_in_flight: 1,
            timeout: Some(MS(5)),
            rescue: None,
            probe: probe.clone(),
        }
    }
}

impl BatchNode<Vec<u32>> for Items {
    type Item = u32;
    type Output = u32;

    fn prep(&self, _: &Vec<u32>, _: &Params) -> Result<Vec<u32>> {
        self.probe.preps.fetch_add(1, Ordering::SeqCst);
        Ok(vec![0, 1, 2])
    }

    async fn exec(&self, item: &u32, cx: Ctx<'_>) -> Result<u32> {
        self.probe.push(format!("exec {} #{}", cx.node(), cx.attempt()));
        if *item as usize == self.hang {
            future::pending::<()>().await;
        }
        Ok(item * 10)
    }

    async fn exec_fallback(&self, _: &u32, error: Error, _: Ctx<'_>) -> Result<u32> {
        match self.rescue {
            Some(value) => Ok(value),
            None => Err(error),
        }
    }

    fn post(
        &self,
        store: &mut Vec<u32>,
        _: &Params,
        _: Vec<u32>,
        outputs: Vec<u32>,
    ) -> Result<Action> {
        *store = outputs;
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        self.max_retries
    }

    fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
}

/// A node whose first `failures` exec calls fail, with the given attempts and wait.
struct Flaky {
    failures: usize,
    max_retries: usize,
    wait: Pause,
    calls: AtomicUsize,
}

impl Flaky {
    fn new(failures: usize, max_retries: usize, wait: Pause) -> Self {
        Flaky { failures, max_retries, wait, calls: AtomicUsize::new(0) }
    }
}

impl Node<Vec<String>> for Flaky {
    type Prep = ();
    type Output = String;

    fn prep(&self, _: &Vec<String>, _: &Params) -> Result<()> {
        Ok(())
    }

    async fn exec(&self, _: &(), cx: Ctx<'_>) -> Result<String> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        match call < self.failures {
            true => Err(failure(format!("call {call} failed"))),
            false => Ok(format!("ok on attempt {}", cx.attempt())),
        }
    }

    fn post(&self, store: &mut Vec<String>, _: (), answer: String) -> Result<Action> {
        store.push(answer);
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        self.max_retries
    }

    fn wait(&self, _: &Error, cx: Ctx<'_>) -> Option<Duration> {
        Some(self.wait.after(cx.attempt()))
    }
}

/// A flow of the one node `node` named `name`.
fn single<N: Node<Vec<String>> + 'static>(name: &str, node: N) -> Flow<Vec<String>> {
    let mut flow = Flow::new();
    flow.add(name, node);
    flow
}

// ---------------------------------------------------------------------------------------------
// Step limit: a flat loop
// ---------------------------------------------------------------------------------------------

#[test]
fn loop_stops_at_the_limit_after_exactly_that_many_node_runs() {
    let (result, runs) = run_limited(&ping_pong(), 5);

    assert_eq!(step_limit(&result), (5, vec!["a", "b", "a", "b", "a"]));
    assert_eq!(runs, ["a", "b", "a", "b", "a"], "exactly 5 node runs, then none");
}

#[test]
fn long_loop_lists_only_the_last_eight_runs_oldest_first() {
    let (result, runs) = run_limited(&ping_pong(), 20);

    // Runs 13 to 20: run n is `a` when n is odd.
    assert_eq!(step_limit(&result), (20, vec!["a", "b", "a", "b", "a", "b", "a", "b"]));
    assert_eq!(runs.len(), 20);
}

#[test]
fn list_keeps_the_last_eight_in_order_across_the_ring_boundary() {
    let flow = triangle();
    let cases: [(usize, &[&str]); 5] = [
        (1, &["a"]),
        (7, &["a", "b", "c", "a", "b", "c", "a"]),
        (8, &["a", "b", "c", "a", "b", "c", "a", "b"]),
        // Run 1 drops out: runs 2 to 9.
        (9, &["b", "c", "a", "b", "c", "a", "b", "c"]),
        // Runs 3 to 10.
        (10, &["c", "a", "b", "c", "a", "b", "c", "a"]),
    ];
    for (limit, last) in cases {
        let (result, runs) = run_limited(&flow, limit);
        assert_eq!(step_limit(&result), (limit, last.to_vec()), "limit {limit}");
        assert_eq!(runs.len(), limit, "limit {limit}");
    }
}

#[test]
fn limit_zero_fails_before_any_node_runs_with_an_empty_list() {
    let (result, runs) = run_limited(&ping_pong(), 0);

    assert_eq!(step_limit(&result), (0, vec![]));
    assert_eq!(runs, Vec::<String>::new());
}

#[test]
fn limit_zero_fails_even_a_flow_of_one_node_and_reports_it_to_the_observer() {
    let events = Events::default();
    let failed = Mutex::new(Vec::new());
    let observer = |event: &Event<'_>| {
        events.record(event);
        if let Event::Failed { error, .. } = event {
            failed.lock().unwrap().push(error.to_string());
        }
    };
    let flow = single("only", Flaky::new(0, 1, Pause::None));
    let mut store = Vec::new();

    let result = smol::block_on(
        flow.run_with(&mut store, RunOptions::new().observer(&observer).max_steps(0)),
    );

    assert_eq!(step_limit(&result), (0, vec![]));
    assert_eq!(store, Vec::<String>::new());
    assert_eq!(events.lines(), Vec::<String>::new(), "no node started, so none ended");
    let failed = failed.into_inner().unwrap();
    assert_eq!(failed.len(), 1);
    assert!(failed[0].contains("limit of 0 steps"), "{failed:?}");
}

#[test]
fn flow_of_exactly_n_steps_succeeds_with_limit_n_and_fails_with_n_minus_one() {
    // pre 1, inner 2, inner/x 3, inner/y 4: four node runs.
    let mut inner = Flow::new();
    let x = inner.add("x", mark("inner/x"));
    let y = inner.add("y", mark("inner/y"));
    inner.then(x, y);
    let mut flow = Flow::new();
    let pre = flow.add("pre", mark("pre"));
    let inner = flow.add("inner", inner);
    flow.then(pre, inner);

    let (result, runs) = run_limited(&flow, 4);
    assert_eq!(result.unwrap(), Action::DEFAULT);
    assert_eq!(runs, ["pre", "inner/x", "inner/y"]);

    let (result, runs) = run_limited(&flow, 3);
    assert_eq!(step_limit(&result), (3, vec!["pre", "inner/x"]));
    assert_eq!(runs, ["pre", "inner/x"], "inner/y, node run 4, never ran");
}

#[test]
fn there_is_no_limit_by_default() {
    const STEPS: u64 = 100_000;
    let mut flow = Flow::new();
    let tick = flow.add(
        "tick",
        node_fn(|n: &mut u64, _: &Params| {
            *n += 1;
            Ok(if *n < STEPS { "again" } else { "done" }.into())
        }),
    );
    flow.edge(tick, "again", tick);
    flow.end(tick, "done");

    let mut n = 0;
    assert_eq!(smol::block_on(flow.run(&mut n)).unwrap(), "done");
    assert_eq!(n, STEPS);

    let mut n = 0;
    assert_eq!(smol::block_on(flow.run_with(&mut n, RunOptions::default())).unwrap(), "done");
    assert_eq!(n, STEPS);
}

#[test]
fn display_names_the_limit_lists_the_nodes_and_says_how_to_fix_it() {
    let (result, _) = run_limited(&ping_pong(), 5);
    let err = result.unwrap_err();

    let message = err.to_string();
    assert!(message.contains("limit of 5 steps"), "{message}");
    assert!(message.contains("`a` -> `b` -> `a` -> `b` -> `a`"), "{message}");
    assert!(message.contains("give it an exit"), "{message}");
    assert!(message.contains("raise the limit with `RunOptions::max_steps`"), "{message}");
    assert!(message.starts_with("the run reached its limit of 5 steps before starting `b`;"));
    assert_eq!(err.node(), "b", "the node the run did not start");
    assert!(err.source().is_none());
}

#[test]
fn display_lists_nested_nodes_by_their_paths() {
    let (result, _) = run_limited(&plan_work(), 7);
    let message = result.unwrap_err().to_string();

    assert!(message.contains("limit of 7 steps"), "{message}");
    assert!(message.contains("`plan` -> `work` -> `plan` -> `work/x`."), "{message}");
}

// ---------------------------------------------------------------------------------------------
// Step limit: nested flows and batch flows count toward the same run
// ---------------------------------------------------------------------------------------------

#[test]
fn nested_flow_nodes_count_and_are_listed_under_the_flow() {
    let flow = plan_work();
    let cases: [(usize, &[&str], &[&str]); 5] = [
        // Trips at the outer level, as `work` (run 6) would start.
        (5, &["plan", "work", "plan"], &["plan", "work/x", "work/y", "plan"]),
        // Trips inside `work` before its first node: the running `work` is not listed.
        (6, &["plan", "work", "plan"], &["plan", "work/x", "work/y", "plan"]),
        // Trips at work/y (run 8): the outer flow's completed runs, then the inner one's.
        (7, &["plan", "work", "plan", "work/x"], &["plan", "work/x", "work/y", "plan", "work/x"]),
        // Trips at work/y (run 20): outer runs plan 1 … plan 17 are nine; with work/x, the
        // last eight.
        (
            19,
            &["plan", "work", "plan", "work", "plan", "work", "plan", "work/x"],
            &[
                "plan", "work/x", "work/y", "plan", "work/x", "work/y", "plan", "work/x", "work/y",
                "plan", "work/x", "work/y", "plan", "work/x",
            ],
        ),
        // Trips at plan (run 21): ten outer runs completed, the last eight listed.
        (
            20,
            &["plan", "work", "plan", "work", "plan", "work", "plan", "work"],
            &[
                "plan", "work/x", "work/y", "plan", "work/x", "work/y", "plan", "work/x", "work/y",
                "plan", "work/x", "work/y", "plan", "work/x", "work/y",
            ],
        ),
    ];
    for (limit, last, runs) in cases {
        let (result, store) = run_limited(&flow, limit);
        assert_eq!(step_limit(&result), (limit, last.to_vec()), "limit {limit}");
        assert_eq!(store, runs, "limit {limit}");
    }
}

#[test]
fn a_loop_deep_inside_nested_flows_lists_each_level_under_its_path() {
    // top → mid, where mid is `m → low` and low is `z ⇄ z`. Node runs: top 1, mid 2, mid/m 3,
    // mid/low 4, mid/low/z 5, 6, 7, …
    let mut low = Flow::new();
    let z = low.add(
        "z",
        node_fn(|runs: &mut Vec<String>, _: &Params| {
            runs.push("mid/low/z".into());
            Ok("again".into())
        }),
    );
    low.edge(z, "again", z);
    let mut mid = Flow::new();
    let m = mid.add("m", mark("mid/m"));
    let low = mid.add("low", low);
    mid.then(m, low);
    let mut flow = Flow::new();
    let top = flow.add("top", mark("top"));
    let mid = flow.add("mid", mid);
    flow.then(top, mid);

    let (result, runs) = run_limited(&flow, 6);
    assert_eq!(step_limit(&result), (6, vec!["top", "mid/m", "mid/low/z", "mid/low/z"]));
    assert_eq!(runs, ["top", "mid/m", "mid/low/z", "mid/low/z"]);

    // Runs 5 to 12 are all `z`: the outer levels' runs fall out of the last eight.
    let (result, runs) = run_limited(&flow, 12);
    assert_eq!(step_limit(&result), (12, vec!["mid/low/z"; 8]));
    assert_eq!(runs.len(), 2 + 8);
}

#[test]
fn batch_flow_sub_runs_count_their_nodes() {
    // start → fan, where fan runs `job → check` once per i in 0..3. Node runs: start 1, fan 2,
    // fan[0]/job 3, fan[0]/check 4, fan[1]/job 5, fan[1]/check 6, fan[2]/job 7, fan[2]/check 8.
    let mut inner = Flow::new();
    let job = inner.add(
        "job",
        node_fn(|runs: &mut Vec<String>, p: &Params| {
            runs.push(format!("fan[{}]/job", p.int("i")?));
            Ok(Action::DEFAULT)
        }),
    );
    let check = inner.add(
        "check",
        node_fn(|runs: &mut Vec<String>, p: &Params| {
            runs.push(format!("fan[{}]/check", p.int("i")?));
            Ok(Action::DEFAULT)
        }),
    );
    inner.then(job, check);
    let fan = BatchFlow::new(inner, |_: &Vec<String>, _: &Params| {
        Ok((0..3).map(|i| Params::new().with("i", i)).collect())
    });
    let mut flow = Flow::new();
    let start = flow.add("start", mark("start"));
    let fan = flow.add("fan", fan);
    flow.then(start, fan);

    let (result, runs) = run_limited(&flow, 8);
    assert_eq!(result.unwrap(), Action::DEFAULT);
    assert_eq!(runs.len(), 7, "every node but the batch flow itself records its run");

    let (result, runs) = run_limited(&flow, 7);
    let (limit, last) = step_limit(&result);
    assert_eq!(limit, 7);
    assert_eq!(
        runs,
        ["start", "fan[0]/job", "fan[0]/check", "fan[1]/job", "fan[1]/check", "fan[2]/job"]
    );
    // As documented: the outer flow's runs, then the sub-run that reached the limit; earlier
    // sub-runs are not listed, nor is the running batch flow itself.
    assert_eq!(last, ["start", "fan[2]/job"]);

    let (result, runs) = run_limited(&flow, 2);
    assert_eq!(step_limit(&result), (2, vec!["start"]));
    assert_eq!(runs, ["start"], "the batch flow counts once before any sub-run's node");
}

// ---------------------------------------------------------------------------------------------
// Timeouts
// ---------------------------------------------------------------------------------------------

#[test]
fn exec_that_never_finishes_times_out_on_every_attempt() {
    let probe = Arc::new(Probe::default());
    let flow = single("hang", Hang { max_retries: 3, ..Hang::new(&probe) });
    let mut store = Vec::new();

    let started = Instant::now();
    let err = smol::block_on(flow.run(&mut store)).unwrap_err();
    let elapsed = started.elapsed();

    assert_eq!(node_failed(&err), ("hang", Phase::Exec, 3));
    assert_eq!(timed_out_source(&err), MS(5));
    assert_eq!(err.source().unwrap().to_string(), "exec timed out after 5ms");
    assert_eq!(err.to_string(), "node `hang` failed in exec after 3 attempts");
    assert_eq!(
        probe.log(),
        [
            "exec #0 at hang",
            "exec #1 at hang",
            "exec #2 at hang",
            "fallback after #2: TimedOut(5ms)"
        ]
    );
    assert_eq!(store, Vec::<String>::new(), "post must not run");
    assert!(elapsed >= MS(15), "three 5 ms timeouts took only {elapsed:?}");
}

#[test]
fn timed_out_attempts_are_retried_then_given_to_the_fallback() {
    let probe = Arc::new(Probe::default());
    let node = Hang {
        hang_on: vec![0, 1],
        max_retries: 2,
        wait: Pause::Fixed(MS(1)),
        rescue: Some("fallback answer"),
        ..Hang::new(&probe)
    };
    let flow = single("hang", node);
    let events = Events::default();
    let observer = |event: &Event<'_>| events.record(event);
    let mut store = Vec::new();

    let action =
        smol::block_on(flow.run_with(&mut store, RunOptions::new().observer(&observer))).unwrap();

    assert_eq!(action, Action::DEFAULT);
    assert_eq!(store, ["fallback answer"], "post receives the fallback's value");
    assert_eq!(
        events.lines(),
        ["retry hang #0 in 1ms: TimedOut(5ms)", "fallback hang: TimedOut(5ms)", "end hang after 2"]
    );
    assert_eq!(
        probe.log(),
        ["exec #0 at hang", "exec #1 at hang", "fallback after #1: TimedOut(5ms)"]
    );
}

#[test]
fn attempt_after_timeouts_that_answers_in_time_is_used() {
    let probe = Arc::new(Probe::default());
    let node = Hang {
        hang_on: vec![0, 1],
        max_retries: 3,
        rescue: Some("fallback answer"),
        ..Hang::new(&probe)
    };
    let flow = single("hang", node);
    let events = Events::default();
    let observer = |event: &Event<'_>| events.record(event);
    let mut store = Vec::new();

    smol::block_on(flow.run_with(&mut store, RunOptions::new().observer(&observer))).unwrap();

    assert_eq!(store, ["answer on attempt 2"]);
    assert_eq!(
        events.lines(),
        [
            "retry hang #0 in 0ns: TimedOut(5ms)",
            "retry hang #1 in 0ns: TimedOut(5ms)",
            "end hang after 3",
        ]
    );
    assert_eq!(probe.log(), ["exec #0 at hang", "exec #1 at hang", "exec #2 at hang"]);
}

#[test]
fn attempt_that_finishes_within_the_timeout_is_unaffected() {
    let probe = Arc::new(Probe::default());
    let node = Hang { hang_on: vec![], max_retries: 3, ..Hang::new(&probe) };
    let flow = single("quick", node);
    let events = Events::default();
    let observer = |event: &Event<'_>| events.record(event);
    let mut store = Vec::new();

    smol::block_on(flow.run_with(&mut store, RunOptions::new().observer(&observer))).unwrap();

    assert_eq!(store, ["answer on attempt 0"]);
    assert_eq!(events.lines(), ["end quick after 1"]);
    assert_eq!(probe.log(), ["exec #0 at quick"]);
}

#[test]
fn zero_timeout_is_invalid_config_before_prep_runs() {
    let probe = Arc::new(Probe::default());
    let node = Hang { timeout: Some(Duration::ZERO), hang_on: vec![], ..Hang::new(&probe) };
    let mut outer = Flow::new();
    outer.add("outer", single("hang", node));
    let mut store = Vec::new();

    let err = smol::block_on(outer.run(&mut store)).unwrap_err();

    match &err {
        FlowError::InvalidConfig { node, message, .. } => {
            assert_eq!(node, "outer/hang");
            assert!(message.starts_with("node `outer/hang`: timeout() is zero"), "{message}");
            assert_eq!(&err.to_string(), message);
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
    assert!(err.to_string().starts_with("node `outer/hang`: timeout() is zero"), "{err}");
    assert_eq!(probe.preps(), 0, "prep must not run");
    assert_eq!(probe.log(), Vec::<String>::new(), "exec must not run");
    assert_eq!(store, Vec::<String>::new());
}

#[test]
fn batch_node_zero_timeout_is_invalid_config_naming_the_node_before_prep() {
    let probe = Arc::new(Probe::default());
    let mut flow = Flow::new();
    flow.add("items", Items { timeout: Some(Duration::ZERO), ..Items::new(&probe) });

    let err = smol::block_on(flow.run(&mut Vec::new())).unwrap_err();

    assert!(matches!(&err, FlowError::InvalidConfig { node, .. } if node == "items"), "{err:?}");
    assert_eq!(probe.preps(), 0);
    assert_eq!(probe.log(), Vec::<String>::new());
}

#[test]
fn batch_node_times_out_per_item_and_names_the_item() {
    let probe = Arc::new(Probe::default());
    let mut flow = Flow::new();
    flow.add("items", Items::new(&probe));
    let mut store = vec![7];

    let err = smol::block_on(flow.run(&mut store)).unwrap_err();

    assert_eq!(node_failed(&err), ("items[1]", Phase::Exec, 1));
    assert_eq!(timed_out_source(&err), MS(5));
    assert_eq!(err.to_string(), "node `items[1]` failed in exec after 1 attempt");
    // One item after another: item 2 never starts once item 1 has failed.
    assert_eq!(probe.log(), ["exec items[0] #0", "exec items[1] #0"]);
    assert_eq!(store, [7], "post must not run");
}

#[test]
fn concurrent_batch_item_that_times_out_retries_and_falls_back_on_its_own() {
    let probe = Arc::new(Probe::default());
    let node =
        Items { max_retries: 2, max_in_flight: usize::MAX, rescue: Some(99), ..Items::new(&probe) };
    let mut flow = Flow::new();
    flow.add("items", node);
    let events = Events::default();
    let observer = |event: &Event<'_>| events.record(event);
    let mut store = Vec::new();

    smol::block_on(flow.run_with(&mut store, RunOptions::new().observer(&observer))).unwrap();

    assert_eq!(store, [0, 99, 20], "the fallback's value takes item 1's place");
    assert_eq!(
        events.lines(),
        [
            "retry items[1] #0 in 0ns: TimedOut(5ms)",
            "fallback items[1]: TimedOut(5ms)",
            "end items after 4",
        ]
    );
    let mut log = probe.log();
    log.sort();
    assert_eq!(
        log,
        ["exec items[0] #0", "exec items[1] #0", "exec items[1] #1", "exec items[2] #0"]
    );
}

// ---------------------------------------------------------------------------------------------
// Backoff: the schedule
// ---------------------------------------------------------------------------------------------

#[test]
fn exponential_doubles_from_first_up_to_the_cap() {
    let backoff = Backoff::new(MS(100), MS(1_000));

    let delays: Vec<Duration> = (0..8).map(|attempt| backoff.delay(attempt)).collect();

    assert_eq!(delays, [100, 200, 400, 800, 1_000, 1_000, 1_000, 1_000].map(MS));
}

#[test]
fn exponential_gives_the_cap_for_huge_attempt_numbers() {
    let backoff = Backoff::new(MS(100), MS(1_000));
    for attempt in [31, 32, 33, 40, 63, 64, 65, 1_000, u32::MAX as usize, usize::MAX] {
        assert_eq!(backoff.delay(attempt), MS(1_000), "attempt {attempt}");
    }
    // The largest first pause and cap: still no overflow.
    let widest = Backoff::new(Duration::from_secs(1), Duration::MAX);
    assert_eq!(widest.delay(10), Duration::from_secs(1_024));
    for attempt in [64, 1_000, usize::MAX] {
        assert_eq!(widest.delay(attempt), Duration::MAX, "attempt {attempt}");
    }
}

/// The delays of the `Retry` events of a run of `node` (named "n"), which must fail on every
/// attempt, and the attempts it made.
fn retry_delays<N: Node<Vec<String>> + 'static>(node: N) -> (Vec<(usize, Duration)>, usize) {
    let flow = single("n", node);
    let retries = Mutex::new(Vec::new());
    let observer = |event: &Event<'_>| {
        if let Event::Retry { attempt, delay, .. } = event {
            retries.lock().unwrap().push((*attempt, *delay));
        }
    };
    let err = smol::block_on(flow.run_with(&mut Vec::new(), RunOptions::new().observer(&observer)))
        .unwrap_err();
    let (_, _, attempts) = node_failed(&err);
    (retries.into_inner().unwrap(), attempts)
}

#[test]
fn fixed_wait_is_the_same_after_every_attempt() {
    // A fixed wait is a hook that returns the same pause whatever the attempt.
    let pause = MS(2);
    let (delays, attempts) = retry_delays(Flaky::new(usize::MAX, 4, Pause::Fixed(pause)));
    assert_eq!(delays, [(0, pause), (1, pause), (2, pause)]);
    assert_eq!(attempts, 4);
    // A backoff whose first pause is its cap is the same fixed pause, at any attempt.
    let pause = MS(250);
    let fixed = Backoff::new(pause, pause);
    for attempt in [0, 1, 2, 3, 10, 31, 32, 1_000, usize::MAX] {
        assert_eq!(fixed.delay(attempt), pause, "attempt {attempt}");
    }
}

/// A node that fails on every attempt, with `max_retries` attempts and the default `wait`.
struct Stubborn(usize);

impl Node<Vec<String>> for Stubborn {
    type Prep = ();
    type Output = ();

    fn prep(&self, _: &Vec<String>, _: &Params) -> Result<()> {
        Ok(())
    }

    async fn exec(&self, _: &(), cx: Ctx<'_>) -> Result<()> {
        Err(failure(format!("attempt {} failed", cx.attempt())))
    }

    fn post(&self, _: &mut Vec<String>, _: (), _: ()) -> Result<Action> {
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        self.0
    }
}

#[test]
fn the_default_wait_retries_at_once_after_every_attempt() {
    let (delays, attempts) = retry_delays(Stubborn(5));
    assert_eq!(delays, [0, 1, 2, 3].map(|attempt| (attempt, Duration::ZERO)));
    assert_eq!(attempts, 5);
    // No pause means no timer: every attempt is made within the run's first poll.
    let flow = single("n", Stubborn(5));
    let mut store = Vec::new();
    let mut run = pin!(flow.run(&mut store));
    let polled = run.as_mut().poll(&mut Context::from_waker(Waker::noop()));
    assert!(
        matches!(&polled, Poll::Ready(Err(err)) if node_failed(err) == ("n", Phase::Exec, 5)),
        "{polled:?}"
    );
}

#[test]
fn exponential_with_first_above_the_cap_always_gives_the_cap() {
    let backoff = Backoff::new(MS(500), MS(300));
    for attempt in [0, 1, 2, 7, 32, 1_000, usize::MAX] {
        assert_eq!(backoff.delay(attempt), MS(300), "attempt {attempt}");
    }
    let fixed = Backoff::new(MS(300), MS(300));
    for attempt in [0, 1, 2, 7, 32, 1_000, usize::MAX] {
        assert_eq!(fixed.delay(attempt), MS(300), "attempt {attempt}");
    }
}

#[test]
#[should_panic(expected = "Backoff::new(first, cap) with a zero `first` or `cap` never pauses")]
fn exponential_from_zero_is_refused() {
    // Doubling zero never backs off: a mistake, not a schedule.
    let _ = Backoff::new(Duration::ZERO, MS(1_000));
}

#[test]
#[should_panic(expected = "Backoff::new(first, cap) with a zero `first` or `cap` never pauses")]
fn exponential_capped_at_zero_is_refused() {
    let _ = Backoff::new(MS(100), Duration::ZERO);
}

#[test]
fn exponential_from_the_smallest_pause_backs_off() {
    let backoff = Backoff::new(Duration::from_nanos(1), MS(1_000));
    let pauses: Vec<Duration> = (0..4).map(|attempt| backoff.delay(attempt)).collect();
    assert_eq!(pauses, [1, 2, 4, 8].map(Duration::from_nanos));
}

#[test]
fn exponential_keeps_doubling_past_attempt_31_below_a_high_cap() {
    // 1 µs × 2^32 = 4294.967296 s, still under a two-hour cap: attempts go up to 1000.
    let backoff = Backoff::new(Duration::from_micros(1), Duration::from_secs(7_200));
    assert_eq!(backoff.delay(32), Duration::from_micros(1 << 32));
    assert_eq!(backoff.delay(33), Duration::from_secs(7_200));
}

#[test]
fn step_limit_message_reads_well_at_the_edges() {
    let (zero, _) = run_limited(&ping_pong(), 0);
    assert_eq!(
        zero.unwrap_err().to_string(),
        "the run reached its limit of 0 steps before starting `a`, before any node ran. If that \
         is a loop that should end, give it an exit; else raise the limit with \
         `RunOptions::max_steps`"
    );
    let (one, _) = run_limited(&ping_pong(), 1);
    assert!(one.unwrap_err().to_string().starts_with(
        "the run reached its limit of 1 step before starting `b`; the last nodes run were `a`. \
         If that is a loop"
    ));
    // Step 1 is the nested flow `outer`, still running (so not listed) when its first node
    // would be step 2: a node ran, none finished.
    let mut outer = Flow::new();
    outer.add("outer", ping_pong());
    let (nested, runs) = run_limited(&outer, 1);
    assert_eq!(
        nested.unwrap_err().to_string(),
        "the run reached its limit of 1 step before starting `outer/a`. If that is a loop that \
         should end, give it an exit; else raise the limit with `RunOptions::max_steps`"
    );
    assert!(runs.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Backoff: the run uses the schedule
// ---------------------------------------------------------------------------------------------

#[test]
fn retries_carry_the_exponential_delays() {
    let wait = Pause::Backoff(Backoff::new(MS(1), MS(3)));
    let flow = single("flaky", Flaky::new(4, 5, wait));
    let retries = Mutex::new(Vec::new());
    let observer = |event: &Event<'_>| match event {
        Event::Retry { node, attempt, delay, .. } => {
            retries.lock().unwrap().push((node.to_string(), *attempt, *delay))
        }
        Event::Fallback { .. } => panic!("no fallback: attempt 4 succeeds"),
        _ => {}
    };
    let mut store = Vec::new();

    let started = Instant::now();
    smol::block_on(flow.run_with(&mut store, RunOptions::new().observer(&observer))).unwrap();
    let elapsed = started.elapsed();

    let retries = retries.into_inner().unwrap();
    let seen: Vec<(usize, Duration)> = retries.iter().map(|(_, a, d)| (*a, *d)).collect();
    assert_eq!(seen, [(0, MS(1)), (1, MS(2)), (2, MS(3)), (3, MS(3))]);
    assert!(retries.iter().all(|(node, ..)| node == "flaky"), "{retries:?}");
    assert_eq!(store, ["ok on attempt 4"]);
    let total: Duration = seen.iter().map(|(_, d)| *d).sum();
    assert!(elapsed >= total, "waits of {total:?} in all took only {elapsed:?}");
}

#[test]
fn no_wait_after_the_last_attempt_only_the_fallback() {
    let wait = Pause::Backoff(Backoff::new(MS(1), MS(3)));
    let flow = single("flaky", Flaky::new(usize::MAX, 3, wait));
    let events = Events::default();
    let observer = |event: &Event<'_>| events.record(event);

    let err = smol::block_on(flow.run_with(&mut Vec::new(), RunOptions::new().observer(&observer)))
        .unwrap_err();

    assert_eq!(node_failed(&err), ("flaky", Phase::Exec, 3));
    assert_eq!(
        events.lines(),
        [
            "retry flaky #0 in 1ms: call 0 failed",
            "retry flaky #1 in 2ms: call 1 failed",
            "fallback flaky: call 2 failed",
        ]
    );
}

/// Batch items whose first `failures` calls each fail, one after another, with an exponential
/// wait: every item starts the schedule over.
struct FlakyItems {
    failures: usize,
    calls: Mutex<Vec<usize>>,
}

impl BatchNode<Vec<String>> for FlakyItems {
    type Item = usize;
    type Output = String;

    fn prep(&self, _: &Vec<String>, _: &Params) -> Result<Vec<usize>> {
        Ok(vec![0, 1])
    }

    async fn exec(&self, item: &usize, cx: Ctx<'_>) -> Result<String> {
        let call = {
            let mut calls = self.calls.lock().unwrap();
            calls[*item] += 1;
            calls[*item] - 1
        };
        match call < self.failures {
            true => Err(failure(format!("item {item} call {call} failed"))),
            false => Ok(format!("item {item} ok on attempt {}", cx.attempt())),
        }
    }

    fn post(
        &self,
        store: &mut Vec<String>,
        _: &Params,
        _: Vec<usize>,
        outputs: Vec<String>,
    ) -> Result<Action> {
        *store = outputs;
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        4
    }

    fn wait(&self, _: &Error, cx: Ctx<'_>) -> Option<Duration> {
        Some(Backoff::new(MS(1), MS(8)).delay(cx.attempt()))
    }
}

#[test]
fn batch_items_each_follow_the_schedule_from_the_start() {
    let mut flow = Flow::new();
    flow.add("batch", FlakyItems { failures: 3, calls: Mutex::new(vec![0, 0]) });
    let events = Events::default();
    let observer = |event: &Event<'_>| events.record(event);
    let mut store = Vec::new();

    smol::block_on(flow.run_with(&mut store, RunOptions::new().observer(&observer))).unwrap();

    assert_eq!(
        events.lines(),
        [
            "retry batch[0] #0 in 1ms: item 0 call 0 failed",
            "retry batch[0] #1 in 2ms: item 0 call 1 failed",
            "retry batch[0] #2 in 4ms: item 0 call 2 failed",
            "retry batch[1] #0 in 1ms: item 1 call 0 failed",
            "retry batch[1] #1 in 2ms: item 1 call 1 failed",
            "retry batch[1] #2 in 4ms: item 1 call 2 failed",
            "end batch after 8",
        ]
    );
    assert_eq!(store, ["item 0 ok on attempt 3", "item 1 ok on attempt 3"]);
}

#[test]
fn a_step_limit_inside_a_fan_out_names_where_the_run_was() {
    // Step 1 is `par`; its first branch would be step 2. No node has finished.
    let leaf = || node_fn(|_: &mut u32, _| Ok(Action::DEFAULT));
    let mut flow = Flow::new();
    flow.add("par", Parallel::new().branch("a", leaf()).branch("b", leaf()));
    let err = smol::block_on(flow.run_with(&mut 0, RunOptions::new().max_steps(1))).unwrap_err();
    assert!(
        matches!(&err, FlowError::StepLimit { limit: 1, last, next, .. } if last.is_empty() && next == "par/a")
    );
    assert!(
        err.to_string()
            .starts_with("the run reached its limit of 1 step before starting `par/a`. If"),
        "{err}"
    );

    // The same in a BatchAsyncFlow: the first sub-run's node.
    let mut inner = Flow::new();
    inner.add("job", leaf());
    let mut flow = Flow::new();
    flow.add("fan", BatchAsyncFlow::new(inner, |_: &u32, _: &Params| Ok(vec![Params::new(); 3])));
    let err = smol::block_on(flow.run_with(&mut 0, RunOptions::new().max_steps(1))).unwrap_err();
    assert_eq!(err.node(), "fan[0]/job");
}

#[test]
fn a_step_limit_after_finished_sub_runs_does_not_claim_that_none_finished() {
    // Sub-run 0 runs `n0` and `n1` (steps 2 and 3); sub-run 1's `n0` would be step 4.
    let mut inner = Flow::new();
    let n0 = inner.add(
        "n0",
        node_fn(|n: &mut u32, _| {
            *n += 1;
            Ok(Action::DEFAULT)
        }),
    );
    let n1 = inner.add(
        "n1",
        node_fn(|n: &mut u32, _| {
            *n += 1;
            Ok(Action::DEFAULT)
        }),
    );
    inner.then(n0, n1);
    let mut flow = Flow::new();
    flow.add("fan", BatchFlow::new(inner, |_: &u32, _: &Params| Ok(vec![Params::new(); 3])));
    let mut n = 0;
    let err = smol::block_on(flow.run_with(&mut n, RunOptions::new().max_steps(3))).unwrap_err();
    assert_eq!(n, 2);
    assert_eq!(
        err.to_string(),
        "the run reached its limit of 3 steps before starting `fan[1]/n0`. If that is a loop \
         that should end, give it an exit; else raise the limit with `RunOptions::max_steps`"
    );
}
