//! Observing a run: the exact sequence of events an `Observer` sees — `RunStart`,
//! each node's start and end (a nested flow's nodes between the flow's own), retries with the
//! failed attempt's number, error and delay, fallbacks, custom events from `Ctx::emit`, and
//! exactly one terminal event: `Finished`, `Failed` (a failing node has no end) or `Cancelled`
//! (from the drop of a run that was polled, or a panic; a run never polled reports nothing).
//! Concurrent sub-runs, parallel branches and two whole runs share one observer with distinct
//! paths; a step-limited run fails with its `StepLimit`; and `Trace` (the recipe in
//! `examples/support/trace.rs`) counts runs and attempts per node, in the order the nodes first
//! ended.

use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::{Pin, pin};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::future;
use miniflow::{
    Action, Backoff, BatchAsyncFlow, BatchFlow, BatchNode, Ctx, Error, Event, Flow, FlowError,
    Node, Observer, Parallel, Params, Result, RunOptions, node_fn,
};

mod common;
use common::*;

#[path = "../examples/support/trace.rs"]
mod trace;
use trace::Trace;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// An observer that records every event as a `line`.
#[derive(Default)]
struct Log(Mutex<Vec<String>>);

impl Log {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

impl Observer for Log {
    fn event(&self, event: &Event<'_>) {
        self.0.lock().unwrap().push(common::line(event));
    }
}

/// Runs `flow` on `store` with a fresh `Log`; returns the result and the lines.
fn observe<S: Send>(flow: &Flow<S>, store: &mut S) -> (Result<Action, FlowError>, Vec<String>) {
    observe_with(flow, store, RunOptions::new())
}

/// As `observe`, with `options` (its observer is replaced by the log).
fn observe_with<S: Send>(
    flow: &Flow<S>,
    store: &mut S,
    options: RunOptions<'_, S>,
) -> (Result<Action, FlowError>, Vec<String>) {
    let log = Log::default();
    let result = smol::block_on(flow.run_with(store, options.observer(&log)));
    (result, log.lines())
}

/// How many of `lines` are terminal events.
fn terminals(lines: &[String]) -> usize {
    let terminal =
        |l: &&String| l.starts_with("finished ") || l.starts_with("failed ") || *l == "cancelled";
    lines.iter().filter(terminal).count()
}

/// Polls `fut` once with a waker that does nothing: nothing but this call can make it progress.
fn poll_once<F: Future>(fut: Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

/// A node whose first `failures` exec calls fail with "call <n> failed" (counted by the node),
/// making up to `max_retries` attempts with `wait` between them (none: it retries at once).
/// Its fallback returns the error, or `rescue` if set.
struct Flaky {
    failures: usize,
    max_retries: usize,
    wait: Option<Backoff>,
    rescue: Option<&'static str>,
    calls: AtomicUsize,
}

impl Flaky {
    fn new(failures: usize, max_retries: usize) -> Self {
        Flaky { failures, max_retries, wait: None, rescue: None, calls: AtomicUsize::new(0) }
    }

    /// Pauses as `wait` says after each failed attempt.
    fn waiting(self, wait: Backoff) -> Self {
        Flaky { wait: Some(wait), ..self }
    }

    /// Pauses `pause` after every failed attempt.
    fn waiting_fixed(self, pause: Duration) -> Self {
        // A backoff capped at its first pause never doubles it.
        self.waiting(Backoff::new(pause, pause))
    }

    fn rescued_with(self, value: &'static str) -> Self {
        Flaky { rescue: Some(value), ..self }
    }
}

impl<S> Node<S> for Flaky {
    type Prep = ();
    type Output = String;

    fn prep(&self, _: &S, _: &Params) -> Result<()> {
        Ok(())
    }

    async fn exec(&self, _: &(), _: Ctx<'_>) -> Result<String> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if call < self.failures {
            Err(failure(format!("call {call} failed")))
        } else {
            Ok(format!("call {call} worked"))
        }
    }

    async fn exec_fallback(&self, _: &(), error: Error, _: Ctx<'_>) -> Result<String> {
        match self.rescue {
            Some(value) => Ok(value.to_string()),
            None => Err(error),
        }
    }

    fn post(&self, _: &mut S, _: (), _: String) -> Result<Action> {
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        self.max_retries
    }

    fn wait(&self, _: &Error, cx: Ctx<'_>) -> Option<Duration> {
        Some(self.wait.map_or(Duration::ZERO, |wait| wait.delay(cx.attempt())))
    }
}

/// A node whose exec emits each of its tokens as a `"token"` event, in order.
struct Talk(&'static [&'static str]);

impl<S> Node<S> for Talk {
    type Prep = ();
    type Output = ();

    fn prep(&self, _: &S, _: &Params) -> Result<()> {
        Ok(())
    }

    async fn exec(&self, _: &(), cx: Ctx<'_>) -> Result<()> {
        for token in self.0 {
            cx.emit("token", *token);
        }
        Ok(())
    }

    fn post(&self, _: &mut S, _: (), _: ()) -> Result<Action> {
        Ok(Action::DEFAULT)
    }
}

/// A node whose exec gives way `yields` times (so that concurrent work interleaves), then
/// returns `action`.
struct Yielder {
    yields: usize,
    action: &'static str,
}

