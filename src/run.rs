//! The machinery every run goes through: the object-safe [`Step`] a flow stores, the
//! [`Store`] handle, node paths, and the retry loop around `exec`.
//!
//! # How it works
//!
//! The public traits ([`Node`](crate::Node), [`BatchNode`](crate::BatchNode)) have associated
//! types and `impl Future` methods, so they cannot be trait objects. [`IntoNode`] wraps each
//! added node in a small adapter that implements [`Step`], whose `run` does the whole visit
//! (prep, exec with retries, post) and returns it as one boxed future: that box is the only
//! allocation a plain node run makes. A [`Flow`](crate::Flow) is a `Step` too, which is what
//! lets flows nest.
//!
//! A run holds the store as [`Store::Own`] (`&mut S`) for as long as it is sequential: no lock,
//! no copy. Only where sub-runs go concurrent (a `BatchAsyncFlow`) is the `&mut S` moved into a
//! mutex, and each `prep` and `post` then locks it for exactly the duration of that synchronous
//! call. Since every sub-run is polled inside the one task of the caller, the lock is never
//! contended and never held across an `.await`.

use std::fmt;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_io::Timer;
use futures::future::{self, BoxFuture, Either};
use futures::{StreamExt, stream};

use crate::{Action, Ctx, Error, Event, Flow, FlowError, Observer, Params, Phase, TimedOut};

/// The most attempts a node may ask for with `max_retries()`; above it the run fails with
/// [`FlowError::InvalidConfig`] instead of retrying (nearly) forever.
pub const MAX_ATTEMPTS: usize = 1_000;

/// How deep flows may nest: the outermost flow, the flows, batch flows and parallel nodes
/// inside it, and so on, 64 levels in all. A run of a deeper tree fails before any node runs
/// with [`FlowError::InvalidConfig`], naming the node one level too deep.
///
/// Each level of nesting is one more future polled inside the one around it, so it takes
/// stack: in a debug build from 3 KiB (a [`Flow`]) to 19 KiB (a
/// [`BatchAsyncFlow`](crate::BatchAsyncFlow) with an observer), a tenth of that in a release
/// build. At this limit a run stays within the 2 MiB stack of a spawned thread or a tokio
/// worker even in a debug build, where without it a stack overflow would abort the process.
pub const MAX_DEPTH: usize = 64;

/// What a step's run ends with inside a run. The error is boxed so that the `Result` moved
/// through every visit is as small as an `Action` (a `FlowError` is ten times larger); it is
/// unboxed once, where the run returns to the caller.
pub type Outcome<T> = Result<T, Box<FlowError>>;

/// One visit of a step, as a boxed future: it ends with the node's action and the attempts
/// its `exec` made (0 for the flows).
pub type Visit<'a> = BoxFuture<'a, Outcome<(Action, usize)>>;

/// A node as a flow stores it: one object-safe method that runs a whole visit and returns the
/// action with the attempts made, and one that tells diagrams and validation what it holds.
pub trait Step<S>: Send + Sync {
    fn run<'a>(&'a self, store: Store<'a, S>, scope: &'a Scope<'a>) -> Visit<'a>;

    fn shape(&self) -> Shape<'_, S> {
        Shape::Node
    }
}

/// What a step is made of, for [`Flow::to_mermaid`] and [`Flow::validate`].
#[allow(missing_debug_implementations)]
pub enum Shape<'a, S> {
    Node,
    BatchNode,
    /// A flow, or a batch flow's inner flow with the label the diagram gives the batch flow.
    Flow(&'a Flow<S>, Option<&'static str>),
    Parallel(&'a [(String, Box<dyn Step<S>>)]),
}

/// Boxes the future `make` builds, allocating first.
///
/// `Box::pin(future)` builds the future on the stack and then allocates; since allocating may
/// unwind, the compiler must keep the stack copy and `memcpy` it into the box — for a node
/// run's future, a few hundred bytes copied on every node run (measured: a quarter of the
/// cycles of a trivial node run). Allocating first lets the future be written straight into
/// the box.
#[inline(always)]
pub fn boxed<'a, F>(make: impl FnOnce() -> F) -> BoxFuture<'a, F::Output>
where
    F: Future + Send + 'a,
{
    let future: Box<F> = Box::write(Box::new_uninit(), make());
    Box::into_pin(future)
}

