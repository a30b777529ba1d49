//! [`Flow`]: nodes connected by actions, run from a start node until a node ends it.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::BoxFuture;

use crate::run::{IntoNode, Outcome, Path, Scope, Sealed, Step, Store, marker};
use crate::{Action, FlowError, Params};

/// The key of a node in a flow, returned by [`Flow::add`] and given back to connect it.
///
/// A `NodeId` belongs to the flow that returned it; giving it to another flow is an error
/// ([`FlowError::ForeignNode`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeId {
    flow: u64,
    index: usize,
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({} of flow #{})", self.index, self.flow)
    }
}

/// Where an edge leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Node(usize),
    End,
}

struct Slot<S> {
    name: String,
    step: Box<dyn Step<S>>,
    edges: Vec<(Action, Target)>,
}

/// A graph of nodes connected by actions: the unit you build once and run many times.
///
/// Build it by [adding](Flow::add) nodes — each add returns a [`NodeId`] — and connecting them:
/// [`edge(from, action, to)`](Flow::edge) says "when `from`'s `post` returns `action`, go to
/// `to`"; [`then(from, to)`](Flow::then) is the same for [`Action::DEFAULT`]. The first node
/// added is where a run starts (change it with [`set_start`](Flow::set_start)).
///
/// A run visits one node at a time and follows the edge for the action that node returned:
///
/// - a node **without any edges** ends the run, and its action is the run's result;
/// - a node with edges, but none for the action it returned, fails the run with
///   [`FlowError::UnknownAction`] — a typo in an action name is caught, not silently ignored;
/// - unless that action was declared an **end edge** with [`end`](Flow::end): then the run
///   ends there with that action.
///
/// Edges may point back, so flows loop. A flow is a node itself: [`add`](Flow::add) one flow to
/// another and the inner flow's last action routes the outer one.
///
/// A built flow is immutable while it runs (`run` takes `&self`), `Send` and `Sync`: put it in
/// an `Arc` and serve many runs at once, each with its own store.
///
/// ```
/// use miniflow::{Action, Flow, node_fn};
///
/// // A store that counts down and records the way it went.
/// #[derive(Default)]
/// struct Count { n: u32, log: Vec<String> }
///
/// let mut flow = Flow::new();
/// let check = flow.add("check", node_fn(|s: &mut Count, _| {
///     s.log.push(format!("check {}", s.n));
///     Ok(if s.n == 0 { "zero" } else { "more" }.into())
/// }));
/// let down = flow.add("down", node_fn(|s: &mut Count, _| {
///     s.n -= 1;
///     Ok(Action::DEFAULT)
/// }));
/// flow.edge(check, "more", down)?;
/// flow.then(down, check)?;
/// flow.end(check, "zero")?;
///
/// let mut store = Count { n: 2, ..Count::default() };
/// let last = smol::block_on(flow.run(&mut store))?;
/// assert_eq!(last, "zero");
/// assert_eq!(store.log, ["check 2", "check 1", "check 0"]);
/// # Ok::<(), miniflow::Error>(())
/// ```
pub struct Flow<S> {
    id: u64,
    slots: Vec<Slot<S>>,
    start: usize,
}

