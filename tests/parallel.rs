//! `Parallel`: branches really overlap, up to `max_in_flight` and never more (one at a time in
//! the order added with a limit of 1); the next node runs only after every branch's post,
//! whatever order they finish in; any node, batch node or flow can be a branch, each with its
//! path under the parallel node's; the post sees the branch actions in the order added and its
//! action routes the flow ("default" without one); the first failure fails fast, drops the
//! branches in flight and keeps finished posts; every branch counts as a step; a dropped run
//! drops its branches and the flow runs again; an empty parallel node goes straight to its
//! post; runs spawned on tokio's multi-thread runtime; bad configurations panic.

use std::collections::BTreeMap;
use std::error::Error as _;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use miniflow::{
    Action, BatchAsyncFlow, BatchNode, Ctx, Event, Flow, FlowError, Node, Parallel, Params, Phase,
    Result, RunOptions, node_fn,
};

mod common;
use common::*;

/// More polls than any run here needs: a run still pending after this many has hung.
const MAX_POLLS: usize = 1_000;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default, Clone, PartialEq)]
struct Store {
    /// Every prep and post, and the plain nodes, in the order they ran.
    log: Vec<String>,
    /// Each branch writes its own key.
    values: BTreeMap<String, String>,
    /// What each parallel post received.
    joined: Vec<Vec<String>>,
}

/// How a [`Branch`]'s exec ends after its yields.
#[derive(Clone, Copy)]
enum End {
    Ok,
    Fail,
    /// Awaits forever.
    Hang,
}

/// A branch node: yields `yields` times in exec (marked in flight), then ends
/// as `end` says; its post writes `values[name]` and returns the action `"{name}!"`.
struct Branch {
    name: &'static str,
    yields: usize,
    end: End,
    probe: Arc<Probe>,
}

fn branch(name: &'static str, yields: usize, probe: &Arc<Probe>) -> Branch {
    Branch { name, yields, end: End::Ok, probe: Arc::clone(probe) }
}

fn failing(name: &'static str, yields: usize, probe: &Arc<Probe>) -> Branch {
    Branch { end: End::Fail, ..branch(name, yields, probe) }
}

fn hanging(name: &'static str, probe: &Arc<Probe>) -> Branch {
    Branch { end: End::Hang, ..branch(name, 0, probe) }
}

impl Node<Store> for Branch {
    type Prep = ();
    type Output = ();

    fn prep(&self, _: &Store, _: &Params) -> Result<()> {
        Ok(())
    }

    async fn exec(&self, _: &(), cx: Ctx<'_>) -> Result<()> {
        let in_flight = InFlight::enter(&self.probe);
        self.probe.event(format!("start {}", cx.node()));
        yield_times(self.yields).await;
        if let End::Hang = self.end {
            std::future::pending::<()>().await;
        }
        self.probe.event(format!("end {}", cx.node()));
        in_flight.finish();
        match self.end {
            End::Fail => Err(failure(format!("{} failed", self.name))),
            _ => Ok(()),
        }
    }

    fn post(&self, store: &mut Store, _: (), _: ()) -> Result<Action> {
        store.log.push(format!("post {}", self.name));
        store.values.insert(self.name.to_string(), "done".to_string());
        Ok(format!("{}!", self.name).into())
    }
}

