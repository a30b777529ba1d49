//! Resuming runs: `RunOptions::start_at` (start at a named node of the outermost flow, or fail
//! with `InvalidConfig` before any node runs), `RunOptions::checkpoint` (called after every
//! outermost node that leads on to another, with the store as the posts left it and the next
//! node's name; never at the end, never inside a nested flow; a failed save stops the run),
//! and the two uses they are made for: resuming after a crash (a failed `exec`, or a run
//! future dropped mid-`exec`) reaches the same final store as a run that never stopped,
//! without running the finished nodes again; and a human in the loop, where a run ends on
//! "ask_human" and resumes at the node that asked once the answer is in the store.

mod common;

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};

use miniflow::{Action, Ctx, Flow, FlowError, Node, Params, Phase, Result, RunOptions, node_fn};

use common::failure;

// ---------------------------------------------------------------------------------------------
// A flat store for start_at and the checkpoint's basics
// ---------------------------------------------------------------------------------------------

/// The store of the simple tests: the names of the nodes that ran, in order.
type Visits = Vec<&'static str>;

/// A node that records `name` and returns `action`.
fn step(name: &'static str, action: &'static str) -> impl Node<Visits> {
    node_fn(move |visits: &mut Visits, _: &Params| {
        visits.push(name);
        Ok(Action::new(action))
    })
}

/// `a -> b -> c`.
fn chain() -> Flow<Visits> {
    let mut flow = Flow::new();
    let a = flow.add("a", step("a", "default"));
    let b = flow.add("b", step("b", "default"));
    let c = flow.add("c", step("c", "last"));
    flow.then(a, b);
    flow.then(b, c);
    flow
}

/// `a -> inner (x -> y) -> b`.
fn nested() -> Flow<Visits> {
    let mut inner = Flow::new();
    let x = inner.add("x", step("x", "default"));
    let y = inner.add("y", step("y", "default"));
    inner.then(x, y);
    let mut flow = Flow::new();
    let a = flow.add("a", step("a", "default"));
    let inner = flow.add("inner", inner);
    let b = flow.add("b", step("b", "default"));
    flow.then(a, inner);
    flow.then(inner, b);
    flow
}

fn run_with<S: Send>(
    flow: &Flow<S>,
    store: &mut S,
    options: RunOptions<'_, S>,
) -> Result<Action, FlowError> {
    smol::block_on(flow.run_with(store, options))
}

/// Runs `flow` on `store` with a checkpoint that records every call, and returns the result
/// with the calls: (store snapshot, next node).
fn run_recording<S: Send + Clone>(
    flow: &Flow<S>,
    store: &mut S,
    start_at: Option<&str>,
) -> (Result<Action, FlowError>, Vec<(S, String)>) {
    let calls = Mutex::new(Vec::new());
    let mut options = RunOptions::new().checkpoint(|s: &S, next: &str| {
        calls.lock().unwrap().push((s.clone(), next.to_string()));
        Ok(())
    });
    if let Some(name) = start_at {
        options = options.start_at(name);
    }
    let result = run_with(flow, store, options);
    (result, calls.into_inner().unwrap())
}

// ---------------------------------------------------------------------------------------------
// start_at
// ---------------------------------------------------------------------------------------------

#[test]
fn start_at_starts_at_the_named_node_and_follows_the_edges_from_there() {
    let flow = chain();
    let mut visits = Visits::new();
    assert_eq!(run_with(&flow, &mut visits, RunOptions::new().start_at("b")).unwrap(), "last");
    assert_eq!(visits, ["b", "c"]);

    // The start node by name is the same as no start_at; the last node runs alone.
    let mut visits = Visits::new();
    run_with(&flow, &mut visits, RunOptions::new().start_at("a")).unwrap();
    assert_eq!(visits, ["a", "b", "c"]);
    let mut visits = Visits::new();
    run_with(&flow, &mut visits, RunOptions::new().start_at("c")).unwrap();
    assert_eq!(visits, ["c"]);
}

