//! A run whose nodes never await still returns to its executor regularly: every 256th pass of
//! each of its loops (a flow's node runs, a batch node's items, a batch flow's sub-runs,
//! finished concurrent jobs) it gives the executor a turn.
//! So an endless loop of such nodes can be cancelled by a timeout on any executor, and other
//! tasks on the same thread (a heartbeat) keep running beside it.
//!
//! The timeouts here only end the tests; what they assert is what the run did (counts, and
//! that the heartbeat got all its ticks), never how long it took.

mod common;

use std::cell::Cell;
use std::pin::pin;
use std::rc::Rc;
use std::time::Duration;

use futures::future::{self, Either};
use miniflow::{
    Action, BatchAsyncFlow, BatchFlow, BatchNode, Ctx, Flow, FlowError, Node, Parallel, Params,
    Result, RunOptions, node_fn,
};

use common::poll_by_hand;

/// The loop from the bug report: `check` returns "fix" forever (a routing bug), and neither
/// node ever awaits. The store counts the `check`s.
fn endless() -> Flow<u64> {
    let mut flow = Flow::new();
    let check = flow.add(
        "check",
        node_fn(|n: &mut u64, _| {
            *n += 1;
            Ok("fix".into())
        }),
    );
    let fix = flow.add("fix", node_fn(|_: &mut u64, _| Ok(Action::DEFAULT)));
    flow.edge(check, "fix", fix);
    flow.then(fix, check);
    flow
}

/// A node whose `exec` is async but answers at once, as a cache hit does.
struct CacheHit;

impl Node<u64> for CacheHit {
    type Prep = ();
    type Output = u64;

    fn prep(&self, _: &u64, _: &Params) -> Result<()> {
        Ok(())
    }

    async fn exec(&self, _: &(), _: Ctx<'_>) -> Result<u64> {
        Ok(1) // no `.await`: the answer was cached
    }

    fn post(&self, n: &mut u64, _: (), one: u64) -> Result<Action> {
        *n += one;
        Ok(Action::DEFAULT)
    }
}

/// An endless loop of `exec`s that never await.
fn endless_exec() -> Flow<u64> {
    let mut flow = Flow::new();
    let hit = flow.add("hit", CacheHit);
    flow.then(hit, hit);
    flow
}

/// Ends the test if a run never yields: a limit no run here reaches while yielding.
const BACKSTOP: usize = 20_000_000;

fn backstop() -> RunOptions<'static, u64> {
    RunOptions::new().max_steps(BACKSTOP)
}

#[test]
fn tokio_timeout_ends_an_endless_loop() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    for flow in [endless(), endless_exec()] {
        let mut n = 0;
        let run = flow.run_with(&mut n, backstop());
        let result =
            rt.block_on(async { tokio::time::timeout(Duration::from_millis(20), run).await });
        assert!(result.is_err(), "the timeout did not end the run: {result:?}");
        assert!(n > 0, "the run made no progress");
    }
}

#[test]
fn smol_or_timer_ends_an_endless_loop() {
    use smol::future::FutureExt;
    for flow in [endless(), endless_exec()] {
        let mut n = 0;
        let run = async { Some(flow.run_with(&mut n, backstop()).await) };
        let timer = async {
            smol::Timer::after(Duration::from_millis(20)).await;
            None
        };
        let result = smol::block_on(run.or(timer));
        assert!(result.is_none(), "the timer did not end the run: {result:?}");
        assert!(n > 0);
    }
}

#[test]
fn futures_select_ends_an_endless_loop() {
    for flow in [endless(), endless_exec()] {
        let mut n = 0;
        let run = Box::pin(flow.run_with(&mut n, backstop()));
        let timer = smol::Timer::after(Duration::from_millis(20));
        let timed_out = match futures::executor::block_on(future::select(run, timer)) {
            Either::Left((result, _)) => panic!("the timer did not end the run: {result:?}"),
            Either::Right(_) => true,
        };
        assert!(timed_out && n > 0);
    }
}

