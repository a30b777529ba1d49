//! Executor independence: one representative flow — a loop, an exec that
//! awaits an async-io timer, an exec that yields, a retry with a wait, a nested flow, a
//! concurrent batch node and a `BatchAsyncFlow` — ends with exactly the same store and action
//! under `smol::block_on`, `futures::executor::block_on`, tokio current-thread and tokio
//! multi-thread (spawned, and 32 spawned runs of one `Arc<Flow>` at once). And a run needs no
//! runtime at all: polled by hand with a no-op waker it completes, in an exact number of polls.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use miniflow::{
    Action, BatchAsyncFlow, BatchNode, Ctx, Error, Flow, FlowError, Node, Params, Result,
    RunOptions, node_fn,
};

mod common;
use common::*;

/// How the representative flow's execs pause. [`REAL`] makes them await timers and yield;
/// [`NEVER_PENDING`] makes every exec complete on its first poll (same results, no pauses).
#[derive(Clone, Copy)]
struct Pauses {
    timers: bool,
    yields: usize,
    retry_wait: Duration,
}

const REAL: Pauses = Pauses { timers: true, yields: 1, retry_wait: Duration::from_millis(3) };
const NEVER_PENDING: Pauses = Pauses { timers: false, yields: 0, retry_wait: Duration::ZERO };

impl Pauses {
    async fn pause(&self, yields: usize) {
        YieldNow(yields * self.yields).await;
        if self.timers {
            smol::Timer::after(Duration::from_millis(1)).await;
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq)]
struct Store {
    rounds: u32,
    log: Vec<String>,
    squares: Vec<u64>,
    cubes: BTreeMap<i64, i64>,
    fan_out_actions: Vec<String>,
}

/// Loop body 1: counts a round after a timer.
struct Tick(Pauses);

impl Node<Store> for Tick {
    type Prep = u32;
    type Output = u32;

    fn prep(&self, store: &Store, _: &Params) -> Result<u32> {
        Ok(store.rounds)
    }

    async fn exec(&self, rounds: &u32, _: Ctx<'_>) -> Result<u32> {
        self.0.pause(0).await;
        Ok(rounds + 1)
    }

    fn post(&self, store: &mut Store, _: u32, rounds: u32) -> Result<Action> {
        store.rounds = rounds;
        store.log.push(format!("tick {rounds}"));
        Ok(Action::DEFAULT)
    }
}

/// Loop body 2: yields three times (no timer).
struct Yielder(Pauses);

impl Node<Store> for Yielder {
    type Prep = u32;
    type Output = ();

    fn prep(&self, store: &Store, _: &Params) -> Result<u32> {
        Ok(store.rounds)
    }

    async fn exec(&self, _: &u32, _: Ctx<'_>) -> Result<()> {
        YieldNow(3 * self.0.yields).await;
        Ok(())
    }

    fn post(&self, store: &mut Store, rounds: u32, _: ()) -> Result<Action> {
        store.log.push(format!("yield {rounds}"));
        Ok(Action::DEFAULT)
    }
}

/// Loop body 3: fails its first attempt, waits, succeeds on the second.
struct Flaky(Pauses);

impl Node<Store> for Flaky {
    type Prep = ();
    type Output = usize;

    fn prep(&self, _: &Store, _: &Params) -> Result<()> {
        Ok(())
    }

    async fn exec(&self, _: &(), cx: Ctx<'_>) -> Result<usize> {
        match cx.attempt() {
            0 => Err("transient failure".into()),
            attempt => Ok(attempt),
        }
    }

    fn post(&self, store: &mut Store, _: (), attempt: usize) -> Result<Action> {
        store.log.push(format!("flaky ok on attempt {attempt}"));
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        3
    }

    fn wait(&self, _: &Error, _: Ctx<'_>) -> Option<Duration> {
        Some(self.0.retry_wait)
    }
}

/// Inside the nested flow: reads the inherited `run` param and yields once.
struct Echo(Pauses);

impl Node<Store> for Echo {
    type Prep = (u32, i64);
    type Output = String;

    fn prep(&self, store: &Store, params: &Params) -> Result<(u32, i64)> {
        Ok((store.rounds, params.int("run")?))
    }

    async fn exec(&self, &(rounds, run): &(u32, i64), _: Ctx<'_>) -> Result<String> {
        self.0.pause(1).await;
        Ok(format!("inner after {rounds} rounds of run {run}"))
    }

    fn post(&self, store: &mut Store, _: (u32, i64), line: String) -> Result<Action> {
        store.log.push(line);
        Ok(Action::DEFAULT)
    }
}

/// A concurrent batch node: later items pause less, so they finish first.
struct Squares(Pauses);

impl BatchNode<Store> for Squares {
    type Item = u64;
    type Output = u64;

