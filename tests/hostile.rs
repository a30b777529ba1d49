//! Hostile and extreme input. Every way of misusing the builders (`Flow::add`, `edge`, `then`,
//! `end`, `set_start`, `name`, `RunOptions`, `Parallel`, `BatchAsyncFlow`, node settings out of
//! range, empty and unreachable flows, ids of other flows, duplicate edges and names) is an
//! `Err` with the exact variant and fields, or a documented panic with its documented message,
//! and leaves the flow as it was. Then sizes far beyond everyday use: a 1,000,000-step loop
//! whose heap in use does not grow (measured with a counting global allocator), flows nested
//! `MAX_DEPTH` and a thousand levels deep, batches of 1,000,000 items and params sets, 1 MB
//! actions; and unicode: actions and names compared byte for byte (`"é"` is not `"e\u{301}"`),
//! empty actions and keys, exact Mermaid escaping.
//!
//! The global allocator counts every thread of this test binary, so the heap is measured in a
//! process of its own, where nothing else runs (see [`a_million_steps_run_in_constant_memory`]).
//!
//! Flows nest at most `MAX_DEPTH` levels: every kind of nesting runs that deep on the 2 MiB
//! stack of a test thread, in a debug build, and a tower of 1,000 is refused before anything
//! runs, naming the level one too deep.

mod common;

use std::alloc::System;
use std::error::Error as _;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use miniflow::{
    Action, BatchAsyncFlow, BatchFlow, BatchNode, Ctx, Event, Flow, FlowError, MAX_ATTEMPTS,
    MAX_DEPTH, Node, NodeId, Parallel, Params, Phase, Result, RunOptions, Value, node_fn,
};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

use common::{Failure, assert_duplicate, assert_foreign, failure, panics, yield_times};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Runs a flow's future to its end.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    futures::executor::block_on(future)
}

/// The message `Flow::add` and `Parallel::branch` panic with for an invalid name.
fn invalid_name(name: &str) -> String {
    format!(
        "node name {name:?} is not valid: give each node a non-empty name without `/`, `[` or `]`"
    )
}

/// The message `Flow::add` and `Parallel::branch` panic with for a name taken in `place`.
fn taken_name(place: &str, name: &str) -> String {
    format!("{place} already has a node named {name:?}: give each node a name of its own")
}

// ---------------------------------------------------------------------------------------------
// A store that records the nodes that ran
// ---------------------------------------------------------------------------------------------

/// The names of the nodes that ran, in order, and what the router returns next.
#[derive(Default)]
struct Trail {
    visits: Vec<String>,
    next: Action,
}

/// A node that records `name` and returns `action`.
fn step(name: &str, action: &'static str) -> impl Node<Trail> + 'static {
    let name = name.to_string();
    node_fn(move |trail: &mut Trail, _: &Params| {
        trail.visits.push(name.clone());
        Ok(Action::new(action))
    })
}

/// A node that records `name` and returns the store's `next` action.
fn router(name: &str) -> impl Node<Trail> + 'static {
    let name = name.to_string();
    node_fn(move |trail: &mut Trail, _: &Params| {
        trail.visits.push(name.clone());
        Ok(trail.next.clone())
    })
}

/// Adds a [`step`] named `name` that returns "default".
fn add(flow: &mut Flow<Trail>, name: &str) -> NodeId {
    flow.add(name, step(name, "default"))
}

fn run(flow: &Flow<Trail>) -> (Result<Action, FlowError>, Vec<String>) {
    run_with(flow, RunOptions::new())
}

fn run_with(
    flow: &Flow<Trail>,
    options: RunOptions<'_, Trail>,
) -> (Result<Action, FlowError>, Vec<String>) {
    let mut trail = Trail::default();
    let result = block_on(flow.run_with(&mut trail, options));
    (result, trail.visits)
}

/// Runs `flow`, which must succeed: its last action and the nodes that ran.
fn run_ok(flow: &Flow<Trail>) -> (Action, Vec<String>) {
    let (result, visits) = run(flow);
    (result.unwrap_or_else(|err| panic!("the run failed: {err}")), visits)
}

/// `a -> b`.
fn pair() -> (Flow<Trail>, NodeId, NodeId) {
    let mut flow = Flow::new();
    let a = add(&mut flow, "a");
    let b = add(&mut flow, "b");
    flow.then(a, b);
    (flow, a, b)
}

/// The message `edge`, `then`, `end`, `set_start`, `entry` and `name` panic with for `id`,
/// an id of another flow.
fn foreign(id: NodeId) -> String {
    format!("{id:?} was returned by another flow's `add`; connect only ids this flow returned")
}

/// The message `edge`, `then` and `end` panic with for a second edge for `action` from `node`.
fn duplicate(node: &str, action: &str) -> String {
    format!(
        "node `{node}` already has an edge for action {action:?}; an action leads to one place, \
         so remove one of the two edges or give it another action"
    )
}

/// The path of the empty flow an `InvalidConfig` is about, after checking that its message
/// says that flow has no nodes; or a panic.
fn empty_flow(err: &FlowError) -> &str {
    let (node, message) = invalid_config(err);
    let flow = match node {
        "" => "the flow".to_string(),
        path => format!("flow `{path}`"),
    };
    assert_eq!(message, format!("{flow} has no nodes; add one with `Flow::add` before running it"));
    assert_eq!(err.to_string(), message);
    node
}

/// Asserts that `err` is the `InvalidConfig` of the flow at `node` (empty for the outermost
/// flow) for `nodes` no edge reaches from its start node `start`, with the message that says
/// so.
fn assert_unreachable(err: &FlowError, node: &str, nodes: &[&str], start: &str) {
    let (n, message) = invalid_config(err);
    assert_eq!(n, node);
    let flow = if node.is_empty() { String::new() } else { format!("{node}/") };
    let (s, it) = if nodes.len() == 1 { ("", "it") } else { ("s", "them") };
    let names: Vec<String> = nodes.iter().map(|n| format!("`{flow}{n}`")).collect();
    let expected = format!(
        "node{s} {} can never run: no edge leads to {it} from the start node `{flow}{start}`; \
         connect {it} with `Flow::edge` or `Flow::then`, or remove {it} (a node that runs only \
         when a run resumes there is declared with `Flow::entry`)",
        names.join(", ")
    );
    assert_eq!(message, expected);
    assert_eq!(err.to_string(), expected);
}

