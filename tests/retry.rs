//! Retries and fallback: `max_retries` counts every attempt, `Ctx::attempt` is
//! 0-based and per item in batches (never shared between concurrent items), `exec_fallback`
//! sees the last error, errors name the node, the phase and the attempts made, settings out of
//! range are `InvalidConfig`, and `wait` really pauses between attempts (and only between them).

use std::error::Error as _;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use miniflow::{
    Action, BatchNode, Ctx, Error, Flow, FlowError, MAX_ATTEMPTS, Node, Params, Phase, Result,
    TimedOut,
};

mod common;
use common::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// `(node, phase, attempts)` of a `NodeFailed`; panics on any other variant.
fn node_failed(err: &FlowError) -> (&str, Phase, usize) {
    match err {
        FlowError::NodeFailed { node, phase, attempts, .. } => (node.as_str(), *phase, *attempts),
        other => panic!("expected NodeFailed, got {other:?}"),
    }
}

/// The user's error kept as the `source()` of `err`, downcast to `Failure`.
fn user_error(err: &FlowError) -> &Failure {
    err.source()
        .expect("a NodeFailed keeps the user's error as its source")
        .downcast_ref::<Failure>()
        .expect("the source is the user's own error type")
}

/// `(node, message)` of an `InvalidConfig`; panics on any other variant.
fn invalid_config(err: &FlowError) -> (&str, &str) {
    match err {
        FlowError::InvalidConfig { node, message, .. } => (node.as_str(), message.as_str()),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

/// Polls `fut` once with a waker that does nothing: nothing but this call can make it progress.
fn poll_once<F: Future>(fut: Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

/// What the nodes saw, written from inside `exec` and `exec_fallback`.
#[derive(Default)]
struct Probe {
    calls: AtomicUsize,
    log: Mutex<Vec<String>>,
}

impl Probe {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn push(&self, line: String) {
        self.log.lock().unwrap().push(line);
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

#[derive(Debug, Default, PartialEq)]
struct Store {
    question: String,
    posted: Vec<String>,
}

fn store() -> Store {
    Store { question: "q".into(), posted: Vec::new() }
}

/// A node whose first `failures` exec calls fail (counted by the node itself, not from
/// `cx.attempt()`), with configurable attempts, wait, and failing prep or post. Keeps the
/// default `exec_fallback`.
struct Flaky {
    failures: usize,
    max_retries: usize,
    wait: Duration,
    fail_prep: bool,
    fail_post: bool,
    probe: Arc<Probe>,
}

impl Flaky {
    fn new(probe: &Arc<Probe>) -> Self {
        Flaky {
            failures: 0,
            max_retries: 1,
            wait: Duration::ZERO,
            fail_prep: false,
            fail_post: false,
            probe: probe.clone(),
        }
    }

    fn failing(self, failures: usize) -> Self {
        Flaky { failures, ..self }
    }

    fn attempts(self, max_retries: usize) -> Self {
        Flaky { max_retries, ..self }
    }

    fn waiting(self, wait: Duration) -> Self {
        Flaky { wait, ..self }
    }
}

impl Node<Store> for Flaky {
    type Prep = String;
    type Output = String;

    fn prep(&self, store: &Store, _: &Params) -> Result<String> {
        if self.fail_prep {
            return Err(failure("prep broke"));
        }
        Ok(store.question.clone())
    }

    async fn exec(&self, question: &String, cx: Ctx<'_>) -> Result<String> {
        let call = self.probe.calls.fetch_add(1, Ordering::SeqCst);
        self.probe.push(format!(
            "exec attempt {} of {} at {}",
            cx.attempt(),
            cx.max_retries(),
            cx.node()
        ));
        if call < self.failures {
            Err(failure(format!("call {call} failed")))
        } else {
            Ok(format!("answer to {question} from call {call}"))
        }
    }

    fn post(&self, store: &mut Store, question: String, answer: String) -> Result<Action> {
        if self.fail_post {
            return Err(failure("post broke"));
        }
        store.posted.push(format!("{question} -> {answer}"));
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        self.max_retries
    }

    fn wait(&self, _: &Error, _: Ctx<'_>) -> Option<Duration> {
        Some(self.wait)
    }
}

/// `Flaky` with an `exec_fallback` that logs its call and returns `outcome` (`Ok`: a value,
/// `Err`: an error with that message).
struct Rescued {
    inner: Flaky,
    outcome: std::result::Result<&'static str, &'static str>,
}

impl Node<Store> for Rescued {
    type Prep = String;
    type Output = String;

    fn prep(&self, store: &Store, params: &Params) -> Result<String> {
        self.inner.prep(store, params)
    }

    async fn exec(&self, question: &String, cx: Ctx<'_>) -> Result<String> {
        self.inner.exec(question, cx).await
    }

    async fn exec_fallback(&self, _: &String, error: Error, cx: Ctx<'_>) -> Result<String> {
        self.inner.probe.push(format!(
            "fallback after attempt {} of {} at {}: {error}",
            cx.attempt(),
            cx.max_retries(),
            cx.node()
        ));
        match self.outcome {
            Ok(value) => Ok(value.to_string()),
            Err(message) => Err(failure(message)),
        }
    }

    fn post(&self, store: &mut Store, question: String, answer: String) -> Result<Action> {
        self.inner.post(store, question, answer)
    }

    fn max_retries(&self) -> usize {
        self.inner.max_retries()
    }

    fn wait(&self, error: &Error, cx: Ctx<'_>) -> Option<Duration> {
        self.inner.wait(error, cx)
    }
}

/// A node with every setting left at its default, whose exec always fails.
struct Defaults {
    probe: Arc<Probe>,
}

impl Node<Store> for Defaults {
    type Prep = ();
    type Output = ();

    fn prep(&self, _: &Store, _: &Params) -> Result<()> {
        Ok(())
    }

    async fn exec(&self, _: &(), cx: Ctx<'_>) -> Result<()> {
        self.probe.calls.fetch_add(1, Ordering::SeqCst);
        self.probe.push(format!("exec attempt {} of {}", cx.attempt(), cx.max_retries()));
        Err(failure("always fails"))
    }

    fn post(&self, store: &mut Store, _: (), _: ()) -> Result<Action> {
        store.posted.push("post ran".into());
        Ok(Action::DEFAULT)
    }
}

/// A flow of one node named `flaky`.
fn single<N: Node<Store> + 'static>(node: N) -> Flow<Store> {
    let mut flow = Flow::new();
    flow.add("flaky", node);
    flow
}

/// What a `FlakyItems` saw, per exec call, and how many items were in flight at once.
#[derive(Default)]
struct ItemLog {
    /// `(item, cx.attempt(), cx.node())` of every exec call, in call order.
    seen: Mutex<Vec<(usize, usize, String)>>,
    now: AtomicUsize,
    max: AtomicUsize,
}

impl ItemLog {
    fn attempts_of(&self, item: usize) -> Vec<usize> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(i, _, _)| *i == item)
            .map(|(_, a, _)| *a)
            .collect()
    }

    fn nodes_of(&self, item: usize) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(i, _, _)| *i == item)
            .map(|(_, _, n)| n.clone())
            .collect()
    }
}

