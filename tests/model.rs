//! Model-based tests: thousands of random flows, each run by miniflow and by a reference
//! interpreter of the decided semantics written here in plain sequential Rust, and compared.
//!
//! A random case is a tree of flows. Its nodes are scripted: on its k-th visit a node returns
//! the k-th action of its script (cycling), its `exec` fails a scripted number of attempts,
//! its fallback recovers or fails, and it may need a param, fail in `prep` or in `post`. The
//! flows have edges, end edges, loops, nested flows, batch nodes (sequential and concurrent)
//! and batch flows with params; the run may have params, a step limit, a node to start at (or
//! a path into a nested flow, or one `start_at` must refuse) and a checkpoint hook. For each case the two must agree on:
//!
//! - the result: the final action, or the error's kind and fields (node path, phase,
//!   attempts, the user's message, the step limit's list of last nodes, ...);
//! - the final store: every `post` in order, with the params each node saw;
//! - the nodes visited, in order, as an observer sees them, and one terminal event;
//! - the checkpoints: the next node's path (inside nested flows too, not inside batch flows),
//!   with how many posts in the store;
//! - the builder: a second edge for the same node and action is refused.
//!
//! A second property drops each run after k polls, for every k until it completes, and checks
//! that the store holds only whole `post`s (a prefix of the full run's), that the observer's
//! stream ends with `Cancelled`, and that a new run of the same flow from that store agrees
//! with the model.
//!
//! When they disagree, proptest shrinks the case and prints it as a small flow listing.
//! The cases come from a fixed seed; search elsewhere with `MINIFLOW_SEED=<u64>`, and run more
//! with `MINIFLOW_CASES=<n>` (it multiplies nothing: it is the count for each property):
//! `MINIFLOW_SEED=7 MINIFLOW_CASES=20000 cargo test --release --test model`.

mod common;

use std::collections::BTreeMap;
use std::fmt;
use std::panic::{self, AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, Once};

use common::{failure, poll_by_hand, yield_times};
use miniflow::{
    Action, BatchFlow, BatchNode, Ctx, Error, Event, Flow, FlowError, MAX_ATTEMPTS, Node, NodeId,
    Observer, Params, Phase, Result, RunOptions, Value,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

// ---------------------------------------------------------------------------------------------
// The cases

/// The actions nodes return and edges are labelled with: the empty string and non-ASCII text
/// are ordinary actions.
const ACTIONS: [&str; 5] = ["default", "a", "b", "", "ü→"];

/// The param keys nodes may need and batch flows set.
const KEYS: [&str; 2] = ["x", "y"];

/// The most node runs a case may make when it has no step limit of its own: a case whose
/// model reaches it is run by miniflow with this limit, so a loop never hangs the test.
const HARD_LIMIT: usize = 300;

/// What an `exec`'s fallback does when every attempt failed.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fallback {
    /// The default: the last attempt's error fails the node.
    Default,
    /// Returns a value, which `post` gets as if `exec` had produced it.
    Recover,
    /// Fails with an error of its own.
    Fail,
}

/// A scripted node: what it does on its k-th visit (k counts the visits whose `post` ran).
#[derive(Clone)]
struct Script {
    /// Numbered after generation, in the order `number` walks the tree.
    id: usize,
    /// Visit k returns `ACTIONS[actions[k % len]]`.
    actions: Vec<usize>,
    /// Visit k (item i of a batch node) fails its first `fails[(k + i) % len]` attempts.
    fails: Vec<usize>,
    /// Every attempt gives way this many times before it answers.
    yields: usize,
    /// `max_retries`: 0 is invalid and fails the run before `prep`.
    retries: usize,
    fallback: Fallback,
    /// `prep` reads this key as an integer param.
    needs: Option<usize>,
    /// `prep` fails on this visit.
    prep_fails: Option<usize>,
    /// `post` fails (writing nothing) on this visit.
    post_fails: Option<usize>,
}

impl Script {
    fn action(&self, k: usize) -> &'static str {
        ACTIONS[self.actions[k % self.actions.len()]]
    }

    fn failing_attempts(&self, k: usize, item: usize) -> usize {
        self.fails[(k + item) % self.fails.len()]
    }
}

#[derive(Clone)]
enum NodeSpec {
    Leaf(Script),
    /// A batch node of `items` items, `limit` of them in flight at once.
    Batch {
        script: Script,
        items: usize,
        limit: usize,
    },
    Nested(FlowSpec),
    /// A batch flow running `inner` once per set; with `post`, its post records the sub-runs'
    /// actions and returns the last one.
    BatchFlow {
        id: usize,
        inner: FlowSpec,
        sets: Vec<Vec<(usize, i64)>>,
        post: bool,
    },
}

#[derive(Clone, Copy)]
struct EdgeSpec {
    from: usize,
    action: usize,
    /// `None` for an end edge.
    to: Option<usize>,
}

#[derive(Clone)]
struct FlowSpec {
    nodes: Vec<NodeSpec>,
    /// In the order they are added; a second edge for the same node and action is refused.
    edges: Vec<EdgeSpec>,
    start: usize,
}

#[derive(Clone, Debug)]
enum Param {
    Int(i64),
    Str(&'static str),
}

#[derive(Clone)]
struct Case {
    flow: FlowSpec,
    params: Vec<(usize, Param)>,
    max_steps: Option<usize>,
    /// A node of the outermost flow to start at (`None`: a name no node has), and a node
    /// inside it: where that node is a nested flow, a path into it (`"n1/n0"`); else a path
    /// the run must refuse.
    start_at: Option<(Option<usize>, Option<usize>)>,
    checkpoint: bool,
    /// How many scripted nodes and batch flows the case has (the store's counters).
    ids: usize,
}

/// Per node of `n`, the first edge of `edges` for each action: (action, target).
fn table(n: usize, edges: &[EdgeSpec]) -> Vec<Vec<(usize, Option<usize>)>> {
    let mut table = vec![Vec::new(); n];
    for edge in edges {
        let out: &mut Vec<(usize, Option<usize>)> = &mut table[edge.from];
        if !out.iter().any(|(a, _)| *a == edge.action) {
            out.push((edge.action, edge.to));
        }
    }
    table
}

fn name(i: usize) -> String {
    format!("n{i}")
}

impl Case {
    /// The path `start_at` names, if the case has one.
    fn start_path(&self) -> Option<String> {
        match self.start_at? {
            (None, _) => Some("nowhere".into()),
            (Some(i), None) => Some(name(i)),
            (Some(i), Some(j)) => Some(match self.flow.nodes.get(i) {
                Some(NodeSpec::Nested(inner)) => {
                    format!("n{i}/{}", name(j % inner.nodes.len().max(1)))
                }
                _ => format!("n{i}/n{j}"),
            }),
        }
    }
}

impl FlowSpec {
    /// The edges miniflow keeps: per node, the first edge added for each action.
    fn table(&self) -> Vec<Vec<(usize, Option<usize>)>> {
        table(self.nodes.len(), &self.edges)
    }

