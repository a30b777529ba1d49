//! Routing inside one flow: how the action a node's `post` returns picks the next node, how a
//! run ends (a node without edges, an explicit end edge), and what building and running a flow
//! refuses: unknown actions, duplicate edges, ids of another flow, empty flows and bad names.
//! Also pins down that a built flow is reusable: run twice, or shared by `Arc`, it gives the
//! same results, because all per-run state lives in the store.

mod common;

use std::sync::Arc;

use common::{assert_duplicate, assert_foreign};
use miniflow::{Action, Flow, FlowError, Node, NodeId, Params, node_fn};

/// The store of every test here: the nodes in the order they ran, and a counter.
#[derive(Debug, Default, Clone, PartialEq)]
struct Trail {
    visits: Vec<&'static str>,
    count: u32,
}

impl Trail {
    fn with_count(count: u32) -> Self {
        Trail { visits: Vec::new(), count }
    }
}

/// A node that records `name` and returns `action`.
fn step(name: &'static str, action: &'static str) -> impl Node<Trail> {
    node_fn(move |trail: &mut Trail, _: &Params| {
        trail.visits.push(name);
        Ok(Action::new(action))
    })
}

/// A node that records `name` and returns whatever `choose` picks from the store.
fn decide(name: &'static str, choose: fn(&Trail) -> Action) -> impl Node<Trail> {
    node_fn(move |trail: &mut Trail, _: &Params| {
        trail.visits.push(name);
        Ok(choose(trail))
    })
}

/// A node that records `name`, adds one to the counter and returns "default".
fn increment(name: &'static str) -> impl Node<Trail> {
    node_fn(move |trail: &mut Trail, _: &Params| {
        trail.visits.push(name);
        trail.count += 1;
        Ok(Action::DEFAULT)
    })
}

/// Adds a [`step`] named `name` that returns `action`.
fn add_step(flow: &mut Flow<Trail>, name: &'static str, action: &'static str) -> NodeId {
    flow.add(name, step(name, action))
}

fn run(flow: &Flow<Trail>, trail: &mut Trail) -> Result<Action, FlowError> {
    smol::block_on(flow.run(trail))
}

/// `check` sends even counters to `even_branch` and odd ones to `odd_branch`; each branch ends
/// the run with an action of its own.
fn branching_flow() -> Flow<Trail> {
    let mut flow = Flow::new();
    let check = flow.add(
        "check",
        decide("check", |t| if t.count % 2 == 0 { "even".into() } else { "odd".into() }),
    );
    let even = add_step(&mut flow, "even_branch", "went_even");
    let odd = add_step(&mut flow, "odd_branch", "went_odd");
    flow.edge(check, "even", even);
    flow.edge(check, "odd", odd);
    flow
}

/// `inc` adds one, `check` loops back to `inc` while the counter is below 5 and ends the run
/// with "done" (an end edge) once it is not.
fn counting_loop() -> Flow<Trail> {
    let mut flow = Flow::new();
    let inc = flow.add("inc", increment("inc"));
    let check = flow.add(
        "check",
        decide("check", |t| if t.count < 5 { "again".into() } else { "done".into() }),
    );
    flow.then(inc, check);
    flow.edge(check, "again", inc);
    flow.end(check, "done");
    flow
}

#[test]
fn linear_chain_visits_each_node_once_in_edge_order() {
    let mut flow = Flow::new();
    // Added out of chain order: the edges decide the order, not the adds.
    let a = add_step(&mut flow, "a", "default");
    let c = add_step(&mut flow, "c", "finished");
    let b = add_step(&mut flow, "b", "default");
    flow.then(a, b);
    flow.then(b, c);

    let mut trail = Trail::default();
    let last = run(&flow, &mut trail).unwrap();

    assert_eq!(last, "finished");
    assert_eq!(trail.visits, ["a", "b", "c"]);
}

#[test]
fn branching_takes_the_even_edge() {
    let flow = branching_flow();
    let mut trail = Trail::with_count(4);
    assert_eq!(run(&flow, &mut trail).unwrap(), "went_even");
    assert_eq!(trail.visits, ["check", "even_branch"]);
}