fn yielder(yields: usize) -> Yielder {
    Yielder { yields, action: "default" }
}

impl<S> Node<S> for Yielder {
    type Prep = ();
    type Output = ();

    fn prep(&self, _: &S, _: &Params) -> Result<()> {
        Ok(())
    }

    async fn exec(&self, _: &(), _: Ctx<'_>) -> Result<()> {
        yield_times(self.yields).await;
        Ok(())
    }

    fn post(&self, _: &mut S, _: (), _: ()) -> Result<Action> {
        Ok(self.action.into())
    }
}

/// A node whose exec never finishes (unless `timeout` cuts it short); its fallback returns a
/// value, so a timed-out run still ends.
struct Stuck {
    max_retries: usize,
    timeout: Option<Duration>,
}

impl<S> Node<S> for Stuck {
    type Prep = ();
    type Output = ();

    fn prep(&self, _: &S, _: &Params) -> Result<()> {
        Ok(())
    }

    async fn exec(&self, _: &(), _: Ctx<'_>) -> Result<()> {
        std::future::pending::<()>().await;
        Ok(())
    }

    async fn exec_fallback(&self, _: &(), _: Error, _: Ctx<'_>) -> Result<()> {
        Ok(())
    }

    fn post(&self, _: &mut S, _: (), _: ()) -> Result<Action> {
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        self.max_retries
    }

    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
}

fn stuck() -> Stuck {
    Stuck { max_retries: 1, timeout: None }
}

/// A node whose `prep` or `post` fails (with "prep broke" / "post broke").
struct Broken {
    in_prep: bool,
}

impl<S> Node<S> for Broken {
    type Prep = ();
    type Output = ();

    fn prep(&self, _: &S, _: &Params) -> Result<()> {
        if self.in_prep { Err(failure("prep broke")) } else { Ok(()) }
    }

    async fn exec(&self, _: &(), _: Ctx<'_>) -> Result<()> {
        Ok(())
    }

    fn post(&self, _: &mut S, _: (), _: ()) -> Result<Action> {
        Err(failure("post broke"))
    }
}

/// A node whose exec panics.
struct Panics;

impl<S> Node<S> for Panics {
    type Prep = ();
    type Output = ();

    fn prep(&self, _: &S, _: &Params) -> Result<()> {
        Ok(())
    }

    async fn exec(&self, _: &(), _: Ctx<'_>) -> Result<()> {
        panic!("exec blew up")
    }

    fn post(&self, _: &mut S, _: (), _: ()) -> Result<Action> {
        Ok(Action::DEFAULT)
    }
}

/// A batch node over the items `"a"`, `"b"`, `"c"`, one after another: each exec emits an
/// `"item"` event with its item; item `"b"`'s first `b_failures` calls fail with "b failed".
/// Two attempts per item; the fallback returns the error.
struct Items {
    b_failures: usize,
    b_calls: AtomicUsize,
}

fn items(b_failures: usize) -> Items {
    Items { b_failures, b_calls: AtomicUsize::new(0) }
}

impl<S> BatchNode<S> for Items {
    type Item = &'static str;
    type Output = ();

    fn prep(&self, _: &S, _: &Params) -> Result<Vec<&'static str>> {
        Ok(vec!["a", "b", "c"])
    }

    async fn exec(&self, item: &&'static str, cx: Ctx<'_>) -> Result<()> {
        cx.emit("item", *item);
        if *item == "b" && self.b_calls.fetch_add(1, Ordering::SeqCst) < self.b_failures {
            return Err(failure("b failed"));
        }
        Ok(())
    }

    fn post(&self, _: &mut S, _: &Params, _: Vec<&'static str>, _: Vec<()>) -> Result<Action> {
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        2
    }
}

/// A node that adds 1 to the store.
fn bump() -> impl Node<u32> {
    node_fn(|n: &mut u32, _| {
        *n += 1;
        Ok(Action::DEFAULT)
    })
}

/// A flow that runs `fetch`, then a nested flow `inner` holding `x`, then `count` and `check`
/// three times (`check` loops back to `count` until the store reaches 3).
fn looping_flow(fetch: Flaky) -> Flow<u32> {
    let mut inner = Flow::new();
    inner.add("x", node_fn(|_: &mut u32, _| Ok(Action::DEFAULT)));
    let mut flow = Flow::new();
    let fetch = flow.add("fetch", fetch);
    let inner = flow.add("inner", inner);
    let count = flow.add("count", bump());
    let check = flow
        .add("check", node_fn(|n: &mut u32, _| Ok(if *n < 3 { "again" } else { "done" }.into())));
    flow.then(fetch, inner);
    flow.then(inner, count);
    flow.then(count, check);
    flow.edge(check, "again", count);
    flow.end(check, "done");
    flow
}

// ---------------------------------------------------------------------------------------------
// The sequence of a successful run
// ---------------------------------------------------------------------------------------------