#[test]
fn start_at_an_unknown_name_fails_before_any_node_runs() {
    let mut flow = Flow::new();
    let a = flow.add("a", step("a", "default"));
    let b = flow.add("b", step("b", "default"));
    flow.then(a, b);

    let mut visits = Visits::new();
    let err = run_with(&flow, &mut visits, RunOptions::new().start_at("x")).unwrap_err();

    let FlowError::InvalidConfig { node, message, .. } = &err else {
        panic!("expected InvalidConfig, got {err:?}");
    };
    assert_eq!(node, "");
    assert_eq!(message, r#"the flow has no node named "x" to start at; its nodes are "a", "b""#);
    assert_eq!(err.node(), "");
    assert_eq!(
        err.to_string(),
        r#"the flow has no node named "x" to start at; its nodes are "a", "b""#
    );
    assert_eq!(visits, Visits::new());
}

#[test]
fn start_at_names_only_nodes_of_the_outermost_flow() {
    let flow = nested();

    // `x` is a node of the nested flow: not a place a run can start.
    let mut visits = Visits::new();
    let err = run_with(&flow, &mut visits, RunOptions::new().start_at("x")).unwrap_err();
    assert!(
        matches!(&err, FlowError::InvalidConfig { node, message, .. }
            if node.is_empty()
                && message == r#"the flow has no node named "x" to start at; its nodes are "a", "inner", "b""#),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        r#"the flow has no node named "x" to start at; its nodes are "a", "inner", "b""#
    );
    assert_eq!(visits, Visits::new());

    // Starting at the nested flow runs it from its own start.
    let mut visits = Visits::new();
    run_with(&flow, &mut visits, RunOptions::new().start_at("inner")).unwrap();
    assert_eq!(visits, ["x", "y", "b"]);
}

// ---------------------------------------------------------------------------------------------
// checkpoint
// ---------------------------------------------------------------------------------------------

#[test]
fn checkpoint_is_called_between_outermost_nodes_but_not_at_the_end() {
    let (result, calls) = run_recording(&chain(), &mut Visits::new(), None);
    assert_eq!(result.unwrap(), "last");
    assert_eq!(calls, [(vec!["a"], "b".to_string()), (vec!["a", "b"], "c".to_string())]);

    // A flow of one node never leads on: no call at all.
    let mut single = Flow::new();
    single.add("only", step("only", "default"));
    let (result, calls) = run_recording(&single, &mut Visits::new(), None);
    assert_eq!(result.unwrap(), "default");
    assert_eq!(calls, []);
}

#[test]
fn checkpoint_is_not_called_at_an_end_edge() {
    let mut flow = Flow::new();
    let a = flow.add("a", step("a", "default"));
    let b = flow.add("b", step("b", "stop"));
    flow.then(a, b);
    flow.then(b, a);
    flow.end(b, "stop");

    let (result, calls) = run_recording(&flow, &mut Visits::new(), None);
    assert_eq!(result.unwrap(), "stop");
    assert_eq!(calls, [(vec!["a"], "b".to_string())]);
}

#[test]
fn checkpoint_names_the_next_node_inside_a_nested_flow_by_its_path() {
    let (result, calls) = run_recording(&nested(), &mut Visits::new(), None);
    assert_eq!(result.unwrap(), "default");
    // Between `x` and `y` the next node is inside the nested flow: `inner/y`. When the nested
    // flow ends, the outer flow's next node is saved.
    assert_eq!(
        calls,
        [
            (vec!["a"], "inner".to_string()),
            (vec!["a", "x"], "inner/y".to_string()),
            (vec!["a", "x", "y"], "b".to_string())
        ]
    );
    // Resuming at each saved path runs exactly the nodes that had not run.
    for (done, next) in calls {
        let mut visits = done.clone();
        let (result, _) = run_recording(&nested(), &mut visits, Some(&next));
        assert_eq!(result.unwrap(), "default");
        assert_eq!(visits, ["a", "x", "y", "b"], "resumed at {next:?}");
    }
}

#[test]
fn checkpoint_is_not_called_for_a_failing_node() {
    let mut flow = Flow::new();
    let a = flow.add("a", step("a", "default"));
    let b = flow.add("b", node_fn(|_: &mut Visits, _: &Params| Err(failure("b is broken"))));
    let c = flow.add("c", step("c", "default"));
    flow.then(a, b);
    flow.then(b, c);

    let (result, calls) = run_recording(&flow, &mut Visits::new(), None);
    let err = result.unwrap_err();
    assert!(
        matches!(&err, FlowError::NodeFailed { node, phase: Phase::Post, .. } if node == "b"),
        "{err:?}"
    );
    assert_eq!(calls, [(vec!["a"], "b".to_string())]);
}

#[test]
fn a_checkpoint_that_fails_stops_the_run_before_the_next_node() {
    let saves = AtomicUsize::new(0);
    let options = RunOptions::new().checkpoint(|_: &Visits, _: &str| {
        match saves.fetch_add(1, Ordering::Relaxed) {
            0 => Ok(()),
            _ => Err(failure("the disk is full")),
        }
    });
    let mut visits = Visits::new();

    let err = run_with(&chain(), &mut visits, options).unwrap_err();

    assert!(matches!(&err, FlowError::Checkpoint { node, .. } if node == "c"), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the checkpoint before node `c` could not be saved, so the run stopped before it"
    );
    assert_eq!(std::error::Error::source(&err).unwrap().to_string(), "the disk is full");
    assert_eq!(err.node(), "c");
    // `a` and `b` ran and their posts stay; `c` did not run without its save.
    assert_eq!(visits, ["a", "b"]);
    assert_eq!(saves.into_inner(), 2);
}

// ---------------------------------------------------------------------------------------------
// Resume after a crash
// ---------------------------------------------------------------------------------------------

/// The store of the pipeline: cloned by the checkpoint, compared with an uninterrupted run's.
#[derive(Clone, Debug, Default, PartialEq)]
struct Doc {
    source: String,
    pages: Vec<String>,
    summary: String,
    published: bool,
}

/// Every `exec` started, by node name, in order: shared by the nodes of one flow.
type Log = Arc<Mutex<Vec<&'static str>>>;

/// How a stage's `exec` misbehaves on its `n`-th call (1-based).
#[derive(Clone, Copy, Debug)]
enum Fault {
    None,
    /// Returns an error: the run fails.
    FailOn(usize),
    /// Never finishes: the run is stuck there until its future is dropped.
    HangOn(usize),
}

/// A pipeline stage: `exec` logs the call (and misbehaves as `fault` says), `post` does `work`.
struct Stage {
    name: &'static str,
    log: Log,
    fault: Fault,
    calls: AtomicUsize,
    work: fn(&mut Doc) -> Action,
}

impl Node<Doc> for Stage {
    type Prep = ();
    type Output = ();

    fn prep(&self, _: &Doc, _: &Params) -> Result<()> {
        Ok(())
    }

    async fn exec(&self, _: &(), _: Ctx<'_>) -> Result<()> {
        self.log.lock().unwrap().push(self.name);
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        match self.fault {
            Fault::FailOn(n) if n == call => Err(failure(format!("{} crashed", self.name))),
            Fault::HangOn(n) if n == call => std::future::pending().await,
            _ => Ok(()),
        }
    }

    fn post(&self, doc: &mut Doc, _: (), _: ()) -> Result<Action> {
        Ok((self.work)(doc))
    }
}

/// `load -> fetch (x3, looping on "more") -> summarize -> publish`, with `fault` in `fetch`.
fn pipeline(log: &Log, fault: Fault) -> Flow<Doc> {
    let stage =
        |name, fault, work| Stage { name, log: Arc::clone(log), fault, calls: 0.into(), work };
    let mut flow = Flow::new();
    let load = flow.add(
        "load",
        stage("load", Fault::None, |doc: &mut Doc| {
            doc.source = "feed".into();
            Action::DEFAULT
        }),
    );
    let fetch = flow.add(
        "fetch",
        stage("fetch", fault, |doc: &mut Doc| {
            let page = format!("{} page {}", doc.source, doc.pages.len() + 1);
            doc.pages.push(page);
            Action::new(if doc.pages.len() < 3 { "more" } else { "done" })
        }),
    );
    let summarize = flow.add(
        "summarize",
        stage("summarize", Fault::None, |doc: &mut Doc| {
            doc.summary = doc.pages.join(" + ");
            Action::DEFAULT
        }),
    );
    let publish = flow.add(
        "publish",
        stage("publish", Fault::None, |doc: &mut Doc| {
            doc.published = true;
            Action::new("published")
        }),
    );
    flow.then(load, fetch);
    flow.edge(fetch, "more", fetch);
    flow.edge(fetch, "done", summarize);
    flow.then(summarize, publish);
    flow
}

/// The store after `n` pages were fetched (0 to 3), before summarize.
fn fetched(n: usize) -> Doc {
    Doc {
        source: "feed".into(),
        pages: (1..=n).map(|i| format!("feed page {i}")).collect(),
        ..Doc::default()
    }
}

/// What an uninterrupted run of the pipeline ends with.
fn finished() -> Doc {
    Doc { summary: "feed page 1 + feed page 2 + feed page 3".into(), published: true, ..fetched(3) }
}

fn runs_of(log: &Log) -> Vec<&'static str> {
    log.lock().unwrap().clone()
}

/// The checkpoints of an uninterrupted run of the pipeline.
fn all_checkpoints() -> Vec<(Doc, String)> {
    let summarized = Doc { published: false, ..finished() };
    vec![
        (fetched(0), "fetch".into()),
        (fetched(1), "fetch".into()),
        (fetched(2), "fetch".into()),
        (fetched(3), "summarize".into()),
        (summarized, "publish".into()),
    ]
}

#[test]
fn an_uninterrupted_run_checkpoints_after_every_node_that_leads_on() {
    let log = Log::default();
    let flow = pipeline(&log, Fault::None);
    let mut doc = Doc::default();

    let (result, calls) = run_recording(&flow, &mut doc, None);

    assert_eq!(result.unwrap(), "published");
    assert_eq!(doc, finished());
    assert_eq!(calls, all_checkpoints());
    assert_eq!(runs_of(&log), ["load", "fetch", "fetch", "fetch", "summarize", "publish"]);
}

/// The checkpoint slot a crashing run saves into, as an app would save to disk.
type Saved = Mutex<Option<(Doc, String)>>;

/// Runs the pipeline once without a fault: its final store and checkpoints.
fn uninterrupted() -> (Doc, Vec<(Doc, String)>) {
    let flow = pipeline(&Log::default(), Fault::None);
    let mut doc = Doc::default();
    let (result, calls) = run_recording(&flow, &mut doc, None);
    assert_eq!(result.unwrap(), "published");
    (doc, calls)
}

/// Resumes the pipeline from `saved` in a fresh flow (as a restarted process would), and checks
/// that it ends like an uninterrupted run, runs only what was left, and checkpoints from there.
fn resume_and_check(saved: &Saved) {
    let (expected, expected_calls) = uninterrupted();
    let (mut doc, next) = saved.lock().unwrap().clone().expect("a checkpoint was saved");
    assert_eq!((&doc, next.as_str()), (&fetched(1), "fetch"));

    let log = Log::default();
    let flow = pipeline(&log, Fault::None);
    let (result, calls) = run_recording(&flow, &mut doc, Some(&next));

    assert_eq!(result.unwrap(), "published");
    assert_eq!(doc, expected, "the resumed run must end like an uninterrupted one");
    // `load` and the first `fetch` are not run again.
    assert_eq!(runs_of(&log), ["fetch", "fetch", "summarize", "publish"]);
    // The resumed run's checkpoints are the uninterrupted run's from the second fetch on.
    assert_eq!(calls, expected_calls[2..]);
}

#[test]
fn a_run_resumed_from_its_checkpoint_after_an_exec_error_ends_like_an_uninterrupted_one() {
    // The second fetch fails, as a network outage or a killed worker would.
    let log = Log::default();
    let flow = pipeline(&log, Fault::FailOn(2));
    let saved = Saved::default();
    let options = RunOptions::new().checkpoint(|doc: &Doc, next: &str| {
        *saved.lock().unwrap() = Some((doc.clone(), next.into()));
        Ok(())
    });
    let mut doc = Doc::default();

    let err = run_with(&flow, &mut doc, options).unwrap_err();

    assert!(
        matches!(&err, FlowError::NodeFailed { node, phase: Phase::Exec, attempts: 1, .. }
            if node == "fetch"),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "node `fetch` failed in exec after 1 attempt");
    // The failed fetch wrote nothing: the store is the last checkpoint's.
    assert_eq!(doc, fetched(1));
    assert_eq!(runs_of(&log), ["load", "fetch", "fetch"]);

    resume_and_check(&saved);
}

#[test]
fn a_run_resumed_from_its_checkpoint_after_its_future_was_dropped_ends_like_an_uninterrupted_one() {
    // The second fetch never returns; the run's future is polled by hand, then dropped.
    let log = Log::default();
    let flow = pipeline(&log, Fault::HangOn(2));
    let saved = Saved::default();
    let options = RunOptions::new().checkpoint(|doc: &Doc, next: &str| {
        *saved.lock().unwrap() = Some((doc.clone(), next.into()));
        Ok(())
    });
    let mut doc = Doc::default();
    {
        let mut cx = Context::from_waker(Waker::noop());
        let mut run = Box::pin(flow.run_with(&mut doc, options));
        for _ in 0..5 {
            assert!(run.as_mut().poll(&mut cx).is_pending(), "the run must be stuck in fetch");
        }
        // Dropped here, mid-exec: the process "crashes".
    }

    // Every post that finished is in the store, and nothing of the interrupted fetch.
    assert_eq!(doc, fetched(1));
    assert_eq!(runs_of(&log), ["load", "fetch", "fetch"]);

    resume_and_check(&saved);
}

#[test]
fn a_run_resumed_twice_still_ends_like_an_uninterrupted_one() {
    // The first run fails in its second fetch; the resumed run gets one fetch further and
    // fails in its second fetch too; a second resume finishes the work.
    let saved = Saved::default();
    let save = |doc: &Doc, next: &str| {
        *saved.lock().unwrap() = Some((doc.clone(), next.into()));
        Ok(())
    };

    let first_log = Log::default();
    let mut doc = Doc::default();
    let flow = pipeline(&first_log, Fault::FailOn(2));
    run_with(&flow, &mut doc, RunOptions::new().checkpoint(save)).unwrap_err();
    let (mut doc, next) = saved.lock().unwrap().clone().unwrap();
    assert_eq!((&doc, next.as_str()), (&fetched(1), "fetch"));

    let second_log = Log::default();
    let flow = pipeline(&second_log, Fault::FailOn(2));
    let options = RunOptions::new().checkpoint(save).start_at(&next);
    run_with(&flow, &mut doc, options).unwrap_err();
    assert_eq!(runs_of(&second_log), ["fetch", "fetch"]);
    let (mut doc, next) = saved.lock().unwrap().clone().unwrap();
    assert_eq!((&doc, next.as_str()), (&fetched(2), "fetch"));

    let third_log = Log::default();
    let flow = pipeline(&third_log, Fault::None);
    assert_eq!(run_with(&flow, &mut doc, RunOptions::new().start_at(&next)).unwrap(), "published");
    assert_eq!(doc, uninterrupted().0);
    assert_eq!(runs_of(&third_log), ["fetch", "summarize", "publish"]);
}

// ---------------------------------------------------------------------------------------------
// Human in the loop
// ---------------------------------------------------------------------------------------------

/// The store of the review flow: a draft, the reviewer's answer, and the nodes that ran.
#[derive(Clone, Debug, Default, PartialEq)]
struct Post {
    text: String,
    drafts: u32,
    /// The human's answer: `None` until one is given; each new draft needs a new one.
    approved: Option<bool>,
    published: bool,
    visits: Vec<&'static str>,
}

/// `draft -> review`; review ends the run on "ask_human" while it has no answer, goes on to
/// `publish` on approval and back to `draft` on rejection.
fn review_flow() -> Flow<Post> {
    let mut flow = Flow::new();
    let draft = flow.add(
        "draft",
        node_fn(|p: &mut Post, _: &Params| {
            p.visits.push("draft");
            p.drafts += 1;
            p.text = format!("draft {}", p.drafts);
            p.approved = None;
            Ok(Action::DEFAULT)
        }),
    );
    let review = flow.add(
        "review",
        node_fn(|p: &mut Post, _: &Params| {
            p.visits.push("review");
            Ok(match p.approved {
                None => "ask_human".into(),
                Some(true) => "approve".into(),
                Some(false) => "reject".into(),
            })
        }),
    );
    let publish = flow.add(
        "publish",
        node_fn(|p: &mut Post, _: &Params| {
            p.visits.push("publish");
            p.published = true;
            Ok(Action::DEFAULT)
        }),
    );
    flow.then(draft, review);
    flow.end(review, "ask_human");
    flow.edge(review, "approve", publish);
    flow.edge(review, "reject", draft);
    flow
}

/// Runs the review flow (from `start_at`, if given) and returns its result, the nodes that ran
/// in this run alone, and the checkpoints.
fn review_run(
    flow: &Flow<Post>,
    post: &mut Post,
    start_at: Option<&str>,
) -> (Action, Vec<&'static str>, Vec<String>) {
    let (result, calls) = run_recording(flow, post, start_at);
    let visits = std::mem::take(&mut post.visits);
    (result.unwrap(), visits, calls.into_iter().map(|(_, next)| next).collect())
}

#[test]
fn a_run_pauses_on_ask_human_and_resumes_at_review_to_publish() {
    let flow = review_flow();
    let mut post = Post::default();

    let (action, visits, checkpoints) = review_run(&flow, &mut post, None);
    assert_eq!(action, "ask_human");
    assert_eq!(visits, ["draft", "review"]);
    assert_eq!(checkpoints, ["review"], "no checkpoint when the run pauses");
    assert_eq!((post.text.as_str(), post.published), ("draft 1", false));

    // The answer arrives; the app writes it into the store and resumes where the run paused.
    post.approved = Some(true);
    let (action, visits, checkpoints) = review_run(&flow, &mut post, Some("review"));
    assert_eq!(action, "default");
    assert_eq!(visits, ["review", "publish"]);
    assert_eq!(checkpoints, ["publish"]);
    assert_eq!(
        post,
        Post {
            text: "draft 1".into(),
            drafts: 1,
            approved: Some(true),
            published: true,
            visits: vec![]
        }
    );
}

#[test]
fn a_rejected_draft_goes_back_to_draft_and_asks_again() {
    let flow = review_flow();
    let mut post = Post::default();

    let (action, visits, _) = review_run(&flow, &mut post, None);
    assert_eq!((action.as_str(), visits), ("ask_human", vec!["draft", "review"]));

    // Rejected: a new draft is written, and the run pauses again for its review.
    post.approved = Some(false);
    let (action, visits, checkpoints) = review_run(&flow, &mut post, Some("review"));
    assert_eq!(action, "ask_human");
    assert_eq!(visits, ["review", "draft", "review"]);
    assert_eq!(checkpoints, ["draft", "review"]);
    assert_eq!((post.text.as_str(), post.approved, post.published), ("draft 2", None, false));

    // Approved: published.
    post.approved = Some(true);
    let (action, visits, _) = review_run(&flow, &mut post, Some("review"));
    assert_eq!(action, "default");
    assert_eq!(visits, ["review", "publish"]);
    assert_eq!((post.text.as_str(), post.drafts, post.published), ("draft 2", 2, true));
}

#[test]
fn resuming_without_an_answer_pauses_again_at_once() {
    let flow = review_flow();
    let mut post = Post::default();
    review_run(&flow, &mut post, None);

    // Resumed too early (no answer yet): review asks again, and nothing else runs.
    let before = post.clone();
    let (action, visits, checkpoints) = review_run(&flow, &mut post, Some("review"));
    assert_eq!(action, "ask_human");
    assert_eq!(visits, ["review"]);
    assert_eq!(checkpoints, Vec::<String>::new());
    assert_eq!(post, before);
}

// ---------------------------------------------------------------------------------------------
// Entry points: nodes reached only by resuming there
// ---------------------------------------------------------------------------------------------

/// `draft` ends the run to ask a person; `send` (then `log`) runs only when resumed at.
fn paused() -> (Flow<Vec<String>>, miniflow::NodeId) {
    let mut flow = Flow::new();
    let draft = flow.add(
        "draft",
        node_fn(|log: &mut Vec<String>, _| {
            log.push("draft".into());
            Ok("ask".into())
        }),
    );
    let send = flow.add(
        "send",
        node_fn(|log: &mut Vec<String>, _| {
            log.push("send".into());
            Ok(Action::DEFAULT)
        }),
    );
    let done = flow.add(
        "log",
        node_fn(|log: &mut Vec<String>, _| {
            log.push("log".into());
            Ok(Action::DEFAULT)
        }),
    );
    flow.end(draft, "ask");
    flow.then(send, done);
    (flow, send)
}

#[test]
fn a_node_only_resumed_at_is_unreachable_until_declared_an_entry() {
    let (mut flow, send) = paused();
    let err = flow.validate().unwrap_err();
    assert!(
        matches!(&err, FlowError::InvalidConfig { node, message, .. } if node.is_empty() && message ==
            "nodes `send`, `log` can never run: no edge leads to them from the start node `draft`; \
             connect them with `Flow::edge` or `Flow::then`, or remove them (a node that runs only \
             when a run resumes there is declared with `Flow::entry`)"),
        "{err}"
    );
    flow.entry(send);
    flow.validate().unwrap();

    let mut log = Vec::new();
    assert_eq!(smol::block_on(flow.run(&mut log)).unwrap(), "ask");
    let resume = RunOptions::new().start_at("send");
    assert_eq!(smol::block_on(flow.run_with(&mut log, resume)).unwrap(), "default");
    assert_eq!(log, ["draft", "send", "log"]);
}

#[test]
fn entry_refuses_a_node_of_another_flow() {
    let (_, send) = paused();
    let (mut other, _) = paused();
    let refused = catch_unwind(AssertUnwindSafe(|| {
        other.entry(send);
    }))
    .expect_err("an id of another flow must be refused");
    assert_eq!(
        refused.downcast_ref::<String>().map(String::as_str),
        Some(
            format!(
                "{send:?} was returned by another flow's `add`; connect only ids this flow returned"
            )
            .as_str()
        )
    );
    // The refused id was not made an entry: `send` is still unreachable in `other`.
    assert!(other.validate().is_err());
}

#[test]
fn a_nested_flow_may_declare_entry_points_and_be_resumed_there_by_path() {
    let (mut inner, send) = paused();
    let mut unreachable = Flow::new();
    unreachable.add("review", paused().0);
    let err = unreachable.validate().unwrap_err();
    assert!(matches!(&err, FlowError::InvalidConfig { node, .. } if node == "review"), "{err}");

    inner.entry(send);
    let mut flow = Flow::new();
    let review = flow.add("review", inner);
    let after = flow.add(
        "after",
        node_fn(|log: &mut Vec<String>, _| {
            log.push("after".into());
            Ok(Action::DEFAULT)
        }),
    );
    flow.then(review, after);
    flow.end(review, "ask"); // the pause inside ends the run
    flow.validate().unwrap();
    let mut log = Vec::new();
    assert_eq!(smol::block_on(flow.run(&mut log)).unwrap(), "ask");
    assert_eq!(log, ["draft"]);
    let mut log = Vec::new();
    let options = RunOptions::new().start_at("review/send");
    assert_eq!(smol::block_on(flow.run_with(&mut log, options)).unwrap(), "default");
    assert_eq!(log, ["send", "log", "after"]);
}
