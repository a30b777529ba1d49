//! A panic in a node's `prep`, `exec`, `exec_fallback` or `post` reaches the caller as that
//! same panic — its own payload, neither caught, hidden nor rewrapped — wherever the node sits:
//! in a plain flow, a sequential or concurrent batch node (with other items in flight), a
//! nested flow, a `BatchFlow` or `BatchAsyncFlow` sub-run, a `Parallel` branch, and in a run
//! spawned on tokio's multi-thread runtime (a `JoinError` that `is_panic()`). Afterwards the
//! store holds exactly the posts that completed before the panic (a post that panics keeps only
//! what its own code wrote before panicking: nothing is rolled back), nothing after it has run,
//! and an observer saw the run end with one terminal event, `Cancelled`, last. The same flow
//! object, not rebuilt, then runs again to exactly the end of a run that never panicked — also
//! while other runs of it are in flight (in the same task, or on other threads), and after a
//! panic inside a post that held a `BatchAsyncFlow`'s store lock (each run makes its own).

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::task::{Context, Waker};

use futures::FutureExt;
use miniflow::{
    Action, BatchAsyncFlow, BatchFlow, BatchNode, Ctx, Error, Event, Flow, IntoNode, Node,
    Parallel, Params, Result, RunOptions, node_fn,
};

mod common;
use common::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Every panic this file provokes on purpose starts with this, so that [`quiet`] can tell them
/// from a failing assertion.
const TRAP: &str = "trap:";

/// Where a node panics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    Prep,
    Exec,
    /// `exec` fails every attempt, then `exec_fallback` panics.
    Fallback,
    Post,
}

const PHASES: [At; 4] = [At::Prep, At::Exec, At::Fallback, At::Post];

/// The store: every post that completed, in order, and where this run should panic.
#[derive(Debug, Default, Clone, PartialEq)]
struct Store {
    log: Vec<String>,
    /// The key of the node visit (see [`key_of`]) that panics, and in which phase.
    trap: Option<(String, At)>,
}

impl Store {
    fn trapped(key: &str, at: At) -> Self {
        Store { log: Vec::new(), trap: Some((key.to_string(), at)) }
    }

    fn trap_for(&self, key: &str) -> Option<At> {
        self.trap.as_ref().filter(|(k, _)| k == key).map(|&(_, at)| at)
    }

    /// Panics if the trap is set for `key` in phase `at`.
    fn spring(&self, key: &str, at: At) {
        if self.trap_for(key) == Some(at) {
            boom(key, at);
        }
    }
}

/// What the node visit `key` panics with in phase `at`.
fn message(key: &str, at: At) -> String {
    format!("{TRAP} {key} panicked in {at:?}")
}

/// Panics with [`message`]: a `String` payload.
fn boom(key: &str, at: At) -> ! {
    panic!("{}", message(key, at))
}

/// A visit's key: the node's name, with `#i` inside sub-run `i` of a batch flow.
fn key_of(name: &str, params: &Params) -> Result<String> {
    Ok(match params.contains("i") {
        true => format!("{name}#{}", params.int("i")?),
        false => name.to_string(),
    })
}

/// A payload that is not a string.
#[derive(Debug, PartialEq)]
struct Custom(u32);

/// Keeps the default panic hook from printing the panics this file provokes on purpose (every
/// other panic, such as a failed assertion, still prints).
fn quiet() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let ours = payload.downcast_ref::<String>().is_some_and(|s| s.starts_with(TRAP))
                || payload.downcast_ref::<&str>().is_some_and(|s| s.starts_with(TRAP))
                || payload.is::<Custom>();
            if !ours {
                default(info);
            }
        }));
    });
}

/// A payload as text, for assertion messages.
fn describe_payload(payload: &(dyn Any + Send)) -> String {
    match (payload.downcast_ref::<String>(), payload.downcast_ref::<&str>()) {
        (Some(s), _) => format!("String {s:?}"),
        (_, Some(s)) => format!("&str {s:?}"),
        _ => format!("a payload of another type ({:?})", payload.type_id()),
    }
}

/// Asserts that `payload` is exactly the `String` the trap at `key`/`at` panicked with.
fn assert_payload(payload: &(dyn Any + Send), key: &str, at: At) {
    assert_eq!(
        payload.downcast_ref::<String>(),
        Some(&message(key, at)),
        "{key} {at:?}: the caller got {} instead of the node's own message",
        describe_payload(payload)
    );
}

