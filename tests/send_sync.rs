//! Thread safety, checked by the compiler: the public types are
//! `Send + Sync`; `FlowError` is a `'static` thread-safe error that `?` turns into
//! `miniflow::Error`; a run future is `Send` (and `'static` when it owns its flow and store, so
//! it can be spawned) for any `Send` store; and a flow over a store that is `Send` but not `Sync`
//! is still `Send + Sync` and still runs. Runtime tests run one `Arc<Flow>` from two threads.

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;

use miniflow::{
    Action, BatchAsyncFlow, BatchFlow, BatchNode, Ctx, Flow, FlowError, Node, NodeFn, NodeId,
    Params, Phase, Result, Value, node_fn,
};

fn assert_send<T: Send>() {}
fn assert_sync<T: Sync>() {}
fn assert_send_sync<T: Send + Sync>() {}
fn assert_send_sync_value<T: Send + Sync>(_: &T) {}
fn assert_send_future<F: Future + Send>(_: &F) {}
fn assert_spawnable<F: Future + Send + 'static>(_: &F) {}
fn assert_thread_safe_error<E: std::error::Error + Send + Sync + 'static>() {}

/// Compiles only for types that are *not* `Sync`: for a `Sync` type both impls apply and the
/// marker cannot be inferred. Keeps the premise of the `Cell` tests honest.
trait NotSync<Marker> {
    fn check() {}
}
impl<T: ?Sized> NotSync<()> for T {}
impl<T: ?Sized + Sync> NotSync<u8> for T {}

/// An ordinary store: `Send + Sync`.
#[derive(Debug, Default, PartialEq)]
struct Plain {
    log: Vec<String>,
}

/// A store that is `Send` but not `Sync`: `seen` is a `Cell`.
#[derive(Debug, Default)]
struct Cellar {
    seen: Cell<u32>,
    doubled: Vec<u32>,
}

