//! [`Flow`]: nodes connected by actions, run from a start node until a node ends it.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::observe::Ending;
use crate::run::{self, IntoNode, NodePath, Outcome, RECENT, RunCx, Scope, Step};
use crate::run::{Save, Store, marker};
use crate::{Action, FlowError, MAX_DEPTH, Observer, Params, Result};

/// The key of a node in a flow, returned by [`Flow::add`] and given back to connect it.
///
/// A `NodeId` belongs to the flow that returned it; giving it to another flow panics.
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

pub(crate) struct Slot<S> {
    pub(crate) name: String,
    pub(crate) step: Step<S>,
    /// The actions with where each leads: a node's index, or `None` for an end edge.
    pub(crate) edges: Vec<(Action, Option<usize>)>,
    /// The longest a visit may take: see [`Flow::timeout`].
    timeout: Option<Duration>,
}

/// A graph of nodes connected by actions: the unit you build once and run many times. It
/// replaces PocketFlow's `Flow` and `AsyncFlow`.
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
/// flow.edge(check, "more", down);
/// flow.then(down, check);
/// flow.end(check, "zero");
///
/// let mut store = Count { n: 2, ..Count::default() };
/// let last = smol::block_on(flow.run(&mut store))?;
/// assert_eq!(last, "zero");
/// assert_eq!(store.log, ["check 2", "check 1", "check 0"]);
/// # Ok::<(), miniflow::Error>(())
/// ```
pub struct Flow<S> {
    id: u64,
    pub(crate) slots: Vec<Slot<S>>,
    pub(crate) start: usize,
    /// The nodes declared with [`entry`](Flow::entry): reachable, as the start is.
    entries: Vec<usize>,
}

