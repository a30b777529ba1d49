//! Concurrent sub-runs: `BatchAsyncFlow` sub-runs really overlap, up to
//! `min(limit, n)` and never more; every sub-run's `post` lands exactly once in the shared
//! store; the batch post sees actions in input order whatever the finishing order; the first
//! failure is returned at once, the siblings in flight are dropped and completed posts stay;
//! `BatchFlow` runs sub-runs strictly one after another; a concurrent batch node inside a
//! concurrent sub-run keeps its order; `max_in_flight(0)` panics.

use std::collections::BTreeMap;
use std::error::Error as _;
use std::sync::Arc;

use miniflow::{
    Action, BatchAsyncFlow, BatchFlow, BatchNode, Ctx, Flow, FlowError, Node, Params, Phase, Result,
};

mod common;
use common::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Store {
    /// Each sub-run writes its own key.
    results: BTreeMap<i64, String>,
    /// The order in which the sub-runs' posts ran.
    post_order: Vec<i64>,
    /// What each batch post received: the `i` of every params set, and the actions.
    batch_posts: Vec<(Vec<i64>, Vec<String>)>,
}

/// Params for sub-run `i`: it yields `yields` times in exec, then fails if `fail`.
fn job(i: i64, yields: usize, fail: bool) -> Params {
    Params::new().with("i", i).with("yields", yields as i64).with("fail", fail)
}

/// The inner node of every sub-run: reads its params, awaits, writes `results[i]`, and ends
/// the sub-run with the action `"a{i}"`.
struct Job {
    probe: Arc<Probe>,
}

impl Node<Store> for Job {
    type Prep = (i64, usize, bool);
    type Output = String;

    fn prep(&self, _: &Store, params: &Params) -> Result<(i64, usize, bool)> {
        Ok((params.int("i")?, params.int("yields")? as usize, params.bool("fail")?))
    }

    async fn exec(&self, &(i, yields, fail): &(i64, usize, bool), _cx: Ctx<'_>) -> Result<String> {
        let in_flight = InFlight::enter(&self.probe);
        self.probe.event(format!("start {i}"));
        yield_times(yields).await;
        self.probe.event(format!("end {i}"));
        in_flight.finish();
        if fail {
            Err(Box::new(Failure(format!("job {i} failed"))))
        } else {
            Ok(format!("done {i}"))
        }
    }

    fn post(
        &self,
        store: &mut Store,
        (i, _, _): (i64, usize, bool),
        output: String,
    ) -> Result<Action> {
        assert!(store.results.insert(i, output).is_none(), "post of sub-run {i} ran twice");
        store.post_order.push(i);
        Ok(format!("a{i}").into())
    }
}

fn job_flow(probe: &Arc<Probe>) -> Flow<Store> {
    let mut inner = Flow::new();
    inner.add("job", Job { probe: probe.clone() });
    inner
}

/// The batch post every batch flow here uses: records what it was given.
fn record_batch_post(store: &mut Store, sets: Vec<Params>, actions: Vec<Action>) -> Result<Action> {
    let ids = sets.iter().map(|p| p.int("i")).collect::<Result<Vec<_>, _>>()?;
    let actions = actions.iter().map(|a| a.to_string()).collect();
    store.batch_posts.push((ids, actions));
    Ok("batch done".into())
}

/// A `BatchAsyncFlow` named `fan` over `sets`, with `limit` when given, and the recording post.
fn fan_out(probe: &Arc<Probe>, sets: Vec<Params>, limit: Option<usize>) -> Flow<Store> {
    let mut batch =
        BatchAsyncFlow::new(job_flow(probe), move |_: &Store, _: &Params| Ok(sets.clone()))
            .post(record_batch_post);
    if let Some(limit) = limit {
        batch = batch.max_in_flight(limit);
    }
    let mut flow = Flow::new();
    flow.add("fan", batch);
    flow
}

fn done_map(ids: impl IntoIterator<Item = i64>) -> BTreeMap<i64, String> {
    ids.into_iter().map(|i| (i, format!("done {i}"))).collect()
}

