//! Cancellation is drop: a run dropped after any number of polls leaves
//! the store holding exactly the posts that completed — each one whole, none half-done — in a
//! plain flow with a nested flow, around a concurrent batch node (whose post is all or
//! nothing) and around a `BatchAsyncFlow`; the flow then runs again to completion. Dropping a
//! run inside a retry `wait` or a long `exec` stops it there, and `select` / tokio `timeout`
//! cancel a run with the same guarantees.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::future::Either;
use miniflow::{Action, BatchAsyncFlow, BatchNode, Ctx, Error, Flow, Node, Params, Result};

mod common;
use common::*;

/// More polls than any flow here needs: a run still pending after this many has hung.
const MAX_POLLS: usize = 10_000;

/// The store. Its invariant, which only whole posts keep: every post pushes one entry *and*
/// bumps `posts`, so `entries.len() == posts`.
#[derive(Debug, Default, Clone, PartialEq)]
struct Ledger {
    entries: Vec<String>,
    posts: usize,
    /// Written only by the batch node's post, all items at once.
    squares: Vec<u32>,
    /// Written only by the `BatchAsyncFlow`'s post: its sub-runs' last actions.
    sub_actions: Vec<String>,
}

impl Ledger {
    fn record(&mut self, entry: String) {
        self.entries.push(entry);
        self.posts += 1;
    }

    fn assert_whole_posts(&self) {
        assert_eq!(self.entries.len(), self.posts, "a post was cut in half: {self:?}");
    }

    fn has(&self, entry: &str) -> bool {
        self.entries.iter().any(|e| e == entry)
    }

    fn position(&self, entry: &str) -> Option<usize> {
        self.entries.iter().position(|e| e == entry)
    }
}

/// Counts exec calls that started and that finished (returned `Ready`).
#[derive(Debug, Default)]
struct Probe {
    started: AtomicUsize,
    finished: AtomicUsize,
}

impl Probe {
    fn started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }

    fn finished(&self) -> usize {
        self.finished.load(Ordering::SeqCst)
    }

    fn reset(&self) {
        self.started.store(0, Ordering::SeqCst);
        self.finished.store(0, Ordering::SeqCst);
    }
}