/// Calls `run`, which must panic, and returns the payload.
fn catch<R: fmt::Debug>(run: impl FnOnce() -> R) -> Box<dyn Any + Send> {
    match panic::catch_unwind(AssertUnwindSafe(run)) {
        Ok(result) => panic!("expected the run to panic, but it returned {result:?}"),
        Err(payload) => payload,
    }
}

/// One line per event, without the durations.
fn describe(event: &Event<'_>) -> String {
    match event {
        Event::RunStart => "run start".into(),
        Event::NodeStart { node, .. } => format!("start {node}"),
        Event::NodeEnd { node, action, .. } => format!("end {node} {action}"),
        Event::Retry { node, .. } => format!("retry {node}"),
        Event::Fallback { node, .. } => format!("fallback {node}"),
        Event::Finished { action, .. } => format!("finished {action}"),
        Event::Failed { error, .. } => format!("failed {error}"),
        Event::Cancelled => "cancelled".into(),
        other => format!("other {other}"),
    }
}

fn is_terminal(line: &str) -> bool {
    line.starts_with("finished ") || line.starts_with("failed ") || line == "cancelled"
}

/// Asserts that a run's events start with `RunStart` and end with `last`, its only terminal
/// event.
fn assert_one_terminal(events: &[String], last: &str) {
    assert_eq!(events.first().map(String::as_str), Some("run start"), "{events:#?}");
    assert_eq!(events.iter().filter(|e| is_terminal(e)).count(), 1, "{events:#?}");
    assert_eq!(events.last().map(String::as_str), Some(last), "{events:#?}");
}

/// Runs `flow` with the trap at `key`/`at` and an observer, under `smol::block_on`; it must
/// panic. Returns the payload, the store and the events.
fn run_trapped(flow: &Flow<Store>, key: &str, at: At) -> (Box<dyn Any + Send>, Store, Vec<String>) {
    let mut store = Store::trapped(key, at);
    let events = Mutex::new(Vec::new());
    let record = |event: &Event<'_>| events.lock().unwrap().push(describe(event));
    let payload =
        catch(|| smol::block_on(flow.run_with(&mut store, RunOptions::new().observer(&record))));
    (payload, store, events.into_inner().unwrap())
}

/// Runs `flow` without a trap and an observer; it must succeed. Returns its action, the store
/// and the events.
fn run_clean(flow: &Flow<Store>) -> (Action, Store, Vec<String>) {
    let mut store = Store::default();
    let events = Mutex::new(Vec::new());
    let record = |event: &Event<'_>| events.lock().unwrap().push(describe(event));
    let result = smol::block_on(flow.run_with(&mut store, RunOptions::new().observer(&record)));
    let action = result.unwrap_or_else(|e| panic!("the run after the panic failed: {e}"));
    (action, store, events.into_inner().unwrap())
}

/// Twice over: the run with the trap at `key`/`at` panics with the node's own message, leaves
/// the store with exactly `before` in its log, reaches no node after it, and its observer sees
/// `Cancelled` last; then the same flow runs again to "done" with exactly `clean`.
fn check(flow: &Flow<Store>, key: &str, at: At, before: &[&str], clean: &[&str]) {
    for round in 0..2 {
        let (payload, store, events) = run_trapped(flow, key, at);
        assert_payload(&*payload, key, at);
        assert_eq!(store.log, before, "{key} {at:?} (round {round}): the store after the panic");
        assert_one_terminal(&events, "cancelled");
        assert!(
            !events.iter().any(|e| e == "start finish" || e.starts_with("end part ")),
            "{key} {at:?}: something ran or ended after the panic: {events:#?}"
        );

        let (action, store, events) = run_clean(flow);
        assert_eq!(action, "done", "{key} {at:?} (round {round}): the run after the panic");
        assert_eq!(store.log, clean, "{key} {at:?} (round {round}): the run after the panic");
        assert_one_terminal(&events, "finished done");
    }
}

/// A node that logs its key in `post`, after `exec` yielded `yields` times (or the sub-run's
/// param `y`), and panics where the store's trap says. Two attempts, so that a trap in the
/// fallback comes after a retry.
struct Rec {
    name: &'static str,
    yields: usize,
}

fn rec(name: &'static str, yields: usize) -> Rec {
    Rec { name, yields }
}

/// What `Rec::prep` hands on.
struct Visit {
    key: String,
    trap: Option<At>,
    yields: usize,
}

