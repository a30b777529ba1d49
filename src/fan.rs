//! Fan-outs: [`BatchFlow`] and [`BatchAsyncFlow`] (one run of a flow per params set, one after
//! another or concurrently) and [`Parallel`] (several different nodes at once), all three
//! made of one engine.

use std::fmt;

use crate::flow::check_name;
use crate::run::{self, IntoNode, Outcome, Scope, Step, Store, marker};
use crate::{Action, Event, Flow, FlowError, Params, Phase, Result};

type PrepFn<S> = Box<dyn Fn(&S, &Params) -> Result<Vec<Params>> + Send + Sync>;
type PostFn<S> =
    Box<dyn Fn(&mut S, Vec<Params>, Vec<Outcome<Action>>) -> Result<Action> + Send + Sync>;

/// The params set of a branch: none (it sees the params its parallel node inherited). A
/// static, so that a sub-run's future does not hold an empty `Params` of its own (measured:
/// 600 bytes per concurrent sub-run with one, 552 without).
static NO_PARAMS: Params = Params::new();

/// The engine of the three: prep, then the jobs one after another (`limit` 1) or up to
/// `limit` at once, then post with every job's action in input order. A job is a run of one
/// of `flows`: for a batch flow, a sub-run of its one flow per params set its prep returns;
/// for a parallel node, each branch once, as a flow of that one node (its prep returns no
/// params sets). `kind` names the type it makes, for diagrams and `Debug`.
pub struct Fan<S> {
    pub(crate) flows: Vec<Flow<S>>,
    pub(crate) batch: bool,
    prep: PrepFn<S>,
    post: Option<PostFn<S>>,
    /// Whether every job runs to its end, a failed one included (see `post_outcomes`).
    keep_going: bool,
    limit: usize,
    pub(crate) kind: &'static str,
}

impl<S: Send> Fan<S> {
    fn new(flows: Vec<Flow<S>>, prep: PrepFn<S>, limit: usize, kind: &'static str) -> Self {
        Fan { batch: kind != "Parallel", flows, prep, post: None, keep_going: false, limit, kind }
    }

    pub(crate) async fn run(&self, mut store: Store<'_, S>, scope: &Scope<'_>) -> Outcome<Action> {
        let path = scope.path;
        let sets = store.phase(path, Phase::Prep, 0, |s| (self.prep)(s, scope.params))?;
        let count = if self.batch { sets.len() } else { self.flows.len() };
        let outcomes = if self.limit == 1 {
            let mut outcomes = Vec::with_capacity(count);
            for i in 0..count {
                if i % run::TURN == run::TURN - 1 {
                    run::Turn::default().await; // jobs of a node or two never reach their own
                }
                let outcome = self.job(i, &sets, store.reborrow(), scope).await;
                outcomes.push(self.settle(outcome, scope)?);
            }
            outcomes
        } else {
            // Concurrent jobs share the store through a lock taken once per prep and post.
            let mut own = None;
            let (lock, sets) = (store.lock(&mut own), &sets);
            let jobs = (0..count).map(|i| async move {
                let outcome = self.job(i, sets, Store::Shared(lock), scope).await;
                (i, self.settle(outcome, scope).map(|outcome| (outcome, 0)))
            });
            run::run_all(jobs, self.limit).await?.0
        };
        match &self.post {
            None => Ok(Action::DEFAULT),
            Some(post) => store.phase(path, Phase::Post, 0, |s| post(s, sets, outcomes)),
        }
    }

    /// What a job's outcome does to the fan-out: fail-fast, its error fails it; under
    /// `post_outcomes`, only the run's step limit and a node's invalid settings do (they stop
    /// the whole run), and any other error is reported to the observer and kept for the post.
    fn settle(&self, outcome: Outcome<Action>, scope: &Scope<'_>) -> Outcome<Outcome<Action>> {
        use FlowError::{InvalidConfig, StepLimit};
        match outcome {
            Err(e) if !self.keep_going || matches!(*e, StepLimit { .. } | InvalidConfig { .. }) => {
                Err(e)
            }
            Err(error) => {
                if let Some(observer) = scope.run.observer {
                    observer.event(&Event::SubRunFailed { error: &error });
                }
                Ok(Err(error))
            }
            outcome => Ok(outcome),
        }
    }

