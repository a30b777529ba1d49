//! Batch nodes: an empty batch calls no `exec` and posts two empty lists;
//! items run in input order when sequential; concurrent items stay within `max_in_flight`
//! (exactly reaching it) and their outputs come back in input order however they finish;
//! `max_in_flight` 0 is `InvalidConfig`; a failing item names `name[i]` and stops the node
//! before its `post`; a per-item fallback fills only that item's output.

use std::error::Error as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use miniflow::{Action, BatchNode, Ctx, Error, Flow, FlowError, Params, Phase, Result};

mod common;
use common::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// What the items' `exec`s did: start and finish order, in-flight counts, fallback calls.
#[derive(Default)]
struct Probe {
    started: Mutex<Vec<u32>>,
    finished: Mutex<Vec<u32>>,
    fallbacks: Mutex<Vec<String>>,
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Probe {
    fn started(&self) -> Vec<u32> {
        self.started.lock().unwrap().clone()
    }

    fn finished(&self) -> Vec<u32> {
        self.finished.lock().unwrap().clone()
    }

    fn max_in_flight(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
}

/// Counts an item as in flight from its creation until it is dropped.
struct InFlight<'a>(&'a Probe);

impl<'a> InFlight<'a> {
    fn enter(probe: &'a Probe) -> Self {
        let now = probe.now.fetch_add(1, Ordering::SeqCst) + 1;
        probe.max.fetch_max(now, Ordering::SeqCst);
        InFlight(probe)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug, Default, PartialEq)]
struct Store {
    inputs: Vec<u32>,
    post_calls: usize,
    items: Vec<u32>,
    outputs: Vec<String>,
}

fn store(inputs: impl IntoIterator<Item = u32>) -> Store {
    Store { inputs: inputs.into_iter().collect(), ..Store::default() }
}

/// A batch node over `store.inputs`: item `x` yields `yields(x)` times in `exec` and returns
/// `"#x"`, except item `fail`, whose every attempt fails. Keeps the default `exec_fallback`.
struct Work {
    limit: usize,
    yields: fn(u32) -> usize,
    fail: Option<u32>,
    probe: Arc<Probe>,
}

impl Work {
    fn new(limit: usize, probe: &Arc<Probe>) -> Self {
        Work { limit, yields: |_| 3, fail: None, probe: probe.clone() }
    }
}

impl BatchNode<Store> for Work {
    type Item = u32;
    type Output = String;

    fn prep(&self, store: &Store, _: &Params) -> Result<Vec<u32>> {
        Ok(store.inputs.clone())
    }

    async fn exec(&self, item: &u32, _cx: Ctx<'_>) -> Result<String> {
        self.probe.started.lock().unwrap().push(*item);
        {
            let _in_flight = InFlight::enter(&self.probe);
            yield_times((self.yields)(*item)).await;
        }
        self.probe.finished.lock().unwrap().push(*item);
        match self.fail {
            Some(bad) if bad == *item => Err(Box::new(Failure(format!("item {item} broke")))),
            _ => Ok(format!("#{item}")),
        }
    }

    fn post(
        &self,
        store: &mut Store,
        _: &Params,
        items: Vec<u32>,
        outputs: Vec<String>,
    ) -> Result<Action> {
        store.post_calls += 1;
        store.items = items;
        store.outputs = outputs;
        Ok("posted".into())
    }

    fn max_in_flight(&self) -> usize {
        self.limit
    }
}

/// `Work` with an `exec_fallback` that turns an item's error into a placeholder output.
struct Rescue(Work);

impl BatchNode<Store> for Rescue {
    type Item = u32;
    type Output = String;

    fn prep(&self, store: &Store, params: &Params) -> Result<Vec<u32>> {
        self.0.prep(store, params)
    }

    async fn exec(&self, item: &u32, cx: Ctx<'_>) -> Result<String> {
        self.0.exec(item, cx).await
    }

    async fn exec_fallback(&self, item: &u32, error: Error, cx: Ctx<'_>) -> Result<String> {
        self.0.probe.fallbacks.lock().unwrap().push(format!(
            "{} attempt {}: {error}",
            cx.node(),
            cx.attempt()
        ));
        Ok(format!("fallback for {item}"))
    }

    fn post(
        &self,
        store: &mut Store,
        params: &Params,
        items: Vec<u32>,
        outputs: Vec<String>,
    ) -> Result<Action> {
        self.0.post(store, params, items, outputs)
    }