/// How many ticks the heartbeats below make, 10 ms apart.
const TICKS: usize = 5;

#[test]
fn tokio_heartbeat_keeps_ticking_beside_an_endless_loop() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let local = tokio::task::LocalSet::new();
    let ticks = Rc::new(Cell::new(0));
    let mut n = 0;
    let flow = endless();
    local.block_on(&rt, async {
        let counted = ticks.clone();
        let heartbeat = tokio::task::spawn_local(async move {
            for _ in 0..TICKS {
                tokio::time::sleep(Duration::from_millis(10)).await;
                counted.set(counted.get() + 1);
            }
        });
        // The run is dropped when the heartbeat has ticked TICKS times: it only can if the run
        // lets it.
        match future::select(pin!(flow.run_with(&mut n, backstop())), heartbeat).await {
            Either::Left((result, _)) => panic!("the heartbeat never finished: {result:?}"),
            Either::Right((joined, _)) => joined.unwrap(),
        }
    });
    assert_eq!(ticks.get(), TICKS);
    assert!(n > 0);
}

#[test]
fn smol_heartbeat_keeps_ticking_beside_an_endless_loop() {
    let ex = smol::LocalExecutor::new();
    let ticks = Rc::new(Cell::new(0));
    let mut n = 0;
    let flow = endless_exec();
    let counted = ticks.clone();
    let heartbeat = ex.spawn(async move {
        for _ in 0..TICKS {
            smol::Timer::after(Duration::from_millis(10)).await;
            counted.set(counted.get() + 1);
        }
    });
    let run = Box::pin(flow.run_with(&mut n, backstop()));
    let outcome = smol::block_on(ex.run(future::select(run, heartbeat)));
    assert!(matches!(outcome, Either::Right(_)), "the heartbeat never finished");
    drop(outcome);
    assert_eq!(ticks.get(), TICKS);
    assert!(n > 0);
}

#[test]
fn futures_local_pool_heartbeat_keeps_ticking_beside_an_endless_loop() {
    use futures::task::LocalSpawnExt;
    let mut pool = futures::executor::LocalPool::new();
    let ticks = Rc::new(Cell::new(0));
    let counted = ticks.clone();
    let heartbeat = pool
        .spawner()
        .spawn_local_with_handle(async move {
            for _ in 0..TICKS {
                smol::Timer::after(Duration::from_millis(10)).await;
                counted.set(counted.get() + 1);
            }
        })
        .unwrap();
    let mut n = 0;
    let flow = endless();
    let run = Box::pin(flow.run_with(&mut n, backstop()));
    let outcome = pool.run_until(future::select(run, heartbeat));
    assert!(matches!(outcome, Either::Right(_)), "the heartbeat never finished");
    drop(outcome);
    assert_eq!(ticks.get(), TICKS);
    assert!(n > 0);
}

/// Every 256th pass of a loop gives the executor one turn: polled by hand, the run is
/// `Pending` exactly once per 256 passes, whatever the loop.
const TURN: usize = 256;

/// Runs `flow` to its end by hand and returns its result and the polls it took.
fn run_by_hand(flow: &Flow<u64>, n: &mut u64) -> (Action, usize) {
    let (result, polls) = poll_by_hand(flow.run(n), usize::MAX);
    (result.expect("finished").expect("ran without error"), polls)
}

#[test]
fn a_chain_gives_one_turn_per_256_node_runs() {
    // `count` loops until the store reaches `runs`: one node run per loop.
    for runs in [1, 255, 256, 257, 1_000, 100_000] {
        let mut flow = Flow::new();
        let count = flow.add(
            "count",
            node_fn(move |n: &mut u64, _| {
                *n += 1;
                Ok(if *n < runs { "again" } else { "done" }.into())
            }),
        );
        flow.edge(count, "again", count);
        flow.end(count, "done");
        let mut n = 0;
        let (action, polls) = run_by_hand(&flow, &mut n);
        assert_eq!((action.as_str(), n), ("done", runs));
        assert_eq!(polls, 1 + runs as usize / TURN, "{runs} node runs");
    }
}