#[test]
fn branching_takes_the_odd_edge() {
    let flow = branching_flow();
    let mut trail = Trail::with_count(7);
    assert_eq!(run(&flow, &mut trail).unwrap(), "went_odd");
    assert_eq!(trail.visits, ["check", "odd_branch"]);
}

#[test]
fn loop_runs_until_its_condition_ends_it() {
    let flow = counting_loop();
    let mut trail = Trail::default();

    let last = run(&flow, &mut trail).unwrap();

    assert_eq!(last, "done");
    assert_eq!(trail.count, 5);
    assert_eq!(trail.visits, ["inc", "check"].repeat(5));
}

#[test]
fn loop_body_runs_once_when_the_condition_already_holds() {
    let flow = counting_loop();
    let mut trail = Trail::with_count(9);

    assert_eq!(run(&flow, &mut trail).unwrap(), "done");
    assert_eq!(trail.count, 10);
    assert_eq!(trail.visits, ["inc", "check"]);
}

#[test]
fn self_loop_edge_revisits_the_same_node() {
    let mut flow = Flow::new();
    let tick = flow.add(
        "tick",
        node_fn(|t: &mut Trail, _: &Params| {
            t.visits.push("tick");
            t.count += 1;
            Ok(if t.count < 3 { "again" } else { "enough" }.into())
        }),
    );
    flow.edge(tick, "again", tick);
    flow.end(tick, "enough");

    let mut trail = Trail::default();
    assert_eq!(run(&flow, &mut trail).unwrap(), "enough");
    assert_eq!(trail.count, 3);
    assert_eq!(trail.visits, ["tick", "tick", "tick"]);
}

#[test]
fn unknown_action_fails_naming_node_action_and_expected_edges() {
    let mut flow = Flow::new();
    let a = add_step(&mut flow, "a", "default");
    let b = add_step(&mut flow, "b", "typo");
    let left = add_step(&mut flow, "left", "default");
    let right = add_step(&mut flow, "right", "default");
    flow.then(a, b);
    flow.edge(b, "left", left);
    flow.edge(b, "right", right);
    flow.end(b, "stop");

    let mut trail = Trail::default();
    let err = run(&flow, &mut trail).unwrap_err();

    let FlowError::UnknownAction { node, action, expected, .. } = &err else {
        panic!("expected UnknownAction, got {err:?}");
    };
    assert_eq!(node, "b");
    assert_eq!(action, "typo");
    assert_eq!(expected, &[Action::new("left"), Action::new("right"), Action::new("stop")]);
    assert_eq!(err.node(), "b");
    assert!(std::error::Error::source(&err).is_none());
    assert_eq!(
        err.to_string(),
        "node `b` returned action \"typo\", but its edges are for \"left\", \"right\", \"stop\"; \
         add an edge for it, or `Flow::end` if it should end the flow"
    );
    // Both posts ran before the error was found, and what they wrote stays.
    assert_eq!(trail.visits, ["a", "b"]);
}

#[test]
fn end_edge_counts_as_an_edge_for_unknown_actions() {
    let mut flow = Flow::new();
    let only = add_step(&mut flow, "only", "default");
    flow.end(only, "stop");

    let mut trail = Trail::default();
    let err = run(&flow, &mut trail).unwrap_err();

    let FlowError::UnknownAction { node, action, expected, .. } = &err else {
        panic!("expected UnknownAction, got {err:?}");
    };
    assert_eq!((node.as_str(), action.as_str()), ("only", "default"));
    assert_eq!(expected, &[Action::new("stop")]);
    assert_eq!(trail.visits, ["only"]);
}

#[test]
fn node_without_edges_ends_the_run_with_its_action() {
    let mut flow = Flow::new();
    let a = add_step(&mut flow, "a", "default");
    let b = add_step(&mut flow, "b", "halt");
    // Never reached: `a` returns "default", and `b` has no edges at all.
    let c = add_step(&mut flow, "c", "default");
    flow.then(a, b);
    flow.edge(a, "other", c);

    let mut trail = Trail::default();
    let last = run(&flow, &mut trail).unwrap();

    assert_eq!(last, "halt");
    assert_eq!(trail.visits, ["a", "b"]);
}

