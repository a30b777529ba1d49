//! Control over a run from outside its nodes.
//!
//! - **Resume inside nested flows**: `RunOptions::start_at` takes a path (`"sub/z"`,
//!   `"outer/inner/leaf"`), and the checkpoint hook names the next node by its path in the
//!   outermost flow and the flows nested in it (never inside a batch flow or a parallel node).
//!   The issue's shop `a → sub(x → pay → z) → b`, whose `z` fails, panics or hangs the first
//!   time, resumes at `sub/z` running exactly `z, b` and paying once; a resume at every
//!   checkpoint re-runs nothing that had finished. Every hostile path is refused with an exact
//!   `InvalidConfig` before any node runs, the hook is called, or more than `RunStart` and
//!   `Failed` is observed.
//! - **Deadlines**: `Flow::timeout` limits each whole visit of a node (a nested flow, a batch
//!   flow, a concurrent or sequential batch, a parallel node, a batch node, a plain node with
//!   all its attempts) and `RunOptions::timeout` the whole run: the run fails with
//!   `FlowError::Timeout` naming what ran out (exact `Display`), nothing after it runs, the
//!   posts before it stay, no retry or fallback follows, zero limits fail before the visit's
//!   prep, `Duration::MAX` is no limit, and the step limit, the observer and cancellation keep
//!   working inside. Timers work under `smol::block_on`, `futures::executor::block_on` and a
//!   spawned tokio task.
//! - **Fan-outs that survive failures**: with `post_outcomes`, a `BatchFlow`, a `BatchAsyncFlow`
//!   (with and without `max_in_flight`) and a `Parallel` run every job to its end and give the
//!   post each action or error, by path, in input order (100,000 sub-runs included); fail-fast
//!   stays the default, the last post set decides, the step limit still stops the run, and the
//!   post's own error fails the fan-out by its path.
//! - **Custom events carry a `Value`** of the type `emit` was given, converted only for an
//!   observer; two concurrent runs share one sink, told apart by the run id each observer
//!   captures.
//!
//! Time limits are made to fire by real timers, but only outcomes that cannot vary are
//! asserted: which error, naming which node, and which nodes ran. Every job that must finish
//! before a short limit fires finishes without awaiting, in the poll that starts it. A limit the
//! code ignored shows as a test that hangs (no test measures time).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use miniflow::{
    Action, BatchAsyncFlow, BatchFlow, Ctx, Error, Event, Flow, FlowError, Node, Parallel, Params,
    Phase, Result, RunOptions, Value, node_fn,
};

mod common;
use common::*;

const MS: fn(u64) -> Duration = Duration::from_millis;

/// Longer than any test runs: a node that sleeps this long has stalled.
const FOREVER: Duration = Duration::from_secs(3600);

/// More polls than any run here needs before it stalls.
const POLLS: usize = 50;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The two executors every timer must work under: smol's, and one that knows nothing of
/// async-io (the timer drives itself there).
#[derive(Clone, Copy, Debug)]
enum Executor {
    Smol,
    Futures,
}

impl Executor {
    fn block_on<F: Future>(self, future: F) -> F::Output {
        match self {
            Executor::Smol => smol::block_on(future),
            Executor::Futures => futures::executor::block_on(future),
        }
    }
}

const BOTH: [Executor; 2] = [Executor::Smol, Executor::Futures];

/// The store of most tests: the names of the nodes whose `post` ran, in order.
type Runs = Vec<String>;

/// What the nodes' `prep` and `exec` did, in order (`"prep x"`, `"exec x"`): the store only
/// shows posts.
type Trace = Arc<Mutex<Vec<String>>>;

fn traced(trace: &Trace) -> Vec<String> {
    trace.lock().unwrap().clone()
}

/// A node that records its post in the store and goes on with the default action.
fn mark(name: &'static str) -> impl Node<Runs> {
    node_fn(move |runs: &mut Runs, _: &Params| {
        runs.push(name.to_string());
        Ok(Action::DEFAULT)
    })
}

/// What a [`Step`]'s `exec` does.
#[derive(Clone, Copy, Debug)]
enum Does {
    /// Returns at once, never awaiting.
    Nothing,
    /// Sleeps this long on the crate's timer, then succeeds.
    Sleep(Duration),
    /// Never finishes (sleeps an hour).
    Stall,
    /// Emits a custom event `"tokens"` with this number, then succeeds.
    Emit(i64),
}

/// A node that traces its prep and exec, does what `does` says, records its post in the
/// store and returns what `route` picks.
struct Step {
    name: &'static str,
    does: Does,
    trace: Trace,
    route: fn(&Runs) -> Action,
}

fn step(name: &'static str, does: Does, trace: &Trace) -> Step {
    Step { name, does, trace: Arc::clone(trace), route: |_| Action::DEFAULT }
}

impl Node<Runs> for Step {
    type Prep = ();
    type Output = ();

    fn prep(&self, _: &Runs, _: &Params) -> Result<()> {
        self.trace.lock().unwrap().push(format!("prep {}", self.name));
        Ok(())
    }

    async fn exec(&self, _: &(), cx: Ctx<'_>) -> Result<()> {
        self.trace.lock().unwrap().push(format!("exec {}", self.name));
        match self.does {
            Does::Nothing => {}
            Does::Sleep(time) => miniflow::sleep(time).await,
            Does::Stall => miniflow::sleep(FOREVER).await,
            Does::Emit(n) => cx.emit("tokens", n),
        }
        Ok(())
    }

    fn post(&self, runs: &mut Runs, _: (), _: ()) -> Result<Action> {
        runs.push(self.name.to_string());
        Ok((self.route)(runs))
    }
}

/// An observer that keeps every event as a [`line`](common::line).
#[derive(Default)]
struct Lines(Mutex<Vec<String>>);

impl Lines {
    fn observer(&self) -> impl Fn(&Event<'_>) + Sync + '_ {
        |event: &Event<'_>| self.0.lock().unwrap().push(common::line(event))
    }

    fn get(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// Asserts that `result` is the time limit of `node` (empty: the run) running out after
/// `after`, with its exact `Display`.
fn assert_timeout(result: Result<Action, FlowError>, node: &str, after: Duration, display: &str) {
    let err = result.expect_err("the run should have timed out");
    assert!(
        matches!(&err, FlowError::Timeout { node: n, after: a, .. } if n == node && *a == after),
        "{err:?}"
    );
    assert_eq!(err.node(), node);
    assert_eq!(err.to_string(), display);
    assert_eq!(format!("{err:#}"), display, "a timeout has no cause to chain");
    assert!(std::error::Error::source(&err).is_none());
}

// ---------------------------------------------------------------------------------------------
// Resume inside nested flows: the issue's scenario
// ---------------------------------------------------------------------------------------------

/// The shop of the issue: what ran, and how many payments were made.
#[derive(Clone, Debug, Default, PartialEq)]
struct Shop {
    ran: Vec<String>,
    paid: u32,
}

/// How `z` misbehaves on its first call, as a crash would.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Crash {
    None,
    /// Returns an error.
    Fail,
    /// Panics.
    Panic,
    /// Never finishes: the run future is dropped there.
    Hang,
}

/// A node of the shop: its exec counts its calls and crashes on the first one as `crash` says;
/// its post records it (and `pay` pays).
struct ShopStep {
    name: &'static str,
    crash: Crash,
    calls: AtomicUsize,
}

impl Node<Shop> for ShopStep {
    type Prep = ();
    type Output = ();

    fn prep(&self, _: &Shop, _: &Params) -> Result<()> {
        Ok(())
    }

    async fn exec(&self, _: &(), _: Ctx<'_>) -> Result<()> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            match self.crash {
                Crash::None => {}
                Crash::Fail => return Err(failure(format!("{} crashed", self.name))),
                Crash::Panic => panic!("{} crashed", self.name),
                Crash::Hang => std::future::pending::<()>().await,
            }
        }
        Ok(())
    }

    fn post(&self, shop: &mut Shop, _: (), _: ()) -> Result<Action> {
        shop.ran.push(self.name.to_string());
        if self.name == "pay" {
            shop.paid += 1;
        }
        Ok(Action::DEFAULT)
    }
}

fn shop_step(name: &'static str, crash: Crash) -> ShopStep {
    ShopStep { name, crash, calls: AtomicUsize::new(0) }
}

/// `a → sub(x → pay → z) → b`, with `z` crashing on its first call as `crash` says. Built
/// afresh for each run, as a restarted process would.
fn shop(crash: Crash) -> Flow<Shop> {
    let mut sub = Flow::new();
    let x = sub.add("x", shop_step("x", Crash::None));
    let pay = sub.add("pay", shop_step("pay", Crash::None));
    let z = sub.add("z", shop_step("z", crash));
    sub.chain(&[x, pay, z]);
    let mut flow = Flow::new();
    let a = flow.add("a", shop_step("a", Crash::None));
    let sub = flow.add("sub", sub);
    let b = flow.add("b", shop_step("b", Crash::None));
    flow.chain(&[a, sub, b]);
    flow
}

/// The checkpoints of a run as an app saves them: the store and the next node's path.
type Saves<S> = Mutex<Vec<(S, String)>>;

/// Options that start at `start` (if any) and save every checkpoint into `saves`.
fn saving<'o, S: Clone + Send>(saves: &'o Saves<S>, start: Option<&'o str>) -> RunOptions<'o, S> {
    let options = RunOptions::new().checkpoint(move |s: &S, next: &str| {
        saves.lock().unwrap().push((s.clone(), next.to_string()));
        Ok(())
    });
    match start {
        Some(path) => options.start_at(path),
        None => options,
    }
}

fn paths<S>(saves: &Saves<S>) -> Vec<String> {
    saves.lock().unwrap().iter().map(|(_, next)| next.clone()).collect()
}

fn last_save<S: Clone>(saves: &Saves<S>) -> (S, String) {
    saves.lock().unwrap().last().cloned().expect("a checkpoint was saved")
}

/// The shop after `a`, `x` and `pay`: what the checkpoint before `z` holds.
fn paid_before_z() -> Shop {
    Shop { ran: vec!["a".into(), "x".into(), "pay".into()], paid: 1 }
}

/// Resumes the shop from its last checkpoint (which must name `sub/z`) in a fresh flow, and
/// checks that exactly `z, b` run, that `pay` ran once overall, and what the hook saves.
fn resume_at_sub_z(saves: &Saves<Shop>) {
    let (mut shop_store, next) = last_save(saves);
    assert_eq!((&shop_store, next.as_str()), (&paid_before_z(), "sub/z"));

    let resumed = Saves::default();
    let flow = shop(Crash::None);
    let result = smol::block_on(flow.run_with(&mut shop_store, saving(&resumed, Some(&next))));

    assert_eq!(result.unwrap(), "default");
    assert_eq!(shop_store.ran, ["a", "x", "pay", "z", "b"]); // `z, b` added, nothing else
    assert_eq!(shop_store.paid, 1);
    assert_eq!(paths(&resumed), ["b"]);
}

#[test]
fn a_failed_nested_node_is_resumed_at_its_checkpoint_sub_z_and_pays_once() {
    let saves = Saves::default();
    let mut store = Shop::default();

    let err =
        smol::block_on(shop(Crash::Fail).run_with(&mut store, saving(&saves, None))).unwrap_err();

    assert!(
        matches!(&err, FlowError::NodeFailed { node, phase: Phase::Exec, attempts: 1, .. }
            if node == "sub/z"),
        "{err:?}"
    );
    assert_eq!(format!("{err:#}"), "node `sub/z` failed in exec after 1 attempt: z crashed");
    assert_eq!(store, paid_before_z());
    assert_eq!(paths(&saves), ["sub", "sub/pay", "sub/z"]);
    resume_at_sub_z(&saves);
}