#[test]
fn nested_flow_with_a_retry_reports_every_event_in_order() {
    // top: outer -> save; outer: load -> inner; inner: fetch (fails once, 2 attempts, 1 ms).
    let mut inner = Flow::new();
    inner.add("fetch", Flaky::new(1, 2).waiting_fixed(Duration::from_millis(1)));
    let mut outer = Flow::new();
    let load = outer.add("load", bump());
    let nested = outer.add("inner", inner);
    outer.then(load, nested);
    let mut flow = Flow::new();
    let outer = flow.add("outer", outer);
    let save = flow.add("save", node_fn(|_: &mut u32, _| Ok("done".into())));
    flow.then(outer, save);
    flow.end(save, "done");

    let mut n = 0;
    let (result, lines) = observe(&flow, &mut n);
    assert_eq!(result.unwrap(), "done");
    assert_eq!(
        lines,
        [
            "start",
            "node+ outer",
            "node+ outer/load",
            "node- outer/load default 1",
            "node+ outer/inner",
            "node+ outer/inner/fetch",
            "retry outer/inner/fetch#0 call 0 failed 1ms",
            "node- outer/inner/fetch default 2",
            "node- outer/inner default 0",
            "node- outer default 0",
            "node+ save",
            "node- save done 1",
            "finished done",
        ]
    );
}

#[test]
fn each_retry_reports_the_attempt_that_failed_and_the_backoff_before_the_next() {
    let wait = Backoff::new(Duration::from_millis(1), Duration::from_millis(10));
    let mut flow = Flow::new();
    flow.add("fetch", Flaky::new(2, 3).waiting(wait));

    let (result, lines) = observe(&flow, &mut 0u32);
    result.unwrap();
    assert_eq!(
        lines,
        [
            "start",
            "node+ fetch",
            "retry fetch#0 call 0 failed 1ms",
            "retry fetch#1 call 1 failed 2ms",
            "node- fetch default 3",
            "finished default",
        ]
    );
}

#[test]
fn retry_event_displays_its_attempt_error_and_delay() {
    let wait = Backoff::new(Duration::from_millis(1), Duration::from_millis(10));
    let mut flow = Flow::new();
    flow.add("fetch", Flaky::new(2, 3).waiting(wait));

    let shown = Mutex::new(Vec::new());
    let show = |event: &Event<'_>| {
        if let Event::Retry { .. } = event {
            shown.lock().unwrap().push(event.to_string());
        }
    };
    smol::block_on(flow.run_with(&mut 0u32, RunOptions::new().observer(&show))).unwrap();

    let shown = shown.into_inner().unwrap();
    assert_eq!(shown.len(), 2, "{shown:?}");
    // The field counts attempts from 0, as `Ctx::attempt` does; the message from 1.
    assert_eq!(shown[1], "`fetch` attempt 2 failed: call 1 failed; retrying in 2ms");
}