/// A batch node summing its items, without awaiting, `limit` at a time.
struct Sum(usize, usize);

impl BatchNode<u64> for Sum {
    type Item = u64;
    type Output = u64;

    fn prep(&self, _: &u64, _: &Params) -> Result<Vec<u64>> {
        Ok((1..=self.0 as u64).collect())
    }

    async fn exec(&self, item: &u64, _: Ctx<'_>) -> Result<u64> {
        Ok(*item)
    }

    fn post(&self, sum: &mut u64, _: &Params, _: Vec<u64>, outputs: Vec<u64>) -> Result<Action> {
        *sum = outputs.iter().sum();
        Ok(Action::DEFAULT)
    }

    fn max_in_flight(&self) -> usize {
        self.1
    }
}

#[test]
fn a_batch_node_gives_one_turn_per_256_items() {
    for items in [0, 255, 256, 1_000, 1_000_000] {
        for limit in [1, usize::MAX] {
            let mut flow = Flow::new();
            flow.add("sum", Sum(items, limit));
            let mut sum = 0;
            let (_, polls) = run_by_hand(&flow, &mut sum);
            assert_eq!(sum, (items as u64) * (items as u64 + 1) / 2);
            // One turn per 256 items (or finished concurrent items).
            assert_eq!(polls, 1 + items / TURN, "{items} items, {limit} at a time");
        }
    }
}

#[test]
fn a_batch_flow_gives_one_turn_per_256_sub_runs() {
    for sub_runs in [1u64, 256, 10_000] {
        let mut inner = Flow::new();
        inner.add(
            "add",
            node_fn(|n: &mut u64, p: &Params| {
                *n += p.int("i")? as u64;
                Ok(Action::DEFAULT)
            }),
        );
        let sets = move |_: &u64, _: &Params| {
            Ok((0..sub_runs as i64).map(|i| Params::new().with("i", i)).collect())
        };
        let mut flow = Flow::new();
        flow.add("each", BatchFlow::new(inner, sets));
        let mut n = 0;
        let (_, polls) = run_by_hand(&flow, &mut n);
        assert_eq!(n, sub_runs * (sub_runs - 1) / 2);
        // One turn per 256 sub-runs (each flow's loop makes one pass, and never turns).
        assert_eq!(polls, 1 + sub_runs as usize / TURN, "{sub_runs} sub-runs");
    }
}

#[test]
fn concurrent_sub_runs_and_branches_give_turns_too() {
    // Nothing here awaits; without the turns each run would finish in one poll.
    let mut inner = Flow::new();
    inner.add(
        "add",
        node_fn(|n: &mut u64, _| {
            *n += 1;
            Ok(Action::DEFAULT)
        }),
    );
    let sets = |_: &u64, _: &Params| Ok(vec![Params::new(); 1_000]);
    let mut flow = Flow::new();
    flow.add("each", BatchAsyncFlow::new(inner, sets));
    let mut n = 0;
    let (_, polls) = run_by_hand(&flow, &mut n);
    assert_eq!(n, 1_000);
    assert!(polls > 1_000 / TURN, "{polls} polls");

    let mut parallel = Parallel::new();
    for b in 0..1_000 {
        parallel = parallel.branch(
            format!("b{b}"),
            node_fn(|n: &mut u64, _| {
                *n += 1;
                Ok(Action::DEFAULT)
            }),
        );
    }
    let mut flow = Flow::new();
    flow.add("all", parallel);
    let mut n = 0;
    let (_, polls) = run_by_hand(&flow, &mut n);
    assert_eq!(n, 1_000);
    assert!(polls > 1_000 / TURN, "{polls} polls");
}

