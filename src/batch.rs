//! Batches: [`BatchNode`] (one `exec` per item), [`BatchFlow`] and [`BatchAsyncFlow`] (one
//! run of a flow per params set, one after another or concurrently).

use std::fmt;
use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream;

use crate::run::{self, Outcome, Scope, Sealed, Shape, Step, Store, marker};
use crate::{Action, Ctx, Error, Flow, FlowError, Params, Phase, Result, Wait};

/// A node whose `prep` returns a list of items and whose `exec` runs once per item, each item
/// with its own retries and fallback; `post` gets every output, in the order of the items.
///
/// Items run one after another by default. Return more than 1 from
/// [`max_in_flight`](BatchNode::max_in_flight) and up to that many items' `exec` run
/// concurrently (polled together in the run's own task: nothing is spawned); the outputs still
/// come back in input order. An empty list calls no `exec` and gives `post` two empty lists.
///
/// If an item fails (every attempt and its fallback), the node fails with that item's error,
/// naming it by its index (`"translate[3]"`), and the items still in flight are dropped.
///
/// ```
/// use miniflow::{Action, BatchNode, Ctx, Flow, Params, Result};
///
/// struct Shout;
///
/// impl BatchNode<Vec<String>> for Shout {
///     type Item = String;
///     type Output = String;
///
///     fn prep(&self, words: &Vec<String>, _: &Params) -> Result<Vec<String>> {
///         Ok(words.clone())
///     }
///
///     async fn exec(&self, word: &String, _cx: Ctx<'_>) -> Result<String> {
///         Ok(word.to_uppercase())
///     }
///
///     fn post(&self, words: &mut Vec<String>, _: Vec<String>, loud: Vec<String>) -> Result<Action> {
///         *words = loud;
///         Ok(Action::DEFAULT)
///     }
///
///     fn max_in_flight(&self) -> usize {
///         4 // up to four words at once
///     }
/// }
///
/// let mut flow = Flow::new();
/// flow.add("shout", Shout);
/// let mut words = vec!["hello".to_string(), "flow".to_string()];
/// smol::block_on(flow.run(&mut words))?;
/// assert_eq!(words, ["HELLO", "FLOW"]);
/// # Ok::<(), miniflow::Error>(())
/// ```
pub trait BatchNode<S>: Send + Sync {
    /// One unit of work; `exec` borrows it, so every attempt sees it unchanged.
    type Item: Send + Sync;

    /// What `exec` (or `exec_fallback`) produces for one item.
    type Output: Send;

    /// Reads the items from the store and the params.
    fn prep(&self, store: &S, params: &Params) -> Result<Vec<Self::Item>>;

    /// Processes one item; retried per item, and run concurrently with other items when
    /// [`max_in_flight`](BatchNode::max_in_flight) allows. [`Ctx::attempt`] counts this item's
    /// attempts only.
    fn exec(
        &self,
        item: &Self::Item,
        cx: Ctx<'_>,
    ) -> impl Future<Output = Result<Self::Output>> + Send;

    /// Called with an item's last error when every attempt for it failed; the default returns
    /// the error. An `Ok` value takes the place of the item's output.
    fn exec_fallback(
        &self,
        item: &Self::Item,
        error: Error,
        cx: Ctx<'_>,
    ) -> impl Future<Output = Result<Self::Output>> + Send {
        let _ = (item, cx);
        async move { Err(error) }
    }

    /// Gets the items back with their outputs (same length, same order) and writes the results.
    fn post(
        &self,
        store: &mut S,
        items: Vec<Self::Item>,
        outputs: Vec<Self::Output>,
    ) -> Result<Action>;

    /// Attempts per item, the first included: as [`Node::max_retries`](crate::Node::max_retries).
    fn max_retries(&self) -> usize {
        1
    }

    /// The pause between an item's failed attempt and its next one: as
    /// [`Node::wait`](crate::Node::wait).
    fn wait(&self) -> Wait {
        Wait::NONE
    }