#[test]
fn a_timed_out_attempt_is_a_retry_whose_error_is_the_timeout() {
    let mut flow = Flow::new();
    flow.add("slow", Stuck { max_retries: 2, timeout: Some(Duration::from_millis(1)) });

    let (result, lines) = observe(&flow, &mut ());
    result.unwrap();
    assert_eq!(
        lines,
        [
            "start",
            "node+ slow",
            "retry slow#0 exec timed out after 1ms 0ns",
            "fallback slow exec timed out after 1ms",
            "node- slow default 2",
            "finished default",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Failed runs and fallbacks
// ---------------------------------------------------------------------------------------------

#[test]
fn failing_node_has_no_end_and_the_run_ends_with_its_error() {
    // load -> inner/fetch, which fails both of its attempts.
    let mut inner = Flow::new();
    inner.add("fetch", Flaky::new(usize::MAX, 2));
    let mut flow = Flow::new();
    let load = flow.add("load", bump());
    let nested = flow.add("inner", inner);
    flow.then(load, nested);

    let mut n = 0;
    let (result, lines) = observe(&flow, &mut n);
    let err = result.unwrap_err();
    assert_eq!(err.to_string(), "node `inner/fetch` failed in exec after 2 attempts");
    assert_eq!(
        lines,
        [
            "start",
            "node+ load",
            "node- load default 1",
            "node+ inner",
            "node+ inner/fetch",
            "retry inner/fetch#0 call 0 failed 0ns",
            "fallback inner/fetch call 1 failed",
            "failed node `inner/fetch` failed in exec after 2 attempts",
        ]
    );
    assert_eq!(terminals(&lines), 1);
}

#[test]
fn single_attempt_that_fails_goes_straight_to_the_fallback() {
    let mut flow = Flow::new();
    flow.add("fetch", Flaky::new(1, 1));

    let (result, lines) = observe(&flow, &mut ());
    result.unwrap_err();
    assert_eq!(
        lines,
        [
            "start",
            "node+ fetch",
            "fallback fetch call 0 failed",
            "failed node `fetch` failed in exec after 1 attempt",
        ]
    );
}

#[test]
fn fallback_that_recovers_is_followed_by_the_nodes_end() {
    let mut flow = Flow::new();
    let fetch = flow.add("fetch", Flaky::new(usize::MAX, 2).rescued_with("cached"));
    let next = flow.add("next", bump());
    flow.then(fetch, next);

    let mut n = 0;
    let (result, lines) = observe(&flow, &mut n);
    assert_eq!(result.unwrap(), "default");
    assert_eq!(
        lines,
        [
            "start",
            "node+ fetch",
            "retry fetch#0 call 0 failed 0ns",
            "fallback fetch call 1 failed",
            "node- fetch default 2",
            "node+ next",
            "node- next default 1",
            "finished default",
        ]
    );
}

#[test]
fn prep_and_post_failures_end_the_run_without_the_nodes_end() {
    for (in_prep, error) in
        [(true, "node `broken` failed in prep"), (false, "node `broken` failed in post")]
    {
        let mut flow = Flow::new();
        flow.add("broken", Broken { in_prep });

        let (result, lines) = observe(&flow, &mut ());
        assert_eq!(result.unwrap_err().to_string(), error);
        assert_eq!(lines, ["start", "node+ broken", &format!("failed {error}")]);
    }
}

#[test]
fn unknown_action_fails_the_run_after_the_nodes_end() {
    // The node itself ran to the end of its post; it is the flow that has nowhere to go.
    let mut flow = Flow::<()>::new();
    let a = flow.add("a", node_fn(|_, _| Ok("oops".into())));
    let b = flow.add("b", node_fn(|_, _| Ok(Action::DEFAULT)));
    flow.edge(a, "next", b);

    let (result, lines) = observe(&flow, &mut ());
    let err = result.unwrap_err();
    assert!(matches!(err, FlowError::UnknownAction { .. }), "{err:?}");
    assert_eq!(lines, ["start", "node+ a", "node- a oops 1", &format!("failed {err}")]);
}

#[test]
fn empty_flow_fails_right_after_the_start() {
    let flow = Flow::<()>::new();
    let (result, lines) = observe(&flow, &mut ());
    let err = result.unwrap_err();
    assert_eq!(lines, ["start".to_string(), format!("failed {err}")]);
}

// ---------------------------------------------------------------------------------------------
// Cancelled runs
// ---------------------------------------------------------------------------------------------

#[test]
fn dropped_run_reports_cancelled_once_after_what_it_did() {
    // first -> inner/stuck, whose exec never finishes.
    let mut inner = Flow::new();
    inner.add("stuck", stuck());
    let mut flow = Flow::new();
    let first = flow.add("first", bump());
    let nested = flow.add("inner", inner);
    flow.then(first, nested);

    let log = Log::default();
    let mut n = 0;
    let before_drop =
        ["start", "node+ first", "node- first default 1", "node+ inner", "node+ inner/stuck"];
    {
        let mut run = pin!(flow.run_with(&mut n, RunOptions::new().observer(&log)));
        assert!(poll_once(run.as_mut()).is_pending());
        assert_eq!(log.lines(), before_drop);
        assert!(poll_once(run.as_mut()).is_pending());
        assert_eq!(log.lines(), before_drop, "a poll that makes no progress reports nothing");
    }
    let mut expected = before_drop.to_vec();
    expected.push("cancelled");
    assert_eq!(log.lines(), expected);
    assert_eq!(n, 1, "first's post ran");
}

#[test]
fn run_dropped_in_a_retry_wait_reports_the_retry_then_cancelled() {
    let mut flow = Flow::new();
    flow.add("fetch", Flaky::new(1, 2).waiting_fixed(Duration::from_secs(3600)));

    let log = Log::default();
    let mut store = ();
    {
        let mut run = pin!(flow.run_with(&mut store, RunOptions::new().observer(&log)));
        assert!(poll_once(run.as_mut()).is_pending());
    }
    assert_eq!(
        log.lines(),
        ["start", "node+ fetch", "retry fetch#0 call 0 failed 3600s", "cancelled"]
    );
}

#[test]
fn run_dropped_before_its_first_poll_reports_nothing() {
    let mut flow = Flow::new();
    flow.add("stuck", stuck());

    let log = Log::default();
    let mut store = ();
    let run = flow.run_with(&mut store, RunOptions::new().observer(&log));
    drop(run);
    assert_eq!(log.lines(), Vec::<String>::new());
}

#[test]
fn panicking_node_ends_the_run_with_cancelled() {
    let mut flow = Flow::new();
    flow.add("boom", Panics);

    let log = Log::default();
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        smol::block_on(flow.run_with(&mut (), RunOptions::new().observer(&log)))
    }));
    assert!(outcome.is_err(), "the panic reaches the caller");
    assert_eq!(log.lines(), ["start", "node+ boom", "cancelled"]);
}

// ---------------------------------------------------------------------------------------------
// Custom events
// ---------------------------------------------------------------------------------------------

#[test]
fn emitted_events_arrive_in_order_between_the_nodes_start_and_end() {
    let mut chat = Flow::new();
    chat.add("answer", Talk(&["Hel", "lo", "!"]));
    let mut flow = Flow::new();
    let greet = flow.add("greet", Talk(&["hi"]));
    let chat = flow.add("chat", chat);
    flow.then(greet, chat);

    let (result, lines) = observe(&flow, &mut ());
    result.unwrap();
    assert_eq!(
        lines,
        [
            "start",
            "node+ greet",
            "custom greet token: hi",
            "node- greet default 1",
            "node+ chat",
            "node+ chat/answer",
            "custom chat/answer token: Hel",
            "custom chat/answer token: lo",
            "custom chat/answer token: !",
            "node- chat/answer default 1",
            "node- chat default 0",
            "finished default",
        ]
    );
}