impl<S> Flow<S> {
    /// An empty flow. Running it before a node is added fails with [`FlowError::EmptyFlow`].
    pub fn new() -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Flow { id: NEXT_ID.fetch_add(1, Ordering::Relaxed), slots: Vec::new(), start: 0 }
    }

    /// Adds a node and returns its key. The first node added is where runs start.
    ///
    /// `node` is anything [`IntoNode`] accepts: a [`Node`](crate::Node), a
    /// [`BatchNode`](crate::BatchNode), or another flow — a [`Flow`],
    /// [`BatchFlow`](crate::BatchFlow) or [`BatchAsyncFlow`](crate::BatchAsyncFlow).
    ///
    /// `name` is how errors (and paths through nested flows) refer to the node.
    ///
    /// # Panics
    /// If `name` is empty, contains `/`, `[` or `]` (which paths use to separate nodes and
    /// number items), or is already the name of a node in this flow: names must tell nodes
    /// apart.
    pub fn add<N, M>(&mut self, name: impl Into<String>, node: N) -> NodeId
    where
        N: IntoNode<S, M>,
    {
        let name = name.into();
        assert!(
            !name.is_empty() && !name.contains(['/', '[', ']']),
            "node name {name:?} is not valid: give each node a non-empty name without `/`, `[` or `]`"
        );
        assert!(
            !self.slots.iter().any(|s| s.name == name),
            "this flow already has a node named {name:?}: give each node a name of its own"
        );
        self.slots.push(Slot { name, step: node.into_step(), edges: Vec::new() });
        NodeId { flow: self.id, index: self.slots.len() - 1 }
    }

    /// Connects `from` to `to` for `action`: when `from`'s `post` returns `action`, the run
    /// goes on at `to`. `to` may be `from` itself, or an earlier node (a loop).
    ///
    /// # Errors
    /// [`FlowError::DuplicateEdge`] if `from` already has an edge (or end edge) for `action`;
    /// [`FlowError::ForeignNode`] if either id was returned by another flow.
    pub fn edge(
        &mut self,
        from: NodeId,
        action: impl Into<Action>,
        to: NodeId,
    ) -> Result<(), FlowError> {
        let to = self.index(to)?;
        self.add_edge(from, action.into(), Target::Node(to))
    }

    /// Connects `from` to `to` for [`Action::DEFAULT`]: `flow.then(a, b)` is
    /// `flow.edge(a, "default", b)`.
    ///
    /// # Errors
    /// As for [`edge`](Flow::edge).
    pub fn then(&mut self, from: NodeId, to: NodeId) -> Result<(), FlowError> {
        self.edge(from, Action::DEFAULT, to)
    }

    /// Declares that `action`, returned by `from`, ends the run (with `action` as its result).
    ///
    /// Needed only for nodes that also have edges: a node with no edges ends the run whatever
    /// it returns. With edges, every action the node may return needs an edge or an end edge,
    /// or the run fails with [`FlowError::UnknownAction`].
    ///
    /// # Errors
    /// As for [`edge`](Flow::edge).
    pub fn end(&mut self, from: NodeId, action: impl Into<Action>) -> Result<(), FlowError> {
        self.add_edge(from, action.into(), Target::End)
    }

    /// Makes `node` the one runs start at (by default, the first node added).
    ///
    /// # Errors
    /// [`FlowError::ForeignNode`] if `node` was returned by another flow.
    pub fn set_start(&mut self, node: NodeId) -> Result<(), FlowError> {
        self.start = self.index(node)?;
        Ok(())
    }

    /// The name a node was added with.
    ///
    /// # Errors
    /// [`FlowError::ForeignNode`] if `node` was returned by another flow.
    pub fn name(&self, node: NodeId) -> Result<&str, FlowError> {
        Ok(&self.slots[self.index(node)?].name)
    }

    /// How many nodes this flow has (a nested flow counts as one).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no node has been added yet.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn index(&self, node: NodeId) -> Result<usize, FlowError> {
        match node.flow == self.id {
            true => Ok(node.index),
            false => Err(FlowError::ForeignNode { id: node }),
        }
    }

    fn add_edge(&mut self, from: NodeId, action: Action, to: Target) -> Result<(), FlowError> {
        let from = self.index(from)?;
        let slot = &mut self.slots[from];
        if slot.edges.iter().any(|(a, _)| *a == action) {
            return Err(FlowError::DuplicateEdge { node: slot.name.clone(), action });
        }
        slot.edges.push((action, to));
        Ok(())
    }
}