#[test]
fn a_nested_node_that_panics_is_resumed_from_the_checkpoint_before_it() {
    let saves = Saves::default();
    let flow = shop(Crash::Panic);

    let panicked = catch_unwind(AssertUnwindSafe(|| {
        smol::block_on(flow.run_with(&mut Shop::default(), saving(&saves, None)))
    }));

    assert_eq!(*panicked.unwrap_err().downcast::<String>().unwrap(), "z crashed");
    assert_eq!(paths(&saves), ["sub", "sub/pay", "sub/z"]);
    resume_at_sub_z(&saves);
}

#[test]
fn a_run_dropped_inside_a_nested_node_is_resumed_from_the_checkpoint_before_it() {
    let saves = Saves::default();
    let flow = shop(Crash::Hang);
    let mut store = Shop::default();

    let (done, polls) = poll_by_hand(flow.run_with(&mut store, saving(&saves, None)), POLLS);

    assert!(done.is_none());
    assert_eq!(polls, POLLS);
    assert_eq!(store, paid_before_z());
    assert_eq!(paths(&saves), ["sub", "sub/pay", "sub/z"]);
    resume_at_sub_z(&saves);
}

#[test]
fn a_resume_at_every_checkpoint_re_runs_nothing_that_had_finished() {
    let saves = Saves::default();
    let mut whole = Shop::default();
    smol::block_on(shop(Crash::None).run_with(&mut whole, saving(&saves, None))).unwrap();
    assert_eq!(
        whole,
        Shop { ran: ["a", "x", "pay", "z", "b"].map(String::from).to_vec(), paid: 1 }
    );
    let checkpoints = saves.into_inner().unwrap();
    let names: Vec<&str> = checkpoints.iter().map(|(_, next)| next.as_str()).collect();
    assert_eq!(names, ["sub", "sub/pay", "sub/z", "b"]);

    for (i, (saved, next)) in checkpoints.iter().enumerate() {
        let mut store = saved.clone();
        let resumed = Saves::default();
        let flow = shop(Crash::None);
        let result = smol::block_on(flow.run_with(&mut store, saving(&resumed, Some(next))));
        assert_eq!(result.unwrap(), "default", "resumed at {next:?}");
        // The same end as the uninterrupted run: every node once, one payment.
        assert_eq!(store, whole, "resumed at {next:?}");
        // And the hook goes on from there as it did the first time.
        assert_eq!(paths(&resumed), names[i + 1..], "resumed at {next:?}");
    }
}

/// `start → outer(o1 → inner(i1 → leaf → i2) → o2) → end`.
fn two_levels() -> Flow<Runs> {
    let mut inner = Flow::new();
    let i1 = inner.add("i1", mark("i1"));
    let leaf = inner.add("leaf", mark("leaf"));
    let i2 = inner.add("i2", mark("i2"));
    inner.chain(&[i1, leaf, i2]);
    let mut outer = Flow::new();
    let o1 = outer.add("o1", mark("o1"));
    let inner = outer.add("inner", inner);
    let o2 = outer.add("o2", mark("o2"));
    outer.chain(&[o1, inner, o2]);
    let mut flow = Flow::new();
    let start = flow.add("start", mark("start"));
    let outer = flow.add("outer", outer);
    let end = flow.add("end", mark("end"));
    flow.chain(&[start, outer, end]);
    flow
}

#[test]
fn a_path_two_levels_deep_is_checkpointed_and_resumed() {
    let saves = Saves::default();
    let mut whole = Runs::new();
    smol::block_on(two_levels().run_with(&mut whole, saving(&saves, None))).unwrap();
    assert_eq!(whole, ["start", "o1", "i1", "leaf", "i2", "o2", "end"]);
    assert_eq!(
        paths(&saves),
        ["outer", "outer/inner", "outer/inner/leaf", "outer/inner/i2", "outer/o2", "end"]
    );

    // At the leaf two flows down: only what follows it runs, each once.
    let mut runs = Runs::new();
    let resumed = Saves::default();
    let options = saving(&resumed, Some("outer/inner/leaf"));
    assert_eq!(smol::block_on(two_levels().run_with(&mut runs, options)).unwrap(), "default");
    assert_eq!(runs, ["leaf", "i2", "o2", "end"]);
    assert_eq!(paths(&resumed), ["outer/inner/i2", "outer/o2", "end"]);

    // At the inner flow itself: it runs from its own start.
    let mut runs = Runs::new();
    smol::block_on(two_levels().run_with(&mut runs, RunOptions::new().start_at("outer/inner")))
        .unwrap();
    assert_eq!(runs, ["i1", "leaf", "i2", "o2", "end"]);

    // Every checkpoint resumes to the uninterrupted run's end.
    for (saved, next) in saves.into_inner().unwrap() {
        let mut runs = saved.clone();
        smol::block_on(two_levels().run_with(&mut runs, RunOptions::new().start_at(&next)))
            .unwrap();
        assert_eq!(runs, whole, "resumed at {next:?}");
    }
}

#[test]
fn a_path_into_a_nested_flow_starts_only_its_first_visit_there() {
    // `sub(x → z) → check`, and `check` goes back to `sub` until it has run twice.
    let mut sub = Flow::new();
    let x = sub.add("x", mark("x"));
    let z = sub.add("z", mark("z"));
    sub.then(x, z);
    let mut flow = Flow::new();
    let sub = flow.add("sub", sub);
    let check = flow.add(
        "check",
        node_fn(|runs: &mut Runs, _: &Params| {
            runs.push("check".into());
            let checks = runs.iter().filter(|r| *r == "check").count();
            Ok(if checks < 2 { "again" } else { "done" }.into())
        }),
    );
    flow.then(sub, check);
    flow.edge(check, "again", sub);
    flow.end(check, "done");

    let mut runs = Runs::new();
    let result = smol::block_on(flow.run_with(&mut runs, RunOptions::new().start_at("sub/z")));

    assert_eq!(result.unwrap(), "done");
    assert_eq!(runs, ["z", "check", "x", "z", "check"]);
}

#[test]
fn no_checkpoint_is_taken_inside_a_batch_flow_or_a_parallel_node() {
    // `a → fan(3 × (x → y)) → par(p: (x → y), q) → b`
    let inner = || {
        let mut inner = Flow::new();
        let x = inner.add("x", mark("x"));
        let y = inner.add("y", mark("y"));
        inner.then(x, y);
        inner
    };
    let mut flow = Flow::new();
    let a = flow.add("a", mark("a"));
    let fan =
        flow.add("fan", BatchFlow::new(inner(), |_: &Runs, _: &Params| Ok(vec![Params::new(); 3])));
    let par = flow.add("par", Parallel::new().branch("p", inner()).branch("q", mark("q")));
    let b = flow.add("b", mark("b"));
    flow.chain(&[a, fan, par, b]);

    let saves = Saves::default();
    let mut runs = Runs::new();
    smol::block_on(flow.run_with(&mut runs, saving(&saves, None))).unwrap();

    assert_eq!(
        runs,
        [
            "a", "x", "y", "x", "y", "x", "y", // the sub-runs
            "x", "y", "q", // the branches (`p` never awaits, so it ends first)
            "b",
        ]
    );
    assert_eq!(paths(&saves), ["fan", "par", "b"]);
}

#[test]
fn a_nested_flow_may_declare_an_entry_point_and_a_run_may_start_there() {
    // `a → review(draft ⇢ ask_human; approved → send) → done`: `approved` is reached only by
    // resuming there.
    let review = |entry: bool| {
        let mut review = Flow::new();
        let draft = review.add(
            "draft",
            node_fn(|runs: &mut Runs, _: &Params| {
                runs.push("draft".into());
                Ok("ask_human".into())
            }),
        );
        let approved = review.add("approved", mark("approved"));
        let send = review.add("send", mark("send"));
        review.end(draft, "ask_human");
        review.then(approved, send);
        if entry {
            review.entry(approved);
        }
        let mut flow = Flow::new();
        let a = flow.add("a", mark("a"));
        let review = flow.add("review", review);
        let done = flow.add("done", mark("done"));
        flow.then(a, review);
        flow.edge(review, "ask_human", done);
        flow.then(review, done);
        flow
    };

    // Without the declaration, the nested flow's unreachable nodes fail every run.
    let err = review(false).validate().unwrap_err();
    assert!(matches!(&err, FlowError::InvalidConfig { node, .. } if node == "review"), "{err:?}");
    assert_eq!(
        err.to_string(),
        "nodes `review/approved`, `review/send` can never run: no edge leads to them from the \
         start node `review/draft`; connect them with `Flow::edge` or `Flow::then`, or remove \
         them (a node that runs only when a run resumes there is declared with `Flow::entry`)"
    );
    let mut runs = Runs::new();
    let result = smol::block_on(
        review(false).run_with(&mut runs, RunOptions::new().start_at("review/approved")),
    );
    assert_eq!(result.unwrap_err().to_string(), err.to_string());
    assert_eq!(runs, Runs::new());

    // With it, the flow is valid, runs as usual, and resumes at the entry point.
    let flow = review(true);
    assert!(flow.validate().is_ok());
    let mut runs = Runs::new();
    assert_eq!(smol::block_on(flow.run(&mut runs)).unwrap(), "default");
    assert_eq!(runs, ["a", "draft", "done"]);
    let mut runs = Runs::new();
    let resumed = Saves::default();
    let options = saving(&resumed, Some("review/approved"));
    assert_eq!(smol::block_on(flow.run_with(&mut runs, options)).unwrap(), "default");
    assert_eq!(runs, ["approved", "send", "done"]);
    assert_eq!(paths(&resumed), ["review/send", "done"]);
}

#[test]
fn a_failing_checkpoint_inside_a_nested_flow_stops_the_run_before_that_node() {
    let options = RunOptions::new().checkpoint(|_: &Shop, next: &str| match next {
        "sub/pay" => Err(failure("the disk is full")),
        _ => Ok(()),
    });
    let mut store = Shop::default();

    let err = smol::block_on(shop(Crash::None).run_with(&mut store, options)).unwrap_err();

    assert!(matches!(&err, FlowError::Checkpoint { node, .. } if node == "sub/pay"), "{err:?}");
    assert_eq!(
        format!("{err:#}"),
        "the checkpoint before node `sub/pay` could not be saved, so the run stopped before it: \
         the disk is full"
    );
    assert_eq!(store, Shop { ran: vec!["a".into(), "x".into()], paid: 0 });
}

#[test]
fn a_resumed_run_reports_the_flows_around_the_node_it_starts_at() {
    let lines = Lines::default();
    let observer = lines.observer();
    let mut runs = Runs::new();
    let options = RunOptions::new().start_at("outer/inner/leaf").observer(&observer);

    smol::block_on(two_levels().run_with(&mut runs, options)).unwrap();

    assert_eq!(
        lines.get(),
        [
            "start",
            "node+ outer",
            "node+ outer/inner",
            "node+ outer/inner/leaf",
            "node- outer/inner/leaf default 1",
            "node+ outer/inner/i2",
            "node- outer/inner/i2 default 1",
            "node- outer/inner default 0",
            "node+ outer/o2",
            "node- outer/o2 default 1",
            "node- outer default 0",
            "node+ end",
            "node- end default 1",
            "finished default",
        ]
    );
}