    /// Job `i`: sub-run `i` (named `"fan[i]/…"`), with params set `i` merged over the
    /// inherited params, or branch `i` (its one node named `"fan/branch"`).
    async fn job(
        &self,
        i: usize,
        sets: &[Params],
        store: Store<'_, S>,
        scope: &Scope<'_>,
    ) -> Outcome<Action> {
        let (flow, path, set) = match self.batch {
            true => (&self.flows[0], scope.path.item(i), &sets[i]),
            false => (&self.flows[i], *scope.path, &NO_PARAMS),
        };
        // Borrowed when either side is empty: no reference count touched (measured: a tenth
        // of the instructions of a `BatchFlow` sub-run of one node).
        let (inherited, merged) = (scope.params, &mut None);
        let params = match (inherited.is_empty(), set.is_empty()) {
            (true, _) => set,
            (_, true) => inherited,
            _ => merged.insert(inherited.merged(set)),
        };
        flow.run_in(store, &Scope { params, path: &path, ..*scope }, None, None).await
    }
}

impl<S> fmt::Debug for Fan<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct(self.kind);
        match self.batch {
            true => out.field("flow", &self.flows[0]),
            false => out.field("branches", &self.flows.iter().map(branch).collect::<Vec<_>>()),
        };
        out.field("max_in_flight", &self.limit).field("post", &self.post.is_some()).finish()
    }
}

/// Runs an inner [`Flow`] once per params set, one run after another.
///
/// It replaces PocketFlow's `BatchFlow` and its `AsyncBatchFlow`, which also runs its sub-runs
/// one after another. For sub-runs at once (`AsyncParallelBatchFlow`), see [`BatchAsyncFlow`].
///
/// Its prep (a closure given to [`new`](BatchFlow::new)) reads the store and the params it
/// inherited and returns one [`Params`] per sub-run; each sub-run sees those merged over the
/// inherited ones ([`Params::merged`]), so batch flows nest: a school's flow passes
/// `school` down, each class run adds `class`, and a node deep inside reads both. Its optional
/// [`post`](BatchFlow::post) sees every sub-run's last action.
///
/// A `BatchFlow` is a node: [`add`](Flow::add) it to a flow. Its action is [`Action::DEFAULT`]
/// unless a post returns another. A sub-run that fails fails the batch flow (its nodes are
/// named `"name[i]/node"`), and the remaining sub-runs do not run — unless its post is a
/// [`post_outcomes`](BatchFlow::post_outcomes), which runs them all and sees every failure.
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
#[must_use = "a batch flow does nothing until it is added to a flow and run"]
pub struct BatchFlow<S>(Fan<S>);

impl<S: Send> BatchFlow<S> {
    /// A batch flow that runs `flow` once per params set `prep` returns.
    pub fn new<P>(flow: Flow<S>, prep: P) -> Self
    where
        P: Fn(&S, &Params) -> Result<Vec<Params>> + Send + Sync + 'static,
    {
        BatchFlow(Fan::new(vec![flow], Box::new(prep), 1, "BatchFlow"))
    }
}

/// Runs an inner [`Flow`] once per params set, the sub-runs concurrently.
///
/// It replaces PocketFlow's `AsyncParallelBatchFlow`, **not** its `AsyncBatchFlow`: the
/// similar name runs sub-runs one after another, which is [`BatchFlow`] here.
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
/// stays). With [`post_outcomes`](BatchAsyncFlow::post_outcomes) instead, every sub-run runs
/// to its end and the post sees each one's action or error.
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
#[must_use = "a batch flow does nothing until it is added to a flow and run"]
pub struct BatchAsyncFlow<S>(Fan<S>);