impl<S: Send> Flow<S> {
    /// Runs the flow on `store` from its start node until a node ends it, and returns the last
    /// action. The same as [`run_with`](Flow::run_with) with no params.
    ///
    /// # Errors
    /// The first error of the run, naming the node by its path: a node's own error
    /// ([`FlowError::NodeFailed`], with the error as its `source()` and the attempts made), a
    /// param it asked for and did not get ([`FlowError::Param`]), an action with no edge
    /// ([`FlowError::UnknownAction`]), an empty flow ([`FlowError::EmptyFlow`]) or a node
    /// setting out of range ([`FlowError::InvalidConfig`]). Whatever the nodes' `post`s wrote
    /// before the error stays in the store.
    ///
    /// # Cancellation
    /// Dropping the returned future stops the run at its next `.await` (inside some `exec`, or
    /// a `wait`). Every `post` that ran is in the store; none ran halfway. See the
    /// [crate docs](crate#cancellation).
    pub async fn run(&self, store: &mut S) -> Result<Action, FlowError> {
        self.run_with(store, &Params::new()).await
    }

    /// Runs the flow with `params` passed down to every node it runs (and on through nested
    /// flows). See [`run`](Flow::run).
    ///
    /// # Errors
    /// As for [`run`](Flow::run).
    pub async fn run_with(&self, store: &mut S, params: &Params) -> Result<Action, FlowError> {
        self.run_in(Store::Own(store), Scope { params, path: &Path::ROOT }).await.map_err(|e| *e)
    }

    /// The run loop: visit a node, follow its action, repeat.
    pub(crate) async fn run_in(
        &self,
        mut store: Store<'_, S>,
        scope: Scope<'_>,
    ) -> Outcome<Action> {
        if self.slots.is_empty() {
            return Err(FlowError::EmptyFlow { node: scope.path.to_string() }.into());
        }
        let mut current = self.start;
        loop {
            let slot = &self.slots[current];
            let path = scope.path.child(&slot.name);
            let action = slot
                .step
                .run(store.reborrow(), Scope { params: scope.params, path: &path })
                .await?;
            match slot.edges.iter().find(|(a, _)| *a == action) {
                Some((_, Target::Node(next))) => current = *next,
                Some((_, Target::End)) => return Ok(action),
                None if slot.edges.is_empty() => return Ok(action),
                None => {
                    let expected = slot.edges.iter().map(|(a, _)| a.clone()).collect();
                    return Err(FlowError::UnknownAction {
                        node: path.to_string(),
                        action,
                        expected,
                    }
                    .into());
                }
            }
        }
    }
}

impl<S: Send> Step<S> for Flow<S> {
    fn run<'a>(&'a self, store: Store<'a, S>, scope: Scope<'a>) -> BoxFuture<'a, Outcome<Action>> {
        Box::pin(self.run_in(store, scope))
    }
}

impl<S: Send + 'static> Sealed<S, marker::Nested> for Flow<S> {
    fn into_step(self) -> Box<dyn Step<S>> {
        Box::new(self)
    }
}

impl<S> Default for Flow<S> {
    fn default() -> Self {
        Flow::new()
    }
}

impl<S> fmt::Debug for Flow<S> {
    /// The nodes by name with their edges: `Flow { check: {"more": down, "zero": END}, … }`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Edges<'a, S>(&'a Flow<S>, &'a Slot<S>);
        impl<S> fmt::Debug for Edges<'_, S> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut map = f.debug_map();
                for (action, target) in &self.1.edges {
                    match target {
                        Target::Node(i) => {
                            map.key(action).value(&format_args!("{}", self.0.slots[*i].name))
                        }
                        Target::End => map.key(action).value(&format_args!("END")),
                    };
                }
                map.finish()
            }
        }
        let mut s = f.debug_struct("Flow");
        for slot in &self.slots {
            s.field(&slot.name, &Edges(self, slot));
        }
        if let Some(start) = self.slots.get(self.start) {
            s.field("(start)", &format_args!("{}", start.name));
        }
        s.finish()
    }
}
