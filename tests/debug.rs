//! What the public types print: the exact `Debug` of every public type a user may hold or log
//! (`Params`, `Value`, `RunOptions`, `Flow`, `NodeId`, `NodeFn`, `ExecFn`, `Parallel`, `BatchFlow`,
//! `BatchAsyncFlow`, `Ctx`, `NodePath`, `Event`, `Backoff`, `Phase`, `FlowError`), and the exact
//! `Display` of `NodePath`, `TimedOut`, `Phase` and of every kind of `Event`, one line each,
//! with "attempt" in the singular for one attempt and the plural otherwise. The lints demand a
//! `Debug` on every public type so that users can see their values: these tests make sure
//! each one shows them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use miniflow::{
    Action, Backoff, BatchAsyncFlow, BatchFlow, Ctx, Event, Flow, FlowError, Node, Parallel,
    Params, Phase, Result, RunOptions, Value, node_fn,
};

/// A glue node that returns `action`.
fn returns(action: &'static str) -> impl Node<u32> {
    node_fn(move |_: &mut u32, _: &Params| Ok(Action::new(action)))
}

#[test]
fn params_and_values_debug_as_a_map_of_typed_values_in_key_order() {
    assert_eq!(format!("{:?}", Params::new()), "{}");
    let params = Params::new()
        .with("school", "Hilltop")
        .with("size", 28)
        .with("average", 2.5)
        .with("open", true);
    assert_eq!(
        format!("{params:?}"),
        r#"{"school": Str("Hilltop"), "size": Int(28), "average": Float(2.5), "open": Bool(true)}"#
    );
    assert_eq!(format!("{:?}", Params::new().with("one", 1)), r#"{"one": Int(1)}"#);
    assert_eq!(format!("{:?}", Value::from("x")), r#"Str("x")"#);
}

#[test]
fn run_options_debug_shows_every_setting() {
    assert_eq!(
        format!("{:?}", RunOptions::<u32>::new()),
        "RunOptions { params: {}, observer: false, checkpoint: false, \
         max_steps: 18446744073709551615, start: None, timeout: None }"
    );
    let observer = |_: &Event<'_>| {};
    let options = RunOptions::<u32>::new()
        .params(Params::new().with("step", 5))
        .observer(&observer)
        .checkpoint(|_, _| Ok(()))
        .max_steps(100)
        .start_at("add")
        .timeout(std::time::Duration::from_millis(1500));
    assert_eq!(
        format!("{options:?}"),
        r#"RunOptions { params: {"step": Int(5)}, observer: true, checkpoint: true, max_steps: 100, start: Some("add"), timeout: Some(1.5s) }"#
    );
}

#[test]
fn flows_and_their_node_ids_debug_as_their_names_and_start() {
    let mut flow = Flow::<u32>::new();
    assert_eq!(format!("{flow:?}"), "Flow { nodes: [], start: None }");
    let a = flow.add("a", returns("default"));
    let b = flow.add("b", returns("default"));
    flow.set_start(b);
    assert_eq!(format!("{flow:?}"), r#"Flow { nodes: ["a", "b"], start: Some("b") }"#);

    // Ids name their index and their flow, whose number is the same for both.
    let first = format!("{a:?}");
    let number = first.strip_prefix("NodeId(0 of flow #").and_then(|s| s.strip_suffix(')'));
    let number: u64 = number.and_then(|n| n.parse().ok()).expect(&first);
    assert_eq!(format!("{b:?}"), format!("NodeId(1 of flow #{number})"));
}

#[test]
fn node_fn_debug_names_the_type_and_hides_the_closure() {
    assert_eq!(format!("{:?}", node_fn(|_: &mut u32, _| Ok(Action::DEFAULT))), "NodeFn { .. }");
}

#[test]
fn parallel_debug_shows_its_branch_names_limit_and_whether_it_has_a_post() {
    assert_eq!(
        format!("{:?}", Parallel::<u32>::new()),
        "Parallel { branches: [], max_in_flight: 18446744073709551615, post: false }"
    );
    let both = Parallel::new()
        .branch("song", returns("default"))
        .branch("characters", returns("default"))
        .max_in_flight(1)
        .post(|_, _| Ok(Action::DEFAULT));
    assert_eq!(
        format!("{both:?}"),
        r#"Parallel { branches: ["song", "characters"], max_in_flight: 1, post: true }"#
    );
}

#[test]
fn batch_flows_debug_show_their_inner_flow_limit_and_post() {
    let inner = || {
        let mut flow = Flow::<u32>::new();
        flow.add("square", returns("default"));
        flow
    };
    let none = |_: &u32, _: &Params| Ok(Vec::new());
    assert_eq!(
        format!("{:?}", BatchFlow::new(inner(), none)),
        r#"BatchFlow { flow: Flow { nodes: ["square"], start: Some("square") }, max_in_flight: 1, post: false }"#
    );
    assert_eq!(
        format!(
            "{:?}",
            BatchAsyncFlow::new(inner(), none).max_in_flight(4).post(|_, _, _| Ok(Action::DEFAULT))
        ),
        r#"BatchAsyncFlow { flow: Flow { nodes: ["square"], start: Some("square") }, max_in_flight: 4, post: true }"#
    );
}

/// A node that records, on every attempt, its `Ctx` as `Debug` shows it and its path as
/// `Debug` and `Display` show it; its first attempt fails.
struct Probe(Arc<Mutex<Vec<String>>>);

impl Node<u32> for Probe {
    type Prep = ();
    type Output = ();

    fn prep(&self, _: &u32, _: &Params) -> Result<()> {
        Ok(())
    }

    async fn exec(&self, _: &(), cx: Ctx<'_>) -> Result<()> {
        let path = cx.node();
        self.0.lock().unwrap().push(format!("{cx:?} | {path:?} | {path}"));
        match cx.attempt() {
            0 => Err("not yet".into()),
            _ => Ok(()),
        }
    }

    fn post(&self, _: &mut u32, _: (), _: ()) -> Result<Action> {
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        2
    }
}

#[test]
fn ctx_debug_shows_the_attempt_the_attempts_the_node_path_and_whether_the_run_is_observed() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut inner = Flow::new();
    inner.add("probe", Probe(seen.clone()));
    let mut flow = Flow::new();
    flow.add("outer", inner);

    smol::block_on(flow.run(&mut 0)).unwrap();
    let observer = |_: &Event<'_>| {};
    smol::block_on(flow.run_with(&mut 0, RunOptions::new().observer(&observer))).unwrap();

    let ctx = |attempt, observed| {
        format!(
            r#"Ctx {{ attempt: {attempt}, max_retries: 2, node: "outer/probe", observed: {observed} }} | "outer/probe" | outer/probe"#
        )
    };
    assert_eq!(*seen.lock().unwrap(), [ctx(0, false), ctx(1, false), ctx(0, true), ctx(1, true)]);
}

/// `fetch`: fails its first attempt, then reports a custom event and succeeds (2 attempts).
struct Fetch;

impl Node<u32> for Fetch {
    type Prep = ();
    type Output = ();

    fn prep(&self, _: &u32, _: &Params) -> Result<()> {
        Ok(())
    }

    async fn exec(&self, _: &(), cx: Ctx<'_>) -> Result<()> {
        if cx.attempt() == 0 {
            return Err("not yet".into());
        }
        cx.emit("token", "Hel");
        Ok(())
    }

    fn post(&self, _: &mut u32, _: (), _: ()) -> Result<Action> {
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        2
    }
}

/// Runs `flow` and returns the `Display` of every event it reported, with a `NodeEnd`'s
/// elapsed time (which differs from run to run) replaced by `‹t›`, and the `Debug` of every
/// `NodeStart` event after a `#`.
fn shown(flow: &Flow<u32>) -> Vec<String> {
    let lines = Mutex::new(Vec::new());
    let observer = |event: &Event<'_>| {
        let line = match event {
            Event::NodeEnd { elapsed, .. } => {
                event.to_string().replace(&format!(" in {elapsed:?}"), " in ‹t›")
            }
            Event::NodeStart { .. } => format!("{event} # {event:?}"),
            _ => event.to_string(),
        };
        lines.lock().unwrap().push(line);
    };
    let _ = smol::block_on(flow.run_with(&mut 0, RunOptions::new().observer(&observer)));
    lines.into_inner().unwrap()
}

#[test]
fn events_display_as_one_line_each_with_attempt_singular_for_one_and_plural_otherwise() {
    let mut inner = Flow::new();
    inner.add("save", returns("saved"));
    let mut flow = Flow::new();
    let fetch = flow.add("fetch", Fetch);
    let save = flow.add("inner", inner);
    flow.then(fetch, save);

    assert_eq!(
        shown(&flow),
        [
            "run started",
            r#"`fetch` started # NodeStart { node: "fetch" }"#,
            "`fetch` attempt 1 failed: not yet; retrying in 0ns",
            "`fetch` token: Hel",
            r#"`fetch` ended with "default" after 2 attempts in ‹t›"#,
            r#"`inner` started # NodeStart { node: "inner" }"#,
            r#"`inner/save` started # NodeStart { node: "inner/save" }"#,
            r#"`inner/save` ended with "saved" after 1 attempt in ‹t›"#,
            r#"`inner` ended with "saved" after 0 attempts in ‹t›"#,
            r#"run finished with "saved""#,
        ]
    );
}

/// A node whose one attempt never finishes: it times out after 1 ms.
struct Stuck;

impl Node<u32> for Stuck {
    type Prep = ();
    type Output = ();

    fn prep(&self, _: &u32, _: &Params) -> Result<()> {
        Ok(())
    }

    async fn exec(&self, _: &(), _: Ctx<'_>) -> Result<()> {
        futures::future::pending().await
    }

    fn post(&self, _: &mut u32, _: (), _: ()) -> Result<Action> {
        Ok(Action::DEFAULT)
    }

    fn timeout(&self) -> Option<Duration> {
        Some(Duration::from_millis(1))
    }
}

#[test]
fn fallback_and_failure_events_display_the_error() {
    let mut stuck = Flow::new();
    stuck.add("fetch", Stuck);
    assert_eq!(
        shown(&stuck),
        [
            "run started",
            r#"`fetch` started # NodeStart { node: "fetch" }"#,
            "`fetch` falls back after its last attempt failed: exec timed out after 1ms",
            "run failed: node `fetch` failed in exec after 1 attempt: exec timed out after 1ms",
        ]
    );

    let mut failing = Flow::new();
    failing.add("save", node_fn(|_: &mut u32, _| Err("disk full".into())));
    assert_eq!(
        shown(&failing),
        [
            "run started",
            r#"`save` started # NodeStart { node: "save" }"#,
            "run failed: node `save` failed in post: disk full",
        ]
    );
    assert_eq!(Event::RunStart.to_string(), "run started");
    assert_eq!(Event::Cancelled.to_string(), "run cancelled");
}

#[test]
fn timing_types_and_phases_show_their_values() {
    let ms = Duration::from_millis;
    let backoff = Backoff::new(ms(1), ms(8));
    assert_eq!(format!("{backoff:?}"), "Backoff { first: 1ms, cap: 8ms, jitter: 0.0 }");
    assert_eq!(
        format!("{:?}", backoff.jitter(0.5)),
        "Backoff { first: 1ms, cap: 8ms, jitter: 0.5 }"
    );
    let phases = [Phase::Prep, Phase::Exec, Phase::Post].map(|p| format!("{p} {p:?}"));
    assert_eq!(phases, ["prep Prep", "exec Exec", "post Post"]);
    let empty = smol::block_on(Flow::<u32>::new().run(&mut 0)).unwrap_err();
    assert_eq!(
        format!("{empty:?}"),
        r#"InvalidConfig { node: "", message: "the flow has no nodes; add one with `Flow::add` before running it" }"#
    );
    assert!(matches!(empty, FlowError::InvalidConfig { .. }));
}