    /// Gives every scripted node and batch flow its own id, depth first.
    fn number(&mut self, next: &mut usize) {
        for node in &mut self.nodes {
            match node {
                NodeSpec::Leaf(script) | NodeSpec::Batch { script, .. } => {
                    script.id = *next;
                    *next += 1;
                }
                NodeSpec::Nested(inner) => inner.number(next),
                NodeSpec::BatchFlow { id, inner, .. } => {
                    *id = *next;
                    *next += 1;
                    inner.number(next);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Printing a case: a shrunk counterexample reads as a small flow listing.

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f)?;
        write!(f, "run with params {{")?;
        for (i, (key, value)) in self.params.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            match value {
                Param::Int(n) => write!(f, "{sep}{}={n}", KEYS[*key])?,
                Param::Str(s) => write!(f, "{sep}{}={s:?}", KEYS[*key])?,
            }
        }
        write!(f, "}}")?;
        if let Some(limit) = self.max_steps {
            write!(f, ", max_steps {limit}")?;
        }
        if let Some(path) = self.start_path() {
            write!(f, ", start_at {path:?}")?;
        }
        if self.checkpoint {
            write!(f, ", checkpoint hook")?;
        }
        writeln!(f)?;
        self.flow.print(f, 0)
    }
}

impl FlowSpec {
    fn print(&self, f: &mut fmt::Formatter<'_>, depth: usize) -> fmt::Result {
        let pad = "    ".repeat(depth);
        writeln!(
            f,
            "{pad}flow, start {}:",
            if self.nodes.is_empty() { "-".into() } else { name(self.start) }
        )?;
        for (i, node) in self.nodes.iter().enumerate() {
            match node {
                NodeSpec::Leaf(script) => writeln!(f, "{pad}  {}: node {script:?}", name(i))?,
                NodeSpec::Batch { script, items, limit } => {
                    let limit =
                        if *limit == usize::MAX { "no limit".into() } else { limit.to_string() };
                    writeln!(
                        f,
                        "{pad}  {}: batch node of {items} items, {limit} in flight, {script:?}",
                        name(i)
                    )?
                }
                NodeSpec::Nested(inner) => {
                    writeln!(f, "{pad}  {}: nested", name(i))?;
                    inner.print(f, depth + 1)?;
                }
                NodeSpec::BatchFlow { id, inner, sets, post } => {
                    let sets: Vec<String> = sets
                        .iter()
                        .map(|set| {
                            let pairs: Vec<String> =
                                set.iter().map(|(k, v)| format!("{}={v}", KEYS[*k])).collect();
                            format!("{{{}}}", pairs.join(", "))
                        })
                        .collect();
                    let post = if *post { ", post" } else { "" };
                    writeln!(
                        f,
                        "{pad}  {}: batch flow #{id} over [{}]{post}",
                        name(i),
                        sets.join(", ")
                    )?;
                    inner.print(f, depth + 1)?;
                }
            }
        }
        let kept = self.table();
        for edge in &self.edges {
            let to = edge.to.map_or("end".to_string(), name);
            let first = kept[edge.from].iter().any(|&(a, t)| a == edge.action && t == edge.to);
            let refused = if first { "" } else { "  (refused: second edge for this action)" };
            writeln!(
                f,
                "{pad}  {} --{:?}--> {to}{refused}",
                name(edge.from),
                ACTIONS[edge.action]
            )?;
        }
        Ok(())
    }
}

impl fmt::Debug for FlowSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.print(f, 0)
    }
}

impl fmt::Debug for NodeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flow = FlowSpec { nodes: vec![self.clone()], edges: Vec::new(), start: 0 };
        flow.print(f, 0)
    }
}