impl Node<Store> for Rec {
    type Prep = Visit;
    type Output = String;

    fn prep(&self, store: &Store, params: &Params) -> Result<Visit> {
        let key = key_of(self.name, params)?;
        store.spring(&key, At::Prep);
        let yields = match params.contains("y") {
            true => usize::try_from(params.int("y")?)?,
            false => self.yields,
        };
        Ok(Visit { trap: store.trap_for(&key), key, yields })
    }

    async fn exec(&self, visit: &Visit, _: Ctx<'_>) -> Result<String> {
        yield_times(visit.yields).await;
        match visit.trap {
            Some(At::Exec) => boom(&visit.key, At::Exec),
            Some(At::Fallback) => Err(failure("exec failed")),
            _ => Ok(visit.key.clone()),
        }
    }

    async fn exec_fallback(&self, visit: &Visit, error: Error, _: Ctx<'_>) -> Result<String> {
        match visit.trap {
            Some(At::Fallback) => boom(&visit.key, At::Fallback),
            _ => Err(error),
        }
    }

    fn post(&self, store: &mut Store, visit: Visit, output: String) -> Result<Action> {
        store.spring(&visit.key, At::Post);
        store.log.push(output);
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        2
    }
}

/// A batch node: item `i` yields `yields[i]` times; its post logs `"key=out0,out1,…"`. Its
/// prep and post are trapped under its own key, item `i` under `"key[i]"`. The probe sees each
/// attempt start (`"start key[i]"`), each success (`"end key[i]"`), and counts the attempts
/// that never finished.
struct Items {
    name: &'static str,
    yields: Vec<usize>,
    limit: usize,
    probe: Arc<Probe>,
}

fn items(limit: usize, probe: &Arc<Probe>) -> Items {
    Items { name: "items", yields: vec![0, 10, 1, 10], limit, probe: Arc::clone(probe) }
}

struct Item {
    batch: String,
    key: String,
    trap: Option<At>,
    yields: usize,
}

impl BatchNode<Store> for Items {
    type Item = Item;
    type Output = String;

    fn prep(&self, store: &Store, params: &Params) -> Result<Vec<Item>> {
        let batch = key_of(self.name, params)?;
        store.spring(&batch, At::Prep);
        let item = |(i, &yields): (usize, &usize)| {
            let key = format!("{batch}[{i}]");
            Item { batch: batch.clone(), trap: store.trap_for(&key), key, yields }
        };
        Ok(self.yields.iter().enumerate().map(item).collect())
    }

    async fn exec(&self, item: &Item, _: Ctx<'_>) -> Result<String> {
        let flight = InFlight::enter(&self.probe);
        self.probe.event(format!("start {}", item.key));
        yield_times(item.yields).await;
        match item.trap {
            // `flight` is still alive: the unwinding drops it unfinished.
            Some(At::Exec) => boom(&item.key, At::Exec),
            Some(At::Fallback) => {
                flight.finish();
                Err(failure("exec failed"))
            }
            _ => {
                flight.finish();
                self.probe.event(format!("end {}", item.key));
                Ok(item.key.clone())
            }
        }
    }

    async fn exec_fallback(&self, item: &Item, error: Error, _: Ctx<'_>) -> Result<String> {
        match item.trap {
            Some(At::Fallback) => boom(&item.key, At::Fallback),
            _ => Err(error),
        }
    }

    fn post(
        &self,
        store: &mut Store,
        _: &Params,
        items: Vec<Item>,
        outputs: Vec<String>,
    ) -> Result<Action> {
        let batch = match items.first() {
            Some(item) => item.batch.clone(),
            None => self.name.to_string(),
        };
        store.spring(&batch, At::Post);
        store.log.push(format!("{batch}={}", outputs.join(",")));
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        2
    }

    fn max_in_flight(&self) -> usize {
        self.limit
    }
}

/// `first` → `part` → `finish`, which logs "finish" and ends the run with "done".
fn around<M>(part: impl IntoNode<Store, M>) -> Flow<Store> {
    let mut flow = Flow::new();
    let first = flow.add("first", rec("first", 1));
    let part = flow.add("part", part);
    let finish = flow.add(
        "finish",
        node_fn(|store: &mut Store, _: &Params| {
            store.log.push("finish".into());
            Ok("done".into())
        }),
    );
    flow.then(first, part);
    flow.then(part, finish);
    flow
}

