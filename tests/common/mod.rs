//! Helpers shared by the integration tests: a user error type and yields that work on any
//! executor (and under a hand-written poll loop).

// Each test file uses only some of these.
#![allow(dead_code)]

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

/// A user's own error type, to check that it survives as the `source()` of a `FlowError`.
#[derive(Debug, PartialEq)]
pub struct Failure(pub String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

/// A boxed [`Failure`] with `message`.
pub fn failure(message: impl Into<String>) -> miniflow::Error {
    Box::new(Failure(message.into()))
}

/// Returns `Pending` `n` times, waking its own task each time, then `Ready`.
pub struct YieldNow(pub usize);

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 == 0 {
            return Poll::Ready(());
        }
        self.0 -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Gives way to the other futures of the task `n` times.
pub async fn yield_times(n: usize) {
    YieldNow(n).await
}

/// What concurrent `exec`s did: how many were in flight (now and at most), how many were
/// dropped before they finished, and an event log.
#[derive(Default)]
pub struct Probe {
    now: AtomicUsize,
    max: AtomicUsize,
    dropped: AtomicUsize,
    events: Mutex<Vec<String>>,
}

impl Probe {
    pub fn now(&self) -> usize {
        self.now.load(Ordering::SeqCst)
    }

    pub fn max_in_flight(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }

    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }

    pub fn event(&self, event: String) {
        self.events.lock().unwrap().push(event);
    }

    pub fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }
}

/// Marks an `exec` as in flight while it lives; counts it as dropped if it never `finish`ed.
pub struct InFlight<'a> {
    probe: &'a Probe,
    finished: bool,
}

impl<'a> InFlight<'a> {
    pub fn enter(probe: &'a Probe) -> Self {
        let now = probe.now.fetch_add(1, Ordering::SeqCst) + 1;
        probe.max.fetch_max(now, Ordering::SeqCst);
        InFlight { probe, finished: false }
    }

    pub fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.probe.now.fetch_sub(1, Ordering::SeqCst);
        if !self.finished {
            self.probe.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The seed of the randomized tests: the `MINIFLOW_SEED` environment variable (a `u64`) when
/// it is set, and [`DEFAULT_SEED`] otherwise, so that every run is the same unless asked to
/// search elsewhere: `MINIFLOW_SEED=7 cargo test --test model`.
pub fn seed() -> u64 {
    match std::env::var("MINIFLOW_SEED") {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| {
            panic!("MINIFLOW_SEED must be a whole number (a u64), not {text:?}")
        }),
        Err(_) => DEFAULT_SEED,
    }
}

/// The seed used when `MINIFLOW_SEED` is not set.
pub const DEFAULT_SEED: u64 = 20_261_122;

/// A small deterministic random number generator (SplitMix64): the same seed gives the same
/// numbers on every machine.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

/// Polls `future` with a waker that does nothing until it finishes or `limit` polls were made,
/// then drops it. Returns its output, if it finished, and the number of polls made. (Every
/// pending future in these tests wakes itself, so each poll makes progress.)
pub fn poll_by_hand<F: Future>(future: F, limit: usize) -> (Option<F::Output>, usize) {
    let mut cx = Context::from_waker(futures::task::noop_waker_ref());
    let mut future = std::pin::pin!(future);
    for polls in 1..=limit {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return (Some(output), polls);
        }
    }
    (None, limit)
}

/// Calls `f`, which must panic, and returns the panic's message.
pub fn panics<R>(f: impl FnOnce() -> R) -> String {
    let payload = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(_) => panic!("expected a panic, but the call returned"),
        Err(payload) => payload,
    };
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(message) => message.to_string(),
            Err(_) => panic!("a panic without a message"),
        },
    }
}

/// Asserts that `build` panics because it was given `id`, an id of another flow, with the
/// message that says so.
pub fn assert_foreign<R>(build: impl FnOnce() -> R, id: miniflow::NodeId) {
    assert_eq!(
        panics(build),
        format!("{id:?} was returned by another flow's `add`; connect only ids this flow returned")
    );
}

/// Asserts that `build` panics because `node` already has an edge for `action`, with the
/// message that says so.
pub fn assert_duplicate<R>(build: impl FnOnce() -> R, node: &str, action: &str) {
    assert_eq!(
        panics(build),
        format!(
            "node `{node}` already has an edge for action {action:?}; an action leads to one place, \
             so remove one of the two edges or give it another action"
        )
    );
}

/// One event as a compact line, without timings (`elapsed` is dropped):
///
/// - `start`, `finished <action>`, `failed <error>`, `cancelled`
/// - `node+ <path>`, `node- <path> <action> <attempts>`
/// - `retry <path>#<attempt> <error> <delay>`, `fallback <path> <error>`
/// - `custom <path> <kind>: <data>`, `kept <error with its causes>` (a sub-run's failure
///   that a `post_outcomes` post will see)
pub fn line(event: &miniflow::Event<'_>) -> String {
    use miniflow::Event;
    match event {
        Event::RunStart => "start".into(),
        Event::NodeStart { node, .. } => format!("node+ {node}"),
        Event::NodeEnd { node, action, attempts, .. } => {
            format!("node- {node} {action} {attempts}")
        }
        Event::Retry { node, attempt, error, delay, .. } => {
            format!("retry {node}#{attempt} {error} {delay:?}")
        }
        Event::Fallback { node, error, .. } => format!("fallback {node} {error}"),
        Event::Custom { node, kind, data, .. } => format!("custom {node} {kind}: {data}"),
        Event::SubRunFailed { error, .. } => format!("kept {error:#}"),
        Event::Finished { action, .. } => format!("finished {action}"),
        Event::Failed { error, .. } => format!("failed {error}"),
        Event::Cancelled => "cancelled".into(),
        other => format!("unexpected {other}"),
    }
}
