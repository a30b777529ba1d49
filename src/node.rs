//! [`Node`]: the three-phase step every flow is made of, and [`node_fn`] for quick ones.

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use crate::retry;
use crate::run::{self, IntoNode, NodePath, Own, RunCx, Scope, Step, Store, Visit, marker};
use crate::{Action, Error, Event, Params, Phase, Result, Value};

/// One step of a flow, in three phases: `prep` reads the store, `exec` does the slow or flaky
/// work, `post` writes the results and picks the next edge.
///
/// It replaces PocketFlow's `Node` and `AsyncNode` both: `exec` is always async (see the
/// crate docs' "Coming from PocketFlow").
///
/// `S` is your shared store: any type of yours, usually a struct with one field per thing the
/// nodes share. A run borrows it (`flow.run(&mut store)`), and each phase sees exactly as much
/// of it as it should:
///
/// | phase  | sees                          | may await | retried | may run concurrently |
/// |--------|-------------------------------|-----------|---------|----------------------|
/// | `prep` | `&S`, the [`Params`]          | no        | no      | no                   |
/// | `exec` | only what `prep` returned     | **yes**   | **yes** | **yes**              |
/// | `post` | `&mut S`, prep's and exec's values | no   | no      | no                   |
///
/// The compiler holds you to it: `exec` cannot touch the store, so it is always safe to retry,
/// to time out and to run beside its siblings; `prep` and `post` are synchronous, so a store
/// update is never interrupted by cancellation and never interleaved with a concurrent
/// sibling's, and no lock is ever held across an `.await`.
///
/// # A complete node
///
/// ```
/// use miniflow::{Action, Ctx, Flow, Node, Params, Result};
///
/// #[derive(Default)]
/// struct Store {
///     question: String,
///     answer: Option<String>,
/// }
///
/// struct Answer;
///
/// impl Node<Store> for Answer {
///     type Prep = String; // what exec needs: a copy of the question
///     type Output = String; // what exec produces: the answer
///
///     fn prep(&self, store: &Store, _params: &Params) -> Result<String> {
///         Ok(store.question.clone())
///     }
///
///     async fn exec(&self, question: &String, _cx: Ctx<'_>) -> Result<String> {
///         // The slow part: call a model, a search engine, a database...
///         Ok(format!("you asked: {question}"))
///     }
///
///     fn post(&self, store: &mut Store, _q: String, answer: String) -> Result<Action> {
///         store.answer = Some(answer);
///         Ok(Action::DEFAULT)
///     }
/// }
///
/// let mut flow = Flow::new();
/// flow.add("answer", Answer);
/// let mut store = Store { question: "why?".into(), ..Store::default() };
/// smol::block_on(flow.run(&mut store))?;
/// assert_eq!(store.answer.as_deref(), Some("you asked: why?"));
/// # Ok::<(), miniflow::Error>(())
/// ```
///
/// # Retries and fallback
///
/// If `exec` returns an error (or runs past its [`timeout`](Node::timeout)), it is called
/// again, up to [`max_retries`](Node::max_retries) calls in all, as [`wait`](Node::wait)
/// decides after each failure: at once (the default), after a pause, or not at all for an
/// error that retrying cannot fix; [`Ctx::attempt`] tells it which attempt it is. When the
/// last attempt fails, [`exec_fallback`](Node::exec_fallback) gets the
/// error: by default it returns it, and the run fails with [`FlowError::NodeFailed`](crate::FlowError::NodeFailed); override
/// it to return a value instead, and `post` receives that value as if `exec` had produced it.
///
/// # A common mistake
///
/// Wanting the store in `exec` — to read something there, or to write a result early. Move the
/// read into `prep` (return what `exec` needs) and the write into `post`:
///
/// ```compile_fail
/// # use miniflow::{Action, Ctx, Node, Params, Result};
/// # struct Store { docs: Vec<String>, hits: usize }
/// # struct Search;
/// impl Node<Store> for Search {
///     type Prep = ();
///     type Output = ();
///     fn prep(&self, _: &Store, _: &Params) -> Result<()> { Ok(()) }
///     async fn exec(&self, _: &(), _cx: Ctx<'_>) -> Result<()> {
///         store.hits += 1; // error: there is no store in exec
///         Ok(())
///     }
///     fn post(&self, _: &mut Store, _: (), _: ()) -> Result<Action> { Ok(Action::DEFAULT) }
/// }
/// ```
///
/// ```
/// # use miniflow::{Action, Ctx, Node, Params, Result};
/// # struct Store { docs: Vec<String>, hits: usize }
/// # struct Search;
/// impl Node<Store> for Search {
///     type Prep = Vec<String>; // read in prep...
///     type Output = usize;
///     fn prep(&self, store: &Store, _: &Params) -> Result<Vec<String>> {
///         Ok(store.docs.clone())
///     }
///     async fn exec(&self, docs: &Vec<String>, _cx: Ctx<'_>) -> Result<usize> {
///         Ok(docs.iter().filter(|d| d.contains("rust")).count()) // ...work in exec...
///     }
///     fn post(&self, store: &mut Store, _: Vec<String>, hits: usize) -> Result<Action> {
///         store.hits += hits; // ...write in post
///         Ok(Action::DEFAULT)
///     }
/// }
/// ```
///
/// Async I/O belongs in `exec`. If a node needs a client or a channel, keep it in the node
/// (nodes are shared by every run, so it must be `Sync`) or hand it out of `prep` (an
/// `Arc`, a channel's `Sender`) and await it in `exec`.
pub trait Node<S>: Send + Sync {
    /// What `prep` hands to `exec` (and then, by value, to `post`). `exec` borrows it, so a
    /// retry sees it unchanged.
    type Prep: Send + Sync;