/// A flow of two `Rec`s, `a` → `b`.
fn two_step(a: &'static str, b: &'static str, yields: usize) -> Flow<Store> {
    let mut flow = Flow::new();
    let a = flow.add(a, rec(a, yields));
    let b = flow.add(b, rec(b, yields));
    flow.then(a, b);
    flow
}

/// One params set per entry of `yields`: `i` (its index) and `y`.
fn sets(yields: &[i64]) -> Vec<Params> {
    let set = |(i, &y): (usize, &i64)| Params::new().with("i", i as i64).with("y", y);
    yields.iter().enumerate().map(set).collect()
}

/// A `BatchFlow` over three sub-runs of `bf_a` → `bf_b`; its own prep and post are trapped
/// under "bf".
fn batch_flow_part() -> BatchFlow<Store> {
    BatchFlow::new(two_step("bf_a", "bf_b", 1), |store: &Store, _: &Params| {
        store.spring("bf", At::Prep);
        Ok(sets(&[1, 1, 1]))
    })
    .post(|store, _, actions| {
        store.spring("bf", At::Post);
        store.log.push(format!("bf {}", actions.len()));
        Ok(Action::DEFAULT)
    })
}

/// A `BatchAsyncFlow` over three concurrent sub-runs of `ba_a` → `ba_b`: sub-run 0 finishes at
/// once, sub-run 1 after a few yields, sub-run 2 much later. Its own prep and post are trapped
/// under "ba".
fn batch_async_part() -> BatchAsyncFlow<Store> {
    BatchAsyncFlow::new(two_step("ba_a", "ba_b", 1), |store: &Store, _: &Params| {
        store.spring("ba", At::Prep);
        Ok(sets(&[0, 2, 50]))
    })
    .post(|store, _, actions| {
        store.spring("ba", At::Post);
        store.log.push(format!("ba {}", actions.len()));
        Ok(Action::DEFAULT)
    })
}

/// A `Parallel` of four branches that finish one after another: `p_fast` at once, `p_mid`
/// after a yield, the flow `p_a` → `p_b` after 6 + 6, `p_slow` after 50. Its post is trapped
/// under "parallel".
fn parallel_part() -> Parallel<Store> {
    Parallel::new()
        .branch("fast", rec("p_fast", 0))
        .branch("mid", rec("p_mid", 1))
        .branch("sub", two_step("p_a", "p_b", 6))
        .branch("slow", rec("p_slow", 50))
        .post(|store, actions| {
            store.spring("parallel", At::Post);
            store.log.push(format!("parallel {}", actions.len()));
            Ok(Action::DEFAULT)
        })
}

// ---------------------------------------------------------------------------------------------
// Where the node sits
// ---------------------------------------------------------------------------------------------

#[test]
fn plain_node_panic_reaches_the_caller_and_the_flow_runs_again() {
    quiet();
    let flow = around(rec("mid", 1));
    for at in PHASES {
        check(&flow, "mid", at, &["first"], &["first", "mid", "finish"]);
    }
}

#[test]
fn plain_node_panic_ends_the_observed_run_with_cancelled_and_nothing_else() {
    quiet();
    let flow = around(rec("mid", 1));
    for at in PHASES {
        let (payload, store, events) = run_trapped(&flow, "mid", at);
        assert_payload(&*payload, "mid", at);
        assert_eq!(store.log, ["first"]);
        let mut expected = vec!["run start", "start first", "end first default", "start part"];
        if at == At::Fallback {
            expected.extend(["retry part", "fallback part"]);
        }
        expected.push("cancelled");
        assert_eq!(events, expected, "{at:?}");
    }
    let (_, _, events) = run_clean(&flow);
    assert_eq!(
        events,
        [
            "run start",
            "start first",
            "end first default",
            "start part",
            "end part default",
            "start finish",
            "end finish done",
            "finished done",
        ]
    );
}