impl fmt::Debug for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let actions: Vec<&str> = self.actions.iter().map(|&a| ACTIONS[a]).collect();
        write!(f, "#{} actions {actions:?}", self.id)?;
        if self.fails.iter().any(|&n| n > 0) {
            write!(f, ", failing attempts {:?}", self.fails)?;
        }
        write!(f, ", max_retries {}", self.retries)?;
        if self.fallback != Fallback::Default {
            write!(f, ", fallback {:?}", self.fallback)?;
        }
        if self.yields > 0 {
            write!(f, ", yields {}", self.yields)?;
        }
        if let Some(key) = self.needs {
            write!(f, ", needs {}", KEYS[key])?;
        }
        if let Some(k) = self.prep_fails {
            write!(f, ", prep fails on visit {k}")?;
        }
        if let Some(k) = self.post_fails {
            write!(f, ", post fails on visit {k}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Generating cases

fn script() -> impl Strategy<Value = Script> {
    let fails = prop_oneof![12 => Just(0usize), 3 => Just(1), 1 => Just(2), 1 => Just(3)];
    let retries = prop_oneof![80 => 1..=3usize, 1 => Just(0)];
    let fallback = prop_oneof![2 => Just(Fallback::Default), 2 => Just(Fallback::Recover), 1 => Just(Fallback::Fail)];
    (
        vec(0..ACTIONS.len(), 1..4),
        vec(fails, 1..3),
        prop_oneof![3 => Just(0usize), 1 => 1..=2usize],
        retries,
        fallback,
        option::weighted(0.08, 0..KEYS.len()),
        option::weighted(0.05, 0..3usize),
        option::weighted(0.05, 0..3usize),
    )
        .prop_map(
            |(actions, fails, yields, retries, fallback, needs, prep_fails, post_fails)| Script {
                id: 0,
                actions,
                fails,
                yields,
                retries,
                fallback,
                needs,
                prep_fails,
                post_fails,
            },
        )
}

fn node() -> BoxedStrategy<NodeSpec> {
    let limit = prop_oneof![2 => Just(1usize), 1 => Just(2), 1 => Just(usize::MAX)];
    let leaf = prop_oneof![
        4 => script().prop_map(NodeSpec::Leaf),
        1 => (script(), 0..5usize, limit)
            .prop_map(|(script, items, limit)| NodeSpec::Batch { script, items, limit }),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        let set = vec((0..KEYS.len(), 0..5i64), 0..3);
        prop_oneof![
            3 => inner.clone(),
            1 => flow(inner.clone()).prop_map(NodeSpec::Nested),
            1 => (flow(inner), vec(set, 0..4), any::<bool>())
                .prop_map(|(inner, sets, post)| NodeSpec::BatchFlow { id: 0, inner, sets, post }),
        ]
    })
    .boxed()
}

/// A flow of 1–4 nodes (rarely none). Each node after the first is reached by an edge from an
/// earlier one (rarely not), and up to six more edges and end edges go anywhere, loops
/// included. In nine flows out of ten, nodes with edges return only actions they have edges
/// for, and nested flows end the outer flow on any action without an edge; in the tenth they
/// make typos.
fn flow(node: impl Strategy<Value = NodeSpec> + Clone) -> impl Strategy<Value = FlowSpec> {
    let reach = (0..4usize, 0..ACTIONS.len(), any::<u8>());
    let more = (0..4usize, 0..ACTIONS.len(), option::weighted(0.75, 0..4usize));
    (
        vec(node, 1..5),
        any::<u8>(),
        vec(reach, 3),
        vec(more, 0..7),
        prop_oneof![19 => Just(0usize), 1 => 0..4usize],
        any::<u8>(),
    )
        .prop_map(|(mut nodes, empty, reach, more, start, careful)| {
            if empty < 2 {
                nodes.clear(); // an empty flow: the run must fail before any node runs
                return FlowSpec { nodes, edges: Vec::new(), start: 0 };
            }
            let n = nodes.len();
            let mut edges: Vec<EdgeSpec> = Vec::new();
            for (i, (from, action, skip)) in reach.into_iter().enumerate().take(n - 1) {
                if skip < 8 {
                    continue; // node i + 1 may be unreachable
                }
                let (from, to) = (from % (i + 1), i + 1);
                // An action `from` has no edge for yet: there are five, and at most three edges.
                let action = (0..ACTIONS.len())
                    .map(|d| (action + d) % ACTIONS.len())
                    .find(|&a| !edges.iter().any(|e| e.from == from && e.action == a))
                    .unwrap();
                edges.push(EdgeSpec { from, action, to: Some(to) });
            }
            for (from, action, to) in more {
                edges.push(EdgeSpec { from: from % n, action, to: to.map(|to| to % n) });
            }
            if careful >= 26 {
                let table = table(n, &edges);
                for (i, node) in nodes.iter_mut().enumerate() {
                    let out = &table[i];
                    if out.is_empty() {
                        continue;
                    }
                    match node {
                        NodeSpec::Leaf(script) | NodeSpec::Batch { script, .. } => {
                            for a in &mut script.actions {
                                *a = out[*a % out.len()].0;
                            }
                        }
                        NodeSpec::Nested(_) | NodeSpec::BatchFlow { .. } => {
                            for action in 0..ACTIONS.len() {
                                if !out.iter().any(|&(a, _)| a == action) {
                                    edges.push(EdgeSpec { from: i, action, to: None });
                                }
                            }
                        }
                    }
                }
            }
            FlowSpec { nodes, edges, start: start % n }
        })
}

fn case() -> impl Strategy<Value = Case> {
    let param = prop_oneof![5 => (0..5i64).prop_map(Param::Int), 1 => Just(Param::Str("text"))];
    (
        flow(node()),
        vec((0..KEYS.len(), param), 0..3),
        option::of(0..40usize),
        option::weighted(0.3, (option::weighted(0.9, 0..4usize), option::of(0..3usize))),
        any::<bool>(),
    )
        .prop_map(|(mut flow, params, max_steps, start_at, checkpoint)| {
            let mut ids = 0;
            flow.number(&mut ids);
            // start_at names a node of the outermost flow, or (rarely) none of its nodes, and
            // half the time a node inside it.
            let n = flow.nodes.len().max(1);
            let start_at = start_at.map(|(at, inner)| (at.map(|i| i % n), inner));
            Case { flow, params, max_steps, start_at, checkpoint, ids }
        })
}

// ---------------------------------------------------------------------------------------------
// The store and the nodes miniflow runs

/// The store: per scripted node, how many of its `post`s ran; and one line per `post`.
#[derive(Clone, Debug, Default, PartialEq)]
struct Store {
    visits: Vec<usize>,
    log: Vec<String>,
}

impl Store {
    fn new(ids: usize) -> Self {
        Store { visits: vec![0; ids], log: Vec::new() }
    }

    /// What a `post` writes: both halves, so that half a post would show.
    fn record(&mut self, id: usize, line: String) {
        self.visits[id] += 1;
        self.log.push(line);
    }

    /// Holds only whole posts.
    fn consistent(&self) -> bool {
        self.visits.iter().sum::<usize>() == self.log.len()
    }
}

/// The params as a node logs them: sorted by key.
fn params_text(params: &Params) -> String {
    let mut pairs: Vec<String> = params
        .iter()
        .map(|(key, value)| match value {
            Value::Int(n) => format!("{key}={n}"),
            other => format!("{key}={other:?}"),
        })
        .collect();
    pairs.sort();
    format!("{{{}}}", pairs.join(","))
}

fn exec_error(node: &str, attempt: usize) -> String {
    format!("exec {node} attempt {attempt}")
}

fn fallback_value(node: &str, error: &str) -> String {
    format!("{node} fell back after {error}")
}

struct LeafNode(Script);

impl LeafNode {
    fn prep_check(&self, store: &Store, params: &Params) -> Result<usize> {
        let k = store.visits[self.0.id];
        if self.0.prep_fails == Some(k) {
            return Err(failure(format!("prep #{} visit {k}", self.0.id)));
        }
        if let Some(key) = self.0.needs {
            params.int(KEYS[key])?;
        }
        Ok(k)
    }

    async fn attempt(&self, k: usize, item: usize, cx: &Ctx<'_>) -> Result<String> {
        yield_times(self.0.yields).await;
        let node = cx.node().to_string();
        match cx.attempt() < self.0.failing_attempts(k, item) {
            true => Err(failure(exec_error(&node, cx.attempt()))),
            false => Ok(format!("{node}#{}", cx.attempt())),
        }
    }

    async fn fallback(&self, error: Error, cx: &Ctx<'_>) -> Result<String> {
        let node = cx.node().to_string();
        match self.0.fallback {
            Fallback::Default => Err(error),
            Fallback::Recover => Ok(fallback_value(&node, &error.to_string())),
            Fallback::Fail => Err(failure(format!("fallback {node}"))),
        }
    }

    fn post_check(&self, k: usize) -> Result<()> {
        match self.0.post_fails == Some(k) {
            true => Err(failure(format!("post #{} visit {k}", self.0.id))),
            false => Ok(()),
        }
    }
}

impl Node<Store> for LeafNode {
    type Prep = (usize, String);
    type Output = String;

    fn prep(&self, store: &Store, params: &Params) -> Result<(usize, String)> {
        Ok((self.prep_check(store, params)?, params_text(params)))
    }

    async fn exec(&self, (k, _): &(usize, String), cx: Ctx<'_>) -> Result<String> {
        self.attempt(*k, 0, &cx).await
    }

    async fn exec_fallback(
        &self,
        _: &(usize, String),
        error: Error,
        cx: Ctx<'_>,
    ) -> Result<String> {
        self.fallback(error, &cx).await
    }

    fn post(&self, store: &mut Store, (k, params): (usize, String), out: String) -> Result<Action> {
        self.post_check(k)?;
        store.record(self.0.id, format!("#{} {params} {out}", self.0.id));
        Ok(self.0.action(k).into())
    }

    fn max_retries(&self) -> usize {
        self.0.retries
    }
}

struct BatchLeaf {
    node: LeafNode,
    items: usize,
    limit: usize,
}

impl BatchNode<Store> for BatchLeaf {
    type Item = (usize, usize);
    type Output = String;

    fn prep(&self, store: &Store, params: &Params) -> Result<Vec<(usize, usize)>> {
        let k = self.node.prep_check(store, params)?;
        Ok((0..self.items).map(|i| (k, i)).collect())
    }

    async fn exec(&self, &(k, i): &(usize, usize), cx: Ctx<'_>) -> Result<String> {
        self.node.attempt(k, i, &cx).await
    }

    async fn exec_fallback(&self, _: &(usize, usize), error: Error, cx: Ctx<'_>) -> Result<String> {
        self.node.fallback(error, &cx).await
    }

    fn post(
        &self,
        store: &mut Store,
        _: &Params,
        _: Vec<(usize, usize)>,
        outs: Vec<String>,
    ) -> Result<Action> {
        let (id, k) = (self.node.0.id, store.visits[self.node.0.id]);
        self.node.post_check(k)?;
        store.record(id, format!("#{id} [{}]", outs.join("; ")));
        Ok(self.node.0.action(k).into())
    }

    fn max_retries(&self) -> usize {
        self.node.0.retries
    }

    fn max_in_flight(&self) -> usize {
        self.limit
    }
}

fn set_params(set: &[(usize, i64)]) -> Params {
    set.iter().fold(Params::new(), |params, &(key, value)| params.with(KEYS[key], value))
}

/// Builds the flow with miniflow, checking that each refused edge is refused as documented.
fn build(spec: &FlowSpec) -> Flow<Store> {
    let mut flow = Flow::new();
    let ids: Vec<NodeId> = spec
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| match node {
            NodeSpec::Leaf(script) => flow.add(name(i), LeafNode(script.clone())),
            NodeSpec::Batch { script, items, limit } => flow.add(
                name(i),
                BatchLeaf { node: LeafNode(script.clone()), items: *items, limit: *limit },
            ),
            NodeSpec::Nested(inner) => flow.add(name(i), build(inner)),
            NodeSpec::BatchFlow { id, inner, sets, post } => {
                let sets = sets.clone();
                let batch = BatchFlow::new(build(inner), move |_: &Store, _: &Params| {
                    Ok(sets.iter().map(|set| set_params(set)).collect())
                });
                let id = *id;
                match post {
                    false => flow.add(name(i), batch),
                    true => flow.add(
                        name(i),
                        batch.post(move |store: &mut Store, sets, actions| {
                            let names: Vec<&str> = actions.iter().map(Action::as_str).collect();
                            store.record(id, format!("#{id} {} sub-runs {names:?}", sets.len()));
                            Ok(actions.last().cloned().unwrap_or_default())
                        }),
                    ),
                }
            }
        })
        .collect();
    if !ids.is_empty() && spec.start != 0 {
        flow.set_start(ids[spec.start]);
    }
    let mut seen: Vec<(usize, usize)> = Vec::new();
    for edge in &spec.edges {
        let (from, action) = (ids[edge.from], ACTIONS[edge.action]);
        let mut add = || {
            match edge.to {
                Some(to) => flow.edge(from, action, ids[to]),
                None => flow.end(from, action),
            };
        };
        match seen.contains(&(edge.from, edge.action)) {
            false => add(),
            true => {
                quiet_duplicate_panics();
                let refused = catch_unwind(AssertUnwindSafe(add))
                    .expect_err(&format!("a second edge for {action:?} must panic"));
                let message = match refused.downcast::<String>() {
                    Ok(message) => *message,
                    Err(other) => panic!("a second edge for {action:?} panicked with {other:?}"),
                };
                assert_eq!(message, duplicate_edge(&name(edge.from), action));
            }
        }
        seen.push((edge.from, edge.action));
    }
    flow
}