    fn max_in_flight(&self) -> usize {
        self.0.max_in_flight()
    }
}

fn flow_of<N>(node: N) -> Flow<Store>
where
    N: BatchNode<Store> + 'static,
{
    let mut flow = Flow::new();
    flow.add("work", node);
    flow
}

fn run(flow: &Flow<Store>, store: &mut Store) -> Result<Action, FlowError> {
    smol::block_on(flow.run(store))
}

fn outputs_for(items: &[u32]) -> Vec<String> {
    items.iter().map(|x| format!("#{x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Empty batches
// ---------------------------------------------------------------------------------------------

#[test]
fn empty_batch_calls_no_exec_and_posts_two_empty_lists() {
    let probe = Arc::new(Probe::default());
    let flow = flow_of(Work::new(1, &probe));
    let mut store = Store { items: vec![99], outputs: vec!["stale".into()], ..store([]) };

    let action = run(&flow, &mut store).unwrap();

    assert_eq!(action, "posted");
    assert_eq!(probe.started(), Vec::<u32>::new());
    assert_eq!(store, Store { inputs: vec![], post_calls: 1, items: vec![], outputs: vec![] });
}

#[test]
fn empty_concurrent_batch_calls_no_exec_and_posts_two_empty_lists() {
    let probe = Arc::new(Probe::default());
    let flow = flow_of(Work::new(usize::MAX, &probe));
    let mut store = Store { items: vec![99], outputs: vec!["stale".into()], ..store([]) };

    let action = run(&flow, &mut store).unwrap();

    assert_eq!(action, "posted");
    assert_eq!(probe.started(), Vec::<u32>::new());
    assert_eq!(store, Store { inputs: vec![], post_calls: 1, items: vec![], outputs: vec![] });
}

// ---------------------------------------------------------------------------------------------
// Order
// ---------------------------------------------------------------------------------------------

#[test]
fn sequential_batch_runs_items_one_at_a_time_in_input_order() {
    let probe = Arc::new(Probe::default());
    // Later items would finish first if they overlapped.
    let flow = flow_of(Work { yields: |x| 20 - x as usize, ..Work::new(1, &probe) });
    let inputs = [5, 3, 9, 1, 7];
    let mut store = store(inputs);

    run(&flow, &mut store).unwrap();

    assert_eq!(probe.started(), inputs);
    assert_eq!(probe.finished(), inputs);
    assert_eq!(probe.max_in_flight(), 1);
    assert_eq!(store.items, inputs);
    assert_eq!(store.outputs, outputs_for(&inputs));
    assert_eq!(store.post_calls, 1);
}

#[test]
fn default_max_in_flight_is_sequential() {
    struct DefaultLimit(Work);
    impl BatchNode<Store> for DefaultLimit {
        type Item = u32;
        type Output = String;
        fn prep(&self, store: &Store, params: &Params) -> Result<Vec<u32>> {
            self.0.prep(store, params)
        }
        async fn exec(&self, item: &u32, cx: Ctx<'_>) -> Result<String> {
            self.0.exec(item, cx).await
        }
        fn post(
            &self,
            store: &mut Store,
            params: &Params,
            items: Vec<u32>,
            outputs: Vec<String>,
        ) -> Result<Action> {
            self.0.post(store, params, items, outputs)
        }
    }
    let probe = Arc::new(Probe::default());
    let flow = flow_of(DefaultLimit(Work {
        yields: |x| 10 - x as usize,
        ..Work::new(usize::MAX, &probe)
    }));
    let mut store = store(0..6);

    run(&flow, &mut store).unwrap();

    assert_eq!(probe.max_in_flight(), 1);
    assert_eq!(probe.finished(), [0, 1, 2, 3, 4, 5]);
}

#[test]
fn concurrent_batch_keeps_input_order_when_items_finish_in_reverse() {
    let n = 8;
    let probe = Arc::new(Probe::default());
    // Item i yields 2 * (n - i) times: the last item finishes first.
    let flow = flow_of(Work { yields: |x| 2 * (8 - x as usize), ..Work::new(n, &probe) });
    let inputs: Vec<u32> = (0..n as u32).collect();
    let mut store = store(inputs.clone());

    run(&flow, &mut store).unwrap();

    let reversed: Vec<u32> = inputs.iter().rev().copied().collect();
    assert_eq!(probe.finished(), reversed, "items must really finish in reverse");
    assert_eq!(probe.max_in_flight(), n);
    assert_eq!(store.items, inputs);
    assert_eq!(store.outputs, outputs_for(&inputs));
}

#[test]
fn concurrent_batch_under_a_smaller_limit_keeps_input_order() {
    let probe = Arc::new(Probe::default());
    let flow = flow_of(Work { yields: |x| 2 * (9 - x as usize), ..Work::new(3, &probe) });
    let inputs: Vec<u32> = (0..9).collect();
    let mut store = store(inputs.clone());

    run(&flow, &mut store).unwrap();

    let finished = probe.finished();
    assert_ne!(finished, inputs, "items must finish out of order for this test to mean anything");
    let first_window: Vec<u32> = finished.iter().copied().filter(|x| *x < 3).collect();
    assert_eq!(first_window, [2, 1, 0], "the first three items finish in reverse");
    assert_eq!(probe.max_in_flight(), 3);
    assert_eq!(store.items, inputs);
    assert_eq!(store.outputs, outputs_for(&inputs));
}

// ---------------------------------------------------------------------------------------------
// In-flight limit
// ---------------------------------------------------------------------------------------------

#[test]
fn in_flight_limit_of_three_is_reached_and_never_exceeded() {
    let probe = Arc::new(Probe::default());
    // Uneven durations so that items keep leaving and entering at different times.
    let flow = flow_of(Work { yields: |x| 1 + (x as usize * 7) % 5, ..Work::new(3, &probe) });
    let inputs: Vec<u32> = (0..20).collect();
    let mut store = store(inputs.clone());

    run(&flow, &mut store).unwrap();

    assert_eq!(probe.max_in_flight(), 3);
    assert_eq!(probe.started(), inputs, "items start in input order");
    assert_eq!(store.outputs, outputs_for(&inputs));
}

#[test]
fn unlimited_in_flight_runs_every_item_at_once() {
    let probe = Arc::new(Probe::default());
    let flow = flow_of(Work::new(usize::MAX, &probe));
    let inputs: Vec<u32> = (0..20).collect();
    let mut store = store(inputs.clone());

    run(&flow, &mut store).unwrap();

    assert_eq!(probe.max_in_flight(), 20);
    assert_eq!(store.outputs, outputs_for(&inputs));
}

#[test]
fn max_in_flight_zero_is_invalid_config_and_no_item_runs() {
    let probe = Arc::new(Probe::default());
    let flow = flow_of(Work::new(0, &probe));
    let mut store = store([1, 2, 3]);

    let err = run(&flow, &mut store).unwrap_err();

    match &err {
        FlowError::InvalidConfig { node, message, .. } => {
            assert_eq!(node, "work");
            assert!(message.starts_with("node `work`: max_in_flight() is 0"), "message: {message}");
            assert_eq!(&err.to_string(), message);
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
    assert!(err.to_string().starts_with("node `work`: max_in_flight() is 0"), "{err}");
    assert_eq!(probe.started(), Vec::<u32>::new());
    assert_eq!(store, self::store([1, 2, 3]));
}

// ---------------------------------------------------------------------------------------------
// Failing items
// ---------------------------------------------------------------------------------------------

#[test]
fn failing_item_names_its_index_and_skips_post() {
    let probe = Arc::new(Probe::default());
    let flow = flow_of(Work { fail: Some(12), ..Work::new(1, &probe) });
    let mut store = store([10, 11, 12, 13]);

    let err = run(&flow, &mut store).unwrap_err();

    match &err {
        FlowError::NodeFailed { node, phase, attempts, .. } => {
            assert_eq!((node.as_str(), *phase, *attempts), ("work[2]", Phase::Exec, 1));
        }
        other => panic!("expected NodeFailed, got {other:?}"),
    }
    let source = err.source().unwrap().downcast_ref::<Failure>().unwrap();
    assert_eq!(source, &Failure("item 12 broke".into()));
    assert_eq!(err.to_string(), "node `work[2]` failed in exec after 1 attempt");
    assert_eq!(probe.started(), [10, 11, 12], "the item after the failure never starts");
    assert_eq!(store, self::store([10, 11, 12, 13]), "post must not run");
}

#[test]
fn failing_concurrent_item_names_its_index_and_skips_post() {
    let probe = Arc::new(Probe::default());
    // Item 12 fails after one yield, while the others are still yielding.
    let flow = flow_of(Work {
        fail: Some(12),
        yields: |x| if x == 12 { 1 } else { 50 },
        ..Work::new(usize::MAX, &probe)
    });
    let mut store = store([10, 11, 12, 13]);

    let err = run(&flow, &mut store).unwrap_err();

    assert_eq!(err.node(), "work[2]");
    assert_eq!(err.to_string(), "node `work[2]` failed in exec after 1 attempt");
    assert_eq!(probe.started(), [10, 11, 12, 13]);
    assert_eq!(probe.finished(), [12], "the siblings in flight are dropped, not finished");
    assert_eq!(
        probe.now.load(Ordering::SeqCst),
        0,
        "every dropped sibling left the in-flight count"
    );
    assert_eq!(store, self::store([10, 11, 12, 13]), "post must not run");
}

#[test]
fn fallback_fills_only_the_failing_items_output() {
    let probe = Arc::new(Probe::default());
    let flow = flow_of(Rescue(Work { fail: Some(12), ..Work::new(1, &probe) }));
    let mut store = store([10, 11, 12, 13]);

    let action = run(&flow, &mut store).unwrap();

    assert_eq!(action, "posted");
    assert_eq!(*probe.fallbacks.lock().unwrap(), ["work[2] attempt 0: item 12 broke"]);
    assert_eq!(store.items, [10, 11, 12, 13]);
    assert_eq!(store.outputs, ["#10", "#11", "fallback for 12", "#13"]);
    assert_eq!(store.post_calls, 1);
}

#[test]
fn fallback_fills_the_failing_items_output_in_a_concurrent_batch() {
    let probe = Arc::new(Probe::default());
    let flow = flow_of(Rescue(Work {
        fail: Some(11),
        yields: |x| 2 * (14 - x as usize),
        ..Work::new(usize::MAX, &probe)
    }));
    let mut store = store([10, 11, 12, 13]);

    run(&flow, &mut store).unwrap();

    assert_eq!(probe.finished(), [13, 12, 11, 10]);
    assert_eq!(*probe.fallbacks.lock().unwrap(), ["work[1] attempt 0: item 11 broke"]);
    assert_eq!(store.outputs, ["#10", "fallback for 11", "#12", "#13"]);
}