#[test]
fn sequential_batch_node_panic_stops_at_the_item_and_the_flow_runs_again() {
    quiet();
    let probe = Arc::new(Probe::default());
    let flow = around(items(1, &probe));
    let clean = ["first", "items=items[0],items[1],items[2],items[3]", "finish"];
    let all_items = [
        "start items[0]",
        "end items[0]",
        "start items[1]",
        "end items[1]",
        "start items[2]",
        "end items[2]",
        "start items[3]",
        "end items[3]",
    ];
    for (key, at, seen) in [
        ("items", At::Prep, &[][..]),
        ("items[2]", At::Exec, &all_items[..5]),
        ("items[2]", At::Fallback, &[&all_items[..5], &["start items[2]"][..]].concat()[..]),
        ("items", At::Post, &all_items[..]),
    ] {
        let mark = probe.events().len();
        let (payload, store, events) = run_trapped(&flow, key, at);
        assert_payload(&*payload, key, at);
        assert_eq!(store.log, ["first"], "{key} {at:?}");
        assert_one_terminal(&events, "cancelled");
        // Items after the panicking one never started.
        assert_eq!(probe.events()[mark..], *seen, "{key} {at:?}");
        assert_eq!(probe.now(), 0, "{key} {at:?}: an item is still in flight");
        check(&flow, key, at, &["first"], &clean);
    }
}

#[test]
fn concurrent_batch_node_panic_drops_the_items_in_flight_and_the_flow_runs_again() {
    quiet();
    let probe = Arc::new(Probe::default());
    let flow = around(items(4, &probe));
    let clean = ["first", "items=items[0],items[1],items[2],items[3]", "finish"];
    let started = ["start items[0]", "start items[1]", "start items[2]", "start items[3]"];
    let ended = ["end items[0]", "end items[1]", "end items[2]", "end items[3]"];
    // Item 2 panics after one yield, while items 1 and 3 are still yielding (10 times each):
    // only item 0 (no yield) has finished. Under `Fallback`, item 2's two attempts finished
    // (failing) before its fallback panicked.
    for (key, at, mut seen, dropped) in [
        ("items", At::Prep, vec![], 0),
        ("items[2]", At::Exec, [&started[..], &ended[..1]].concat(), 3),
        ("items[2]", At::Fallback, [&started[..], &ended[..1], &started[2..3]].concat(), 2),
        ("items", At::Post, [started, ended].concat(), 0),
    ] {
        let (mark, dropped_before) = (probe.events().len(), probe.dropped());
        let (payload, store, events) = run_trapped(&flow, key, at);
        assert_payload(&*payload, key, at);
        assert_eq!(store.log, ["first"], "{key} {at:?}: the batch's post must not have run");
        assert_one_terminal(&events, "cancelled");
        let mut new_events = probe.events()[mark..].to_vec();
        new_events.sort();
        seen.sort();
        assert_eq!(new_events, seen, "{key} {at:?}");
        assert_eq!(probe.now(), 0, "{key} {at:?}: an item is still in flight after the panic");
        assert_eq!(probe.dropped() - dropped_before, dropped, "{key} {at:?}: items dropped");
        check(&flow, key, at, &["first"], &clean);
    }
    // The items really overlapped: 1, 2 and 3 (item 0 finishes before item 3 starts).
    assert_eq!(probe.max_in_flight(), 3);
}

/// `in_a` → `in_b` → the flow `in_c` → `in_d`: two levels of nesting.
fn nested_part() -> Flow<Store> {
    let mut inner = Flow::new();
    let a = inner.add("in_a", rec("in_a", 1));
    let b = inner.add("in_b", rec("in_b", 1));
    let deeper = inner.add("deeper", two_step("in_c", "in_d", 1));
    inner.then(a, b);
    inner.then(b, deeper);
    inner
}

#[test]
fn nested_flow_panic_reaches_the_caller_and_the_flow_runs_again() {
    quiet();
    let flow = around(nested_part());
    let clean = ["first", "in_a", "in_b", "in_c", "in_d", "finish"];
    for at in PHASES {
        check(&flow, "in_b", at, &clean[..2], &clean);
        check(&flow, "in_d", at, &clean[..4], &clean);
    }
}

#[test]
fn batch_flow_sub_run_panic_reaches_the_caller_and_the_flow_runs_again() {
    quiet();
    let flow = around(batch_flow_part());
    let clean =
        ["first", "bf_a#0", "bf_b#0", "bf_a#1", "bf_b#1", "bf_a#2", "bf_b#2", "bf 3", "finish"];
    for at in PHASES {
        // The second sub-run's second node: the first sub-run and half the second are done.
        check(&flow, "bf_b#1", at, &clean[..4], &clean);
    }
    // The batch flow's own prep and post.
    check(&flow, "bf", At::Prep, &clean[..1], &clean);
    check(&flow, "bf", At::Post, &clean[..7], &clean);
}