/// The message `Flow::edge` and `Flow::end` panic with for a second edge for `action` from
/// `node`.
fn duplicate_edge(node: &str, action: &str) -> String {
    format!(
        "node `{node}` already has an edge for action {action:?}; an action leads to one place, \
         so remove one of the two edges or give it another action"
    )
}

/// Keeps the panics of refused duplicate edges, which [`build`] makes on purpose thousands of
/// times, out of the test's output; every other panic is printed as before.
fn quiet_duplicate_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let message = info.payload().downcast_ref::<String>();
            if !message.is_some_and(|m| m.contains("already has an edge for action")) {
                default(info);
            }
        }));
    });
}

// ---------------------------------------------------------------------------------------------
// The reference interpreter

/// An error, as both sides report it.
#[derive(Clone, Debug, PartialEq)]
enum Failed {
    Node {
        node: String,
        phase: Phase,
        attempts: usize,
        message: String,
    },
    UnknownAction {
        node: String,
        action: String,
        expected: Vec<String>,
    },
    EmptyFlow {
        node: String,
    },
    Param {
        node: String,
        key: String,
        found: Option<&'static str>,
    },
    /// A node's `max_retries()` out of range.
    InvalidConfig {
        node: String,
        retries: usize,
    },
    StepLimit {
        limit: usize,
        last: Vec<String>,
    },
    Unreachable {
        node: String,
        nodes: Vec<String>,
        start: String,
    },
    UnknownNode {
        node: String,
        name: String,
        known: Vec<String>,
    },
    /// A `start_at` path through a node that is not a nested flow.
    StartInside {
        node: String,
    },
    /// What miniflow reports for the four kinds above: a `FlowError::InvalidConfig` with the
    /// path of the flow or node and its whole message.
    Config {
        node: String,
        message: String,
    },
}