/// Counts its own drops: held by a prep value or an exec future to see when the run lets go.
#[derive(Debug)]
struct DropGuard(Arc<AtomicUsize>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A node whose exec returns `Pending` a known number of times and whose post records one
/// entry. Inside a batch flow's sub-run (params `i` and `extra` set) its entry is `name#i` and
/// it pends `extra` more times.
struct Stage {
    name: &'static str,
    pendings: usize,
    probe: Arc<Probe>,
}

fn stage(name: &'static str, pendings: usize, probe: &Arc<Probe>) -> Stage {
    Stage { name, pendings, probe: Arc::clone(probe) }
}

impl Node<Ledger> for Stage {
    type Prep = (String, usize);
    type Output = ();

    fn prep(&self, _: &Ledger, params: &Params) -> Result<(String, usize)> {
        if !params.contains("i") {
            return Ok((self.name.to_string(), self.pendings));
        }
        let (i, extra) = (params.int("i")?, params.int("extra")?);
        Ok((format!("{}#{i}", self.name), self.pendings + extra as usize))
    }

    async fn exec(&self, prep: &(String, usize), _: Ctx<'_>) -> Result<()> {
        self.probe.started.fetch_add(1, Ordering::SeqCst);
        YieldNow(prep.1).await;
        self.probe.finished.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn post(&self, ledger: &mut Ledger, (entry, _): (String, usize), _: ()) -> Result<Action> {
        ledger.record(entry);
        Ok(Action::DEFAULT)
    }
}

/// A concurrent batch node (3 in flight) over `ITEMS`: item `x` pends `x % 4` times, so items
/// finish out of order; post stores every square at once.
struct Squares(Arc<Probe>);

const ITEMS: [u32; 5] = [3, 1, 4, 0, 2];

impl BatchNode<Ledger> for Squares {
    type Item = u32;
    type Output = u32;

    fn prep(&self, _: &Ledger, _: &Params) -> Result<Vec<u32>> {
        Ok(ITEMS.to_vec())
    }

    async fn exec(&self, item: &u32, _: Ctx<'_>) -> Result<u32> {
        self.0.started.fetch_add(1, Ordering::SeqCst);
        YieldNow(*item as usize % 4).await;
        self.0.finished.fetch_add(1, Ordering::SeqCst);
        Ok(item * item)
    }

    fn post(
        &self,
        ledger: &mut Ledger,
        _: &Params,
        _: Vec<u32>,
        squares: Vec<u32>,
    ) -> Result<Action> {
        ledger.squares = squares;
        ledger.record("squares".into());
        Ok(Action::DEFAULT)
    }

    fn max_in_flight(&self) -> usize {
        3
    }
}

/// A node whose exec never finishes in a test's lifetime (an hour-long async-io timer), holding
/// a [`DropGuard`] while it waits.
struct Stuck {
    calls: Arc<AtomicUsize>,
    exec_drops: Arc<AtomicUsize>,
}

impl Node<Ledger> for Stuck {
    type Prep = ();
    type Output = ();

    fn prep(&self, _: &Ledger, _: &Params) -> Result<()> {
        Ok(())
    }

    async fn exec(&self, _: &(), _: Ctx<'_>) -> Result<()> {
        let _guard = DropGuard(Arc::clone(&self.exec_drops));
        self.calls.fetch_add(1, Ordering::SeqCst);
        smol::Timer::after(Duration::from_secs(3600)).await;
        Ok(())
    }

    fn post(&self, ledger: &mut Ledger, _: (), _: ()) -> Result<Action> {
        ledger.record("stuck".into());
        Ok(Action::DEFAULT)
    }
}

/// `first -> stuck -> last`: a run of it can only be cancelled inside `stuck`'s exec.
fn stuck_flow(calls: &Arc<AtomicUsize>, exec_drops: &Arc<AtomicUsize>) -> Flow<Ledger> {
    let probe = Arc::new(Probe::default());
    let mut flow = Flow::new();
    let first = flow.add("first", stage("first", 0, &probe));
    let stuck =
        flow.add("stuck", Stuck { calls: Arc::clone(calls), exec_drops: Arc::clone(exec_drops) });
    let last = flow.add("last", stage("last", 0, &probe));
    flow.then(first, stuck);
    flow.then(stuck, last);
    flow
}

/// Starts a run of `flow` on `store`, polls it at most `k` times with a no-op waker, and drops
/// it. Returns the run's action if it finished within those polls.
fn poll_at_most(flow: &Flow<Ledger>, store: &mut Ledger, k: usize) -> Option<Action> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut run = Box::pin(flow.run(store));
    for _ in 0..k {
        if let Poll::Ready(result) = run.as_mut().poll(&mut cx) {
            return Some(result.expect("the run succeeds"));
        }
    }
    None
}

/// Cancels a fresh run of `flow` after 1 poll, after 2 polls, … until a run finishes within its
/// polls. `probes` are reset before each run. After each cut the store must hold whole posts
/// only; `check` then sees the poll count and the store, and the same flow must run to
/// completion on a fresh store and pass `check_complete`. Returns the polls a full run takes.
fn cancel_after_every_poll(
    flow: &Flow<Ledger>,
    probes: &[&Probe],
    mut check: impl FnMut(usize, &Ledger),
    check_complete: impl Fn(&Ledger),
) -> usize {
    for k in 1..=MAX_POLLS {
        probes.iter().for_each(|p| p.reset());
        let mut store = Ledger::default();
        if let Some(action) = poll_at_most(flow, &mut store, k) {
            assert_eq!(action, Action::DEFAULT);
            check_complete(&store);
            return k;
        }
        store.assert_whole_posts();
        check(k, &store);
        let mut fresh = Ledger::default();
        futures::executor::block_on(flow.run(&mut fresh))
            .expect("a rerun after a cancelled run succeeds");
        check_complete(&fresh);
    }
    panic!("the run did not finish within {MAX_POLLS} polls");
}

#[test]
fn dropping_a_sequential_run_after_any_poll_keeps_exactly_the_finished_posts() {
    // a -> nested{b -> c} -> d, pending 2, 0, 3 and 1 times: each node's exec finishes (and its
    // post runs) on poll 1 + (the pendings so far): a, b on poll 3; c on poll 6; d on poll 7.
    let probe = Arc::new(Probe::default());
    let mut inner = Flow::new();
    let b = inner.add("b", stage("b", 0, &probe));
    let c = inner.add("c", stage("c", 3, &probe));
    inner.then(b, c);
    let mut flow = Flow::new();
    let a = flow.add("a", stage("a", 2, &probe));
    let nested = flow.add("nested", inner);
    let d = flow.add("d", stage("d", 1, &probe));
    flow.then(a, nested);
    flow.then(nested, d);

    let names = ["a", "b", "c", "d"];
    let finished_on_poll = [3, 3, 6, 7];
    let polls = cancel_after_every_poll(
        &flow,
        &[&probe],
        |k, store| {
            let done = finished_on_poll.iter().filter(|&&p| p <= k).count();
            assert_eq!(store.entries, names[..done], "after {k} polls");
            assert_eq!(
                store.posts,
                probe.finished(),
                "after {k} polls: one post per finished exec"
            );
            assert_eq!(
                probe.started(),
                probe.finished() + 1,
                "after {k} polls: cut inside one exec"
            );
        },
        |store| assert_eq!(store.entries, names),
    );
    assert_eq!(polls, 7);
}

#[test]
fn dropping_a_run_inside_a_concurrent_batch_node_keeps_all_of_its_outputs_or_none() {
    let (stages, items) = (Arc::new(Probe::default()), Arc::new(Probe::default()));
    let mut flow = Flow::new();
    let before = flow.add("before", stage("before", 1, &stages));
    let squares = flow.add("squares", Squares(Arc::clone(&items)));
    let after = flow.add("after", stage("after", 1, &stages));
    flow.then(before, squares);
    flow.then(squares, after);

    let all_squares: Vec<u32> = ITEMS.iter().map(|x| x * x).collect();
    let mut cuts_with_some_items_done = 0;
    cancel_after_every_poll(
        &flow,
        &[&stages, &items],
        |k, store| {
            let batch_posted = store.has("squares");
            assert!(
                store.squares.is_empty() || store.squares == all_squares,
                "after {k} polls: {store:?}"
            );
            assert_eq!(!store.squares.is_empty(), batch_posted, "after {k} polls");
            assert_eq!(
                batch_posted,
                items.finished() == ITEMS.len(),
                "after {k} polls: post follows the last item"
            );
            assert_eq!(
                store.posts,
                stages.finished() + usize::from(batch_posted),
                "after {k} polls"
            );
            if !batch_posted && items.finished() > 0 {
                cuts_with_some_items_done += 1;
                assert!(
                    items.started() > items.finished(),
                    "after {k} polls: items still in flight"
                );
            }
        },
        |store| {
            assert_eq!(store.entries, ["before", "squares", "after"]);
            assert_eq!(store.squares, all_squares);
        },
    );
    assert!(cuts_with_some_items_done > 0, "some cut fell between the batch's first and last item");
}

#[test]
fn dropping_a_batch_async_flow_run_keeps_only_whole_sub_run_posts() {
    // Four sub-runs of `left -> right`, three in flight at once; sub-run i's `left` pends
    // EXTRA[i] times and its `right` EXTRA[i] + 1 times, so the sub-runs finish out of order.
    const EXTRA: [i64; 4] = [3, 0, 2, 1];
    let probe = Arc::new(Probe::default());
    let mut sub = Flow::new();
    let left = sub.add("left", stage("left", 0, &probe));
    let right = sub.add("right", stage("right", 1, &probe));
    sub.then(left, right);
    let fan_out = BatchAsyncFlow::new(sub, |_: &Ledger, _: &Params| {
        Ok((0..)
            .zip(EXTRA)
            .map(|(i, extra)| Params::new().with("i", i).with("extra", extra))
            .collect())
    })
    .post(|ledger: &mut Ledger, _: Vec<Params>, actions: Vec<Action>| {
        ledger.sub_actions = actions.iter().map(Action::to_string).collect();
        ledger.record("fan_out".into());
        Ok(Action::DEFAULT)
    })
    .max_in_flight(3);
    let mut flow = Flow::new();
    let before = flow.add("before", stage("before", 1, &probe));
    let fan_out = flow.add("fan_out", fan_out);
    let after = flow.add("after", stage("after", 1, &probe));
    flow.then(before, fan_out);
    flow.then(fan_out, after);

    let sub_runs_in_order = |store: &Ledger| {
        for i in 0..EXTRA.len() {
            let (l, r) =
                (store.position(&format!("left#{i}")), store.position(&format!("right#{i}")));
            if let Some(r) = r {
                assert!(
                    l.is_some_and(|l| l < r),
                    "sub-run {i} posted `right` before `left`: {store:?}"
                );
            }
        }
    };
    let mut cuts_with_some_sub_runs_done = 0;
    cancel_after_every_poll(
        &flow,
        &[&probe],
        |k, store| {
            sub_runs_in_order(store);
            let fan_out_posted = store.has("fan_out");
            assert_eq!(!store.sub_actions.is_empty(), fan_out_posted, "after {k} polls");
            assert_eq!(
                store.posts,
                probe.finished() + usize::from(fan_out_posted),
                "after {k} polls"
            );
            let sub_posts = store.entries.iter().filter(|e| e.contains('#')).count();
            if fan_out_posted {
                assert_eq!(
                    sub_posts,
                    2 * EXTRA.len(),
                    "after {k} polls: fan_out posted before its sub-runs"
                );
            } else if 0 < sub_posts && sub_posts < 2 * EXTRA.len() {
                cuts_with_some_sub_runs_done += 1;
            }
        },
        |store| {
            sub_runs_in_order(store);
            assert_eq!(store.posts, 2 + 2 * EXTRA.len() + 1);
            assert_eq!(store.entries.first().map(String::as_str), Some("before"));
            assert_eq!(store.entries[store.posts - 2..], ["fan_out", "after"]);
            assert_eq!(store.sub_actions, ["default"; 4]);
            // Sub-run 1 (no extra pendings) overtook sub-run 0: they really ran concurrently.
            let (right1, left0) = (store.position("right#1"), store.position("left#0"));
            assert!(right1.zip(left0).is_some_and(|(r, l)| r < l), "{store:?}");
        },
    );
    assert!(
        cuts_with_some_sub_runs_done > 0,
        "some cut fell between the first and last sub-run posts"
    );
}

#[test]
fn dropping_a_run_during_a_retry_wait_makes_no_further_attempt() {
    // Always fails; 5 attempts with an hour between them. Its prep value holds a guard, which
    // the run keeps across the wait.
    struct Flaky {
        calls: Arc<AtomicUsize>,
        prep_drops: Arc<AtomicUsize>,
    }

    impl Node<Ledger> for Flaky {
        type Prep = DropGuard;
        type Output = ();

        fn prep(&self, _: &Ledger, _: &Params) -> Result<DropGuard> {
            Ok(DropGuard(Arc::clone(&self.prep_drops)))
        }

        async fn exec(&self, _: &DropGuard, _: Ctx<'_>) -> Result<()> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Err("down".into())
        }

        fn post(&self, ledger: &mut Ledger, _: DropGuard, _: ()) -> Result<Action> {
            ledger.record("flaky".into());
            Ok(Action::DEFAULT)
        }

        fn max_retries(&self) -> usize {
            5
        }

        fn wait(&self, _: &Error, _: Ctx<'_>) -> Option<Duration> {
            Some(Duration::from_secs(3600))
        }
    }

    let (calls, prep_drops) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let probe = Arc::new(Probe::default());
    let mut flow = Flow::new();
    let first = flow.add("first", stage("first", 0, &probe));
    let flaky =
        flow.add("flaky", Flaky { calls: Arc::clone(&calls), prep_drops: Arc::clone(&prep_drops) });
    flow.then(first, flaky);

    let mut store = Ledger::default();
    let mut cx = Context::from_waker(Waker::noop());
    let mut run = Box::pin(flow.run(&mut store));
    for poll in 1..=3 {
        assert!(
            run.as_mut().poll(&mut cx).is_pending(),
            "poll {poll}: the run is waiting to retry"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1, "poll {poll}: one attempt, then the wait");
        assert_eq!(
            prep_drops.load(Ordering::SeqCst),
            0,
            "poll {poll}: the run holds the prep value"
        );
    }
    drop(run);
    assert_eq!(prep_drops.load(Ordering::SeqCst), 1, "dropping the run dropped its prep value");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "no attempt after the drop");
    store.assert_whole_posts();
    assert_eq!(store.entries, ["first"]);
}