#[test]
fn dropped_after_any_turn_the_store_holds_whole_posts() {
    // Each `post` adds 1 to the first field and then to the second: a torn post would leave
    // them unequal. Dropped after k polls, the run has made exactly k turns' worth of node
    // runs (the first turn comes after 255, then every 256).
    let mut flow = Flow::new();
    let step = flow.add(
        "step",
        node_fn(|s: &mut (u64, u64), _| {
            s.0 += 1;
            s.1 += 1;
            Ok(Action::DEFAULT)
        }),
    );
    flow.then(step, step);
    for k in [1, 2, 3, 50] {
        let mut store = (0, 0);
        let options = RunOptions::new().max_steps(BACKSTOP);
        let (result, polls) = poll_by_hand(flow.run_with(&mut store, options), k);
        assert!(result.is_none());
        assert_eq!(polls, k);
        assert_eq!(store, (k as u64 * TURN as u64 - 1, k as u64 * TURN as u64 - 1));
    }
    // And the step limit still counts every node run exactly.
    let mut store = (0, 0);
    let (result, _) =
        poll_by_hand(flow.run_with(&mut store, RunOptions::new().max_steps(1_000)), usize::MAX);
    assert!(matches!(result, Some(Err(FlowError::StepLimit { limit: 1_000, .. }))));
    assert_eq!(store, (1_000, 1_000));
}

#[test]
fn one_at_a_time_sub_runs_and_branches_turn_every_256() {
    // With an in-flight limit of 1, `BatchAsyncFlow` and `Parallel` run their jobs in a loop
    // of their own: each job is a one-node flow's single pass, so only that loop can turn.
    let one = || {
        let mut inner = Flow::new();
        inner.add(
            "add",
            node_fn(|n: &mut u64, _| {
                *n += 1;
                Ok(Action::DEFAULT)
            }),
        );
        inner
    };
    for jobs in [255usize, 256, 1_000] {
        let sets = move |_: &u64, _: &Params| Ok(vec![Params::new(); jobs]);
        let mut flow = Flow::new();
        flow.add("each", BatchAsyncFlow::new(one(), sets).max_in_flight(1));
        let mut n = 0;
        let (_, polls) = run_by_hand(&flow, &mut n);
        assert_eq!((n, polls), (jobs as u64, 1 + jobs / TURN), "{jobs} sub-runs");

        let mut parallel = Parallel::new().max_in_flight(1);
        for b in 0..jobs {
            parallel = parallel.branch(format!("b{b}"), one());
        }
        let mut flow = Flow::new();
        flow.add("all", parallel);
        let mut n = 0;
        let (_, polls) = run_by_hand(&flow, &mut n);
        assert_eq!((n, polls), (jobs as u64, 1 + jobs / TURN), "{jobs} branches");
    }
}

/// Items whose index is 255 modulo 256 never finish; all others finish at once.
struct Stragglers(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl BatchNode<u64> for Stragglers {
    type Item = usize;
    type Output = ();

    fn prep(&self, _: &u64, _: &Params) -> Result<Vec<usize>> {
        Ok((0..100_000).collect())
    }

    async fn exec(&self, item: &usize, _: Ctx<'_>) -> Result<()> {
        if item % TURN == TURN - 1 {
            std::future::pending::<()>().await;
        }
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    fn post(&self, _: &mut u64, _: &Params, _: Vec<usize>, _: Vec<()>) -> Result<Action> {
        Ok(Action::DEFAULT)
    }

    fn max_in_flight(&self) -> usize {
        usize::MAX
    }
}

#[test]
fn concurrent_items_turn_every_256_that_finish_whichever_they_are() {
    // Counted by items finished, not by their indices: here the items at the indices that
    // would turn never finish, and 99,610 others do.
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut flow = Flow::new();
    flow.add("all", Stragglers(finished.clone()));
    for polls in [1, 2, 10] {
        finished.store(0, std::sync::atomic::Ordering::SeqCst);
        let (result, made) = poll_by_hand(flow.run(&mut 0), polls);
        assert!(result.is_none() && made == polls);
        let done = finished.load(std::sync::atomic::Ordering::SeqCst);
        assert!(done <= polls * TURN, "{done} items finished in {polls} polls");
    }
}