impl Failed {
    fn of(error: &FlowError) -> Failed {
        match error {
            FlowError::NodeFailed { node, phase, attempts, source, .. } => Failed::Node {
                node: node.clone(),
                phase: *phase,
                attempts: *attempts,
                message: source.to_string(),
            },
            FlowError::UnknownAction { node, action, expected, .. } => Failed::UnknownAction {
                node: node.clone(),
                action: action.to_string(),
                expected: expected.iter().map(Action::to_string).collect(),
            },
            FlowError::Param { node, key, found, .. } => {
                Failed::Param { node: node.clone(), key: key.clone(), found: *found }
            }
            FlowError::InvalidConfig { node, message, .. } => {
                Failed::Config { node: node.clone(), message: message.clone() }
            }
            FlowError::StepLimit { limit, last, .. } => {
                Failed::StepLimit { limit: *limit, last: last.clone() }
            }
            other => panic!("no case can give {other:?}"),
        }
    }

    /// This error as miniflow reports it: the model's kinds of `InvalidConfig` become the
    /// path and the exact message miniflow documents for each.
    fn reported(&self) -> Failed {
        let config = |node: &str, message: String| Failed::Config { node: node.into(), message };
        match self {
            Failed::EmptyFlow { node } => {
                let flow = match node.is_empty() {
                    true => "the flow".to_string(),
                    false => format!("flow `{node}`"),
                };
                config(
                    node,
                    format!("{flow} has no nodes; add one with `Flow::add` before running it"),
                )
            }
            Failed::InvalidConfig { node, retries } => config(
                node,
                format!(
                    "node `{node}`: max_retries() is {retries}, but it counts every attempt, the \
                     first included, and must be between 1 and {MAX_ATTEMPTS}"
                ),
            ),
            Failed::Unreachable { node, nodes, start } => {
                let flow = if node.is_empty() { String::new() } else { format!("{node}/") };
                let (s, it) = if nodes.len() == 1 { ("", "it") } else { ("s", "them") };
                let names: Vec<String> = nodes.iter().map(|n| format!("`{flow}{n}`")).collect();
                let message = format!(
                    "node{s} {} can never run: no edge leads to {it} from the start node \
                     `{flow}{start}`; connect {it} with `Flow::edge` or `Flow::then`, or remove \
                     {it} (a node that runs only when a run resumes there is declared with \
                     `Flow::entry`)",
                    names.join(", ")
                );
                config(node, message)
            }
            Failed::UnknownNode { node, name, known } => {
                let known: Vec<String> = known.iter().map(|n| format!("{n:?}")).collect();
                let message = format!(
                    "the flow has no node named {name:?} to start at; its nodes are {}",
                    known.join(", ")
                );
                config(node, message)
            }
            Failed::StartInside { node } => config(
                "",
                format!(
                    "a run cannot start inside node `{node}`: only a nested `Flow` can be \
                     entered at one of its nodes; start at `{node}` itself (a batch flow or \
                     parallel node then runs all its sub-runs or branches again)"
                ),
            ),
            other => other.clone(),
        }
    }
}

/// The model's answer: an action, or the errors miniflow may report. There is one unless
/// several items of a concurrent batch node fail: whichever fails first is reported.
type Outcome = std::result::Result<String, Vec<Failed>>;

fn child(path: &str, name: &str) -> String {
    match path.is_empty() {
        true => name.to_string(),
        false => format!("{path}/{name}"),
    }
}

/// Runs a case the slow, obvious way.
struct Model {
    store: Store,
    limit: usize,
    steps: usize,
    visited: Vec<String>,
    checkpoints: Vec<(String, usize)>,
    checkpoint: bool,
    /// Where the nested flow the run starts at starts, when `start_at` is a path into it.
    enter: Option<usize>,
}

impl Model {
    fn run(case: &Case, store: Store, limit: usize) -> (Outcome, Model) {
        let mut model = Model {
            store,
            limit,
            steps: 0,
            visited: Vec::new(),
            checkpoints: Vec::new(),
            checkpoint: case.checkpoint,
            enter: None,
        };
        let params: BTreeMap<&'static str, Param> =
            case.params.iter().map(|(key, value)| (KEYS[*key], value.clone())).collect();
        let outcome = model.outermost(case, &params);
        (outcome, model)
    }

    fn outermost(&mut self, case: &Case, params: &BTreeMap<&'static str, Param>) -> Outcome {
        let flow = &case.flow;
        validate(flow, "").map_err(|e| vec![e])?;
        let start = match case.start_at {
            None => flow.start,
            Some((Some(i), None)) => i,
            Some((Some(i), Some(j))) => match &flow.nodes[i] {
                NodeSpec::Nested(inner) => {
                    self.enter = Some(j % inner.nodes.len());
                    i
                }
                _ => return Err(vec![Failed::StartInside { node: name(i) }]),
            },
            Some((None, _)) => {
                return Err(vec![Failed::UnknownNode {
                    node: String::new(),
                    name: "nowhere".into(),
                    known: (0..flow.nodes.len()).map(name).collect(),
                }]);
            }
        };
        self.flow(flow, "", params, start, true)
    }

