//! The graph as a whole: `Flow::to_mermaid` and `Flow::validate`. Pins down the exact Mermaid
//! text (ids `n_0`, `n_1_0`, …, a `start` circle per flow, subgraphs for nested flows, batch
//! flows and parallel nodes, labelled edges except "default", end edges to an `end` circle,
//! `"` escaped as `#34;`), and every mistake a graph can have before it runs: unreachable
//! nodes (in the outermost flow, in a nested flow, in a batch flow, in a parallel branch) and
//! empty flows, each an `InvalidConfig` with its exact path and message, and ids of another
//! flow and duplicate edges, each a panic with its exact message; a run checks the whole tree
//! of flows first, so no node runs in a tree with a mistake. Also that the reachability check, which is cached, is worked out again after
//! every change to the flow, and that `Flow::len` and `Flow::is_empty` count the nodes added.

mod common;

use common::{assert_duplicate, assert_foreign};
use miniflow::{
    Action, BatchAsyncFlow, BatchFlow, BatchNode, Ctx, Flow, FlowError, Node, NodeId, Parallel,
    Params, Result, node_fn,
};

/// The store of every test here: the names of the nodes that ran, in order.
type Visits = Vec<&'static str>;

/// A node that records `name` and returns `action`.
fn step(name: &'static str, action: &'static str) -> impl Node<Visits> {
    node_fn(move |visits: &mut Visits, _: &Params| {
        visits.push(name);
        Ok(Action::new(action))
    })
}

/// Adds a [`step`] named `name` that returns "default".
fn add(flow: &mut Flow<Visits>, name: &'static str) -> NodeId {
    flow.add(name, step(name, "default"))
}