#[test]
fn a_sub_flow_that_ran_out_of_time_resumes_from_the_checkpoint_inside_it() {
    let trace = Trace::default();
    let saves = Saves::default();
    let mut runs = Runs::new();
    let flow = timed_sub(MS(20), Does::Stall, &trace);

    let result = smol::block_on(flow.run_with(&mut runs, saving(&saves, None)));

    let display = "node `sub` did not finish within its time limit of 20ms";
    assert_timeout(result, "sub", MS(20), display);
    assert_eq!(paths(&saves), ["sub", "sub/y"]);
    let (mut runs, next) = last_save(&saves);
    assert_eq!(runs, ["a", "x"]);

    // Resumed where it stalled, under the same limit, with `y` answering this time.
    let trace = Trace::default();
    let resumed = Saves::default();
    let flow = timed_sub(MS(20), Does::Nothing, &trace);
    smol::block_on(flow.run_with(&mut runs, saving(&resumed, Some(&next)))).unwrap();
    assert_eq!(runs, ["a", "x", "y", "z", "b"]);
    assert_eq!(traced(&trace), ["prep y", "exec y", "prep z", "exec z", "prep b", "exec b"]);
    assert_eq!(paths(&resumed), ["sub/z", "b"]);

    // A path into a nested flow whose limit is zero: the limit wins, and nothing runs.
    let trace = Trace::default();
    let mut runs = Runs::new();
    let flow = timed_sub(Duration::ZERO, Does::Nothing, &trace);
    let result = smol::block_on(flow.run_with(&mut runs, RunOptions::new().start_at("sub/y")));
    let display = "node `sub` did not finish within its time limit of 0ns";
    assert_timeout(result, "sub", Duration::ZERO, display);
    assert_eq!((runs, traced(&trace)), (Runs::new(), Vec::<String>::new()));
}

// ---------------------------------------------------------------------------------------------
// Hostile paths for start_at
// ---------------------------------------------------------------------------------------------

/// `a → sub(x → pay → z) → b → fan(BatchFlow of (work)) → par(w) → ünï🦀`: a nested flow, the
/// two kinds of fan-out, and a name beyond ASCII.
fn hostile() -> Flow<Runs> {
    let mut sub = Flow::new();
    let x = sub.add("x", mark("x"));
    let pay = sub.add("pay", mark("pay"));
    let z = sub.add("z", mark("z"));
    sub.chain(&[x, pay, z]);
    let mut work = Flow::new();
    work.add("work", mark("work"));
    let mut flow = Flow::new();
    let a = flow.add("a", mark("a"));
    let sub = flow.add("sub", sub);
    let b = flow.add("b", mark("b"));
    let fan = flow.add("fan", BatchFlow::new(work, |_: &Runs, _: &Params| Ok(vec![Params::new()])));
    let par = flow.add("par", Parallel::new().branch("w", mark("w")));
    let crab = flow.add("ünï🦀", mark("ünï🦀"));
    flow.chain(&[a, sub, b, fan, par, crab]);
    flow
}

const TOP: &str = r#""a", "sub", "b", "fan", "par", "ünï🦀""#;
const SUB: &str = r#""x", "pay", "z""#;

fn not_at_top(name: &str) -> (String, String) {
    (String::new(), format!("the flow has no node named {name} to start at; its nodes are {TOP}"))
}

fn not_in_sub(name: &str) -> (String, String) {
    ("sub".into(), format!("flow `sub` has no node named {name} to start at; its nodes are {SUB}"))
}

fn not_inside(flow: &str, node: &str) -> (String, String) {
    let message = format!(
        "a run cannot start inside node `{node}`: only a nested `Flow` can be entered at one of \
         its nodes; start at `{node}` itself (a batch flow or parallel node then runs all its \
         sub-runs or branches again)"
    );
    (flow.into(), message)
}

