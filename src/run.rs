//! The machinery every run goes through: the [`Step`] a flow stores for each node, the
//! [`Store`] handle, node paths, the step count, turns for the executor, and the concurrent
//! runner.
//!
//! # How it works
//!
//! The public traits ([`Node`](crate::Node), [`BatchNode`](crate::BatchNode)) have associated
//! types and `impl Future` methods, so they cannot be trait objects. [`IntoNode`] wraps each
//! added node in a small adapter that implements [`Leaf`], whose `run` does the whole visit
//! (prep, exec with retries, post) and returns it as one boxed future: that box is the only
//! allocation a plain node run makes. A flow stores each node as a [`Step`]: such a leaf, a
//! nested [`Flow`] (which is what lets flows nest), or a fan-out (a batch flow
//! or a parallel node), whose insides validation and diagrams look into.
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

use futures::future::{self, BoxFuture, Either};
use futures::{StreamExt, stream};

use crate::fan::Fan;
use crate::{Action, Error, Event, Flow, FlowError, Observer, Params, Phase};

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

/// A node or batch node as a flow stores it: one object-safe method that runs a whole visit
/// (prep, `exec` with its retries, post) and returns it as one boxed future.
pub trait Leaf<S>: Send + Sync {
    fn run<'a>(&'a self, store: Store<'a, S>, scope: &'a Scope<'a>) -> Visit<'a>;
}

/// A node as a flow stores it: a leaf, type-erased, or one of the composites of the crate,
/// which validation and diagrams look into.
#[allow(missing_debug_implementations)]
pub enum Step<S> {
    /// A [`Node`](crate::Node), or (`true`) a [`BatchNode`](crate::BatchNode).
    Leaf(Box<dyn Leaf<S>>, bool),
    Flow(Box<Flow<S>>),
    /// A batch flow or a parallel node.
    Fan(Box<Fan<S>>),
}

impl<S: Send> Step<S> {
    /// Runs one visit of the step; a nested flow starts at `start` (a path inside it, when a
    /// run resumes there) and saves checkpoints with `save`. Inline: in a flow's loop, the
    /// match costs a leaf's visit one branch (measured: 16 instructions per node run of a
    /// chain when it was a call).
    #[inline]
    pub fn run<'a>(
        &'a self,
        store: Store<'a, S>,
        scope: &'a Scope<'a>,
        start: Option<&'a str>,
        save: Option<&'a mut Save<'_, S>>,
    ) -> Visit<'a> {
        match self {
            Step::Leaf(leaf, _) => leaf.run(store, scope),
            Step::Flow(flow) => {
                boxed(move || async move { Ok((flow.run_in(store, scope, start, save).await?, 0)) })
            }
            Step::Fan(fan) => boxed(move || async move { Ok((fan.run(store, scope).await?, 0)) }),
        }
    }
}

/// A checkpoint hook: see [`RunOptions::checkpoint`](crate::RunOptions::checkpoint).
pub type Save<'a, S> = dyn FnMut(&S, &str) -> Result<(), Error> + Send + 'a;

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
/// [`Ctx::node`](crate::Ctx::node) name nodes this way. It is a list of borrowed names on the stack, so a run
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

/// What every step of one run shares: the observer, and the count of node runs so far with its
/// limit.
#[allow(missing_debug_implementations)]
pub struct RunCx<'a> {
    pub observer: Option<&'a dyn Observer>,
    steps: AtomicUsize,
    pub max_steps: usize,
}