impl<S: Send> BatchAsyncFlow<S> {
    /// A batch flow that runs `flow` once per params set `prep` returns, concurrently.
    pub fn new<P>(flow: Flow<S>, prep: P) -> Self
    where
        P: Fn(&S, &Params) -> Result<Vec<Params>> + Send + Sync + 'static,
    {
        BatchAsyncFlow(Fan::new(vec![flow], Box::new(prep), usize::MAX, "BatchAsyncFlow"))
    }

    /// Allows at most `limit` sub-runs in flight at once (by default there is no limit);
    /// 1 makes it run like a [`BatchFlow`].
    ///
    /// # Panics
    /// If `limit` is 0: no sub-run could ever start. Use `usize::MAX` for no limit.
    pub fn max_in_flight(mut self, limit: usize) -> Self {
        self.0.limit = in_flight(limit);
        self
    }
}

/// A node that runs several different nodes or flows — its *branches* — concurrently on the
/// same store, and goes on when all of them have finished. PocketFlow has no counterpart.
///
/// Use it where steps do not depend on each other: a song title and a list of characters can
/// both be written from a movie title, so a flow runs them side by side and the next node
/// sees both results. Branches are any nodes, batch nodes or flows, each added with a name
/// (their paths are `"parallel/branch"`); they are polled together in the run's own task —
/// nothing is spawned — up to [`max_in_flight`](Parallel::max_in_flight) at once.
///
/// Like the branches of a [`BatchAsyncFlow`], they share the store:
/// each `prep` and `post` has it to itself while it runs. Let each branch write its own part
/// of the store. If a branch fails, the parallel node fails with its error and the branches
/// still running are dropped (what their `post`s already wrote stays); with
/// [`post_outcomes`](Parallel::post_outcomes), every branch runs to its end instead. When all have
/// finished, the optional [`post`](Parallel::post) sees each branch's action, in the order
/// they were added, and picks the parallel node's action ([`Action::DEFAULT`] without one).
///
/// ```
/// use miniflow::{Action, Flow, Parallel, node_fn};
///
/// #[derive(Default)]
/// struct Movie { title: String, song: String, characters: Vec<String>, pitch: String }
///
/// let both = Parallel::new()
///     .branch("song", node_fn(|m: &mut Movie, _| {
///         m.song = format!("The {} Theme", m.title);
///         Ok(Action::DEFAULT)
///     }))
///     .branch("characters", node_fn(|m: &mut Movie, _| {
///         m.characters = vec!["Ada".into(), "Bob".into()];
///         Ok(Action::DEFAULT)
///     }));
///
/// let mut flow = Flow::new();
/// let ideas = flow.add("ideas", both);
/// let pitch = flow.add("pitch", node_fn(|m: &mut Movie, _| {
///     m.pitch = format!("{} sing {:?}", m.characters.join(" and "), m.song);
///     Ok(Action::DEFAULT)
/// }));
/// flow.then(ideas, pitch);
///
/// let mut movie = Movie { title: "Rust".into(), ..Movie::default() };
/// smol::block_on(flow.run(&mut movie))?;
/// assert_eq!(movie.pitch, r#"Ada and Bob sing "The Rust Theme""#);
/// # Ok::<(), miniflow::Error>(())
/// ```
#[must_use = "a parallel node does nothing until it is added to a flow and run"]
pub struct Parallel<S>(Fan<S>);

impl<S: Send> Parallel<S> {
    /// A parallel node with no branches yet (run as it is, it goes straight to its post).
    pub fn new() -> Self {
        let no_sets = Box::new(|_: &S, _: &Params| Ok(Vec::new()));
        Parallel(Fan::new(Vec::new(), no_sets, usize::MAX, "Parallel"))
    }