/// The fields of an `InvalidConfig`, or a panic.
fn invalid_config(err: &FlowError) -> (&str, &str) {
    match err {
        FlowError::InvalidConfig { node, message, .. } => (node, message),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

/// The fields of a `StepLimit`, or a panic.
fn step_limit(err: &FlowError) -> (usize, &[String]) {
    match err {
        FlowError::StepLimit { limit, last, .. } => (*limit, last),
        other => panic!("expected StepLimit, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Builder misuse: names
// ---------------------------------------------------------------------------------------------

#[test]
fn every_invalid_name_panics_with_the_documented_message_and_leaves_the_flow_as_it_was() {
    let (mut flow, _, _) = pair();
    let before = flow.to_mermaid();
    let bad =
        ["", "/", "[", "]", "a/", "/a", "[0]", "x]", "a[b", "日本/語", "🚀[1]", "//", "a/b/c"];
    for name in bad {
        assert_eq!(panics(|| flow.add(name, step("x", "default"))), invalid_name(name), "{name:?}");
        let owned = panics(|| flow.add(String::from(name), step("x", "default")));
        assert_eq!(owned, invalid_name(name), "{name:?} as a String");
        assert_eq!(flow.len(), 2, "{name:?} must not be added");
    }
    // Taken names, compared byte for byte, for every kind of node added under them.
    assert_eq!(panics(|| flow.add("a", step("x", "default"))), taken_name("this flow", "a"));
    assert_eq!(panics(|| flow.add("b", Flow::<Trail>::new())), taken_name("this flow", "b"));
    assert_eq!(panics(|| flow.add("b", Parallel::<Trail>::new())), taken_name("this flow", "b"));

    // Nothing was changed by the refused adds: same drawing, same run.
    assert_eq!(flow.to_mermaid(), before);
    assert_eq!(run_ok(&flow), (Action::DEFAULT, vec!["a".into(), "b".into()]));
}

#[test]
fn odd_but_valid_names_are_kept_byte_for_byte_and_told_apart_byte_for_byte() {
    let long = "ß".repeat(50_000); // 100,000 bytes
    let names = [
        "é",         // U+00E9
        "e\u{301}",  // e + combining acute: looks the same, other bytes
        "E\u{301}",  // case matters
        " ",         // whitespace only
        "a b",       // inner space
        "\"q\"",     // quotes
        "#35;",      // a Mermaid character code
        "\\",        // backslash
        "default",   // the name of an action
        "👩‍💻",        // a ZWJ sequence
        "\u{0}",     // NUL
        "tab\there", // control character
        long.as_str(),
    ];
    let mut flow = Flow::new();
    let ids: Vec<NodeId> = names.iter().map(|name| flow.add(*name, router(name))).collect();
    for pair in ids.windows(2) {
        flow.edge(pair[0], "next", pair[1]);
    }
    assert_eq!(flow.len(), names.len());
    for (id, name) in ids.iter().zip(names) {
        assert_eq!(flow.name(*id), name);
    }
    // Each name is taken, exactly: adding any of them again panics and names it.
    for name in names {
        assert_eq!(panics(|| flow.add(name, step("x", "d"))), taken_name("this flow", name));
    }
    // The run visits them all, and stops at the last (it has no edges).
    let mut trail = Trail { next: Action::new("next"), ..Trail::default() };
    assert_eq!(block_on(flow.run(&mut trail)).unwrap(), "next");
    assert_eq!(trail.visits, names);
}

#[test]
fn parallel_branch_names_are_checked_like_flow_names() {
    for name in ["", "a/b", "[", "]", "x[3]"] {
        let message = panics(|| Parallel::<Trail>::new().branch(name, step("x", "default")));
        assert_eq!(message, invalid_name(name));
    }
    for name in ["a", "é", "🚀"] {
        let message = panics(|| {
            Parallel::<Trail>::new()
                .branch(name, step("x", "default"))
                .branch(name, Flow::<Trail>::new())
        });
        assert_eq!(message, taken_name("this parallel node", name));
    }
    // "é" and "e\u{301}" are two branches.
    let both =
        Parallel::new().branch("é", step("é", "default")).branch("e\u{301}", step("e\u{301}", "x"));
    let mut flow = Flow::new();
    flow.add("both", both.max_in_flight(1));
    assert_eq!(run_ok(&flow), (Action::DEFAULT, vec!["é".into(), "e\u{301}".into()]));
}

#[test]
fn in_flight_limits_of_zero_panic_with_their_documented_messages() {
    assert_eq!(
        panics(|| Parallel::<Trail>::new().max_in_flight(0)),
        "max_in_flight(0) would never start a job; use 1 or more (usize::MAX for no limit)"
    );
    let message = panics(|| {
        BatchAsyncFlow::new(pair().0, |_: &Trail, _: &Params| Ok(vec![])).max_in_flight(0)
    });
    assert_eq!(
        message,
        "max_in_flight(0) would never start a job; use 1 or more (usize::MAX for no limit)"
    );
    // 1 and usize::MAX are the documented bounds, and both run.
    for limit in [1, usize::MAX] {
        let par = Parallel::new().branch("p", step("p", "default")).max_in_flight(limit);
        let batch = BatchAsyncFlow::new(pair().0, |_: &Trail, _: &Params| Ok(vec![Params::new()]))
            .max_in_flight(limit);
        let mut flow = Flow::new();
        let par = flow.add("par", par);
        let batch = flow.add("batch", batch);
        flow.then(par, batch);
        assert_eq!(run_ok(&flow), (Action::DEFAULT, vec!["p".into(), "a".into(), "b".into()]));
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Builder misuse: ids of other flows, duplicate edges
// ---------------------------------------------------------------------------------------------

#[test]
fn ids_of_a_flow_since_nested_of_another_store_type_or_dropped_are_foreign_everywhere() {
    // An id of a flow that was then added to this one: the inner flow's nodes are not this
    // flow's, even though the inner flow now lives inside it.
    let mut inner = Flow::new();
    let inside = add(&mut inner, "inside");
    let mut flow = Flow::new();
    let a = add(&mut flow, "a");
    let nested = flow.add("nested", inner);
    flow.then(a, nested);
    // An id of a flow over another store type (a `NodeId` does not carry the store type).
    let mut other_type = Flow::<u64>::new();
    let typed = other_type.add("a", node_fn(|_: &mut u64, _: &Params| Ok(Action::DEFAULT)));
    // An id of a flow that no longer exists, and one of a flow made by `Default`.
    let dropped = add(&mut Flow::new(), "gone");
    let defaulted = add(&mut Flow::default(), "a");

    let before = flow.to_mermaid();
    for foreign in [inside, typed, dropped, defaulted] {
        assert_foreign(|| _ = flow.edge(foreign, "x", a), foreign);
        assert_foreign(|| _ = flow.edge(a, "x", foreign), foreign);
        assert_foreign(|| _ = flow.then(foreign, a), foreign);
        assert_foreign(|| _ = flow.then(a, foreign), foreign);
        assert_foreign(|| _ = flow.end(foreign, "x"), foreign);
        assert_foreign(|| _ = flow.set_start(foreign), foreign);
        assert_foreign(|| _ = flow.name(foreign), foreign);
    }
    // Both ends foreign: the error names one of them (which one is not documented).
    let message = panics(|| {
        flow.edge(inside, "x", typed);
    });
    assert!(message == foreign(inside) || message == foreign(typed), "{message}");
    // This flow's own ids still work, and the refused calls changed nothing.
    assert_eq!(flow.name(nested), "nested");
    assert_eq!(other_type.name(typed), "a");
    assert_eq!(flow.to_mermaid(), before);
    assert_eq!(run_ok(&flow), (Action::DEFAULT, vec!["a".into(), "inside".into()]));
}

#[test]
fn duplicate_edges_are_compared_byte_for_byte_whatever_kind_came_first() {
    let big = "🦀".repeat(250_000); // a 1,000,000-byte action
    let mut flow = Flow::new();
    let a = flow.add("a", router("a"));
    let b = add(&mut flow, "b");
    // An end edge first, then every other kind for the same action.
    flow.end(a, "stop");
    assert_duplicate(|| _ = flow.edge(a, "stop", b), "a", "stop");
    assert_duplicate(|| _ = flow.edge(a, String::from("stop"), b), "a", "stop");
    assert_duplicate(|| _ = flow.end(a, "stop"), "a", "stop");
    // `then` is an edge for "default", however "default" is spelled out.
    flow.end(a, "default");
    assert_duplicate(|| _ = flow.then(a, b), "a", "default");
    assert_duplicate(|| _ = flow.edge(a, Action::DEFAULT, b), "a", "default");
    assert_duplicate(|| _ = flow.edge(a, Action::default(), b), "a", "default");
    // Different bytes are different actions: none of these is a duplicate.
    for action in ["Default", "DEFAULT", "default ", "stop\0", "", "é", "e\u{301}"] {
        flow.edge(a, action, b);
    }
    // ...and each of them is taken now.
    for action in ["Default", "", "é", "e\u{301}"] {
        assert_duplicate(|| _ = flow.edge(a, action, b), "a", action);
        assert_duplicate(|| _ = flow.end(a, action), "a", action);
    }
    flow.edge(a, big.clone(), b);
    let message = panics(|| {
        flow.end(a, big.clone());
    });
    assert!(message == duplicate("a", &big), "the message must name the whole action");
    let mut almost = big.clone();
    almost.pop();
    flow.end(a, almost);

    // The first edges stand: "stop" and "default" end the run at `a`, "é" leads on to `b`.
    let routes = [
        ("stop", "stop", &["a"][..]),
        ("default", "default", &["a"]),
        ("é", "default", &["a", "b"]),
    ];
    for (action, last, visits) in routes {
        let mut trail = Trail { next: Action::from(action.to_string()), ..Trail::default() };
        assert_eq!(block_on(flow.run(&mut trail)).unwrap(), last);
        assert_eq!(trail.visits, visits);
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Builder misuse: empty flows, unreachable nodes, start_at, step limits
// ---------------------------------------------------------------------------------------------

#[test]
fn an_empty_flow_is_reported_before_start_at_and_the_step_limit_are_looked_at() {
    let flow = Flow::<Trail>::new();
    assert!(flow.is_empty());
    let message = "the flow has no nodes; add one with `Flow::add` before running it";
    for options in [
        RunOptions::new(),
        RunOptions::new().start_at("a"),
        RunOptions::new().start_at(""),
        RunOptions::new().max_steps(0),
    ] {
        let (result, visits) = run_with(&flow, options);
        let err = result.unwrap_err();
        assert_eq!((empty_flow(&err), err.to_string().as_str()), ("", message));
        assert!(visits.is_empty());
    }
    assert_eq!(empty_flow(&flow.validate().unwrap_err()), "");
    assert_eq!(format!("{flow:?}"), "Flow { nodes: [], start: None }");
}

#[test]
fn an_empty_flow_anywhere_in_the_tree_fails_before_any_node_runs_and_is_named_by_its_path() {
    /// `first -> holder`, where `holder` holds an empty flow (given by `hold`).
    fn around(hold: impl FnOnce(Flow<Trail>) -> Flow<Trail>) -> Flow<Trail> {
        let mut flow = Flow::new();
        let first = add(&mut flow, "first");
        let holder = flow.add("holder", hold(Flow::new()));
        flow.then(first, holder);
        flow
    }
    let no_sets = |_: &Trail, _: &Params| -> Result<Vec<Params>> { Ok(vec![]) };
    let cases: Vec<(Flow<Trail>, &str)> = vec![
        (around(|empty| empty), "holder"),
        (
            around(|empty| {
                let mut mid = Flow::new();
                mid.add("mid", empty);
                mid
            }),
            "holder/mid",
        ),
        (
            around(|empty| {
                let mut wrap = Flow::new();
                wrap.add("batch", BatchFlow::new(empty, no_sets));
                wrap
            }),
            "holder/batch",
        ),
        (
            around(|empty| {
                let mut wrap = Flow::new();
                wrap.add("fan", BatchAsyncFlow::new(empty, no_sets).max_in_flight(3));
                wrap
            }),
            "holder/fan",
        ),
        (
            around(|empty| {
                let mut wrap = Flow::new();
                let par =
                    Parallel::new().branch("ok", step("ok", "default")).branch("hollow", empty);
                wrap.add("par", par);
                wrap
            }),
            "holder/par/hollow",
        ),
    ];
    for (flow, path) in cases {
        let err = flow.validate().unwrap_err();
        assert_eq!(empty_flow(&err), path);
        assert_eq!(
            err.to_string(),
            format!("flow `{path}` has no nodes; add one with `Flow::add` before running it")
        );
        let (result, visits) = run(&flow);
        assert_eq!(empty_flow(&result.unwrap_err()), path);
        assert!(visits.is_empty(), "{path}: no node may run, not even `first`");
    }
}

#[test]
fn start_at_cannot_reach_a_node_the_start_node_does_not_reach() {
    let mut flow = Flow::new();
    let a = add(&mut flow, "a");
    let island = add(&mut flow, "island");
    flow.edge(island, "default", island); // a self-loop does not make it reachable
    let err = flow.validate().unwrap_err();
    assert_unreachable(&err, "", &["island"], "a");
    assert!(err.to_string().contains("connect it with `Flow::edge` or `Flow::then`, or remove it"));
    // Starting there does not help: the flow is checked from its start node, first of all.
    for options in [
        RunOptions::new().start_at("island"),
        RunOptions::new().start_at("nowhere"),
        RunOptions::new().max_steps(0),
    ] {
        let (result, visits) = run_with(&flow, options);
        assert_unreachable(&result.unwrap_err(), "", &["island"], "a");
        assert!(visits.is_empty());
    }
    // Moving the start there instead is a change the next check sees: now `a` is the island.
    flow.set_start(island);
    assert_unreachable(&flow.validate().unwrap_err(), "", &["a"], "island");
    let _ = a;
}

#[test]
fn start_at_names_are_matched_byte_for_byte() {
    let mut inner = Flow::new();
    add(&mut inner, "deep");
    let mut flow = Flow::new();
    let precomposed = add(&mut flow, "é");
    let nested = flow.add("inner", inner);
    let upper = add(&mut flow, "Upper");
    flow.then(precomposed, nested);
    flow.then(nested, upper);
    let known = ["é", "inner", "Upper"].map(String::from);
    for path in ["", "e\u{301}", "upper", "deep", "inner[0]", " é", "é ", "/inner", "/"] {
        // The unknown name is reported before the step limit is looked at; a path is read
        // up to its first `/`.
        let (result, visits) = run_with(&flow, RunOptions::new().start_at(path).max_steps(0));
        let name = path.split('/').next().unwrap();
        let err = result.unwrap_err();
        let (node, message) = invalid_config(&err);
        let names: Vec<String> = known.iter().map(|n| format!("{n:?}")).collect();
        assert_eq!(
            (node, message),
            (
                "",
                format!(
                    "the flow has no node named {name:?} to start at; its nodes are {}",
                    names.join(", ")
                )
                .as_str()
            )
        );
        assert_eq!(
            err.to_string(),
            format!(
                "the flow has no node named {name:?} to start at; its nodes are \"é\", \"inner\", \"Upper\""
            )
        );
        assert!(visits.is_empty());
    }
    let (result, visits) = run_with(&flow, RunOptions::new().start_at("Upper"));
    assert_eq!((result.unwrap(), visits), (Action::DEFAULT, vec!["Upper".to_string()]));
    // A path into the nested flow is matched the same way, one name at a time.
    let (result, visits) = run_with(&flow, RunOptions::new().start_at("inner/deep"));
    assert_eq!((result.unwrap(), visits), (Action::DEFAULT, vec!["deep".into(), "Upper".into()]));
    for (path, name) in
        [("inner/", ""), ("inner//deep", ""), ("inner/Deep", "Deep"), ("inner/deep/x", "x")]
    {
        let (result, visits) = run_with(&flow, RunOptions::new().start_at(path).max_steps(0));
        let err = result.unwrap_err();
        assert!(visits.is_empty());
        let message = match name {
            "x" => "a run cannot start inside node `inner/deep`: only a nested `Flow` can be entered \
                    at one of its nodes; start at `inner/deep` itself (a batch flow or parallel node \
                    then runs all its sub-runs or branches again)".to_string(),
            _ => format!("flow `inner` has no node named {name:?} to start at; its nodes are \"deep\""),
        };
        assert_eq!((invalid_config(&err).0, err.to_string()), ("inner", message), "{path:?}");
    }
}

#[test]
fn step_limits_at_the_edges_zero_one_and_usize_max() {
    let (flow, _, _) = pair();
    let (result, visits) = run_with(&flow, RunOptions::new().max_steps(0));
    let err = result.unwrap_err();
    assert_eq!(step_limit(&err), (0, &[][..]));
    assert!(err.to_string().contains("before any node ran"));
    assert!(err.to_string().contains("raise the limit with `RunOptions::max_steps`"));
    assert!(visits.is_empty());

    let (result, visits) = run_with(&flow, RunOptions::new().max_steps(1));
    assert_eq!(step_limit(&result.unwrap_err()), (1, &["a".to_string()][..]));
    assert_eq!(visits, ["a"]);

    for limit in [2, usize::MAX - 1, usize::MAX] {
        let (result, visits) = run_with(&flow, RunOptions::new().max_steps(limit));
        assert_eq!((result.unwrap(), visits.len()), (Action::DEFAULT, 2), "limit {limit}");
    }
}

#[test]
fn edges_and_nodes_added_after_a_run_are_used_by_the_next_run() {
    let mut flow = Flow::new();
    let a = flow.add("a", router("a"));
    // Run 1: `a` has no edges, so it ends the run whatever it returns.
    let mut trail = Trail { next: Action::new("go"), ..Trail::default() };
    assert_eq!(block_on(flow.run(&mut trail)).unwrap(), "go");
    assert_eq!(flow.validate().map_err(|e| e.to_string()), Ok(()));

    // A node added after a run that passed its check is checked again: it is unreachable.
    let b = add(&mut flow, "b");
    let mut trail = Trail { next: Action::new("go"), ..Trail::default() };
    assert_unreachable(&block_on(flow.run(&mut trail)).unwrap_err(), "", &["b"], "a");
    assert!(trail.visits.is_empty());

    // The edge that reaches it is used at once.
    flow.edge(a, "go", b);
    let mut trail = Trail { next: Action::new("go"), ..Trail::default() };
    assert_eq!(block_on(flow.run(&mut trail)).unwrap(), "default");
    assert_eq!(trail.visits, ["a", "b"]);

    // An edge added after that run changes the route of the next one.
    let c = add(&mut flow, "c");
    flow.then(b, c);
    flow.edge(c, "default", a);
    flow.end(a, "stop");
    let mut trail = Trail { next: Action::new("go"), ..Trail::default() };
    let err = block_on(flow.run_with(&mut trail, RunOptions::new().max_steps(7))).unwrap_err();
    assert_eq!(step_limit(&err).1, ["a", "b", "c", "a", "b", "c", "a"]);
    let mut trail = Trail { next: Action::new("stop"), ..Trail::default() };
    assert_eq!(block_on(flow.run(&mut trail)).unwrap(), "stop");
    assert_eq!(trail.visits, ["a"]);

    // set_start after a run: the next run starts there, and is checked from there.
    flow.set_start(c);
    let mut trail = Trail { next: Action::new("stop"), ..Trail::default() };
    assert_eq!(block_on(flow.run(&mut trail)).unwrap(), "stop");
    assert_eq!(trail.visits, ["c", "a"]);
}

// ---------------------------------------------------------------------------------------------
// 1. Builder misuse: node settings out of range
// ---------------------------------------------------------------------------------------------

/// A node whose settings are whatever the test says; counts its `prep`s.
struct Knobs {
    max_retries: usize,
    timeout: Option<Duration>,
    preps: Arc<AtomicUsize>,
}

impl Node<Trail> for Knobs {
    type Prep = ();
    type Output = ();

    fn prep(&self, _: &Trail, _: &Params) -> Result<()> {
        self.preps.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn exec(&self, _: &(), _: Ctx<'_>) -> Result<()> {
        Ok(())
    }

    fn post(&self, trail: &mut Trail, _: (), _: ()) -> Result<Action> {
        trail.visits.push("knobs".into());
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        self.max_retries
    }

    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
}

/// A batch node whose settings are whatever the test says; counts its `prep`s.
struct BatchKnobs {
    knobs: Knobs,
    max_in_flight: usize,
    items: usize,
}

impl BatchNode<Trail> for BatchKnobs {
    type Item = usize;
    type Output = usize;

    fn prep(&self, _: &Trail, _: &Params) -> Result<Vec<usize>> {
        self.knobs.preps.fetch_add(1, Ordering::SeqCst);
        Ok((0..self.items).collect())
    }

    async fn exec(&self, item: &usize, _: Ctx<'_>) -> Result<usize> {
        Ok(*item)
    }

    fn post(&self, trail: &mut Trail, _: &Params, _: Vec<usize>, _: Vec<usize>) -> Result<Action> {
        trail.visits.push("batch".into());
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        self.knobs.max_retries
    }

    fn timeout(&self) -> Option<Duration> {
        self.knobs.timeout
    }

    fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }
}

/// What `InvalidConfig` says for these settings: the fix, in key words.
fn config_words(
    max_retries: usize,
    timeout: Option<Duration>,
    max_in_flight: usize,
) -> Vec<String> {
    if !(1..=MAX_ATTEMPTS).contains(&max_retries) {
        let first = format!("max_retries() is {max_retries}, but it counts every attempt");
        vec![first, format!("must be between 1 and {MAX_ATTEMPTS}")]
    } else if timeout == Some(Duration::ZERO) {
        vec!["timeout() is zero".into(), "return None for no time limit".into()]
    } else {
        assert_eq!(max_in_flight, 0);
        vec!["max_in_flight() is 0".into(), "return 1".into(), "usize::MAX for no limit".into()]
    }
}

#[test]
fn node_settings_out_of_range_fail_before_prep_wherever_the_node_sits() {
    let zero = Some(Duration::ZERO);
    let settings = [
        (0, None),
        (MAX_ATTEMPTS + 1, None),
        (usize::MAX, None),
        (1, zero),
        (MAX_ATTEMPTS, zero),
        (0, zero), // both wrong: the attempts are reported
    ];
    for (max_retries, timeout) in settings {
        let preps = Arc::new(AtomicUsize::new(0));
        let knobs = || Knobs { max_retries, timeout, preps: Arc::clone(&preps) };
        // At the top, inside a nested flow, and as a branch of a parallel node in a flow.
        let mut top = Flow::new();
        top.add("knobs", knobs());
        let mut inner = Flow::new();
        inner.add("knobs", knobs());
        let mut nested = Flow::new();
        let first = add(&mut nested, "first");
        let inner = nested.add("inner", inner);
        nested.then(first, inner);
        let mut wrap = Flow::new();
        wrap.add("par", Parallel::new().branch("knobs", knobs()));
        let mut parallel = Flow::new();
        parallel.add("wrap", wrap);

        let cases =
            [(top, "knobs", 0), (nested, "inner/knobs", 1), (parallel, "wrap/par/knobs", 0)];
        for (flow, path, ran_before) in cases {
            let (result, visits) = run(&flow);
            let err = result.unwrap_err();
            let (node, message) = invalid_config(&err);
            assert_eq!(node, path);
            for words in config_words(max_retries, timeout, 1) {
                assert!(message.contains(&words), "{message:?} should say {words:?}");
            }
            assert_eq!(err.to_string(), message);
            assert!(message.starts_with(&format!("node `{path}`: ")), "{message}");
            assert_eq!(visits.len(), ran_before, "{path}");
            // The flow is valid as built: the settings are asked for when the node runs.
            assert_eq!(flow.validate().map_err(|e| e.to_string()), Ok(()));
        }
        assert_eq!(preps.load(Ordering::SeqCst), 0, "{max_retries} {timeout:?}: prep must not run");
    }
    // The edges of the range are allowed.
    for max_retries in [1, MAX_ATTEMPTS] {
        let preps = Arc::new(AtomicUsize::new(0));
        let mut flow = Flow::new();
        flow.add("knobs", Knobs { max_retries, timeout: None, preps: Arc::clone(&preps) });
        assert_eq!(run_ok(&flow), (Action::DEFAULT, vec!["knobs".into()]));
        assert_eq!(preps.load(Ordering::SeqCst), 1);
    }
}

#[test]
fn batch_node_settings_out_of_range_fail_before_prep_even_with_no_items() {
    let zero = Some(Duration::ZERO);
    let settings = [
        (0, None, 1),
        (MAX_ATTEMPTS + 1, None, 8),
        (1, zero, 1),
        (1, None, 0),
        (0, zero, 0), // everything wrong: the attempts are reported
        (1, zero, 0), // the timeout before the limit
    ];
    for (max_retries, timeout, max_in_flight) in settings {
        for items in [0, 3] {
            let preps = Arc::new(AtomicUsize::new(0));
            let knobs = Knobs { max_retries, timeout, preps: Arc::clone(&preps) };
            let mut flow = Flow::new();
            flow.add("batch", BatchKnobs { knobs, max_in_flight, items });
            let (result, visits) = run(&flow);
            let err = result.unwrap_err();
            let (node, message) = invalid_config(&err);
            assert_eq!(node, "batch");
            for words in config_words(max_retries, timeout, max_in_flight) {
                assert!(message.contains(&words), "{message:?} should say {words:?}");
            }
            assert!(visits.is_empty());
            assert_eq!(preps.load(Ordering::SeqCst), 0);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. A step limit reached inside nested flows
// ---------------------------------------------------------------------------------------------

#[test]
fn a_step_limit_inside_a_nested_flow_does_not_say_no_node_ran() {
    let mut inner = Flow::new();
    add(&mut inner, "leaf");
    let mut flow = Flow::new();
    flow.add("outer", inner);
    // Step 1 is `outer`; the limit stops `outer/leaf`, which would be step 2.
    let (result, visits) = run_with(&flow, RunOptions::new().max_steps(1));
    let err = result.unwrap_err();
    assert!(visits.is_empty());
    // As documented, the running nested flow is not listed itself...
    assert_eq!(step_limit(&err), (1, &[][..]));
    // ...but then the message must not claim that no node ran: one step was taken.
    assert!(!err.to_string().contains("before any node ran"), "{err}");
    // It says where the run was instead: at the node it did not start.
    assert!(err.to_string().contains("limit of 1 step before starting `outer/leaf`. If"), "{err}");
    assert_eq!(err.node(), "outer/leaf");
}

// ---------------------------------------------------------------------------------------------
// 2. A million steps in constant memory
// ---------------------------------------------------------------------------------------------

/// The heap bytes in use now, by every thread of this binary.
fn heap_in_use() -> isize {
    let stats = GLOBAL.stats();
    stats.bytes_allocated as isize - stats.bytes_deallocated as isize
}

/// The visit at which the heap in use is first sampled (the run is well under way by then).
const BASELINE_AT: u64 = 1_000;

/// A loop counter that samples the heap in use on every visit from [`BASELINE_AT`] on.
#[derive(Debug, Default)]
struct Meter {
    visits: u64,
    target: u64,
    /// The heap in use at visit [`BASELINE_AT`].
    baseline: isize,
    /// The lowest and highest heap in use after it, relative to it.
    low: isize,
    high: isize,
    /// The heap in use at the last visit, relative to it.
    last: isize,
}

impl Meter {
    fn new(target: u64) -> Self {
        Meter { target, ..Meter::default() }
    }

    /// Counts a visit and samples the heap: no allocation here.
    fn visit(&mut self) {
        self.visits += 1;
        let in_use = heap_in_use();
        if self.visits == BASELINE_AT {
            self.baseline = in_use;
        }
        if self.visits >= BASELINE_AT {
            let growth = in_use - self.baseline;
            self.low = self.low.min(growth);
            self.high = self.high.max(growth);
            self.last = growth;
        }
    }

    fn next(&self) -> Action {
        Action::new(if self.visits < self.target { "again" } else { "done" })
    }

    /// Asserts that the heap in use stayed within `bound` bytes of the baseline all along.
    fn assert_flat(&self, case: &str, bound: isize) {
        assert!(
            -bound < self.low && self.high < bound,
            "{case}: the heap in use moved from {} to {} bytes around its baseline over {} \
             visits (last {})",
            self.low,
            self.high,
            self.visits,
            self.last
        );
    }
}

/// One node looping to itself until the meter's target.
fn self_loop() -> Flow<Meter> {
    let mut flow = Flow::new();
    let tick = flow.add(
        "tick",
        node_fn(|meter: &mut Meter, _: &Params| {
            meter.visit();
            Ok(meter.next())
        }),
    );
    flow.edge(tick, "again", tick);
    flow.end(tick, "done");
    flow
}

/// `ping -> pong -> ping …` until the meter's target (counted over both nodes).
fn ping_pong() -> Flow<Meter> {
    let mut flow = Flow::new();
    let ping = flow.add(
        "ping",
        node_fn(|meter: &mut Meter, _: &Params| {
            meter.visit();
            Ok(Action::DEFAULT)
        }),
    );
    let pong = flow.add(
        "pong",
        node_fn(|meter: &mut Meter, _: &Params| {
            meter.visit();
            Ok(meter.next())
        }),
    );
    flow.then(ping, pong);
    flow.edge(pong, "again", ping);
    flow.end(pong, "done");
    flow
}

fn metered(
    flow: &Flow<Meter>,
    target: u64,
    options: RunOptions<'_, Meter>,
) -> (Result<Action, FlowError>, Meter) {
    let mut meter = Meter::new(target);
    let result = block_on(flow.run_with(&mut meter, options));
    (result, meter)
}

const MILLION: u64 = 1_000_000;

/// The heap may wobble by this much around its baseline; any history kept per step would
/// grow it by a megabyte or more over a million steps.
const FLAT: isize = 1024;

/// Set in the environment of the process [`a_million_steps_run_in_constant_memory`] starts.
const HEAP_CHILD: &str = "MINIFLOW_HOSTILE_HEAP_CHILD";

/// What the measuring process prints when every measurement passed.
const HEAP_MEASURED: &str = "heap measured: flat over every million-step run";

/// The allocator's counters are global, and the test harness itself allocates on its main
/// thread whenever a test ends (or is skipped) and the next one starts. So the measurement runs
/// in a process of its own: this test binary again, told to run only this test.
#[test]
fn a_million_steps_run_in_constant_memory() {
    if std::env::var_os(HEAP_CHILD).is_some() {
        measure_a_million_steps();
        println!("{HEAP_MEASURED}");
        return;
    }
    let this = "a_million_steps_run_in_constant_memory";
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", this, "--test-threads=1", "--nocapture"])
        .env(HEAP_CHILD, "1")
        .output()
        .unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the measuring process failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(HEAP_MEASURED), "the measuring process did not measure:\n{stdout}");
}

/// With and without a step limit and an observer, a million steps leave the heap as it was.
fn measure_a_million_steps() {
    let (once, twice) = (self_loop(), ping_pong());
    // Warm up: the first run of each flow checks it and remembers that it did.
    assert_eq!(metered(&once, 10_000, RunOptions::new()).0.unwrap(), "done");
    assert_eq!(metered(&twice, 10_000, RunOptions::new()).0.unwrap(), "done");

    // One node looping to itself, no options.
    let (result, meter) = metered(&once, MILLION, RunOptions::new());
    assert_eq!((result.unwrap().as_str(), meter.visits), ("done", MILLION));
    meter.assert_flat("self-loop", FLAT);

    // Two nodes, one step short of the steps needed: the limit is reached, the last eight runs
    // are listed, and nothing more was kept.
    let (result, meter) = metered(&twice, MILLION, RunOptions::new().max_steps(999_999));
    let err = result.unwrap_err();
    let last: Vec<String> = ["pong", "ping"].repeat(4).into_iter().map(String::from).collect();
    assert_eq!(step_limit(&err), (999_999, &last[..]));
    assert_eq!(meter.visits, 999_999);
    meter.assert_flat("ping-pong stopped by the limit", FLAT);

    // Two nodes with an observer that counts the events, under a limit of exactly the steps
    // needed: it succeeds at exactly that count, and every node run is reported.
    let (starts, ends) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let count = |event: &Event<'_>| match event {
        Event::NodeStart { .. } => {
            starts.fetch_add(1, Ordering::Relaxed);
        }
        Event::NodeEnd { .. } => {
            ends.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    };
    let options = RunOptions::new().observer(&count).max_steps(MILLION as usize);
    let (result, meter) = metered(&twice, MILLION, options);
    assert_eq!((result.unwrap().as_str(), meter.visits), ("done", MILLION));
    assert_eq!((starts.into_inner(), ends.into_inner()), (MILLION as usize, MILLION as usize));
    meter.assert_flat("ping-pong with an observer under a limit of a million", FLAT);
}

// ---------------------------------------------------------------------------------------------
// 3. Deep nesting
// ---------------------------------------------------------------------------------------------

/// How the innermost node behaves.
#[derive(Clone, Copy, Debug, Default)]
enum Leaf {
    /// Ends the run with "done".
    #[default]
    Done,
    /// Fails in its post.
    Fail,
    /// Loops to itself forever.
    Loop,
}

#[derive(Debug, Default)]
struct Deep {
    leaf: Leaf,
    leaf_runs: u64,
}

/// Counts its drops: proves that a dropped flow drops the node deep inside it.
struct Dropped(Arc<AtomicUsize>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// The innermost flow: `leaf`, which loops on "again" and ends on "done".
fn innermost(drops: &Arc<AtomicUsize>) -> Flow<Deep> {
    let guard = Dropped(Arc::clone(drops));
    let mut flow = Flow::new();
    let leaf = flow.add(
        "leaf",
        node_fn(move |deep: &mut Deep, _: &Params| {
            let _ = &guard;
            deep.leaf_runs += 1;
            match deep.leaf {
                Leaf::Done => Ok(Action::new("done")),
                Leaf::Fail => Err(failure("deep down")),
                Leaf::Loop => Ok(Action::new("again")),
            }
        }),
    );
    flow.edge(leaf, "again", leaf);
    flow.end(leaf, "done");
    flow
}

/// `flow` wrapped until there are `depth` flows: the outermost holds `f1`, which holds `f2`,
/// …, which holds `f{depth - 1}`, which is `flow`.
fn wrap(mut flow: Flow<Deep>, depth: usize) -> Flow<Deep> {
    for level in (1..depth).rev() {
        let mut outer = Flow::new();
        outer.add(format!("f{level}"), flow);
        flow = outer;
    }
    flow
}

/// The path of `name` in the innermost of `depth` flows: `f1/f2/…/f{depth - 1}/name`.
fn deep_path(depth: usize, name: &str) -> String {
    let mut path: Vec<String> = (1..depth).map(|level| format!("f{level}")).collect();
    path.push(name.to_string());
    path.join("/")
}

fn run_deep(
    flow: &Flow<Deep>,
    leaf: Leaf,
    options: RunOptions<'_, Deep>,
) -> (Result<Action, FlowError>, u64) {
    let mut deep = Deep { leaf, leaf_runs: 0 };
    let result = block_on(flow.run_with(&mut deep, options));
    (result, deep.leaf_runs)
}

/// Everything a flow nested `depth` levels deep is asked to do: validate, draw, run, report to
/// an observer, fail, stop at a step limit, and drop.
fn exercise_deep(depth: usize) {
    let drops = Arc::new(AtomicUsize::new(0));
    let flow = wrap(innermost(&drops), depth);
    let leaf_path = deep_path(depth, "leaf");
    assert_eq!(leaf_path.split('/').count(), depth);

    flow.validate().unwrap();
    assert_eq!(format!("{flow:?}"), r#"Flow { nodes: ["f1"], start: Some("f1") }"#);

    // The drawing: a subgraph per nested flow, balanced, the leaf at the bottom.
    let mermaid = flow.to_mermaid();
    let lines: Vec<&str> = mermaid.lines().collect();
    assert_eq!(lines.len(), 3 * depth + 2);
    let mut open = 0usize;
    for line in &lines[1..] {
        match line.trim_start() {
            l if l.starts_with("subgraph ") => open += 1,
            "end" => open = open.checked_sub(1).expect("an `end` closes a subgraph"),
            _ => {}
        }
    }
    assert_eq!(open, 0);
    assert_eq!(lines.iter().filter(|l| l.trim_start().starts_with("subgraph ")).count(), depth - 1);
    let leaf_id = format!("n_{}0", "0_".repeat(depth - 1));
    let pad = "    ".repeat(depth);
    assert!(lines.contains(&format!("{pad}{leaf_id}[\"leaf\"]").as_str()));
    assert!(lines.contains(&format!("{pad}{leaf_id} -->|\"again\"| {leaf_id}").as_str()));

    // A run goes all the way down and back up with the leaf's action.
    let (result, leaf_runs) = run_deep(&flow, Leaf::Done, RunOptions::new());
    assert_eq!((result.unwrap().as_str(), leaf_runs), ("done", 1));

    // An observer sees every level start and end; the leaf ends first, named by its path.
    let (starts, ends) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let first_end = Mutex::new(None);
    let observer = |event: &Event<'_>| match event {
        Event::NodeStart { .. } => {
            starts.fetch_add(1, Ordering::Relaxed);
        }
        Event::NodeEnd { node, .. } => {
            ends.fetch_add(1, Ordering::Relaxed);
            first_end.lock().unwrap().get_or_insert_with(|| node.to_string());
        }
        _ => {}
    };
    let (result, _) = run_deep(&flow, Leaf::Done, RunOptions::new().observer(&observer));
    assert_eq!(result.unwrap(), "done");
    assert_eq!((starts.into_inner(), ends.into_inner()), (depth, depth));
    assert_eq!(first_end.into_inner().unwrap().as_deref(), Some(leaf_path.as_str()));

    // The leaf fails: the error names it by its path of `depth` segments and keeps the source.
    let (result, _) = run_deep(&flow, Leaf::Fail, RunOptions::new());
    let err = result.unwrap_err();
    let FlowError::NodeFailed { node, phase: Phase::Post, attempts: 1, .. } = &err else {
        panic!("expected NodeFailed in post, got {err:?}");
    };
    assert_eq!(node, &leaf_path);
    assert_eq!(err.to_string(), format!("node `{leaf_path}` failed in post"));
    let source = err.source().unwrap().downcast_ref::<Failure>().unwrap();
    assert_eq!(source, &Failure("deep down".into()));

    // A loop at the bottom under a step limit: every level counts once, then 20 leaf runs;
    // the last eight listed are the leaf's, by their full path.
    let limit = depth - 1 + 20;
    let (result, leaf_runs) = run_deep(&flow, Leaf::Loop, RunOptions::new().max_steps(limit));
    let err = result.unwrap_err();
    assert_eq!(step_limit(&err), (limit, &vec![leaf_path.clone(); 8][..]));
    assert_eq!(leaf_runs, 20);
    assert!(err.to_string().contains(&format!("`{leaf_path}` -> `{leaf_path}`")));
    // A limit reached as the leaf would start: the levels still running are not listed.
    let (result, leaf_runs) = run_deep(&flow, Leaf::Loop, RunOptions::new().max_steps(depth - 1));
    assert_eq!(step_limit(&result.unwrap_err()), (depth - 1, &[][..]));
    assert_eq!(leaf_runs, 0);

    // Dropping the deep flow drops the leaf at its bottom, once.
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    drop(flow);
    assert_eq!(drops.load(Ordering::SeqCst), 1);

    // Mistakes at the bottom are found by the check, named by their path, before any node runs.
    let mut orphaned = innermost(&drops);
    add_stray(&mut orphaned, "orphan");
    let flow = wrap(orphaned, depth);
    let bottom = deep_path(depth - 1, &format!("f{}", depth - 1));
    let err = flow.validate().unwrap_err();
    assert_unreachable(&err, &bottom, &["orphan"], "leaf");
    let (result, leaf_runs) = run_deep(&flow, Leaf::Done, RunOptions::new());
    assert_unreachable(&result.unwrap_err(), &bottom, &["orphan"], "leaf");
    assert_eq!(leaf_runs, 0);
    let err = wrap(Flow::new(), depth).validate().unwrap_err();
    assert_eq!(empty_flow(&err), bottom);
}

/// Adds a node that nothing reaches.
fn add_stray(flow: &mut Flow<Deep>, name: &str) {
    flow.add(name, node_fn(|_: &mut Deep, _: &Params| Ok(Action::DEFAULT)));
}

#[test]
fn flows_nested_max_depth_deep_validate_draw_run_fail_stop_and_drop_on_a_test_thread() {
    exercise_deep(MAX_DEPTH);
}

/// One more level around a flow: a flow, a batch flow or a batch async flow (one sub-run)
/// holding it, or a parallel node whose one branch it is (with the flow, two levels).
#[derive(Clone, Copy, Debug)]
enum Level {
    Flow,
    Batch,
    BatchAsync,
    Parallel,
}

impl Level {
    /// How many levels of nesting it adds.
    fn levels(self) -> usize {
        match self {
            Level::Parallel => 2,
            _ => 1,
        }
    }

    fn around(self, inner: Flow<Deep>) -> Flow<Deep> {
        let one = |_: &Deep, _: &Params| Ok(vec![Params::new()]);
        let mut outer = Flow::new();
        match self {
            Level::Flow => outer.add("f", inner),
            Level::Batch => outer.add("f", BatchFlow::new(inner, one)),
            Level::BatchAsync => outer.add("f", BatchAsyncFlow::new(inner, one)),
            Level::Parallel => outer.add("f", Parallel::new().branch("b", inner)),
        };
        outer
    }
}

/// Flows `depth` levels deep (the outermost counts as one), built from `kind` with plain flows
/// to make up the count, around the looping leaf.
fn tower(kind: Level, depth: usize, drops: &Arc<AtomicUsize>) -> Flow<Deep> {
    let (mut flow, mut levels) = (innermost(drops), 1);
    while levels < depth {
        let level = if levels + kind.levels() <= depth { kind } else { Level::Flow };
        flow = level.around(flow);
        levels += level.levels();
    }
    flow
}

/// Every kind of nesting, with an observer (which costs stack at every level), runs
/// `MAX_DEPTH` deep on the 2 MiB stack of a test thread, in a debug build too: the deepest a
/// run may nest is chosen so. One level more is refused before anything runs.
#[test]
fn every_kind_of_nesting_runs_max_depth_deep_and_one_level_more_is_refused() {
    for kind in [Level::Flow, Level::Batch, Level::BatchAsync, Level::Parallel] {
        let drops = Arc::new(AtomicUsize::new(0));
        let flow = tower(kind, MAX_DEPTH, &drops);
        flow.validate().unwrap();
        assert!(!flow.to_mermaid().contains("not drawn"), "{kind:?}");
        let ends = AtomicUsize::new(0);
        let observer = |event: &Event<'_>| {
            if let Event::NodeEnd { .. } = event {
                ends.fetch_add(1, Ordering::Relaxed);
            }
        };
        let (result, leaf_runs) =
            run_deep(&flow, Leaf::Done, RunOptions::new().observer(&observer));
        // Batch flows and parallel nodes without a post end with "default"; flows pass the
        // leaf's "done" up.
        let action = if matches!(kind, Level::Flow) { "done" } else { "default" };
        assert_eq!((result.unwrap().as_str(), leaf_runs), (action, 1), "{kind:?}");
        // Every level ended once: each container (a parallel node and its branch are two),
        // and the leaf.
        assert_eq!(ends.into_inner(), MAX_DEPTH, "{kind:?}");

        let flow = Level::Flow.around(flow);
        let err = flow.validate().unwrap_err();
        let (node, message) = invalid_config(&err);
        assert!(node.starts_with("f/f"), "{kind:?}: {node}");
        assert!(message.contains("nested 65 levels deep") && message.contains("MAX_DEPTH"));
        let (result, leaf_runs) = run_deep(&flow, Leaf::Done, RunOptions::new());
        assert_eq!(invalid_config(&result.unwrap_err()).0, node, "{kind:?}");
        assert_eq!(leaf_runs, 0);
        assert_eq!(flow.to_mermaid().matches("not drawn").count(), 1, "{kind:?}");
        drop(flow);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }
}

/// A tower far past the limit is refused by the check, which stops at the level one too deep,
/// so neither the check nor the drawing overflows the stack; the node named is that level.
#[test]
fn flows_nested_1000_deep_are_refused_with_the_path_of_the_level_too_deep() {
    let drops = Arc::new(AtomicUsize::new(0));
    let flow = wrap(innermost(&drops), 1_000);
    let too_deep = deep_path(MAX_DEPTH, &format!("f{MAX_DEPTH}"));
    let err = flow.validate().unwrap_err();
    assert_eq!(invalid_config(&err).0, too_deep);
    assert_eq!(
        err.to_string(),
        format!(
            "node `{too_deep}`: it is nested 65 levels deep, and flows nest at \
             most 64 (`miniflow::MAX_DEPTH`), so that a run cannot overflow its thread's stack; \
             flatten the flow, for example by chaining flows instead of nesting each in the one \
             before"
        )
    );
    let observed = Mutex::new(Vec::new());
    let observer = |event: &Event<'_>| observed.lock().unwrap().push(event.to_string());
    let (result, leaf_runs) = run_deep(&flow, Leaf::Done, RunOptions::new().observer(&observer));
    assert_eq!(invalid_config(&result.unwrap_err()).0, too_deep);
    assert_eq!(leaf_runs, 0);
    let observed = observed.into_inner().unwrap();
    assert_eq!(observed.len(), 2, "no node started: {observed:?}");
    // The drawing stops at the limit too.
    let mermaid = flow.to_mermaid();
    assert_eq!(mermaid.matches("subgraph ").count(), MAX_DEPTH - 1);
    assert_eq!(mermaid.matches("not drawn").count(), 1);
    drop(flow);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------------------
// 4. A million items
// ---------------------------------------------------------------------------------------------

/// The outputs of a batch and how often its post ran.
#[derive(Default)]
struct Doubled {
    outputs: Vec<u64>,
    items_back: usize,
    posts: usize,
}

/// `2i + 1` for each item `i`; every seventh item gives way once, so concurrent items finish
/// out of order.
struct Double {
    items: u64,
    max_in_flight: usize,
}

impl BatchNode<Doubled> for Double {
    type Item = u64;
    type Output = u64;

    fn prep(&self, _: &Doubled, _: &Params) -> Result<Vec<u64>> {
        Ok((0..self.items).collect())
    }

    async fn exec(&self, item: &u64, _: Ctx<'_>) -> Result<u64> {
        if item.is_multiple_of(7) {
            yield_times(1).await;
        }
        Ok(2 * item + 1)
    }

    fn post(
        &self,
        store: &mut Doubled,
        _: &Params,
        items: Vec<u64>,
        outputs: Vec<u64>,
    ) -> Result<Action> {
        store.outputs = outputs;
        store.items_back = items.len();
        store.posts += 1;
        Ok(Action::DEFAULT)
    }

    fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }
}

#[test]
fn a_batch_node_of_a_million_items_one_at_a_time_or_64_and_an_unbounded_one_of_100_000() {
    // With no limit every item's future is alive at once: about 290 bytes each in a debug
    // build, so that case runs 100,000 items (29 MB rather than 290 at the peak).
    for (max_in_flight, items) in [(1, MILLION), (64, MILLION), (usize::MAX, MILLION / 10)] {
        let mut flow = Flow::new();
        flow.add("double", Double { items, max_in_flight });
        let mut store = Doubled::default();
        assert_eq!(block_on(flow.run(&mut store)).unwrap(), Action::DEFAULT);
        assert_eq!((store.posts, store.items_back), (1, items as usize), "{max_in_flight}");
        assert_eq!(store.outputs.len(), items as usize);
        let misplaced = store.outputs.iter().zip(0..).position(|(&out, i)| out != 2 * i + 1);
        assert_eq!(misplaced, None, "max_in_flight {max_in_flight}");
    }
}

/// The numbers the sub-runs recorded and the batch flow's posts.
#[derive(Default)]
struct Sums {
    seen: Vec<u64>,
    posts: usize,
}

/// A sub-run: reads its number `i`, gives way once if it is a multiple of 7, records it, and
/// ends with "even" or "odd".
struct Record;

impl Node<Sums> for Record {
    type Prep = u64;
    type Output = ();

    fn prep(&self, _: &Sums, params: &Params) -> Result<u64> {
        Ok(params.int("i")? as u64)
    }

    async fn exec(&self, i: &u64, _: Ctx<'_>) -> Result<()> {
        if i.is_multiple_of(7) {
            yield_times(1).await;
        }
        Ok(())
    }

    fn post(&self, sums: &mut Sums, i: u64, _: ()) -> Result<Action> {
        sums.seen.push(i);
        Ok(Action::new(if i.is_multiple_of(2) { "even" } else { "odd" }))
    }
}

/// A batch flow (`limit` 0) or a batch async flow (with that limit) of `sets` sub-runs.
fn record_all(sets: u64, limit: usize) -> Flow<Sums> {
    let mut inner = Flow::new();
    inner.add("record", Record);
    let prep = move |_: &Sums, _: &Params| -> Result<Vec<Params>> {
        Ok((0..sets).map(|i| Params::new().with("i", i as i64)).collect())
    };
    let post =
        move |sums: &mut Sums, sets_back: Vec<Params>, actions: Vec<Action>| -> Result<Action> {
            sums.posts += 1;
            assert_eq!((sets_back.len(), actions.len()), (sets as usize, sets as usize));
            let parity = |i: usize| if i.is_multiple_of(2) { "even" } else { "odd" };
            assert_eq!(actions.iter().enumerate().position(|(i, a)| *a != parity(i)), None);
            Ok(Action::new("all"))
        };
    let mut flow = Flow::new();
    match limit {
        0 => flow.add("each", BatchFlow::new(inner, prep).post(post)),
        limit => flow.add("each", BatchAsyncFlow::new(inner, prep).max_in_flight(limit).post(post)),
    };
    flow
}

#[test]
fn a_batch_flow_of_a_million_params_sets_runs_them_in_order() {
    let mut sums = Sums::default();
    assert_eq!(block_on(record_all(MILLION, 0).run(&mut sums)).unwrap(), "all");
    assert_eq!(sums.posts, 1);
    assert_eq!(sums.seen.len(), MILLION as usize);
    assert_eq!(sums.seen.iter().zip(0..).position(|(&seen, i)| seen != i), None);
}

#[test]
fn a_batch_async_flow_of_a_million_params_sets_and_an_unbounded_one_of_100_000() {
    // A million sub-runs, 64 at a time. Without a limit, every sub-run's future is alive at
    // once: measured in debug, 1,000,000 took 2.6 s and about 700 MB at the peak (0.7 KB per
    // sub-run), so the unbounded case runs 100,000 (0.3 s, 70 MB).
    for (sets, limit) in [(MILLION, 64), (100_000, usize::MAX)] {
        let mut sums = Sums::default();
        assert_eq!(block_on(record_all(sets, limit).run(&mut sums)).unwrap(), "all");
        assert_eq!(sums.posts, 1);
        // The sub-runs finish out of order (every seventh gives way), each exactly once.
        assert_ne!(sums.seen.iter().zip(0..).position(|(&seen, i)| seen != i), None);
        sums.seen.sort_unstable();
        assert_eq!(sums.seen.iter().zip(0..).position(|(&seen, i)| seen != i), None);
        assert_eq!(sums.seen.len(), sets as usize);
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Unicode, empty and huge actions
// ---------------------------------------------------------------------------------------------

/// A 1,000,000-byte action.
fn huge() -> String {
    "🦀".repeat(250_000)
}

/// `router`, with one edge per odd action, each to a node named after it (in unicode).
fn odd_routes() -> (Flow<Trail>, Vec<(Action, &'static str)>) {
    let routes: Vec<(Action, &'static str)> = vec![
        (Action::new(""), "空"),
        (Action::new("é"), "é"),
        (Action::new("e\u{301}"), "e\u{301}"),
        (Action::new("🚀"), "🚀"),
        (Action::new("👩‍💻"), "👩‍💻"),
        (Action::DEFAULT, "lower"),
        (Action::new("Default"), "Upper"),
        (Action::new("\0"), "nul"),
        (Action::from(huge()), "巨大"),
    ];
    let mut flow = Flow::new();
    let from = flow.add("router", router("router"));
    for (action, name) in &routes {
        let to = flow.add(*name, step(name, "landed"));
        match action.is_default() {
            true => flow.then(from, to),
            false => flow.edge(from, action.clone(), to),
        };
    }
    (flow, routes)
}

#[test]
fn empty_unicode_and_huge_actions_route_byte_for_byte() {
    let (flow, routes) = odd_routes();
    for (action, name) in &routes {
        let mut trail = Trail { next: action.clone(), ..Trail::default() };
        assert_eq!(block_on(flow.run(&mut trail)).unwrap(), "landed");
        assert_eq!(trail.visits, ["router", name], "{name}");
    }
    // An action made from a `String` at run time is the same action as the literal.
    let mut trail = Trail { next: Action::from(String::from("e\u{301}")), ..Trail::default() };
    assert_eq!(block_on(flow.run(&mut trail)).unwrap(), "landed");
    assert_eq!(trail.visits, ["router", "e\u{301}"]);
}

#[test]
fn unknown_actions_near_the_odd_ones_fail_and_list_every_edge_exactly() {
    let (flow, routes) = odd_routes();
    let expected: Vec<Action> = routes.iter().map(|(action, _)| action.clone()).collect();
    let mut short = huge();
    short.pop();
    let near = ["DEFAULT", "default ", "e", "\u{301}", "É", "🚀🚀", "0", " "].map(String::from);
    for miss in near.into_iter().chain([short, huge() + "!"]) {
        let mut trail = Trail { next: Action::from(miss.clone()), ..Trail::default() };
        let err = block_on(flow.run(&mut trail)).unwrap_err();
        let FlowError::UnknownAction { node, action, expected: edges, .. } = &err else {
            panic!("expected UnknownAction, got {err:?}");
        };
        assert_eq!((node.as_str(), action.as_str(), edges), ("router", miss.as_str(), &expected));
        assert_eq!(trail.visits, ["router"]);
        // The whole message (a megabyte, with the huge action) for a few of them.
        if ["DEFAULT", "e", "\u{301}"].contains(&miss.as_str()) {
            // Actions are quoted as Rust strings: the look-alikes are told apart on screen.
            assert_eq!(
                err.to_string(),
                format!(
                    "node `router` returned action {miss:?}, but its edges are for \"\", \"é\", \
                     \"e\\u{{301}}\", \"🚀\", \"👩\\u{{200d}}💻\", \"default\", \"Default\", \
                     \"\\0\", \"{}\"; add an edge for it, or `Flow::end` if it should end the \
                     flow",
                    huge()
                )
            );
        }
    }
}

#[test]
fn mermaid_keeps_letters_and_digits_of_unicode_names_and_actions_and_codes_the_rest() {
    let mut flow = Flow::new();
    let a = add(&mut flow, "日本語");
    let b = add(&mut flow, "say \"hi\" #1");
    let c = add(&mut flow, "#quot;");
    let d = add(&mut flow, "e\u{301}");
    flow.edge(a, "", b);
    flow.edge(a, "é", c);
    flow.edge(a, "#", d);
    flow.then(a, b);
    flow.end(a, "\"q\"");
    flow.edge(b, "Default", c);
    flow.then(c, d);
    flow.edge(d, "🚀|]", a);
    let mermaid = flow.to_mermaid();
    assert_eq!(
        mermaid,
        "flowchart TD
    n_start((\"start\")) --> n_0
    n_0[\"日本語\"]
    n_1[\"say #34;hi#34; #35;1\"]
    n_2[\"#35;quot#59;\"]
    n_3[\"e#769;\"]
    n_0 --> n_1
    n_0 -->|\"é\"| n_2
    n_0 -->|\"#35;\"| n_3
    n_0 --> n_1
    n_0 -->|\"#34;q#34;\"| n_end(((\"end\")))
    n_1 -->|\"Default\"| n_2
    n_2 --> n_3
    n_3 -->|\"#128640;#124;#93;\"| n_0
"
    );
    // Well formed: every statement on its own indented line, with its quotes paired.
    for line in mermaid.lines().skip(1) {
        assert!(line.starts_with("    ") && line.matches('"').count() % 2 == 0, "{line:?}");
    }

    // A 1 MB action is drawn whole, once.
    let mut flow = Flow::new();
    let a = add(&mut flow, "a");
    let b = add(&mut flow, "b");
    flow.edge(a, huge(), b);
    let coded = "#129408;".repeat(250_000);
    assert_eq!(flow.to_mermaid().matches(&format!("n_0 -->|\"{coded}\"| n_1\n")).count(), 1);
}

#[test]
fn mermaid_keeps_every_statement_on_one_line_whatever_the_names() {
    let mut flow = Flow::new();
    let a = add(&mut flow, "two\nlines");
    let b = add(&mut flow, "b");
    flow.edge(a, "line\nbreak", b);
    let mermaid = flow.to_mermaid();
    // Header, start, two nodes and one edge: five statements, five lines, the breaks written
    // as character codes.
    assert_eq!(mermaid.lines().count(), 5, "{mermaid}");
    assert!(mermaid.contains(r#"n_0["two#10;lines"]"#), "{mermaid}");
    assert!(mermaid.contains(r#"n_0 -->|"line#10;break"| n_1"#), "{mermaid}");
    let mut flow = Flow::new();
    add(&mut flow, "tab\there\r\u{7f}");
    assert!(flow.to_mermaid().contains(r#"n_0["tab#9;here#13;#127;"]"#));
}

#[test]
fn params_with_empty_unicode_and_huge_keys_and_values_are_kept_byte_for_byte() {
    let big = huge();
    let params = Params::new()
        .with("", "")
        .with("é", "precomposed")
        .with("e\u{301}", "combining")
        .with(String::from("🔑"), big.clone())
        .with("Key", 1)
        .with("key", true);
    assert_eq!(params.len(), 6);
    assert_eq!(params.str("").unwrap(), "");
    assert_eq!(params.str("é").unwrap(), "precomposed");
    assert_eq!(params.str("e\u{301}").unwrap(), "combining");
    assert_eq!(params.str("🔑").unwrap(), big);
    assert_eq!((params.int("Key").unwrap(), params.bool("key").unwrap()), (1, true));
    let keys: Vec<&str> = params.iter().map(|(key, _)| key).collect();
    assert_eq!(keys, ["", "é", "e\u{301}", "🔑", "Key", "key"]);

    // Setting the empty key again replaces its value where it stands; merging keeps the rest.
    let over = Params::new().with("", "filled").with("É", "new");
    let merged = params.merged(&over);
    assert_eq!(merged.str("").unwrap(), "filled");
    assert_eq!(
        merged.iter().next().map(|(k, v)| (k, v.clone())),
        Some(("", Value::from("filled")))
    );
    assert_eq!(merged.str("É").unwrap(), "new");
    assert_eq!(merged.len(), 7);

    // Missing look-alike keys are errors that name the key exactly.
    for missing in ["E\u{301}", "KEY", " ", "🗝"] {
        let err = params.str(missing).unwrap_err();
        assert!(
            matches!(&err, FlowError::Param { node, key, expected: "a string", found: None, .. }
            if node.is_empty() && key == missing)
        );
        assert_eq!(
            err.to_string(),
            format!(
                "param `{missing}` is missing; set it in the params the run or a batch flow passes down"
            )
        );
    }
}

#[test]
fn unicode_params_reach_nodes_and_a_missing_one_names_the_unicode_path() {
    let read = |trail: &mut Trail, params: &Params| -> Result<Action> {
        trail.visits.push(format!("{}={}", params.str("ключ")?, params.str("")?));
        Ok(Action::DEFAULT)
    };
    let mut inner = Flow::new();
    inner.add("内", node_fn(read));
    let sets = |_: &Trail, _: &Params| -> Result<Vec<Params>> {
        Ok(["α", "", "👩‍💻"].map(|value| Params::new().with("ключ", value)).to_vec())
    };
    let mut flow = Flow::new();
    flow.add("外", BatchFlow::new(inner, sets));

    let options = RunOptions::new().params(Params::new().with("", "∅"));
    let (result, visits) = run_with(&flow, options);
    assert_eq!(result.unwrap(), Action::DEFAULT);
    assert_eq!(visits, ["α=∅", "=∅", "👩‍💻=∅"]);

    // Without the run's empty-keyed param, the first sub-run's node fails, named by its path.
    let (result, visits) = run(&flow);
    let err = result.unwrap_err();
    assert!(
        matches!(&err, FlowError::Param { node, key, found: None, .. }
        if node == "外[0]/内" && key.is_empty()),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("node `外[0]/内`: param `` is missing"), "{err}");
    assert!(visits.is_empty());
}