/// A batch node over items `0..failures.len()`, all in flight at once: item `i`'s first
/// `failures[i]` exec calls fail (counted per item by the node, not from `cx.attempt()`). Every
/// call yields so that concurrent items interleave.
struct FlakyItems {
    failures: Vec<usize>,
    max_retries: usize,
    calls: Mutex<Vec<usize>>,
    log: Arc<ItemLog>,
}

/// A flow with one `FlakyItems` named `batch`, and the log it writes.
fn batch_flow(failures: Vec<usize>, max_retries: usize) -> (Flow<Vec<String>>, Arc<ItemLog>) {
    let log = Arc::new(ItemLog::default());
    let calls = Mutex::new(vec![0; failures.len()]);
    let mut flow = Flow::new();
    flow.add("batch", FlakyItems { failures, max_retries, calls, log: log.clone() });
    (flow, log)
}

impl BatchNode<Vec<String>> for FlakyItems {
    type Item = usize;
    type Output = String;

    fn prep(&self, _: &Vec<String>, _: &Params) -> Result<Vec<usize>> {
        Ok((0..self.failures.len()).collect())
    }

    async fn exec(&self, item: &usize, cx: Ctx<'_>) -> Result<String> {
        let call = {
            let mut calls = self.calls.lock().unwrap();
            calls[*item] += 1;
            calls[*item] - 1
        };
        self.log.seen.lock().unwrap().push((*item, cx.attempt(), cx.node().to_string()));
        let now = self.log.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.log.max.fetch_max(now, Ordering::SeqCst);
        yield_times(3).await;
        self.log.now.fetch_sub(1, Ordering::SeqCst);
        if call < self.failures[*item] {
            Err(failure(format!("item {item} call {call} failed")))
        } else {
            Ok(format!("item {item} ok on call {call}"))
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
        self.max_retries
    }

    fn max_in_flight(&self) -> usize {
        usize::MAX
    }
}

// ---------------------------------------------------------------------------------------------
// Attempts
// ---------------------------------------------------------------------------------------------

#[test]
fn two_failures_then_success_makes_exactly_three_attempts() {
    let probe = Arc::new(Probe::default());
    let flow = single(Flaky::new(&probe).failing(2).attempts(3));
    let mut store = store();

    let action = smol::block_on(flow.run(&mut store)).unwrap();

    assert_eq!(action, Action::DEFAULT);
    assert_eq!(probe.calls(), 3);
    assert_eq!(
        probe.log(),
        [
            "exec attempt 0 of 3 at flaky",
            "exec attempt 1 of 3 at flaky",
            "exec attempt 2 of 3 at flaky"
        ]
    );
    assert_eq!(store.posted, ["q -> answer to q from call 2"]);
}

#[test]
fn success_on_first_attempt_makes_one_attempt_even_with_retries_left() {
    let probe = Arc::new(Probe::default());
    let flow = single(Flaky::new(&probe).attempts(5));
    let mut store = store();

    smol::block_on(flow.run(&mut store)).unwrap();

    assert_eq!(probe.log(), ["exec attempt 0 of 5 at flaky"]);
    assert_eq!(store.posted, ["q -> answer to q from call 0"]);
}

#[test]
fn every_attempt_failing_returns_node_failed_with_the_last_error() {
    let probe = Arc::new(Probe::default());
    let flow = single(Flaky::new(&probe).failing(usize::MAX).attempts(4));
    let mut store = store();

    let err = smol::block_on(flow.run(&mut store)).unwrap_err();

    assert_eq!(node_failed(&err), ("flaky", Phase::Exec, 4));
    assert_eq!(user_error(&err), &Failure("call 3 failed".into()));
    assert_eq!(err.node(), "flaky");
    assert_eq!(err.to_string(), "node `flaky` failed in exec after 4 attempts");
    assert_eq!(probe.calls(), 4);
    assert_eq!(store.posted, Vec::<String>::new(), "post must not run after a failed exec");
}

#[test]
fn exec_failure_in_a_nested_flow_names_the_full_path() {
    let probe = Arc::new(Probe::default());
    let inner = single(Flaky::new(&probe).failing(usize::MAX).attempts(2));
    let mut outer = Flow::new();
    outer.add("outer", inner);

    let err = smol::block_on(outer.run(&mut store())).unwrap_err();

    assert_eq!(node_failed(&err), ("outer/flaky", Phase::Exec, 2));
    assert_eq!(err.to_string(), "node `outer/flaky` failed in exec after 2 attempts");
    assert_eq!(
        probe.log(),
        ["exec attempt 0 of 2 at outer/flaky", "exec attempt 1 of 2 at outer/flaky"]
    );
}

#[test]
fn default_max_retries_is_a_single_attempt() {
    let probe = Arc::new(Probe::default());
    let flow = single(Defaults { probe: probe.clone() });
    let mut store = store();

    let err = smol::block_on(flow.run(&mut store)).unwrap_err();

    assert_eq!(probe.log(), ["exec attempt 0 of 1"]);
    assert_eq!(node_failed(&err), ("flaky", Phase::Exec, 1));
    assert_eq!(user_error(&err), &Failure("always fails".into()));
    assert_eq!(err.to_string(), "node `flaky` failed in exec after 1 attempt");
    assert_eq!(store.posted, Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// Fallback
// ---------------------------------------------------------------------------------------------

#[test]
fn fallback_value_reaches_post_as_if_exec_produced_it() {
    let probe = Arc::new(Probe::default());
    let node = Rescued {
        inner: Flaky::new(&probe).failing(usize::MAX).attempts(3),
        outcome: Ok("canned answer"),
    };
    let flow = single(node);
    let mut store = store();

    let action = smol::block_on(flow.run(&mut store)).unwrap();

    assert_eq!(action, Action::DEFAULT);
    assert_eq!(
        probe.log(),
        [
            "exec attempt 0 of 3 at flaky",
            "exec attempt 1 of 3 at flaky",
            "exec attempt 2 of 3 at flaky",
            "fallback after attempt 2 of 3 at flaky: call 2 failed",
        ]
    );
    assert_eq!(store.posted, ["q -> canned answer"]);
}

#[test]
fn fallback_is_not_called_when_a_retry_succeeds() {
    let probe = Arc::new(Probe::default());
    let node =
        Rescued { inner: Flaky::new(&probe).failing(1).attempts(3), outcome: Ok("canned answer") };
    let flow = single(node);
    let mut store = store();

    smol::block_on(flow.run(&mut store)).unwrap();

    assert_eq!(probe.log(), ["exec attempt 0 of 3 at flaky", "exec attempt 1 of 3 at flaky"]);
    assert_eq!(store.posted, ["q -> answer to q from call 1"]);
}

#[test]
fn fallback_error_reaches_the_caller_naming_the_node() {
    let probe = Arc::new(Probe::default());
    let node = Rescued {
        inner: Flaky::new(&probe).failing(usize::MAX).attempts(3),
        outcome: Err("fallback gave up"),
    };
    let flow = single(node);
    let mut store = store();

    let err = smol::block_on(flow.run(&mut store)).unwrap_err();

    assert_eq!(node_failed(&err), ("flaky", Phase::Exec, 3));
    assert_eq!(user_error(&err), &Failure("fallback gave up".into()));
    assert_eq!(err.to_string(), "node `flaky` failed in exec after 3 attempts");
    assert_eq!(
        probe.log().last().unwrap(),
        "fallback after attempt 2 of 3 at flaky: call 2 failed"
    );
    assert_eq!(probe.calls(), 3);
    assert_eq!(store.posted, Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// Errors in prep and post
// ---------------------------------------------------------------------------------------------

#[test]
fn prep_error_fails_in_prep_with_zero_attempts_and_no_exec() {
    let probe = Arc::new(Probe::default());
    let flow = single(Flaky { fail_prep: true, ..Flaky::new(&probe).attempts(3) });
    let mut store = store();

    let err = smol::block_on(flow.run(&mut store)).unwrap_err();

    assert_eq!(node_failed(&err), ("flaky", Phase::Prep, 0));
    assert_eq!(user_error(&err), &Failure("prep broke".into()));
    assert_eq!(err.to_string(), "node `flaky` failed in prep");
    assert_eq!(probe.calls(), 0);
    assert_eq!(store, self::store());
}

#[test]
fn post_error_fails_in_post_with_the_attempts_made() {
    let probe = Arc::new(Probe::default());
    let flow = single(Flaky { fail_post: true, ..Flaky::new(&probe).failing(1).attempts(3) });
    let mut store = store();

    let err = smol::block_on(flow.run(&mut store)).unwrap_err();

    assert_eq!(node_failed(&err), ("flaky", Phase::Post, 2));
    assert_eq!(user_error(&err), &Failure("post broke".into()));
    assert_eq!(err.to_string(), "node `flaky` failed in post");
    assert_eq!(probe.calls(), 2);
}

#[test]
fn post_error_after_a_fallback_counts_every_attempt() {
    let probe = Arc::new(Probe::default());
    let inner = Flaky { fail_post: true, ..Flaky::new(&probe).failing(usize::MAX).attempts(4) };
    let flow = single(Rescued { inner, outcome: Ok("canned answer") });

    let err = smol::block_on(flow.run(&mut store())).unwrap_err();

    assert_eq!(node_failed(&err), ("flaky", Phase::Post, 4));
    assert_eq!(user_error(&err), &Failure("post broke".into()));
}

// ---------------------------------------------------------------------------------------------
// Settings out of range
// ---------------------------------------------------------------------------------------------

#[test]
fn max_retries_zero_is_invalid_config_and_exec_never_runs() {
    let probe = Arc::new(Probe::default());
    let flow = single(Flaky::new(&probe).attempts(0));
    let mut store = store();

    let err = smol::block_on(flow.run(&mut store)).unwrap_err();

    let (node, message) = invalid_config(&err);
    assert_eq!(node, "flaky");
    assert!(message.starts_with("node `flaky`: max_retries() is 0,"), "message: {message}");
    assert_eq!(err.to_string(), message);
    assert_eq!(probe.calls(), 0);
    assert_eq!(store.posted, Vec::<String>::new());
}

#[test]
fn max_retries_above_max_attempts_is_invalid_config_and_exec_never_runs() {
    assert_eq!(MAX_ATTEMPTS, 1000);
    let probe = Arc::new(Probe::default());
    let flow = single(Flaky::new(&probe).attempts(MAX_ATTEMPTS + 1));
    let mut store = store();

    let err = smol::block_on(flow.run(&mut store)).unwrap_err();

    let (node, message) = invalid_config(&err);
    assert_eq!(node, "flaky");
    assert!(message.starts_with("node `flaky`: max_retries() is 1001,"), "message: {message}");
    assert!(message.ends_with("must be between 1 and 1000"), "message: {message}");
    assert_eq!(probe.calls(), 0);
    assert_eq!(store.posted, Vec::<String>::new());
}

#[test]
fn max_retries_of_exactly_max_attempts_is_allowed() {
    let probe = Arc::new(Probe::default());
    let flow = single(Flaky::new(&probe).failing(MAX_ATTEMPTS - 1).attempts(MAX_ATTEMPTS));
    let mut store = store();

    smol::block_on(flow.run(&mut store)).unwrap();

    assert_eq!(probe.calls(), MAX_ATTEMPTS);
    assert_eq!(store.posted, ["q -> answer to q from call 999"]);
}

#[test]
fn batch_node_max_retries_zero_is_invalid_config_and_exec_never_runs() {
    let (flow, log) = batch_flow(vec![0, 0], 0);
    let mut outputs = vec!["untouched".to_string()];

    let err = smol::block_on(flow.run(&mut outputs)).unwrap_err();

    let (_, message) = invalid_config(&err);
    assert!(message.starts_with("node `batch`: max_retries() is 0,"), "message: {message}");
    assert!(log.seen.lock().unwrap().is_empty());
    assert_eq!(outputs, ["untouched"]);
}

#[test]
fn batch_node_invalid_max_retries_names_the_node_not_an_item() {
    let (flow, _) = batch_flow(vec![0, 0], 0);

    let err = smol::block_on(flow.run(&mut Vec::new())).unwrap_err();

    assert_eq!(invalid_config(&err).0, "batch");
}

#[test]
fn batch_node_invalid_max_retries_fails_even_on_an_empty_batch() {
    let (flow, _) = batch_flow(vec![], 0);

    let err = smol::block_on(flow.run(&mut Vec::new())).unwrap_err();

    assert_eq!(invalid_config(&err).0, "batch");
}

// ---------------------------------------------------------------------------------------------
// Wait
// ---------------------------------------------------------------------------------------------

#[test]
fn long_wait_leaves_the_run_pending_after_exactly_one_attempt() {
    let probe = Arc::new(Probe::default());
    let flow = single(
        Flaky::new(&probe).failing(usize::MAX).attempts(2).waiting(Duration::from_secs(3600)),
    );
    let mut store = store();
    {
        let mut run = pin!(flow.run(&mut store));
        assert!(poll_once(run.as_mut()).is_pending());
        assert_eq!(probe.calls(), 1);
        for _ in 0..10 {
            assert!(poll_once(run.as_mut()).is_pending());
        }
        assert_eq!(probe.calls(), 1, "no second attempt before the wait is over");
        // Dropping the run here cancels it.
    }
    assert_eq!(probe.log(), ["exec attempt 0 of 2 at flaky"]);
    assert_eq!(store.posted, Vec::<String>::new());
}

#[test]
fn zero_wait_makes_every_attempt_within_one_poll() {
    let probe = Arc::new(Probe::default());
    let flow = single(Flaky::new(&probe).failing(4).attempts(5));
    let mut store = store();

    let result = {
        let mut run = pin!(flow.run(&mut store));
        poll_once(run.as_mut())
    };

    assert!(
        matches!(result, Poll::Ready(Ok(ref action)) if *action == Action::DEFAULT),
        "{result:?}"
    );
    assert_eq!(probe.calls(), 5);
    assert_eq!(store.posted, ["q -> answer to q from call 4"]);
}

#[test]
fn no_wait_after_the_last_attempt() {
    let probe = Arc::new(Probe::default());
    let flow = single(
        Flaky::new(&probe).failing(usize::MAX).attempts(1).waiting(Duration::from_secs(3600)),
    );

    let result = {
        let mut store = store();
        let mut run = pin!(flow.run(&mut store));
        poll_once(run.as_mut()).map(|r| r.map_err(|e| e.to_string()))
    };

    assert_eq!(result, Poll::Ready(Err("node `flaky` failed in exec after 1 attempt".to_string())));
    assert_eq!(probe.calls(), 1);
}

#[test]
fn wait_pauses_at_least_its_duration_between_attempts() {
    let probe = Arc::new(Probe::default());
    let wait = Duration::from_millis(30);
    let flow = single(Flaky::new(&probe).failing(2).attempts(3).waiting(wait));
    let mut store = store();

    let started = Instant::now();
    smol::block_on(flow.run(&mut store)).unwrap();
    let elapsed = started.elapsed();

    assert!(elapsed >= 2 * wait, "two waits of {wait:?} took only {elapsed:?}");
    assert_eq!(probe.calls(), 3);
}

#[test]
fn wait_is_honoured_under_the_futures_executor() {
    let probe = Arc::new(Probe::default());
    let wait = Duration::from_millis(30);
    let flow = single(Flaky::new(&probe).failing(1).attempts(2).waiting(wait));
    let mut store = store();

    let started = Instant::now();
    futures::executor::block_on(flow.run(&mut store)).unwrap();
    let elapsed = started.elapsed();

    assert!(elapsed >= wait, "a wait of {wait:?} took only {elapsed:?}");
    assert_eq!(store.posted, ["q -> answer to q from call 1"]);
}

// ---------------------------------------------------------------------------------------------
// Batch items retry on their own
// ---------------------------------------------------------------------------------------------

#[test]
fn concurrent_batch_items_count_their_attempts_independently() {
    let failures = vec![2, 0, 1, 2, 0, 1];
    let (flow, log) = batch_flow(failures.clone(), 3);
    let mut outputs = Vec::new();

    smol::block_on(flow.run(&mut outputs)).unwrap();

    assert_eq!(
        log.max.load(Ordering::SeqCst),
        failures.len(),
        "every item must be in flight at once"
    );
    for (item, &fails) in failures.iter().enumerate() {
        assert_eq!(
            log.attempts_of(item),
            (0..=fails).collect::<Vec<_>>(),
            "attempts seen by item {item}"
        );
        assert_eq!(log.nodes_of(item), vec![format!("batch[{item}]"); fails + 1]);
    }
    let expected: Vec<String> = failures
        .iter()
        .enumerate()
        .map(|(item, fails)| format!("item {item} ok on call {fails}"))
        .collect();
    assert_eq!(outputs, expected);
}

#[test]
fn concurrent_batch_item_exhausting_its_attempts_reports_its_own_count() {
    let (flow, log) = batch_flow(vec![0, 1, usize::MAX, 0], 3);
    let mut outputs = vec!["untouched".to_string()];

    let err = smol::block_on(flow.run(&mut outputs)).unwrap_err();

    assert_eq!(node_failed(&err), ("batch[2]", Phase::Exec, 3));
    assert_eq!(user_error(&err), &Failure("item 2 call 2 failed".into()));
    assert_eq!(log.attempts_of(2), [0, 1, 2]);
    assert_eq!(log.attempts_of(1), [0, 1]);
    assert_eq!(outputs, ["untouched"], "post must not run when an item fails");
}

// ---------------------------------------------------------------------------------------------
// The timeout covers exec_fallback too
// ---------------------------------------------------------------------------------------------

/// Fails at once; its fallback never finishes.
struct HangingFallback;

impl Node<u32> for HangingFallback {
    type Prep = ();
    type Output = ();

    fn prep(&self, _: &u32, _: &Params) -> Result<()> {
        Ok(())
    }

    async fn exec(&self, _: &(), _: Ctx<'_>) -> Result<()> {
        Err("down".into())
    }

    async fn exec_fallback(&self, _: &(), _: Error, _: Ctx<'_>) -> Result<()> {
        std::future::pending().await
    }

    fn post(&self, _: &mut u32, _: (), _: ()) -> Result<Action> {
        Ok(Action::DEFAULT)
    }

    fn timeout(&self) -> Option<Duration> {
        Some(Duration::from_millis(5))
    }
}

#[test]
fn a_hanging_fallback_times_out_like_an_attempt() {
    let mut flow = Flow::new();
    flow.add("ask", HangingFallback);
    let err = smol::block_on(flow.run(&mut 0)).unwrap_err();
    let timed_out = err.source().and_then(|e| e.downcast_ref::<TimedOut>()).copied();
    assert!(matches!(timed_out, Some(TimedOut { fallback: true, .. })), "{err:#}");
    assert_eq!(
        format!("{err:#}"),
        "node `ask` failed in exec after 1 attempt: exec_fallback timed out after 5ms"
    );
}