#[test]
fn batch_async_flow_sub_run_panic_reaches_the_caller_and_the_flow_runs_again() {
    quiet();
    let flow = around(batch_async_part());
    let clean =
        ["first", "ba_a#0", "ba_b#0", "ba_a#1", "ba_b#1", "ba_a#2", "ba_b#2", "ba 3", "finish"];
    for at in PHASES {
        // Sub-run 1 panics while sub-run 2 is still in its first exec: sub-run 0 is done, and
        // sub-run 1's first node. A trap in a post panics inside the lock the concurrent
        // sub-runs share (poisoning it); the next run makes its own.
        check(&flow, "ba_b#1", at, &clean[..4], &clean);
    }
    // The batch flow's own prep and post.
    check(&flow, "ba", At::Prep, &clean[..1], &clean);
    check(&flow, "ba", At::Post, &clean[..7], &clean);
}

#[test]
fn parallel_branch_panic_reaches_the_caller_and_the_flow_runs_again() {
    quiet();
    let flow = around(parallel_part());
    let clean = ["first", "p_fast", "p_mid", "p_a", "p_b", "p_slow", "parallel 4", "finish"];
    for at in PHASES {
        // A node branch, while the others are in flight (`p_fast` has finished).
        check(&flow, "p_mid", at, &clean[..2], &clean);
        // A node inside a flow branch, while `p_slow` is in flight.
        check(&flow, "p_b", at, &clean[..4], &clean);
    }
    // The parallel node's own post.
    check(&flow, "parallel", At::Post, &clean[..6], &clean);
}

/// A `BatchAsyncFlow` whose sub-runs each run `dx` → a `Parallel` of `dp` and a concurrent
/// batch node `dq` → `dz`: the parallel node shares the batch flow's store lock rather than
/// making its own.
fn deep_part() -> BatchAsyncFlow<Store> {
    let probe = Arc::new(Probe::default());
    let both = Parallel::new()
        .branch("p", rec("dp", 1))
        .branch("q", Items { name: "dq", yields: vec![0, 0], limit: 2, probe });
    let mut inner = Flow::new();
    let dx = inner.add("dx", rec("dx", 1));
    let both = inner.add("both", both);
    let dz = inner.add("dz", rec("dz", 1));
    inner.then(dx, both);
    inner.then(both, dz);
    BatchAsyncFlow::new(inner, |_: &Store, _: &Params| Ok(sets(&[0, 2, 50]))).max_in_flight(3)
}

#[test]
fn panic_deep_inside_concurrent_sub_runs_reaches_the_caller_and_the_flow_runs_again() {
    quiet();
    let flow = around(deep_part());
    #[rustfmt::skip]
    let clean = [
        "first",
        "dx#0", "dp#0", "dq#0=dq#0[0],dq#0[1]", "dz#0",
        "dx#1", "dq#1=dq#1[0],dq#1[1]", "dp#1", "dz#1",
        "dx#2", "dq#2=dq#2[0],dq#2[1]", "dp#2", "dz#2",
        "finish",
    ];
    for at in PHASES {
        // Sub-run 1's parallel branch `dp`: its prep runs before its sibling `dq` starts; by
        // the time its exec has yielded, `dq` has posted. Sub-run 2 has posted nothing.
        let before = if at == At::Prep { &clean[..6] } else { &clean[..7] };
        check(&flow, "dp#1", at, before, &clean);
    }
    for at in [At::Prep, At::Post] {
        check(&flow, "dq#1", at, &clean[..6], &clean);
    }
    for at in [At::Exec, At::Fallback] {
        check(&flow, "dq#1[1]", at, &clean[..6], &clean);
    }
}

// ---------------------------------------------------------------------------------------------
// What the panic carries, and what the store keeps
// ---------------------------------------------------------------------------------------------