    /// The longest one attempt of one item's `exec` may take: as
    /// [`Node::timeout`](crate::Node::timeout).
    fn timeout(&self) -> Option<Duration> {
        None
    }

    /// How many items' `exec` may be in flight at once: 1 (the default) runs them one after
    /// another; `usize::MAX` sets no limit. 0 fails the run with [`FlowError::InvalidConfig`].
    fn max_in_flight(&self) -> usize {
        1
    }
}

/// Runs one visit of a [`BatchNode`].
struct Batch<B>(B);

impl<S: Send, B: BatchNode<S>> Step<S> for Batch<B> {
    fn run<'a>(
        &'a self,
        mut store: Store<'a, S>,
        scope: &'a Scope<'a>,
    ) -> BoxFuture<'a, Outcome<(Action, usize)>> {
        let node = &self.0;
        run::boxed(move || async move {
            let path = scope.path;
            // Only the count is kept: each concurrent item's future holds what it captures.
            let max_attempts =
                run::policy(node.max_retries(), node.wait(), node.timeout(), path)?.attempts;
            let limit = in_flight(node.max_in_flight(), path)?;
            let items = store.phase(path, Phase::Prep, 0, |s| node.prep(s, scope.params))?;
            let settings = || run::Policy::of(node.max_retries(), node.wait(), node.timeout());
            let (outputs, attempts) = if limit == 1 {
                // Item after item, each item's future awaited where it is built: a job future
                // per item (as below) would be moved, hundreds of bytes, on every item.
                let (mut outputs, mut total) = (Vec::with_capacity(items.len()), 0);
                for (i, item) in items.iter().enumerate() {
                    if i % run::TURN == run::TURN - 1 {
                        run::Turn::new().await;
                    }
                    let path = path.item(i);
                    let (output, attempts) = run::retry!(
                        Ctx::new(&path, max_attempts, scope),
                        settings,
                        |cx| node.exec(item, cx),
                        |error, cx| node.exec_fallback(item, error, cx)
                    )?;
                    outputs.push(output);
                    total += attempts;
                }
                (outputs, total)
            } else {
                let items_ref = &items;
                let jobs = (0..items.len()).map(|i| async move {
                    let (item, path) = (&items_ref[i], path.item(i));
                    let result = run::retry!(
                        Ctx::new(&path, max_attempts, scope),
                        settings,
                        |cx| node.exec(item, cx),
                        |error, cx| node.exec_fallback(item, error, cx)
                    );
                    (i, result)
                });
                run_all(jobs, limit).await?
            };
            let action =
                store.phase(path, Phase::Post, attempts, |s| node.post(s, items, outputs))?;
            Ok((action, attempts))
        })
    }

    fn shape(&self) -> Shape<'_, S> {
        Shape::BatchNode
    }
}

impl<S: Send, B: BatchNode<S> + 'static> Sealed<S, marker::Batch> for B {
    fn into_step(self) -> Box<dyn Step<S>> {
        Box::new(Batch(self))
    }
}

/// Checks an in-flight limit.
pub(crate) fn in_flight(limit: usize, path: &run::NodePath<'_>) -> Result<usize, FlowError> {
    match limit {
        0 => Err(run::invalid(
            path,
            "max_in_flight() is 0, so no item could ever run; return 1 to run items one after \
             another, or usize::MAX for no limit"
                .into(),
        )),
        n => Ok(n),
    }
}