/// The shared store as a run holds it. Never seen by users, and a `dyn Lock` has nothing to
/// print, so it has no `Debug`.
#[allow(missing_debug_implementations)]
pub enum Store<'a, S> {
    /// Exclusive access: the sequential case.
    Own(&'a mut S),
    /// Access shared between concurrent sub-runs, locked per `prep` and `post`.
    Shared(&'a (dyn Lock<S> + 'a)),
}

/// A lock around the store that concurrent sub-runs share. Object-safe so that a
/// `Store::Shared` can be reborrowed for a shorter lifetime.
pub trait Lock<S>: Sync {
    fn with(&self, f: &mut dyn FnMut(&mut S));
}

impl<S: Send> Lock<S> for Mutex<&mut S> {
    fn with(&self, f: &mut dyn FnMut(&mut S)) {
        // A poisoned lock means a sibling panicked inside prep or post; that panic is already
        // unwinding through this same task, so the data is never looked at again.
        let mut guard = self.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }
}

impl<S: Send> Store<'_, S> {
    /// The lock concurrent sub-runs share: the store's own if it is shared already, else a
    /// mutex (kept in `own`) around the `&mut S`.
    pub fn lock<'b>(&'b mut self, own: &'b mut Option<Mutex<&'b mut S>>) -> &'b (dyn Lock<S> + 'b) {
        match self {
            Store::Own(s) => own.insert(Mutex::new(s)),
            Store::Shared(lock) => *lock,
        }
    }
}

impl<S> Store<'_, S> {
    pub fn reborrow(&mut self) -> Store<'_, S> {
        match self {
            Store::Own(s) => Store::Own(s),
            Store::Shared(lock) => Store::Shared(*lock),
        }
    }

    /// Runs `f` with the store (for `prep` and `post`: synchronous, so never across an await).
    pub fn with<R>(&mut self, f: impl FnOnce(&mut S) -> R) -> R {
        match self {
            Store::Own(s) => f(s),
            Store::Shared(lock) => {
                let (mut f, mut out) = (Some(f), None);
                lock.with(&mut |s| out = f.take().map(|f| f(s)));
                out.expect("Lock::with calls its closure once")
            }
        }
    }

    /// Runs one synchronous phase (`prep` or `post`) of the node at `path` with the store,
    /// turning its error into a [`FlowError`] that names the node.
    #[inline]
    pub fn phase<T>(
        &mut self,
        path: &NodePath<'_>,
        phase: Phase,
        attempts: usize,
        f: impl FnOnce(&mut S) -> Result<T, Error>,
    ) -> Outcome<T> {
        self.with(f).map_err(|e| failed(path, phase, attempts, e))
    }
}

/// The error path of [`Store::phase`], kept out of line so that the visit stays small.
#[cold]
fn failed(path: &NodePath<'_>, phase: Phase, attempts: usize, error: Error) -> Box<FlowError> {
    Box::new(FlowError::user(path, phase, attempts, error))
}

/// Where a step runs: its path, the params its parent passes down, and the run it belongs to.
/// Steps get it by reference: a one-word argument keeps the setup of every node run's boxed
/// future to a few stores (passed by value, its three words made that a 400-byte copy).
#[derive(Clone, Copy)]
#[allow(missing_debug_implementations)]
pub struct Scope<'a> {
    pub params: &'a Params,
    pub path: &'a NodePath<'a>,
    pub run: &'a RunCx<'a>,
}

/// Where a node sits in a run: the names given to [`Flow::add`](crate::Flow::add) from the
/// outermost flow inwards, joined by `/`, with `[i]` for item or sub-run `i` of a batch.
///
/// It displays as `"school[1]/class[0]/average"`: [`FlowError`]s, [`Event`]s and
/// [`Ctx::node`] name nodes this way. It is a list of borrowed names on the stack, so a run
/// builds it for free; call `to_string()` to keep it.
#[derive(Clone, Copy)]
pub struct NodePath<'a> {
    parent: Option<&'a NodePath<'a>>,
    name: &'a str,
    index: Option<usize>,
}

impl<'a> NodePath<'a> {
    /// The path of the outermost flow: displays as the empty string.
    pub(crate) const ROOT: NodePath<'static> = NodePath { parent: None, name: "", index: None };

    pub(crate) fn child(&'a self, name: &'a str) -> NodePath<'a> {
        NodePath { parent: Some(self), name, index: None }
    }

    /// This same node, marked as item or sub-run `index` of it.
    pub(crate) fn item(&self, index: usize) -> NodePath<'a> {
        NodePath { index: Some(index), ..*self }
    }

    pub(crate) fn is_root(&self) -> bool {
        self.parent.is_none() && self.name.is_empty() && self.index.is_none()
    }
}