#[test]
fn single_node_flow_returns_that_nodes_action() {
    let mut flow = Flow::new();
    add_step(&mut flow, "alone", "default");

    let mut trail = Trail::default();
    assert_eq!(run(&flow, &mut trail).unwrap(), Action::DEFAULT);
    assert_eq!(trail.visits, ["alone"]);
}

#[test]
fn duplicate_edge_is_refused_and_the_first_edge_is_kept() {
    let mut flow = Flow::new();
    let a = add_step(&mut flow, "a", "go");
    let first = add_step(&mut flow, "first", "end_first");
    let second = add_step(&mut flow, "second", "end_second");
    flow.edge(a, "go", first);

    assert_duplicate(|| _ = flow.edge(a, "go", second), "a", "go");
    // An action made from a `String` is the same action as one made from a literal.
    assert_duplicate(|| _ = flow.edge(a, String::from("go"), second), "a", "go");
    // The same action from another node, and another action from `a`, are not duplicates.
    flow.edge(second, "go", first);
    flow.edge(a, "other", second);

    let mut trail = Trail::default();
    assert_eq!(run(&flow, &mut trail).unwrap(), "end_first");
    assert_eq!(trail.visits, ["a", "first"]);
}

#[test]
fn duplicate_then_is_refused() {
    let mut flow = Flow::new();
    let a = add_step(&mut flow, "a", "default");
    let b = add_step(&mut flow, "b", "default");
    let c = add_step(&mut flow, "c", "default");
    flow.then(a, b);

    assert_duplicate(|| _ = flow.then(a, c), "a", "default");
    // Same target again is still a second edge for the action.
    assert_duplicate(|| _ = flow.then(a, b), "a", "default");
}

#[test]
fn then_and_an_explicit_default_edge_clash() {
    let mut flow = Flow::new();
    let a = add_step(&mut flow, "a", "default");
    let b = add_step(&mut flow, "b", "default");
    flow.then(a, b);
    assert_duplicate(|| _ = flow.edge(a, "default", b), "a", "default");

    let mut flow = Flow::new();
    let a = add_step(&mut flow, "a", "default");
    let b = add_step(&mut flow, "b", "default");
    flow.edge(a, Action::DEFAULT, b);
    assert_duplicate(|| _ = flow.then(a, b), "a", "default");
}

#[test]
fn duplicate_end_is_refused() {
    let mut flow = Flow::new();
    let a = add_step(&mut flow, "a", "stop");
    flow.end(a, "stop");
    assert_duplicate(|| _ = flow.end(a, "stop"), "a", "stop");
}

#[test]
fn edge_and_end_for_the_same_action_clash() {
    let mut flow = Flow::new();
    let a = add_step(&mut flow, "a", "stop");
    let b = add_step(&mut flow, "b", "stop");
    flow.edge(a, "stop", b);
    assert_duplicate(|| _ = flow.end(a, "stop"), "a", "stop");

    flow.end(b, "stop");
    assert_duplicate(|| _ = flow.edge(b, "stop", a), "b", "stop");

    // The edges made first are the ones that count: a -> b, then b ends.
    let mut trail = Trail::default();
    assert_eq!(run(&flow, &mut trail).unwrap(), "stop");
    assert_eq!(trail.visits, ["a", "b"]);
}

#[test]
fn explicit_end_edge_ends_the_run_although_the_node_has_other_edges() {
    let mut flow = Flow::new();
    let check = add_step(&mut flow, "check", "stop");
    let more = add_step(&mut flow, "more", "default");
    flow.edge(check, "more", more);
    flow.end(check, "stop");
    flow.then(more, check);

    let mut trail = Trail::default();
    assert_eq!(run(&flow, &mut trail).unwrap(), "stop");
    assert_eq!(trail.visits, ["check"]);
}