impl<'a> RunCx<'a> {
    pub fn new(observer: Option<&'a dyn Observer>, max_steps: usize) -> Self {
        RunCx { observer, steps: AtomicUsize::new(0), max_steps }
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
#[derive(Default)]
#[must_use = "a turn is given only when awaited"]
pub struct Turn(bool);

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

/// Counts a node run against the run's step limit.
#[inline]
pub fn count(run: &RunCx<'_>, path: &NodePath<'_>) -> Outcome<()> {
    if run.max_steps == usize::MAX {
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

/// A visit with a time limit or an observer (or both): the slow path of a flow's loop, boxed
/// there so that the plain visit's future stays small.
pub async fn watched(
    visit: Visit<'_>,
    limit: Option<Duration>,
    observer: Option<&dyn Observer>,
    node: &NodePath<'_>,
) -> Outcome<(Action, usize)> {
    if let Some(observer) = observer {
        observer.event(&Event::NodeStart { node });
    }
    let started = Instant::now();
    let (action, attempts) = within(visit, limit, node).await?;
    if let Some(observer) = observer {
        let elapsed = started.elapsed();
        observer.event(&Event::NodeEnd { node, action: &action, attempts, elapsed });
    }
    Ok((action, attempts))
}

/// Awaits `work` for at most `limit` (all the time it takes without one). Past the limit,
/// `work` is dropped and the result is a [`FlowError::Timeout`] naming `node`; a zero limit
/// has run out before `work` starts.
pub async fn within<T>(
    work: impl Future<Output = Outcome<T>>,
    limit: Option<Duration>,
    node: &NodePath<'_>,
) -> Outcome<T> {
    let Some(after) = limit else { return work.await };
    if !after.is_zero() {
        let timer = async_io::Timer::after(after);
        if let Either::Left((result, _)) = future::select(pin!(work), timer).await {
            return result;
        }
    }
    Err(Box::new(FlowError::Timeout { node: node.to_string(), after }))
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
            Turn::default().await;
        }
    }
    let outputs = slots.into_iter().map(|o| o.expect("every job finished")).collect();
    Ok((outputs, total))
}

/// What [`Flow::add`](crate::Flow::add) and [`Parallel::branch`](crate::Parallel::branch)
/// accept: any [`Node`](crate::Node), any [`BatchNode`](crate::BatchNode), the flows —
/// [`Flow`](crate::Flow), [`BatchFlow`](crate::BatchFlow) and
/// [`BatchAsyncFlow`](crate::BatchAsyncFlow) — and [`Parallel`](crate::Parallel).
///
/// The trait is implemented by the crate: its hidden method returns a type users cannot name
/// or build, so an impl of theirs could only pass on one of the crate's. `M` is an inferred
/// marker that tells the kinds apart, so you never name it. A node the caller keeps a handle
/// on is added as an `Arc` of it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be added to a `Flow<{S}>`",
    label = "not a node over the store `{S}`",
    note = "implement `Node<{S}>` or `BatchNode<{S}>` for it (an `Arc` of one is accepted too), or add a `Flow<{S}>`, `BatchFlow<{S}>`, `BatchAsyncFlow<{S}>` or `Parallel<{S}>`; the node must be `'static` and the store `{S}` must be `Send`"
)]
pub trait IntoNode<S, M> {
    /// Wraps the node in the [`Step`] a flow stores.
    #[doc(hidden)]
    fn into_step(self) -> Step<S>;
}

/// The markers that keep the blanket conversions of [`IntoNode`] apart. Never named by users.
#[doc(hidden)]
pub mod marker {
    /// A [`Node`](crate::Node).
    #[derive(Debug)]
    pub enum Leaf {}
    /// A [`BatchNode`](crate::BatchNode).
    #[derive(Debug)]
    pub enum Batch {}
    /// An `Arc` of a [`Node`](crate::Node).
    #[derive(Debug)]
    pub enum SharedLeaf {}
    /// An `Arc` of a [`BatchNode`](crate::BatchNode).
    #[derive(Debug)]
    pub enum SharedBatch {}
    /// One of the flows.
    #[derive(Debug)]
    pub enum Nested {}
}

/// A node a flow owns, seen through the same `Deref` as a node it shares through an `Arc`, so
/// that one adapter serves both.
pub struct Own<T>(pub T);

impl<T> std::ops::Deref for Own<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}