impl<S> Flow<S> {
    /// An empty flow. Running it before a node is added fails with
    /// [`FlowError::InvalidConfig`].
    pub fn new() -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Flow { id, slots: Vec::new(), start: 0, entries: Vec::new() }
    }

    /// A flow of one node: how to run a node, a batch node or a batch flow by itself
    /// (PocketFlow's `node.run(shared)`). `Flow::of(node).run(&mut store).await` runs it once,
    /// with its retries and fallback, and returns the action its `post` chose;
    /// [`run_with`](Flow::run_with) gives it params, an observer or a step limit.
    ///
    /// The node is named after its type, without module path or generic arguments
    /// (`Summarize` for `my_app::Summarize<T>`, also behind an `Arc`), which is how errors and
    /// events name it. The name comes from [`std::any::type_name`], whose text the compiler
    /// does not promise to keep: for a name to rely on (a checkpoint, a resume), use
    /// [`add`](Flow::add).
    ///
    /// ```
    /// use miniflow::{Action, Ctx, Flow, Node, Params, Result};
    ///
    /// struct Double;
    ///
    /// impl Node<i64> for Double {
    ///     type Prep = i64;
    ///     type Output = i64;
    ///     fn prep(&self, n: &i64, _: &Params) -> Result<i64> {
    ///         Ok(*n)
    ///     }
    ///     async fn exec(&self, n: &i64, _: Ctx<'_>) -> Result<i64> {
    ///         n.checked_mul(2).ok_or_else(|| "too large".into())
    ///     }
    ///     fn post(&self, n: &mut i64, _: i64, doubled: i64) -> Result<Action> {
    ///         *n = doubled;
    ///         Ok(Action::DEFAULT)
    ///     }
    /// }
    ///
    /// let mut n = 21;
    /// assert_eq!(smol::block_on(Flow::of(Double).run(&mut n))?, "default");
    /// assert_eq!(n, 42);
    ///
    /// let mut huge = i64::MAX;
    /// let error = smol::block_on(Flow::of(Double).run(&mut huge)).unwrap_err();
    /// assert_eq!(error.to_string(), "node `Double` failed in exec after 1 attempt");
    /// # Ok::<(), miniflow::Error>(())
    /// ```
    pub fn of<N, M>(node: N) -> Self
    where
        N: IntoNode<S, M>,
    {
        let full = std::any::type_name::<N>();
        let arc = full.strip_prefix("alloc::sync::Arc<").and_then(|t| t.strip_suffix('>'));
        let inner = arc.unwrap_or(full);
        let path = inner.split('<').next().unwrap_or(inner);
        let mut flow = Flow::new();
        flow.add(path.rsplit("::").next().unwrap_or(path).replace(['[', ']'], ""), node);
        flow
    }

    /// Adds a node and returns its key. The first node added is where runs start.
    ///
    /// `node` is anything [`IntoNode`] accepts: a [`Node`](crate::Node), a
    /// [`BatchNode`](crate::BatchNode), another flow — a [`Flow`],
    /// [`BatchFlow`](crate::BatchFlow) or [`BatchAsyncFlow`](crate::BatchAsyncFlow) — or a
    /// [`Parallel`](crate::Parallel).
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
        let name = check_name(name.into(), self.slots.iter().map(|s| &*s.name), "this flow");
        self.slots.push(Slot { name, step: node.into_step(), edges: Vec::new(), timeout: None });
        NodeId { flow: self.id, index: self.slots.len() - 1 }
    }

    /// Connects `from` to `to` for `action`: when `from`'s `post` returns `action`, the run
    /// goes on at `to`. `to` may be `from` itself, or an earlier node (a loop). Returns the flow,
    /// so that edges can be chained: `flow.then(a, b).then(b, c)`.
    ///
    /// # Panics
    /// If `from` already has an edge (or end edge) for `action` — an action leads to one place —
    /// or if either id was returned by another flow. Both are mistakes in the code that builds
    /// the flow, like an index out of bounds, so they panic as `add` does for a bad name.
    pub fn edge(&mut self, from: NodeId, action: impl Into<Action>, to: NodeId) -> &mut Self {
        let to = self.index(to);
        self.add_edge(from, action.into(), Some(to))
    }

    /// Connects `from` to `to` for [`Action::DEFAULT`]: `flow.then(a, b)` is
    /// `flow.edge(a, "default", b)`.
    ///
    /// # Panics
    /// As [`edge`](Flow::edge).
    pub fn then(&mut self, from: NodeId, to: NodeId) -> &mut Self {
        self.edge(from, Action::DEFAULT, to)
    }

    /// Connects each node to the next for [`Action::DEFAULT`]: `flow.chain(&[a, b, c])` is
    /// `flow.then(a, b).then(b, c)` (PocketFlow's `a >> b >> c`). Fewer than two nodes connect
    /// nothing.
    ///
    /// # Panics
    /// As [`edge`](Flow::edge), at the first pair that already has a default edge or comes
    /// from another flow; the pairs before it stay connected.
    pub fn chain(&mut self, nodes: &[NodeId]) -> &mut Self {
        for pair in nodes.windows(2) {
            self.then(pair[0], pair[1]);
        }
        self
    }

    /// Declares that `action`, returned by `from`, ends the run (with `action` as its result).
    ///
    /// Needed only for nodes that also have edges: a node with no edges ends the run whatever
    /// it returns. With edges, every action the node may return needs an edge or an end edge,
    /// or the run fails with [`FlowError::UnknownAction`].
    ///
    /// # Panics
    /// As [`edge`](Flow::edge).
    pub fn end(&mut self, from: NodeId, action: impl Into<Action>) -> &mut Self {
        self.add_edge(from, action.into(), None)
    }

    /// Makes `node` the one runs start at (by default, the first node added).
    ///
    /// # Panics
    /// If `node` was returned by another flow.
    pub fn set_start(&mut self, node: NodeId) -> &mut Self {
        self.start = self.index(node);
        self
    }

    /// Declares `node` an entry point: a node where runs may be started with
    /// [`RunOptions::start_at`] — to resume there, or to take a person's answer — although no
    /// edge leads to it. [`validate`](Flow::validate) and every run count it as reachable, like
    /// the start node, and the nodes its edges lead to with it; without the declaration, such
    /// a node is an unreachable node, which fails validation. (Any node can be started at; only the
    /// ones no edge reaches need this.)
    ///
    /// A nested flow may have entry points too: a run starts at one by its path
    /// (`"review/approved"`).
    ///
    /// ```
    /// use miniflow::{Action, Flow, RunOptions, node_fn};
    ///
    /// let mut flow = Flow::<Vec<&str>>::new();
    /// let draft = flow.add("draft", node_fn(|log: &mut Vec<&str>, _| {
    ///     log.push("draft");
    ///     Ok("ask_human".into()) // ends the run: a person reviews the draft
    /// }));
    /// let approved = flow.add("approved", node_fn(|log: &mut Vec<&str>, _| {
    ///     log.push("send");
    ///     Ok(Action::DEFAULT)
    /// }));
    /// flow.end(draft, "ask_human");
    /// flow.entry(approved); // reached only by resuming there
    ///
    /// let mut log = Vec::new();
    /// smol::block_on(flow.run(&mut log))?;
    /// smol::block_on(flow.run_with(&mut log, RunOptions::new().start_at("approved")))?;
    /// assert_eq!(log, ["draft", "send"]);
    /// # Ok::<(), miniflow::Error>(())
    /// ```
    ///
    /// # Panics
    /// If `node` was returned by another flow.
    pub fn entry(&mut self, node: NodeId) -> &mut Self {
        self.entries.push(self.index(node));
        self
    }

    /// Limits each visit of `node` to `limit`, everything inside it included: a nested flow's
    /// nodes, a batch flow's sub-runs, a parallel node's branches, a batch node's items, every
    /// attempt and the pauses between them. A visit still running at the limit is dropped at
    /// its next `.await` (as a dropped run is: every `post` that completed stays, none is left
    /// halfway) and the run fails with [`FlowError::Timeout`] naming the node. A zero limit
    /// runs out at once: the node counts as started (for the step limit and the observer) and
    /// fails before its `prep`. Setting it again replaces it; `Duration::MAX` is no limit.
    ///
    /// Unlike [`Node::timeout`](crate::Node::timeout), which limits one attempt of `exec` and
    /// counts as a failed attempt, this is for the visit as a whole: no retry and no fallback
    /// follow. It is how a nested agent gets a deadline: the run's step limit, observer and
    /// cancellation keep working inside it, since its nodes run in the same run. The run
    /// fails; to go on after a timeout instead, make the flow that holds the node (with its
    /// timeout) a branch of a [`Parallel`](crate::Parallel), whose
    /// [`post_outcomes`](crate::Parallel::post_outcomes) turns the error into an action. Like any cancellation, the limit takes effect at an `.await`: blocking work
    /// inside an `exec` (or on a thread it waits for) runs on until it returns.
    ///
    /// ```
    /// use std::time::Duration;
    /// use miniflow::{Action, Flow, FlowError, node_fn};
    ///
    /// // An inner agent that never decides it is done.
    /// let mut agent = Flow::<u64>::new();
    /// let think = agent.add("think", node_fn(|n: &mut u64, _| { *n += 1; Ok(Action::DEFAULT) }));
    /// agent.then(think, think);
    ///
    /// let mut flow = Flow::new();
    /// let inner = flow.add("agent", agent);
    /// flow.timeout(inner, Duration::from_millis(20));
    ///
    /// let mut thoughts = 0;
    /// let err = smol::block_on(flow.run(&mut thoughts)).unwrap_err();
    /// assert!(matches!(&err, FlowError::Timeout { node, .. } if node == "agent"));
    /// assert_eq!(err.to_string(), "node `agent` did not finish within its time limit of 20ms");
    /// assert!(thoughts > 0);
    /// ```
    ///
    /// # Panics
    /// If `node` was returned by another flow.
    pub fn timeout(&mut self, node: NodeId, limit: Duration) -> &mut Self {
        let node = self.index(node);
        self.slots[node].timeout = Some(limit);
        self
    }

    /// The name a node was added with.
    ///
    /// # Panics
    /// If `node` was returned by another flow.
    pub fn name(&self, node: NodeId) -> &str {
        &self.slots[self.index(node)].name
    }

    /// How many nodes this flow has (a nested flow counts as one).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no node has been added yet.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn index(&self, node: NodeId) -> usize {
        assert!(
            node.flow == self.id,
            "{node:?} was returned by another flow's `add`; connect only ids this flow returned"
        );
        node.index
    }

    fn add_edge(&mut self, from: NodeId, action: Action, to: Option<usize>) -> &mut Self {
        let from = self.index(from);
        let slot = &mut self.slots[from];
        assert!(
            slot.edges.iter().all(|(a, _)| *a != action),
            "node `{}` already has an edge for action {action:?}; an action leads to one place, \
             so remove one of the two edges or give it another action",
            slot.name
        );
        slot.edges.push((action, to));
        self
    }

    /// Checks the flow and every flow nested in it for the mistakes a run would report before
    /// running anything: no nodes, nodes that can never run because no edge leads to them from
    /// the start, and flows nested deeper than [`MAX_DEPTH`];
    /// each is a [`FlowError::InvalidConfig`] that names the flow and says how to fix it.
    ///
    /// Every run does this check before running anything (once per run, for the whole tree of
    /// flows), so calling it is optional: it moves the error to where the
    /// flow is built, or into a unit test of it. The other mistakes are caught even earlier:
    /// an edge to a node of another flow, or a second edge for the same action, panics in
    /// [`edge`](Flow::edge) itself.
    ///
    /// ```
    /// use miniflow::{Action, Flow, FlowError, node_fn};
    ///
    /// let mut flow = Flow::<()>::new();
    /// let draft = flow.add("draft", node_fn(|_, _| Ok(Action::DEFAULT)));
    /// let _review = flow.add("review", node_fn(|_, _| Ok(Action::DEFAULT)));
    /// // Forgot `flow.then(draft, review)`:
    /// let err = flow.validate().unwrap_err();
    /// assert!(matches!(&err, FlowError::InvalidConfig { node, .. } if node.is_empty()));
    /// assert_eq!(
    ///     err.to_string(),
    ///     "node `review` can never run: no edge leads to it from the start node `draft`; \
    ///      connect it with `Flow::edge` or `Flow::then`, or remove it (a node that runs only \
    ///      when a run resumes there is declared with `Flow::entry`)"
    /// );
    /// # let _ = draft;
    /// ```
    ///
    /// # Errors
    /// The first problem found, naming the flow by its path.
    pub fn validate(&self) -> Result<(), FlowError> {
        self.validate_in(&NodePath::ROOT, 1).map_err(|e| *e)
    }

    /// Checks this flow, at nesting level `depth`, and the flows in it.
    fn validate_in(&self, path: &NodePath<'_>, depth: usize) -> Outcome<()> {
        fn nested<S>(step: &Step<S>, path: &NodePath<'_>, depth: usize) -> Outcome<()> {
            match step {
                Step::Leaf(..) => Ok(()),
                _ if depth == MAX_DEPTH => Err(too_deep(path)),
                Step::Flow(flow) => flow.validate_in(path, depth + 1),
                Step::Fan(fan) => fan.flows.iter().try_for_each(|f| f.validate_in(path, depth + 1)),
            }
        }
        let flow = if path.is_root() { String::new() } else { format!("{path}/") };
        if self.slots.is_empty() {
            let message = match path.is_root() {
                true => "the flow has no nodes".to_string(),
                false => format!("flow `{path}` has no nodes"),
            };
            let message = message + "; add one with `Flow::add` before running it";
            return Err(run::invalid(path, message));
        }
        let mut seen = vec![false; self.slots.len()];
        let mut todo: Vec<usize> = self.entries.iter().copied().chain([self.start]).collect();
        while let Some(i) = todo.pop() {
            if !std::mem::replace(&mut seen[i], true) {
                todo.extend(self.slots[i].edges.iter().filter_map(|(_, to)| *to));
            }
        }
        let unreachable: Vec<String> = (self.slots.iter().zip(seen))
            .filter(|(_, seen)| !seen)
            .map(|(slot, _)| format!("`{flow}{}`", slot.name))
            .collect();
        if !unreachable.is_empty() {
            let (s, it) = if unreachable.len() == 1 { ("", "it") } else { ("s", "them") };
            let start = &self.slots[self.start].name;
            let message = format!(
                "node{s} {} can never run: no edge leads to {it} from the start node \
                 `{flow}{start}`; connect {it} with `Flow::edge` or `Flow::then`, or remove {it} \
                 (a node that runs only when a run resumes there is declared with `Flow::entry`)",
                unreachable.join(", ")
            );
            return Err(run::invalid(path, message));
        }
        let mut slots = self.slots.iter();
        slots.try_for_each(|slot| nested(&slot.step, &path.child(&slot.name), depth))
    }

    /// The node `path` names for [`RunOptions::start_at`] — a node of this flow (`"z"`), or
    /// one inside a nested flow (`"sub/z"`) — as its index here and the rest of the path. The
    /// whole path is checked, so a run fails on a wrong one before any node runs. `at` is this
    /// flow's own path.
    fn find<'p>(&self, path: &'p str, at: &NodePath<'_>) -> Outcome<(usize, Option<&'p str>)> {
        let (name, rest) = path.split_once('/').map_or((path, None), |(n, r)| (n, Some(r)));
        let Some(i) = self.slots.iter().position(|slot| slot.name == name) else {
            let names: Vec<String> = self.slots.iter().map(|s| format!("{:?}", s.name)).collect();
            let flow = if at.is_root() { "the flow".into() } else { format!("flow `{at}`") };
            let message = format!(
                "{flow} has no node named {name:?} to start at; its nodes are {}",
                names.join(", ")
            );
            return Err(run::invalid(at, message));
        };
        match (&self.slots[i].step, rest) {
            (_, None) => Ok((i, None)),
            (Step::Flow(flow), Some(rest)) => {
                flow.find(rest, &at.child(name)).map(|_| (i, Some(rest)))
            }
            (_, Some(_)) => {
                let node = at.child(name);
                let message = format!(
                    "a run cannot start inside node `{node}`: only a nested `Flow` can be entered \
                     at one of its nodes; start at `{node}` itself (a batch flow or parallel node \
                     then runs all its sub-runs or branches again)"
                );
                Err(run::invalid(at, message))
            }
        }
    }

    /// Adds this flow's most recent node runs (up to [`RECENT`] in all) in front of the ones
    /// a [`FlowError::StepLimit`] leaving it already lists. `recent` is the ring of the
    /// indices of its last node runs, `runs` how many it made.
    #[cold]
    fn trail(
        &self,
        mut error: Box<FlowError>,
        recent: &[usize; RECENT],
        runs: usize,
        path: &NodePath<'_>,
    ) -> Box<FlowError> {
        if let FlowError::StepLimit { last, .. } = &mut *error {
            let names = (runs.saturating_sub(RECENT)..runs)
                .map(|run| path.child(&self.slots[recent[run % RECENT]].name).to_string());
            let mut all: Vec<String> = names.chain(last.drain(..)).collect();
            all.drain(..all.len().saturating_sub(RECENT));
            *last = all;
        }
        error
    }
}