/// Records `name` after one await.
struct Note(&'static str);

impl Node<Plain> for Note {
    type Prep = ();
    type Output = &'static str;

    fn prep(&self, _: &Plain, _: &Params) -> Result<()> {
        Ok(())
    }

    async fn exec(&self, _: &(), _: Ctx<'_>) -> Result<&'static str> {
        futures::future::ready(()).await;
        Ok(self.0)
    }

    fn post(&self, store: &mut Plain, _: (), name: &'static str) -> Result<Action> {
        store.log.push(name.into());
        Ok(Action::DEFAULT)
    }
}

/// A batch node over `Plain`: notes each item, two at a time.
struct Items;

impl BatchNode<Plain> for Items {
    type Item = u8;
    type Output = String;

    fn prep(&self, _: &Plain, _: &Params) -> Result<Vec<u8>> {
        Ok(vec![1, 2, 3])
    }

    async fn exec(&self, item: &u8, _: Ctx<'_>) -> Result<String> {
        Ok(format!("item {item}"))
    }

    fn post(
        &self,
        store: &mut Plain,
        _: &Params,
        _: Vec<u8>,
        outputs: Vec<String>,
    ) -> Result<Action> {
        store.log.extend(outputs);
        Ok(Action::DEFAULT)
    }

    fn max_in_flight(&self) -> usize {
        2
    }
}

/// Every kind of node over `Plain`: a node, a batch node, a nested flow, a `BatchFlow` and a
/// `BatchAsyncFlow`.
fn plain_flow() -> Flow<Plain> {
    let mut nested = Flow::new();
    nested.add("nested", Note("nested"));
    let mut per_set = Flow::new();
    per_set.add(
        "per_set",
        node_fn(|s: &mut Plain, p: &Params| {
            s.log.push(format!("set {}", p.int("k")?));
            Ok(Action::DEFAULT)
        }),
    );
    let mut per_async_set = Flow::new();
    per_async_set.add("per_async_set", Note("async set"));
    let sets =
        |_: &Plain, _: &Params| Ok(vec![Params::new().with("k", 1), Params::new().with("k", 2)]);

    let mut flow = Flow::new();
    let note = flow.add("note", Note("note"));
    let items = flow.add("items", Items);
    let nested = flow.add("nested", nested);
    let batch = flow.add("batch", BatchFlow::new(per_set, sets));
    let batch_async =
        flow.add("batch_async", BatchAsyncFlow::new(per_async_set, sets).max_in_flight(2));
    flow.then(note, items);
    flow.then(items, nested);
    flow.then(nested, batch);
    flow.then(batch, batch_async);
    flow
}

fn plain_expected() -> Plain {
    let log = [
        "note",
        "item 1",
        "item 2",
        "item 3",
        "nested",
        "set 1",
        "set 2",
        "async set",
        "async set",
    ];
    Plain { log: log.map(String::from).to_vec() }
}

/// Reads the `Cell` in prep, doubles in exec, writes the `Cell` in post; loops three times.
struct Double;

impl Node<Cellar> for Double {
    type Prep = u32;
    type Output = u32;

    fn prep(&self, store: &Cellar, _: &Params) -> Result<u32> {
        Ok(store.seen.get())
    }

    async fn exec(&self, n: &u32, _: Ctx<'_>) -> Result<u32> {
        futures::future::ready(()).await;
        Ok(n * 2)
    }

    fn post(&self, store: &mut Cellar, n: u32, doubled: u32) -> Result<Action> {
        store.seen.set(n + 1);
        store.doubled.push(doubled);
        Ok(if store.seen.get() < 3 { "again" } else { "done" }.into())
    }
}

/// A flow over the `Send`-but-not-`Sync` store, with a concurrent `BatchAsyncFlow` (the one
/// place a run shares its store between sub-runs).
fn cellar_flow() -> Flow<Cellar> {
    let mut bump = Flow::new();
    bump.add(
        "bump",
        node_fn(|s: &mut Cellar, p: &Params| {
            s.seen.set(s.seen.get() + p.int("by")? as u32);
            Ok(Action::DEFAULT)
        }),
    );
    let fan_out = BatchAsyncFlow::new(bump, |_: &Cellar, _: &Params| {
        Ok(vec![Params::new().with("by", 10), Params::new().with("by", 20)])
    });

    let mut flow = Flow::new();
    let double = flow.add("double", Double);
    let fan_out = flow.add("fan_out", fan_out);
    flow.edge(double, "again", double);
    flow.edge(double, "done", fan_out);
    flow
}

#[test]
fn public_types_are_send_and_sync() {
    assert_send_sync::<Flow<Plain>>();
    assert_send_sync::<BatchFlow<Plain>>();
    assert_send_sync::<BatchAsyncFlow<Plain>>();
    assert_send_sync::<Action>();
    assert_send_sync::<Params>();
    assert_send_sync::<Value>();
    assert_send_sync::<FlowError>();
    assert_send_sync::<Phase>();
    assert_send_sync::<NodeId>();
    assert_send_sync::<Ctx<'static>>();
    assert_send_sync::<NodeFn<fn(&mut Plain, &Params) -> Result<Action>>>();
    let closure = node_fn(|s: &mut Plain, _: &Params| {
        s.log.push("closure".into());
        Ok(Action::DEFAULT)
    });
    assert_send_sync_value(&closure);
}

#[test]
fn flow_error_is_a_thread_safe_static_error() {
    assert_thread_safe_error::<FlowError>();
    assert_send::<miniflow::Error>();
    assert_sync::<miniflow::Error>();
}

#[test]
fn question_mark_turns_a_flow_error_into_the_crate_error() {
    fn run_empty_flow() -> Result<Action> {
        let flow = Flow::<Plain>::new();
        let action = futures::executor::block_on(flow.run(&mut Plain::default()))?;
        Ok(action)
    }

    let error = run_empty_flow().expect_err("an empty flow cannot run");
    let flow_error = error.downcast::<FlowError>().expect("the crate error still is the FlowError");
    assert!(
        matches!(&*flow_error, FlowError::InvalidConfig { node, message, .. } if node.is_empty()
            && message == "the flow has no nodes; add one with `Flow::add` before running it"),
        "{flow_error:?}"
    );
}

#[test]
fn a_run_future_over_a_send_store_is_send_and_spawnable_when_it_owns_flow_and_store() {
    let flow = Arc::new(plain_flow());
    let mut store = Plain::default();
    let run = flow.run(&mut store);
    assert_send_future(&run);
    drop(run);

    let owned = async move {
        let mut store = Plain::default();
        let action = flow.run(&mut store).await;
        (action, store)
    };
    assert_spawnable(&owned);
    let (action, store) = futures::executor::block_on(owned);
    assert_eq!(action.expect("the run succeeds"), Action::DEFAULT);
    assert_eq!(store, plain_expected());
}

#[test]
fn a_flow_over_a_send_but_not_sync_store_is_send_and_sync_and_its_run_is_send() {
    let _ = <Cellar as NotSync<_>>::check;
    assert_send::<Cellar>();
    assert_send_sync::<Flow<Cellar>>();
    assert_send_sync::<BatchFlow<Cellar>>();
    assert_send_sync::<BatchAsyncFlow<Cellar>>();
    let flow = cellar_flow();
    let mut store = Cellar::default();
    let run = flow.run(&mut store);
    assert_send_future(&run);
}

#[test]
fn a_send_but_not_sync_store_runs_to_completion_on_another_thread() {
    let flow = Arc::new(cellar_flow());
    let worker = {
        let flow = Arc::clone(&flow);
        std::thread::spawn(move || {
            let mut store = Cellar::default();
            let action = futures::executor::block_on(flow.run(&mut store));
            (action, store)
        })
    };
    let (action, store) = worker.join().expect("the worker thread panicked");
    assert_eq!(action.expect("the run succeeds"), Action::DEFAULT);
    assert_eq!(store.doubled, [0, 2, 4]);
    assert_eq!(store.seen.get(), 3 + 10 + 20);
}

#[test]
fn one_arc_flow_serves_runs_on_two_threads_at_once() {
    let flow = Arc::new(plain_flow());
    let stores = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let flow = Arc::clone(&flow);
                scope.spawn(move || {
                    let mut store = Plain::default();
                    let action = futures::executor::block_on(flow.run(&mut store));
                    (action, store)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("a worker thread panicked")).collect::<Vec<_>>()
    });
    for (action, store) in stores {
        assert_eq!(action.expect("the run succeeds"), Action::DEFAULT);
        assert_eq!(store, plain_expected());
    }
}