#[test]
fn set_start_makes_runs_begin_at_that_node() {
    let mut flow = Flow::new();
    let a = add_step(&mut flow, "a", "default");
    let b = add_step(&mut flow, "b", "default");
    let c = add_step(&mut flow, "c", "last");
    flow.then(a, b);
    flow.then(b, c);
    // Keeps `a` reachable from every start (an unreachable node is an error).
    flow.edge(c, "again", a);
    flow.end(c, "last");
    flow.set_start(b);

    let mut trail = Trail::default();
    assert_eq!(run(&flow, &mut trail).unwrap(), "last");
    assert_eq!(trail.visits, ["b", "c"]);

    flow.set_start(c);
    let mut trail = Trail::default();
    assert_eq!(run(&flow, &mut trail).unwrap(), "last");
    assert_eq!(trail.visits, ["c"]);
}

#[test]
fn ids_of_another_flow_are_refused_everywhere() {
    let mut other = Flow::<Trail>::new();
    // Index 0 exists in `flow` too: the id must be told apart by its flow, not its index.
    let same_index = add_step(&mut other, "x", "default");
    add_step(&mut other, "y", "default");
    // Index 2 does not exist in `flow` at all: it must be refused, not looked up.
    let out_of_range = add_step(&mut other, "z", "default");

    let mut flow = Flow::new();
    let a = add_step(&mut flow, "a", "default");
    let b = add_step(&mut flow, "b", "end_b");

    for foreign in [same_index, out_of_range] {
        assert_foreign(|| _ = flow.edge(foreign, "go", a), foreign);
        assert_foreign(|| _ = flow.edge(a, "go", foreign), foreign);
        assert_foreign(|| _ = flow.then(foreign, a), foreign);
        assert_foreign(|| _ = flow.then(a, foreign), foreign);
        assert_foreign(|| _ = flow.end(foreign, "stop"), foreign);
        assert_foreign(|| _ = flow.set_start(foreign), foreign);
        assert_foreign(|| _ = flow.name(foreign), foreign);
    }
    assert_eq!(other.name(same_index), "x");
    assert_eq!(other.name(out_of_range), "z");

    // None of the refused calls left an edge or moved the start behind.
    flow.then(a, b);
    let mut trail = Trail::default();
    assert_eq!(run(&flow, &mut trail).unwrap(), "end_b");
    assert_eq!(trail.visits, ["a", "b"]);
}

#[test]
fn running_an_empty_flow_is_an_error() {
    let flow = Flow::<Trail>::new();
    let mut trail = Trail::with_count(3);

    let err = run(&flow, &mut trail).unwrap_err();

    let FlowError::InvalidConfig { node, message, .. } = &err else {
        panic!("expected InvalidConfig, got {err:?}");
    };
    assert_eq!(node, "");
    assert_eq!(err.node(), "");
    assert_eq!(message, "the flow has no nodes; add one with `Flow::add` before running it");
    assert_eq!(
        err.to_string(),
        "the flow has no nodes; add one with `Flow::add` before running it"
    );
    assert_eq!(trail, Trail::with_count(3));
}

#[test]
#[should_panic(
    expected = "this flow already has a node named \"a\": give each node a name of its own"
)]
fn adding_a_duplicate_name_panics() {
    let mut flow = Flow::new();
    add_step(&mut flow, "a", "default");
    add_step(&mut flow, "a", "default");
}

#[test]
#[should_panic(
    expected = "node name \"\" is not valid: give each node a non-empty name without `/`, `[` or `]`"
)]
fn adding_an_empty_name_panics() {
    let mut flow = Flow::new();
    add_step(&mut flow, "", "default");
}

#[test]
#[should_panic(
    expected = "node name \"a/b\" is not valid: give each node a non-empty name without `/`, `[` or `]`"
)]
fn adding_a_name_with_a_slash_panics() {
    let mut flow = Flow::new();
    add_step(&mut flow, "a/b", "default");
}

#[test]
#[should_panic(
    expected = "node name \"grades[0]\" is not valid: give each node a non-empty name without `/`, `[` or `]`"
)]
fn adding_a_name_with_brackets_panics() {
    // "grades[0]" is how paths name sub-run 0 of a batch flow called "grades".
    let mut flow = Flow::new();
    add_step(&mut flow, "grades[0]", "default");
}