#[test]
fn dropping_a_run_inside_a_long_exec_drops_the_exec_future() {
    let (calls, exec_drops) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let flow = stuck_flow(&calls, &exec_drops);
    let mut store = Ledger::default();
    let mut cx = Context::from_waker(Waker::noop());
    let mut run = Box::pin(flow.run(&mut store));
    for poll in 1..=3 {
        assert!(run.as_mut().poll(&mut cx).is_pending(), "poll {poll}: the exec is still running");
    }
    assert_eq!(exec_drops.load(Ordering::SeqCst), 0, "the exec future is alive while the run is");
    drop(run);
    assert_eq!(exec_drops.load(Ordering::SeqCst), 1, "dropping the run dropped the exec future");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    store.assert_whole_posts();
    assert_eq!(store.entries, ["first"]);
}

#[test]
fn select_against_a_timer_cancels_a_long_exec_and_keeps_the_earlier_posts() {
    let (calls, exec_drops) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let flow = stuck_flow(&calls, &exec_drops);
    let mut store = Ledger::default();
    smol::block_on(async {
        let run = Box::pin(flow.run(&mut store));
        let deadline = smol::Timer::after(Duration::from_millis(20));
        match futures::future::select(run, deadline).await {
            Either::Left((result, _)) => panic!("the stuck run finished: {result:?}"),
            Either::Right((_, run)) => drop(run),
        }
    });
    assert_eq!(exec_drops.load(Ordering::SeqCst), 1, "the exec future was dropped");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    store.assert_whole_posts();
    assert_eq!(store.entries, ["first"]);
}

#[tokio::test(flavor = "current_thread")]
async fn tokio_timeout_cancels_a_long_exec_and_keeps_the_earlier_posts() {
    let (calls, exec_drops) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let flow = stuck_flow(&calls, &exec_drops);
    let mut store = Ledger::default();
    let outcome = tokio::time::timeout(Duration::from_millis(20), flow.run(&mut store)).await;
    assert!(outcome.is_err(), "the stuck run finished: {outcome:?}");
    assert_eq!(exec_drops.load(Ordering::SeqCst), 1, "the exec future was dropped");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    store.assert_whole_posts();
    assert_eq!(store.entries, ["first"]);
}