    /// What `exec` (or `exec_fallback`) produces for `post`.
    type Output: Send;

    /// Reads what the node needs from the store and the params.
    ///
    /// An error here fails the run with [`Phase::Prep`]; errors from the [`Params`] getters
    /// become [`FlowError::Param`](crate::FlowError::Param) naming this node.
    fn prep(&self, store: &S, params: &Params) -> Result<Self::Prep>;

    /// Does the work: the only phase that may await, and the one that is retried.
    fn exec(
        &self,
        prep: &Self::Prep,
        cx: Ctx<'_>,
    ) -> impl Future<Output = Result<Self::Output>> + Send;

    /// Called with the error of the last attempt made: when every attempt failed, or when
    /// [`wait`](Node::wait) gave up sooner.
    ///
    /// The default returns `error`, failing the run. Return `Ok` to recover: `post` receives
    /// the value as if `exec` had produced it.
    fn exec_fallback(
        &self,
        prep: &Self::Prep,
        error: Error,
        cx: Ctx<'_>,
    ) -> impl Future<Output = Result<Self::Output>> + Send {
        let _ = (prep, cx);
        async move { Err(error) }
    }

    /// Writes the results into the store and returns the action that picks the next edge.
    fn post(&self, store: &mut S, prep: Self::Prep, output: Self::Output) -> Result<Action>;

    /// How many times `exec` is tried in all, the first attempt included: 1 (the default)
    /// means no retry, 3 means up to two retries.
    ///
    /// Must be between 1 and [`MAX_ATTEMPTS`](crate::MAX_ATTEMPTS); any other value fails the
    /// node's run with [`FlowError::InvalidConfig`](crate::FlowError::InvalidConfig).
    fn max_retries(&self) -> usize {
        1
    }

