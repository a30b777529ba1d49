//! The conveniences for people porting PocketFlow code, each promise of their docs pinned to
//! exact values: `Flow::of` (a node, a batch node or a flow run by itself, named after its
//! type, also behind an `Arc`); `exec_fn` and `node_fn` (nodes made of closures); an `Arc` of a
//! node or batch node added to flows, shared with the caller; the params a batch node's `post`
//! gets (an empty batch and a batch flow's sub-runs included); `Value` from `usize` and `u64`,
//! `FromValue`, `Params::get_as` and `Params::get_or`; `Flow::chain`, with the panics of `then`;
//! and `miniflow::sleep` under three executors and under a node's timeout (outcomes only, never
//! elapsed time).
//!
//! The last part re-creates behaviours of PocketFlow's own test suite the way someone porting
//! them would write them with these conveniences, each checking the store it ends with.

mod common;

use std::collections::BTreeMap;
use std::error::Error as _;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{assert_duplicate, assert_foreign, failure, panics, poll_by_hand};
use miniflow::{
    Action, BatchAsyncFlow, BatchFlow, BatchNode, Ctx, Error, Event, Flow, FlowError, FromValue,
    Node, Parallel, Params, Phase, Result, RunOptions, TimedOut, Value, exec_fn, node_fn,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// More node runs than any test here makes: a flow that loops for ever by mistake fails with
/// a step limit instead of hanging the test.
const BOUND: usize = 10_000;

/// Runs `flow` on `store` to the end under `smol::block_on`, within [`BOUND`] steps.
fn run<S: Send>(flow: &Flow<S>, store: &mut S) -> Result<Action, FlowError> {
    run_with_params(flow, store, Params::new())
}

/// Runs `flow` on `store` with `params`, within [`BOUND`] steps.
fn run_with_params<S: Send>(
    flow: &Flow<S>,
    store: &mut S,
    params: Params,
) -> Result<Action, FlowError> {
    smol::block_on(flow.run_with(store, RunOptions::new().params(params).max_steps(BOUND)))
}

/// How a flow of the one node `name` prints.
fn only(name: &str) -> String {
    format!("Flow {{ nodes: [{name:?}], start: Some({name:?}) }}")
}

/// An event as one line, without the time a node took (which no test may depend on).
fn line(event: &Event<'_>) -> String {
    match event {
        Event::NodeEnd { node, action, attempts, .. } => {
            format!("`{node}` ended with {action:?} after {attempts}")
        }
        other => other.to_string(),
    }
}

/// Doubles the number in the store; an overflow is an error of its `exec`.
struct Double;

impl Node<i64> for Double {
    type Prep = i64;
    type Output = i64;

    fn prep(&self, n: &i64, _: &Params) -> Result<i64> {
        Ok(*n)
    }

    async fn exec(&self, n: &i64, _: Ctx<'_>) -> Result<i64> {
        n.checked_mul(2).ok_or_else(|| "too large".into())
    }

    fn post(&self, n: &mut i64, _: i64, doubled: i64) -> Result<Action> {
        *n = doubled;
        Ok(Action::DEFAULT)
    }
}

/// A node generic over a type it never holds: `Flow::of` must drop the generic arguments.
struct Label<T>(PhantomData<fn() -> T>);

impl<T> Label<T> {
    fn new() -> Self {
        Label(PhantomData)
    }
}

impl<T: 'static> Node<Vec<String>> for Label<T> {
    type Prep = ();
    type Output = &'static str;

    fn prep(&self, _: &Vec<String>, _: &Params) -> Result<()> {
        Ok(())
    }

    async fn exec(&self, _: &(), _: Ctx<'_>) -> Result<&'static str> {
        Ok("labelled")
    }

    fn post(&self, log: &mut Vec<String>, _: (), text: &'static str) -> Result<Action> {
        log.push(text.into());
        Ok("labelled".into())
    }
}

/// A node two modules down: `Flow::of` must drop the module path.
mod outer {
    pub mod inner {
        use miniflow::{Action, Ctx, Node, Params, Result};

        pub struct Deep;

        impl Node<i64> for Deep {
            type Prep = ();
            type Output = ();

            fn prep(&self, _: &i64, _: &Params) -> Result<()> {
                Ok(())
            }

            async fn exec(&self, _: &(), _: Ctx<'_>) -> Result<()> {
                Ok(())
            }

            fn post(&self, n: &mut i64, _: (), _: ()) -> Result<Action> {
                *n += 1;
                Ok("deep".into())
            }
        }
    }
}

/// Halves every number of the store; an odd number fails its item.
struct Halves;

impl BatchNode<Vec<i64>> for Halves {
    type Item = i64;
    type Output = i64;

    fn prep(&self, numbers: &Vec<i64>, _: &Params) -> Result<Vec<i64>> {
        Ok(numbers.clone())
    }

    async fn exec(&self, n: &i64, _: Ctx<'_>) -> Result<i64> {
        match n % 2 {
            0 => Ok(n / 2),
            _ => Err(failure(format!("{n} is odd"))),
        }
    }

    fn post(
        &self,
        numbers: &mut Vec<i64>,
        _: &Params,
        _: Vec<i64>,
        halves: Vec<i64>,
    ) -> Result<Action> {
        *numbers = halves;
        Ok("halved".into())
    }
}

// ---------------------------------------------------------------------------------------------
// Flow::of
// ---------------------------------------------------------------------------------------------

#[test]
fn flow_of_runs_a_node_once_and_returns_the_action_its_post_chose() {
    let mut n = 21;
    assert_eq!(run(&Flow::of(Double), &mut n).unwrap(), "default");
    assert_eq!(n, 42);

    let mut log = Vec::new();
    assert_eq!(run(&Flow::of(Label::<u8>::new()), &mut log).unwrap(), "labelled");
    assert_eq!(log, ["labelled"]);

    let mut numbers = vec![8, 2, 0];
    assert_eq!(run(&Flow::of(Halves), &mut numbers).unwrap(), "halved");
    assert_eq!(numbers, [4, 1, 0]);

    // Built once, it runs again, each run on its own store.
    let flow = Flow::of(Double);
    let (mut a, mut b) = (1, -5);
    run(&flow, &mut a).unwrap();
    run(&flow, &mut a).unwrap();
    run(&flow, &mut b).unwrap();
    assert_eq!((a, b), (4, -10));
}

#[test]
fn flow_of_names_the_node_after_its_type_without_path_or_generics() {
    assert_eq!(format!("{:?}", Flow::<i64>::of(Double)), only("Double"));
    assert_eq!(format!("{:?}", Flow::<i64>::of(outer::inner::Deep)), only("Deep"));

    // Generic arguments of any shape are dropped, also behind an `Arc`.
    let generic = [
        format!("{:?}", Flow::<Vec<String>>::of(Label::<u8>::new())),
        format!("{:?}", Flow::<Vec<String>>::of(Label::<Vec<Option<String>>>::new())),
        format!("{:?}", Flow::<Vec<String>>::of(Label::<[u8; 4]>::new())),
        format!("{:?}", Flow::<Vec<String>>::of(Label::<(i32, &'static str)>::new())),
        format!("{:?}", Flow::<Vec<String>>::of(Label::<Arc<Double>>::new())),
        format!("{:?}", Flow::<Vec<String>>::of(Arc::new(Label::<BTreeMap<u8, [i64; 2]>>::new()))),
        format!("{:?}", Flow::<Vec<String>>::of(Arc::new(Label::<Label<Label<()>>>::new()))),
    ];
    for printed in generic {
        assert_eq!(printed, only("Label"));
    }

    // Batch nodes, flows, fan-outs and closures are named after their types too.
    assert_eq!(format!("{:?}", Flow::<Vec<i64>>::of(Halves)), only("Halves"));
    assert_eq!(format!("{:?}", Flow::of(Flow::of(Double))), only("Flow"));
    let batch = BatchFlow::new(Flow::of(Double), |_: &i64, _: &Params| Ok(vec![]));
    assert_eq!(format!("{:?}", Flow::of(batch)), only("BatchFlow"));
    let batch = BatchAsyncFlow::new(Flow::of(Double), |_: &i64, _: &Params| Ok(vec![]));
    assert_eq!(format!("{:?}", Flow::of(batch)), only("BatchAsyncFlow"));
    assert_eq!(format!("{:?}", Flow::of(Parallel::<i64>::new())), only("Parallel"));
    let glue = node_fn(|_: &mut i64, _: &Params| Ok(Action::DEFAULT));
    assert_eq!(format!("{:?}", Flow::of(glue)), only("NodeFn"));
    let quick = exec_fn(
        |n: &i64, _: &Params| Ok(*n),
        |n| async move { Ok::<i64, Error>(n) },
        |n: &mut i64, _, m| {
            *n = m;
            Ok(Action::DEFAULT)
        },
    );
    assert_eq!(format!("{:?}", Flow::of(quick)), only("ExecFn"));
}

#[test]
fn flow_of_errors_name_the_node_by_its_type() {
    let mut huge = i64::MAX;
    let err = run(&Flow::of(Double), &mut huge).unwrap_err();
    assert_eq!(err.to_string(), "node `Double` failed in exec after 1 attempt");
    assert_eq!(format!("{err:#}"), "node `Double` failed in exec after 1 attempt: too large");
    assert!(matches!(
        &err,
        FlowError::NodeFailed { node, phase: Phase::Exec, attempts: 1, .. } if node == "Double"
    ));
    assert_eq!(huge, i64::MAX, "a failed exec leaves the store unwritten");

    // A batch node's item is named by the type and the index.
    let mut numbers = vec![4, 6, 7, 8];
    let err = run(&Flow::of(Halves), &mut numbers).unwrap_err();
    assert_eq!(format!("{err:#}"), "node `Halves[2]` failed in exec after 1 attempt: 7 is odd");
    assert_eq!(err.node(), "Halves[2]");
    assert_eq!(numbers, [4, 6, 7, 8]);

    // A node of a flow run by itself is named under the flow's type.
    let mut inner = Flow::new();
    inner.add("double", Double);
    let err = run(&Flow::of(inner), &mut huge).unwrap_err();
    assert_eq!(err.to_string(), "node `Flow/double` failed in exec after 1 attempt");
}

#[test]
fn flow_of_an_arc_of_a_type_without_generics_is_named_after_the_type() {
    assert_eq!(format!("{:?}", Flow::<i64>::of(Arc::new(Double))), only("Double"));
    assert_eq!(format!("{:?}", Flow::<i64>::of(Arc::new(outer::inner::Deep))), only("Deep"));
    assert_eq!(format!("{:?}", Flow::<Vec<i64>>::of(Arc::new(Halves))), only("Halves"));

    let mut huge = i64::MAX;
    let err = run(&Flow::of(Arc::new(Double)), &mut huge).unwrap_err();
    assert_eq!(err.to_string(), "node `Double` failed in exec after 1 attempt");
    let mut numbers = vec![4, 6, 7, 8];
    let err = run(&Flow::of(Arc::new(Halves)), &mut numbers).unwrap_err();
    assert_eq!(err.to_string(), "node `Halves[2]` failed in exec after 1 attempt");
    // The name is what `start_at` takes.
    let mut n = 1;
    let options = RunOptions::new().start_at("Double");
    assert_eq!(
        smol::block_on(Flow::of(Arc::new(Double)).run_with(&mut n, options)).unwrap(),
        "default"
    );
    assert_eq!(n, 2);
}

#[test]
fn flow_of_takes_params_an_observer_a_step_limit_and_a_start_by_the_type_name() {
    struct AddStep;
    impl Node<i64> for AddStep {
        type Prep = i64;
        type Output = i64;
        fn prep(&self, _: &i64, params: &Params) -> Result<i64> {
            Ok(params.get_as("step")?)
        }
        async fn exec(&self, step: &i64, _: Ctx<'_>) -> Result<i64> {
            Ok(*step)
        }
        fn post(&self, n: &mut i64, _: i64, step: i64) -> Result<Action> {
            *n += step;
            Ok("added".into())
        }
    }

    let flow = Flow::of(AddStep);
    let events = Mutex::new(Vec::new());
    let record = |event: &Event<'_>| events.lock().unwrap().push(line(event));
    let options = RunOptions::new()
        .params(Params::new().with("step", 5))
        .observer(&record)
        .max_steps(1)
        .start_at("AddStep");
    let mut n = 1;
    assert_eq!(smol::block_on(flow.run_with(&mut n, options)).unwrap(), "added");
    assert_eq!(n, 6);
    assert_eq!(
        events.into_inner().unwrap(),
        [
            "run started",
            "`AddStep` started",
            "`AddStep` ended with \"added\" after 1",
            "run finished with \"added\""
        ]
    );

    // No step at all: the node is not started, and the error names it.
    let err = smol::block_on(flow.run_with(&mut n, RunOptions::new().max_steps(0))).unwrap_err();
    assert!(matches!(
        &err,
        FlowError::StepLimit { limit: 0, last, next, .. } if last.is_empty() && next == "AddStep"
    ));

    // Without the param, prep's getter error names the node by its type.
    let err = run(&flow, &mut n).unwrap_err();
    assert_eq!(
        err.to_string(),
        "node `AddStep`: param `step` is missing; set it in the params the run or a batch flow passes down"
    );
    assert_eq!(n, 6);
}

#[test]
fn flow_of_runs_the_retries_and_the_fallback_of_the_node() {
    /// Fails until attempt `succeeds_at` (never if it is `None`); records the attempts.
    struct Flaky {
        succeeds_at: Option<usize>,
        seen: Arc<Mutex<Vec<String>>>,
    }
    impl Node<Vec<String>> for Flaky {
        type Prep = ();
        type Output = String;
        fn prep(&self, _: &Vec<String>, _: &Params) -> Result<()> {
            Ok(())
        }
        async fn exec(&self, _: &(), cx: Ctx<'_>) -> Result<String> {
            self.seen.lock().unwrap().push(format!(
                "{} {}/{}",
                cx.node(),
                cx.attempt(),
                cx.max_retries()
            ));
            match self.succeeds_at {
                Some(at) if cx.attempt() >= at => Ok(format!("ok at {}", cx.attempt())),
                _ => Err(failure(format!("fail {}", cx.attempt()))),
            }
        }
        async fn exec_fallback(&self, _: &(), error: Error, cx: Ctx<'_>) -> Result<String> {
            Ok(format!("fallback after {} ({error})", cx.attempt()))
        }
        fn post(&self, log: &mut Vec<String>, _: (), out: String) -> Result<Action> {
            log.push(out);
            Ok(Action::DEFAULT)
        }
        fn max_retries(&self) -> usize {
            3
        }
    }

    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut log = Vec::new();
    run(&Flow::of(Flaky { succeeds_at: Some(2), seen: Arc::clone(&seen) }), &mut log).unwrap();
    assert_eq!(log, ["ok at 2"]);
    assert_eq!(*seen.lock().unwrap(), ["Flaky 0/3", "Flaky 1/3", "Flaky 2/3"]);

    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut log = Vec::new();
    run(&Flow::of(Flaky { succeeds_at: None, seen: Arc::clone(&seen) }), &mut log).unwrap();
    assert_eq!(log, ["fallback after 2 (fail 2)"]);
    assert_eq!(*seen.lock().unwrap(), ["Flaky 0/3", "Flaky 1/3", "Flaky 2/3"]);
}

/// Triples each number from 1 to the param `n`; counts its `exec` calls; `post` sums the
/// outputs and checks that each is three times its item, in order.
struct Triple {
    calls: AtomicUsize,
    in_flight: usize,
}

#[derive(Debug, Default, PartialEq)]
struct Total {
    sum: u64,
    items: usize,
    in_order: bool,
}

impl BatchNode<Total> for Triple {
    type Item = u64;
    type Output = u64;

    fn prep(&self, _: &Total, params: &Params) -> Result<Vec<u64>> {
        Ok((1..=params.get_as::<u64>("n")?).collect())
    }

    async fn exec(&self, n: &u64, _: Ctx<'_>) -> Result<u64> {
        self.calls.fetch_add(1, SeqCst);
        Ok(n * 3)
    }

    fn post(
        &self,
        total: &mut Total,
        _: &Params,
        items: Vec<u64>,
        outputs: Vec<u64>,
    ) -> Result<Action> {
        let expected = (1..=items.len() as u64).map(|i| i * 3);
        total.in_order = items.len() == outputs.len() && outputs.iter().copied().eq(expected);
        total.items = items.len();
        total.sum = outputs.iter().sum();
        Ok(Action::DEFAULT)
    }

    fn max_in_flight(&self) -> usize {
        self.in_flight
    }
}

#[test]
fn flow_of_a_batch_node_runs_a_hundred_thousand_items_to_the_exact_sum() {
    const N: u64 = 100_000;
    for in_flight in [1, 64] {
        let triple = Arc::new(Triple { calls: AtomicUsize::new(0), in_flight });
        let flow = Flow::of(Arc::clone(&triple));
        let attempts = Mutex::new(Vec::new());
        let record = |event: &Event<'_>| {
            if let Event::NodeEnd { attempts: n, .. } = event {
                attempts.lock().unwrap().push(*n);
            }
        };
        // One step: a batch node counts once, however many items it has.
        let options =
            RunOptions::new().params(Params::new().with("n", N)).observer(&record).max_steps(1);
        let mut total = Total::default();
        smol::block_on(flow.run_with(&mut total, options)).unwrap();
        let sum = 3 * N * (N + 1) / 2;
        assert_eq!(sum, 15_000_150_000);
        assert_eq!(total, Total { sum, items: 100_000, in_order: true }, "in flight: {in_flight}");
        assert_eq!(triple.calls.load(SeqCst), 100_000);
        assert_eq!(attempts.into_inner().unwrap(), [100_000]);
    }
}

// ---------------------------------------------------------------------------------------------
// exec_fn and node_fn
// ---------------------------------------------------------------------------------------------

/// A value that counts how often it is cloned.
struct Counted {
    clones: Arc<AtomicUsize>,
    n: i64,
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        self.clones.fetch_add(1, SeqCst);
        Counted { clones: Arc::clone(&self.clones), n: self.n }
    }
}

#[test]
fn exec_fn_runs_prep_then_an_awaiting_exec_then_post() {
    let order = Arc::new(Mutex::new(Vec::new()));
    let (p, e, o) = (Arc::clone(&order), Arc::clone(&order), Arc::clone(&order));
    let node = exec_fn(
        move |n: &i64, params: &Params| {
            p.lock().unwrap().push(format!("prep {n}"));
            Ok(*n + params.get_or("plus", 0)?)
        },
        move |n: i64| {
            let e = Arc::clone(&e);
            async move {
                e.lock().unwrap().push(format!("exec {n}"));
                common::yield_times(3).await;
                miniflow::sleep(Duration::ZERO).await;
                e.lock().unwrap().push("exec awoke".to_string());
                Ok::<_, Error>(n * 10)
            }
        },
        move |n: &mut i64, _, out: i64| {
            o.lock().unwrap().push(format!("post {out}"));
            *n = out;
            Ok(if out > 100 { "big" } else { "small" }.into())
        },
    );
    let flow = Flow::of(node);
    let mut n = 4;
    assert_eq!(run_with_params(&flow, &mut n, Params::new().with("plus", 7)).unwrap(), "big");
    assert_eq!(n, 110);
    assert_eq!(run(&flow, &mut n).unwrap(), "big");
    assert_eq!(n, 1100);
    let mut small = 1;
    assert_eq!(run(&flow, &mut small).unwrap(), "small");
    assert_eq!(small, 10);
    assert_eq!(
        *order.lock().unwrap(),
        [
            "prep 4",
            "exec 11",
            "exec awoke",
            "post 110", //
            "prep 110",
            "exec 110",
            "exec awoke",
            "post 1100", //
            "prep 1",
            "exec 1",
            "exec awoke",
            "post 10",
        ]
    );
}

#[test]
fn exec_fn_gives_exec_one_clone_of_the_prep_value_per_attempt() {
    let clones = Arc::new(AtomicUsize::new(0));
    let made = Arc::clone(&clones);
    let node = exec_fn(
        move |n: &i64, _: &Params| Ok(Counted { clones: Arc::clone(&made), n: *n }),
        |input: Counted| async move { Ok::<_, Error>(input.n + 1) },
        |n: &mut i64, _, out: i64| {
            *n = out;
            Ok(Action::DEFAULT)
        },
    );
    let flow = Flow::of(node);
    let mut n = 0;
    run(&flow, &mut n).unwrap();
    assert_eq!((n, clones.load(SeqCst)), (1, 1));
    run(&flow, &mut n).unwrap();
    run(&flow, &mut n).unwrap();
    assert_eq!((n, clones.load(SeqCst)), (3, 3));
}

#[test]
fn exec_fn_makes_one_attempt_and_reports_each_phase_failing() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let node = exec_fn(
        |n: &i64, _: &Params| if *n < 0 { Err("negative input".into()) } else { Ok(*n) },
        move |n: i64| {
            counted.fetch_add(1, SeqCst);
            async move { if n == 0 { Err(failure("zero")) } else { Ok(n) } }
        },
        |n: &mut i64, _, out: i64| {
            if out > 10 {
                return Err("too big to store".into());
            }
            *n = out;
            Ok(Action::DEFAULT)
        },
    );
    let flow = Flow::of(node);

    let mut n = -1;
    let err = run(&flow, &mut n).unwrap_err();
    assert_eq!(format!("{err:#}"), "node `ExecFn` failed in prep: negative input");
    assert!(matches!(&err, FlowError::NodeFailed { phase: Phase::Prep, attempts: 0, .. }));
    assert_eq!(calls.load(SeqCst), 0);

    let mut n = 0;
    let err = run(&flow, &mut n).unwrap_err();
    assert_eq!(format!("{err:#}"), "node `ExecFn` failed in exec after 1 attempt: zero");
    assert!(matches!(&err, FlowError::NodeFailed { phase: Phase::Exec, attempts: 1, .. }));
    assert_eq!(err.source().unwrap().downcast_ref::<common::Failure>().unwrap().0, "zero");
    assert_eq!(calls.load(SeqCst), 1, "one attempt, no retry");

    let mut n = 11;
    let err = run(&flow, &mut n).unwrap_err();
    assert_eq!(format!("{err:#}"), "node `ExecFn` failed in post: too big to store");
    assert!(matches!(&err, FlowError::NodeFailed { phase: Phase::Post, attempts: 1, .. }));
    assert_eq!((n, calls.load(SeqCst)), (11, 2));

    let mut n = 5;
    run(&flow, &mut n).unwrap();
    assert_eq!((n, calls.load(SeqCst)), (5, 3));
}

#[test]
fn exec_fn_is_clone_and_debug_and_its_clones_run_apart() {
    let node = exec_fn(
        |log: &Vec<String>, params: &Params| {
            Ok(format!("{} after {}", params.get_as::<&str>("who")?, log.len()))
        },
        |text: String| async move { Ok::<_, Error>(text) },
        |log: &mut Vec<String>, _, text: String| {
            log.push(text);
            Ok(Action::DEFAULT)
        },
    );
    assert_eq!(format!("{node:?}"), "ExecFn { .. }");
    let mut flow = Flow::new();
    let first = flow.add("first", node.clone());
    let second = flow.add("second", node);
    flow.then(first, second);
    let mut log = Vec::new();
    run_with_params(&flow, &mut log, Params::new().with("who", "ada")).unwrap();
    assert_eq!(log, ["ada after 0", "ada after 1"]);

    // A param error in its prep names the node it was added as.
    let err = run(&flow, &mut log).unwrap_err();
    assert!(matches!(
        &err,
        FlowError::Param { node, key, expected: "a string", found: None, .. } if node == "first" && key == "who"
    ));
}

#[test]
fn node_fn_runs_its_closure_as_post() {
    let glue = node_fn(|n: &mut i64, params: &Params| {
        let step = params.get_as::<i64>("step")?;
        if step == 0 {
            return Err("a zero step".into());
        }
        *n += step;
        Ok(if *n > 10 { "done" } else { "more" }.into())
    });
    assert_eq!(format!("{glue:?}"), "NodeFn { .. }");

    let mut flow = Flow::new();
    let add = flow.add("add", glue);
    flow.edge(add, "more", add);
    flow.end(add, "done");
    let events = Mutex::new(Vec::new());
    let record = |event: &Event<'_>| events.lock().unwrap().push(line(event));
    let options =
        RunOptions::new().params(Params::new().with("step", 4)).observer(&record).max_steps(BOUND);
    let mut n = 0;
    assert_eq!(smol::block_on(flow.run_with(&mut n, options)).unwrap(), "done");
    assert_eq!(n, 12);
    assert_eq!(
        events.into_inner().unwrap(),
        [
            "run started",
            "`add` started",
            "`add` ended with \"more\" after 1",
            "`add` started",
            "`add` ended with \"more\" after 1",
            "`add` started",
            "`add` ended with \"done\" after 1",
            "run finished with \"done\""
        ]
    );

    // Its error is a post error, after the one attempt of its `exec`; a param error names it.
    let err = run_with_params(&flow, &mut n, Params::new().with("step", 0)).unwrap_err();
    assert_eq!(format!("{err:#}"), "node `add` failed in post: a zero step");
    assert!(matches!(&err, FlowError::NodeFailed { phase: Phase::Post, attempts: 1, .. }));
    let err = run_with_params(&flow, &mut n, Params::new().with("step", 1.5)).unwrap_err();
    assert_eq!(err.to_string(), "node `add`: param `step` should be an integer, but it is a float");
    assert_eq!(n, 12);
}

// ---------------------------------------------------------------------------------------------
// An Arc of a node or batch node
// ---------------------------------------------------------------------------------------------

/// Counts its visits in the node itself, and writes the count into the store.
#[derive(Default)]
struct Visits(AtomicUsize);

impl Node<Vec<String>> for Visits {
    type Prep = ();
    type Output = ();

    fn prep(&self, _: &Vec<String>, _: &Params) -> Result<()> {
        Ok(())
    }

    async fn exec(&self, _: &(), _: Ctx<'_>) -> Result<()> {
        Ok(())
    }

    fn post(&self, log: &mut Vec<String>, _: (), _: ()) -> Result<Action> {
        log.push(format!("visit {}", self.0.fetch_add(1, SeqCst) + 1));
        Ok(Action::DEFAULT)
    }
}

#[test]
fn an_arc_node_is_shared_with_the_caller_who_sees_its_state() {
    let visits = Arc::new(Visits::default());
    let mut flow = Flow::new();
    flow.add("count", Arc::clone(&visits));
    assert_eq!(Arc::strong_count(&visits), 2);
    let mut log = Vec::new();
    run(&flow, &mut log).unwrap();
    run(&flow, &mut log).unwrap();
    assert_eq!(visits.0.load(SeqCst), 2);
    assert_eq!(log, ["visit 1", "visit 2"]);
    drop(flow);
    assert_eq!(Arc::strong_count(&visits), 1, "the flow let go of its handle");
}

#[test]
fn one_arc_node_in_two_flows_and_twice_in_one_flow_counts_every_visit() {
    let visits = Arc::new(Visits::default());
    let mut both = Flow::new();
    let a = both.add("a", Arc::clone(&visits));
    let b = both.add("b", Arc::clone(&visits));
    both.then(a, b);
    let mut other = Flow::new();
    other.add("c", Arc::clone(&visits));
    let alone = Flow::of(Arc::clone(&visits));
    assert_eq!(Arc::strong_count(&visits), 5);
    assert_eq!(format!("{both:?}"), r#"Flow { nodes: ["a", "b"], start: Some("a") }"#);

    let mut log = Vec::new();
    run(&both, &mut log).unwrap();
    run(&other, &mut log).unwrap();
    run(&alone, &mut log).unwrap();
    run(&both, &mut log).unwrap();
    assert_eq!(log, ["visit 1", "visit 2", "visit 3", "visit 4", "visit 5", "visit 6"]);
    assert_eq!(visits.0.load(SeqCst), 6);

    drop((both, other, alone));
    assert_eq!(Arc::strong_count(&visits), 1);
}

#[test]
fn an_arc_batch_node_is_shared_with_the_caller_who_sees_its_state() {
    let triple = Arc::new(Triple { calls: AtomicUsize::new(0), in_flight: 2 });
    let mut flow = Flow::new();
    let first = flow.add("first", Arc::clone(&triple));
    let second = flow.add("second", Arc::clone(&triple));
    flow.then(first, second);
    assert_eq!(Arc::strong_count(&triple), 3);
    let mut total = Total::default();
    run_with_params(&flow, &mut total, Params::new().with("n", 4)).unwrap();
    assert_eq!(total, Total { sum: 30, items: 4, in_order: true });
    assert_eq!(triple.calls.load(SeqCst), 8, "four items, twice");
    drop(flow);
    assert_eq!(Arc::strong_count(&triple), 1);
}

// ---------------------------------------------------------------------------------------------
// The params a batch node's post gets
// ---------------------------------------------------------------------------------------------

/// Makes the param `count` items (none when it is missing), and records the params its prep
/// saw (in the node) and those its post got (in the store), with the items and outputs.
#[derive(Default)]
struct Echo {
    prep_saw: Mutex<Vec<String>>,
}

impl BatchNode<Vec<String>> for Echo {
    type Item = usize;
    type Output = usize;

    fn prep(&self, _: &Vec<String>, params: &Params) -> Result<Vec<usize>> {
        self.prep_saw.lock().unwrap().push(format!("{params:?}"));
        Ok((0..params.get_or("count", 0usize)?).collect())
    }

    async fn exec(&self, i: &usize, _: Ctx<'_>) -> Result<usize> {
        common::yield_times(*i).await;
        Ok(i * 10)
    }

    fn post(
        &self,
        log: &mut Vec<String>,
        params: &Params,
        items: Vec<usize>,
        outputs: Vec<usize>,
    ) -> Result<Action> {
        log.push(format!("{params:?} {items:?} {outputs:?}"));
        Ok(Action::DEFAULT)
    }
}

impl Echo {
    fn prep_saw(&self) -> Vec<String> {
        self.prep_saw.lock().unwrap().clone()
    }
}

#[test]
fn a_batch_nodes_post_gets_the_params_its_prep_saw() {
    let echo = Arc::new(Echo::default());
    let flow = Flow::of(Arc::clone(&echo));
    let mut log = Vec::new();
    run_with_params(&flow, &mut log, Params::new().with("batch", "b7").with("count", 2)).unwrap();
    assert_eq!(log, [r#"{"batch": Str("b7"), "count": Int(2)} [0, 1] [0, 10]"#]);
    assert_eq!(echo.prep_saw(), [r#"{"batch": Str("b7"), "count": Int(2)}"#]);
}

#[test]
fn a_batch_nodes_post_gets_the_params_for_an_empty_batch_too() {
    let echo = Arc::new(Echo::default());
    let flow = Flow::of(Arc::clone(&echo));
    let mut log = Vec::new();
    run_with_params(&flow, &mut log, Params::new().with("batch", "b7").with("count", 0)).unwrap();
    run(&flow, &mut log).unwrap();
    assert_eq!(log, [r#"{"batch": Str("b7"), "count": Int(0)} [] []"#, "{} [] []"]);
    assert_eq!(echo.prep_saw(), [r#"{"batch": Str("b7"), "count": Int(0)}"#, "{}"]);
}

/// Three sub-runs of a flow of one `Echo`: 1 item, none, and 2 items under a `batch` of their own.
fn echo_sets(_: &Vec<String>, _: &Params) -> Result<Vec<Params>> {
    Ok(vec![
        Params::new().with("count", 1),
        Params::new().with("count", 0),
        Params::new().with("batch", "own").with("count", 2),
    ])
}

#[test]
fn a_batch_nodes_post_in_a_batch_flow_sub_run_gets_the_merged_params() {
    let echo = Arc::new(Echo::default());
    let mut outer = Flow::new();
    outer.add("each", BatchFlow::new(Flow::of(Arc::clone(&echo)), echo_sets));
    let mut log = Vec::new();
    run_with_params(&outer, &mut log, Params::new().with("batch", "b7")).unwrap();
    let merged = [
        r#"{"batch": Str("b7"), "count": Int(1)}"#,
        r#"{"batch": Str("b7"), "count": Int(0)}"#,
        r#"{"batch": Str("own"), "count": Int(2)}"#,
    ];
    assert_eq!(
        log,
        [
            format!("{} [0] [0]", merged[0]),
            format!("{} [] []", merged[1]),
            format!("{} [0, 1] [0, 10]", merged[2]),
        ]
    );
    assert_eq!(echo.prep_saw(), merged);

    // With nothing inherited, each sub-run's own params.
    let mut log = Vec::new();
    run(&outer, &mut log).unwrap();
    assert_eq!(
        log,
        [
            r#"{"count": Int(1)} [0] [0]"#,
            r#"{"count": Int(0)} [] []"#,
            r#"{"batch": Str("own"), "count": Int(2)} [0, 1] [0, 10]"#,
        ]
    );
}

#[test]
fn a_batch_nodes_post_in_concurrent_sub_runs_gets_each_sub_runs_merged_params() {
    let echo = Arc::new(Echo::default());
    let mut outer = Flow::new();
    outer.add("each", BatchAsyncFlow::new(Flow::of(Arc::clone(&echo)), echo_sets));
    let mut log = Vec::new();
    run_with_params(&outer, &mut log, Params::new().with("batch", "b7")).unwrap();
    log.sort();
    assert_eq!(
        log,
        [
            r#"{"batch": Str("b7"), "count": Int(0)} [] []"#,
            r#"{"batch": Str("b7"), "count": Int(1)} [0] [0]"#,
            r#"{"batch": Str("own"), "count": Int(2)} [0, 1] [0, 10]"#,
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Params: usize and u64 values, FromValue, get_as, get_or
// ---------------------------------------------------------------------------------------------

#[test]
fn usize_and_u64_values_are_integers() {
    assert_eq!(Value::from(0usize), Value::Int(0));
    assert_eq!(Value::from(7usize), Value::Int(7));
    assert_eq!(Value::from(7u64), Value::Int(7));
    assert_eq!(Value::from(i64::MAX as u64), Value::Int(i64::MAX));
    assert_eq!(Value::from(i64::MAX as usize), Value::Int(i64::MAX));
    let params = Params::new().with("len", 3usize).with("id", u64::from(u32::MAX) + 1);
    assert_eq!(params.int("len").unwrap(), 3);
    assert_eq!(params.get_as::<u64>("id").unwrap(), 4_294_967_296);
}

#[test]
fn a_u64_or_usize_above_i64_max_is_kept_whole_and_read_back_as_unsigned_only() {
    let above = i64::MAX as u64 + 1;
    assert_eq!(Value::from(u64::MAX), Value::UInt(u64::MAX));
    assert_eq!(Value::from(above), Value::UInt(above));
    assert_eq!(Value::from(usize::MAX), Value::UInt(usize::MAX as u64));
    assert_eq!(Value::from(u64::MAX).to_string(), "18446744073709551615");
    // Hashes are uniformly spread, so half of them are above i64::MAX: every one round-trips.
    let hashes: Vec<u64> = (0..1_000u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect();
    assert!(hashes.iter().filter(|&&h| h > i64::MAX as u64).count() > 400);
    for &h in &hashes {
        let params = Params::new().with("hash", h);
        assert_eq!(params.get_as::<u64>("hash").unwrap(), h);
        assert_eq!(params.get_or("hash", 0u64).unwrap(), h);
    }
    let params = Params::new().with("id", u64::MAX).with("size", usize::MAX);
    assert_eq!(params.get_as::<usize>("size").unwrap(), usize::MAX);
    assert_eq!(
        params.get_as::<i64>("id").unwrap_err().to_string(),
        "param `id` should be an integer, but it is an integer above i64::MAX"
    );
    assert_eq!(
        params.get_as::<f64>("id").unwrap_err().to_string(),
        "param `id` should be a float, but it is an integer above i64::MAX"
    );
    assert_eq!(
        format!("{params:?}"),
        format!("{{\"id\": UInt({}), \"size\": UInt({})}}", u64::MAX, usize::MAX)
    );
}

#[test]
fn get_as_reads_each_type_as_it_was_set() {
    let params = Params::new()
        .with("name", "ada")
        .with("n", -3)
        .with("len", 12usize)
        .with("x", 0.5)
        .with("on", true)
        .with("zero", 0);
    assert_eq!(params.get_as::<&str>("name").unwrap(), "ada");
    assert_eq!(params.get_as::<i64>("n").unwrap(), -3);
    assert_eq!(params.get_as::<usize>("len").unwrap(), 12);
    assert_eq!(params.get_as::<u64>("len").unwrap(), 12);
    assert_eq!(params.get_as::<i64>("len").unwrap(), 12);
    assert_eq!(params.get_as::<f64>("x").unwrap(), 0.5);
    assert!(params.get_as::<bool>("on").unwrap());
    assert_eq!(params.get_as::<usize>("zero").unwrap(), 0);
    assert_eq!(params.get_as::<u64>("zero").unwrap(), 0);

    // The borrowed string lives as long as the params.
    let name: &str = params.get_as("name").unwrap();
    assert_eq!(name.len(), 3);
}

#[test]
#[cfg(target_pointer_width = "64")]
fn get_as_usize_takes_i64_max_and_refuses_a_negative_integer_and_a_string() {
    let params = Params::new()
        .with("max", i64::MAX)
        .with("minus", -1)
        .with("text", "12")
        .with("min", i64::MIN);
    assert_eq!(params.get_as::<usize>("max").unwrap(), 9_223_372_036_854_775_807);
    assert_eq!(params.get_as::<u64>("max").unwrap(), 9_223_372_036_854_775_807);

    let negative = "param `minus` should be a non-negative integer, but it is a negative integer";
    let err = params.get_as::<usize>("minus").unwrap_err();
    assert_eq!(err.to_string(), negative);
    assert!(matches!(
        &err,
        FlowError::Param { node, key, expected: "a non-negative integer", found: Some("a negative integer"), .. }
            if node.is_empty() && key == "minus"
    ));
    assert_eq!(params.get_as::<u64>("minus").unwrap_err().to_string(), negative);
    assert_eq!(
        params.get_as::<usize>("min").unwrap_err().to_string(),
        "param `min` should be a non-negative integer, but it is a negative integer"
    );

    let err = params.get_as::<usize>("text").unwrap_err();
    assert_eq!(
        err.to_string(),
        "param `text` should be a non-negative integer, but it is a string"
    );
    assert!(matches!(&err, FlowError::Param { found: Some("a string"), .. }));
}

#[test]
fn get_as_names_the_type_it_wanted_and_the_type_it_found() {
    let params = Params::new()
        .with("name", "ada")
        .with("n", 4)
        .with("minus", -4)
        .with("x", 0.5)
        .with("on", false);
    let message = |result: Result<(), FlowError>| result.unwrap_err().to_string();
    let cases = [
        (
            message(params.get_as::<&str>("n").map(drop)),
            "param `n` should be a string, but it is an integer",
        ),
        (
            message(params.get_as::<i64>("x").map(drop)),
            "param `x` should be an integer, but it is a float",
        ),
        (
            message(params.get_as::<i64>("name").map(drop)),
            "param `name` should be an integer, but it is a string",
        ),
        (
            message(params.get_as::<f64>("n").map(drop)),
            "param `n` should be a float, but it is an integer",
        ),
        (
            message(params.get_as::<f64>("minus").map(drop)),
            "param `minus` should be a float, but it is a negative integer",
        ),
        (
            message(params.get_as::<bool>("name").map(drop)),
            "param `name` should be a bool, but it is a string",
        ),
        (
            message(params.get_as::<bool>("n").map(drop)),
            "param `n` should be a bool, but it is an integer",
        ),
        (
            message(params.get_as::<usize>("x").map(drop)),
            "param `x` should be a non-negative integer, but it is a float",
        ),
        (
            message(params.get_as::<u64>("on").map(drop)),
            "param `on` should be a non-negative integer, but it is a bool",
        ),
        (
            message(params.get_as::<&str>("absent").map(drop)),
            "param `absent` is missing; set it in the params the run or a batch flow passes down",
        ),
        (
            message(params.get_as::<usize>("absent").map(drop)),
            "param `absent` is missing; set it in the params the run or a batch flow passes down",
        ),
    ];
    for (got, want) in cases {
        assert_eq!(got, want);
    }
    // Zero is an integer, not a negative one.
    let zero = Params::new().with("zero", 0);
    assert_eq!(
        zero.get_as::<f64>("zero").unwrap_err().to_string(),
        "param `zero` should be a float, but it is an integer"
    );
    assert!(matches!(
        params.get_as::<u64>("absent"),
        Err(FlowError::Param { expected: "a non-negative integer", found: None, .. })
    ));
}

#[test]
fn the_typed_getters_read_as_get_as_does() {
    let params = Params::new()
        .with("name", "ada")
        .with("n", -3)
        .with("x", 0.5)
        .with("on", true)
        .with("off", false);
    assert_eq!(params.str("name").unwrap(), "ada");
    assert_eq!(params.int("n").unwrap(), -3);
    assert_eq!(params.float("x").unwrap(), 0.5);
    assert!(params.bool("on").unwrap());
    assert!(!params.bool("off").unwrap());

    let errors = [
        params.str("n").unwrap_err(),
        params.int("x").unwrap_err(),
        params.float("n").unwrap_err(),
        params.bool("name").unwrap_err(),
        params.str("absent").unwrap_err(),
        params.float("absent").unwrap_err(),
        params.bool("absent").unwrap_err(),
    ];
    let missing = "is missing; set it in the params the run or a batch flow passes down";
    assert_eq!(
        errors.map(|e| e.to_string()),
        [
            "param `n` should be a string, but it is a negative integer".to_string(),
            "param `x` should be an integer, but it is a float".to_string(),
            "param `n` should be a float, but it is a negative integer".to_string(),
            "param `name` should be a bool, but it is a string".to_string(),
            format!("param `absent` {missing}"),
            format!("param `absent` {missing}"),
            format!("param `absent` {missing}"),
        ]
    );
}

#[test]
fn get_or_gives_the_default_only_when_the_key_is_missing() {
    let params = Params::new().with("n", 3).with("minus", -1).with("name", "ada").with("x", 2.5);
    // Missing: the default, whatever its type. (A bare literal default needs its type from
    // the context: `get_or("multiplier", 1)` alone would be an `i32`, which is no `FromValue`.)
    let multiplier: i64 = params.get_or("multiplier", 1).unwrap();
    assert_eq!(multiplier, 1);
    assert_eq!(params.get_or("multiplier", 1i64).unwrap(), 1);
    assert_eq!(params.get_or("multiplier", 7usize).unwrap(), 7);
    assert_eq!(params.get_or("multiplier", 7u64).unwrap(), 7);
    assert_eq!(params.get_or("ratio", 0.25).unwrap(), 0.25);
    assert_eq!(params.get_or("who", "nobody").unwrap(), "nobody");
    assert!(params.get_or("flag", true).unwrap());
    assert_eq!(Params::new().get_or("n", -9i64).unwrap(), -9);

    // Set: the value, not the default.
    assert_eq!(params.get_or("n", 1i64).unwrap(), 3);
    assert_eq!(params.get_or("n", 1usize).unwrap(), 3);
    assert_eq!(params.get_or("minus", 0i64).unwrap(), -1);
    assert_eq!(params.get_or("name", "nobody").unwrap(), "ada");
    assert_eq!(params.get_or("x", 0.0).unwrap(), 2.5);

    // Set but mistyped or out of range: an error, never the default.
    let err = params.get_or("n", 1.5).unwrap_err();
    assert_eq!(err.to_string(), "param `n` should be a float, but it is an integer");
    assert!(matches!(
        &err,
        FlowError::Param { expected: "a float", found: Some("an integer"), .. }
    ));
    assert_eq!(
        params.get_or("minus", 0usize).unwrap_err().to_string(),
        "param `minus` should be a non-negative integer, but it is a negative integer"
    );
    assert_eq!(
        params.get_or("name", 0i64).unwrap_err().to_string(),
        "param `name` should be an integer, but it is a string"
    );
    assert_eq!(
        params.get_or("x", "text").unwrap_err().to_string(),
        "param `x` should be a string, but it is a float"
    );
    assert_eq!(
        params.get_or("x", false).unwrap_err().to_string(),
        "param `x` should be a bool, but it is a float"
    );
}

#[test]
fn from_value_says_what_each_type_expects_and_reads_only_its_own_values() {
    assert_eq!(<&str as FromValue<'_>>::EXPECTED, "a string");
    assert_eq!(<i64 as FromValue<'_>>::EXPECTED, "an integer");
    assert_eq!(<usize as FromValue<'_>>::EXPECTED, "a non-negative integer");
    assert_eq!(<u64 as FromValue<'_>>::EXPECTED, "a non-negative integer");
    assert_eq!(<f64 as FromValue<'_>>::EXPECTED, "a float");
    assert_eq!(<bool as FromValue<'_>>::EXPECTED, "a bool");

    let values =
        [Value::from("7"), Value::from(7), Value::from(-7), Value::from(7.0), Value::from(true)];
    let read = |f: &dyn Fn(&Value) -> Option<String>| values.iter().map(f).collect::<Vec<_>>();
    let some = |s: &str| Some(s.to_string());
    assert_eq!(
        read(&|v| <&str>::from_value(v).map(str::to_string)),
        [some("7"), None, None, None, None]
    );
    assert_eq!(
        read(&|v| i64::from_value(v).map(|n| n.to_string())),
        [None, some("7"), some("-7"), None, None]
    );
    assert_eq!(
        read(&|v| usize::from_value(v).map(|n| n.to_string())),
        [None, some("7"), None, None, None]
    );
    assert_eq!(
        read(&|v| u64::from_value(v).map(|n| n.to_string())),
        [None, some("7"), None, None, None]
    );
    assert_eq!(
        read(&|v| f64::from_value(v).map(|x| x.to_string())),
        [None, None, None, some("7"), None]
    );
    assert_eq!(
        read(&|v| bool::from_value(v).map(|b| b.to_string())),
        [None, None, None, None, some("true")]
    );

    // Generic code can read any of them through the trait.
    fn twice<'a, T: FromValue<'a> + Copy>(
        params: &'a Params,
        key: &str,
    ) -> Result<(T, T), FlowError> {
        Ok((params.get_as(key)?, params.get_or(key, params.get_as(key)?)?))
    }
    let params = Params::new().with("n", 5usize);
    assert_eq!(twice::<usize>(&params, "n").unwrap(), (5, 5));
    assert_eq!(twice::<i64>(&params, "n").unwrap(), (5, 5));
    assert_eq!(
        twice::<f64>(&params, "n").unwrap_err().to_string(),
        "param `n` should be a float, but it is an integer"
    );
}

#[test]
fn a_getter_error_in_a_nodes_prep_names_the_node() {
    struct Take;
    impl Node<Vec<usize>> for Take {
        type Prep = usize;
        type Output = usize;
        fn prep(&self, _: &Vec<usize>, params: &Params) -> Result<usize> {
            Ok(params.get_as::<usize>("n")? + params.get_or("extra", 0usize)?)
        }
        async fn exec(&self, n: &usize, _: Ctx<'_>) -> Result<usize> {
            Ok(*n)
        }
        fn post(&self, taken: &mut Vec<usize>, _: usize, n: usize) -> Result<Action> {
            taken.push(n);
            Ok(Action::DEFAULT)
        }
    }

    let mut outer = Flow::new();
    outer.add("take", Take);
    let mut taken = Vec::new();
    run_with_params(&outer, &mut taken, Params::new().with("n", 2usize)).unwrap();
    run_with_params(&outer, &mut taken, Params::new().with("n", 2).with("extra", 3)).unwrap();
    assert_eq!(taken, [2, 5]);

    let err = run_with_params(&outer, &mut taken, Params::new().with("n", -1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "node `take`: param `n` should be a non-negative integer, but it is a negative integer"
    );
    assert!(matches!(&err, FlowError::Param { node, .. } if node == "take"));
    let err = run_with_params(&outer, &mut taken, Params::new().with("n", 1).with("extra", 1.0))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "node `take`: param `extra` should be a non-negative integer, but it is a float"
    );
    assert_eq!(taken, [2, 5]);
}

// ---------------------------------------------------------------------------------------------
// Flow::chain
// ---------------------------------------------------------------------------------------------

type Trail = Vec<&'static str>;

/// A node that records `name` and returns "default".
fn visit(name: &'static str) -> impl Node<Trail> {
    node_fn(move |trail: &mut Trail, _: &Params| {
        trail.push(name);
        Ok(Action::DEFAULT)
    })
}

/// A node that records `name` and returns "done" on its `times`th visit, "default" before.
fn visit_until(name: &'static str, times: usize) -> impl Node<Trail> {
    node_fn(move |trail: &mut Trail, _: &Params| {
        trail.push(name);
        let seen = trail.iter().filter(|n| **n == name).count();
        Ok(if seen == times { "done" } else { "default" }.into())
    })
}

#[test]
fn chain_wires_each_node_to_the_next_on_default() {
    let mut chained = Flow::new();
    let a = chained.add("a", visit("a"));
    let d = chained.add("d", visit("d"));
    let c = chained.add("c", visit("c"));
    let b = chained.add("b", visit("b"));
    chained.chain(&[a, b, c, d]);

    let mut by_hand = Flow::new();
    let ids = ["a", "d", "c", "b"].map(|name| by_hand.add(name, visit(name)));
    by_hand.then(ids[0], ids[3]).then(ids[3], ids[2]).then(ids[2], ids[1]);
    assert_eq!(chained.to_mermaid(), by_hand.to_mermaid());

    let mut trail = Vec::new();
    assert_eq!(run(&chained, &mut trail).unwrap(), "default");
    assert_eq!(trail, ["a", "b", "c", "d"]);
    // Each pair has its default edge now, and only those pairs.
    assert_duplicate(|| chained.then(a, d), "a", "default");
    assert_duplicate(|| chained.then(b, a), "b", "default");
    assert_duplicate(|| chained.then(c, a), "c", "default");
    chained.then(d, a); // d had no edge
}

#[test]
fn chain_returns_the_flow_so_that_calls_go_on() {
    let mut flow = Flow::new();
    let ids = ["a", "b", "c", "d", "e"].map(|name| flow.add(name, visit(name)));
    let e = flow.add("end", visit_until("end", 1));
    flow.chain(&ids[..2]).chain(&ids[1..]).then(ids[4], e).end(e, "done");
    let mut trail = Vec::new();
    assert_eq!(run(&flow, &mut trail).unwrap(), "done");
    assert_eq!(trail, ["a", "b", "c", "d", "e", "end"]);
}

#[test]
fn a_chain_of_no_node_or_of_one_node_connects_nothing() {
    let mut flow = Flow::new();
    let a = flow.add("a", visit("a"));
    let before = flow.to_mermaid();
    flow.chain(&[]).chain(&[a]);
    assert_eq!(flow.to_mermaid(), before);
    let mut trail = Vec::new();
    run(&flow, &mut trail).unwrap();
    assert_eq!(trail, ["a"]);

    let b = flow.add("b", visit("b"));
    flow.chain(&[b]).chain(&[a]);
    let err = run(&flow, &mut trail).unwrap_err();
    assert!(err.to_string().starts_with("node `b` can never run"), "{err}");
    flow.then(a, b); // a still had no default edge
    flow.then(b, a); // nor had b
    let mut empty = Flow::<Trail>::new();
    empty.chain(&[]);
    assert!(empty.is_empty());
}

#[test]
fn chain_over_an_existing_default_edge_panics_as_then_does_and_keeps_the_pairs_before_it() {
    let mut flow = Flow::new();
    let [a, b, c, d] = ["a", "b", "c", "d"].map(|name| flow.add(name, visit(name)));
    flow.then(c, d);
    assert_duplicate(|| flow.chain(&[a, b, c, a]), "c", "default");
    // a -> b and b -> c stayed connected; c keeps its own edge to d.
    let mut trail = Vec::new();
    run(&flow, &mut trail).unwrap();
    assert_eq!(trail, ["a", "b", "c", "d"]);
    assert_duplicate(|| flow.then(a, c), "a", "default");
    assert_duplicate(|| flow.then(b, a), "b", "default");
    // The same message as `then` itself gives.
    assert_eq!(panics(|| flow.chain(&[c, a])), panics(|| flow.then(c, a)));
}

#[test]
fn a_chain_that_passes_a_node_twice_loops_and_a_repeated_pair_panics() {
    let mut flow = Flow::new();
    let a = flow.add("a", visit_until("a", 3));
    let b = flow.add("b", visit("b"));
    flow.chain(&[a, b, a]).end(a, "done");
    let mut trail = Vec::new();
    assert_eq!(run(&flow, &mut trail).unwrap(), "done");
    assert_eq!(trail, ["a", "b", "a", "b", "a"]);

    let mut again = Flow::new();
    let a = again.add("a", visit("a"));
    let b = again.add("b", visit("b"));
    assert_duplicate(|| again.chain(&[a, b, a, b]), "a", "default");

    // A node chained to itself is a loop too.
    let mut selfish = Flow::new();
    let a = selfish.add("a", visit_until("a", 4));
    selfish.chain(&[a, a]).end(a, "done");
    let mut trail = Vec::new();
    assert_eq!(run(&selfish, &mut trail).unwrap(), "done");
    assert_eq!(trail, ["a", "a", "a", "a"]);
}

#[test]
fn a_chain_with_a_node_of_another_flow_panics_as_then_does() {
    let mut other = Flow::new();
    let stranger = other.add("stranger", visit("stranger"));

    let mut flow = Flow::new();
    let [a, b, c] = ["a", "b", "c"].map(|name| flow.add(name, visit(name)));
    assert_foreign(|| flow.chain(&[a, b, stranger, c]), stranger);
    // a -> b stayed; b -> stranger was refused, so b is still free.
    assert_duplicate(|| flow.then(a, c), "a", "default");
    flow.then(b, c);
    let mut trail = Vec::new();
    run(&flow, &mut trail).unwrap();
    assert_eq!(trail, ["a", "b", "c"]);

    // First, last, or the only pair: the same panic, and nothing connected.
    let mut fresh = Flow::new();
    let [x, y] = ["x", "y"].map(|name| fresh.add(name, visit(name)));
    assert_foreign(|| fresh.chain(&[stranger, x]), stranger);
    assert_foreign(|| fresh.chain(&[y, stranger]), stranger);
    assert_eq!(panics(|| fresh.chain(&[x, stranger])), panics(|| fresh.then(x, stranger)));
    fresh.then(x, y);
    let mut trail = Vec::new();
    run(&fresh, &mut trail).unwrap();
    assert_eq!(trail, ["x", "y"]);
    // A lone foreign id connects nothing, so it is not looked at.
    fresh.chain(&[stranger]);
}

// ---------------------------------------------------------------------------------------------
// miniflow::sleep
// ---------------------------------------------------------------------------------------------

/// Three quick nodes, each awaiting `miniflow::sleep` in its `exec`, chained.
fn napping_flow() -> Flow<Vec<String>> {
    let nap = |name: &'static str, ms: u64| {
        exec_fn(
            move |log: &Vec<String>, _: &Params| Ok(log.len()),
            move |seen: usize| async move {
                miniflow::sleep(Duration::from_millis(ms)).await;
                Ok::<_, Error>(format!("{name} after {seen}"))
            },
            |log: &mut Vec<String>, _, entry: String| {
                log.push(entry);
                Ok(Action::DEFAULT)
            },
        )
    };
    let mut flow = Flow::new();
    let ids = [
        flow.add("first", nap("first", 3)),
        flow.add("second", nap("second", 0)),
        flow.add("third", nap("third", 1)),
    ];
    flow.chain(&ids);
    flow
}

const NAPPED: [&str; 3] = ["first after 0", "second after 1", "third after 2"];

#[test]
fn sleep_runs_under_futures_block_on() {
    futures::executor::block_on(miniflow::sleep(Duration::from_millis(1)));
    futures::executor::block_on(miniflow::sleep(Duration::ZERO));
    let mut log = Vec::new();
    futures::executor::block_on(napping_flow().run(&mut log)).unwrap();
    assert_eq!(log, NAPPED);
}

#[test]
fn sleep_runs_under_smol_block_on() {
    smol::block_on(miniflow::sleep(Duration::from_millis(1)));
    let mut log = Vec::new();
    smol::block_on(napping_flow().run(&mut log)).unwrap();
    assert_eq!(log, NAPPED);
}

#[test]
fn sleep_runs_under_a_tokio_current_thread_runtime_without_its_timer() {
    // No `enable_time`: the sleep does not use tokio's timer.
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(miniflow::sleep(Duration::from_millis(1)));
    let mut log = Vec::new();
    runtime.block_on(napping_flow().run(&mut log)).unwrap();
    assert_eq!(log, NAPPED);
}

#[test]
fn sleep_for_duration_max_never_finishes() {
    let (output, polls) = poll_by_hand(miniflow::sleep(Duration::MAX), 5);
    assert_eq!((output, polls), (None, 5));
    // A zero sleep is ready at its first poll.
    assert_eq!(poll_by_hand(miniflow::sleep(Duration::ZERO), 5), (Some(()), 1));
}

/// Sleeps `nap` in `exec`, under a `timeout()` of `limit`, for `attempts` attempts; records
/// the attempts it started and what a fallback saw.
struct Sleeper {
    nap: Duration,
    limit: Duration,
    attempts: usize,
    started: Arc<Mutex<Vec<usize>>>,
}

impl Sleeper {
    fn new(nap: Duration, limit: Duration, attempts: usize) -> Self {
        Sleeper { nap, limit, attempts, started: Arc::default() }
    }
}

impl Node<Vec<String>> for Sleeper {
    type Prep = ();
    type Output = String;

    fn prep(&self, _: &Vec<String>, _: &Params) -> Result<()> {
        Ok(())
    }

    async fn exec(&self, _: &(), cx: Ctx<'_>) -> Result<String> {
        self.started.lock().unwrap().push(cx.attempt());
        miniflow::sleep(self.nap).await;
        Ok(format!("woke on attempt {}", cx.attempt()))
    }

    fn post(&self, log: &mut Vec<String>, _: (), out: String) -> Result<Action> {
        log.push(out);
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        self.attempts
    }

    fn timeout(&self) -> Option<Duration> {
        Some(self.limit)
    }
}

/// Checks that a sleep of an hour under a 5 ms timeout, twice, fails the node with `TimedOut`.
fn assert_sleep_times_out(
    block_on: impl FnOnce(&Flow<Vec<String>>, &mut Vec<String>) -> Result<Action, FlowError>,
) {
    let sleeper = Sleeper::new(Duration::from_secs(3600), Duration::from_millis(5), 2);
    let started = Arc::clone(&sleeper.started);
    let flow = Flow::of(sleeper);
    let mut log = Vec::new();
    let err = block_on(&flow, &mut log).unwrap_err();
    assert_eq!(
        format!("{err:#}"),
        "node `Sleeper` failed in exec after 2 attempts: exec timed out after 5ms"
    );
    assert!(matches!(
        &err,
        FlowError::NodeFailed { node, phase: Phase::Exec, attempts: 2, .. } if node == "Sleeper"
    ));
    let timed_out = err.source().unwrap().downcast_ref::<TimedOut>().unwrap();
    assert_eq!((timed_out.after, timed_out.fallback), (Duration::from_millis(5), false));
    assert_eq!(*started.lock().unwrap(), [0, 1]);
    assert!(log.is_empty());
}

#[test]
fn a_sleep_in_exec_longer_than_the_timeout_times_out_under_futures_block_on() {
    assert_sleep_times_out(|flow, log| futures::executor::block_on(flow.run(log)));
}

#[test]
fn a_sleep_in_exec_longer_than_the_timeout_times_out_under_smol() {
    assert_sleep_times_out(|flow, log| smol::block_on(flow.run(log)));
}

#[test]
fn a_sleep_in_exec_longer_than_the_timeout_times_out_under_tokio_current_thread() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    assert_sleep_times_out(|flow, log| runtime.block_on(flow.run(log)));
}

#[test]
fn a_sleep_forever_in_exec_times_out_and_a_short_one_does_not() {
    let forever = Sleeper::new(Duration::MAX, Duration::from_millis(2), 1);
    let mut log = Vec::new();
    let err = run(&Flow::of(forever), &mut log).unwrap_err();
    assert_eq!(
        format!("{err:#}"),
        "node `Sleeper` failed in exec after 1 attempt: exec timed out after 2ms"
    );

    let quick = Sleeper::new(Duration::from_millis(1), Duration::from_secs(3600), 3);
    run(&Flow::of(quick), &mut log).unwrap();
    assert_eq!(log, ["woke on attempt 0"]);
}

// ---------------------------------------------------------------------------------------------
// PocketFlow's reference behaviours, as a porter would write them
// ---------------------------------------------------------------------------------------------

/// The store of the arithmetic pipelines: the current number and what happened.
#[derive(Debug, Default, PartialEq)]
struct Numbers {
    current: i64,
    log: Vec<String>,
}

fn set_to(n: i64) -> impl Node<Numbers> {
    node_fn(move |s: &mut Numbers, _: &Params| {
        s.current = n;
        s.log.push(format!("set {n}"));
        Ok(Action::DEFAULT)
    })
}

fn add(n: i64) -> impl Node<Numbers> {
    node_fn(move |s: &mut Numbers, _: &Params| {
        s.current += n;
        s.log.push(format!("add {n}"));
        Ok(Action::DEFAULT)
    })
}

fn times(n: i64) -> impl Node<Numbers> {
    node_fn(move |s: &mut Numbers, _: &Params| {
        s.current *= n;
        s.log.push(format!("times {n}"));
        Ok(Action::DEFAULT)
    })
}

/// Routes on the sign of the current number.
fn sign() -> impl Node<Numbers> {
    node_fn(|s: &mut Numbers, _: &Params| {
        let action = match s.current {
            n if n > 0 => "positive",
            0 => "zero",
            _ => "negative",
        };
        s.log.push(format!("sign {action}"));
        Ok(action.into())
    })
}

#[test]
fn pocketflow_a_node_run_by_itself_does_its_work_and_returns_its_action() {
    let mut numbers = Numbers::default();
    assert_eq!(run(&Flow::of(set_to(5)), &mut numbers).unwrap(), "default");
    assert_eq!(numbers, Numbers { current: 5, log: vec!["set 5".into()] });

    numbers.current = -3;
    assert_eq!(run(&Flow::of(sign()), &mut numbers).unwrap(), "negative");
    numbers.current = 0;
    assert_eq!(run(&Flow::of(sign()), &mut numbers).unwrap(), "zero");
    assert_eq!(numbers.log, ["set 5", "sign negative", "sign zero"]);
}

#[test]
fn pocketflow_a_pipeline_chained_then_branching_and_looping_on_the_sign() {
    // set 5 >> add 3 >> times 2
    let mut pipeline = Flow::new();
    let ids = [
        pipeline.add("set", set_to(5)),
        pipeline.add("add", add(3)),
        pipeline.add("times", times(2)),
    ];
    pipeline.chain(&ids);
    let mut numbers = Numbers::default();
    run(&pipeline, &mut numbers).unwrap();
    assert_eq!(
        numbers,
        Numbers { current: 16, log: vec!["set 5".into(), "add 3".into(), "times 2".into()] }
    );

    // set 3 >> sign; positive >> add -1 >> sign (a loop), zero ends it, negative never comes.
    let mut countdown = Flow::new();
    let set = countdown.add("set", set_to(3));
    let check = countdown.add("sign", sign());
    let down = countdown.add("down", add(-1));
    let flip = countdown.add("flip", times(-1));
    countdown.chain(&[set, check]);
    countdown.edge(check, "positive", down).then(down, check);
    countdown.edge(check, "negative", flip).then(flip, check);
    countdown.end(check, "zero");
    let mut numbers = Numbers::default();
    assert_eq!(run(&countdown, &mut numbers).unwrap(), "zero");
    assert_eq!(
        numbers.log,
        [
            "set 3",
            "sign positive",
            "add -1",
            "sign positive",
            "add -1",
            "sign positive",
            "add -1",
            "sign zero"
        ]
    );

    // Starting below zero takes the negative branch once, then counts down.
    let mut from_minus = Flow::new();
    let set = from_minus.add("set", set_to(-2));
    let check = from_minus.add("sign", sign());
    let down = from_minus.add("down", add(-1));
    let flip = from_minus.add("flip", times(-1));
    from_minus.chain(&[set, check]).edge(check, "positive", down).chain(&[down, check]);
    from_minus.edge(check, "negative", flip).chain(&[flip, check]).end(check, "zero");
    let mut numbers = Numbers::default();
    run(&from_minus, &mut numbers).unwrap();
    assert_eq!(numbers.current, 0);
    assert_eq!(
        numbers.log,
        [
            "set -2",
            "sign negative",
            "times -1",
            "sign positive",
            "add -1",
            "sign positive",
            "add -1",
            "sign zero"
        ]
    );
}

/// Sums an array chunk by chunk: one item per chunk of the param `chunk` (10 by default).
struct ChunkSums;

#[derive(Debug, Default, PartialEq)]
struct Chunks {
    array: Vec<i64>,
    sums: Vec<i64>,
    total: i64,
}

impl BatchNode<Chunks> for ChunkSums {
    type Item = Vec<i64>;
    type Output = i64;

    fn prep(&self, store: &Chunks, params: &Params) -> Result<Vec<Vec<i64>>> {
        let size = params.get_or("chunk", 10usize)?;
        Ok(store.array.chunks(size).map(<[i64]>::to_vec).collect())
    }

    async fn exec(&self, chunk: &Vec<i64>, _: Ctx<'_>) -> Result<i64> {
        Ok(chunk.iter().sum())
    }

    fn post(
        &self,
        store: &mut Chunks,
        _: &Params,
        _: Vec<Vec<i64>>,
        sums: Vec<i64>,
    ) -> Result<Action> {
        store.sums = sums;
        Ok(Action::DEFAULT)
    }
}

#[test]
fn pocketflow_a_batch_node_run_alone_sums_chunks_and_a_reduce_step_adds_them() {
    let mut chunks = Chunks { array: (0..25).collect(), ..Chunks::default() };
    assert_eq!(run(&Flow::of(ChunkSums), &mut chunks).unwrap(), "default");
    assert_eq!(chunks.sums, [45, 145, 110]);

    let mut flow = Flow::new();
    let map = flow.add("map", ChunkSums);
    let reduce = flow.add(
        "reduce",
        node_fn(|s: &mut Chunks, _: &Params| {
            s.total = s.sums.iter().sum();
            Ok(Action::DEFAULT)
        }),
    );
    flow.chain(&[map, reduce]);
    let mut chunks = Chunks { array: (0..25).collect(), ..Chunks::default() };
    run_with_params(&flow, &mut chunks, Params::new().with("chunk", 7usize)).unwrap();
    assert_eq!(chunks.sums, [21, 70, 119, 90]);
    assert_eq!(chunks.total, 300);

    // An empty array: no chunk, nothing summed.
    let mut empty = Chunks::default();
    run(&flow, &mut empty).unwrap();
    assert_eq!(empty, Chunks::default());
}

/// The inputs to process and what the sub-runs made of them.
#[derive(Debug, Default, PartialEq)]
struct Jobs {
    inputs: BTreeMap<String, i64>,
    results: BTreeMap<String, i64>,
}

/// A batch flow with one sub-run per input key; its node reads the key (a param) and the
/// multiplier (a param, 1 by default).
fn multiply_each() -> Flow<Jobs> {
    let process = exec_fn(
        |jobs: &Jobs, params: &Params| {
            let key = params.get_as::<&str>("key")?;
            let input = jobs.inputs.get(key).copied().ok_or_else(|| format!("no input {key}"))?;
            Ok((key.to_string(), input, params.get_or("multiplier", 1)?))
        },
        |(key, input, multiplier): (String, i64, i64)| async move {
            Ok::<_, Error>((key, input * multiplier))
        },
        |jobs: &mut Jobs, _, (key, result): (String, i64)| {
            jobs.results.insert(key, result);
            Ok(Action::DEFAULT)
        },
    );
    let mut inner = Flow::new();
    inner.add("process", process);
    let batch = BatchFlow::new(inner, |jobs: &Jobs, _: &Params| {
        Ok(jobs.inputs.keys().map(|key| Params::new().with("key", key.clone())).collect())
    });
    Flow::of(batch)
}

#[test]
fn pocketflow_a_batch_flow_with_params_per_item_and_a_multiplier_read_with_a_default() {
    let inputs: BTreeMap<String, i64> =
        [("a", 1), ("b", 2), ("c", 3)].map(|(k, v)| (k.to_string(), v)).into();
    let flow = multiply_each();

    let mut jobs = Jobs { inputs: inputs.clone(), ..Jobs::default() };
    run(&flow, &mut jobs).unwrap();
    assert_eq!(jobs.results, inputs, "no multiplier: times 1");

    let mut jobs = Jobs { inputs: inputs.clone(), ..Jobs::default() };
    run_with_params(&flow, &mut jobs, Params::new().with("multiplier", 3)).unwrap();
    let tripled: BTreeMap<String, i64> =
        [("a", 3), ("b", 6), ("c", 9)].map(|(k, v)| (k.to_string(), v)).into();
    assert_eq!(jobs.results, tripled);

    // No inputs: no sub-run.
    let mut none = Jobs::default();
    run(&flow, &mut none).unwrap();
    assert_eq!(none, Jobs::default());

    // A mistyped multiplier is an error naming the first sub-run's node, not a silent 1.
    let mut jobs = Jobs { inputs, ..Jobs::default() };
    let err = run_with_params(&flow, &mut jobs, Params::new().with("multiplier", 1.5)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "node `BatchFlow[0]/process`: param `multiplier` should be an integer, but it is a float"
    );
    assert!(jobs.results.is_empty());
}

#[test]
fn pocketflow_a_flow_of_quick_async_nodes_that_await_a_sleep() {
    let fetch = exec_fn(
        |_: &Numbers, params: &Params| params.get_or("start", 5).map_err(Into::into),
        |n: i64| async move {
            miniflow::sleep(Duration::from_millis(2)).await;
            Ok::<_, Error>(n)
        },
        |s: &mut Numbers, _, n: i64| {
            s.current = n;
            s.log.push(format!("fetched {n}"));
            Ok("fetched".into())
        },
    );
    let increment = exec_fn(
        |s: &Numbers, _: &Params| Ok(s.current),
        |n: i64| async move {
            miniflow::sleep(Duration::from_millis(1)).await;
            Ok::<_, Error>(n + 1)
        },
        |s: &mut Numbers, _, n: i64| {
            s.current = n;
            s.log.push(format!("incremented to {n}"));
            Ok("done".into())
        },
    );
    let mut flow = Flow::new();
    let fetch = flow.add("fetch", fetch);
    let increment = flow.add("increment", increment);
    flow.edge(fetch, "fetched", increment);
    flow.end(increment, "done");

    let mut numbers = Numbers::default();
    assert_eq!(smol::block_on(flow.run(&mut numbers)).unwrap(), "done");
    assert_eq!(
        numbers,
        Numbers { current: 6, log: vec!["fetched 5".into(), "incremented to 6".into()] }
    );

    let mut numbers = Numbers::default();
    let options = RunOptions::new().params(Params::new().with("start", 41));
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    assert_eq!(runtime.block_on(flow.run_with(&mut numbers, options)).unwrap(), "done");
    assert_eq!(
        numbers,
        Numbers { current: 42, log: vec!["fetched 41".into(), "incremented to 42".into()] }
    );
}

/// Fails its first `failures` attempts, and says in its output which attempt got through (or
/// which one the fallback took over from).
struct Unreliable {
    failures: usize,
    attempts: usize,
}

#[derive(Debug, Default, PartialEq)]
struct Attempts {
    seen: Vec<String>,
    result: String,
}

impl Node<Attempts> for Unreliable {
    type Prep = ();
    type Output = (String, Vec<String>);

    fn prep(&self, _: &Attempts, _: &Params) -> Result<()> {
        Ok(())
    }

    async fn exec(&self, _: &(), cx: Ctx<'_>) -> Result<(String, Vec<String>)> {
        if cx.attempt() < self.failures {
            return Err(failure(format!(
                "attempt {} of {} failed",
                cx.attempt(),
                cx.max_retries()
            )));
        }
        let seen = (0..=cx.attempt()).map(|a| format!("attempt {a}")).collect();
        Ok((format!("succeeded on attempt {}", cx.attempt()), seen))
    }

    async fn exec_fallback(
        &self,
        _: &(),
        error: Error,
        cx: Ctx<'_>,
    ) -> Result<(String, Vec<String>)> {
        Ok((format!("fallback after attempt {}: {error}", cx.attempt()), vec![]))
    }

    fn post(
        &self,
        store: &mut Attempts,
        _: (),
        (result, seen): (String, Vec<String>),
    ) -> Result<Action> {
        store.result = result;
        store.seen = seen;
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        self.attempts
    }
}

#[test]
fn pocketflow_retries_are_counted_by_ctx_attempt_and_the_fallback_takes_over_at_the_end() {
    let mut store = Attempts::default();
    run(&Flow::of(Unreliable { failures: 2, attempts: 3 }), &mut store).unwrap();
    assert_eq!(
        store,
        Attempts {
            seen: vec!["attempt 0".into(), "attempt 1".into(), "attempt 2".into()],
            result: "succeeded on attempt 2".into(),
        }
    );

    let mut store = Attempts::default();
    run(&Flow::of(Unreliable { failures: 0, attempts: 3 }), &mut store).unwrap();
    assert_eq!(
        store,
        Attempts { seen: vec!["attempt 0".into()], result: "succeeded on attempt 0".into() }
    );

    let mut store = Attempts::default();
    run(&Flow::of(Unreliable { failures: 5, attempts: 2 }), &mut store).unwrap();
    assert_eq!(
        store,
        Attempts { seen: vec![], result: "fallback after attempt 1: attempt 1 of 2 failed".into() }
    );
}

#[test]
fn get_as_i32_takes_the_integers_that_fit_and_a_bare_literal_default_is_one() {
    let params = Params::new().with("small", -7).with("big", i64::MAX).with("text", "3");
    assert_eq!(params.get_as::<i32>("small").unwrap(), -7);
    let messages: Vec<String> = ["big", "text", "none"]
        .iter()
        .map(|key| params.get_as::<i32>(key).unwrap_err().to_string())
        .collect();
    assert_eq!(
        messages,
        [
            "param `big` should be an integer that fits an i32, but it is an integer",
            "param `text` should be an integer that fits an i32, but it is a string",
            "param `none` is missing; set it in the params the run or a batch flow passes down",
        ]
    );
    // `1` has no other type to take here: it is an i32, which is what makes this compile.
    assert_eq!(params.get_or("missing", 1).unwrap(), 1);
    assert_eq!(params.get_or("small", 1).unwrap(), -7);
}

#[test]
fn exec_fn_hands_post_the_prep_value_beside_the_output() {
    let node = exec_fn(
        |words: &Vec<String>, _: &Params| Ok(words.len()),
        |count: usize| async move { Ok::<_, Error>(count * 10) },
        |words: &mut Vec<String>, count: usize, tens: usize| {
            words.push(format!("{count} words, {tens} tens"));
            Ok(Action::DEFAULT)
        },
    );
    let mut words = vec!["a".to_string(), "b".to_string()];
    futures::executor::block_on(Flow::of(node).run(&mut words)).unwrap();
    assert_eq!(words, ["a", "b", "2 words, 20 tens"]);
}

/// A store that borrows its input: the FAQ says nodes and flat flows work with any `Send`
/// store, quick nodes included.
struct Borrowed<'a> {
    text: &'a str,
    words: Vec<&'a str>,
    count: usize,
}

fn count_words(text: &str) -> (Vec<&str>, usize) {
    let mut flow = Flow::new();
    let split = flow.add(
        "split",
        node_fn(|s: &mut Borrowed<'_>, _: &Params| {
            s.words = s.text.split_whitespace().collect();
            Ok(Action::DEFAULT)
        }),
    );
    let count = flow.add(
        "count",
        exec_fn(
            |s: &Borrowed<'_>, _: &Params| Ok(s.words.len()),
            |n: usize| async move { Ok::<_, Error>(n) },
            |s: &mut Borrowed<'_>, _, n: usize| {
                s.count = n;
                Ok(Action::DEFAULT)
            },
        ),
    );
    flow.then(split, count);
    let mut store = Borrowed { text, words: Vec::new(), count: 0 };
    futures::executor::block_on(flow.run(&mut store)).unwrap();
    (store.words, store.count)
}

#[test]
fn quick_nodes_run_over_a_store_that_borrows() {
    let text = String::from("a borrowed  store\tof words");
    assert_eq!(count_words(&text), (vec!["a", "borrowed", "store", "of", "words"], 5));
}