fn action_names(ids: impl IntoIterator<Item = i64>) -> Vec<String> {
    ids.into_iter().map(|i| format!("a{i}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Overlap and limits
// ---------------------------------------------------------------------------------------------

#[test]
fn batch_async_flow_sub_runs_overlap_up_to_min_of_limit_and_count() {
    let n = 6;
    for limit in [None, Some(1), Some(2), Some(4), Some(6), Some(10), Some(usize::MAX)] {
        let probe = Arc::new(Probe::default());
        let flow = fan_out(&probe, (0..n).map(|i| job(i, 3, false)).collect(), limit);
        let mut store = Store::default();

        smol::block_on(flow.run(&mut store)).unwrap();

        let expected = limit.unwrap_or(usize::MAX).min(n as usize);
        assert_eq!(probe.max_in_flight(), expected, "limit {limit:?}");
        assert_eq!(store.results, done_map(0..n), "limit {limit:?}");
    }
}

#[test]
fn batch_async_flow_sub_runs_overlap_under_the_futures_executor() {
    let probe = Arc::new(Probe::default());
    let flow = fan_out(&probe, (0..5).map(|i| job(i, 3, false)).collect(), None);
    let mut store = Store::default();

    futures::executor::block_on(flow.run(&mut store)).unwrap();

    assert_eq!(probe.max_in_flight(), 5);
    assert_eq!(store.results, done_map(0..5));
}

#[test]
fn batch_async_flow_limit_of_two_is_never_exceeded() {
    let probe = Arc::new(Probe::default());
    // Uneven durations so that sub-runs keep leaving and entering at different times.
    let sets = (0..12).map(|i| job(i, 1 + (i as usize * 7) % 5, false)).collect();
    let flow = fan_out(&probe, sets, Some(2));
    let mut store = Store::default();

    smol::block_on(flow.run(&mut store)).unwrap();

    assert_eq!(probe.max_in_flight(), 2);
    assert_eq!(store.results, done_map(0..12));
}

// ---------------------------------------------------------------------------------------------
// Shared store and order
// ---------------------------------------------------------------------------------------------

#[test]
fn every_sub_run_post_is_applied_exactly_once() {
    let n = 10;
    let probe = Arc::new(Probe::default());
    let sets = (0..n).map(|i| job(i, 1 + (i as usize % 4), false)).collect();
    let flow = fan_out(&probe, sets, Some(4));
    let mut store = Store::default();

    let action = smol::block_on(flow.run(&mut store)).unwrap();

    assert_eq!(action, "batch done");
    assert_eq!(store.results, done_map(0..n));
    let mut posted = store.post_order.clone();
    posted.sort_unstable();
    assert_eq!(posted, (0..n).collect::<Vec<_>>(), "each post once: {:?}", store.post_order);
    assert_eq!(store.batch_posts.len(), 1);
}

#[test]
fn batch_post_sees_actions_in_input_order_when_sub_runs_finish_in_reverse() {
    let n = 6;
    let probe = Arc::new(Probe::default());
    // Sub-run i yields 2 * (n - i) times: the last one finishes first.
    let sets = (0..n).map(|i| job(i, 2 * (n - i) as usize, false)).collect();
    let flow = fan_out(&probe, sets, None);
    let mut store = Store::default();

    let action = smol::block_on(flow.run(&mut store)).unwrap();

    assert_eq!(action, "batch done");
    assert_eq!(
        store.post_order,
        (0..n).rev().collect::<Vec<_>>(),
        "sub-runs must really finish in reverse"
    );
    assert_eq!(store.batch_posts, [((0..n).collect::<Vec<_>>(), action_names(0..n))]);
}

// ---------------------------------------------------------------------------------------------
// Fail-fast
// ---------------------------------------------------------------------------------------------

#[test]
fn failing_sub_run_fails_fast_drops_siblings_and_keeps_completed_posts() {
    let probe = Arc::new(Probe::default());
    // 0 finishes first; 1 fails next; 2..5 would need far longer than that.
    let sets = vec![
        job(0, 1, false),
        job(1, 3, true),
        job(2, 1000, false),
        job(3, 1000, false),
        job(4, 1000, false),
    ];
    let flow = fan_out(&probe, sets, None);
    let mut store = Store::default();

    let err = smol::block_on(flow.run(&mut store)).unwrap_err();

    match &err {
        FlowError::NodeFailed { node, phase, attempts, .. } => {
            assert_eq!((node.as_str(), *phase, *attempts), ("fan[1]/job", Phase::Exec, 1));
        }
        other => panic!("expected NodeFailed, got {other:?}"),
    }
    let source = err.source().unwrap().downcast_ref::<Failure>().unwrap();
    assert_eq!(source, &Failure("job 1 failed".into()));
    assert_eq!(probe.dropped(), 3, "the three sub-runs still in flight are dropped");
    assert_eq!(probe.now(), 0);
    assert_eq!(store.results, done_map([0]), "the post that completed stays; no other post ran");
    assert_eq!(store.post_order, [0]);
    assert_eq!(store.batch_posts, [], "the batch post does not run");
}

#[test]
fn failing_sub_run_under_a_limit_never_starts_the_remaining_sub_runs() {
    let probe = Arc::new(Probe::default());
    let mut sets = vec![job(0, 1, false), job(1, 3, true)];
    sets.extend((2..8).map(|i| job(i, 1000, false)));
    let flow = fan_out(&probe, sets, Some(2));
    let mut store = Store::default();

    let err = smol::block_on(flow.run(&mut store)).unwrap_err();

    assert_eq!(err.node(), "fan[1]/job");
    // 0 finishes and frees its slot for 2; then 1 fails while 2 is in flight.
    assert_eq!(probe.events(), ["start 0", "start 1", "end 0", "start 2", "end 1"]);
    assert_eq!(probe.dropped(), 1);
    assert_eq!(store.results, done_map([0]));
}

// ---------------------------------------------------------------------------------------------
// Sequential batch flow
// ---------------------------------------------------------------------------------------------

#[test]
fn batch_flow_runs_sub_runs_strictly_one_after_another() {
    let n = 5;
    let probe = Arc::new(Probe::default());
    // Later sub-runs would finish first if they overlapped.
    let sets: Vec<Params> = (0..n).map(|i| job(i, 2 * (n - i) as usize, false)).collect();
    let batch = BatchFlow::new(job_flow(&probe), move |_: &Store, _: &Params| Ok(sets.clone()))
        .post(record_batch_post);
    let mut flow = Flow::new();
    flow.add("seq", batch);
    let mut store = Store::default();

    let action = smol::block_on(flow.run(&mut store)).unwrap();

    assert_eq!(action, "batch done");
    assert_eq!(probe.max_in_flight(), 1);
    let expected: Vec<String> =
        (0..n).flat_map(|i| [format!("start {i}"), format!("end {i}")]).collect();
    assert_eq!(probe.events(), expected);
    assert_eq!(store.post_order, (0..n).collect::<Vec<_>>());
    assert_eq!(store.batch_posts, [((0..n).collect::<Vec<_>>(), action_names(0..n))]);
}

// ---------------------------------------------------------------------------------------------
// Nested concurrency
// ---------------------------------------------------------------------------------------------

/// A concurrent batch node: sub-run `i` processes items `i.0 .. i.3`, later items finishing
/// first, and writes them joined into `results[i]`.
struct Parts {
    probe: Arc<Probe>,
}

const PARTS: i64 = 4;

impl BatchNode<Store> for Parts {
    type Item = (i64, i64);
    type Output = String;

    fn prep(&self, _: &Store, params: &Params) -> Result<Vec<(i64, i64)>> {
        let i = params.int("i")?;
        Ok((0..PARTS).map(|k| (i, k)).collect())
    }

    async fn exec(&self, &(i, k): &(i64, i64), cx: Ctx<'_>) -> Result<String> {
        let in_flight = InFlight::enter(&self.probe);
        yield_times(2 * (PARTS - k) as usize).await;
        self.probe.event(format!("{}", cx.node()));
        in_flight.finish();
        Ok(format!("{i}.{k}"))
    }

    fn post(
        &self,
        store: &mut Store,
        _: &Params,
        items: Vec<(i64, i64)>,
        outputs: Vec<String>,
    ) -> Result<Action> {
        let i = items[0].0;
        store.results.insert(i, outputs.join(" "));
        store.post_order.push(i);
        Ok(Action::DEFAULT)
    }

    fn max_in_flight(&self) -> usize {
        usize::MAX
    }
}

#[test]
fn concurrent_batch_node_inside_concurrent_sub_runs_keeps_order() {
    let n = 3;
    let probe = Arc::new(Probe::default());
    let mut inner = Flow::new();
    inner.add("parts", Parts { probe: probe.clone() });
    let sets: Vec<Params> = (0..n).map(|i| Params::new().with("i", i)).collect();
    let batch = BatchAsyncFlow::new(inner, move |_: &Store, _: &Params| Ok(sets.clone()))
        .post(record_batch_post);
    let mut flow = Flow::new();
    flow.add("fan", batch);
    let mut store = Store::default();

    smol::block_on(flow.run(&mut store)).unwrap();

    assert_eq!(
        probe.max_in_flight(),
        (n * PARTS) as usize,
        "every item of every sub-run in flight at once"
    );
    let events = probe.events();
    assert_eq!(events.len(), (n * PARTS) as usize);
    assert_eq!(
        &events[..3],
        ["fan[0]/parts[3]", "fan[1]/parts[3]", "fan[2]/parts[3]"],
        "last items finish first"
    );
    let expected: BTreeMap<i64, String> = (0..n)
        .map(|i| (i, (0..PARTS).map(|k| format!("{i}.{k}")).collect::<Vec<_>>().join(" ")))
        .collect();
    assert_eq!(store.results, expected);
    assert_eq!(
        store.batch_posts,
        [((0..n).collect::<Vec<_>>(), vec!["default".to_string(); n as usize])]
    );
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

#[test]
#[should_panic(
    expected = "max_in_flight(0) would never start a job; use 1 or more (usize::MAX for no limit)"
)]
fn batch_async_flow_max_in_flight_zero_panics() {
    let probe = Arc::new(Probe::default());
    let _ = BatchAsyncFlow::new(job_flow(&probe), |_: &Store, _: &Params| Ok(Vec::new()))
        .max_in_flight(0);
}