/// Awaits every job, at most `limit` at a time, failing on the first error (the others are
/// dropped), and returns the outputs in input order with the attempts summed. Each job yields
/// its own index with its result. Every [`TURN`](run::TURN)th finished job gives the executor
/// a turn: jobs that never await would otherwise keep the loop going.
pub(crate) async fn run_all<T, F>(
    jobs: impl Iterator<Item = F>,
    limit: usize,
) -> Outcome<(Vec<T>, usize)>
where
    F: Future<Output = (usize, Outcome<(T, usize)>)>,
{
    let mut total = 0;
    if limit == 1 {
        let mut outputs = Vec::with_capacity(jobs.size_hint().0);
        for (i, job) in jobs.enumerate() {
            if i % run::TURN == run::TURN - 1 {
                run::Turn::new().await;
            }
            let (out, attempts) = job.await.1?;
            outputs.push(out);
            total += attempts;
        }
        return Ok((outputs, total));
    }
    let mut slots: Vec<Option<T>> = Vec::with_capacity(jobs.size_hint().0);
    let (mut running, mut done) = (stream::iter(jobs).buffer_unordered(limit), 0usize);
    while let Some((i, result)) = running.next().await {
        let (out, attempts) = result?;
        if slots.len() <= i {
            slots.resize_with(i + 1, || None);
        }
        slots[i] = Some(out);
        total += attempts;
        done += 1;
        if done.is_multiple_of(run::TURN) {
            run::Turn::new().await;
        }
    }
    let outputs = slots.into_iter().map(|o| o.expect("every job finished")).collect();
    Ok((outputs, total))
}

/// The params of one sub-run: `set` merged over the inherited ones, borrowed when one side is
/// empty (no reference count touched), else merged into `merged`.
fn merge<'p>(inherited: &'p Params, set: &'p Params, merged: &'p mut Option<Params>) -> &'p Params {
    match (inherited.is_empty(), set.is_empty()) {
        (true, _) => set,
        (_, true) => inherited,
        _ => merged.insert(inherited.merged(set)),
    }
}

type PrepFn<S> = Box<dyn Fn(&S, &Params) -> Result<Vec<Params>> + Send + Sync>;
type PostFn<S> = Box<dyn Fn(&mut S, Vec<Params>, Vec<Action>) -> Result<Action> + Send + Sync>;

/// What [`BatchFlow`] and [`BatchAsyncFlow`] share: the inner flow, prep, post, the limit.
struct Batched<S> {
    flow: Flow<S>,
    prep: PrepFn<S>,
    post: Option<PostFn<S>>,
    limit: usize,
}

impl<S: Send> Batched<S> {
    fn new(flow: Flow<S>, prep: PrepFn<S>, limit: usize) -> Self {
        Batched { flow, prep, post: None, limit }
    }

    /// Sub-run `i`: the inner flow with `set` merged over the inherited params. Returns its
    /// last action (and 1, for `run_all`'s count).
    async fn sub_run(
        &self,
        i: usize,
        set: &Params,
        store: Store<'_, S>,
        scope: &Scope<'_>,
    ) -> Outcome<(Action, usize)> {
        let mut merged = None;
        let (params, path) = (merge(scope.params, set, &mut merged), scope.path.item(i));
        let action =
            self.flow.run_in(store, &Scope { params, path: &path, ..*scope }, None).await?;
        Ok((action, 1))
    }

    async fn run(&self, mut store: Store<'_, S>, scope: &Scope<'_>) -> Outcome<Action> {
        let path = scope.path;
        let limit = in_flight(self.limit, path)?;
        let sets = store.phase(path, Phase::Prep, 0, |s| (self.prep)(s, scope.params))?;
        let results = if limit == 1 {
            let mut results = Vec::with_capacity(sets.len());
            // `sub_run` written out, so that the inner flow's future is awaited where it is
            // built rather than moved (hundreds of bytes) on every sub-run.
            for (i, set) in sets.iter().enumerate() {
                if i % run::TURN == run::TURN - 1 {
                    run::Turn::new().await; // sub-runs of a node or two never reach their own
                }
                let mut merged = None;
                let (params, path) = (merge(scope.params, set, &mut merged), scope.path.item(i));
                let inner = Scope { params, path: &path, ..*scope };
                results.push(self.flow.run_in(store.reborrow(), &inner, None).await?);
            }
            results
        } else {
            // Concurrent sub-runs share the store through a lock taken once per prep and post.
            let mut own = None;
            let lock = store.lock(&mut own);
            let sets_ref = &sets;
            let jobs = (0..sets.len()).map(|i| async move {
                (i, self.sub_run(i, &sets_ref[i], Store::Shared(lock), scope).await)
            });
            run_all(jobs, limit).await?.0
        };
        match &self.post {
            None => Ok(Action::DEFAULT),
            Some(post) => store.phase(path, Phase::Post, 0, |s| post(s, sets, results)),
        }
    }
}

