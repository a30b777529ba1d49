//! [`Parallel`]: one node that runs several different nodes or flows at once.

use std::fmt;

use futures::future::BoxFuture;

use crate::batch::{in_flight, run_all};
use crate::flow::check_name;
use crate::run::{self, IntoNode, Outcome, Scope, Sealed, Shape, Step, Store, marker};
use crate::{Action, Phase, Result};

type PostFn<S> = Box<dyn Fn(&mut S, Vec<Action>) -> Result<Action> + Send + Sync>;

/// A node that runs several different nodes or flows — its *branches* — concurrently on the
/// same store, and goes on when all of them have finished.
///
/// Use it where steps do not depend on each other: a song title and a list of characters can
/// both be written from a movie title, so a flow runs them side by side and the next node
/// sees both results. Branches are any nodes, batch nodes or flows, each added with a name
/// (their paths are `"parallel/branch"`); they are polled together in the run's own task —
/// nothing is spawned — up to [`max_in_flight`](Parallel::max_in_flight) at once.
///
/// Like the branches of a [`BatchAsyncFlow`](crate::BatchAsyncFlow), they share the store:
/// each `prep` and `post` has it to itself while it runs. Let each branch write its own part
/// of the store. If a branch fails, the parallel node fails with its error and the branches
/// still running are dropped (what their `post`s already wrote stays). When all have
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
/// flow.then(ideas, pitch)?;
///
/// let mut movie = Movie { title: "Rust".into(), ..Movie::default() };
/// smol::block_on(flow.run(&mut movie))?;
/// assert_eq!(movie.pitch, r#"Ada and Bob sing "The Rust Theme""#);
/// # Ok::<(), miniflow::Error>(())
/// ```
pub struct Parallel<S> {
    branches: Vec<(String, Box<dyn Step<S>>)>,
    limit: usize,
    post: Option<PostFn<S>>,
}

impl<S: Send> Parallel<S> {
    /// A parallel node with no branches yet (run as it is, it goes straight to its post).
    pub fn new() -> Self {
        Parallel { branches: Vec::new(), limit: usize::MAX, post: None }
    }

    /// Adds a branch: any node, batch node or flow, as [`Flow::add`](crate::Flow::add) takes.
    ///
    /// # Panics
    /// If `name` is not a valid node name or another branch has it, as for `Flow::add`.
    #[must_use = "`branch` returns the parallel node with the branch added"]
    pub fn branch<N, M>(mut self, name: impl Into<String>, node: N) -> Self
    where
        N: IntoNode<S, M>,
    {
        let taken = self.branches.iter().map(|(n, _)| &**n);
        let name = check_name(name.into(), taken, "this parallel node");
        self.branches.push((name, node.into_step()));
        self
    }

    /// Runs at most `limit` branches at once (by default all of them); the others start as
    /// running ones finish, in the order they were added.
    ///
    /// # Panics
    /// If `limit` is 0: no branch could ever start. Use `usize::MAX` for no limit.
    #[must_use = "`max_in_flight` returns the parallel node with its limit set"]
    pub fn max_in_flight(mut self, limit: usize) -> Self {
        assert!(limit > 0, "max_in_flight(0) would never start a branch; use 1 or more");
        self.limit = limit;
        self
    }

    /// Sets the post: it gets the store and each branch's action (in the order the branches
    /// were added) and returns the parallel node's action.
    #[must_use = "`post` returns the parallel node with its post set"]
    pub fn post<P>(mut self, post: P) -> Self
    where
        P: Fn(&mut S, Vec<Action>) -> Result<Action> + Send + Sync + 'static,
    {
        self.post = Some(Box::new(post));
        self
    }
}

impl<S: Send> Step<S> for Parallel<S> {
    fn run<'a>(
        &'a self,
        mut store: Store<'a, S>,
        scope: &'a Scope<'a>,
    ) -> BoxFuture<'a, Outcome<(Action, usize)>> {
        run::boxed(move || async move {
            let limit = in_flight(self.limit, scope.path)?;
            let actions = {
                let mut own = None;
                let lock = store.lock(&mut own);
                // Jobs made from indices, not from borrowed branches: see `BatchNode`'s run.
                let jobs = (0..self.branches.len()).map(|i| async move {
                    let (name, step) = &self.branches[i];
                    let path = scope.path.child(name);
                    let scope = Scope { path: &path, ..*scope };
                    (i, run::visit(&**step, Store::Shared(lock), &scope).await)
                });
                run_all(jobs, limit).await?.0
            };
            let action = match &self.post {
                None => Action::DEFAULT,
                Some(post) => store.phase(scope.path, Phase::Post, 0, |s| post(s, actions))?,
            };
            Ok((action, 0))
        })
    }

    fn shape(&self) -> Shape<'_, S> {
        Shape::Parallel(&self.branches)
    }
}

impl<S: Send + 'static> Sealed<S, marker::Nested> for Parallel<S> {
    fn into_step(self) -> Box<dyn Step<S>> {
        Box::new(self)
    }
}

impl<S: Send> Default for Parallel<S> {
    fn default() -> Self {
        Parallel::new()
    }
}

impl<S> fmt::Debug for Parallel<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.branches.iter().map(|(name, _)| &**name).collect();
        f.debug_struct("Parallel")
            .field("branches", &names)
            .field("max_in_flight", &self.limit)
            .field("post", &self.post.is_some())
            .finish()
    }
}