#[test]
fn batch_item_events_name_the_item_and_attempts_add_up() {
    let mut flow = Flow::new();
    flow.add("shout", items(1));

    let (result, lines) = observe(&flow, &mut ());
    result.unwrap();
    assert_eq!(
        lines,
        [
            "start",
            "node+ shout",
            "custom shout[0] item: a",
            "custom shout[1] item: b",
            "retry shout[1]#0 b failed 0ns",
            "custom shout[1] item: b",
            "custom shout[2] item: c",
            "node- shout default 4",
            "finished default",
        ]
    );
}

#[test]
fn batch_item_that_fails_every_attempt_falls_back_under_its_own_path() {
    let mut flow = Flow::new();
    flow.add("shout", items(usize::MAX));

    let (result, lines) = observe(&flow, &mut ());
    assert_eq!(result.unwrap_err().to_string(), "node `shout[1]` failed in exec after 2 attempts");
    assert_eq!(
        lines,
        [
            "start",
            "node+ shout",
            "custom shout[0] item: a",
            "custom shout[1] item: b",
            "retry shout[1]#0 b failed 0ns",
            "custom shout[1] item: b",
            "fallback shout[1] b failed",
            "failed node `shout[1]` failed in exec after 2 attempts",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Concurrency: sub-runs, parallel branches, two runs
// ---------------------------------------------------------------------------------------------

/// The index of `line` in `lines`; panics if it is missing.
fn at(lines: &[String], line: &str) -> usize {
    lines.iter().position(|l| l == line).unwrap_or_else(|| panic!("no {line:?} in {lines:?}"))
}

#[test]
fn concurrent_sub_runs_and_parallel_branches_report_under_distinct_paths() {
    // fan: the inner flow `job` once per params set, concurrently; then par: branches a and b.
    let mut job = Flow::new();
    job.add("job", yielder(3));
    let fan = BatchAsyncFlow::new(job, |_: &(), _: &Params| {
        Ok((0..2).map(|i| Params::new().with("i", i)).collect())
    });
    let par = Parallel::new().branch("a", yielder(3)).branch("b", yielder(3));
    let mut flow = Flow::new();
    let fan = flow.add("fan", fan);
    let par = flow.add("par", par);
    flow.then(fan, par);

    let (result, lines) = observe(&flow, &mut ());
    result.unwrap();

    let mut nodes: Vec<&str> =
        lines.iter().filter(|l| l.starts_with("node")).map(String::as_str).collect();
    nodes.sort_unstable();
    assert_eq!(
        nodes,
        [
            "node+ fan",
            "node+ fan[0]/job",
            "node+ fan[1]/job",
            "node+ par",
            "node+ par/a",
            "node+ par/b",
            "node- fan default 0",
            "node- fan[0]/job default 1",
            "node- fan[1]/job default 1",
            "node- par default 0",
            "node- par/a default 1",
            "node- par/b default 1",
        ]
    );
    assert_eq!(lines.first().map(String::as_str), Some("start"));
    assert_eq!(lines.last().map(String::as_str), Some("finished default"));
    assert_eq!(terminals(&lines), 1);

    // Every start precedes its end, and the children sit inside their parent.
    for (start, end) in [
        ("node+ fan", "node- fan default 0"),
        ("node+ fan[0]/job", "node- fan[0]/job default 1"),
        ("node+ fan[1]/job", "node- fan[1]/job default 1"),
        ("node+ par", "node- par default 0"),
        ("node+ par/a", "node- par/a default 1"),
        ("node+ par/b", "node- par/b default 1"),
    ] {
        assert!(at(&lines, start) < at(&lines, end), "{start:?} after {end:?} in {lines:?}");
    }
    for child in ["fan[0]/job", "fan[1]/job"] {
        assert!(at(&lines, "node+ fan") < at(&lines, &format!("node+ {child}")));
        assert!(
            at(&lines, &format!("node- {child} default 1")) < at(&lines, "node- fan default 0")
        );
    }
    for child in ["par/a", "par/b"] {
        assert!(at(&lines, "node+ par") < at(&lines, &format!("node+ {child}")));
        assert!(
            at(&lines, &format!("node- {child} default 1")) < at(&lines, "node- par default 0")
        );
    }
    // They really overlapped: each second one started before the first one ended.
    assert!(at(&lines, "node+ fan[1]/job") < at(&lines, "node- fan[0]/job default 1"), "{lines:?}");
    assert!(at(&lines, "node+ par/b") < at(&lines, "node- par/a default 1"), "{lines:?}");
}

#[test]
fn one_observer_watches_two_runs_at_once() {
    /// A flow of one node named `side` that yields, then ends with the action `side`.
    fn flow(side: &'static str) -> Flow<u32> {
        let mut flow = Flow::new();
        flow.add(side, Yielder { yields: 3, action: side });
        flow
    }
    let (left, right) = (flow("left"), flow("right"));

    let events = Mutex::new(Vec::new());
    let log = |event: &Event<'_>| events.lock().unwrap().push(common::line(event));
    let (mut l, mut r) = (0, 0);
    let (a, b) = futures::executor::block_on(future::join(
        left.run_with(&mut l, RunOptions::new().observer(&log)),
        right.run_with(&mut r, RunOptions::new().observer(&log)),
    ));
    assert_eq!((a.unwrap(), b.unwrap()), ("left".into(), "right".into()));

    let lines = events.into_inner().unwrap();
    let of = |side: &str| -> Vec<&str> {
        lines.iter().filter(|l| l.contains(side)).map(String::as_str).collect()
    };
    assert_eq!(of("left"), ["node+ left", "node- left left 1", "finished left"]);
    assert_eq!(of("right"), ["node+ right", "node- right right 1", "finished right"]);
    assert_eq!(lines.iter().filter(|l| *l == "start").count(), 2, "{lines:?}");
    assert_eq!(terminals(&lines), 2, "{lines:?}");
    assert_eq!(lines.len(), 8, "nothing else: {lines:?}");
    assert!(at(&lines, "node+ right") < at(&lines, "node- left left 1"), "overlapped: {lines:?}");
}

// ---------------------------------------------------------------------------------------------
// Step limit
// ---------------------------------------------------------------------------------------------

#[test]
fn step_limited_run_ends_with_failed_carrying_the_step_limit() {
    let mut flow = Flow::<()>::new();
    let a = flow.add("a", node_fn(|_, _| Ok(Action::DEFAULT)));
    let b = flow.add("b", node_fn(|_, _| Ok(Action::DEFAULT)));
    flow.then(a, b);
    flow.then(b, a);

    let (result, lines) = observe_with(&flow, &mut (), RunOptions::new().max_steps(3));
    let err = result.unwrap_err();
    assert!(
        matches!(&err, FlowError::StepLimit { limit: 3, last, .. } if last == &["a", "b", "a"]),
        "{err:?}"
    );
    assert_eq!(
        lines,
        [
            "start".to_string(),
            "node+ a".into(),
            "node- a default 1".into(),
            "node+ b".into(),
            "node- b default 1".into(),
            "node+ a".into(),
            "node- a default 1".into(),
            format!("failed {err}"),
        ]
    );
}

#[test]
fn step_limit_inside_a_nested_flow_ends_neither_the_flow_nor_its_last_node() {
    // a -> inner (x -> y): a, inner and inner/x are the three steps; inner/y never starts.
    let mut inner = Flow::<()>::new();
    let x = inner.add("x", node_fn(|_, _| Ok(Action::DEFAULT)));
    let y = inner.add("y", node_fn(|_, _| Ok(Action::DEFAULT)));
    inner.then(x, y);
    let mut flow = Flow::new();
    let a = flow.add("a", node_fn(|_, _| Ok(Action::DEFAULT)));
    let nested = flow.add("inner", inner);
    flow.then(a, nested);

    let (result, lines) = observe_with(&flow, &mut (), RunOptions::new().max_steps(3));
    let err = result.unwrap_err();
    assert!(
        matches!(&err, FlowError::StepLimit { limit: 3, last, .. } if last == &["a", "inner/x"]),
        "{err:?}"
    );
    assert_eq!(
        lines,
        [
            "start".to_string(),
            "node+ a".into(),
            "node- a default 1".into(),
            "node+ inner".into(),
            "node+ inner/x".into(),
            "node- inner/x default 1".into(),
            format!("failed {err}"),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Trace
// ---------------------------------------------------------------------------------------------

#[test]
fn trace_counts_runs_and_attempts_per_node_in_order_of_first_end() {
    let flow = looping_flow(Flaky::new(1, 2));
    let trace = Trace::new();
    let mut n = 0;
    smol::block_on(flow.run_with(&mut n, RunOptions::new().observer(&trace))).unwrap();
    assert_eq!(n, 3);

    let rows = trace.rows();
    let counts: Vec<(&str, usize, usize)> =
        rows.iter().map(|r| (r.node.as_str(), r.runs, r.attempts)).collect();
    assert_eq!(
        counts,
        [("fetch", 1, 2), ("inner/x", 1, 1), ("inner", 1, 0), ("count", 3, 3), ("check", 3, 3)]
    );

    for row in &rows {
        assert!(row.start <= row.end, "{row:?}");
        assert!(row.busy <= row.end - row.start, "busy within its span: {row:?}");
    }
    let [fetch, x, inner, count, check] = &rows[..] else { unreachable!() };
    assert!(fetch.end <= inner.start, "inner starts after fetch ends");
    assert!(x.end <= inner.end, "inner/x ends inside inner");
    assert!(inner.end <= count.start && count.start <= check.start);
    assert!(count.end <= check.end, "check ends the run");
}

#[test]
fn trace_displays_a_header_and_one_line_per_row() {
    let flow = looping_flow(Flaky::new(1, 2));
    let trace = Trace::new();
    smol::block_on(flow.run_with(&mut 0, RunOptions::new().observer(&trace))).unwrap();

    let shown = trace.to_string();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 1 + trace.rows().len(), "{shown}");
    assert!(lines[0].starts_with("node"), "{shown}");
    for header in ["runs", "attempts", "start", "end", "busy"] {
        assert!(lines[0].contains(header), "{shown}");
    }
    // name, runs, attempts; then three timings.
    let table: Vec<Vec<&str>> = lines[1..].iter().map(|l| l.split_whitespace().collect()).collect();
    let counts: Vec<&[&str]> = table.iter().map(|fields| &fields[..3]).collect();
    assert_eq!(
        counts,
        [
            &["fetch", "1", "2"][..],
            &["inner/x", "1", "1"],
            &["inner", "1", "0"],
            &["count", "3", "3"],
            &["check", "3", "3"],
        ]
    );
    assert!(table.iter().all(|fields| fields.len() == 8), "{shown}");
}

#[test]
fn trace_prints_each_row_s_times_in_milliseconds_with_one_decimal() {
    let flow = looping_flow(Flaky::new(1, 2));
    let trace = Trace::new();
    smol::block_on(flow.run_with(&mut 0, RunOptions::new().observer(&trace))).unwrap();

    let shown = trace.to_string();
    let mut lines = shown.lines();
    assert_eq!(
        lines.next().unwrap(),
        "node     runs  attempts   start ms     end ms    busy ms    mean ms     max ms"
    );
    let ms = |d: Duration| format!("{:>9.1}", d.as_secs_f64() * 1e3);
    for (line, row) in lines.zip(trace.rows()) {
        let times = [row.start, row.end, row.busy, row.mean(), row.max].map(ms).join("  ");
        assert_eq!(line, format!("{:7}  {:>4}  {:>8}  {times}", row.node, row.runs, row.attempts));
    }
}

#[test]
fn trace_keeps_one_row_per_node_of_the_definition_with_count_total_mean_and_max() {
    // A batch flow of 1,000 sub-runs, each looping `a` twice and `b` once.
    let mut inner = Flow::new();
    let a = inner.add(
        "a",
        node_fn(|n: &mut u32, _| {
            *n += 1;
            Ok(if *n % 2 == 1 { "again" } else { "on" }.into())
        }),
    );
    let b = inner.add("b", node_fn(|_: &mut u32, _| Ok(Action::DEFAULT)));
    inner.edge(a, "again", a);
    inner.edge(a, "on", b);
    let sets = |_: &u32, _: &Params| Ok(vec![Params::new(); 1_000]);
    let mut flow = Flow::new();
    flow.add("fan", BatchFlow::new(inner, sets));

    let trace = Trace::new();
    let mut n = 0;
    smol::block_on(flow.run_with(&mut n, RunOptions::new().observer(&trace))).unwrap();
    assert_eq!(n, 2_000);
    let rows = trace.rows();
    let counts: Vec<(&str, usize)> = rows.iter().map(|r| (r.node.as_str(), r.runs)).collect();
    assert_eq!(counts, [("fan/a", 2_000), ("fan/b", 1_000), ("fan", 1)]);
    for row in &rows {
        assert!(row.max <= row.busy && row.mean() <= row.max, "{row:?}");
        let nanos = row.busy.as_nanos() / row.runs as u128;
        assert_eq!(row.mean(), Duration::from_nanos(nanos as u64), "{row:?}");
    }
    assert_eq!(trace.to_string().lines().count(), 4);
}

#[test]
fn trace_of_a_hundred_thousand_sub_runs_has_one_row_per_node() {
    // Each event costs a hash-map lookup, so this is as quick per sub-run as a run of ten.
    let mut inner = Flow::new();
    inner.add(
        "one",
        node_fn(|n: &mut u32, _| {
            *n += 1;
            Ok(Action::DEFAULT)
        }),
    );
    let sets = |_: &u32, _: &Params| Ok((0..100_000).map(|i| Params::new().with("i", i)).collect());
    let mut flow = Flow::new();
    flow.add("fan", BatchFlow::new(inner, sets));
    let trace = Trace::new();
    let mut n = 0;
    smol::block_on(flow.run_with(&mut n, RunOptions::new().observer(&trace))).unwrap();
    assert_eq!(n, 100_000);
    let rows: Vec<(String, usize)> = trace.rows().into_iter().map(|r| (r.node, r.runs)).collect();
    assert_eq!(rows, [("fan/one".to_string(), 100_000), ("fan".to_string(), 1)]);
}

#[test]
fn trace_has_no_row_for_a_node_whose_run_failed() {
    let mut flow = Flow::new();
    let load = flow.add("load", bump());
    let fetch = flow.add("fetch", Flaky::new(usize::MAX, 2));
    flow.then(load, fetch);

    let trace = Trace::new();
    smol::block_on(flow.run_with(&mut 0, RunOptions::new().observer(&trace))).unwrap_err();
    let nodes: Vec<String> = trace.rows().into_iter().map(|r| r.node).collect();
    assert_eq!(nodes, ["load"]);
    assert_eq!(trace.to_string().lines().count(), 2);
}

// ---------------------------------------------------------------------------------------------
// Causes: the events that report a failure show its whole chain
// ---------------------------------------------------------------------------------------------

/// An error with a cause of its own, to check that the whole chain is shown.
#[derive(Debug)]
struct Wrapped(&'static str, Failure);

impl std::fmt::Display for Wrapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Wrapped {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.1)
    }
}

/// The lines a run shows its observer, for events that are not node starts and ends.
fn shown_lines(flow: &Flow<u32>) -> Vec<String> {
    let lines = Mutex::new(Vec::new());
    let record = |event: &Event<'_>| match event {
        Event::NodeStart { .. } | Event::NodeEnd { .. } | Event::RunStart => {}
        _ => lines.lock().unwrap().push(event.to_string()),
    };
    let _ = smol::block_on(flow.run_with(&mut 0, RunOptions::new().observer(&record)));
    lines.into_inner().unwrap()
}

#[test]
fn a_failed_post_shows_its_error_in_the_failed_event() {
    let mut flow = Flow::new();
    flow.add("save", node_fn(|_: &mut u32, _| Err("disk full".into())));
    assert_eq!(shown_lines(&flow), ["run failed: node `save` failed in post: disk full"]);
}

/// Fails every attempt with a chained error; its fallback fails with an error of its own.
struct Chained;

impl Node<u32> for Chained {
    type Prep = ();
    type Output = ();

    fn prep(&self, _: &u32, _: &Params) -> Result<()> {
        Ok(())
    }

    async fn exec(&self, _: &(), cx: Ctx<'_>) -> Result<()> {
        let n = cx.attempt() + 1;
        Err(Box::new(Wrapped(
            if n == 1 { "request failed" } else { "still failing" },
            Failure("503".into()),
        )))
    }

    async fn exec_fallback(&self, _: &(), _: Error, _: Ctx<'_>) -> Result<()> {
        Err("no cached answer either".into())
    }

    fn post(&self, _: &mut u32, _: (), _: ()) -> Result<Action> {
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        2
    }
}

#[test]
fn retries_fallbacks_and_failures_show_the_whole_chain() {
    let mut flow = Flow::new();
    flow.add("ask", Chained);
    assert_eq!(
        shown_lines(&flow),
        [
            "`ask` attempt 1 failed: request failed: 503; retrying in 0ns",
            "`ask` falls back after its last attempt failed: still failing: 503",
            // The fallback's own error is the one the run fails with, and it is shown.
            "run failed: node `ask` failed in exec after 2 attempts: no cached answer either",
        ]
    );
}

#[test]
fn an_inner_flow_s_failure_shows_every_level() {
    let mut inner = Flow::new();
    inner.add(
        "save",
        node_fn(|_: &mut u32, _| {
            Err(Box::new(Wrapped("write failed", Failure("disk full".into()))) as Error)
        }),
    );
    let mut flow = Flow::new();
    flow.add("outer", inner);
    assert_eq!(
        shown_lines(&flow),
        ["run failed: node `outer/save` failed in post: write failed: disk full"]
    );
    let err = smol::block_on(flow.run(&mut 0)).unwrap_err();
    assert_eq!(err.to_string(), "node `outer/save` failed in post");
    assert_eq!(format!("{err:#}"), "node `outer/save` failed in post: write failed: disk full");
    // A flow error with no cause reads the same either way.
    let mut empty = Flow::<u32>::new();
    let err = smol::block_on(empty.run(&mut 0)).unwrap_err();
    assert_eq!(format!("{err:#}"), err.to_string());
    empty.add("x", node_fn(|_: &mut u32, _| Ok(Action::DEFAULT)));
}

#[test]
fn trace_start_is_the_earliest_start_even_when_a_later_run_ends_first() {
    // Sub-run 0's `work` starts first and ends last; sub-run 1's starts later and ends first.
    struct Work;
    impl Node<u32> for Work {
        type Prep = i64;
        type Output = ();
        fn prep(&self, _: &u32, params: &Params) -> Result<i64> {
            Ok(params.int("i")?)
        }
        async fn exec(&self, i: &i64, _: Ctx<'_>) -> Result<()> {
            yield_times(if *i == 0 { 50 } else { 1 }).await;
            Ok(())
        }
        fn post(&self, _: &mut u32, _: i64, _: ()) -> Result<Action> {
            Ok(Action::DEFAULT)
        }
    }
    let mut inner = Flow::new();
    inner.add("work", Work);
    let sets = |_: &u32, _: &Params| Ok((0..2).map(|i| Params::new().with("i", i)).collect());
    let mut flow = Flow::new();
    flow.add("fan", BatchAsyncFlow::new(inner, sets));

    let starts = Mutex::new(Vec::new());
    let trace = Trace::new();
    let both = |event: &Event<'_>| {
        trace.event(event);
        if let Event::NodeStart { node, .. } = event {
            starts.lock().unwrap().push(node.to_string());
        }
    };
    smol::block_on(flow.run_with(&mut 0, RunOptions::new().observer(&both))).unwrap();
    assert_eq!(starts.into_inner().unwrap(), ["fan", "fan[0]/work", "fan[1]/work"]);
    let rows = trace.rows();
    let (work, fan) = (&rows[0], &rows[1]);
    assert_eq!((work.node.as_str(), work.runs, fan.node.as_str()), ("fan/work", 2, "fan"));
    // `fan/work` spans from sub-run 0's start, not from the start of the run that ended first.
    assert!(work.start <= work.end - work.max, "{work:?}");
    assert!(fan.start <= work.start, "{fan:?} {work:?}");
}