/// `route` returns the action for the counter: 0 → "", 1 → "✓ fertig", 2 → "default",
/// anything else → "Default" (which has no edge: actions are case-sensitive).
fn odd_actions_flow() -> Flow<Trail> {
    let mut flow = Flow::new();
    let route = flow.add(
        "route",
        decide("route", |t| match t.count {
            0 => "".into(),
            1 => "✓ fertig".into(),
            2 => Action::DEFAULT,
            _ => "Default".into(),
        }),
    );
    let blank = add_step(&mut flow, "blank", "from_blank");
    let check_mark = add_step(&mut flow, "häkchen", "from_check_mark");
    let plain = add_step(&mut flow, "plain", "from_plain");
    flow.edge(route, "", blank);
    flow.edge(route, String::from("✓ fertig"), check_mark);
    flow.then(route, plain);
    flow
}

#[test]
fn empty_and_unicode_actions_route_like_any_other() {
    let flow = odd_actions_flow();
    let cases =
        [(0, "from_blank", "blank"), (1, "from_check_mark", "häkchen"), (2, "from_plain", "plain")];
    for (count, last, branch) in cases {
        let mut trail = Trail::with_count(count);
        assert_eq!(run(&flow, &mut trail).unwrap(), last, "count {count}");
        assert_eq!(trail.visits, ["route", branch], "count {count}");
    }
}

#[test]
fn actions_are_case_sensitive_and_messages_quote_empty_and_unicode_actions() {
    let flow = odd_actions_flow();
    let mut trail = Trail::with_count(3);

    let err = run(&flow, &mut trail).unwrap_err();

    let FlowError::UnknownAction { node, action, expected, .. } = &err else {
        panic!("expected UnknownAction, got {err:?}");
    };
    assert_eq!((node.as_str(), action.as_str()), ("route", "Default"));
    assert_eq!(expected, &[Action::new(""), Action::new("✓ fertig"), Action::DEFAULT]);
    assert_eq!(
        err.to_string(),
        "node `route` returned action \"Default\", but its edges are for \"\", \"✓ fertig\", \"default\"; \
         add an edge for it, or `Flow::end` if it should end the flow"
    );
    assert_eq!(trail.visits, ["route"]);
}

#[test]
fn a_flow_run_twice_gives_the_same_results() {
    let flow = counting_loop();

    let mut first = Trail::default();
    let mut second = Trail::default();
    let first_action = run(&flow, &mut first).unwrap();
    let second_action = futures::executor::block_on(flow.run(&mut second)).unwrap();

    assert_eq!(first_action, "done");
    assert_eq!(second_action, "done");
    assert_eq!(first, second);
    assert_eq!(first.count, 5);
    assert_eq!(first.visits.len(), 10);

    // The flow kept nothing from those runs: run again on a finished store, it goes on from
    // the store's counter, once round the loop.
    assert_eq!(run(&flow, &mut first).unwrap(), "done");
    assert_eq!(first.count, 6);
    assert_eq!(first.visits.len(), 12);
}

#[test]
fn a_flow_shared_by_arc_serves_runs_with_different_stores() {
    fn assert_send_sync<T: Send + Sync>(_: &T) {}

    let flow = Arc::new(branching_flow());
    assert_send_sync(&flow);

    let on_thread = Arc::clone(&flow);
    let even = std::thread::spawn(move || {
        let mut trail = Trail::with_count(10);
        let last = futures::executor::block_on(on_thread.run(&mut trail)).unwrap();
        (last, trail)
    })
    .join()
    .unwrap();

    let mut odd = Trail::with_count(11);
    let odd_last = run(&flow, &mut odd).unwrap();

    assert_eq!(even.0, "went_even");
    assert_eq!(even.1, Trail { visits: vec!["check", "even_branch"], count: 10 });
    assert_eq!(odd_last, "went_odd");
    assert_eq!(odd, Trail { visits: vec!["check", "odd_branch"], count: 11 });
    assert_eq!(Arc::strong_count(&flow), 1);
}