    fn flow(
        &mut self,
        flow: &FlowSpec,
        path: &str,
        params: &BTreeMap<&'static str, Param>,
        start: usize,
        saves: bool,
    ) -> Outcome {
        let table = flow.table();
        let (mut current, mut recent) = (start, Vec::new());
        loop {
            let node = child(path, &name(current));
            // Each flow a step limit leaves puts its own last runs in front of the list.
            let trail = |mut errors: Vec<Failed>, recent: &[String]| {
                for error in &mut errors {
                    if let Failed::StepLimit { last, .. } = error {
                        let mut all: Vec<String> =
                            recent.iter().cloned().chain(last.drain(..)).collect();
                        all.drain(..all.len().saturating_sub(8));
                        *last = all;
                    }
                }
                errors
            };
            if self.steps == self.limit {
                let error = Failed::StepLimit { limit: self.limit, last: Vec::new() };
                return Err(trail(vec![error], &recent));
            }
            self.steps += 1;
            self.visited.push(node.clone());
            let action = self
                .node(&flow.nodes[current], &node, params, saves)
                .map_err(|e| trail(e, &recent))?;
            recent.push(node.clone());
            let edges = &table[current];
            current = match edges.iter().find(|(a, _)| ACTIONS[*a] == action) {
                Some((_, Some(next))) => *next,
                Some((_, None)) => return Ok(action),
                None if edges.is_empty() => return Ok(action),
                None => {
                    let expected = edges.iter().map(|(a, _)| ACTIONS[*a].to_string()).collect();
                    return Err(vec![Failed::UnknownAction { node, action, expected }]);
                }
            };
            // The outermost flow and the flows nested in it (not those in a batch flow) save.
            if saves && self.checkpoint {
                self.checkpoints.push((child(path, &name(current)), self.store.log.len()));
            }
        }
    }

    fn node(
        &mut self,
        spec: &NodeSpec,
        node: &str,
        params: &BTreeMap<&'static str, Param>,
        saves: bool,
    ) -> Outcome {
        let one = |error: Failed| vec![error];
        match spec {
            NodeSpec::Leaf(script) => {
                let k = self.prep(script, node, params).map_err(one)?;
                let (out, attempts) = exec(script, k, 0, node).map_err(one)?;
                self.post(script, node, k, attempts)?;
                let line = format!("#{} {} {out}", script.id, params_model_text(params));
                self.store.record(script.id, line);
                Ok(script.action(k).into())
            }
            NodeSpec::Batch { script, items, limit } => {
                let k = self.prep(script, node, params).map_err(one)?;
                let (mut outs, mut total, mut errors) = (Vec::new(), 0, Vec::new());
                for i in 0..*items {
                    match exec(script, k, i, &format!("{node}[{i}]")) {
                        Ok((out, attempts)) => {
                            outs.push(out);
                            total += attempts;
                        }
                        // One after another, the first failure ends the batch; concurrent,
                        // any failing item may be the first to finish.
                        Err(error) if *limit == 1 => return Err(vec![error]),
                        Err(error) => errors.push(error),
                    }
                }
                if !errors.is_empty() {
                    return Err(errors);
                }
                self.post(script, node, k, total)?;
                self.store.record(script.id, format!("#{} [{}]", script.id, outs.join("; ")));
                Ok(script.action(k).into())
            }
            NodeSpec::Nested(inner) => {
                let start = self.enter.take().unwrap_or(inner.start);
                self.flow(inner, node, params, start, saves)
            }
            NodeSpec::BatchFlow { id, inner, sets, post } => {
                let mut actions = Vec::new();
                for (i, set) in sets.iter().enumerate() {
                    let mut merged = params.clone();
                    for &(key, value) in set {
                        merged.insert(KEYS[key], Param::Int(value));
                    }
                    let path = format!("{node}[{i}]");
                    actions.push(self.flow(inner, &path, &merged, inner.start, false)?);
                }
                if !post {
                    return Ok("default".into());
                }
                let line = format!("#{id} {} sub-runs {actions:?}", sets.len());
                self.store.record(*id, line);
                Ok(actions.pop().unwrap_or_else(|| "default".into()))
            }
        }
    }

    /// Settings, then `prep`: the visit number.
    fn prep(
        &self,
        script: &Script,
        node: &str,
        params: &BTreeMap<&'static str, Param>,
    ) -> std::result::Result<usize, Failed> {
        if !(1..=MAX_ATTEMPTS).contains(&script.retries) {
            return Err(Failed::InvalidConfig { node: node.into(), retries: script.retries });
        }
        let k = self.store.visits[script.id];
        if script.prep_fails == Some(k) {
            let message = format!("prep #{} visit {k}", script.id);
            return Err(Failed::Node {
                node: node.into(),
                phase: Phase::Prep,
                attempts: 0,
                message,
            });
        }
        if let Some(key) = script.needs {
            let found = match params.get(KEYS[key]) {
                Some(Param::Int(_)) => return Ok(k),
                Some(Param::Str(_)) => Some("a string"),
                None => None,
            };
            return Err(Failed::Param { node: node.into(), key: KEYS[key].into(), found });
        }
        Ok(k)
    }

    fn post(&self, script: &Script, node: &str, k: usize, attempts: usize) -> Outcome {
        match script.post_fails == Some(k) {
            true => Err(vec![Failed::Node {
                node: node.into(),
                phase: Phase::Post,
                attempts,
                message: format!("post #{} visit {k}", script.id),
            }]),
            false => Ok(String::new()),
        }
    }
}

/// The attempts of one `exec` (item `item` of visit `k`) and its fallback: the output and the
/// attempts made, or the error.
fn exec(
    script: &Script,
    k: usize,
    item: usize,
    node: &str,
) -> std::result::Result<(String, usize), Failed> {
    let failing = script.failing_attempts(k, item);
    if failing < script.retries {
        return Ok((format!("{node}#{failing}"), failing + 1));
    }
    let last = exec_error(node, script.retries - 1);
    let attempts = script.retries;
    let failed =
        |message| Failed::Node { node: node.into(), phase: Phase::Exec, attempts, message };
    match script.fallback {
        Fallback::Default => Err(failed(last)),
        Fallback::Recover => Ok((fallback_value(node, &last), attempts)),
        Fallback::Fail => Err(failed(format!("fallback {node}"))),
    }
}

fn params_model_text(params: &BTreeMap<&'static str, Param>) -> String {
    let pairs: Vec<String> = params
        .iter()
        .map(|(key, value)| match value {
            Param::Int(n) => format!("{key}={n}"),
            Param::Str(s) => format!("{key}={:?}", Value::from(*s)),
        })
        .collect();
    format!("{{{}}}", pairs.join(","))
}

