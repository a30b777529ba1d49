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
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::{Action, Ctx, Error, FlowError, Params, Phase};

/// The most attempts a node may ask for with `max_retries()`; above it the run fails with
/// [`FlowError::InvalidConfig`] instead of retrying (nearly) forever.
pub const MAX_ATTEMPTS: usize = 1_000;

/// What a step's run ends with inside a run. The error is boxed so that the `Result` moved
/// through every visit is as small as an `Action` (a `FlowError` is ten times larger); it is
/// unboxed once, where the run returns to the caller.
pub type Outcome<T> = Result<T, Box<FlowError>>;

/// A node as a flow stores it: one object-safe method that runs a whole visit.
pub trait Step<S>: Send + Sync {
    fn run<'a>(&'a self, store: Store<'a, S>, scope: Scope<'a>) -> BoxFuture<'a, Outcome<Action>>;
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

impl<S> Store<'_, S> {
    pub fn reborrow(&mut self) -> Store<'_, S> {
        match self {
            Store::Own(s) => Store::Own(s),
            Store::Shared(lock) => Store::Shared(*lock),
        }
    }

    /// Runs `f` with the store (for `prep` and `post`: synchronous, so never across an await).
    fn with<R>(&mut self, f: impl FnOnce(&mut S) -> R) -> R {
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
        path: &Path<'_>,
        phase: Phase,
        attempts: usize,
        f: impl FnOnce(&mut S) -> Result<T, Error>,
    ) -> Outcome<T> {
        self.with(f).map_err(|e| failed(path, phase, attempts, e))
    }
}

/// The error path of [`Store::phase`], kept out of line so that the visit stays small.
#[cold]
fn failed(path: &Path<'_>, phase: Phase, attempts: usize, error: Error) -> Box<FlowError> {
    Box::new(FlowError::user(path, phase, attempts, error))
}

/// Where a step runs: its path and the params its parent passes down.
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    pub params: &'a Params,
    pub path: &'a Path<'a>,
}

/// A node's path as a linked list on the stack: no allocation until it is displayed.
#[derive(Clone, Copy)]
pub struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    name: &'a str,
    index: Option<usize>,
}

impl<'a> Path<'a> {
    /// The path of the outermost flow: displays as the empty string.
    pub const ROOT: Path<'static> = Path { parent: None, name: "", index: None };

    pub fn child(&'a self, name: &'a str) -> Path<'a> {
        Path { parent: Some(self), name, index: None }
    }

    /// This same node, marked as item or sub-run `index` of it.
    pub fn item(&self, index: usize) -> Path<'a> {
        Path { index: Some(index), ..*self }
    }

    fn is_root(&self) -> bool {
        self.parent.is_none() && self.name.is_empty() && self.index.is_none()
    }
}

impl fmt::Display for Path<'_> {
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

impl fmt::Debug for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Checks a node's `max_retries()` (before its prep runs, so a bad setting costs no work).
pub fn attempts(max_retries: usize, path: &Path<'_>) -> Result<usize, FlowError> {
    match max_retries {
        1..=MAX_ATTEMPTS => Ok(max_retries),
        _ => Err(bad_attempts(max_retries, path)),
    }
}

#[cold]
fn bad_attempts(max_retries: usize, path: &Path<'_>) -> FlowError {
    let message = format!(
        "max_retries() is {max_retries}, but it counts every attempt, the first included, \
         and must be between 1 and {MAX_ATTEMPTS}"
    );
    invalid(path, message)
}

/// Runs `exec` up to `max_retries` times (checked by [`attempts`]) with `wait` between
/// attempts, then `fallback` on the last error. Returns the output and the attempts made.
pub async fn retry<'p, T, E, EF, B, BF>(
    max_retries: usize,
    wait: Duration,
    path: &'p Path<'p>,
    exec: E,
    fallback: B,
) -> Outcome<(T, usize)>
where
    E: Fn(Ctx<'p>) -> EF,
    EF: Future<Output = Result<T, Error>>,
    B: FnOnce(Error, Ctx<'p>) -> BF,
    BF: Future<Output = Result<T, Error>>,
{
    let mut cx = Ctx { attempt: 0, max_retries, path };
    loop {
        let error = match exec(cx).await {
            Ok(out) => return Ok((out, cx.attempt + 1)),
            Err(error) => error,
        };
        if cx.attempt + 1 == max_retries {
            return match fallback(error, cx).await {
                Ok(out) => Ok((out, max_retries)),
                Err(error) => Err(FlowError::user(path, Phase::Exec, max_retries, error).into()),
            };
        }
        drop(error);
        if !wait.is_zero() {
            async_io::Timer::after(wait).await;
        }
        cx.attempt += 1;
    }
}

pub fn invalid(path: &Path<'_>, message: String) -> FlowError {
    FlowError::InvalidConfig { node: path.to_string(), message }
}

mod sealed {
    /// The conversion behind [`IntoNode`](super::IntoNode); private so that the set of things a
    /// flow accepts stays the crate's to decide.
    pub trait Sealed<S, M> {
        fn into_step(self) -> Box<dyn super::Step<S>>;
    }
}
pub(crate) use sealed::Sealed;

/// What [`Flow::add`](crate::Flow::add) accepts: any [`Node`](crate::Node), any
/// [`BatchNode`](crate::BatchNode), and the flows — [`Flow`](crate::Flow),
/// [`BatchFlow`](crate::BatchFlow) and [`BatchAsyncFlow`](crate::BatchAsyncFlow).
///
/// The trait is implemented by the crate only; `M` is an inferred marker that tells the kinds
/// apart, so you never name it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be added to a `Flow<{S}>`",
    label = "not a node over the store `{S}`",
    note = "implement `Node<{S}>` or `BatchNode<{S}>` for it, or add a `Flow<{S}>`, `BatchFlow<{S}>` or `BatchAsyncFlow<{S}>`; the node must be `'static` and the store `{S}` must be `Send`"
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
