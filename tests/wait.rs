//! The per-error retry decision: `Node::wait` / `BatchNode::wait` decide after each failed
//! attempt (while attempts remain) whether to retry and after how long; `None` gives up at
//! once; `max_retries()` stays the upper bound; the pause is really awaited; a timeout is an
//! attempt the hook sees; and `Backoff`'s schedule, cap, jitter and panics are exact.
//!
//! Nothing here measures wall-clock time: orderings, counts and exact values only.

use std::collections::HashSet;
use std::error::Error as _;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use miniflow::{
    Action, Backoff, BatchNode, Ctx, Error, Event, Flow, FlowError, IntoNode, Node, Params, Phase,
    Result, RunOptions, TimedOut,
};
use smol::Timer;
use smol::channel::{Receiver, Sender};

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The errors of a made-up HTTP API, as a real client would return them.
#[derive(Debug)]
enum ApiError {
    /// A 401: retrying cannot help.
    Unauthorized,
    /// A 429 with the server's `Retry-After`.
    RateLimited { retry_after: Duration },
    /// Anything else, described.
    Flaky(String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Unauthorized => f.write_str("401 unauthorized"),
            ApiError::RateLimited { retry_after } => write!(f, "429 retry after {retry_after:?}"),
            ApiError::Flaky(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for ApiError {}

/// What an observer saw of the retry machinery, owned.
#[derive(Clone, Debug, PartialEq)]
enum Seen {
    Retry { node: String, attempt: usize, error: String, delay: Duration },
    Fallback { node: String, error: String },
    End { node: String, attempts: usize },
}

/// Runs a one-node flow (the node named `name`) under `smol::block_on` with an observer, and
/// returns the run's result, the store (outputs the node's `post` wrote) and what was seen.
fn run_one<N, M>(name: &str, node: N) -> (Result<Action, FlowError>, Vec<String>, Vec<Seen>)
where
    N: IntoNode<Vec<String>, M>,
{
    let mut flow = Flow::new();
    flow.add(name, node);
    let seen = Mutex::new(Vec::new());
    let observer = |event: &Event<'_>| {
        let seen_now = match event {
            Event::Retry { node, attempt, error, delay, .. } => Seen::Retry {
                node: node.to_string(),
                attempt: *attempt,
                error: error.to_string(),
                delay: *delay,
            },
            Event::Fallback { node, error, .. } => {
                Seen::Fallback { node: node.to_string(), error: error.to_string() }
            }
            Event::NodeEnd { node, attempts, .. } => {
                Seen::End { node: node.to_string(), attempts: *attempts }
            }
            _ => return,
        };
        seen.lock().unwrap().push(seen_now);
    };
    let mut store = Vec::new();
    let result = smol::block_on(flow.run_with(&mut store, RunOptions::new().observer(&observer)));
    (result, store, seen.into_inner().unwrap())
}

/// `(node, phase, attempts)` of a `NodeFailed`; panics on any other outcome.
fn node_failed(result: &Result<Action, FlowError>) -> (&str, Phase, usize) {
    match result {
        Err(FlowError::NodeFailed { node, phase, attempts, .. }) => {
            (node.as_str(), *phase, *attempts)
        }
        other => panic!("expected NodeFailed, got {other:?}"),
    }
}

/// The user's `ApiError` kept as the run error's `source()`.
fn api_source(result: &Result<Action, FlowError>) -> &ApiError {
    let error = result.as_ref().expect_err("the run should fail");
    error
        .source()
        .expect("NodeFailed keeps the user's error as its source")
        .downcast_ref::<ApiError>()
        .expect("the source is the user's ApiError")
}

fn retries(seen: &[Seen]) -> Vec<&Seen> {
    seen.iter().filter(|s| matches!(s, Seen::Retry { .. })).collect()
}

fn fallbacks(seen: &[Seen]) -> Vec<&Seen> {
    seen.iter().filter(|s| matches!(s, Seen::Fallback { .. })).collect()
}

/// Everything the nodes' code did, recorded from inside `exec`, `wait` and `exec_fallback`.
#[derive(Default)]
struct Probe {
    execs: AtomicUsize,
    /// `(node, cx.attempt(), error)` for each call of the `wait` hook.
    asked: Mutex<Vec<(String, usize, String)>>,
    /// `(cx.attempt(), error)` for each call of `exec_fallback`.
    fell_back: Mutex<Vec<(usize, String)>>,
    /// Free-form order log.
    log: Mutex<Vec<String>>,
}

impl Probe {
    fn execs(&self) -> usize {
        self.execs.load(SeqCst)
    }

    fn asked(&self) -> Vec<(String, usize, String)> {
        self.asked.lock().unwrap().clone()
    }

    fn asked_attempts(&self) -> Vec<usize> {
        self.asked().into_iter().map(|(_, attempt, _)| attempt).collect()
    }

    fn fell_back(&self) -> Vec<(usize, String)> {
        self.fell_back.lock().unwrap().clone()
    }

    fn push(&self, line: impl Into<String>) {
        self.log.lock().unwrap().push(line.into());
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

/// A node whose attempts `0..fails` fail with `error(attempt)` and whose later attempts
/// succeed; its `wait` records the call and asks `decide`; its fallback recovers if `recover`.
struct Scripted {
    probe: Arc<Probe>,
    max: usize,
    fails: usize,
    error: fn(usize) -> ApiError,
    decide: fn(&Error, Ctx<'_>) -> Option<Duration>,
    recover: bool,
    timeout: Option<Duration>,
    /// Attempt 0 sleeps this long before it would succeed (for the timeout test).
    sleep_first: Option<Duration>,
}

impl Scripted {
    fn new(probe: &Arc<Probe>, max: usize, fails: usize) -> Self {
        Scripted {
            probe: probe.clone(),
            max,
            fails,
            error: |attempt| ApiError::Flaky(format!("flaky on attempt {attempt}")),
            decide: |_, _| Some(Duration::ZERO),
            recover: false,
            timeout: None,
            sleep_first: None,
        }
    }
}

impl Node<Vec<String>> for Scripted {
    type Prep = ();
    type Output = String;

    fn prep(&self, _: &Vec<String>, _: &Params) -> Result<()> {
        Ok(())
    }

    async fn exec(&self, _: &(), cx: Ctx<'_>) -> Result<String> {
        self.probe.execs.fetch_add(1, SeqCst);
        if let (0, Some(sleep)) = (cx.attempt(), self.sleep_first) {
            Timer::after(sleep).await;
            return Ok("too late".into());
        }
        if cx.attempt() < self.fails {
            return Err(Box::new((self.error)(cx.attempt())));
        }
        Ok(format!("ok on attempt {}", cx.attempt()))
    }

    async fn exec_fallback(&self, _: &(), error: Error, cx: Ctx<'_>) -> Result<String> {
        self.probe.fell_back.lock().unwrap().push((cx.attempt(), error.to_string()));
        if self.recover { Ok(format!("fallback for {error}")) } else { Err(error) }
    }

    fn post(&self, store: &mut Vec<String>, _: (), output: String) -> Result<Action> {
        store.push(output);
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        self.max
    }

    fn wait(&self, error: &Error, cx: Ctx<'_>) -> Option<Duration> {
        let call = (cx.node().to_string(), cx.attempt(), error.to_string());
        self.probe.asked.lock().unwrap().push(call);
        (self.decide)(error, cx)
    }

    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
}

/// The hook of the docs: no retry for a 401, the server's pause for a 429, at once otherwise.
fn api_decision(error: &Error, _: Ctx<'_>) -> Option<Duration> {
    match error.downcast_ref::<ApiError>() {
        Some(ApiError::Unauthorized) => None,
        Some(ApiError::RateLimited { retry_after }) => Some(*retry_after),
        _ => Some(Duration::ZERO),
    }
}

// ---------------------------------------------------------------------------------------------
// 1. A permanent error is not retried; a hook can give up part way
// ---------------------------------------------------------------------------------------------

fn unauthorized(probe: &Arc<Probe>, recover: bool) -> Scripted {
    Scripted {
        error: |_| ApiError::Unauthorized,
        decide: api_decision,
        recover,
        ..Scripted::new(probe, 5, usize::MAX)
    }
}

#[test]
fn a_permanent_error_goes_to_the_fallback_after_one_attempt() {
    let probe = Arc::new(Probe::default());
    let (result, store, seen) = run_one("ask", unauthorized(&probe, true));

    assert_eq!(result.unwrap(), Action::DEFAULT);
    assert_eq!(probe.execs(), 1, "max_retries() is 5, but the hook said None");
    assert_eq!(probe.asked(), [("ask".to_string(), 0, "401 unauthorized".to_string())]);
    assert_eq!(probe.fell_back(), [(0, "401 unauthorized".to_string())]);
    assert_eq!(store, ["fallback for 401 unauthorized"]);
    assert_eq!(
        seen,
        [
            Seen::Fallback { node: "ask".into(), error: "401 unauthorized".into() },
            Seen::End { node: "ask".into(), attempts: 1 },
        ]
    );
}

#[test]
fn a_permanent_error_without_fallback_fails_after_one_attempt() {
    let probe = Arc::new(Probe::default());
    let (result, store, seen) = run_one("ask", unauthorized(&probe, false));

    assert_eq!(node_failed(&result), ("ask", Phase::Exec, 1));
    assert!(matches!(api_source(&result), ApiError::Unauthorized));
    assert_eq!(probe.execs(), 1);
    assert_eq!(probe.asked_attempts(), [0]);
    assert_eq!(probe.fell_back(), [(0, "401 unauthorized".to_string())]);
    assert!(store.is_empty());
    assert_eq!(retries(&seen), Vec::<&Seen>::new());
    assert_eq!(
        fallbacks(&seen),
        [&Seen::Fallback { node: "ask".into(), error: "401 unauthorized".into() }]
    );
}

#[test]
fn a_hook_that_gives_up_on_the_third_attempt_makes_three() {
    let probe = Arc::new(Probe::default());
    let node = Scripted {
        decide: |_, cx| (cx.attempt() < 2).then_some(Duration::ZERO),
        ..Scripted::new(&probe, 5, usize::MAX)
    };
    let (result, _, seen) = run_one("ask", node);

    assert_eq!(node_failed(&result), ("ask", Phase::Exec, 3));
    assert_eq!(api_source(&result).to_string(), "flaky on attempt 2");
    assert_eq!(probe.execs(), 3);
    assert_eq!(probe.asked_attempts(), [0, 1, 2]);
    assert_eq!(probe.fell_back(), [(2, "flaky on attempt 2".to_string())]);
    let retry = |attempt: usize| Seen::Retry {
        node: "ask".into(),
        attempt,
        error: format!("flaky on attempt {attempt}"),
        delay: Duration::ZERO,
    };
    assert_eq!(
        seen,
        [
            retry(0),
            retry(1),
            Seen::Fallback { node: "ask".into(), error: "flaky on attempt 2".into() },
        ]
    );
}

#[test]
fn giving_up_counts_only_the_attempts_made_in_a_batch_item_too() {
    let probe = Arc::new(Probe::default());
    let node = Items {
        probe: probe.clone(),
        fails: vec![0, usize::MAX],
        max: 4,
        in_flight: 1,
        decide: |_, cx| (cx.attempt() < 1).then_some(Duration::ZERO),
    };
    let (result, _, seen) = run_one("items", node);

    assert_eq!(node_failed(&result), ("items[1]", Phase::Exec, 2));
    assert_eq!(probe.execs(), 3, "item 0 once, item 1 twice");
    assert_eq!(retries(&seen).len(), 1);
    assert_eq!(
        fallbacks(&seen),
        [&Seen::Fallback { node: "items[1]".into(), error: "item 1 attempt 1".into() }]
    );
}

// ---------------------------------------------------------------------------------------------
// 2. A rate limit waits exactly the pause the error carries, and really awaits it
// ---------------------------------------------------------------------------------------------

/// Two items run concurrently. Item "A" fails its first attempt with a 429 carrying
/// `retry_after` (telling "B" it has failed, through a channel), then succeeds. Item "B" waits
/// for that message, then for `b_timer`, then records itself.
struct RateLimited {
    probe: Arc<Probe>,
    retry_after: Duration,
    b_timer: Option<Duration>,
    tx: Sender<()>,
    rx: Receiver<()>,
}

impl RateLimited {
    fn new(probe: &Arc<Probe>, retry_after: Duration, b_timer: Option<Duration>) -> Self {
        let (tx, rx) = smol::channel::bounded(1);
        RateLimited { probe: probe.clone(), retry_after, b_timer, tx, rx }
    }
}

impl BatchNode<Vec<String>> for RateLimited {
    type Item = &'static str;
    type Output = String;

    fn prep(&self, _: &Vec<String>, _: &Params) -> Result<Vec<&'static str>> {
        Ok(vec!["A", "B"])
    }

    async fn exec(&self, item: &&'static str, cx: Ctx<'_>) -> Result<String> {
        self.probe.execs.fetch_add(1, SeqCst);
        match (*item, cx.attempt()) {
            ("A", 0) => {
                self.probe.push("A failed");
                self.tx.try_send(()).expect("A fails once");
                Err(Box::new(ApiError::RateLimited { retry_after: self.retry_after }))
            }
            ("B", _) => {
                self.rx.recv().await?;
                if let Some(pause) = self.b_timer {
                    Timer::after(pause).await;
                }
                self.probe.push("B");
                Ok("B".into())
            }
            (item, _) => {
                self.probe.push(item);
                Ok(item.into())
            }
        }
    }

    fn post(
        &self,
        store: &mut Vec<String>,
        _: &Params,
        _: Vec<&str>,
        outputs: Vec<String>,
    ) -> Result<Action> {
        *store = outputs;
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        2
    }

    fn wait(&self, error: &Error, cx: Ctx<'_>) -> Option<Duration> {
        api_decision(error, cx)
    }

    fn max_in_flight(&self) -> usize {
        2
    }
}

fn rate_limited_run(retry_after: Duration, b_timer: Option<Duration>) -> (Vec<String>, Vec<Seen>) {
    let probe = Arc::new(Probe::default());
    let (result, store, seen) = run_one("call", RateLimited::new(&probe, retry_after, b_timer));
    assert_eq!(result.unwrap(), Action::DEFAULT);
    assert_eq!(store, ["A", "B"], "outputs in input order");
    assert_eq!(probe.execs(), 3);
    let error = format!("429 retry after {retry_after:?}");
    assert_eq!(
        retries(&seen),
        [&Seen::Retry { node: "call[0]".into(), attempt: 0, error, delay: retry_after }],
        "the Retry event carries exactly the error's own pause"
    );
    assert_eq!(fallbacks(&seen), Vec::<&Seen>::new());
    (probe.log(), seen)
}

#[test]
fn a_rate_limit_pause_is_awaited_so_a_sibling_finishes_first() {
    // "B" is woken by A's first failure; if A's 40 ms pause were not awaited, A's second attempt
    // would run within the same poll, before B could be polled again. Nothing here depends on
    // how fast the machine is: B is already woken when A starts its pause.
    let (log, seen) = rate_limited_run(ms(40), None);
    assert_eq!(log, ["A failed", "B", "A"]);
    assert_eq!(seen.last(), Some(&Seen::End { node: "call".into(), attempts: 3 }));
}

#[test]
fn a_zero_pause_retries_at_once_so_the_order_comes_from_the_pause() {
    // The same run with `retry_after` 0: A retries within the same poll, before B runs.
    let (log, _) = rate_limited_run(Duration::ZERO, None);
    assert_eq!(log, ["A failed", "A", "B"]);
}

#[test]
fn a_rate_limit_pause_outlasts_a_much_shorter_timer() {
    // B starts a 1 ms timer only after A has started its 250 ms pause: only a stall of
    // 249 ms between two polls of the same task could flip the order. This shows the pause
    // is the error's, not merely a yield to the executor.
    let (log, _) = rate_limited_run(ms(250), Some(ms(1)));
    assert_eq!(log, ["A failed", "B", "A"]);
}

// ---------------------------------------------------------------------------------------------
// 3. max_retries() stays the upper bound
// ---------------------------------------------------------------------------------------------

#[test]
fn a_hook_that_always_retries_is_bounded_by_max_retries() {
    let probe = Arc::new(Probe::default());
    let (result, _, seen) = run_one("ask", Scripted::new(&probe, 3, usize::MAX));

    assert_eq!(node_failed(&result), ("ask", Phase::Exec, 3));
    assert_eq!(probe.execs(), 3);
    assert_eq!(probe.asked_attempts(), [0, 1], "never asked after the last attempt");
    assert_eq!(probe.fell_back(), [(2, "flaky on attempt 2".to_string())]);
    assert_eq!(retries(&seen).len(), 2);
    assert_eq!(fallbacks(&seen).len(), 1);
}

#[test]
fn a_single_attempt_never_asks_the_hook() {
    let probe = Arc::new(Probe::default());
    let (result, _, seen) = run_one("ask", Scripted::new(&probe, 1, usize::MAX));

    assert_eq!(node_failed(&result), ("ask", Phase::Exec, 1));
    assert_eq!(probe.execs(), 1);
    assert_eq!(probe.asked_attempts(), Vec::<usize>::new());
    assert_eq!(retries(&seen).len(), 0);
    assert_eq!(fallbacks(&seen).len(), 1);
}

#[test]
fn a_success_after_retries_counts_every_attempt() {
    let probe = Arc::new(Probe::default());
    let (result, store, seen) = run_one("ask", Scripted::new(&probe, 5, 2));

    assert_eq!(result.unwrap(), Action::DEFAULT);
    assert_eq!(store, ["ok on attempt 2"]);
    assert_eq!(probe.execs(), 3);
    assert_eq!(probe.asked_attempts(), [0, 1]);
    assert_eq!(probe.fell_back(), []);
    assert_eq!(seen.last(), Some(&Seen::End { node: "ask".into(), attempts: 3 }));
    assert_eq!(fallbacks(&seen).len(), 0);
}

/// A node that keeps every default but `exec` and `max_retries`: the default hook.
struct Defaults {
    probe: Arc<Probe>,
}

impl Node<Vec<String>> for Defaults {
    type Prep = ();
    type Output = String;

    fn prep(&self, _: &Vec<String>, _: &Params) -> Result<()> {
        Ok(())
    }

    async fn exec(&self, _: &(), cx: Ctx<'_>) -> Result<String> {
        self.probe.execs.fetch_add(1, SeqCst);
        match cx.attempt() {
            0 | 1 => Err(format!("attempt {}", cx.attempt()).into()),
            n => Ok(format!("ok on attempt {n}")),
        }
    }

    fn post(&self, store: &mut Vec<String>, _: (), output: String) -> Result<Action> {
        store.push(output);
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        3
    }
}

#[test]
fn the_default_hook_retries_at_once() {
    let probe = Arc::new(Probe::default());
    let (result, store, seen) = run_one("ask", Defaults { probe: probe.clone() });

    assert_eq!(result.unwrap(), Action::DEFAULT);
    assert_eq!(store, ["ok on attempt 2"]);
    assert_eq!(probe.execs(), 3);
    let retry = |attempt: usize| Seen::Retry {
        node: "ask".into(),
        attempt,
        error: format!("attempt {attempt}"),
        delay: Duration::ZERO,
    };
    assert_eq!(seen, [retry(0), retry(1), Seen::End { node: "ask".into(), attempts: 3 }]);
}

/// A batch node with every default but `exec` and `max_retries`: the default batch hook.
struct BatchDefaults;

impl BatchNode<Vec<String>> for BatchDefaults {
    type Item = usize;
    type Output = String;

    fn prep(&self, _: &Vec<String>, _: &Params) -> Result<Vec<usize>> {
        Ok(vec![0, 1])
    }

    async fn exec(&self, item: &usize, cx: Ctx<'_>) -> Result<String> {
        if cx.attempt() < *item {
            return Err(format!("item {item} attempt {}", cx.attempt()).into());
        }
        Ok(format!("item {item} ok on attempt {}", cx.attempt()))
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
        2
    }
}

#[test]
fn the_default_batch_hook_retries_at_once() {
    let (result, store, seen) = run_one("items", BatchDefaults);

    assert_eq!(result.unwrap(), Action::DEFAULT);
    assert_eq!(store, ["item 0 ok on attempt 0", "item 1 ok on attempt 1"]);
    assert_eq!(
        seen,
        [
            Seen::Retry {
                node: "items[1]".into(),
                attempt: 0,
                error: "item 1 attempt 0".into(),
                delay: Duration::ZERO,
            },
            Seen::End { node: "items".into(), attempts: 3 },
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Jitter
// ---------------------------------------------------------------------------------------------

/// `Backoff::new(100 ms, 10 s)` without jitter, computed by hand: 100 ms × 2^a, capped at 10 s.
fn unjittered(attempt: usize) -> Duration {
    if attempt >= 7 { ms(10_000) } else { ms(100 << attempt) }
}

#[test]
fn jitter_one_half_keeps_every_pause_between_half_and_all_of_it() {
    let backoff = Backoff::new(ms(100), ms(10_000)).jitter(0.5);
    for attempt in 0..=20 {
        let p = unjittered(attempt);
        for _ in 0..1_000 {
            let pause = backoff.delay(attempt);
            assert!(
                p / 2 <= pause && pause <= p,
                "attempt {attempt}: {pause:?} not in [{:?}, {p:?}]",
                p / 2
            );
        }
    }
}

#[test]
fn jitter_zero_is_exactly_the_pause() {
    let backoff = Backoff::new(ms(100), ms(10_000));
    assert_eq!(backoff.jitter(0.0), backoff);
    for attempt in 0..=20 {
        for _ in 0..100 {
            assert_eq!(backoff.jitter(0.0).delay(attempt), unjittered(attempt));
        }
    }
}

#[test]
fn full_jitter_stays_within_zero_and_the_pause() {
    let backoff = Backoff::new(ms(100), ms(10_000)).jitter(1.0);
    for attempt in 0..=20 {
        let p = unjittered(attempt);
        for _ in 0..1_000 {
            assert!(backoff.delay(attempt) <= p, "attempt {attempt}");
        }
    }
    // Full jitter reaches below half the pause (a jitter of 0.5 never does): of 1,000 draws
    // from [0, 100 ms], the chance that none falls below 50 ms is 2^-1000.
    assert!((0..1_000).any(|_| backoff.delay(0) < ms(50)));
}

#[test]
fn jittered_draws_differ_from_call_to_call() {
    // 1,000 draws from [50 ms, 100 ms] at nanosecond resolution (5 × 10^7 values): about 0.01
    // collisions are expected, so 990 distinct values hold unless the draws repeat.
    let backoff = Backoff::new(ms(100), ms(10_000)).jitter(0.5);
    let draws: HashSet<Duration> = (0..1_000).map(|_| backoff.delay(0)).collect();
    assert!(draws.len() >= 990, "only {} distinct draws of 1000", draws.len());
    // Draws really spread over the range: some in each half of it (chance of failure 2^-999).
    assert!(draws.iter().any(|&d| d < ms(75)) && draws.iter().any(|&d| d > ms(75)));
}

/// A batch node whose items `i` fail their attempts `0..fails[i]` with `"item i attempt a"`;
/// its hook records the call and asks `decide`.
struct Items {
    probe: Arc<Probe>,
    fails: Vec<usize>,
    max: usize,
    in_flight: usize,
    decide: fn(&Error, Ctx<'_>) -> Option<Duration>,
}

impl BatchNode<Vec<String>> for Items {
    type Item = (usize, usize);
    type Output = String;

    fn prep(&self, _: &Vec<String>, _: &Params) -> Result<Vec<(usize, usize)>> {
        Ok(self.fails.iter().copied().enumerate().collect())
    }

    async fn exec(&self, &(i, fails): &(usize, usize), cx: Ctx<'_>) -> Result<String> {
        self.probe.execs.fetch_add(1, SeqCst);
        if cx.attempt() < fails {
            return Err(Box::new(ApiError::Flaky(format!("item {i} attempt {}", cx.attempt()))));
        }
        Ok(format!("item {i} ok on attempt {}", cx.attempt()))
    }

    fn post(
        &self,
        store: &mut Vec<String>,
        _: &Params,
        _: Vec<(usize, usize)>,
        outputs: Vec<String>,
    ) -> Result<Action> {
        *store = outputs;
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        self.max
    }

    fn wait(&self, error: &Error, cx: Ctx<'_>) -> Option<Duration> {
        let call = (cx.node().to_string(), cx.attempt(), error.to_string());
        self.probe.asked.lock().unwrap().push(call);
        (self.decide)(error, cx)
    }

    fn max_in_flight(&self) -> usize {
        self.in_flight
    }
}

#[test]
fn concurrent_items_retry_apart_with_jitter() {
    // 40 items fail at once; each waits a jittered 20–40 ms before its retry. The pauses must
    // all differ. With nanosecond resolution there are 2 × 10^7 possible pauses, so the chance
    // that two of the 40 (780 pairs) collide is about 780 / (2 × 10^7) ≈ 4 × 10^-5. (Pauses of
    // 0.5–1 ms would collide about once in 400 runs of 50 items, hence the wider range; the
    // items wait concurrently, so the run still takes about 40 ms.)
    const N: usize = 40;
    let probe = Arc::new(Probe::default());
    let node = Items {
        probe: probe.clone(),
        fails: vec![1; N],
        max: 2,
        in_flight: usize::MAX,
        decide: |_, cx| Some(Backoff::new(ms(40), ms(80)).jitter(0.5).delay(cx.attempt())),
    };
    let (result, store, seen) = run_one("items", node);

    assert_eq!(result.unwrap(), Action::DEFAULT);
    assert_eq!(store, (0..N).map(|i| format!("item {i} ok on attempt 1")).collect::<Vec<_>>());
    assert_eq!(probe.execs(), 2 * N);
    let mut nodes = HashSet::new();
    let mut delays = HashSet::new();
    for seen in retries(&seen) {
        let Seen::Retry { node, attempt: 0, delay, .. } = seen else { panic!("{seen:?}") };
        assert!(ms(20) <= *delay && *delay <= ms(40), "{node}: {delay:?}");
        nodes.insert(node.clone());
        delays.insert(*delay);
    }
    assert_eq!(nodes.len(), N, "one retry per item");
    assert_eq!(delays.len(), N, "the items' pauses are pairwise distinct");
}

// ---------------------------------------------------------------------------------------------
// 5. The backoff schedule, its limits, and its panics
// ---------------------------------------------------------------------------------------------

#[test]
fn the_backoff_doubles_up_to_its_cap() {
    let backoff = Backoff::new(ms(100), ms(1_000));
    let pauses: Vec<Duration> = (0..6).map(|a| backoff.delay(a)).collect();
    assert_eq!(pauses, [ms(100), ms(200), ms(400), ms(800), ms(1_000), ms(1_000)]);
    // A cap that is not a power-of-two multiple of `first` is reached exactly too.
    let backoff = Backoff::new(ms(3), ms(10));
    let pauses: Vec<Duration> = (0..5).map(|a| backoff.delay(a)).collect();
    assert_eq!(pauses, [ms(3), ms(6), ms(10), ms(10), ms(10)]);
    // A cap equal to `first` is that pause every time.
    assert_eq!(Backoff::new(ms(7), ms(7)).delay(3), ms(7));
}

#[test]
fn a_cap_smaller_than_first_is_the_pause_every_time() {
    let backoff = Backoff::new(ms(500), ms(200));
    for attempt in [0, 1, 2, 10, 1_000, usize::MAX] {
        assert_eq!(backoff.delay(attempt), ms(200), "attempt {attempt}");
    }
}

#[test]
fn huge_attempts_and_caps_give_the_cap_without_panicking() {
    let ns = Duration::from_nanos;
    assert_eq!(Backoff::new(ms(100), ms(1_000)).delay(usize::MAX), ms(1_000));
    assert_eq!(Backoff::new(ns(1), Duration::MAX).delay(usize::MAX), Duration::MAX);
    assert_eq!(Backoff::new(Duration::MAX, Duration::MAX).delay(usize::MAX), Duration::MAX);
    assert_eq!(Backoff::new(ms(100), Duration::MAX).delay(1_000), Duration::MAX);
    // 2^64 s is beyond `Duration::MAX` (about 2^64 s - 1 ns): the doubling saturates.
    assert_eq!(Backoff::new(Duration::from_secs(1), Duration::MAX).delay(64), Duration::MAX);
    assert_eq!(
        Backoff::new(Duration::from_secs(1), Duration::MAX).delay(63),
        Duration::from_secs(1 << 63)
    );
    // With full jitter and no real cap, every draw is a pause no longer than the cap.
    let backoff = Backoff::new(ns(1), Duration::MAX).jitter(1.0);
    for attempt in [0, 1, 64, 100, usize::MAX] {
        for _ in 0..100 {
            assert!(backoff.delay(attempt) <= Duration::MAX);
        }
    }
    let backoff = Backoff::new(Duration::MAX, Duration::MAX).jitter(0.5);
    for _ in 0..100 {
        assert!(backoff.delay(usize::MAX) >= Duration::MAX / 2 - Duration::from_secs(1));
    }
}

#[test]
fn a_backoff_is_a_const_with_the_documented_first_pause() {
    const BACKOFF: Backoff = Backoff::new(ms(250), ms(4_000));
    assert_eq!(BACKOFF.delay(0), ms(250));
    assert_eq!(BACKOFF.delay(4), ms(4_000));
}

#[test]
#[should_panic(expected = "with a zero `first` or `cap` never pauses")]
fn a_zero_first_pause_panics() {
    let _ = Backoff::new(Duration::ZERO, ms(100));
}

#[test]
#[should_panic(expected = "with a zero `first` or `cap` never pauses")]
fn a_zero_cap_panics() {
    let _ = Backoff::new(ms(100), Duration::ZERO);
}

#[test]
#[should_panic(
    expected = "Backoff::jitter(-0.1): the fraction of each pause to randomize must be between 0 and 1"
)]
fn a_negative_jitter_panics() {
    let _ = Backoff::new(ms(100), ms(1_000)).jitter(-0.1);
}

#[test]
#[should_panic(
    expected = "Backoff::jitter(1.5): the fraction of each pause to randomize must be between 0 and 1"
)]
fn a_jitter_above_one_panics() {
    let _ = Backoff::new(ms(100), ms(1_000)).jitter(1.5);
}

#[test]
#[should_panic(
    expected = "Backoff::jitter(NaN): the fraction of each pause to randomize must be between 0 and 1"
)]
fn a_nan_jitter_panics() {
    let _ = Backoff::new(ms(100), ms(1_000)).jitter(f64::NAN);
}

#[test]
fn the_jitter_bounds_themselves_are_accepted() {
    let backoff = Backoff::new(ms(100), ms(1_000));
    assert_eq!(backoff.jitter(0.0).delay(1), ms(200));
    assert!(backoff.jitter(1.0).delay(1) <= ms(200));
}

// ---------------------------------------------------------------------------------------------
// 6. A batch node's hook sees per-item attempts
// ---------------------------------------------------------------------------------------------

fn per_item_hook_calls(in_flight: usize) {
    let probe = Arc::new(Probe::default());
    let node = Items {
        probe: probe.clone(),
        fails: vec![2, 1],
        max: 3,
        in_flight,
        decide: |_, _| Some(Duration::ZERO),
    };
    let (result, store, seen) = run_one("items", node);

    assert_eq!(result.unwrap(), Action::DEFAULT);
    assert_eq!(store, ["item 0 ok on attempt 2", "item 1 ok on attempt 1"]);
    let asked: HashSet<_> = probe.asked().into_iter().collect();
    let expected: HashSet<_> = [
        ("items[0]", 0, "item 0 attempt 0"),
        ("items[0]", 1, "item 0 attempt 1"),
        ("items[1]", 0, "item 1 attempt 0"),
    ]
    .into_iter()
    .map(|(node, attempt, error)| (node.to_string(), attempt, error.to_string()))
    .collect();
    assert_eq!(asked, expected);
    assert_eq!(probe.asked().len(), 3, "each call once");
    assert_eq!(probe.execs(), 5);
    assert_eq!(seen.last(), Some(&Seen::End { node: "items".into(), attempts: 5 }));
}

#[test]
fn a_batch_hook_sees_per_item_attempts_in_sequence() {
    per_item_hook_calls(1);
}

#[test]
fn a_batch_hook_sees_per_item_attempts_concurrently() {
    per_item_hook_calls(2);
}

// ---------------------------------------------------------------------------------------------
// 7. A timeout is an attempt the hook sees
// ---------------------------------------------------------------------------------------------

#[test]
fn a_timed_out_attempt_is_handed_to_the_hook() {
    let probe = Arc::new(Probe::default());
    let node = Scripted {
        timeout: Some(ms(5)),
        sleep_first: Some(Duration::from_secs(1)),
        decide: |error, cx| {
            let timed_out = error.downcast_ref::<TimedOut>().expect("a TimedOut error");
            assert_eq!((timed_out.after, timed_out.fallback, cx.attempt()), (ms(5), false, 0));
            Some(Duration::ZERO)
        },
        ..Scripted::new(&probe, 2, 0)
    };
    let (result, store, seen) = run_one("slow", node);

    assert_eq!(result.unwrap(), Action::DEFAULT);
    assert_eq!(store, ["ok on attempt 1"]);
    assert_eq!(probe.execs(), 2);
    assert_eq!(probe.asked(), [("slow".to_string(), 0, "exec timed out after 5ms".to_string())]);
    assert_eq!(
        seen,
        [
            Seen::Retry {
                node: "slow".into(),
                attempt: 0,
                error: "exec timed out after 5ms".into(),
                delay: Duration::ZERO,
            },
            Seen::End { node: "slow".into(), attempts: 2 },
        ]
    );
}

#[test]
fn a_node_with_a_timeout_that_succeeds_at_once_counts_one_attempt() {
    // With a timeout, even the first attempt runs inside `recover`, under the timer.
    let probe = Arc::new(Probe::default());
    let node = Scripted { timeout: Some(Duration::from_secs(60)), ..Scripted::new(&probe, 3, 0) };
    let (result, store, seen) = run_one("quick", node);

    assert_eq!(result.unwrap(), Action::DEFAULT);
    assert_eq!(store, ["ok on attempt 0"]);
    assert_eq!(probe.asked_attempts(), Vec::<usize>::new());
    assert_eq!(seen, [Seen::End { node: "quick".into(), attempts: 1 }]);
}

#[test]
fn a_timeout_with_a_hook_that_gives_up_fails_with_timed_out_after_one_attempt() {
    let probe = Arc::new(Probe::default());
    let node = Scripted {
        timeout: Some(ms(5)),
        sleep_first: Some(Duration::from_secs(1)),
        decide: |error, _| (!error.is::<TimedOut>()).then_some(Duration::ZERO),
        ..Scripted::new(&probe, 4, 0)
    };
    let (result, _, seen) = run_one("slow", node);

    assert_eq!(node_failed(&result), ("slow", Phase::Exec, 1));
    let source = result.as_ref().unwrap_err().source().unwrap();
    let timed_out = source.downcast_ref::<TimedOut>().expect("the source is the TimedOut");
    assert_eq!((timed_out.after, timed_out.fallback), (ms(5), false));
    assert_eq!(probe.execs(), 1);
    assert_eq!(probe.fell_back(), [(0, "exec timed out after 5ms".to_string())]);
    assert_eq!(
        seen,
        [Seen::Fallback { node: "slow".into(), error: "exec timed out after 5ms".into() }]
    );
}