/// The error for a flow, batch flow or parallel node at `path`, nested one level deeper than
/// [`MAX_DEPTH`].
#[cold]
fn too_deep(path: &NodePath<'_>) -> Box<FlowError> {
    let message = format!(
        "it is nested {} levels deep, and flows nest at most {MAX_DEPTH} (`miniflow::MAX_DEPTH`), \
         so that a run cannot overflow its thread's stack; flatten the flow, for example by \
         chaining flows instead of nesting each in the one before",
        MAX_DEPTH + 1
    );
    run::invalid(path, format!("node `{path}`: {message}"))
}

/// Checks a node name for [`Flow::add`] and [`Parallel::branch`](crate::Parallel::branch).
pub(crate) fn check_name<'a>(
    name: String,
    mut taken: impl Iterator<Item = &'a str>,
    place: &str,
) -> String {
    assert!(
        !name.is_empty() && !name.contains(['/', '[', ']']),
        "node name {name:?} is not valid: give each node a non-empty name without `/`, `[` or `]`"
    );
    assert!(
        !taken.any(|t| t == name),
        "{place} already has a node named {name:?}: give each node a name of its own"
    );
    name
}

impl<S: Send> Flow<S> {
    /// Runs the flow on `store` from its start node until a node ends it, and returns the last
    /// action. The same as [`run_with`](Flow::run_with) with default [`RunOptions`].
    ///
    /// # Errors
    /// The first error of the run, naming the node by its path: a node's own error
    /// ([`FlowError::NodeFailed`], with the error as its `source()` and the attempts made), a
    /// param it asked for and did not get ([`FlowError::Param`]), an action with no edge
    /// ([`FlowError::UnknownAction`]), or a node setting out of range or a flow that cannot run
    /// as built ([`FlowError::InvalidConfig`]; see [`validate`](Flow::validate)), or a node
    /// that ran past its [`Flow::timeout`] ([`FlowError::Timeout`]).
    /// Whatever the nodes' `post`s wrote before the error stays in the store.
    ///
    /// # Cancellation
    /// Dropping the returned future stops the run at its next `.await` (inside some `exec`, a
    /// `wait`, or a turn the run gives its executor between two nodes). Every `post` that ran
    /// is in the store; none ran halfway. See the [crate docs](crate#cancellation).
    ///
    /// # Panics
    /// Only if a node does: a panic in any node's `prep`, `exec`, `exec_fallback` or `post`, or
    /// in a batch flow's or parallel node's closures, is not caught. It unwinds out of this
    /// future to whoever polls it, payload untouched (a spawned task's `JoinError` carries
    /// it), and the run is over as if dropped: the store keeps every `post` that completed
    /// (and whatever a panicking `post` wrote before it panicked), an observer receives
    /// [`Event::Cancelled`](crate::Event::Cancelled), and the flow itself is unchanged and can
    /// run again at once.
    pub async fn run(&self, store: &mut S) -> Result<Action, FlowError> {
        self.run_with(store, RunOptions::new()).await
    }