#[test]
fn every_hostile_start_path_is_refused_exactly_before_any_node_runs() {
    let long = format!("{}z", "sub/".repeat(100_000));
    let deep = format!("a{}", "/a".repeat(100_000));
    let cases: Vec<(&str, (String, String))> = vec![
        ("", not_at_top(r#""""#)),
        ("/", not_at_top(r#""""#)),
        ("//", not_at_top(r#""""#)),
        ("/sub/z", not_at_top(r#""""#)),
        ("sub/", not_in_sub(r#""""#)),
        ("sub//z", not_in_sub(r#""""#)),
        ("sub/z/", not_inside("sub", "sub/z")),
        ("sub/z/extra", not_inside("sub", "sub/z")),
        ("sub/q", not_in_sub(r#""q""#)),
        ("q", not_at_top(r#""q""#)),
        ("SUB/z", not_at_top(r#""SUB""#)),
        (" sub/z", not_at_top(r#"" sub""#)),
        ("sub/z ", not_in_sub(r#""z ""#)),
        ("sub/z\n", not_in_sub(r#""z\n""#)),
        ("sub/\"z\"", not_in_sub(r#""\"z\"""#)),
        ("sub/\0", not_in_sub(r#""\0""#)),
        ("sub\\z", not_at_top(r#""sub\\z""#)),
        ("fan[0]/work", not_at_top(r#""fan[0]""#)),
        ("fan[0]", not_at_top(r#""fan[0]""#)),
        ("fan/work", not_inside("", "fan")),
        ("fan/", not_inside("", "fan")),
        ("par/w", not_inside("", "par")),
        ("a/x", not_inside("", "a")),
        ("ünï", not_at_top(r#""ünï""#)),
        ("ünï🦀/x", not_inside("", "ünï🦀")),
        ("sub/ünï🦀", not_in_sub(r#""ünï🦀""#)),
        ("🦀", not_at_top(r#""🦀""#)),
        ("a\u{301}", not_at_top(r#""a\u{301}""#)), // a lone combining mark is escaped
        (&long, not_in_sub(r#""sub""#)),
        (&deep, not_inside("", "a")),
    ];
    let flow = hostile();
    for (path, (node, message)) in cases {
        let mut runs = Runs::new();
        let saves = Saves::default();
        let lines = Lines::default();
        let observer = lines.observer();
        let options = saving(&saves, Some(path)).observer(&observer);

        let err = smol::block_on(flow.run_with(&mut runs, options)).unwrap_err();

        let shown: String = path.chars().take(40).collect();
        let FlowError::InvalidConfig { node: n, message: m, .. } = &err else {
            panic!("{shown:?}: expected InvalidConfig, got {err:?}");
        };
        assert_eq!((n, m), (&node, &message), "{shown:?}");
        assert_eq!(err.to_string(), message, "{shown:?}");
        assert_eq!(runs, Runs::new(), "{shown:?}: nothing may run");
        assert_eq!(paths(&saves), Vec::<String>::new(), "{shown:?}: nothing may be saved");
        assert_eq!(lines.get(), ["start".to_string(), format!("failed {message}")], "{shown:?}");
    }

    // The odd but valid names are found.
    let mut runs = Runs::new();
    smol::block_on(flow.run_with(&mut runs, RunOptions::new().start_at("ünï🦀"))).unwrap();
    assert_eq!(runs, ["ünï🦀"]);
    let mut runs = Runs::new();
    smol::block_on(flow.run_with(&mut runs, RunOptions::new().start_at("fan"))).unwrap();
    assert_eq!(runs, ["work", "w", "ünï🦀"]);
}

// ---------------------------------------------------------------------------------------------
// Deadlines: Flow::timeout and RunOptions::timeout
// ---------------------------------------------------------------------------------------------

/// `a → sub(x → y → z) → b`, with `sub` limited to `limit` and `y` doing `y_does`.
fn timed_sub(limit: Duration, y_does: Does, trace: &Trace) -> Flow<Runs> {
    let mut sub = Flow::new();
    let x = sub.add("x", step("x", Does::Emit(3), trace));
    let y = sub.add("y", step("y", y_does, trace));
    let z = sub.add("z", step("z", Does::Nothing, trace));
    sub.chain(&[x, y, z]);
    let mut flow = Flow::new();
    let a = flow.add("a", step("a", Does::Nothing, trace));
    let sub = flow.add("sub", sub);
    let b = flow.add("b", step("b", Does::Nothing, trace));
    flow.chain(&[a, sub, b]);
    flow.timeout(sub, limit);
    flow
}

#[test]
fn the_step_limit_works_inside_a_timed_sub_flow() {
    let trace = Trace::default();
    let flow = timed_sub(Duration::from_secs(60), Does::Nothing, &trace);
    let mut runs = Runs::new();

    let err = smol::block_on(flow.run_with(&mut runs, RunOptions::new().max_steps(3))).unwrap_err();

    // Node runs: a 1, sub 2, sub/x 3; sub/y would be the 4th.
    assert!(
        matches!(&err, FlowError::StepLimit { limit: 3, last, next, .. }
            if last == &["a", "sub/x"] && next == "sub/y"),
        "{err:?}"
    );
    assert_eq!(runs, ["a", "x"]);
    assert_eq!(traced(&trace), ["prep a", "exec a", "prep x", "exec x"]);
}

#[test]
fn the_observer_sees_every_event_inside_a_timed_sub_flow() {
    let trace = Trace::default();
    let flow = timed_sub(Duration::from_secs(60), Does::Nothing, &trace);
    let lines = Lines::default();
    let observer = lines.observer();
    let mut runs = Runs::new();

    let result = smol::block_on(flow.run_with(&mut runs, RunOptions::new().observer(&observer)));

    assert_eq!(result.unwrap(), "default");
    assert_eq!(runs, ["a", "x", "y", "z", "b"]);
    assert_eq!(
        lines.get(),
        [
            "start",
            "node+ a",
            "node- a default 1",
            "node+ sub",
            "node+ sub/x",
            "custom sub/x tokens: 3",
            "node- sub/x default 1",
            "node+ sub/y",
            "node- sub/y default 1",
            "node+ sub/z",
            "node- sub/z default 1",
            "node- sub default 0",
            "node+ b",
            "node- b default 1",
            "finished default",
        ]
    );
}

#[test]
fn a_stalled_sub_flow_times_out_and_nothing_after_it_runs_on_either_executor() {
    for executor in BOTH {
        let trace = Trace::default();
        let flow = timed_sub(MS(20), Does::Stall, &trace);
        let lines = Lines::default();
        let observer = lines.observer();
        let mut runs = Runs::new();

        let result =
            executor.block_on(flow.run_with(&mut runs, RunOptions::new().observer(&observer)));

        assert_timeout(
            result,
            "sub",
            MS(20),
            "node `sub` did not finish within its time limit of 20ms",
        );
        // The posts before the stall stay; `z` and `b` never started.
        assert_eq!(runs, ["a", "x"], "{executor:?}");
        assert_eq!(
            traced(&trace),
            ["prep a", "exec a", "prep x", "exec x", "prep y", "exec y"],
            "{executor:?}"
        );
        assert_eq!(
            lines.get(),
            [
                "start",
                "node+ a",
                "node- a default 1",
                "node+ sub",
                "node+ sub/x",
                "custom sub/x tokens: 3",
                "node- sub/x default 1",
                "node+ sub/y",
                "failed node `sub` did not finish within its time limit of 20ms",
            ],
            "{executor:?}"
        );
    }
}

#[test]
fn a_dropped_run_whose_timed_sub_flow_is_pending_is_cancelled() {
    let trace = Trace::default();
    let flow = timed_sub(Duration::from_secs(60), Does::Stall, &trace);
    let lines = Lines::default();
    let observer = lines.observer();
    let mut runs = Runs::new();

    let (done, _) =
        poll_by_hand(flow.run_with(&mut runs, RunOptions::new().observer(&observer)), POLLS);

    assert!(done.is_none());
    assert_eq!(runs, ["a", "x"]);
    assert_eq!(
        lines.get(),
        [
            "start",
            "node+ a",
            "node- a default 1",
            "node+ sub",
            "node+ sub/x",
            "custom sub/x tokens: 3",
            "node- sub/x default 1",
            "node+ sub/y",
            "cancelled",
        ]
    );
}

#[test]
fn a_run_timeout_stops_an_endless_loop_that_never_awaits_on_either_executor() {
    for executor in BOTH {
        let mut flow = Flow::new();
        let spin = flow.add(
            "spin",
            node_fn(|n: &mut u64, _: &Params| {
                *n += 1;
                Ok(Action::DEFAULT)
            }),
        );
        flow.then(spin, spin);
        let terminal = Lines::default();
        let observer = |event: &Event<'_>| {
            if !matches!(event, Event::NodeStart { .. } | Event::NodeEnd { .. }) {
                terminal.0.lock().unwrap().push(common::line(event));
            }
        };
        let mut spins = 0u64;
        let options = RunOptions::new().timeout(MS(10)).observer(&observer);

        let result = executor.block_on(flow.run_with(&mut spins, options));

        assert_timeout(result, "", MS(10), "the run did not finish within its time limit of 10ms");
        assert_eq!(
            terminal.get(),
            ["start", "failed the run did not finish within its time limit of 10ms"],
            "{executor:?}: the terminal event is Failed, not Cancelled"
        );
        // The timer is looked at only when the run gives its executor a turn, before every
        // 256th node run: so the run stopped right before one.
        assert_eq!(spins % 256, 255, "{executor:?}: {spins} node runs");
    }
}

#[test]
fn zero_limits_fail_before_the_visit_or_the_run_starts() {
    // A plain node: `b`'s prep never runs, and `c` never starts.
    let trace = Trace::default();
    let mut flow = Flow::new();
    let a = flow.add("a", step("a", Does::Nothing, &trace));
    let b = flow.add("b", step("b", Does::Nothing, &trace));
    let c = flow.add("c", step("c", Does::Nothing, &trace));
    flow.chain(&[a, b, c]);
    flow.timeout(b, Duration::ZERO);
    let lines = Lines::default();
    let observer = lines.observer();
    let mut runs = Runs::new();
    let result = smol::block_on(flow.run_with(&mut runs, RunOptions::new().observer(&observer)));
    assert_timeout(
        result,
        "b",
        Duration::ZERO,
        "node `b` did not finish within its time limit of 0ns",
    );
    assert_eq!(runs, ["a"]);
    assert_eq!(traced(&trace), ["prep a", "exec a"]);
    assert_eq!(
        lines.get(),
        [
            "start",
            "node+ a",
            "node- a default 1",
            "node+ b",
            "failed node `b` did not finish within its time limit of 0ns",
        ]
    );

    // The node counts as started for the step limit too: with two steps, `b` is the second
    // and times out; with one, it is never started.
    for (limit, timed_out) in [(2, true), (1, false)] {
        let options = RunOptions::new().max_steps(limit);
        let err = smol::block_on(flow.run_with(&mut Runs::new(), options)).unwrap_err();
        assert_eq!(matches!(err, FlowError::Timeout { .. }), timed_out, "{err:?}");
        assert_eq!(matches!(err, FlowError::StepLimit { .. }), !timed_out, "{err:?}");
    }

    // A nested flow: none of its nodes runs.
    let trace = Trace::default();
    let flow = timed_sub(Duration::ZERO, Does::Nothing, &trace);
    let mut runs = Runs::new();
    let result = futures::executor::block_on(flow.run(&mut runs));
    assert_timeout(
        result,
        "sub",
        Duration::ZERO,
        "node `sub` did not finish within its time limit of 0ns",
    );
    assert_eq!(runs, ["a"]);
    assert_eq!(traced(&trace), ["prep a", "exec a"]);

    // The run: no node runs at all, and the observer sees it fail.
    let trace = Trace::default();
    let flow = timed_sub(Duration::from_secs(60), Does::Nothing, &trace);
    let lines = Lines::default();
    let observer = lines.observer();
    let mut runs = Runs::new();
    let options = RunOptions::new().timeout(Duration::ZERO).observer(&observer);
    let result = smol::block_on(flow.run_with(&mut runs, options));
    assert_timeout(
        result,
        "",
        Duration::ZERO,
        "the run did not finish within its time limit of 0ns",
    );
    assert_eq!(runs, Runs::new());
    assert_eq!(traced(&trace), Vec::<String>::new());
    assert_eq!(
        lines.get(),
        ["start", "failed the run did not finish within its time limit of 0ns"]
    );

    // A flow that cannot run says why, whatever its time limit: validation comes first.
    let mut empty = Flow::<Runs>::new();
    empty.add("sub", Flow::new());
    let options = RunOptions::new().timeout(Duration::ZERO);
    let err = smol::block_on(empty.run_with(&mut Runs::new(), options)).unwrap_err();
    assert!(matches!(&err, FlowError::InvalidConfig { node, .. } if node == "sub"), "{err:?}");
}

/// A node with three attempts, a fallback that would rescue it, and an hour's pause between
/// attempts; its exec either fails at once or stalls. Counts its execs, fallbacks and posts.
#[derive(Default)]
struct Flaky {
    stall: bool,
    attempt_limit: Option<Duration>,
    pause: Duration,
    execs: AtomicUsize,
    fallbacks: AtomicUsize,
    posts: AtomicUsize,
}

impl Node<Runs> for Flaky {
    type Prep = ();
    type Output = &'static str;

    fn prep(&self, _: &Runs, _: &Params) -> Result<()> {
        Ok(())
    }

    async fn exec(&self, _: &(), cx: Ctx<'_>) -> Result<&'static str> {
        self.execs.fetch_add(1, Ordering::SeqCst);
        if self.stall {
            miniflow::sleep(FOREVER).await;
        }
        Err(failure(format!("attempt {} failed", cx.attempt())))
    }

    async fn exec_fallback(&self, _: &(), _: Error, _: Ctx<'_>) -> Result<&'static str> {
        self.fallbacks.fetch_add(1, Ordering::SeqCst);
        Ok("fallback")
    }

    fn post(&self, runs: &mut Runs, _: (), out: &'static str) -> Result<Action> {
        self.posts.fetch_add(1, Ordering::SeqCst);
        runs.push(out.to_string());
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        3
    }

    fn wait(&self, _: &Error, _: Ctx<'_>) -> Option<Duration> {
        Some(self.pause)
    }

    fn timeout(&self) -> Option<Duration> {
        self.attempt_limit
    }
}

impl Flaky {
    fn counts(&self) -> (usize, usize, usize) {
        let load = |n: &AtomicUsize| n.load(Ordering::SeqCst);
        (load(&self.execs), load(&self.fallbacks), load(&self.posts))
    }
}

/// `flaky → after`, with `flaky` limited to `limit`: the result, the store and the events.
fn run_flaky(
    node: &Arc<Flaky>,
    limit: Duration,
    executor: Executor,
) -> (Result<Action, FlowError>, Runs, Vec<String>) {
    let mut flow = Flow::new();
    let flaky = flow.add("flaky", Arc::clone(node));
    let after = flow.add("after", mark("after"));
    flow.then(flaky, after);
    flow.timeout(flaky, limit);
    let lines = Lines::default();
    let observer = lines.observer();
    let mut runs = Runs::new();
    let result = executor.block_on(flow.run_with(&mut runs, RunOptions::new().observer(&observer)));
    (result, runs, lines.get())
}

#[test]
fn a_visit_timeout_on_a_node_with_retries_is_not_retried_and_not_handed_to_the_fallback() {
    // The first attempt fails and the node pauses an hour before the next: the visit's time
    // runs out in the pause.
    let node = Arc::new(Flaky { pause: FOREVER, ..Flaky::default() });
    let (result, runs, lines) = run_flaky(&node, MS(20), Executor::Futures);
    let display = "node `flaky` did not finish within its time limit of 20ms";
    assert_timeout(result, "flaky", MS(20), display);
    assert_eq!(node.counts(), (1, 0, 0)); // one exec, no fallback, no post
    assert_eq!(runs, Runs::new());
    assert_eq!(
        lines,
        [
            "start".to_string(),
            "node+ flaky".to_string(),
            "retry flaky#0 attempt 0 failed 3600s".to_string(),
            format!("failed {display}"),
        ]
    );

    // The first attempt never ends: the visit's time runs out inside it.
    let node = Arc::new(Flaky { stall: true, ..Flaky::default() });
    let (result, runs, lines) = run_flaky(&node, MS(20), Executor::Smol);
    assert_timeout(result, "flaky", MS(20), display);
    assert_eq!(node.counts(), (1, 0, 0));
    assert_eq!(runs, Runs::new());
    assert_eq!(lines, ["start".to_string(), "node+ flaky".into(), format!("failed {display}")]);
}

#[test]
fn per_attempt_timeouts_inside_a_visit_limit_are_still_retried_and_fall_back() {
    // Each attempt stalls and is cut at 5 ms by the node's own timeout: a failed attempt,
    // retried, then rescued by the fallback, well within the visit's minute.
    let node = Arc::new(Flaky { stall: true, attempt_limit: Some(MS(5)), ..Flaky::default() });
    let (result, runs, lines) = run_flaky(&node, Duration::from_secs(60), Executor::Futures);
    assert_eq!(result.unwrap(), "default");
    assert_eq!(node.counts(), (3, 1, 1));
    assert_eq!(runs, ["fallback", "after"]);
    assert_eq!(
        lines,
        [
            "start",
            "node+ flaky",
            "retry flaky#0 exec timed out after 5ms 0ns",
            "retry flaky#1 exec timed out after 5ms 0ns",
            "fallback flaky exec timed out after 5ms",
            "node- flaky default 3",
            "node+ after",
            "node- after default 1",
            "finished default",
        ]
    );
}

#[test]
fn a_time_limit_covers_only_its_own_node_and_restarts_with_each_visit() {
    // `t` (20 ms, never awaits) → `slow` (untimed, sleeps 30 ms) → back to `t`, three rounds,
    // then `sub` (20 ms: `x` never awaits) → `after` (untimed, sleeps 30 ms). Every timed
    // visit ends in its first poll; the untimed sleeps add up to far past every limit.
    let trace = Trace::default();
    let mut sub = Flow::new();
    sub.add("x", step("x", Does::Nothing, &trace));
    let mut flow = Flow::new();
    let t = flow.add("t", step("t", Does::Nothing, &trace));
    let slow = flow.add(
        "slow",
        Step {
            route: |runs| match runs.iter().filter(|r| *r == "slow").count() {
                3 => "done".into(),
                _ => "again".into(),
            },
            ..step("slow", Does::Sleep(MS(30)), &trace)
        },
    );
    let sub = flow.add("sub", sub);
    let after = flow.add("after", step("after", Does::Sleep(MS(30)), &trace));
    flow.then(t, slow);
    flow.edge(slow, "again", t);
    flow.edge(slow, "done", sub);
    flow.then(sub, after);
    flow.timeout(t, MS(20)).timeout(sub, MS(20));

    for executor in BOTH {
        let mut runs = Runs::new();
        let result = executor.block_on(flow.run(&mut runs));
        assert_eq!(result.unwrap(), "default", "{executor:?}");
        assert_eq!(runs, ["t", "slow", "t", "slow", "t", "slow", "x", "after"], "{executor:?}");
    }
}

/// `a → sub(x → y) → b` with `sub` limited to `sub_limit` and `y` (which stalls) to `y_limit`.
fn nested_limits(sub_limit: Duration, y_limit: Duration, trace: &Trace) -> Flow<Runs> {
    let mut sub = Flow::new();
    let x = sub.add("x", step("x", Does::Nothing, trace));
    let y = sub.add("y", step("y", Does::Stall, trace));
    sub.then(x, y);
    sub.timeout(y, y_limit);
    let mut flow = Flow::new();
    let a = flow.add("a", step("a", Does::Nothing, trace));
    let sub = flow.add("sub", sub);
    let b = flow.add("b", step("b", Does::Nothing, trace));
    flow.chain(&[a, sub, b]);
    flow.timeout(sub, sub_limit);
    flow
}

#[test]
fn of_nested_limits_the_one_that_runs_out_first_is_named() {
    let minute = Duration::from_secs(60);
    for (sub_limit, y_limit, node) in [(MS(20), minute, "sub"), (minute, MS(20), "sub/y")] {
        for executor in BOTH {
            let trace = Trace::default();
            let mut runs = Runs::new();
            let result =
                executor.block_on(nested_limits(sub_limit, y_limit, &trace).run(&mut runs));
            let display = format!("node `{node}` did not finish within its time limit of 20ms");
            assert_timeout(result, node, MS(20), &display);
            assert_eq!(runs, ["a", "x"], "{node} {executor:?}");
        }
    }
}

#[test]
fn a_run_timeout_over_a_post_outcomes_fan_out_is_the_runs_error_not_an_outcome() {
    let fan = BatchAsyncFlow::new(work(odd_stall, false), sets(5)).post_outcomes(record_sets);
    let flow = then_next("fan", fan, None);
    for executor in BOTH {
        let (result, mut jobs) = run_jobs(&flow, RunOptions::new().timeout(MS(20)), executor);
        assert_timeout(result, "", MS(20), "the run did not finish within its time limit of 20ms");
        jobs.done.sort();
        assert_eq!((jobs.done, jobs.posts), (vec![0, 2, 4], 0), "{executor:?}");
    }
}

/// A batch node of four items whose odd items stall; its post records "items".
struct Items {
    in_flight: usize,
}

impl miniflow::BatchNode<Runs> for Items {
    type Item = usize;
    type Output = usize;

    fn prep(&self, _: &Runs, _: &Params) -> Result<Vec<usize>> {
        Ok((0..4).collect())
    }

    async fn exec(&self, &item: &usize, _: Ctx<'_>) -> Result<usize> {
        if item % 2 == 1 {
            miniflow::sleep(FOREVER).await;
        }
        Ok(item)
    }

    fn post(&self, runs: &mut Runs, _: &Params, _: Vec<usize>, _: Vec<usize>) -> Result<Action> {
        runs.push("items".into());
        Ok(Action::DEFAULT)
    }

    fn max_in_flight(&self) -> usize {
        self.in_flight
    }
}

#[test]
fn a_timed_batch_node_loses_its_whole_batch() {
    for in_flight in [1, 4] {
        let mut flow = Flow::new();
        let items = flow.add("items", Items { in_flight });
        let after = flow.add("after", mark("after"));
        flow.then(items, after);
        flow.timeout(items, MS(20));
        let mut runs = Runs::new();
        let result = futures::executor::block_on(flow.run(&mut runs));
        let display = "node `items` did not finish within its time limit of 20ms";
        assert_timeout(result, "items", MS(20), display);
        assert_eq!(runs, Runs::new(), "in flight {in_flight}");
    }
}

#[test]
fn the_longest_limits_are_no_limits_and_a_second_limit_replaces_the_first() {
    for executor in BOTH {
        let trace = Trace::default();
        let flow = timed_sub(Duration::MAX, Does::Sleep(MS(1)), &trace);
        let mut runs = Runs::new();
        let options = RunOptions::new().timeout(Duration::MAX);
        assert_eq!(executor.block_on(flow.run_with(&mut runs, options)).unwrap(), "default");
        assert_eq!(runs, ["a", "x", "y", "z", "b"], "{executor:?}");
    }

    // A zero limit set on `b`, then replaced by a minute; and the other way round.
    let trace = Trace::default();
    let mut flow = Flow::new();
    let a = flow.add("a", step("a", Does::Nothing, &trace));
    let b = flow.add("b", step("b", Does::Sleep(MS(1)), &trace));
    flow.then(a, b);
    flow.timeout(b, Duration::ZERO).timeout(b, Duration::from_secs(60));
    let mut runs = Runs::new();
    assert_eq!(smol::block_on(flow.run(&mut runs)).unwrap(), "default");
    assert_eq!(runs, ["a", "b"]);
    flow.timeout(b, Duration::from_secs(60)).timeout(b, Duration::ZERO);
    let mut runs = Runs::new();
    let display = "node `b` did not finish within its time limit of 0ns";
    assert_timeout(smol::block_on(flow.run(&mut runs)), "b", Duration::ZERO, display);
    assert_eq!(runs, ["a"]);
}

#[test]
fn a_timed_flow_in_a_parallel_branch_turns_its_timeout_into_an_action_of_post_outcomes() {
    // The documented way to go on after a timeout: the timed node in a flow that is a branch.
    let trace = Trace::default();
    let mut guarded = Flow::new();
    let agent = guarded.add("agent", step("agent", Does::Stall, &trace));
    guarded.timeout(agent, MS(20));
    let par = Parallel::new()
        .branch("guarded", guarded)
        .branch("quick", mark("quick"))
        .post_outcomes(|runs: &mut Runs, outcomes: Vec<Result<Action, FlowError>>| {
            runs.extend(outcomes.iter().map(|o| match o {
                Ok(action) => format!("ok {action}"),
                Err(error) => format!("err {error}"),
            }));
            let timed_out = outcomes.iter().any(|o| matches!(o, Err(FlowError::Timeout { .. })));
            Ok(if timed_out { "gave_up" } else { "answered" }.into())
        });
    let mut flow = Flow::new();
    let par = flow.add("par", par);
    let fallback = flow.add("fallback", mark("fallback"));
    let answered = flow.add("answered", mark("answered"));
    flow.edge(par, "gave_up", fallback);
    flow.edge(par, "answered", answered);

    for executor in BOTH {
        let mut runs = Runs::new();
        assert_eq!(executor.block_on(flow.run(&mut runs)).unwrap(), "default", "{executor:?}");
        assert_eq!(
            runs,
            [
                "quick",
                "err node `par/guarded/agent` did not finish within its time limit of 20ms",
                "ok default",
                "fallback",
            ],
            "{executor:?}"
        );
    }
}

#[test]
fn runs_with_time_limits_are_send_and_time_out_on_tokio_too() {
    let trace = Trace::default();
    let flow = Arc::new(timed_sub(MS(20), Does::Stall, &trace));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let (result, runs) = runtime.block_on(async {
        let flow = Arc::clone(&flow);
        tokio::spawn(async move {
            let mut runs = Runs::new();
            let options = RunOptions::new().timeout(Duration::from_secs(60));
            let result = flow.run_with(&mut runs, options).await;
            (result, runs)
        })
        .await
        .unwrap()
    });
    let display = "node `sub` did not finish within its time limit of 20ms";
    assert_timeout(result, "sub", MS(20), display);
    assert_eq!(runs, ["a", "x"]);
}

// ---------------------------------------------------------------------------------------------
// Fan-outs under a time limit (their jobs are used by the tests after them too)
// ---------------------------------------------------------------------------------------------

/// The store of the fan-out tests: the indices whose post ran (in the order they ran), what
/// the fan-out's post saw, and how often it ran.
#[derive(Debug, Default)]
struct Jobs {
    done: Vec<usize>,
    seen: Vec<String>,
    /// The failed outcomes the post saw: index, kind of error, node.
    errors: Vec<(usize, &'static str, String)>,
    posts: usize,
}

/// What job `i` does in its exec.
#[derive(Clone, Copy, Debug)]
enum Plan {
    Ok,
    Fail,
    Stall,
}

/// The one node of a job: index `index` (a parallel branch) or the param `i` (a sub-run).
/// Its exec yields `10 - i % 10` times when `yields` (so that concurrent jobs finish out of
/// input order), then does what `plan(i)` says; its post records `i` and returns `"done i"`.
struct Work {
    index: Option<usize>,
    plan: fn(usize) -> Plan,
    yields: bool,
}

impl Node<Jobs> for Work {
    type Prep = usize;
    type Output = usize;

    fn prep(&self, _: &Jobs, params: &Params) -> Result<usize> {
        match self.index {
            Some(i) => Ok(i),
            None => Ok(params.get_as::<usize>("i")?),
        }
    }

    async fn exec(&self, &i: &usize, _: Ctx<'_>) -> Result<usize> {
        if self.yields {
            yield_times(10 - i % 10).await;
        }
        match (self.plan)(i) {
            Plan::Ok => Ok(i),
            Plan::Fail => Err(failure(format!("item {i} failed"))),
            Plan::Stall => {
                miniflow::sleep(FOREVER).await;
                Ok(i)
            }
        }
    }

    fn post(&self, jobs: &mut Jobs, _: usize, i: usize) -> Result<Action> {
        jobs.done.push(i);
        Ok(format!("done {i}").into())
    }
}

/// A flow of one [`Work`] node named `work`.
fn work(plan: fn(usize) -> Plan, yields: bool) -> Flow<Jobs> {
    let mut flow = Flow::new();
    flow.add("work", Work { index: None, plan, yields });
    flow
}

/// A batch prep of `n` sub-runs, the param `i` numbering them.
fn sets(n: usize) -> impl Fn(&Jobs, &Params) -> Result<Vec<Params>> + Send + Sync + 'static {
    move |_, _| Ok((0..n).map(|i| Params::new().with("i", i)).collect())
}

/// A parallel node of `n` [`Work`] branches named `w0`, `w1`, ….
fn branches(n: usize, plan: fn(usize) -> Plan) -> Parallel<Jobs> {
    (0..n).fold(Parallel::new(), |par, i| {
        par.branch(format!("w{i}"), Work { index: Some(i), plan, yields: true })
    })
}

/// An outcome as the tests compare it: the action, or the error with its causes.
fn render(outcome: &Result<Action, FlowError>) -> String {
    match outcome {
        Ok(action) => action.to_string(),
        Err(error) => format!("{error:#}"),
    }
}

/// A `post_outcomes` post: records what it saw; "partial" if any job failed, else "all".
fn record(jobs: &mut Jobs, outcomes: Vec<Result<Action, FlowError>>) -> Result<Action> {
    jobs.posts += 1;
    jobs.seen = outcomes.iter().map(render).collect();
    jobs.errors = errors(&outcomes);
    Ok(if outcomes.iter().any(Result::is_err) { "partial" } else { "all" }.into())
}

/// [`record`] for a batch flow's post, which also gets the params sets.
fn record_sets(
    jobs: &mut Jobs,
    _: Vec<Params>,
    outcomes: Vec<Result<Action, FlowError>>,
) -> Result<Action> {
    record(jobs, outcomes)
}

/// The failed outcomes: index, kind of error (`"failed"` for a node's own failure in exec,
/// `"timeout"`), node.
fn errors(outcomes: &[Result<Action, FlowError>]) -> Vec<(usize, &'static str, String)> {
    let kind = |error: &FlowError| match error {
        FlowError::NodeFailed { phase: Phase::Exec, attempts: 1, .. } => "failed",
        FlowError::Timeout { after, .. } if *after == MS(20) => "timeout",
        _ => "other",
    };
    let failed = outcomes.iter().enumerate();
    failed
        .filter_map(|(i, o)| o.as_ref().err().map(|e| (i, kind(e), e.node().to_string())))
        .collect()
}

/// A fail-fast post: records the actions it saw.
fn record_actions(jobs: &mut Jobs, actions: Vec<Action>) -> Result<Action> {
    jobs.posts += 1;
    jobs.seen = actions.iter().map(Action::to_string).collect();
    Ok("all".into())
}

/// [`record_actions`] for a batch flow's post.
fn record_actions_sets(jobs: &mut Jobs, _: Vec<Params>, actions: Vec<Action>) -> Result<Action> {
    record_actions(jobs, actions)
}

fn fails_2_5_7(i: usize) -> Plan {
    match i {
        2 | 5 | 7 => Plan::Fail,
        _ => Plan::Ok,
    }
}

/// What a post sees of ten jobs of which 2, 5 and 7 failed, the jobs named by `path`.
fn outcomes_2_5_7(path: impl Fn(usize) -> String) -> Vec<String> {
    (0..10)
        .map(|i| match fails_2_5_7(i) {
            Plan::Fail => {
                format!("node `{}` failed in exec after 1 attempt: item {i} failed", path(i))
            }
            _ => format!("done {i}"),
        })
        .collect()
}

/// Runs `flow` (its fan-out followed by `next`) on a fresh store with `executor`.
fn run_jobs(
    flow: &Flow<Jobs>,
    options: RunOptions<'_, Jobs>,
    executor: Executor,
) -> (Result<Action, FlowError>, Jobs) {
    let mut jobs = Jobs::default();
    let result = executor.block_on(flow.run_with(&mut jobs, options));
    (result, jobs)
}

/// `<name> → next`, where `next` records index 99.
fn then_next<N, M>(name: &str, node: N, limit: Option<Duration>) -> Flow<Jobs>
where
    N: miniflow::IntoNode<Jobs, M>,
{
    let mut flow = Flow::new();
    let fan = flow.add(name, node);
    let next = flow.add(
        "next",
        node_fn(|jobs: &mut Jobs, _: &Params| {
            jobs.done.push(99);
            Ok(Action::DEFAULT)
        }),
    );
    flow.edge(fan, "partial", next);
    flow.edge(fan, "all", next);
    flow.then(fan, next);
    if let Some(limit) = limit {
        flow.timeout(fan, limit);
    }
    flow
}

fn odd_stall(i: usize) -> Plan {
    if i % 2 == 1 { Plan::Stall } else { Plan::Ok }
}

#[test]
fn a_timed_fan_out_keeps_the_posts_that_finished_and_never_reaches_its_post() {
    let display =
        |node: &str| format!("node `{node}` did not finish within its time limit of 20ms");

    // Concurrent sub-runs: the even ones finish in the first poll, the odd ones stall.
    let fan = BatchAsyncFlow::new(work(odd_stall, false), sets(5)).post(record_actions_sets);
    let (result, mut jobs) =
        run_jobs(&then_next("fan", fan, Some(MS(20))), RunOptions::new(), Executor::Futures);
    assert_timeout(result, "fan", MS(20), &display("fan"));
    jobs.done.sort();
    assert_eq!((jobs.done, jobs.posts), (vec![0, 2, 4], 0));

    // The same with post_outcomes: the fan-out's own limit is not a sub-run's outcome.
    let fan = BatchAsyncFlow::new(work(odd_stall, false), sets(5))
        .max_in_flight(2)
        .post_outcomes(record_sets);
    let (result, jobs) =
        run_jobs(&then_next("fan", fan, Some(MS(20))), RunOptions::new(), Executor::Smol);
    assert_timeout(result, "fan", MS(20), &display("fan"));
    // Two in flight: 0 finishes, 1 stalls, 2 finishes, 3 stalls beside 1: nothing more starts.
    assert_eq!((jobs.done, jobs.posts), (vec![0, 2], 0));

    // Sequential sub-runs: 0 finishes, 1 stalls, 2 to 4 never start.
    let fan = BatchFlow::new(work(odd_stall, false), sets(5)).post_outcomes(record_sets);
    let (result, jobs) =
        run_jobs(&then_next("fan", fan, Some(MS(20))), RunOptions::new(), Executor::Smol);
    assert_timeout(result, "fan", MS(20), &display("fan"));
    assert_eq!((jobs.done, jobs.posts), (vec![0], 0));

    // Parallel branches: the even ones finish in the first poll (no yields: nothing a slow
    // machine could let the timer overtake), the odd ones stall.
    let par = (0..5).fold(Parallel::new(), |par, i| {
        par.branch(format!("w{i}"), Work { index: Some(i), plan: odd_stall, yields: false })
    });
    let par = par.post(record_actions);
    let (result, mut jobs) =
        run_jobs(&then_next("par", par, Some(MS(20))), RunOptions::new(), Executor::Futures);
    assert_timeout(result, "par", MS(20), &display("par"));
    jobs.done.sort();
    assert_eq!((jobs.done, jobs.posts), (vec![0, 2, 4], 0));
}

#[test]
fn a_timeout_inside_a_sub_run_of_a_post_outcomes_fan_out_is_that_sub_runs_outcome() {
    // Each sub-run's `work` is limited to 20 ms; sub-run 1 stalls.
    let timed_work = || {
        let mut flow = Flow::new();
        let work = flow.add(
            "work",
            Work {
                index: None,
                plan: |i| if i == 1 { Plan::Stall } else { Plan::Ok },
                yields: false,
            },
        );
        flow.timeout(work, MS(20));
        flow
    };
    let expected: Vec<String> = (0..4)
        .map(|i| match i {
            1 => "node `fan[1]/work` did not finish within its time limit of 20ms".to_string(),
            _ => format!("done {i}"),
        })
        .collect();

    let fans = [
        (
            "BatchFlow",
            then_next(
                "fan",
                BatchFlow::new(timed_work(), sets(4)).post_outcomes(record_sets),
                None,
            ),
        ),
        (
            "BatchAsyncFlow",
            then_next(
                "fan",
                BatchAsyncFlow::new(timed_work(), sets(4)).post_outcomes(record_sets),
                None,
            ),
        ),
    ];
    for (kind, fan) in fans {
        let (result, mut jobs) = run_jobs(&fan, RunOptions::new(), Executor::Smol);
        assert_eq!(result.unwrap(), "default", "{kind}");
        assert_eq!(jobs.seen, expected, "{kind}");
        assert_eq!(jobs.errors, [(1, "timeout", "fan[1]/work".to_string())], "{kind}");
        assert_eq!(jobs.posts, 1, "{kind}");
        jobs.done.sort();
        assert_eq!(jobs.done, [0, 2, 3, 99], "{kind}");
    }
}

// ---------------------------------------------------------------------------------------------
// Fan-outs that survive failures: post_outcomes
// ---------------------------------------------------------------------------------------------

/// Asserts what a `post_outcomes` fan-out of ten jobs, of which 2, 5 and 7 failed, left.
fn assert_survived(
    result: Result<Action, FlowError>,
    mut jobs: Jobs,
    path: impl Fn(usize) -> String,
    what: &str,
) {
    assert_eq!(result.unwrap(), "default", "{what}");
    assert_eq!(jobs.posts, 1, "{what}");
    assert_eq!(jobs.seen, outcomes_2_5_7(&path), "{what}");
    let failed = [2, 5, 7].map(|i| (i, "failed", path(i)));
    assert_eq!(jobs.errors, failed, "{what}");
    // Every successful job's post exactly once, no failed one's, and `next` after the post.
    assert_eq!(jobs.done.pop(), Some(99), "{what}");
    jobs.done.sort();
    assert_eq!(jobs.done, [0, 1, 3, 4, 6, 8, 9], "{what}");
}

#[test]
fn a_batch_flow_with_post_outcomes_runs_every_sub_run_and_shows_each_outcome_in_order() {
    let fan = BatchFlow::new(work(fails_2_5_7, false), sets(10)).post_outcomes(record_sets);
    let flow = then_next("fan", fan, None);
    for executor in BOTH {
        let (result, jobs) = run_jobs(&flow, RunOptions::new(), executor);
        // One after another: the posts are in input order too.
        assert_eq!(jobs.done, [0, 1, 3, 4, 6, 8, 9, 99]);
        assert_survived(result, jobs, |i| format!("fan[{i}]/work"), &format!("{executor:?}"));
    }
}

#[test]
fn a_batch_async_flow_with_post_outcomes_runs_every_sub_run_with_or_without_a_limit() {
    for limit in [None, Some(1), Some(3), Some(10)] {
        let mut fan = BatchAsyncFlow::new(work(fails_2_5_7, true), sets(10));
        if let Some(limit) = limit {
            fan = fan.max_in_flight(limit);
        }
        let flow = then_next("fan", fan.post_outcomes(record_sets), None);
        let (result, jobs) = run_jobs(&flow, RunOptions::new(), Executor::Smol);
        if limit.is_none() {
            // All at once, job `i` yielding 10 - i times: they finish from the last to the first.
            assert_eq!(jobs.done, [9, 8, 6, 4, 3, 1, 0, 99]);
        }
        assert_survived(result, jobs, |i| format!("fan[{i}]/work"), &format!("limit {limit:?}"));
    }
}

#[test]
fn a_parallel_node_with_post_outcomes_runs_every_branch_and_shows_each_outcome_in_order() {
    for limit in [None, Some(4)] {
        let mut par = branches(10, fails_2_5_7).post_outcomes(record);
        if let Some(limit) = limit {
            par = par.max_in_flight(limit);
        }
        let (result, jobs) =
            run_jobs(&then_next("par", par, None), RunOptions::new(), Executor::Futures);
        assert_survived(result, jobs, |i| format!("par/w{i}"), &format!("limit {limit:?}"));
    }
}

#[test]
fn fail_fast_stays_the_default() {
    let first = |node: &str, i: usize| {
        format!("node `{node}` failed in exec after 1 attempt: item {i} failed")
    };

    // A batch flow, with or without a post: sub-run 2 fails it, 3 to 9 never run.
    for post in [false, true] {
        let mut fan = BatchFlow::new(work(fails_2_5_7, false), sets(10));
        if post {
            fan = fan.post(record_actions_sets);
        }
        let (result, jobs) =
            run_jobs(&then_next("fan", fan, None), RunOptions::new(), Executor::Smol);
        let err = result.unwrap_err();
        assert!(
            matches!(&err, FlowError::NodeFailed { node, phase: Phase::Exec, attempts: 1, .. }
                if node == "fan[2]/work"),
            "{err:?}"
        );
        assert_eq!(
            format!("{err:#}"),
            "node `fan[2]/work` failed in exec after 1 attempt: item 2 failed"
        );
        assert_eq!((jobs.done, jobs.posts), (vec![0, 1], 0));
    }

    // Concurrent sub-runs: job `i` yields 10 - i times, so 9 and 8 finish, then 7 fails first
    // and drops the others.
    let fan = BatchAsyncFlow::new(work(fails_2_5_7, true), sets(10)).post(record_actions_sets);
    let (result, jobs) = run_jobs(&then_next("fan", fan, None), RunOptions::new(), Executor::Smol);
    assert_eq!(format!("{:#}", result.unwrap_err()), first("fan[7]/work", 7));
    assert_eq!((jobs.done, jobs.posts), (vec![9, 8], 0));

    // Branches: the same.
    let par = branches(10, fails_2_5_7).post(record_actions);
    let (result, jobs) = run_jobs(&then_next("par", par, None), RunOptions::new(), Executor::Smol);
    assert_eq!(format!("{:#}", result.unwrap_err()), first("par/w7", 7));
    assert_eq!((jobs.done, jobs.posts), (vec![9, 8], 0));
}

#[test]
fn the_last_post_set_decides_between_fail_fast_and_post_outcomes() {
    let ten = || BatchFlow::new(work(fails_2_5_7, false), sets(10));
    let fail_fast = "node `fan[2]/work` failed in exec after 1 attempt";

    // `post` after `post_outcomes`: fail-fast again, and the first post is gone.
    let fan = ten().post_outcomes(record_sets).post(record_actions_sets);
    let (result, jobs) = run_jobs(&then_next("fan", fan, None), RunOptions::new(), Executor::Smol);
    assert_eq!(result.unwrap_err().to_string(), fail_fast);
    assert_eq!((jobs.done, jobs.posts), (vec![0, 1], 0));

    // `post_outcomes` after `post`: every sub-run runs, the outcomes post runs.
    let fan = ten().post(record_actions_sets).post_outcomes(record_sets);
    let (result, jobs) = run_jobs(&then_next("fan", fan, None), RunOptions::new(), Executor::Smol);
    assert_survived(result, jobs, |i| format!("fan[{i}]/work"), "post_outcomes last");

    // And for a parallel node.
    let par = branches(10, fails_2_5_7).post_outcomes(record).post(record_actions);
    let (result, jobs) = run_jobs(&then_next("par", par, None), RunOptions::new(), Executor::Smol);
    assert_eq!(result.unwrap_err().to_string(), "node `par/w7` failed in exec after 1 attempt");
    assert_eq!((jobs.done, jobs.posts), (vec![9, 8], 0));
    let par = branches(10, fails_2_5_7).post(record_actions).post_outcomes(record);
    let (result, jobs) = run_jobs(&then_next("par", par, None), RunOptions::new(), Executor::Smol);
    assert_survived(result, jobs, |i| format!("par/w{i}"), "parallel post_outcomes last");

    // With no failure, both posts see the same ten actions.
    let fan = BatchFlow::new(work(|_| Plan::Ok, false), sets(10)).post_outcomes(record_sets);
    let (result, jobs) = run_jobs(&then_next("fan", fan, None), RunOptions::new(), Executor::Smol);
    assert_eq!(result.unwrap(), "default");
    assert_eq!(jobs.seen, (0..10).map(|i| format!("done {i}")).collect::<Vec<_>>());
    assert_eq!(jobs.errors, []);
}

#[test]
fn a_sub_run_whose_params_are_hostile_is_one_failed_outcome_among_the_others() {
    // Sub-run 3 has no `i`, 6 has `i` as text, 8 a negative `i`: each fails in its prep.
    let prep = |_: &Jobs, _: &Params| {
        Ok((0..10)
            .map(|i| match i {
                3 => Params::new().with("other", 3),
                6 => Params::new().with("i", "six"),
                8 => Params::new().with("i", -8),
                _ => Params::new().with("i", i),
            })
            .collect())
    };
    let fan = BatchAsyncFlow::new(work(|_| Plan::Ok, true), prep).max_in_flight(4);
    let (result, mut jobs) = run_jobs(
        &then_next("fan", fan.post_outcomes(record_sets), None),
        RunOptions::new(),
        Executor::Smol,
    );

    assert_eq!(result.unwrap(), "default");
    let expected: Vec<String> = (0..10)
        .map(|i| match i {
            3 => "node `fan[3]/work`: param `i` is missing; set it in the params the run or a \
                  batch flow passes down"
                .to_string(),
            6 => "node `fan[6]/work`: param `i` should be a non-negative integer, but it is a \
                  string"
                .to_string(),
            8 => "node `fan[8]/work`: param `i` should be a non-negative integer, but it is a \
                  negative integer"
                .to_string(),
            _ => format!("done {i}"),
        })
        .collect();
    assert_eq!(jobs.seen, expected);
    let nodes: Vec<(usize, String)> = jobs.errors.iter().map(|(i, _, n)| (*i, n.clone())).collect();
    assert_eq!(nodes, [3, 6, 8].map(|i| (i, format!("fan[{i}]/work"))));
    jobs.done.sort();
    assert_eq!(jobs.done, [0, 1, 2, 4, 5, 7, 9, 99]);
}

/// `a → <fan-out>`: `a` records index 100.
fn after_a<N, M>(name: &str, node: N) -> Flow<Jobs>
where
    N: miniflow::IntoNode<Jobs, M>,
{
    let mut flow = Flow::new();
    let a = flow.add(
        "a",
        node_fn(|jobs: &mut Jobs, _: &Params| {
            jobs.done.push(100);
            Ok(Action::DEFAULT)
        }),
    );
    let fan = flow.add(name, node);
    flow.then(a, fan);
    flow
}

#[test]
fn the_step_limit_inside_a_post_outcomes_fan_out_stops_the_run_without_its_post() {
    // Node runs: a 1, fan 2, fan[0]/work 3 … fan[3]/work 6 (sub-run 2 failed, and was kept);
    // fan[4]/work would be the 7th.
    let fan = BatchFlow::new(work(fails_2_5_7, false), sets(10)).post_outcomes(record_sets);
    let (result, jobs) =
        run_jobs(&after_a("fan", fan), RunOptions::new().max_steps(6), Executor::Smol);
    let err = result.unwrap_err();
    assert!(
        matches!(&err, FlowError::StepLimit { limit: 6, last, next, .. }
            if last == &["a"] && next == "fan[4]/work"),
        "{err:?}"
    );
    assert_eq!((jobs.done, jobs.posts), (vec![100, 0, 1, 3], 0));

    // Concurrent sub-runs: all start in the first poll, and the 7th node run is refused
    // before any of them finished.
    let fan = BatchAsyncFlow::new(work(fails_2_5_7, true), sets(10)).post_outcomes(record_sets);
    let (result, jobs) =
        run_jobs(&after_a("fan", fan), RunOptions::new().max_steps(6), Executor::Smol);
    let err = result.unwrap_err();
    assert!(
        matches!(&err, FlowError::StepLimit { limit: 6, last, next, .. }
            if last == &["a"] && next == "fan[4]/work"),
        "{err:?}"
    );
    assert_eq!((jobs.done, jobs.posts), (vec![100], 0));

    // Branches: a 1, par 2, par/w0 3 … par/w3 6; par/w4 would be the 7th.
    let par = branches(10, fails_2_5_7).post_outcomes(record);
    let (result, jobs) =
        run_jobs(&after_a("par", par), RunOptions::new().max_steps(6), Executor::Smol);
    let err = result.unwrap_err();
    assert!(
        matches!(&err, FlowError::StepLimit { limit: 6, last, next, .. }
            if last == &["a"] && next == "par/w4"),
        "{err:?}"
    );
    assert_eq!((jobs.done, jobs.posts), (vec![100], 0));
}

#[test]
fn the_observer_hears_of_each_failure_post_outcomes_keeps_as_it_happens() {
    // Sub-runs one after another: each failure is reported where it happens, between the
    // failed node's start and the next sub-run's.
    let fan = BatchFlow::new(work(fails_2_5_7, false), sets(4)).post_outcomes(record_sets);
    let lines = Lines::default();
    let observer = lines.observer();
    let mut flow = Flow::new();
    flow.add("fan", fan);
    let (result, jobs) = run_jobs(&flow, RunOptions::new().observer(&observer), Executor::Smol);
    assert_eq!(result.unwrap(), "partial");
    assert_eq!(jobs.done, [0, 1, 3]);
    assert_eq!(
        lines.get(),
        [
            "start",
            "node+ fan",
            "node+ fan[0]/work",
            "node- fan[0]/work done 0 1",
            "node+ fan[1]/work",
            "node- fan[1]/work done 1 1",
            "node+ fan[2]/work",
            "fallback fan[2]/work item 2 failed",
            "kept node `fan[2]/work` failed in exec after 1 attempt: item 2 failed",
            "node+ fan[3]/work",
            "node- fan[3]/work done 3 1",
            "node- fan partial 0",
            "finished partial",
        ]
    );
    // Its `Display`, for logs: the error with its causes.
    let shown = Mutex::new(Vec::new());
    let show = |event: &Event<'_>| {
        if let Event::SubRunFailed { .. } = event {
            shown.lock().unwrap().push(event.to_string());
        }
    };
    let fan = BatchFlow::new(work(fails_2_5_7, false), sets(3)).post_outcomes(record_sets);
    let mut flow = Flow::new();
    flow.add("fan", fan);
    run_jobs(&flow, RunOptions::new().observer(&show), Executor::Smol).0.unwrap();
    assert_eq!(
        shown.into_inner().unwrap(),
        ["a sub-run failed, the others go on: node `fan[2]/work` failed in exec after 1 \
          attempt: item 2 failed"]
    );

    // Branches at once, and a fail-fast fan-out: one report per kept failure, none else.
    let lines = Lines::default();
    let observer = lines.observer();
    let par = branches(10, fails_2_5_7).post_outcomes(record);
    let (result, _) =
        run_jobs(&after_a("par", par), RunOptions::new().observer(&observer), Executor::Futures);
    assert_eq!(result.unwrap(), "partial");
    let kept: Vec<String> = lines.get().into_iter().filter(|l| l.starts_with("kept")).collect();
    let mut expected: Vec<String> = [2, 5, 7]
        .map(|i| format!("kept node `par/w{i}` failed in exec after 1 attempt: item {i} failed"))
        .into();
    // Branch i yields 10 - i times, so the later branches finish first.
    expected.reverse();
    assert_eq!(kept, expected);
    let lines = Lines::default();
    let observer = lines.observer();
    let par = branches(10, fails_2_5_7).post(record_actions);
    let (result, _) =
        run_jobs(&after_a("par", par), RunOptions::new().observer(&observer), Executor::Smol);
    assert!(result.is_err());
    assert!(lines.get().iter().all(|l| !l.starts_with("kept")), "{:?}", lines.get());
}

/// A node whose `max_retries()` is 0: a setting no run accepts.
struct Misconfigured;

impl Node<Jobs> for Misconfigured {
    type Prep = ();
    type Output = ();
    fn prep(&self, _: &Jobs, _: &Params) -> Result<()> {
        Ok(())
    }
    async fn exec(&self, _: &(), _: Ctx<'_>) -> Result<()> {
        Ok(())
    }
    fn post(&self, jobs: &mut Jobs, _: (), _: ()) -> Result<Action> {
        jobs.posts += 1;
        Ok(Action::DEFAULT)
    }
    fn max_retries(&self) -> usize {
        0
    }
}

#[test]
fn a_nodes_invalid_setting_inside_a_post_outcomes_fan_out_stops_the_run() {
    let expected = "node `par/bad`: max_retries() is 0, but it counts every attempt, the first \
                    included, and must be between 1 and 1000";
    let par = Parallel::new().branch("bad", Misconfigured).post_outcomes(record);
    let (result, jobs) = run_jobs(&after_a("par", par), RunOptions::new(), Executor::Smol);
    let err = result.unwrap_err();
    assert!(matches!(&err, FlowError::InvalidConfig { node, .. } if node == "par/bad"), "{err:?}");
    assert_eq!(err.to_string(), expected);
    assert_eq!((jobs.done, jobs.posts), (vec![100], 0));

    let mut inner = Flow::new();
    inner.add("bad", Misconfigured);
    let fan = BatchAsyncFlow::new(inner, sets(3)).post_outcomes(record_sets);
    let (result, jobs) = run_jobs(&after_a("fan", fan), RunOptions::new(), Executor::Smol);
    let err = result.unwrap_err();
    assert!(matches!(&err, FlowError::InvalidConfig { node, .. } if node == "fan[0]/bad"));
    assert_eq!(jobs.posts, 0);
}

#[test]
fn an_error_from_a_post_outcomes_post_fails_the_fan_out_by_its_path() {
    let refuse = |jobs: &mut Jobs, outcomes: Vec<Result<Action, FlowError>>| {
        let failed = outcomes.iter().filter(|o| o.is_err()).count();
        jobs.posts += 1;
        Err(failure(format!("{failed} of {} jobs failed", outcomes.len())))
    };
    // The fan-outs sit in a nested flow `stage`, so their paths have two names.
    let staged = |fan_out: Flow<Jobs>| {
        let mut flow = Flow::new();
        flow.add("stage", fan_out);
        flow
    };
    let flows = [
        staged(after_a(
            "fan",
            BatchFlow::new(work(fails_2_5_7, false), sets(10))
                .post_outcomes(move |j, _, o| refuse(j, o)),
        )),
        staged(after_a(
            "fan",
            BatchAsyncFlow::new(work(fails_2_5_7, true), sets(10))
                .max_in_flight(3)
                .post_outcomes(move |j, _, o| refuse(j, o)),
        )),
        staged(after_a("fan", branches(10, fails_2_5_7).post_outcomes(refuse))),
    ];
    for (i, flow) in flows.iter().enumerate() {
        let (result, mut jobs) = run_jobs(flow, RunOptions::new(), Executor::Futures);
        let err = result.unwrap_err();
        assert!(
            matches!(&err, FlowError::NodeFailed { node, phase: Phase::Post, attempts: 0, .. }
                if node == "stage/fan"),
            "{i}: {err:?}"
        );
        assert_eq!(err.to_string(), "node `stage/fan` failed in post", "{i}");
        assert_eq!(
            format!("{err:#}"),
            "node `stage/fan` failed in post: 3 of 10 jobs failed",
            "{i}"
        );
        assert_eq!(jobs.posts, 1, "{i}");
        jobs.done.sort();
        assert_eq!(jobs.done, [0, 1, 3, 4, 6, 8, 9, 100], "{i}");
    }
}

#[test]
fn a_hundred_thousand_sub_runs_with_every_thousandth_failing_reach_the_post() {
    const N: usize = 100_000;
    let every_thousandth = |i: usize| if i % 1000 == 999 { Plan::Fail } else { Plan::Ok };
    let count = |jobs: &mut Jobs, outcomes: Vec<Result<Action, FlowError>>| {
        jobs.posts += 1;
        jobs.seen = vec![format!("{} actions", outcomes.iter().filter(|o| o.is_ok()).count())];
        jobs.errors = errors(&outcomes);
        // Spot checks of the actions, in input order.
        assert_eq!(render(&outcomes[0]), "done 0");
        assert_eq!(render(&outcomes[998]), "done 998");
        assert_eq!(render(&outcomes[1000]), "done 1000");
        assert_eq!(
            render(&outcomes[N - 1]),
            format!(
                "node `fan[{}]/work` failed in exec after 1 attempt: item {} failed",
                N - 1,
                N - 1
            )
        );
        Ok(Action::DEFAULT)
    };
    let expected: Vec<(usize, &str, String)> =
        (0..100).map(|k| k * 1000 + 999).map(|i| (i, "failed", format!("fan[{i}]/work"))).collect();
    let succeeded: Vec<usize> = (0..N).filter(|i| i % 1000 != 999).collect();

    let flows = [
        (
            "BatchFlow",
            then_next(
                "fan",
                BatchFlow::new(work(every_thousandth, false), sets(N))
                    .post_outcomes(move |j, _, o| count(j, o)),
                None,
            ),
        ),
        (
            "BatchAsyncFlow",
            then_next(
                "fan",
                BatchAsyncFlow::new(work(every_thousandth, false), sets(N))
                    .max_in_flight(64)
                    .post_outcomes(move |j, _, o| count(j, o)),
                None,
            ),
        ),
    ];
    for (kind, flow) in flows {
        let (result, mut jobs) = run_jobs(&flow, RunOptions::new(), Executor::Smol);
        assert_eq!(result.unwrap(), "default", "{kind}");
        assert_eq!(jobs.posts, 1, "{kind}");
        assert_eq!(jobs.seen, ["99900 actions"], "{kind}");
        assert_eq!(jobs.errors, expected, "{kind}");
        assert_eq!(jobs.done.pop(), Some(99), "{kind}");
        jobs.done.sort_unstable();
        assert_eq!(jobs.done, succeeded, "{kind}");
    }
}

// ---------------------------------------------------------------------------------------------
// Custom events carry a Value
// ---------------------------------------------------------------------------------------------

/// Counts its conversions into a `Value`: to see that `emit` converts nothing without an
/// observer.
struct Counted(Arc<AtomicUsize>);

impl From<Counted> for Value {
    fn from(counted: Counted) -> Value {
        counted.0.fetch_add(1, Ordering::SeqCst);
        Value::Int(1)
    }
}

/// Emits one event of each kind of data, and one `Counted`.
struct Emitter(Arc<AtomicUsize>);

impl Node<()> for Emitter {
    type Prep = String;
    type Output = ();

    fn prep(&self, _: &(), _: &Params) -> Result<String> {
        Ok("héllo".to_string())
    }

    async fn exec(&self, text: &String, cx: Ctx<'_>) -> Result<()> {
        cx.emit("tokens", 42);
        cx.emit("text", text);
        cx.emit("owned", text.clone());
        cx.emit("word", "hi");
        cx.emit("empty", "");
        cx.emit("flag", true);
        cx.emit("ratio", 0.25);
        cx.emit("negative", -7i8);
        cx.emit("count", 7usize);
        cx.emit("huge", u64::MAX);
        cx.emit("counted", Counted(Arc::clone(&self.0)));
        Ok(())
    }

    fn post(&self, _: &mut (), _: String, _: ()) -> Result<Action> {
        Ok(Action::DEFAULT)
    }
}

#[test]
fn emit_hands_the_observer_a_value_of_the_type_it_was_given() {
    let conversions = Arc::new(AtomicUsize::new(0));
    let mut flow = Flow::new();
    flow.add("emit", Emitter(Arc::clone(&conversions)));
    let custom = Mutex::new(Vec::new());
    let observer = |event: &Event<'_>| {
        if let Event::Custom { node, kind, data, .. } = event {
            custom.lock().unwrap().push((
                node.to_string(),
                kind.to_string(),
                (*data).clone(),
                event.to_string(),
            ));
        }
    };

    futures::executor::block_on(flow.run_with(&mut (), RunOptions::new().observer(&observer)))
        .unwrap();

    let expected = [
        ("tokens", Value::Int(42), "42"),
        ("text", Value::Str("héllo".into()), "héllo"),
        ("owned", Value::Str("héllo".into()), "héllo"),
        ("word", Value::Str("hi".into()), "hi"),
        ("empty", Value::Str("".into()), ""),
        ("flag", Value::Bool(true), "true"),
        ("ratio", Value::Float(0.25), "0.25"),
        ("negative", Value::Int(-7), "-7"),
        ("count", Value::Int(7), "7"),
        ("huge", Value::UInt(u64::MAX), "18446744073709551615"),
        ("counted", Value::Int(1), "1"),
    ]
    .map(|(kind, value, shown)| {
        ("emit".to_string(), kind.to_string(), value, format!("`emit` {kind}: {shown}"))
    });
    assert_eq!(custom.into_inner().unwrap(), expected);
    assert_eq!(conversions.load(Ordering::SeqCst), 1);

    // Without an observer, nothing is converted.
    smol::block_on(flow.run(&mut ())).unwrap();
    assert_eq!(conversions.load(Ordering::SeqCst), 1);
    // With an observer that ignores custom events, it is (once more).
    smol::block_on(flow.run_with(&mut (), RunOptions::new().observer(&|_: &Event<'_>| {})))
        .unwrap();
    assert_eq!(conversions.load(Ordering::SeqCst), 2);
}

/// Streams the store's question as one token per character, yielding after each, and stores
/// the answer.
struct Ask;

impl Node<String> for Ask {
    type Prep = String;
    type Output = usize;

    fn prep(&self, question: &String, _: &Params) -> Result<String> {
        Ok(question.clone())
    }

    async fn exec(&self, question: &String, cx: Ctx<'_>) -> Result<usize> {
        for token in question.chars() {
            cx.emit("token", token.to_string());
            yield_times(1).await;
        }
        cx.emit("tokens", question.chars().count());
        Ok(question.chars().count())
    }

    fn post(&self, answer: &mut String, _: String, tokens: usize) -> Result<Action> {
        *answer = format!("{tokens} tokens");
        Ok(Action::DEFAULT)
    }
}

#[test]
fn two_concurrent_runs_sharing_one_sink_are_told_apart_by_the_run_id_their_observers_capture() {
    let mut flow = Flow::new();
    let ask = flow.add("ask", Ask);
    let done = flow.add("done", node_fn(|_: &mut String, _: &Params| Ok("done".into())));
    flow.then(ask, done);

    // The documented recipe: one sink, one observer per run, each capturing its run's id.
    let sink: Mutex<Vec<(u32, String)>> = Mutex::new(Vec::new());
    let labelled = |run: u32| {
        let sink = &sink;
        move |event: &Event<'_>| sink.lock().unwrap().push((run, common::line(event)))
    };
    let (one, two) = (labelled(1), labelled(2));
    let (mut hi, mut yo) = ("hi".to_string(), "yo!".to_string());

    let (first, second) = futures::executor::block_on(futures::future::join(
        flow.run_with(&mut hi, RunOptions::new().observer(&one)),
        flow.run_with(&mut yo, RunOptions::new().observer(&two)),
    ));

    assert_eq!((first.unwrap(), second.unwrap()), (Action::new("done"), Action::new("done")));
    assert_eq!((hi.as_str(), yo.as_str()), ("2 tokens", "3 tokens"));
    let sink = sink.into_inner().unwrap();
    let of = |run: u32| -> Vec<String> {
        sink.iter().filter(|(id, _)| *id == run).map(|(_, line)| line.clone()).collect()
    };
    assert_eq!(
        of(1),
        [
            "start",
            "node+ ask",
            "custom ask token: h",
            "custom ask token: i",
            "custom ask tokens: 2",
            "node- ask default 1",
            "node+ done",
            "node- done done 1",
            "finished done",
        ]
    );
    assert_eq!(
        of(2),
        [
            "start",
            "node+ ask",
            "custom ask token: y",
            "custom ask token: o",
            "custom ask token: !",
            "custom ask tokens: 3",
            "node- ask default 1",
            "node+ done",
            "node- done done 1",
            "finished done",
        ]
    );
    assert_eq!(sink.len(), 19);
    // They really interleaved: the second run started before the first had finished.
    let position = |run: u32, text: &str| sink.iter().position(|(id, l)| *id == run && l == text);
    assert!(position(2, "start") < position(1, "finished done"), "{sink:?}");
    assert_eq!(sink[0], (1, "start".to_string()));
}