    fn prep(&self, _: &Store, _: &Params) -> Result<Vec<u64>> {
        Ok((1..=6).collect())
    }

    async fn exec(&self, item: &u64, _: Ctx<'_>) -> Result<u64> {
        YieldNow((6 - *item as usize) * self.0.yields).await;
        Ok(item * item)
    }

    fn post(
        &self,
        store: &mut Store,
        _: &Params,
        _: Vec<u64>,
        squares: Vec<u64>,
    ) -> Result<Action> {
        store.squares = squares;
        store.log.push("squares".into());
        Ok(Action::DEFAULT)
    }

    fn max_in_flight(&self) -> usize {
        3
    }
}

/// The one node of each `BatchAsyncFlow` sub-run: yields, awaits a timer, cubes its `n`.
struct Cube(Pauses);

impl Node<Store> for Cube {
    type Prep = (i64, i64);
    type Output = i64;

    fn prep(&self, _: &Store, params: &Params) -> Result<(i64, i64)> {
        Ok((params.int("n")?, params.int("run")?))
    }

    async fn exec(&self, &(n, _): &(i64, i64), _: Ctx<'_>) -> Result<i64> {
        self.0.pause(5 - n as usize).await;
        Ok(n * n * n)
    }

    fn post(&self, store: &mut Store, (n, run): (i64, i64), cube: i64) -> Result<Action> {
        store.cubes.insert(n, cube);
        Ok(format!("cubed {n} in run {run}").into())
    }
}

/// The representative flow:
///
/// ```text
/// tick -> yield -> flaky -> check --"again"--> tick
///                             \--"done"--> nested{echo -> leave}
/// nested --"inner-done"--> squares (batch node) -> fan_out (BatchAsyncFlow over cube) -> end
/// ```
fn build_flow(pauses: Pauses) -> Flow<Store> {
    let mut inner = Flow::new();
    let echo = inner.add("echo", Echo(pauses));
    let leave = inner.add("leave", node_fn(|_: &mut Store, _: &Params| Ok("inner-done".into())));
    inner.then(echo, leave);

    let mut cube = Flow::new();
    cube.add("cube", Cube(pauses));
    let fan_out = BatchAsyncFlow::new(cube, |_: &Store, _: &Params| {
        Ok((1..=4).map(|n| Params::new().with("n", n)).collect())
    })
    .post(|store: &mut Store, _: Vec<Params>, actions: Vec<Action>| {
        store.fan_out_actions = actions.iter().map(Action::to_string).collect();
        store.log.push("fan_out".into());
        Ok("finished".into())
    })
    .max_in_flight(2);

    let mut flow = Flow::new();
    let tick = flow.add("tick", Tick(pauses));
    let yielder = flow.add("yield", Yielder(pauses));
    let flaky = flow.add("flaky", Flaky(pauses));
    let check = flow.add(
        "check",
        node_fn(|store: &mut Store, _: &Params| {
            Ok(if store.rounds < 3 { "again" } else { "done" }.into())
        }),
    );
    let nested = flow.add("nested", inner);
    let squares = flow.add("squares", Squares(pauses));
    let fan_out = flow.add("fan_out", fan_out);
    flow.then(tick, yielder);
    flow.then(yielder, flaky);
    flow.then(flaky, check);
    flow.edge(check, "again", tick);
    flow.edge(check, "done", nested);
    flow.edge(nested, "inner-done", squares);
    flow.then(squares, fan_out);
    flow
}

fn representative_flow() -> Flow<Store> {
    build_flow(REAL)
}

/// The params every run gets: its number, which the nested flow and every `BatchAsyncFlow`
/// sub-run inherit.
fn run_params(run: i64) -> Params {
    Params::new().with("run", run)
}

/// The one store a run numbered `run` may end with.
fn expected_store(run: i64) -> Store {
    let mut log = Vec::new();
    for round in 1..=3 {
        log.push(format!("tick {round}"));
        log.push(format!("yield {round}"));
        log.push("flaky ok on attempt 1".to_string());
    }
    log.push(format!("inner after 3 rounds of run {run}"));
    log.push("squares".into());
    log.push("fan_out".into());
    Store {
        rounds: 3,
        log,
        squares: vec![1, 4, 9, 16, 25, 36],
        cubes: BTreeMap::from([(1, 1), (2, 8), (3, 27), (4, 64)]),
        fan_out_actions: (1..=4).map(|n| format!("cubed {n} in run {run}")).collect(),
    }
}

fn assert_expected(run: i64, result: Result<Action, FlowError>, store: &Store) {
    let action = result.unwrap_or_else(|e| panic!("run {run} failed: {e}"));
    assert_eq!(action, "finished", "run {run}'s last action");
    assert_eq!(*store, expected_store(run), "run {run}'s store");
}

/// A run that owns everything it touches, so it can be spawned.
async fn owned_run(flow: Arc<Flow<Store>>, run: i64) -> (Result<Action, FlowError>, Store) {
    let mut store = Store::default();
    let result = flow.run_with(&mut store, RunOptions::new().params(run_params(run))).await;
    (result, store)
}

/// A waker that counts its wakes.
#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn smol_block_on_ends_with_the_expected_store() {
    let flow = representative_flow();
    let mut store = Store::default();
    let result = smol::block_on(flow.run_with(&mut store, RunOptions::new().params(run_params(0))));
    assert_expected(0, result, &store);
}