    /// Decides, after attempt number `cx.attempt()` failed with `error`, whether to try again
    /// and after how long: `Some(pause)` retries after `pause` (`Duration::ZERO`: at once),
    /// `None` gives up, and [`exec_fallback`](Node::exec_fallback) gets the error. Asked only
    /// while attempts are left: [`max_retries`](Node::max_retries) stays the upper bound.
    ///
    /// The default retries at once (PocketFlow's `wait` of 0). The usual decisions are one
    /// line each:
    ///
    /// - a fixed pause (PocketFlow's `wait`): `Some(Duration::from_secs(1))`;
    /// - a capped exponential backoff, with jitter so that items failing together retry
    ///   apart: `Some(Backoff::new(ms(100), secs(10)).jitter(0.5).delay(cx.attempt()))`
    ///   (see [`Backoff`](crate::Backoff));
    /// - no retry for an error that will not go away (a `401`), and a server's own pause for
    ///   a rate limit (its `Retry-After`), found by downcasting `error` to your error type:
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use miniflow::{Action, Backoff, Ctx, Error, Node, Params, Result};
    /// #[derive(Debug)]
    /// enum ApiError {
    ///     Unauthorized,
    ///     RateLimited { retry_after: Duration },
    /// }
    /// # impl std::fmt::Display for ApiError {
    /// #     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{self:?}") }
    /// # }
    /// impl std::error::Error for ApiError {}
    ///
    /// struct Ask;
    /// impl Node<String> for Ask {
    ///     # type Prep = (); type Output = String;
    ///     # fn prep(&self, _: &String, _: &Params) -> Result<()> { Ok(()) }
    ///     # async fn exec(&self, _: &(), _: Ctx<'_>) -> Result<String> { Ok(String::new()) }
    ///     # fn post(&self, _: &mut String, _: (), _: String) -> Result<Action> { Ok(Action::DEFAULT) }
    ///     // …prep, exec and post as usual, then: up to five tries, each cut off after 30 s.
    ///     fn max_retries(&self) -> usize {
    ///         5
    ///     }
    ///     fn timeout(&self) -> Option<Duration> {
    ///         Some(Duration::from_secs(30))
    ///     }
    ///     fn wait(&self, error: &Error, cx: Ctx<'_>) -> Option<Duration> {
    ///         match error.downcast_ref::<ApiError>() {
    ///             Some(ApiError::Unauthorized) => None, // retrying will not help
    ///             Some(ApiError::RateLimited { retry_after }) => Some(*retry_after),
    ///             // anything else, a timeout included: back off 1 s, 2 s, 4 s… give or take
    ///             None => {
    ///                 let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    ///                 Some(backoff.jitter(0.5).delay(cx.attempt()))
    ///             }
    ///         }
    ///     }
    /// }
    /// ```
    ///
    /// The pause is awaited on a timer that works under any executor, and an observer sees it
    /// in [`Event::Retry`]. [`timeout`](Node::timeout) limits attempts, not pauses: a pause
    /// taken from a server's answer (a `Retry-After`) deserves a cap of your own, or a garbage
    /// value waits as long as it says (`Duration::MAX`: for ever, until the run is dropped).
    /// The hook runs in the node's task, between two attempts: keep it quick (it must not
    /// block).
    fn wait(&self, error: &Error, cx: Ctx<'_>) -> Option<Duration> {
        let _ = (error, cx);
        Some(Duration::ZERO)
    }

    /// The longest one attempt of `exec` may take; none by default.
    ///
    /// An attempt that takes longer is dropped at its current `.await` and counts as failed
    /// with a [`TimedOut`](crate::TimedOut) error: the node retries if it has attempts left,
    /// then `exec_fallback` gets the error. `exec_fallback` gets the same time limit of its
    /// own: if it runs past it, it is dropped and the node fails with a `TimedOut` error (so a
    /// fallback that calls a second, slower service cannot hang the run either). The timer
    /// is the one the pauses of [`wait`](Node::wait) use, so it works under any executor. Blocking code inside `exec` cannot be cut short (see the
    /// [crate docs](crate#cancellation)). `Some(Duration::ZERO)` fails the run with
    /// [`FlowError::InvalidConfig`](crate::FlowError::InvalidConfig).
    ///
    fn timeout(&self) -> Option<Duration> {
        None
    }
}

/// What `exec` and `exec_fallback` learn about the attempt they are part of.
///
/// ```
/// use miniflow::Ctx;
///
/// async fn call_model(prompt: &str, cx: Ctx<'_>) -> miniflow::Result<String> {
///     // Ask for less on the last try, so it is likelier to succeed.
///     let budget = if cx.attempt() + 1 == cx.max_retries() { 100 } else { 1_000 };
///     Ok(format!("{prompt} ({budget} tokens, attempt {} of node {})", cx.attempt(), cx.node()))
/// }
/// ```
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    // `u32`s and a thin pointer to the run keep `Ctx` (which every attempt's future holds) at
    // three words; `MAX_ATTEMPTS` fits a `u32` with room to spare.
    pub(crate) attempt: u32,
    max_retries: u32,
    pub(crate) path: &'a NodePath<'a>,
    run: &'a RunCx<'a>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(path: &'a NodePath<'a>, max_retries: usize, scope: &Scope<'a>) -> Self {
        Ctx { attempt: 0, max_retries: max_retries as u32, path, run: scope.run }
    }

    /// The 0-based attempt number (PocketFlow's `cur_retry`): 0 on the first call of `exec`, 1
    /// on the first retry, …
    /// In `exec_fallback`, the number of the attempt that failed last.
    ///
    /// For a batch node this counts the attempts of the current item alone.
    pub fn attempt(&self) -> usize {
        self.attempt as usize
    }

    /// How many attempts the node makes in all (its `max_retries()`).
    pub fn max_retries(&self) -> usize {
        self.max_retries as usize
    }

    /// The node's path, as errors and events name it (`"outer/inner"`, `"translate[3]"` for
    /// item 3 of a batch node).
    pub fn node(&self) -> NodePath<'a> {
        *self.path
    }

    /// Reports a custom event to the run's [`Observer`](crate::Observer), if it has one (else this does
    /// nothing, at no cost: `data` is not even converted): the observer receives an
    /// [`Event::Custom`] with this node's path, `kind` and `data`. Made for progress that only
    /// `exec` sees, such as the tokens of a streamed model answer as they arrive, or the
    /// tokens a model call used:
    ///
    /// ```
    /// # use miniflow::Ctx;
    /// async fn stream_answer(tokens: Vec<String>, cx: Ctx<'_>) -> miniflow::Result<String> {
    ///     let mut answer = String::new();
    ///     for token in tokens { // in real life: `while let Some(token) = stream.next().await`
    ///         cx.emit("token", &token);
    ///         answer += &token;
    ///     }
    ///     cx.emit("usage", answer.len()); // a number stays a number: `Value::Int`
    ///     Ok(answer)
    /// }
    /// ```
    ///
    /// `data` is a [`Value`], as a param is: text, an integer, a float or a bool, so that an
    /// observer gets a count as a number without parsing it. For a record of several fields,
    /// emit one event per field, or hand a channel out of `prep` and send your own type down
    /// it.
    pub fn emit(&self, kind: &str, data: impl Into<Value>) {
        if let Some(observer) = self.run.observer {
            observer.event(&Event::Custom { node: self.path, kind, data: &data.into() });
        }
    }

    pub(crate) fn report(&self, event: &Event<'_>) {
        if let Some(observer) = self.run.observer {
            observer.event(event);
        }
    }
}