/// A plain node that logs its name.
fn mark(name: &'static str) -> impl Node<Store> + 'static {
    node_fn(move |store: &mut Store, _: &Params| {
        store.log.push(name.to_string());
        Ok(Action::DEFAULT)
    })
}

/// The parallel post most tests use: logs "post par", records the actions, goes on.
fn join_post(store: &mut Store, actions: Vec<Action>) -> Result<Action> {
    store.log.push("post par".to_string());
    store.joined.push(actions.iter().map(|a| a.to_string()).collect());
    Ok(Action::DEFAULT)
}

/// `par -> next`.
fn then_next(par: Parallel<Store>) -> Flow<Store> {
    let mut flow = Flow::new();
    let par = flow.add("par", par);
    let next = flow.add("next", mark("next"));
    flow.then(par, next);
    flow
}

/// Three branches `a`, `b`, `c` that yield `yields[i]` times each.
fn three(probe: &Arc<Probe>, yields: [usize; 3]) -> Parallel<Store> {
    Parallel::new()
        .branch("a", branch("a", yields[0], probe))
        .branch("b", branch("b", yields[1], probe))
        .branch("c", branch("c", yields[2], probe))
}

fn done(names: &[&str]) -> BTreeMap<String, String> {
    names.iter().map(|n| (n.to_string(), "done".to_string())).collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A batch node branch: items 1, 2, 3, all in flight at once, each yielding 3 times; post
/// writes `values["batch"]` with the squares.
struct Squares(Arc<Probe>);

impl BatchNode<Store> for Squares {
    type Item = u32;
    type Output = u32;

    fn prep(&self, _: &Store, _: &Params) -> Result<Vec<u32>> {
        Ok(vec![1, 2, 3])
    }

    async fn exec(&self, item: &u32, cx: Ctx<'_>) -> Result<u32> {
        let in_flight = InFlight::enter(&self.0);
        self.0.event(format!("start {}", cx.node()));
        yield_times(3).await;
        in_flight.finish();
        Ok(item * item)
    }

    fn post(
        &self,
        store: &mut Store,
        _: &Params,
        _: Vec<u32>,
        squares: Vec<u32>,
    ) -> Result<Action> {
        let squares: Vec<String> = squares.iter().map(u32::to_string).collect();
        store.values.insert("batch".to_string(), squares.join(" "));
        Ok(Action::DEFAULT)
    }

    fn max_in_flight(&self) -> usize {
        usize::MAX
    }
}

// ---------------------------------------------------------------------------------------------
// Overlap and limits
// ---------------------------------------------------------------------------------------------

#[test]
fn branches_overlap_up_to_the_limit() {
    for (limit, expected) in
        [(None, 3), (Some(usize::MAX), 3), (Some(3), 3), (Some(2), 2), (Some(1), 1)]
    {
        let probe = Arc::new(Probe::default());
        let mut par = three(&probe, [3, 3, 3]);
        if let Some(limit) = limit {
            par = par.max_in_flight(limit);
        }
        let flow = then_next(par);
        let mut store = Store::default();

        let action = smol::block_on(flow.run(&mut store)).unwrap();

        assert_eq!(action, Action::DEFAULT);
        assert_eq!(probe.max_in_flight(), expected, "limit {limit:?}");
        assert_eq!(probe.now(), 0, "limit {limit:?}");
        assert_eq!(store.values, done(&["a", "b", "c"]), "limit {limit:?}");
        assert_eq!(store.log.last().map(String::as_str), Some("next"), "limit {limit:?}");
    }
}

#[test]
fn branches_overlap_under_the_futures_executor() {
    let probe = Arc::new(Probe::default());
    let flow = then_next(three(&probe, [2, 4, 1]));
    let mut store = Store::default();

    futures::executor::block_on(flow.run(&mut store)).unwrap();

    assert_eq!(probe.max_in_flight(), 3);
    assert_eq!(store.values, done(&["a", "b", "c"]));
}

#[test]
fn a_limit_of_two_starts_the_third_branch_when_one_finishes() {
    let probe = Arc::new(Probe::default());
    // b finishes first and frees its slot for c.
    let flow = then_next(three(&probe, [5, 1, 3]).max_in_flight(2));
    let mut store = Store::default();

    smol::block_on(flow.run(&mut store)).unwrap();

    assert_eq!(probe.max_in_flight(), 2);
    assert_eq!(&probe.events()[..4], ["start par/a", "start par/b", "end par/b", "start par/c"]);
    assert_eq!(store.values, done(&["a", "b", "c"]));
}

#[test]
fn a_limit_of_one_runs_branches_one_after_another_in_the_order_added() {
    let probe = Arc::new(Probe::default());
    // Overlapping, a would finish last and b first.
    let flow = then_next(three(&probe, [5, 1, 3]).max_in_flight(1));
    let mut store = Store::default();

    smol::block_on(flow.run(&mut store)).unwrap();

    assert_eq!(probe.max_in_flight(), 1);
    assert_eq!(
        probe.events(),
        ["start par/a", "end par/a", "start par/b", "end par/b", "start par/c", "end par/c"]
    );
    assert_eq!(store.log, ["post a", "post b", "post c", "next"]);
}

// ---------------------------------------------------------------------------------------------
// Joining
// ---------------------------------------------------------------------------------------------

#[test]
fn the_next_node_runs_after_every_branch_post_whatever_order_they_finish_in() {
    for with_post in [false, true] {
        let probe = Arc::new(Probe::default());
        // b finishes first, then c, then a.
        let mut par = three(&probe, [5, 1, 3]);
        if with_post {
            par = par.post(join_post);
        }
        let flow = then_next(par);
        let mut store = Store::default();

        let action = smol::block_on(flow.run(&mut store)).unwrap();

        assert_eq!(action, Action::DEFAULT);
        let mut expected = strings(&["post b", "post c", "post a"]);
        if with_post {
            expected.push("post par".to_string());
        }
        expected.push("next".to_string());
        assert_eq!(store.log, expected, "with post: {with_post}");
        assert_eq!(probe.max_in_flight(), 3);
    }
}

#[test]
fn a_node_before_the_parallel_node_runs_before_any_branch() {
    let probe = Arc::new(Probe::default());
    let mut flow = Flow::new();
    let first = flow.add("first", mark("first"));
    let par = flow.add("par", three(&probe, [2, 0, 1]).post(join_post));
    let next = flow.add("next", mark("next"));
    flow.then(first, par);
    flow.then(par, next);
    let mut store = Store::default();

    smol::block_on(flow.run(&mut store)).unwrap();

    assert_eq!(store.log, ["first", "post b", "post c", "post a", "post par", "next"]);
}

// ---------------------------------------------------------------------------------------------
// Kinds of branches and paths
// ---------------------------------------------------------------------------------------------

/// A parallel node named `par` whose branches are a plain node (`plain`), a flow of two nodes
/// (`f`: `x -"x!"-> y`), a batch node (`batch`), a batch async flow (`fan`, two sub-runs) and a
/// parallel node (`inner`, branches `z` and `w`).
fn every_kind(probe: &Arc<Probe>) -> Flow<Store> {
    let mut f = Flow::new();
    let x = f.add("x", branch("x", 3, probe));
    let y = f.add("y", branch("y", 1, probe));
    f.edge(x, "x!", y);

    let mut sub = Flow::new();
    sub.add(
        "s",
        node_fn(|store: &mut Store, p: &Params| {
            store.values.insert(format!("fan{}", p.int("i")?), "done".to_string());
            Ok(Action::DEFAULT)
        }),
    );
    let fan = BatchAsyncFlow::new(sub, |_: &Store, _: &Params| {
        Ok((0..2).map(|i| Params::new().with("i", i)).collect())
    });

    let inner =
        Parallel::new().branch("z", branch("z", 3, probe)).branch("w", branch("w", 3, probe));

    let par = Parallel::new()
        .branch("plain", branch("plain", 3, probe))
        .branch("f", f)
        .branch("batch", Squares(Arc::clone(probe)))
        .branch("fan", fan)
        .branch("inner", inner)
        .post(join_post);
    then_next(par)
}

#[test]
fn a_node_a_flow_a_batch_node_a_batch_async_flow_and_a_parallel_node_are_all_branches() {
    let probe = Arc::new(Probe::default());
    let flow = every_kind(&probe);
    let mut store = Store::default();

    let action = smol::block_on(flow.run(&mut store)).unwrap();

    assert_eq!(action, Action::DEFAULT);
    let expected: BTreeMap<String, String> = [
        ("plain", "done"),
        ("x", "done"),
        ("y", "done"),
        ("batch", "1 4 9"),
        ("fan0", "done"),
        ("fan1", "done"),
        ("z", "done"),
        ("w", "done"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(store.values, expected);
    // plain, f/x, the three items of batch, inner/z and inner/w: all in flight at once.
    assert_eq!(probe.max_in_flight(), 7);
    // Each branch's action, in the order added; the inner parallel node's is "default".
    assert_eq!(store.joined, [strings(&["plain!", "y!", "default", "default", "default"])]);
    assert_eq!(store.log.last().map(String::as_str), Some("next"));
}

#[test]
fn ctx_node_inside_a_branch_names_it_under_the_parallel_node() {
    let probe = Arc::new(Probe::default());
    let flow = every_kind(&probe);
    let mut store = Store::default();

    smol::block_on(flow.run(&mut store)).unwrap();

    let mut started: Vec<String> = probe
        .events()
        .into_iter()
        .filter_map(|e| e.strip_prefix("start ").map(str::to_string))
        .collect();
    started.sort();
    assert_eq!(
        started,
        [
            "par/batch[0]",
            "par/batch[1]",
            "par/batch[2]",
            "par/f/x",
            "par/f/y",
            "par/inner/w",
            "par/inner/z",
            "par/plain",
        ]
    );
}

#[test]
fn paths_of_a_parallel_node_inside_a_nested_flow() {
    let probe = Arc::new(Probe::default());
    let mut f = Flow::new();
    f.add("x", branch("x", 1, &probe));
    let mut outer_inner = Flow::new();
    outer_inner.add("par", Parallel::new().branch("a", branch("a", 1, &probe)).branch("f", f));
    let mut flow = Flow::new();
    flow.add("outer", outer_inner);
    let mut store = Store::default();

    smol::block_on(flow.run(&mut store)).unwrap();

    assert_eq!(
        probe.events(),
        ["start outer/par/a", "start outer/par/f/x", "end outer/par/a", "end outer/par/f/x"]
    );
}

#[test]
fn an_observer_sees_each_branch_start_and_end_inside_the_parallel_node() {
    let probe = Arc::new(Probe::default());
    let flow = then_next(three(&probe, [3, 0, 1]));
    let seen = Mutex::new(Vec::new());
    let observer = |event: &Event<'_>| match event {
        Event::NodeStart { node, .. } => seen.lock().unwrap().push(format!("start {node}")),
        Event::NodeEnd { node, action, .. } => {
            seen.lock().unwrap().push(format!("end {node} {action}"))
        }
        _ => {}
    };
    let mut store = Store::default();

    smol::block_on(flow.run_with(&mut store, RunOptions::new().observer(&observer))).unwrap();

    assert_eq!(
        seen.into_inner().unwrap(),
        [
            "start par",
            "start par/a",
            "start par/b",
            "end par/b b!",
            "start par/c",
            "end par/c c!",
            "end par/a a!",
            "end par default",
            "start next",
            "end next default",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Actions and routing
// ---------------------------------------------------------------------------------------------

/// `par` with edges "joined" -> `next` and "default" -> `other`.
fn routed(par: Parallel<Store>) -> Flow<Store> {
    let mut flow = Flow::new();
    let par = flow.add("par", par);
    let next = flow.add("next", mark("next"));
    let other = flow.add("other", mark("other"));
    flow.edge(par, "joined", next);
    flow.edge(par, Action::DEFAULT, other);
    flow
}

#[test]
fn post_sees_branch_actions_in_the_order_added_and_its_action_routes_the_flow() {
    let probe = Arc::new(Probe::default());
    // Branches finish c, b, a: the reverse of the order added.
    let par = three(&probe, [6, 3, 0]).post(|store: &mut Store, actions: Vec<Action>| {
        store.joined.push(actions.iter().map(|a| a.to_string()).collect());
        Ok("joined".into())
    });
    let flow = routed(par);
    let mut store = Store::default();

    let action = smol::block_on(flow.run(&mut store)).unwrap();

    assert_eq!(action, Action::DEFAULT, "the last node, next, returned default");
    assert_eq!(store.log, ["post c", "post b", "post a", "next"]);
    assert_eq!(store.joined, [strings(&["a!", "b!", "c!"])]);
}

#[test]
fn without_a_post_the_action_is_default_whatever_the_branches_return() {
    let probe = Arc::new(Probe::default());
    let flow = routed(three(&probe, [6, 3, 0]));
    let mut store = Store::default();

    smol::block_on(flow.run(&mut store)).unwrap();

    assert_eq!(store.log, ["post c", "post b", "post a", "other"]);
    assert_eq!(store.joined, Vec::<Vec<String>>::new());
}

#[test]
fn a_parallel_node_without_edges_ends_the_run_with_its_action() {
    let probe = Arc::new(Probe::default());
    let mut flow = Flow::new();
    flow.add("par", three(&probe, [1, 2, 3]));
    assert_eq!(smol::block_on(flow.run(&mut Store::default())).unwrap(), Action::DEFAULT);

    let mut flow = Flow::new();
    flow.add("par", three(&probe, [1, 2, 3]).post(|_: &mut Store, _| Ok("picked".into())));
    assert_eq!(smol::block_on(flow.run(&mut Store::default())).unwrap(), "picked");
}

#[test]
fn an_action_the_post_returns_without_an_edge_is_an_unknown_action() {
    let probe = Arc::new(Probe::default());
    let flow = routed(three(&probe, [0, 0, 0]).post(|_: &mut Store, _| Ok("lost".into())));
    let mut store = Store::default();

    let err = smol::block_on(flow.run(&mut store)).unwrap_err();

    match &err {
        FlowError::UnknownAction { node, action, expected, .. } => {
            assert_eq!((node.as_str(), action.as_str()), ("par", "lost"));
            assert_eq!(expected, &["joined", "default"]);
        }
        other => panic!("expected UnknownAction, got {other:?}"),
    }
    assert_eq!(store.values, done(&["a", "b", "c"]));
}

// ---------------------------------------------------------------------------------------------
// Fail-fast
// ---------------------------------------------------------------------------------------------

#[test]
fn a_failing_branch_fails_fast_drops_pending_branches_and_keeps_finished_posts() {
    let probe = Arc::new(Probe::default());
    // ok posts on the second poll; bad fails on the fourth; hang never finishes.
    let par = Parallel::new()
        .branch("ok", branch("ok", 1, &probe))
        .branch("bad", failing("bad", 3, &probe))
        .branch("hang", hanging("hang", &probe))
        .post(join_post);
    let flow = then_next(par);
    let mut store = Store::default();

    let err = smol::block_on(flow.run(&mut store)).unwrap_err();

    match &err {
        FlowError::NodeFailed { node, phase, attempts, .. } => {
            assert_eq!((node.as_str(), *phase, *attempts), ("par/bad", Phase::Exec, 1));
        }
        other => panic!("expected NodeFailed, got {other:?}"),
    }
    assert_eq!(err.to_string(), "node `par/bad` failed in exec after 1 attempt");
    let source = err.source().unwrap().downcast_ref::<Failure>().unwrap();
    assert_eq!(source, &Failure("bad failed".into()));
    assert_eq!(probe.dropped(), 1, "the hanging branch was dropped");
    assert_eq!(probe.now(), 0);
    assert_eq!(
        probe.events(),
        ["start par/ok", "start par/bad", "start par/hang", "end par/ok", "end par/bad"]
    );
    assert_eq!(store.log, ["post ok"], "no post after the failure, and next did not run");
    assert_eq!(store.values, done(&["ok"]));
    assert_eq!(store.joined, Vec::<Vec<String>>::new(), "the parallel post did not run");
}

#[test]
fn a_failing_branch_under_a_limit_never_starts_the_remaining_branches() {
    let probe = Arc::new(Probe::default());
    let never = Arc::new(Probe::default());
    let par = Parallel::new()
        .branch("ok", branch("ok", 1, &probe))
        .branch("bad", failing("bad", 3, &probe))
        .branch("hang", hanging("hang", &probe))
        .branch("never", branch("never", 0, &never))
        .max_in_flight(2);
    let flow = then_next(par);
    let mut store = Store::default();

    let err = smol::block_on(flow.run(&mut store)).unwrap_err();

    assert_eq!(err.node(), "par/bad");
    // ok finishes and frees its slot for hang; then bad fails while hang is in flight.
    assert_eq!(
        probe.events(),
        ["start par/ok", "start par/bad", "end par/ok", "start par/hang", "end par/bad"]
    );
    assert_eq!(probe.max_in_flight(), 2);
    assert_eq!(probe.dropped(), 1);
    assert_eq!(never.events(), Vec::<String>::new(), "the fourth branch never started");
    assert_eq!(store.log, ["post ok"]);
}

#[test]
fn a_failing_parallel_post_names_the_parallel_node() {
    let probe = Arc::new(Probe::default());
    let par = three(&probe, [1, 0, 2]).post(|_: &mut Store, _| Err(failure("no join")));
    let flow = then_next(par);
    let mut store = Store::default();

    let err = smol::block_on(flow.run(&mut store)).unwrap_err();

    match &err {
        FlowError::NodeFailed { node, phase, attempts, .. } => {
            assert_eq!((node.as_str(), *phase, *attempts), ("par", Phase::Post, 0));
        }
        other => panic!("expected NodeFailed, got {other:?}"),
    }
    assert_eq!(store.log, ["post b", "post a", "post c"], "every branch posted; next did not run");
}

// ---------------------------------------------------------------------------------------------
// Step limit
// ---------------------------------------------------------------------------------------------

/// `first -> par{a, b, c} -> next`: 6 node runs in all (first, par, a, b, c, next).
fn counted(probe: &Arc<Probe>, limit: Option<usize>) -> Flow<Store> {
    let mut par = three(probe, [2, 2, 2]);
    if let Some(limit) = limit {
        par = par.max_in_flight(limit);
    }
    let mut flow = Flow::new();
    let first = flow.add("first", mark("first"));
    let par = flow.add("par", par);
    let next = flow.add("next", mark("next"));
    flow.then(first, par);
    flow.then(par, next);
    flow
}

fn run_with_max_steps(flow: &Flow<Store>, steps: usize) -> (Result<Action, FlowError>, Store) {
    let mut store = Store::default();
    let result = smol::block_on(flow.run_with(&mut store, RunOptions::new().max_steps(steps)));
    (result, store)
}

fn assert_step_limit(result: Result<Action, FlowError>, limit: usize, last: &[&str]) {
    match result {
        Err(FlowError::StepLimit { limit: l, last: seen, .. }) => {
            assert_eq!((l, seen), (limit, strings(last)));
        }
        other => panic!("expected StepLimit({limit}), got {other:?}"),
    }
}

#[test]
fn every_branch_and_the_parallel_node_itself_count_as_a_step() {
    let probe = Arc::new(Probe::default());
    let flow = counted(&probe, None);

    // Exactly enough.
    let (result, store) = run_with_max_steps(&flow, 6);
    assert_eq!(result.unwrap(), Action::DEFAULT);
    assert_eq!(store.log, ["first", "post a", "post b", "post c", "next"]);

    // One short: the branches all ran, next did not.
    let (result, store) = run_with_max_steps(&flow, 5);
    assert_step_limit(result, 5, &["first", "par"]);
    assert_eq!(store.log, ["first", "post a", "post b", "post c"]);
}

#[test]
fn the_step_limit_trips_inside_the_parallel_node_and_drops_the_branches_in_flight() {
    let probe = Arc::new(Probe::default());
    let flow = counted(&probe, None);

    // first = 1, par = 2, a = 3, b = 4: c would be the fifth.
    let (result, store) = run_with_max_steps(&flow, 4);

    assert_step_limit(result, 4, &["first"]);
    assert_eq!(probe.events(), ["start par/a", "start par/b"]);
    assert_eq!(probe.dropped(), 2, "a and b were in flight");
    assert_eq!(store.log, ["first"]);

    // The parallel node is the third step: no branch starts.
    let probe = Arc::new(Probe::default());
    let (result, store) = run_with_max_steps(&counted(&probe, None), 2);
    assert_step_limit(result, 2, &["first"]);
    assert_eq!(probe.events(), Vec::<String>::new());
    assert_eq!(store.log, ["first"]);
}

#[test]
fn the_step_limit_inside_a_parallel_node_one_branch_at_a_time() {
    let probe = Arc::new(Probe::default());
    let flow = counted(&probe, Some(1));

    // a and b run whole, one after the other; c would be the fifth step.
    let (result, store) = run_with_max_steps(&flow, 4);

    // (`last` is not checked here: it lists neither par, still running, nor its finished
    // branches a and b.)
    assert!(matches!(result, Err(FlowError::StepLimit { limit: 4, .. })), "{result:?}");
    assert_eq!(probe.dropped(), 0);
    assert_eq!(store.log, ["first", "post a", "post b"]);
}

// ---------------------------------------------------------------------------------------------
// Cancellation
// ---------------------------------------------------------------------------------------------

#[test]
fn dropping_a_run_with_branches_in_flight_drops_them_and_the_flow_runs_again() {
    let probe = Arc::new(Probe::default());
    // a posts on the second poll; b and c are still in flight then.
    let mut flow = Flow::new();
    let first = flow.add("first", mark("first"));
    let par = flow.add("par", three(&probe, [1, 4, 8]).post(join_post));
    let next = flow.add("next", mark("next"));
    flow.then(first, par);
    flow.then(par, next);
    let mut store = Store::default();

    let mut cx = Context::from_waker(Waker::noop());
    let mut run = Box::pin(flow.run(&mut store));
    let mut polls = 0;
    while !(probe.now() == 2 && probe.events().contains(&"end par/a".to_string())) {
        assert!(polls < MAX_POLLS, "the branches never got in flight");
        if let Poll::Ready(result) = run.as_mut().poll(&mut cx) {
            panic!("the run ended before it was dropped: {result:?}");
        }
        polls += 1;
    }
    assert_eq!(polls, 2);
    assert_eq!(probe.dropped(), 0);
    drop(run);

    assert_eq!(probe.dropped(), 2, "b and c were dropped with the run");
    assert_eq!(probe.now(), 0);
    assert_eq!(store.log, ["first", "post a"], "the finished post stays; nothing else ran");
    assert_eq!(store.joined, Vec::<Vec<String>>::new());

    let mut fresh = Store::default();
    smol::block_on(flow.run(&mut fresh)).expect("a rerun after a dropped run succeeds");
    assert_eq!(fresh.log, ["first", "post a", "post b", "post c", "post par", "next"]);
    assert_eq!(fresh.joined, [strings(&["a!", "b!", "c!"])]);
    assert_eq!(probe.dropped(), 2, "no branch of the rerun was dropped");
    assert_eq!(probe.max_in_flight(), 3);
}

// ---------------------------------------------------------------------------------------------
// Empty parallel node
// ---------------------------------------------------------------------------------------------

#[test]
fn an_empty_parallel_node_goes_straight_to_its_post_with_no_actions() {
    for limit in [usize::MAX, 1] {
        let par = Parallel::new().max_in_flight(limit).post(|store: &mut Store, actions| {
            store.log.push(format!("post par with {} actions", actions.len()));
            Ok("empty".into())
        });
        let mut flow = Flow::new();
        flow.add("par", par);
        let mut store = Store::default();

        let action = smol::block_on(flow.run(&mut store)).unwrap();

        assert_eq!(action, "empty", "limit {limit}");
        assert_eq!(store.log, ["post par with 0 actions"], "limit {limit}");
    }

    let mut flow = Flow::new();
    flow.add("par", Parallel::<Store>::new());
    assert_eq!(smol::block_on(flow.run(&mut Store::default())).unwrap(), Action::DEFAULT);
}

#[test]
fn validate_and_run_look_inside_the_branches() {
    let probe = Arc::new(Probe::default());
    let par = Parallel::new().branch("a", branch("a", 0, &probe)).branch("f", Flow::<Store>::new());
    let flow = then_next(par);

    let empty = "flow `par/f` has no nodes; add one with `Flow::add` before running it";
    let err = flow.validate().unwrap_err();
    assert!(
        matches!(&err, FlowError::InvalidConfig { node, message, .. } if node == "par/f" && message == empty),
        "{err:?}"
    );

    let mut store = Store::default();
    let err = smol::block_on(flow.run(&mut store)).unwrap_err();
    assert!(
        matches!(&err, FlowError::InvalidConfig { node, message, .. } if node == "par/f" && message == empty),
        "{err:?}"
    );
    // A run checks the whole tree before it runs anything: no branch ran.
    assert!(store.log.is_empty(), "{:?}", store.log);
}

// ---------------------------------------------------------------------------------------------
// Executors
// ---------------------------------------------------------------------------------------------

async fn owned_run(flow: Arc<Flow<Store>>) -> (Result<Action, FlowError>, Store) {
    let mut store = Store::default();
    let result = flow.run(&mut store).await;
    (result, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawned_run_on_tokio_multi_thread_overlaps_its_branches() {
    let probe = Arc::new(Probe::default());
    let flow = Arc::new(then_next(three(&probe, [5, 1, 3]).post(join_post)));

    let (result, store) = tokio::spawn(owned_run(Arc::clone(&flow))).await.expect("no panic");

    assert_eq!(result.unwrap(), Action::DEFAULT);
    assert_eq!(store.log, ["post b", "post c", "post a", "post par", "next"]);
    assert_eq!(store.joined, [strings(&["a!", "b!", "c!"])]);
    assert_eq!(probe.max_in_flight(), 3);
    assert_eq!(Arc::strong_count(&flow), 1, "the task dropped its handle on the flow");
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

#[test]
#[should_panic(
    expected = "max_in_flight(0) would never start a job; use 1 or more (usize::MAX for no limit)"
)]
fn max_in_flight_zero_panics() {
    let _ = Parallel::<Store>::new().max_in_flight(0);
}

#[test]
#[should_panic(
    expected = "this parallel node already has a node named \"a\": give each node a name of its own"
)]
fn a_duplicate_branch_name_panics() {
    let probe = Arc::new(Probe::default());
    let _ = Parallel::new().branch("a", branch("a", 0, &probe)).branch("a", branch("b", 0, &probe));
}

#[test]
#[should_panic(
    expected = "node name \"a/b\" is not valid: give each node a non-empty name without `/`, `[` or `]`"
)]
fn an_invalid_branch_name_panics() {
    let probe = Arc::new(Probe::default());
    let _ = Parallel::new().branch("a/b", branch("a", 0, &probe));
}