#[test]
fn futures_block_on_ends_with_the_expected_store() {
    let flow = representative_flow();
    let mut store = Store::default();
    let result = futures::executor::block_on(
        flow.run_with(&mut store, RunOptions::new().params(run_params(0))),
    );
    assert_expected(0, result, &store);
}

#[tokio::test(flavor = "current_thread")]
async fn tokio_current_thread_ends_with_the_expected_store() {
    let flow = representative_flow();
    let mut store = Store::default();
    let result = flow.run_with(&mut store, RunOptions::new().params(run_params(0))).await;
    assert_expected(0, result, &store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokio_multi_thread_spawned_run_ends_with_the_expected_store() {
    let flow = Arc::new(representative_flow());
    let (result, store) = tokio::spawn(owned_run(flow, 7)).await.expect("the spawned run panicked");
    assert_expected(7, result, &store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_spawned_runs_of_one_arc_flow_each_end_with_their_own_expected_store() {
    let flow = Arc::new(representative_flow());
    let tasks: Vec<_> =
        (0..32).map(|run| tokio::spawn(owned_run(Arc::clone(&flow), run))).collect();
    for (run, task) in (0..).zip(tasks) {
        let (result, store) = task.await.expect("a spawned run panicked");
        assert_expected(run, result, &store);
    }
    assert_eq!(Arc::strong_count(&flow), 1, "every task dropped its handle on the flow");
}

#[test]
fn thirty_two_runs_of_one_flow_polled_together_in_one_task_each_end_with_their_own_expected_store()
{
    let flow = representative_flow();
    let mut stores = vec![Store::default(); 32];
    let runs = (0..).zip(stores.iter_mut()).map(|(run, store)| {
        let params = run_params(run);
        let flow = &flow;
        async move { flow.run_with(store, RunOptions::new().params(params.clone())).await }
    });
    let results = smol::block_on(futures::future::join_all(runs));
    for ((run, result), store) in (0..).zip(results).zip(&stores) {
        assert_expected(run, result, store);
    }
}

#[test]
fn hand_polled_run_whose_execs_never_pend_completes_on_the_first_poll() {
    let flow = build_flow(NEVER_PENDING);
    let mut store = Store::default();
    let params = run_params(0);
    let mut cx = Context::from_waker(Waker::noop());
    let result = {
        let mut run =
            std::pin::pin!(flow.run_with(&mut store, RunOptions::new().params(params.clone())));
        match run.as_mut().poll(&mut cx) {
            Poll::Ready(result) => result,
            Poll::Pending => {
                panic!("no exec returned Pending, so the first poll must finish the run")
            }
        }
    };
    assert_expected(0, result, &store);
}

#[test]
fn hand_polled_run_whose_exec_yields_once_is_ready_on_the_second_poll() {
    struct YieldOnce;

    impl Node<Vec<&'static str>> for YieldOnce {
        type Prep = ();
        type Output = &'static str;

        fn prep(&self, _: &Vec<&'static str>, _: &Params) -> Result<()> {
            Ok(())
        }

        async fn exec(&self, _: &(), _: Ctx<'_>) -> Result<&'static str> {
            YieldNow(1).await;
            Ok("resumed")
        }

        fn post(&self, log: &mut Vec<&'static str>, _: (), out: &'static str) -> Result<Action> {
            log.push(out);
            Ok("yielded once".into())
        }
    }

    let mut flow = Flow::new();
    flow.add("yield_once", YieldOnce);
    let mut log = Vec::new();
    let waker = Arc::new(CountingWaker::default());
    let task_waker = Waker::from(Arc::clone(&waker));
    let mut cx = Context::from_waker(&task_waker);
    let mut polls = 0;
    let action = {
        let mut run = std::pin::pin!(flow.run(&mut log));
        loop {
            polls += 1;
            assert!(polls <= 100, "the run never finished");
            if let Poll::Ready(result) = run.as_mut().poll(&mut cx) {
                break result.expect("the run succeeds");
            }
        }
    };
    assert_eq!(polls, 2, "one Pending, then Ready");
    assert_eq!(waker.0.load(Ordering::SeqCst), 1, "the one Pending woke the task exactly once");
    assert_eq!(action, "yielded once");
    assert_eq!(log, ["resumed"]);
}