impl fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx")
            .field("attempt", &self.attempt)
            .field("max_retries", &self.max_retries)
            .field("node", self.path)
            .field("observed", &self.run.observer.is_some())
            .finish()
    }
}

/// Runs one visit of a [`Node`]: the adapter [`Flow::add`](crate::Flow::add) stores, around
/// the node itself ([`Own`]) or an `Arc` of it.
struct Leaf<P>(P);

impl<S: Send, P: Deref<Target: Node<S>> + Send + Sync> run::Leaf<S> for Leaf<P> {
    fn run<'a>(&'a self, mut store: Store<'a, S>, scope: &'a Scope<'a>) -> Visit<'a> {
        let node = &*self.0;
        run::boxed(move || async move {
            let path = scope.path;
            retry::check(node.max_retries(), node.timeout(), 1, path)?;
            let prep = store.phase(path, Phase::Prep, 0, |s| node.prep(s, scope.params))?;
            let cx = Ctx::new(path, node.max_retries(), scope);
            let (output, attempts) = retry::retry!(node, &prep, cx)?;
            let action =
                store.phase(path, Phase::Post, attempts, |s| node.post(s, prep, output))?;
            Ok((action, attempts))
        })
    }
}

#[diagnostic::do_not_recommend]
impl<S: Send, N: Node<S> + 'static> IntoNode<S, marker::Leaf> for N {
    fn into_step(self) -> Step<S> {
        Step::Leaf(Box::new(Leaf(Own(self))), false)
    }
}

#[diagnostic::do_not_recommend]
impl<S: Send, N: Node<S> + 'static> IntoNode<S, marker::SharedLeaf> for Arc<N> {
    fn into_step(self) -> Step<S> {
        Step::Leaf(Box::new(Leaf(self)), false)
    }
}

/// A node made of three closures, one per phase: see [`exec_fn`].
#[derive(Clone)]
pub struct ExecFn<P, E, O>(P, E, O);