/// Runs an inner [`Flow`] once per params set, one run after another.
///
/// Its prep (a closure given to [`new`](BatchFlow::new)) reads the store and the params it
/// inherited and returns one [`Params`] per sub-run; each sub-run sees those merged over the
/// inherited ones ([`Params::merged`]), so batch flows nest: a school's flow passes
/// `school` down, each class run adds `class`, and a node deep inside reads both. Its optional
/// [`post`](BatchFlow::post) sees every sub-run's last action.
///
/// A `BatchFlow` is a node: [`add`](Flow::add) it to a flow. Its action is [`Action::DEFAULT`]
/// unless a post returns another. A sub-run that fails fails the batch flow (its nodes are
/// named `"name[i]/node"`), and the remaining sub-runs do not run.
///
/// ```
/// use miniflow::{Action, BatchFlow, Flow, Params, node_fn};
///
/// // The inner flow: one node that adds the item's number to the total.
/// let mut add = Flow::new();
/// add.add("add", node_fn(|total: &mut i64, p| {
///     *total += p.int("n")?;
///     Ok(Action::DEFAULT)
/// }));
///
/// let batch = BatchFlow::new(add, |_total: &i64, _params: &Params| {
///     Ok((1..=4).map(|n| Params::new().with("n", n)).collect())
/// })
/// .post(|total, _sets, actions| {
///     assert_eq!(actions.len(), 4); // every sub-run ended with "default"
///     Ok(if *total > 5 { "big" } else { "small" }.into())
/// });
///
/// let mut flow = Flow::new();
/// flow.add("sum", batch);
/// let mut total = 0;
/// assert_eq!(smol::block_on(flow.run(&mut total))?, "big");
/// assert_eq!(total, 10);
/// # Ok::<(), miniflow::Error>(())
/// ```
pub struct BatchFlow<S>(Batched<S>);

impl<S: Send> BatchFlow<S> {
    /// A batch flow that runs `flow` once per params set `prep` returns.
    pub fn new<P>(flow: Flow<S>, prep: P) -> Self
    where
        P: Fn(&S, &Params) -> Result<Vec<Params>> + Send + Sync + 'static,
    {
        BatchFlow(Batched::new(flow, Box::new(prep), 1))
    }
}