    /// Adds a branch: any node, batch node or flow, as [`Flow::add`](crate::Flow::add) takes.
    ///
    /// # Panics
    /// If `name` is not a valid node name or another branch has it, as for `Flow::add`.
    pub fn branch<N, M>(mut self, name: impl Into<String>, node: N) -> Self
    where
        N: IntoNode<S, M>,
    {
        let name = check_name(name.into(), self.0.flows.iter().map(branch), "this parallel node");
        let mut flow = Flow::new();
        flow.add(name, node);
        self.0.flows.push(flow);
        self
    }

    /// Runs at most `limit` branches at once (by default all of them); the others start as
    /// running ones finish, in the order they were added.
    ///
    /// # Panics
    /// If `limit` is 0: no branch could ever start. Use `usize::MAX` for no limit.
    pub fn max_in_flight(mut self, limit: usize) -> Self {
        self.0.limit = in_flight(limit);
        self
    }

    /// Sets the post: it gets the store and each branch's action (in the order the branches
    /// were added) and returns the parallel node's action.
    ///
    /// A branch that fails fails the parallel node; to run every branch to its end whatever
    /// happens, see [`post_outcomes`](Parallel::post_outcomes).
    pub fn post<P>(self, post: P) -> Self
    where
        P: Fn(&mut S, Vec<Action>) -> Result<Action> + Send + Sync + 'static,
    {
        Parallel(self.0.posting(false, Box::new(move |s, _, outcomes| post(s, actions(outcomes)))))
    }

    /// Sets a post that sees each branch's outcome — its action, or the [`FlowError`] it failed
    /// with, naming the node by its path — in the order the branches were added, and makes every
    /// branch run to its end even when others fail. The post decides what a failure means:
    /// its action routes on, and its error fails the parallel node. Replaces
    /// [`post`](Parallel::post), and is replaced by it.
    ///
    /// Each kept error is reported to the run's observer as it happens
    /// ([`Event::SubRunFailed`]). Two errors are never kept: the run's step limit
    /// ([`FlowError::StepLimit`]) stops the whole run, here as anywhere, and so does a node's
    /// invalid setting ([`FlowError::InvalidConfig`], a bug in the code that a post counting
    /// failures would hide).
    pub fn post_outcomes<P>(self, post: P) -> Self
    where
        P: Fn(&mut S, Vec<Result<Action, FlowError>>) -> Result<Action> + Send + Sync + 'static,
    {
        Parallel(self.0.posting(true, Box::new(move |s, _, outcomes| post(s, unboxed(outcomes)))))
    }
}

impl<S: Send> Default for Parallel<S> {
    fn default() -> Self {
        Parallel::new()
    }
}

/// The name of a parallel node's branch: the one node of its flow.
fn branch<S>(flow: &Flow<S>) -> &str {
    &flow.slots[0].name
}

/// Checks an in-flight limit given to a builder.
fn in_flight(limit: usize) -> usize {
    assert!(
        limit > 0,
        "max_in_flight(0) would never start a job; use 1 or more (usize::MAX for no limit)"
    );
    limit
}

macro_rules! fan_types {
    ($($ty:ident),*) => {$(
        #[diagnostic::do_not_recommend]
        impl<S: Send + 'static> IntoNode<S, marker::Nested> for $ty<S> {
            fn into_step(self) -> Step<S> {
                Step::Fan(Box::new(self.0))
            }
        }

        impl<S> fmt::Debug for $ty<S> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    )*};
}
fan_types!(BatchFlow, BatchAsyncFlow, Parallel);

impl<S> Fan<S> {
    fn posting(mut self, keep_going: bool, post: PostFn<S>) -> Self {
        (self.keep_going, self.post) = (keep_going, Some(post));
        self
    }
}

/// The actions of jobs that all succeeded (a fail-fast post sees no others).
fn actions(outcomes: Vec<Outcome<Action>>) -> Vec<Action> {
    outcomes.into_iter().filter_map(Result::ok).collect()
}