/// Makes a node from three closures, one per phase, for a quick step whose `exec` awaits: a
/// model call, a request, a pause (a quick PocketFlow `AsyncNode`).
///
/// - `prep(&store, &params)` reads what `exec` needs and returns it (any `Clone` value);
/// - `exec(input)` gets a clone of that value and returns a future: each attempt (see
///   [`Node::max_retries`], which is 1 here) gets a clone of its own, so the future can own it;
/// - `post(&mut store, input, output)` gets the prep value back with the output (as
///   [`Node::post`] does), writes the results and returns the action.
///
/// It is a [`Node`] with the default settings (one attempt, no timeout, no fallback). For
/// retries, a fallback, or [`Ctx`] (the attempt number, [`Ctx::emit`]), implement [`Node`].
///
/// ```
/// use std::time::Duration;
/// use miniflow::{Action, Flow, exec_fn};
///
/// #[derive(Default)]
/// struct Shared { question: String, answer: String }
///
/// let ask = exec_fn(
///     |s: &Shared, _| Ok(s.question.clone()),
///     |question| async move {
///         miniflow::sleep(Duration::from_millis(1)).await; // a model would answer here
///         Ok(format!("you asked {question:?}"))
///     },
///     |s, _question, answer| {
///         s.answer = answer;
///         Ok(Action::DEFAULT)
///     },
/// );
/// let mut shared = Shared { question: "why?".into(), ..Shared::default() };
/// smol::block_on(Flow::of(ask).run(&mut shared))?;
/// assert_eq!(shared.answer, r#"you asked "why?""#);
/// # Ok::<(), miniflow::Error>(())
/// ```
pub fn exec_fn<S, I, T, F, P, E, O>(prep: P, exec: E, post: O) -> ExecFn<P, E, O>
where
    P: Fn(&S, &Params) -> Result<I> + Send + Sync,
    E: Fn(I) -> F + Send + Sync,
    F: Future<Output = Result<T>> + Send,
    O: Fn(&mut S, I, T) -> Result<Action> + Send + Sync,
    I: Clone + Send + Sync,
    T: Send,
{
    ExecFn(prep, exec, post)
}

impl<S, I, T, F, P, E, O> Node<S> for ExecFn<P, E, O>
where
    P: Fn(&S, &Params) -> Result<I> + Send + Sync,
    E: Fn(I) -> F + Send + Sync,
    F: Future<Output = Result<T>> + Send,
    O: Fn(&mut S, I, T) -> Result<Action> + Send + Sync,
    I: Clone + Send + Sync,
    T: Send,
{
    type Prep = I;
    type Output = T;

    fn prep(&self, store: &S, params: &Params) -> Result<I> {
        (self.0)(store, params)
    }

    fn exec(&self, input: &I, _: Ctx<'_>) -> impl Future<Output = Result<T>> + Send {
        (self.1)(input.clone())
    }

    fn post(&self, store: &mut S, input: I, output: T) -> Result<Action> {
        (self.2)(store, input, output)
    }
}

impl<P, E, O> fmt::Debug for ExecFn<P, E, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecFn").finish_non_exhaustive()
    }
}

/// A node made of one synchronous closure: see [`node_fn`].
#[derive(Clone)]
pub struct NodeFn<F>(F);

/// Makes a node from a closure that gets the store and the params and returns the action:
/// for glue steps that only move data around or decide where to go.
///
/// The closure runs as the node's `post` (synchronous, `&mut S`), so an error it returns is
/// reported as failing in [`Phase::Post`] (a missing param is still a [`FlowError::Param`](crate::FlowError::Param)).
/// The node has no `exec` to speak of and is never retried: for a step that awaits, see
/// [`exec_fn`] or implement [`Node`].
///
/// ```
/// use miniflow::{Action, Flow, node_fn};
///
/// let mut flow = Flow::new();
/// let add = flow.add("add", node_fn(|n: &mut i64, params| {
///     *n += params.int("step")?;
///     Ok(Action::DEFAULT)
/// }));
/// let check = flow.add("check", node_fn(|n: &mut i64, _| {
///     Ok(if *n < 10 { "again" } else { "done" }.into())
/// }));
/// flow.then(add, check);
/// flow.edge(check, "again", add);
/// flow.end(check, "done");
///
/// let mut n = 0;
/// let options = miniflow::RunOptions::new().params(miniflow::Params::new().with("step", 4));
/// let last = smol::block_on(flow.run_with(&mut n, options))?;
/// assert_eq!((n, last.as_str()), (12, "done"));
/// # Ok::<(), miniflow::Error>(())
/// ```
pub fn node_fn<S, F>(f: F) -> NodeFn<F>
where
    F: Fn(&mut S, &Params) -> Result<Action> + Send + Sync,
{
    NodeFn(f)
}

impl<S, F> Node<S> for NodeFn<F>
where
    F: Fn(&mut S, &Params) -> Result<Action> + Send + Sync,
{
    type Prep = Params;
    type Output = ();

    fn prep(&self, _: &S, params: &Params) -> Result<Params> {
        Ok(params.clone())
    }

    async fn exec(&self, _: &Params, _: Ctx<'_>) -> Result<()> {
        Ok(())
    }

    fn post(&self, store: &mut S, params: Params, _: ()) -> Result<Action> {
        (self.0)(store, &params)
    }
}

impl<F> fmt::Debug for NodeFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeFn").finish_non_exhaustive()
    }
}