#[test]
fn payloads_of_any_type_pass_through_untouched() {
    quiet();
    // A literal message (a `&'static str` payload) and a payload of the user's own type, from
    // two branches of a parallel node inside a nested flow.
    let literal = node_fn(|store: &mut Store, _: &Params| {
        if store.trap_for("literal").is_some() {
            panic!("trap: a literal message");
        }
        store.log.push("literal".into());
        Ok(Action::DEFAULT)
    });
    let custom = node_fn(|store: &mut Store, _: &Params| {
        if store.trap_for("custom").is_some() {
            panic::panic_any(Custom(42));
        }
        store.log.push("custom".into());
        Ok(Action::DEFAULT)
    });
    let mut inner = Flow::new();
    inner.add("both", Parallel::new().branch("literal", literal).branch("custom", custom));
    let flow = around(inner);
    let clean = ["first", "literal", "custom", "finish"];

    // Under `futures::executor::block_on`.
    let mut store = Store::trapped("literal", At::Post);
    let payload = catch(|| futures::executor::block_on(flow.run(&mut store)));
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"trap: a literal message"));
    assert_eq!(store.log, ["first"]);

    let mut store = Store::trapped("custom", At::Post);
    let payload = catch(|| futures::executor::block_on(flow.run(&mut store)));
    assert_eq!(payload.downcast_ref::<Custom>(), Some(&Custom(42)));
    assert_eq!(store.log, ["first", "literal"]);

    // Caught as a future (`FutureExt::catch_unwind`), then the same flow runs again in the same
    // task.
    smol::block_on(async {
        let mut store = Store::trapped("custom", At::Post);
        let caught = AssertUnwindSafe(flow.run(&mut store)).catch_unwind().await;
        let payload = caught.expect_err("the run must panic");
        assert_eq!(payload.downcast_ref::<Custom>(), Some(&Custom(42)));
        assert_eq!(store.log, ["first", "literal"]);

        let mut store = Store::default();
        assert_eq!(flow.run(&mut store).await.unwrap(), "done");
        assert_eq!(store.log, clean);
    });
}

/// A node whose post writes part of its result, then panics if the store's trap is set for
/// its key (in any phase).
fn half() -> impl Node<Store> {
    node_fn(|store: &mut Store, params: &Params| {
        let key = key_of("half", params)?;
        if store.trap_for(&key).is_some() {
            store.log.push(format!("{key} (half)"));
            boom(&key, At::Post);
        }
        store.log.push(key);
        Ok(Action::DEFAULT)
    })
}

#[test]
fn a_post_that_panics_midway_keeps_what_it_wrote_and_nothing_after_runs() {
    quiet();
    // The crate rolls nothing back: what the user's own post wrote before it panicked stays,
    // every post that completed stays, and nothing after the panic runs.
    let flow = around(half());
    check(&flow, "half", At::Post, &["first", "half (half)"], &["first", "half", "finish"]);

    // The same inside concurrent sub-runs, where the post runs under the store lock the
    // sub-runs share: the panic poisons that lock, but the store it guards is the caller's,
    // readable at once, and the next run of the flow makes a lock of its own.
    let mut inner = Flow::new();
    let a = inner.add("h_a", rec("h_a", 1));
    let b = inner.add("half", half());
    inner.then(a, b);
    let flow = around(BatchAsyncFlow::new(inner, |_: &Store, _: &Params| Ok(sets(&[0, 1, 50]))));
    let clean = ["first", "h_a#0", "half#0", "h_a#1", "half#1", "h_a#2", "half#2", "finish"];
    let before = ["first", "h_a#0", "half#0", "h_a#1", "half#1 (half)"];
    check(&flow, "half#1", At::Post, &before, &clean);
}

// ---------------------------------------------------------------------------------------------
// The same flow, shared by other runs
// ---------------------------------------------------------------------------------------------

/// A node that counts its visits across every run of the flow (its own state, as the FAQ
/// allows) and panics in `exec` on visit `panic_on` only.
struct Flaky {
    visits: AtomicUsize,
    panic_on: usize,
}

impl Node<Store> for Flaky {
    type Prep = ();
    type Output = usize;

    fn prep(&self, _: &Store, _: &Params) -> Result<()> {
        Ok(())
    }

    async fn exec(&self, _: &(), _: Ctx<'_>) -> Result<usize> {
        let visit = self.visits.fetch_add(1, Ordering::SeqCst) + 1;
        yield_times(1).await;
        if visit == self.panic_on {
            panic!("{TRAP} visit {visit}");
        }
        Ok(visit)
    }

    fn post(&self, store: &mut Store, _: (), visit: usize) -> Result<Action> {
        store.log.push(format!("visit {visit}"));
        Ok(Action::DEFAULT)
    }
}