/// The outcomes as a `post_outcomes` post sees them.
fn unboxed(outcomes: Vec<Outcome<Action>>) -> Vec<Result<Action, FlowError>> {
    outcomes.into_iter().map(|outcome| outcome.map_err(|e| *e)).collect()
}

macro_rules! fan_post {
    ($($ty:ident),*) => {$(
        impl<S: Send> $ty<S> {
            /// Sets the batch flow's post: it gets the store, the params sets prep returned and
            /// the last action of each sub-run (in the same order), and returns the batch flow's
            /// action. Without one, the action is [`Action::DEFAULT`].
            ///
            /// A sub-run that fails fails the batch flow; to run every sub-run to its end
            /// whatever happens, see [`post_outcomes`](Self::post_outcomes).
            pub fn post<P>(self, post: P) -> Self
            where
                P: Fn(&mut S, Vec<Params>, Vec<Action>) -> Result<Action> + Send + Sync + 'static,
            {
                $ty(self.0.posting(false, Box::new(move |s, sets, outcomes| post(s, sets, actions(outcomes)))))
            }

            /// Sets a post that sees each sub-run's outcome — its last action, or the
            /// [`FlowError`] it failed with, naming the node by its path (`"fan[3]/fetch"`) — in
            /// input order, and makes every sub-run run to its end even when others fail: one
            /// failed item no longer loses the others' results. The post decides what failures
            /// mean (report them, retry them later, go on with the rest): its action routes on,
            /// and its error fails the batch flow. Replaces
            /// [`post`](Self::post), and is replaced by it.
            ///
            /// Each kept error is reported to the run's observer as it happens
            /// ([`Event::SubRunFailed`]). Two errors are never kept: the run's step limit
            /// ([`FlowError::StepLimit`]) stops the whole run, here as anywhere, and so does a
            /// node's invalid setting ([`FlowError::InvalidConfig`], a bug in the code that a
            /// post counting failures would hide).
            ///
            /// ```
            /// use miniflow::{Action, BatchFlow, Flow, FlowError, Params, node_fn};
            ///
            /// let mut inner = Flow::new();
            /// inner.add("half", node_fn(|halves: &mut Vec<i64>, p| {
            ///     let n = p.int("n")?;
            ///     if n % 2 == 1 {
            ///         return Err(format!("{n} is odd").into());
            ///     }
            ///     halves.push(n / 2);
            ///     Ok(Action::DEFAULT)
            /// }));
            /// // The same with a `BatchAsyncFlow`.
            /// let batch = BatchFlow::new(inner, |_: &Vec<i64>, _: &Params| {
            ///     Ok((1..=4).map(|n| Params::new().with("n", n)).collect())
            /// })
            /// .post_outcomes(|_, _, outcomes: Vec<Result<Action, FlowError>>| {
            ///     let failed: Vec<String> = outcomes.iter().filter_map(|o| o.as_ref().err())
            ///         .map(|e| format!("{e:#}")).collect();
            ///     assert_eq!(failed, [
            ///         "node `halves[0]/half` failed in post: 1 is odd",
            ///         "node `halves[2]/half` failed in post: 3 is odd",
            ///     ]);
            ///     Ok(if failed.is_empty() { "done" } else { "partial" }.into())
            /// });
            ///
            /// let mut flow = Flow::new();
            /// flow.add("halves", batch);
            /// let mut halves = Vec::new();
            /// assert_eq!(smol::block_on(flow.run(&mut halves))?, "partial");
            /// assert_eq!(halves, [1, 2]);
            /// # Ok::<(), miniflow::Error>(())
            /// ```
            pub fn post_outcomes<P>(self, post: P) -> Self
            where
                P: Fn(&mut S, Vec<Params>, Vec<Result<Action, FlowError>>) -> Result<Action>
                    + Send
                    + Sync
                    + 'static,
            {
                $ty(self.0.posting(true, Box::new(move |s, sets, outcomes| post(s, sets, unboxed(outcomes)))))
            }
        }
    )*};
}
fan_post!(BatchFlow, BatchAsyncFlow);