    /// Runs the flow with `options`: params for its nodes, an observer, a step limit, a time
    /// limit, a checkpoint hook, or a node to start (or resume) at. See [`RunOptions`] and
    /// [`run`](Flow::run).
    ///
    /// # Errors
    /// As for [`run`](Flow::run), and also [`FlowError::StepLimit`] when the run reaches its
    /// step limit, [`FlowError::Timeout`] (with an empty `node`) when it runs past its
    /// [`timeout`](RunOptions::timeout), [`FlowError::Checkpoint`] when the checkpoint hook
    /// fails, and [`FlowError::InvalidConfig`] when the path given to
    /// [`start_at`](RunOptions::start_at) names no node.
    pub async fn run_with(
        &self,
        store: &mut S,
        options: RunOptions<'_, S>,
    ) -> Result<Action, FlowError> {
        let RunOptions { params, observer, mut checkpoint, max_steps, start, timeout } = options;
        let run = RunCx::new(observer, max_steps);
        let scope = Scope { params: &params, path: &NodePath::ROOT, run: &run };
        let ending = Ending::start(observer);
        let save = checkpoint.as_deref_mut().map(|save| save as &mut Save<'_, S>);
        let result = async {
            // The whole tree first, so that a mistake deep inside fails before any node runs.
            // The time limit is for running nodes: a flow that cannot run says why.
            self.validate_in(scope.path, 1)?;
            let nodes = self.run_in(Store::Own(store), &scope, start, save);
            run::within(nodes, timeout, scope.path).await
        };
        let result = result.await.map_err(|e| *e);
        ending.finish(&result);
        result
    }

    /// The run loop: visit a node, follow its action, repeat. `start` (the start node by
    /// default; a path `"sub/z"` enters the nested flow `sub` at `z`) and `save` (the checkpoint
    /// hook) come from the run, through the nested flows it enters.
    pub(crate) async fn run_in(
        &self,
        mut store: Store<'_, S>,
        scope: &Scope<'_>,
        start: Option<&str>,
        mut save: Option<&mut Save<'_, S>>,
    ) -> Outcome<Action> {
        // The run checked the whole tree before it started: see `run_with`. A path to start
        // at is checked whole here, before any node runs; `rest` is for the nested flow.
        let (mut current, mut rest) = match start {
            Some(path) => self.find(path, scope.path)?,
            None => (self.start, None),
        };
        // The node runs so far, and under a step limit the last few in a ring, for its error
        // (a ring of indices costs no allocation; kept only where it is read, which saves a
        // node run of a chain 2 instructions in 374).
        let (mut recent, mut runs, limited) =
            ([0; RECENT], 0usize, scope.run.max_steps < usize::MAX);
        loop {
            if runs % run::TURN == run::TURN - 1 {
                run::Turn::default().await; // between two nodes: every `post` so far is whole
            }
            let slot = &self.slots[current];
            let path = scope.path.child(&slot.name);
            let inner = Scope { path: &path, ..*scope };
            let result = match run::count(scope.run, &path) {
                Err(error) => Err(error),
                Ok(()) => {
                    let save = save.as_deref_mut(); // a nested flow saves checkpoints too
                    let visit = slot.step.run(store.reborrow(), &inner, rest.take(), save);
                    match (slot.timeout, scope.run.observer) {
                        (None, None) => visit.await,
                        // Boxed: held inline, its hundred bytes made every flow's future
                        // larger, and moving a sub-run's future costs by the byte. A run with
                        // an observer pays this second allocation per node run beside the
                        // clock reads.
                        (limit, observer) => {
                            Box::pin(run::watched(visit, limit, observer, &path)).await
                        }
                    }
                }
            };
            let action = match result {
                Ok((action, _)) => action,
                Err(error) => return Err(self.trail(error, &recent, runs, scope.path)),
            };
            if limited {
                recent[runs % RECENT] = current;
            }
            runs += 1;
            current = match slot.edges.iter().find(|(a, _)| *a == action) {
                Some((_, Some(next))) => *next,
                Some((_, None)) => return Ok(action),
                None if slot.edges.is_empty() => return Ok(action),
                None => {
                    let expected = slot.edges.iter().map(|(a, _)| a.clone()).collect();
                    let node = path.to_string();
                    return Err(FlowError::UnknownAction { node, action, expected }.into());
                }
            };
            if let Some(save) = save.as_mut() {
                let node = scope.path.child(&self.slots[current].name).to_string();
                if let Err(source) = store.with(|s| save(s, &node)) {
                    return Err(FlowError::Checkpoint { node, source }.into());
                }
            }
        }
    }
}

/// How to run a flow, for [`Flow::run_with`]: params, an [`Observer`], a step limit, a time
/// limit, a checkpoint hook, and where to start. Every setting is optional; `RunOptions::new()` runs
/// like [`Flow::run`].
///
/// ```
/// use std::sync::Mutex;
/// use miniflow::{Action, Event, Flow, Params, RunOptions, node_fn};
///
/// let mut flow = Flow::new();
/// flow.add("add", node_fn(|n: &mut i64, p| { *n += p.int("step")?; Ok(Action::DEFAULT) }));
///
/// let events = Mutex::new(Vec::new());
/// let record = |event: &Event<'_>| events.lock().unwrap().push(event.to_string());
/// let options = RunOptions::new()
///     .params(Params::new().with("step", 5))
///     .observer(&record)
///     .max_steps(100);
/// let mut n = 1;
/// smol::block_on(flow.run_with(&mut n, options))?;
/// assert_eq!(n, 6);
/// assert_eq!(events.lock().unwrap()[1], "`add` started");
/// # Ok::<(), miniflow::Error>(())
/// ```
#[must_use = "`RunOptions` methods return the options with the setting changed"]
pub struct RunOptions<'o, S> {
    params: Params,
    observer: Option<&'o dyn Observer>,
    checkpoint: Option<Box<Save<'o, S>>>,
    max_steps: usize,
    start: Option<&'o str>,
    timeout: Option<Duration>,
}