/// A batch node with no items: it only records that its post ran.
struct Items(&'static str);

impl BatchNode<Visits> for Items {
    type Item = ();
    type Output = ();

    fn prep(&self, _: &Visits, _: &Params) -> Result<Vec<()>> {
        Ok(Vec::new())
    }

    async fn exec(&self, _: &(), _: Ctx<'_>) -> Result<()> {
        Ok(())
    }

    fn post(&self, visits: &mut Visits, _: &Params, _: Vec<()>, _: Vec<()>) -> Result<Action> {
        visits.push(self.0);
        Ok(Action::DEFAULT)
    }
}

/// A flow of one node, `name`.
fn single(name: &'static str) -> Flow<Visits> {
    let mut flow = Flow::new();
    add(&mut flow, name);
    flow
}

/// `first -> second`.
fn pair(first: &'static str, second: &'static str) -> Flow<Visits> {
    let mut flow = Flow::new();
    let a = add(&mut flow, first);
    let b = add(&mut flow, second);
    flow.then(a, b);
    flow
}

/// A flow whose second node no edge reaches: `first`, `second`, and no edge.
fn disconnected(first: &'static str, second: &'static str) -> Flow<Visits> {
    let mut flow = Flow::new();
    add(&mut flow, first);
    add(&mut flow, second);
    flow
}

fn run(flow: &Flow<Visits>, visits: &mut Visits) -> Result<Action, FlowError> {
    smol::block_on(flow.run(visits))
}

/// The message of the error for `nodes` of the flow at `node` (its path, empty for the
/// outermost flow) that no edge reaches from its start node `start`.
fn unreachable_message(node: &str, nodes: &[&str], start: &str) -> String {
    let flow = if node.is_empty() { String::new() } else { format!("{node}/") };
    let (s, it) = if nodes.len() == 1 { ("", "it") } else { ("s", "them") };
    let names: Vec<String> = nodes.iter().map(|n| format!("`{flow}{n}`")).collect();
    format!(
        "node{s} {} can never run: no edge leads to {it} from the start node `{flow}{start}`; \
         connect {it} with `Flow::edge` or `Flow::then`, or remove {it} (a node that runs only \
         when a run resumes there is declared with `Flow::entry`)",
        names.join(", ")
    )
}

/// Asserts that `err` is the `InvalidConfig` of the flow at `node` for the unreachable `nodes`
/// (from its start node `start`), with exactly `message`.
fn assert_unreachable(err: &FlowError, node: &str, nodes: &[&str], start: &str, message: &str) {
    let FlowError::InvalidConfig { node: n, message: m, .. } = err else {
        panic!("expected InvalidConfig, got {err:?}");
    };
    assert_eq!(n, node);
    assert_eq!(m, message);
    assert_eq!(m, &unreachable_message(node, nodes, start));
    assert_eq!(err.node(), node);
    assert_eq!(err.to_string(), message);
}

/// Asserts that `err` is the `InvalidConfig` of the empty flow at `node`, with `message`.
fn assert_empty(err: &FlowError, node: &str, message: &str) {
    let FlowError::InvalidConfig { node: n, message: m, .. } = err else {
        panic!("expected InvalidConfig, got {err:?}");
    };
    assert_eq!(n, node);
    assert_eq!(m, message);
    assert_eq!(err.to_string(), message);
}

// ---------------------------------------------------------------------------------------------
// Mermaid
// ---------------------------------------------------------------------------------------------

#[test]
fn mermaid_draws_a_loop_a_nested_flow_and_an_end_edge() {
    let mut flow = Flow::new();
    let ask = add(&mut flow, "ask");
    let think = flow.add("think", pair("plan", "act"));
    flow.then(ask, think);
    flow.edge(think, "again", ask);
    flow.end(think, "done");

    assert_eq!(
        flow.to_mermaid(),
        r#"flowchart TD
    n_start(("start")) --> n_0
    n_0["ask"]
    subgraph n_1["think"]
        n_1_start(("start")) --> n_1_0
        n_1_0["plan"]
        n_1_1["act"]
        n_1_0 --> n_1_1
    end
    n_0 --> n_1
    n_1 -->|"again"| n_0
    n_1 -->|"done"| n_end((("end")))
"#
    );
}

#[test]
fn mermaid_draws_batches_and_parallel_branches_as_labelled_shapes() {
    let mut right = Flow::new();
    let r1 = add(&mut right, "r1");
    let r2 = add(&mut right, "r2");
    right.edge(r1, "next", r2);
    right.end(r1, "skip");
    let both = Parallel::new()
        .branch("left", step("left", "default"))
        .branch("right", right)
        .branch("items", Items("items"));

    let mut flow = Flow::new();
    let split = flow.add("split", Items("split"));
    let each = flow.add("each", BatchFlow::new(single("one"), |_: &Visits, _: &Params| Ok(vec![])));
    let all =
        flow.add("all", BatchAsyncFlow::new(single("two"), |_: &Visits, _: &Params| Ok(vec![])));
    let both = flow.add("both", both);
    flow.then(split, each);
    flow.then(each, all);
    flow.then(all, both);
    flow.end(both, "finished");

    assert_eq!(
        flow.to_mermaid(),
        r#"flowchart TD
    n_start(("start")) --> n_0
    n_0[["split (BatchNode)"]]
    subgraph n_1["each (BatchFlow)"]
        n_1_start(("start")) --> n_1_0
        n_1_0["one"]
    end
    subgraph n_2["all (BatchAsyncFlow)"]
        n_2_start(("start")) --> n_2_0
        n_2_0["two"]
    end
    subgraph n_3["both (Parallel)"]
        n_3_0["left"]
        subgraph n_3_1["right"]
            n_3_1_start(("start")) --> n_3_1_0
            n_3_1_0["r1"]
            n_3_1_1["r2"]
            n_3_1_0 -->|"next"| n_3_1_1
            n_3_1_0 -->|"skip"| n_3_1_end((("end")))
        end
        n_3_2[["items (BatchNode)"]]
    end
    n_0 --> n_1
    n_1 --> n_2
    n_2 --> n_3
    n_3 -->|"finished"| n_end((("end")))
"#
    );
}

#[test]
fn mermaid_escapes_double_quotes_in_names_actions_and_subgraph_titles() {
    let mut flow = Flow::new();
    let say = add(&mut flow, r#"say "hi""#);
    let inner = flow.add(r#"the "inner" one"#, single("x"));
    flow.edge(say, r#"said "yes""#, inner);
    flow.end(say, r#""no""#);

    assert_eq!(
        flow.to_mermaid(),
        r##"flowchart TD
    n_start(("start")) --> n_0
    n_0["say #34;hi#34;"]
    subgraph n_1["the #34;inner#34; one"]
        n_1_start(("start")) --> n_1_0
        n_1_0["x"]
    end
    n_0 -->|"said #34;yes#34;"| n_1
    n_0 -->|"#34;no#34;"| n_end((("end")))
"##
    );
}

#[test]
fn mermaid_start_circle_points_at_the_node_set_start_chose() {
    let mut flow = Flow::new();
    let a = add(&mut flow, "a");
    let b = add(&mut flow, "b");
    flow.then(b, a);
    flow.set_start(b);

    assert_eq!(
        flow.to_mermaid(),
        r#"flowchart TD
    n_start(("start")) --> n_1
    n_0["a"]
    n_1["b"]
    n_1 --> n_0
"#
    );
    // The drawing tells the truth: a run starts there too.
    let mut visits = Visits::new();
    run(&flow, &mut visits).unwrap();
    assert_eq!(visits, ["b", "a"]);
}

#[test]
fn mermaid_of_an_empty_flow_is_the_header_alone_and_an_empty_nested_flow_an_empty_subgraph() {
    assert_eq!(Flow::<Visits>::new().to_mermaid(), "flowchart TD\n");

    let mut flow = Flow::new();
    flow.add("hollow", Flow::<Visits>::new());
    assert_eq!(
        flow.to_mermaid(),
        r#"flowchart TD
    n_start(("start")) --> n_0
    subgraph n_0["hollow"]
    end
"#
    );
}

// ---------------------------------------------------------------------------------------------
// Validation: what a valid graph looks like
// ---------------------------------------------------------------------------------------------

#[test]
fn a_valid_flow_and_a_valid_nested_flow_pass_validate_and_run() {
    let inner = pair("plan", "act");
    assert_eq!(inner.validate().map_err(|e| e.to_string()), Ok(()));
    let mut visits = Visits::new();
    run(&inner, &mut visits).unwrap();
    assert_eq!(visits, ["plan", "act"]);

    let mut flow = Flow::new();
    let ask = add(&mut flow, "ask");
    let think = flow.add("think", inner);
    let done = add(&mut flow, "done");
    flow.then(ask, think);
    flow.then(think, done);
    assert_eq!(flow.validate().map_err(|e| e.to_string()), Ok(()));
    // Validating twice (the cached answer) gives the same result.
    assert_eq!(flow.validate().map_err(|e| e.to_string()), Ok(()));

    let mut visits = Visits::new();
    assert_eq!(run(&flow, &mut visits).unwrap(), "default");
    assert_eq!(visits, ["ask", "plan", "act", "done"]);
}

#[test]
fn nodes_reached_only_through_a_loop_are_reachable() {
    // `a -> b -> c -> b`, and `c` ends the run on "stop": every node is reachable.
    let mut flow = Flow::new();
    let a = add(&mut flow, "a");
    let b = add(&mut flow, "b");
    let c = add(&mut flow, "c");
    flow.then(a, b);
    flow.then(b, c);
    flow.edge(c, "again", b);
    flow.end(c, "stop");
    assert_eq!(flow.validate().map_err(|e| e.to_string()), Ok(()));
}

// ---------------------------------------------------------------------------------------------
// Validation: unreachable nodes
// ---------------------------------------------------------------------------------------------

#[test]
fn an_unreachable_node_fails_the_run_before_any_node_runs() {
    let flow = disconnected("draft", "review");
    let message = "node `review` can never run: no edge leads to it from the start node `draft`; \
                   connect it with `Flow::edge` or `Flow::then`, or remove it (a node that runs only when a run \
                   resumes there is declared with `Flow::entry`)";

    let mut visits = Visits::new();
    let err = run(&flow, &mut visits).unwrap_err();
    assert_unreachable(&err, "", &["review"], "draft", message);
    assert_eq!(visits, Visits::new(), "no node may run in a flow that cannot run as built");

    let err = flow.validate().unwrap_err();
    assert_unreachable(&err, "", &["review"], "draft", message);
}

#[test]
fn several_unreachable_nodes_are_listed_in_the_order_they_were_added() {
    let mut flow = Flow::new();
    let start = add(&mut flow, "start");
    let c = add(&mut flow, "c");
    let a = add(&mut flow, "a");
    let reached = add(&mut flow, "reached");
    let b = add(&mut flow, "b");
    flow.then(start, reached);
    // Edges between unreachable nodes do not make them reachable.
    flow.then(c, a);
    flow.then(a, b);
    let message = "nodes `c`, `a`, `b` can never run: no edge leads to them from the start node \
                   `start`; connect them with `Flow::edge` or `Flow::then`, or remove them (a node that runs only when a run \
                   resumes there is declared with `Flow::entry`)";

    let err = flow.validate().unwrap_err();
    assert_unreachable(&err, "", &["c", "a", "b"], "start", message);

    let mut visits = Visits::new();
    let err = run(&flow, &mut visits).unwrap_err();
    assert_unreachable(&err, "", &["c", "a", "b"], "start", message);
    assert_eq!(visits, Visits::new());
}

#[test]
fn an_unreachable_node_in_a_nested_flow_is_named_by_its_path() {
    let mut flow = Flow::new();
    let first = add(&mut flow, "first");
    let inner = flow.add("inner", disconnected("a", "x"));
    flow.then(first, inner);
    let message = "node `inner/x` can never run: no edge leads to it from the start node \
                   `inner/a`; connect it with `Flow::edge` or `Flow::then`, or remove it (a node that runs only when a run \
                   resumes there is declared with `Flow::entry`)";

    let err = flow.validate().unwrap_err();
    assert_unreachable(&err, "inner", &["x"], "a", message);

    // A run checks the whole tree of flows first: not even `first` runs.
    let mut visits = Visits::new();
    let err = run(&flow, &mut visits).unwrap_err();
    assert_unreachable(&err, "inner", &["x"], "a", message);
    assert_eq!(visits, Visits::new());
}

#[test]
fn an_unreachable_node_in_a_batch_flow_is_named_by_the_batch_flow_path() {
    // Two sub-runs, and none: the check is of the flow, before any sub-run, so it is named
    // without a sub-run index, and it fails the run even when no sub-run would have run it.
    for sets in [2, 0] {
        let mut flow = Flow::new();
        let first = add(&mut flow, "first");
        let each = flow.add(
            "each",
            BatchFlow::new(disconnected("a", "x"), move |_: &Visits, _: &Params| {
                Ok(vec![Params::new(); sets])
            }),
        );
        flow.then(first, each);
        let message = "node `each/x` can never run: no edge leads to it from the start node \
                       `each/a`; connect it with `Flow::edge` or `Flow::then`, or remove it (a node that runs only when a run \
                   resumes there is declared with `Flow::entry`)";

        assert_unreachable(&flow.validate().unwrap_err(), "each", &["x"], "a", message);

        let mut visits = Visits::new();
        let err = run(&flow, &mut visits).unwrap_err();
        assert_unreachable(&err, "each", &["x"], "a", message);
        assert_eq!(visits, Visits::new(), "with {sets} sub-runs");
    }
}

#[test]
fn a_parallel_branch_that_is_an_invalid_flow_is_found_by_validate_and_by_the_run() {
    let both = Parallel::new()
        .branch("left", step("left", "default"))
        .branch("right", disconnected("r1", "r2"));
    let mut flow = Flow::new();
    let first = add(&mut flow, "first");
    let both = flow.add("both", both);
    flow.then(first, both);
    let message = "node `both/right/r2` can never run: no edge leads to it from the start node \
                   `both/right/r1`; connect it with `Flow::edge` or `Flow::then`, or remove it (a node that runs only when a run \
                   resumes there is declared with `Flow::entry`)";

    let err = flow.validate().unwrap_err();
    assert_unreachable(&err, "both/right", &["r2"], "r1", message);

    let mut visits = Visits::new();
    let err = run(&flow, &mut visits).unwrap_err();
    assert_unreachable(&err, "both/right", &["r2"], "r1", message);
    assert_eq!(visits, Visits::new(), "neither `first` nor the valid branch may run");
}

// ---------------------------------------------------------------------------------------------
// Validation: empty flows
// ---------------------------------------------------------------------------------------------

#[test]
fn an_empty_flow_fails_validate_and_run() {
    let flow = Flow::<Visits>::new();
    let message = "the flow has no nodes; add one with `Flow::add` before running it";
    assert_empty(&flow.validate().unwrap_err(), "", message);
    assert_empty(&run(&flow, &mut Visits::new()).unwrap_err(), "", message);
}

#[test]
fn an_empty_nested_flow_is_an_empty_flow_error_naming_its_path() {
    let mut flow = Flow::new();
    let first = add(&mut flow, "first");
    let hollow = flow.add("hollow", Flow::<Visits>::new());
    flow.then(first, hollow);
    let message = "flow `hollow` has no nodes; add one with `Flow::add` before running it";

    let err = flow.validate().unwrap_err();
    assert_empty(&err, "hollow", message);
    assert_eq!(err.node(), "hollow");

    let mut visits = Visits::new();
    assert_empty(&run(&flow, &mut visits).unwrap_err(), "hollow", message);
    assert_eq!(visits, Visits::new());
}

#[test]
fn an_empty_flow_nested_two_levels_down_is_named_by_its_full_path() {
    let mut middle = Flow::new();
    middle.add("deep", Flow::<Visits>::new());
    let mut flow = Flow::new();
    flow.add("middle", middle);
    assert_empty(
        &flow.validate().unwrap_err(),
        "middle/deep",
        "flow `middle/deep` has no nodes; add one with `Flow::add` before running it",
    );
}

// ---------------------------------------------------------------------------------------------
// Validation: the cached check is forgotten on every change
// ---------------------------------------------------------------------------------------------

#[test]
fn adding_the_missing_edge_after_a_failed_validate_makes_it_pass() {
    let mut flow = Flow::new();
    let draft = add(&mut flow, "draft");
    let review = add(&mut flow, "review");
    let message = unreachable_message("", &["review"], "draft");
    assert_unreachable(&flow.validate().unwrap_err(), "", &["review"], "draft", &message);
    let err = run(&flow, &mut Visits::new()).unwrap_err();
    assert_unreachable(&err, "", &["review"], "draft", &message);

    flow.then(draft, review);

    assert_eq!(flow.validate().map_err(|e| e.to_string()), Ok(()));
    let mut visits = Visits::new();
    run(&flow, &mut visits).unwrap();
    assert_eq!(visits, ["draft", "review"]);
}

#[test]
fn adding_a_node_after_a_passed_validate_or_run_is_checked_again() {
    let mut flow = pair("a", "b");
    assert_eq!(flow.validate().map_err(|e| e.to_string()), Ok(()));
    run(&flow, &mut Visits::new()).unwrap();

    add(&mut flow, "c");

    let message = unreachable_message("", &["c"], "a");
    assert_unreachable(&flow.validate().unwrap_err(), "", &["c"], "a", &message);
    let mut visits = Visits::new();
    let err = run(&flow, &mut visits).unwrap_err();
    assert_unreachable(&err, "", &["c"], "a", &message);
    assert_eq!(visits, Visits::new());
}

#[test]
fn set_start_after_a_passed_validate_is_checked_again() {
    let mut flow = Flow::new();
    let a = add(&mut flow, "a");
    let b = add(&mut flow, "b");
    flow.then(a, b);
    assert_eq!(flow.validate().map_err(|e| e.to_string()), Ok(()));

    // From `b`, nothing leads back to `a`.
    flow.set_start(b);
    assert_unreachable(
        &flow.validate().unwrap_err(),
        "",
        &["a"],
        "b",
        "node `a` can never run: no edge leads to it from the start node `b`; connect it with \
         `Flow::edge` or `Flow::then`, or remove it (a node that runs only when a run resumes \
         there is declared with `Flow::entry`)",
    );

    // And back: the start that made it valid makes it valid again.
    flow.set_start(a);
    assert_eq!(flow.validate().map_err(|e| e.to_string()), Ok(()));
}

#[test]
fn an_edge_added_after_a_failed_run_is_seen_by_the_next_run() {
    let mut flow = Flow::new();
    let a = add(&mut flow, "a");
    let b = add(&mut flow, "b");
    let mut visits = Visits::new();
    let err = run(&flow, &mut visits).unwrap_err();
    assert_unreachable(&err, "", &["b"], "a", &unreachable_message("", &["b"], "a"));

    // `a` returns "default", for which this edge is not: the next run gets past the check and
    // fails on the action instead, which proves that the check was done again.
    flow.edge(a, "go", b);
    let err = run(&flow, &mut visits).unwrap_err();
    assert!(matches!(&err, FlowError::UnknownAction { node, .. } if node == "a"), "{err:?}");
    assert_eq!(visits, ["a"]);
}

// ---------------------------------------------------------------------------------------------
// Building: ids of another flow, duplicate edges
// ---------------------------------------------------------------------------------------------

#[test]
fn ids_of_another_flow_are_refused_by_edge_then_end_and_set_start() {
    let mut other = Flow::<Visits>::new();
    let stranger = add(&mut other, "stranger");
    let mut flow = Flow::new();
    let a = add(&mut flow, "a");
    let b = add(&mut flow, "b");
    flow.then(a, b);
    let before = flow.to_mermaid();

    assert_foreign(|| _ = flow.edge(a, "x", stranger), stranger);
    assert_foreign(|| _ = flow.edge(stranger, "x", a), stranger);
    assert_foreign(|| _ = flow.then(a, stranger), stranger);
    assert_foreign(|| _ = flow.then(stranger, b), stranger);
    assert_foreign(|| _ = flow.end(stranger, "stop"), stranger);
    assert_foreign(|| _ = flow.set_start(stranger), stranger);
    assert_foreign(|| _ = flow.name(stranger), stranger);
    // The same index in another flow is still another flow's id.
    assert!(format!("{stranger:?}").starts_with("NodeId(0 of flow #"), "{stranger:?}");
    assert_foreign(|| _ = other.then(stranger, a), a);

    // Nothing was changed by the refused calls: same drawing, same run.
    assert_eq!(flow.to_mermaid(), before);
    let mut visits = Visits::new();
    run(&flow, &mut visits).unwrap();
    assert_eq!(visits, ["a", "b"]);
}

#[test]
fn a_second_edge_for_the_same_action_is_refused_whatever_its_kind() {
    let mut flow = Flow::new();
    let a = add(&mut flow, "a");
    let b = add(&mut flow, "b");
    let c = add(&mut flow, "c");
    flow.then(a, b);
    flow.edge(a, "left", c);
    flow.end(a, "stop");
    flow.then(b, c);

    assert_duplicate(|| _ = flow.then(a, c), "a", "default");
    assert_duplicate(|| _ = flow.edge(a, "default", c), "a", "default");
    assert_duplicate(|| _ = flow.edge(a, "left", b), "a", "left");
    assert_duplicate(|| _ = flow.end(a, "left"), "a", "left");
    assert_duplicate(|| _ = flow.edge(a, "stop", c), "a", "stop");
    assert_duplicate(|| _ = flow.end(a, "stop"), "a", "stop");

    // The first edges stand: `a`'s default still leads to `b`.
    let mut visits = Visits::new();
    run(&flow, &mut visits).unwrap();
    assert_eq!(visits, ["a", "b", "c"]);
}

#[test]
fn len_counts_the_nodes_added_and_is_empty_holds_only_before_the_first() {
    let mut flow = Flow::<Visits>::new();
    assert_eq!((flow.len(), flow.is_empty()), (0, true));
    add(&mut flow, "a");
    assert_eq!((flow.len(), flow.is_empty()), (1, false));
    flow.add("inner", pair("b", "c")); // a nested flow counts as one node
    assert_eq!((flow.len(), flow.is_empty()), (2, false));
    assert!(!single("x").is_empty());
}