/// Runs an inner [`Flow`] once per params set, the sub-runs concurrently.
///
/// The same as [`BatchFlow`], except that the sub-runs overlap: while one awaits in an `exec`,
/// the others go on, up to [`max_in_flight`](BatchAsyncFlow::max_in_flight) at once (no limit
/// by default). They are polled inside the run's own task — nothing is spawned — and share the
/// one store: each `prep` and `post` has it to itself while it runs (they are synchronous, so
/// that never blocks an `exec`). Give each sub-run its own place in the store (a map keyed by
/// a param, or an entry per index) so that concurrent sub-runs do not overwrite each other,
/// and update shared values inside `post` (see
/// [concurrent updates](crate#concurrent-updates-to-the-store)).
///
/// The post sees each sub-run's last action in input order. The first sub-run to fail fails
/// the batch flow; the others still in flight are dropped (what their `post`s had written
/// stays).
///
/// ```
/// use std::collections::BTreeMap;
/// use miniflow::{Action, BatchAsyncFlow, Ctx, Flow, Node, Params, Result};
///
/// struct Square;
/// impl Node<BTreeMap<i64, i64>> for Square {
///     type Prep = i64;
///     type Output = i64;
///     fn prep(&self, _: &BTreeMap<i64, i64>, p: &Params) -> Result<i64> {
///         Ok(p.int("n")?)
///     }
///     async fn exec(&self, n: &i64, _cx: Ctx<'_>) -> Result<i64> {
///         Ok(n * n) // imagine a slow call here: the sub-runs overlap
///     }
///     fn post(&self, out: &mut BTreeMap<i64, i64>, n: i64, sq: i64) -> Result<Action> {
///         out.insert(n, sq); // each sub-run writes its own key
///         Ok(Action::DEFAULT)
///     }
/// }
///
/// let mut square = Flow::new();
/// square.add("square", Square);
/// let fan_out = BatchAsyncFlow::new(square, |_: &BTreeMap<i64, i64>, _: &Params| {
///     Ok((1..=3).map(|n| Params::new().with("n", n)).collect())
/// })
/// .max_in_flight(2);
///
/// let mut flow = Flow::new();
/// flow.add("squares", fan_out);
/// let mut out = BTreeMap::new();
/// smol::block_on(flow.run(&mut out))?;
/// assert_eq!(out.into_iter().collect::<Vec<_>>(), [(1, 1), (2, 4), (3, 9)]);
/// # Ok::<(), miniflow::Error>(())
/// ```
pub struct BatchAsyncFlow<S>(Batched<S>);

impl<S: Send> BatchAsyncFlow<S> {
    /// A batch flow that runs `flow` once per params set `prep` returns, concurrently.
    pub fn new<P>(flow: Flow<S>, prep: P) -> Self
    where
        P: Fn(&S, &Params) -> Result<Vec<Params>> + Send + Sync + 'static,
    {
        BatchAsyncFlow(Batched::new(flow, Box::new(prep), usize::MAX))
    }

    /// Allows at most `limit` sub-runs in flight at once (by default there is no limit);
    /// 1 makes it run like a [`BatchFlow`].
    ///
    /// # Panics
    /// If `limit` is 0: no sub-run could ever start. Use `usize::MAX` for no limit.
    #[must_use = "`max_in_flight` returns the batch flow with its limit set"]
    pub fn max_in_flight(mut self, limit: usize) -> Self {
        assert!(
            limit > 0,
            "max_in_flight(0) would never start a sub-run; use 1 or more (usize::MAX for no limit)"
        );
        self.0.limit = limit;
        self
    }
}

macro_rules! batch_flow_common {
    ($($ty:ident),*) => {$(
        impl<S: Send> $ty<S> {
            /// Sets the batch flow's post: it gets the store, the params sets prep returned and
            /// the last action of each sub-run (in the same order), and returns the batch flow's
            /// action. Without one, the action is [`Action::DEFAULT`].
            #[must_use = "`post` returns the batch flow with its post set"]
            pub fn post<P>(mut self, post: P) -> Self
            where
                P: Fn(&mut S, Vec<Params>, Vec<Action>) -> Result<Action> + Send + Sync + 'static,
            {
                self.0.post = Some(Box::new(post));
                self
            }
        }

        impl<S: Send> Step<S> for $ty<S> {
            fn run<'a>(&'a self, store: Store<'a, S>, scope: &'a Scope<'a>) -> BoxFuture<'a, Outcome<(Action, usize)>> {
                run::boxed(move || async move { Ok((self.0.run(store, scope).await?, 0)) })
            }

            fn shape(&self) -> Shape<'_, S> {
                Shape::BatchFlow(&self.0.flow, stringify!($ty))
            }
        }

        impl<S: Send + 'static> Sealed<S, marker::Nested> for $ty<S> {
            fn into_step(self) -> Box<dyn Step<S>> {
                Box::new(self)
            }
        }

        impl<S> fmt::Debug for $ty<S> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("flow", &self.0.flow)
                    .field("max_in_flight", &self.0.limit)
                    .field("post", &self.0.post.is_some())
                    .finish()
            }
        }
    )*};
}
batch_flow_common!(BatchFlow, BatchAsyncFlow);