/// What a run checks before any node runs: every flow of the tree, outer before inner.
fn validate(flow: &FlowSpec, path: &str) -> std::result::Result<(), Failed> {
    if flow.nodes.is_empty() {
        return Err(Failed::EmptyFlow { node: path.into() });
    }
    let table = flow.table();
    let mut seen = vec![false; flow.nodes.len()];
    let mut todo = vec![flow.start];
    seen[flow.start] = true;
    while let Some(i) = todo.pop() {
        for &(_, to) in &table[i] {
            if let Some(next) = to {
                if !std::mem::replace(&mut seen[next], true) {
                    todo.push(next);
                }
            }
        }
    }
    let nodes: Vec<String> = (0..seen.len()).filter(|&i| !seen[i]).map(name).collect();
    if !nodes.is_empty() {
        return Err(Failed::Unreachable { node: path.into(), nodes, start: name(flow.start) });
    }
    for (i, node) in flow.nodes.iter().enumerate() {
        if let NodeSpec::Nested(inner) | NodeSpec::BatchFlow { inner, .. } = node {
            validate(inner, &child(path, &name(i)))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Running miniflow

/// What an observer saw: the nodes started, in order, and the run's events other than nodes.
#[derive(Default)]
struct Seen {
    visited: Vec<String>,
    run: Vec<&'static str>,
}

fn observe(seen: &Mutex<Seen>, event: &Event<'_>) {
    let mut seen = seen.lock().unwrap();
    match event {
        Event::NodeStart { node, .. } => seen.visited.push(node.to_string()),
        Event::RunStart => seen.run.push("start"),
        Event::Finished { .. } => seen.run.push("finished"),
        Event::Failed { .. } => seen.run.push("failed"),
        Event::Cancelled => seen.run.push("cancelled"),
        _ => {}
    }
}

/// The step limit of a run of `case` from `store`: the case's own, or [`HARD_LIMIT`] if the
/// model needs one to stop.
fn limit(case: &Case, store: &Store) -> usize {
    match case.max_steps {
        Some(limit) => limit,
        None => match Model::run(case, store.clone(), HARD_LIMIT).0 {
            Err(errors) if matches!(errors[0], Failed::StepLimit { .. }) => HARD_LIMIT,
            _ => usize::MAX,
        },
    }
}

fn options<'o>(
    case: &'o Case,
    limit: usize,
    observer: &'o dyn Observer,
    checkpoints: &'o mut Vec<(String, usize)>,
) -> RunOptions<'o, Store> {
    let params = case.params.iter().fold(Params::new(), |params, (key, value)| match value {
        Param::Int(n) => params.with(KEYS[*key], *n),
        Param::Str(s) => params.with(KEYS[*key], *s),
    });
    let mut options = RunOptions::new().params(params).observer(observer);
    if limit < usize::MAX {
        options = options.max_steps(limit);
    }
    if let Some(path) = case.start_path() {
        options = options.start_at(leak(path));
    }
    if case.checkpoint {
        options = options.checkpoint(move |store: &Store, next: &str| {
            checkpoints.push((next.to_string(), store.log.len()));
            Ok(())
        });
    }
    options
}

/// `start_at` borrows a name for the run; the few names there are live for the whole test.
fn leak(name: String) -> &'static str {
    static NAMES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut names = NAMES.lock().unwrap();
    match names.iter().find(|n| **n == name) {
        Some(n) => n,
        None => {
            let n: &'static str = Box::leak(name.into_boxed_str());
            names.push(n);
            n
        }
    }
}

/// Runs `flow` on `store` to the end and checks everything against the model.
fn agree(
    case: &Case,
    flow: &Flow<Store>,
    mut store: Store,
    limit: usize,
) -> std::result::Result<(), TestCaseError> {
    let (expected, model) = Model::run(case, store.clone(), limit);
    let seen = Mutex::new(Seen::default());
    let observer = |event: &Event<'_>| observe(&seen, event);
    let mut checkpoints = Vec::new();
    let result = {
        let options = options(case, limit, &observer, &mut checkpoints);
        // Every exec that yields wakes its task at once, so this completes.
        poll_by_hand(flow.run_with(&mut store, options), usize::MAX).0.unwrap()
    };
    match (&result, &expected) {
        (Ok(action), Ok(want)) => {
            prop_assert_eq!(action.as_str(), want.as_str(), "the run's action")
        }
        (Err(error), Err(want)) => prop_assert!(
            want.iter().any(|want| want.reported() == Failed::of(error)),
            "the run failed with\n  {:?}\nbut the model expects one of\n  {:?}",
            Failed::of(error),
            want.iter().map(Failed::reported).collect::<Vec<_>>()
        ),
        _ => prop_assert!(
            false,
            "the run returned\n  {:?}\nbut the model gives\n  {:?}",
            result,
            expected
        ),
    }
    prop_assert_eq!(&store, &model.store, "the final store");
    let seen = seen.into_inner().unwrap();
    prop_assert_eq!(&seen.visited, &model.visited, "the nodes started, in order");
    let end = if result.is_ok() { "finished" } else { "failed" };
    prop_assert_eq!(seen.run, vec!["start", end], "the run's own events");
    prop_assert_eq!(checkpoints, model.checkpoints, "the checkpoints (next node, posts so far)");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The properties

/// The property-test settings: the seed from `MINIFLOW_SEED`, `cases` cases unless
/// `MINIFLOW_CASES` says otherwise, and no failure files written into the repository.
fn config(cases: u32) -> Config {
    let cases = match std::env::var("MINIFLOW_CASES") {
        Ok(text) => text.trim().parse().expect("MINIFLOW_CASES must be a whole number"),
        Err(_) => cases,
    };
    Config {
        cases,
        rng_seed: RngSeed::Fixed(common::seed()),
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config(3000))]

    /// Miniflow and the model agree on the result, the store, the visits and the checkpoints.
    #[test]
    fn random_flows_run_as_the_model_says(case in case()) {
        let flow = build(&case.flow);
        let store = Store::new(case.ids);
        let first = limit(&case, &store);
        agree(&case, &flow, store.clone(), first)?;
        // A flow is not changed by running: a second run from the store the first left
        // agrees with the model too.
        let (_, model) = Model::run(&case, store, first);
        let second = limit(&case, &model.store);
        agree(&case, &flow, model.store, second)?;
    }
}