#[test]
fn a_node_that_panics_on_one_visit_of_a_loop_leaves_the_flow_ready_for_the_next_run() {
    quiet();
    let mut flow = Flow::new();
    let flaky = flow.add("flaky", Flaky { visits: AtomicUsize::new(0), panic_on: 3 });
    let check = flow.add(
        "check",
        node_fn(|store: &mut Store, _: &Params| {
            Ok(if store.log.len() < 4 { "again" } else { "enough" }.into())
        }),
    );
    flow.then(flaky, check);
    flow.edge(check, "again", flaky);
    flow.end(check, "enough");

    // Visits 1 and 2 post; visit 3 panics.
    let mut store = Store::default();
    let payload = catch(|| futures::executor::block_on(flow.run(&mut store)));
    assert_eq!(payload.downcast_ref::<String>().map(String::as_str), Some("trap: visit 3"));
    assert_eq!(store.log, ["visit 1", "visit 2"]);

    // The same flow object: visits 4 to 7, all the way round the loop.
    let mut store = Store::default();
    assert_eq!(futures::executor::block_on(flow.run(&mut store)).unwrap(), "enough");
    assert_eq!(store.log, ["visit 4", "visit 5", "visit 6", "visit 7"]);
}

#[test]
fn a_run_of_the_same_flow_in_flight_in_the_same_task_is_unaffected_by_another_runs_panic() {
    quiet();
    let flow = around(parallel_part());
    let clean = ["first", "p_fast", "p_mid", "p_a", "p_b", "p_slow", "parallel 4", "finish"];

    // Run A, polled by hand until its parallel branches are in flight.
    let mut a = Store::default();
    {
        let mut run_a = pin!(flow.run(&mut a));
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..5 {
            assert!(run_a.as_mut().poll(&mut cx).is_pending(), "run A finished too early");
        }

        // Runs B of the same flow panic, in the middle and at the end of the parallel node...
        for (key, at, before) in
            [("p_b", At::Exec, &clean[..4]), ("parallel", At::Post, &clean[..6])]
        {
            let (payload, store, events) = run_trapped(&flow, key, at);
            assert_payload(&*payload, key, at);
            assert_eq!(store.log, before);
            assert_one_terminal(&events, "cancelled");
        }

        // ...and run A goes on to its end as if nothing had happened.
        let action = smol::block_on(run_a).unwrap();
        assert_eq!(action, "done");
    }
    assert_eq!(a.log, clean);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokio_spawned_run_panic_is_a_join_error_and_the_shared_flow_keeps_serving() {
    quiet();
    let flow = Arc::new(around(batch_async_part()));
    let clean =
        ["first", "ba_a#0", "ba_b#0", "ba_a#1", "ba_b#1", "ba_a#2", "ba_b#2", "ba 3", "finish"];
    // Eight runs of the one flow at once, on four threads; run 3 panics in an exec.
    let trapped = |n: usize| n == 3;
    let mut tasks = Vec::new();
    for n in 0..8 {
        let flow = Arc::clone(&flow);
        let events = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&events);
        let mut store = match trapped(n) {
            true => Store::trapped("ba_b#1", At::Exec),
            false => Store::default(),
        };
        let task = tokio::spawn(async move {
            let record = move |event: &Event<'_>| record.lock().unwrap().push(describe(event));
            let result = flow.run_with(&mut store, RunOptions::new().observer(&record)).await;
            (result, store)
        });
        tasks.push((n, events, task));
    }
    for (n, events, task) in tasks {
        let joined = task.await;
        let events = events.lock().unwrap().clone();
        match joined {
            Ok((result, store)) => {
                assert!(!trapped(n), "run {n} should have panicked");
                assert_eq!(result.unwrap(), "done", "run {n}");
                assert_eq!(store.log, clean, "run {n}");
                assert_one_terminal(&events, "finished done");
            }
            Err(error) => {
                assert!(trapped(n), "run {n} panicked: {error}");
                assert!(error.is_panic(), "run {n}: {error}");
                assert_payload(&*error.into_panic(), "ba_b#1", At::Exec);
                assert_one_terminal(&events, "cancelled");
            }
        }
    }

    // Afterwards, the same flow: a spawned run panics in a post, then one runs clean.
    let spawn = |store: Store| {
        let flow = Arc::clone(&flow);
        tokio::spawn(async move {
            let mut store = store;
            let result = flow.run(&mut store).await;
            (result, store)
        })
    };
    let error = spawn(Store::trapped("ba_b#2", At::Post)).await.unwrap_err();
    assert!(error.is_panic());
    assert_payload(&*error.into_panic(), "ba_b#2", At::Post);
    let (result, store) = spawn(Store::default()).await.expect("the run after the panic");
    assert_eq!(result.unwrap(), "done");
    assert_eq!(store.log, clean);
}