impl<'o, S> RunOptions<'o, S> {
    /// No params, no observer, no step limit, no time limit, no checkpoint; start at the start
    /// node.
    pub fn new() -> Self {
        RunOptions {
            params: Params::new(),
            observer: None,
            checkpoint: None,
            max_steps: usize::MAX,
            start: None,
            timeout: None,
        }
    }

    /// The params every node of the run sees (and nested flows pass on).
    pub fn params(mut self, params: Params) -> Self {
        self.params = params;
        self
    }

    /// Reports everything the run does to `observer`: see [`Observer`] and [`Event`](crate::Event).
    pub fn observer(mut self, observer: &'o dyn Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Fails the run with [`FlowError::StepLimit`] instead of starting node run number
    /// `limit + 1`. Every node run counts, wherever it is: a nested flow counts once, and so
    /// does each node inside it; so do a batch flow's sub-runs' nodes and a parallel node's
    /// branches (a batch node counts once, however many items it has).
    ///
    /// There is no limit by default. A flow is a general graph: a loop over a work queue or a
    /// long batch has no natural bound, and a default limit would be an arbitrary failure in
    /// production. Set one wherever a loop is driven by a model's decisions — an agent that
    /// never decides it is done otherwise loops (and spends) until someone notices. The error
    /// lists the last nodes run, so it shows where it looped.
    ///
    /// ```
    /// use miniflow::{Action, Flow, FlowError, RunOptions, node_fn};
    ///
    /// let mut flow = Flow::<()>::new();
    /// let think = flow.add("think", node_fn(|_, _| Ok(Action::DEFAULT)));
    /// let act = flow.add("act", node_fn(|_, _| Ok(Action::DEFAULT)));
    /// flow.then(think, act);
    /// flow.then(act, think); // never ends
    ///
    /// let err = smol::block_on(flow.run_with(&mut (), RunOptions::new().max_steps(5)))
    ///     .unwrap_err();
    /// assert!(matches!(&err, FlowError::StepLimit { limit: 5, last, .. }
    ///     if last == &["think", "act", "think", "act", "think"]));
    /// # Ok::<(), miniflow::Error>(())
    /// ```
    pub fn max_steps(mut self, limit: usize) -> Self {
        self.max_steps = limit;
        self
    }

    /// Starts the run at the node `node` names instead of the start node: to resume a run that
    /// was interrupted, or paused for a person's answer.
    ///
    /// `node` is a name of the outermost flow (`"ship"`), or a path into a nested [`Flow`]:
    /// names joined by `/`, as [`NodePath`](crate::NodePath) displays them
    /// (`"checkout/receipt"`). The outer flow then starts at the nested flow, which starts at
    /// that node; when the nested flow ends, the outer one goes on along its edges as usual.
    /// This is the path the [checkpoint hook](RunOptions::checkpoint) gives. The path cannot
    /// lead into a batch flow or a parallel node: those are resumed as a whole, at their own
    /// name (see the [crate docs](crate#resume)).
    ///
    /// The path is checked before any node runs: a name that its flow does not have, or a path
    /// through anything but a nested `Flow`, fails the run with [`FlowError::InvalidConfig`]
    /// naming the flow and its nodes. A node that runs are only ever started at (no edge leads
    /// to it) must be declared with [`Flow::entry`], or its flow fails validation as
    /// unreachable. See the [crate docs](crate#resume) for durable runs and human-in-the-loop.
    ///
    /// ```
    /// use miniflow::{Action, Flow, RunOptions, node_fn};
    ///
    /// let step = |name: &'static str| node_fn(move |log: &mut Vec<&str>, _| {
    ///     log.push(name);
    ///     Ok(Action::DEFAULT)
    /// });
    /// let mut sub = Flow::new();
    /// let (x, pay, z) = (sub.add("x", step("x")), sub.add("pay", step("pay")), sub.add("z", step("z")));
    /// sub.chain(&[x, pay, z]);
    /// let mut flow = Flow::new();
    /// let (a, sub, b) = (flow.add("a", step("a")), flow.add("sub", sub), flow.add("b", step("b")));
    /// flow.chain(&[a, sub, b]);
    ///
    /// let mut log = Vec::new();
    /// smol::block_on(flow.run_with(&mut log, RunOptions::new().start_at("sub/z")))?;
    /// assert_eq!(log, ["z", "b"]); // `pay` did not run again
    /// # Ok::<(), miniflow::Error>(())
    /// ```
    pub fn start_at(mut self, node: &'o str) -> Self {
        self.start = Some(node);
        self
    }

    /// Fails the run with [`FlowError::Timeout`] (its `node` empty) if it has not ended within
    /// `limit`: whatever is running is dropped at its next `.await`, as a dropped run is, and
    /// the observer's terminal event is [`Event::Failed`](crate::Event::Failed) with that
    /// error. The time counts from the run's first poll, after the flow is checked: a flow that
    /// cannot run fails with [`FlowError::InvalidConfig`] whatever its limit. A zero limit has
    /// run out before the first node starts. Even a run whose nodes never await is stopped: it
    /// gives its executor a turn every 256 passes of each of its loops, and the timer is
    /// looked at then: a flat loop of such nodes stops within 256 node runs of the limit, but
    /// loops nested in loops turn less often, and stop later (see
    /// [Executor independence](crate#executor-independence)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use miniflow::{Action, Flow, FlowError, RunOptions, node_fn};
    ///
    /// let mut flow = Flow::<()>::new();
    /// let spin = flow.add("spin", node_fn(|_, _| Ok(Action::DEFAULT)));
    /// flow.then(spin, spin); // never ends, and never awaits
    ///
    /// let options = RunOptions::new().timeout(Duration::from_millis(10));
    /// let err = smol::block_on(flow.run_with(&mut (), options)).unwrap_err();
    /// assert!(matches!(&err, FlowError::Timeout { node, .. } if node.is_empty()));
    /// assert_eq!(err.to_string(), "the run did not finish within its time limit of 10ms");
    /// ```
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Calls `save` after every node whose action leads on to another node, with the store and
    /// the path of that next node: everything needed to resume the run there later with
    /// [`start_at`](RunOptions::start_at). It is not called when the run ends (the result says
    /// how it ended).
    ///
    /// The nodes of nested flows count, so for `a → sub(x → pay → z) → b` the hook is called
    /// with `"sub"` (the nested flow itself, which a resumed run starts from its start),
    /// `"sub/pay"`, `"sub/z"` and `"b"`; a run resumed at any of them re-runs nothing that had
    /// finished. The sub-runs of a batch flow and the branches of a parallel
    /// node are not saved one by one: the hook is called before and after such a node, which
    /// resumes as a whole.
    ///
    /// `save` runs synchronously between two nodes, with the store as every `post` so far has
    /// left it; the run waits for it. What it writes, and where, is up to you. If it returns an
    /// error (a full disk, say), the run stops before the next node with
    /// [`FlowError::Checkpoint`]: a durable run does not go on without its save.
    ///
    /// The last checkpoint of a run that then ends names a node that already ran: discard it
    /// when the run returns `Ok`, or a later resume would run that node again.
    pub fn checkpoint(mut self, save: impl FnMut(&S, &str) -> Result<()> + Send + 'o) -> Self {
        self.checkpoint = Some(Box::new(save));
        self
    }
}

impl<S> Default for RunOptions<'_, S> {
    fn default() -> Self {
        RunOptions::new()
    }
}

impl<S> fmt::Debug for RunOptions<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunOptions")
            .field("params", &self.params)
            .field("observer", &self.observer.is_some())
            .field("checkpoint", &self.checkpoint.is_some())
            .field("max_steps", &self.max_steps)
            .field("start", &self.start)
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[diagnostic::do_not_recommend]
impl<S: Send + 'static> IntoNode<S, marker::Nested> for Flow<S> {
    fn into_step(self) -> Step<S> {
        Step::Flow(Box::new(self))
    }
}

impl<S> Default for Flow<S> {
    fn default() -> Self {
        Flow::new()
    }
}

impl<S> fmt::Debug for Flow<S> {
    /// The node names and the start; [`Flow::to_mermaid`] shows the edges.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.slots.iter().map(|slot| &*slot.name).collect();
        let start = self.slots.get(self.start).map(|slot| &*slot.name);
        f.debug_struct("Flow").field("nodes", &names).field("start", &start).finish()
    }
}