impl fmt::Display for NodePath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(parent) = self.parent.filter(|p| !p.is_root()) {
            write!(f, "{parent}/")?;
        }
        f.write_str(self.name)?;
        match self.index {
            Some(i) => write!(f, "[{i}]"),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for NodePath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Checks a node's settings before its prep runs (so a bad setting costs no work): attempts
/// between 1 and [`MAX_ATTEMPTS`], a timeout that is not zero, an in-flight limit above 0
/// (1 for a plain node). Inline, with the message built out of line.
#[inline]
pub fn check(
    attempts: usize,
    timeout: Option<Duration>,
    in_flight: usize,
    path: &NodePath<'_>,
) -> Outcome<()> {
    match (1..=MAX_ATTEMPTS).contains(&attempts) && timeout != Some(Duration::ZERO) {
        true if in_flight > 0 => Ok(()),
        _ => Err(bad_settings(attempts, timeout, path)),
    }
}

#[cold]
fn bad_settings(attempts: usize, timeout: Option<Duration>, path: &NodePath<'_>) -> Box<FlowError> {
    let message = if !(1..=MAX_ATTEMPTS).contains(&attempts) {
        format!(
            "max_retries() is {attempts}, but it counts every attempt, the first included, and \
             must be between 1 and {MAX_ATTEMPTS}"
        )
    } else if timeout == Some(Duration::ZERO) {
        "timeout() is zero, so every attempt would time out; return None for no time limit".into()
    } else {
        "max_in_flight() is 0, so no item could ever run; return 1 to run items one after \
         another, or usize::MAX for no limit"
            .into()
    };
    invalid(path, format!("node `{path}`: {message}"))
}

/// Runs `$node.exec($input, cx)` up to `max_retries()` times, each attempt cut short by the
/// node's timeout, pausing as its `wait` decides between attempts, then `exec_fallback` on
/// the last error. Evaluates to the output and the attempts made. `$node` is a [`Node`] or a
/// [`BatchNode`]: their methods share names, and a macro needs no trait over both.
///
/// The common case — no timeout, and the first attempt succeeds — awaits `exec` in place.
/// Everything else is [`recover`], boxed apart: its timers and closures would otherwise
/// double the size of every node run's future. A macro, not an `async fn`, so that the future
/// it is written into holds only what `exec` needs while the first attempt runs.
///
/// [`Node`]: crate::Node
/// [`BatchNode`]: crate::BatchNode
macro_rules! retry {
    ($node:expr, $input:expr, $cx:expr) => {{
        let (node, input, cx) = ($node, $input, $cx);
        let first = match node.timeout() {
            None => Some(node.exec(input, cx).await),
            Some(_) => None,
        };
        match first {
            Some(Ok(output)) => Ok((output, 1)),
            first => {
                let failed = first.and_then(Result::err);
                let exec = |cx| node.exec(input, cx);
                let fallback = |error, cx| node.exec_fallback(input, error, cx);
                let wait = |error: &_, cx| node.wait(error, cx);
                let rest = $crate::run::recover(cx, node.timeout(), failed, exec, wait, fallback);
                Box::pin(rest).await
            }
        }
    }};
}
pub(crate) use retry;

/// What [`retry!`] does after a first attempt that failed with `failed` (or from the first
/// attempt, if `failed` is `None`: a node with a timeout makes it here, under the timer).
pub async fn recover<'p, T, F, B>(
    mut cx: Ctx<'p>,
    timeout: Option<Duration>,
    mut failed: Option<Error>,
    exec: impl Fn(Ctx<'p>) -> F,
    wait: impl Fn(&Error, Ctx<'p>) -> Option<Duration>,
    fallback: impl FnOnce(Error, Ctx<'p>) -> B,
) -> Outcome<(T, usize)>
where
    F: Future<Output = Result<T, Error>>,
    B: Future<Output = Result<T, Error>>,
{
    loop {
        let error = match failed.take() {
            Some(error) => error,
            None => match timed(exec(cx), timeout, false).await {
                Ok(out) => return Ok((out, cx.attempt() + 1)),
                Err(error) => error,
            },
        };
        let (node, attempt) = (cx.path, cx.attempt());
        let delay = if attempt + 1 < cx.max_retries() { wait(&error, cx) } else { None };
        let Some(delay) = delay else {
            cx.report(&Event::Fallback { node, error: &error });
            let attempts = attempt + 1;
            return match timed(fallback(error, cx), timeout, true).await {
                Ok(out) => Ok((out, attempts)),
                Err(error) => Err(FlowError::user(node, Phase::Exec, attempts, error).into()),
            };
        };
        cx.report(&Event::Retry { node, attempt, error: &error, delay });
        drop(error);
        if !delay.is_zero() {
            Timer::after(delay).await;
        }
        cx.attempt += 1;
    }
}

/// `work` (an attempt of `exec`, or `exec_fallback` if `fallback`), cut short with a
/// [`TimedOut`] error if it runs past `limit`.
async fn timed<T>(
    work: impl Future<Output = Result<T, Error>>,
    limit: Option<Duration>,
    fallback: bool,
) -> Result<T, Error> {
    let Some(after) = limit else { return work.await };
    match future::select(pin!(work), Timer::after(after)).await {
        Either::Left((result, _)) => result,
        Either::Right(_) => Err(Box::new(TimedOut { after, fallback })),
    }
}

/// What every step of one run shares: the observer, and the count of node runs so far with its
/// limit.
#[allow(missing_debug_implementations)]
pub struct RunCx<'a> {
    pub observer: Option<&'a dyn Observer>,
    steps: AtomicUsize,
    max_steps: usize,
}

impl<'a> RunCx<'a> {
    pub fn new(observer: Option<&'a dyn Observer>, max_steps: usize) -> Self {
        RunCx { observer, steps: AtomicUsize::new(0), max_steps }
    }

    /// Whether the run has a step limit.
    pub fn limited(&self) -> bool {
        self.max_steps < usize::MAX
    }
}

/// How often a run gives its executor a [`Turn`]: every `TURN`th pass of each of its loops
/// (a flow's node runs, a batch node's items, a batch flow's sub-runs, finished concurrent
/// jobs), where no `post` is halfway. So a run whose nodes never await still returns to its
/// executor regularly — to be cancelled, and to let other tasks and timers run.
///
/// Each loop counts its own passes in a local: measured with `benches/instructions.py`, a
/// count shared by the whole run (an atomic in [`RunCx`]) cost a batch item a third more
/// instructions, since its store made the compiler reload the loop's state on every item.
/// The price is that nested loops multiply: a loop whose every pass runs an inner loop that
/// ends within 256 passes (a flow of a few nodes, a batch of a few items) turns every 256 of
/// its own passes, so every 256 × (inner passes) units of work; with three such levels,
/// 255 × 255 × 255 units can run between two turns. A design without that price — inner loops
/// report their passes, and a flow's loop adds them to its own count after each step that has
/// loops — measured 2 to 4 % more instructions per node run of a plain chain, above the 2 %
/// this feature may cost there.
pub const TURN: usize = 256;

/// A turn for the executor: wakes its task and returns `Pending` once. The one await in the
/// crate outside an `exec` or a `wait`.
///
/// Hand-written, not `async`: an `async fn` (or `poll_fn` over a flag) awaited in a batch's
/// item loop cost each item a fifth more instructions even when no turn was due; this costs
/// nothing measurable. It is `Unpin`, so it needs no pin projection.
#[must_use = "a turn is given only when awaited"]
pub struct Turn(bool);

impl Turn {
    pub fn new() -> Self {
        Turn(false)
    }
}

impl Future for Turn {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if std::mem::replace(&mut self.0, true) {
            return Poll::Ready(());
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// The most recent node runs of a flow that a [`FlowError::StepLimit`] lists.
pub const RECENT: usize = 8;

/// One node run, as a flow or a [`Parallel`](crate::Parallel) makes it: counts it against the
/// run's step limit and, if the run has an observer, reports its start and end. Returns the
/// node's action and the attempts it made.
///
/// [`Flow::run_in`] does the same inline, so that its loop awaits the step's own future
/// directly: one future less to build and move on every node run.
pub async fn visit<S>(
    step: &dyn Step<S>,
    store: Store<'_, S>,
    scope: &Scope<'_>,
) -> Outcome<(Action, usize)> {
    count(scope.run, scope.path)?;
    match scope.run.observer {
        None => step.run(store, scope).await,
        Some(observer) => observed(observer, step, store, scope).await,
    }
}

/// Counts a node run against the run's step limit.
#[inline]
pub fn count(run: &RunCx<'_>, path: &NodePath<'_>) -> Outcome<()> {
    if !run.limited() {
        return Ok(()); // nothing to count against
    }
    // Sub-runs of one run are polled by one task, one at a time, so a load and a store (no
    // locked read-modify-write) count exactly.
    let steps = run.steps.load(Relaxed);
    if steps >= run.max_steps {
        return Err(step_limit(run.max_steps, path));
    }
    run.steps.store(steps + 1, Relaxed);
    Ok(())
}

/// A node run reported to `observer`.
pub async fn observed<S>(
    observer: &dyn Observer,
    step: &dyn Step<S>,
    store: Store<'_, S>,
    scope: &Scope<'_>,
) -> Outcome<(Action, usize)> {
    let node = scope.path;
    observer.event(&Event::NodeStart { node });
    let started = Instant::now();
    let (action, attempts) = step.run(store, scope).await?;
    let elapsed = started.elapsed();
    observer.event(&Event::NodeEnd { node, action: &action, attempts, elapsed });
    Ok((action, attempts))
}

/// The step limit's error, refusing to start the node at `path`.
#[cold]
fn step_limit(limit: usize, path: &NodePath<'_>) -> Box<FlowError> {
    // Each flow the error leaves adds the nodes it had visited (see `Flow::run_in`).
    Box::new(FlowError::StepLimit { limit, last: Vec::new(), next: path.to_string() })
}

/// A flow or node at `path` that cannot run as it is built or set, and why.
#[cold]
pub fn invalid(path: &NodePath<'_>, message: String) -> Box<FlowError> {
    Box::new(FlowError::InvalidConfig { node: path.to_string(), message })
}

/// Awaits every job, at most `limit` at a time, failing on the first error (the others are
/// dropped), and returns the outputs in input order with the attempts summed. Each job yields
/// its own index with its result. Every [`TURN`]th finished job gives the executor a turn:
/// jobs that never await would otherwise keep the loop going. (Sequential loops are written
/// out where they run, so that each job's future is awaited where it is built.)
pub async fn run_all<T, F>(jobs: impl Iterator<Item = F>, limit: usize) -> Outcome<(Vec<T>, usize)>
where
    F: Future<Output = (usize, Outcome<(T, usize)>)>,
{
    let mut slots: Vec<Option<T>> = Vec::with_capacity(jobs.size_hint().0);
    let (mut running, mut done, mut total) =
        (stream::iter(jobs).buffer_unordered(limit), 0usize, 0);
    while let Some((i, result)) = running.next().await {
        let (out, attempts) = result?;
        if slots.len() <= i {
            slots.resize_with(i + 1, || None);
        }
        slots[i] = Some(out);
        total += attempts;
        done += 1;
        if done.is_multiple_of(TURN) {
            Turn::new().await;
        }
    }
    let outputs = slots.into_iter().map(|o| o.expect("every job finished")).collect();
    Ok((outputs, total))
}

mod sealed {
    /// The conversion behind [`IntoNode`](super::IntoNode); private so that the set of things a
    /// flow accepts stays the crate's to decide.
    pub trait Sealed<S, M> {
        fn into_step(self) -> Box<dyn super::Step<S>>;
    }
}
pub(crate) use sealed::Sealed;

/// What [`Flow::add`](crate::Flow::add) and [`Parallel::branch`](crate::Parallel::branch)
/// accept: any [`Node`](crate::Node), any [`BatchNode`](crate::BatchNode), the flows —
/// [`Flow`](crate::Flow), [`BatchFlow`](crate::BatchFlow) and
/// [`BatchAsyncFlow`](crate::BatchAsyncFlow) — and [`Parallel`](crate::Parallel).
///
/// The trait is implemented by the crate only; `M` is an inferred marker that tells the kinds
/// apart, so you never name it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be added to a `Flow<{S}>`",
    label = "not a node over the store `{S}`",
    note = "implement `Node<{S}>` or `BatchNode<{S}>` for it, or add a `Flow<{S}>`, `BatchFlow<{S}>`, `BatchAsyncFlow<{S}>` or `Parallel<{S}>`; the node must be `'static` and the store `{S}` must be `Send`"
)]
pub trait IntoNode<S, M>: sealed::Sealed<S, M> {}

impl<S, M, T: sealed::Sealed<S, M>> IntoNode<S, M> for T {}

/// The markers that keep the blanket conversions of [`IntoNode`] apart. Never named by users.
#[doc(hidden)]
pub mod marker {
    /// A [`Node`](crate::Node).
    #[derive(Debug)]
    pub enum Leaf {}
    /// A [`BatchNode`](crate::BatchNode).
    #[derive(Debug)]
    pub enum Batch {}
    /// One of the flows.
    #[derive(Debug)]
    pub enum Nested {}
}