proptest! {
    #![proptest_config(config(300))]

    /// A run dropped after any number of polls leaves only whole posts, those of the full run
    /// in its order; its observer sees `Cancelled` last; and the same flow then runs on from
    /// that store as the model says.
    #[test]
    fn runs_dropped_after_any_poll_keep_whole_posts_and_the_flow_runs_again(case in case()) {
        let flow = build(&case.flow);
        let limit = limit(&case, &Store::new(case.ids)).min(40);
        let (_, full) = Model::run(&case, Store::new(case.ids), limit);
        for polls in 0.. {
            let mut store = Store::new(case.ids);
            let seen = Mutex::new(Seen::default());
            let observer = |event: &Event<'_>| observe(&seen, event);
            let mut checkpoints = Vec::new();
            let done = {
                let options = options(&case, limit, &observer, &mut checkpoints);
                poll_by_hand(flow.run_with(&mut store, options), polls).0.is_some()
            };
            prop_assert!(store.consistent(), "half a post after {} polls: {:?}", polls, store);
            prop_assert!(
                full.store.log.starts_with(&store.log),
                "after {} polls the store holds posts the full run does not make, or in another order:\n  {:?}\nfull run:\n  {:?}",
                polls, store.log, full.store.log
            );
            let events = seen.into_inner().unwrap().run;
            if done {
                prop_assert_eq!(events.len(), 2, "one start and one end: {:?}", events);
                break;
            }
            // A future never polled has not started: dropping it reports nothing.
            let expected = if polls == 0 { vec![] } else { vec!["start", "cancelled"] };
            prop_assert_eq!(events, expected, "the run's own events after {} polls", polls);
            agree(&case, &flow, store, limit)?;
        }
    }
}

/// The model itself, on flows small enough to check by hand: if it were wrong the same way as
/// miniflow, the properties would pass, so its answers are pinned here.
#[test]
fn the_model_gives_the_documented_answers_on_small_flows() {
    let leaf = |id, actions: Vec<usize>| Script {
        id,
        actions,
        fails: vec![0],
        yields: 0,
        retries: 1,
        fallback: Fallback::Default,
        needs: None,
        prep_fails: None,
        post_fails: None,
    };
    // n0 loops on "a" twice (its script is a, a, default), then goes on to n1 which ends.
    let flow = FlowSpec {
        nodes: vec![NodeSpec::Leaf(leaf(0, vec![1, 1, 0])), NodeSpec::Leaf(leaf(1, vec![2]))],
        edges: vec![
            EdgeSpec { from: 0, action: 1, to: Some(0) },
            EdgeSpec { from: 0, action: 0, to: Some(1) },
        ],
        start: 0,
    };
    let case =
        Case { flow, params: vec![], max_steps: None, start_at: None, checkpoint: true, ids: 2 };
    let (outcome, model) = Model::run(&case, Store::new(2), usize::MAX);
    assert_eq!(outcome, Ok("b".to_string()));
    assert_eq!(model.visited, ["n0", "n0", "n0", "n1"]);
    assert_eq!(model.store.visits, [3, 1]);
    assert_eq!(model.store.log[0], "#0 {} n0#0");
    assert_eq!(model.checkpoints, [("n0".into(), 1), ("n0".into(), 2), ("n1".into(), 3)]);
    // With a limit of 3 it stops before n1, listing the three runs of n0.
    let (outcome, _) = Model::run(&case, Store::new(2), 3);
    assert_eq!(outcome, Err(vec![Failed::StepLimit { limit: 3, last: vec!["n0".into(); 3] }]));
    // And miniflow agrees on both.
    let flow = build(&case.flow);
    agree(&case, &flow, Store::new(2), usize::MAX).unwrap();
    agree(&case, &flow, Store::new(2), 3).unwrap();

    // A batch flow over two sets, its inner node failing twice before its third attempt.
    let mut inner = leaf(1, vec![0]);
    inner.fails = vec![2];
    inner.retries = 3;
    inner.needs = Some(0);
    let flow = FlowSpec {
        nodes: vec![NodeSpec::BatchFlow {
            id: 0,
            inner: FlowSpec { nodes: vec![NodeSpec::Leaf(inner)], edges: vec![], start: 0 },
            sets: vec![vec![(0, 1)], vec![(0, 2), (1, 3)]],
            post: true,
        }],
        edges: vec![],
        start: 0,
    };
    let case = Case {
        flow,
        params: vec![(0, Param::Int(9))],
        max_steps: None,
        start_at: None,
        checkpoint: false,
        ids: 2,
    };
    let (outcome, model) = Model::run(&case, Store::new(2), usize::MAX);
    assert_eq!(outcome, Ok("default".to_string()));
    assert_eq!(
        model.store.log,
        [
            "#1 {x=1} n0[0]/n0#2",
            "#1 {x=2,y=3} n0[1]/n0#2",
            "#0 2 sub-runs [\"default\", \"default\"]",
        ]
    );
    agree(&case, &build(&case.flow), Store::new(2), usize::MAX).unwrap();
}

/// The cases are worth running: with any seed, thousands of them reach every outcome, and
/// the runs that succeed or loop into their step limit are many and long. (If a change to the
/// generator made nearly every case fail its validation, the properties would still pass.)
#[test]
fn the_cases_reach_every_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let cases = 3000;
    let mut runner = TestRunner::new(config(cases));
    let (mut outcomes, mut steps) = (BTreeMap::<String, u32>::new(), 0);
    for _ in 0..cases {
        let case = case().new_tree(&mut runner).unwrap().current();
        let store = Store::new(case.ids);
        let limit = limit(&case, &store);
        let (outcome, model) = Model::run(&case, store, limit);
        let kind = match &outcome {
            Ok(_) => "Ok".to_string(),
            Err(errors) => format!("{:?}", errors[0]).split([' ', '{']).next().unwrap().into(),
        };
        let nested_start = case.start_path().is_some_and(|path| path.contains('/'));
        if nested_start
            && !matches!(outcome, Err(ref e) if matches!(e[0], Failed::StartInside { .. }))
        {
            *outcomes.entry("entered a nested flow".into()).or_default() += 1;
        }
        *outcomes.entry(kind).or_default() += 1;
        steps += model.steps;
    }
    let share = |kind: &str| outcomes.get(kind).copied().unwrap_or(0) * 100 / cases;
    for kind in ["EmptyFlow", "InvalidConfig", "Node", "Param", "StepLimit", "UnknownAction"] {
        assert!(share(kind) >= 1, "{kind} in under 1 % of the cases: {outcomes:?}");
    }
    assert!(outcomes.get("UnknownNode").is_some_and(|&n| n >= 10), "{outcomes:?}");
    assert!(outcomes.get("StartInside").is_some_and(|&n| n >= 10), "{outcomes:?}");
    assert!(outcomes.get("entered a nested flow").is_some_and(|&n| n >= 10), "{outcomes:?}");
    assert!(outcomes.get("Unreachable").is_some_and(|&n| n >= 10), "{outcomes:?}");
    assert!(share("Ok") >= 15 && share("StepLimit") >= 10, "{outcomes:?}");
    assert!(steps >= 20 * cases as usize, "only {steps} node runs in {cases} cases");
}
