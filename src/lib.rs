//! A minimalist node-graph framework: small steps wired into graphs that branch, loop, nest,
//! fan out, retry and fall back — on any async executor.
//!
//! You write **nodes**. Each node runs in three phases: `prep` reads what it needs from the
//! **shared store** (your own struct, borrowed by the run), `exec` does the slow or flaky work
//! (a model call, a search, a download) and is retried when it fails, and `post` writes the
//! results back and returns an **action**, a string such as `"search"` or `"done"`. You wire
//! nodes into a [`Flow`] by saying which action leads where; a run starts at the first node
//! and follows the actions until a node ends it. Flows are nodes too, so they nest, and batch
//! flavours run a step once per item, one after another or concurrently.
//!
//! ```
//! use miniflow::{Action, Ctx, Flow, Node, Params, Result, node_fn};
//!
//! #[derive(Default)]
//! struct Chat { question: String, answer: String }
//!
//! struct Answer;
//!
//! impl Node<Chat> for Answer {
//!     type Prep = String;
//!     type Output = String;
//!
//!     fn prep(&self, chat: &Chat, _: &Params) -> Result<String> {
//!         Ok(chat.question.clone()) // read the store
//!     }
//!     async fn exec(&self, question: &String, _: Ctx<'_>) -> Result<String> {
//!         Ok(format!("{question:?} has {} letters", question.len())) // call a model here
//!     }
//!     fn post(&self, chat: &mut Chat, _: String, answer: String) -> Result<Action> {
//!         chat.answer = answer; // write the store, pick the next edge
//!         Ok(Action::DEFAULT)
//!     }
//! }
//!
//! # fn main() -> miniflow::Result<()> {
//! let mut flow = Flow::new();
//! let answer = flow.add("answer", Answer);
//! let check = flow.add("check", node_fn(|chat: &mut Chat, _| {
//!     Ok(if chat.answer.is_empty() { "again" } else { "done" }.into())
//! }));
//! flow.then(answer, check);
//! flow.edge(check, "again", answer);
//! flow.end(check, "done");
//!
//! let mut chat = Chat { question: "miniflow".into(), ..Chat::default() };
//! smol::block_on(flow.run(&mut chat))?; // or tokio, or futures::executor::block_on
//! assert_eq!(chat.answer, r#""miniflow" has 8 letters"#);
//! # Ok(())
//! # }
//! ```
//!
//! # Batches
//!
//! A [`BatchNode`] returns a list of items from `prep`; its `exec` runs once per item, each
//! with its own retries, and `post` receives all outputs in input order:
//!
//! ```
//! use miniflow::{Action, BatchNode, Ctx, Flow, Params, Result};
//!
//! struct Store { texts: Vec<String>, lengths: Vec<usize> }
//! struct Measure;
//!
//! impl BatchNode<Store> for Measure {
//!     type Item = String;
//!     type Output = usize;
//!     fn prep(&self, store: &Store, _: &Params) -> Result<Vec<String>> {
//!         Ok(store.texts.clone())
//!     }
//!     async fn exec(&self, text: &String, _: Ctx<'_>) -> Result<usize> {
//!         Ok(text.chars().count())
//!     }
//!     fn post(&self, store: &mut Store, _: &Params, _: Vec<String>, lengths: Vec<usize>) -> Result<Action> {
//!         store.lengths = lengths;
//!         Ok(Action::DEFAULT)
//!     }
//! }
//!
//! let mut flow = Flow::new();
//! flow.add("measure", Measure);
//! let mut store = Store { texts: vec!["héllo".into(), "wörld!".into()], lengths: vec![] };
//! smol::block_on(flow.run(&mut store))?;
//! assert_eq!(store.lengths, [5, 6]);
//! # Ok::<(), miniflow::Error>(())
//! ```
//!
//! The same node runs its items **concurrently** when it says how many may be in flight —
//! for example `fn max_in_flight(&self) -> usize { 8 }` — and still returns the outputs in
//! input order. To run a whole flow per item, wrap it in a [`BatchFlow`] (one sub-run after
//! another) or a [`BatchAsyncFlow`] (sub-runs overlapping); each sub-run gets its own
//! [`Params`]:
//!
//! ```
//! use miniflow::{Action, BatchAsyncFlow, Flow, Params, node_fn};
//!
//! // The inner flow greets one person, named by the param "who".
//! let mut greet = Flow::new();
//! greet.add("greet", node_fn(|log: &mut Vec<String>, p| {
//!     log.push(format!("hello, {}", p.str("who")?));
//!     Ok(Action::DEFAULT)
//! }));
//!
//! // Run it once per name, at most two at a time.
//! let everyone = BatchAsyncFlow::new(greet, |_: &Vec<String>, _: &Params| {
//!     Ok(["ada", "bob", "cy"].map(|who| Params::new().with("who", who)).to_vec())
//! })
//! .max_in_flight(2);
//!
//! let mut flow = Flow::new();
//! flow.add("everyone", everyone);
//! let mut log = Vec::new();
//! smol::block_on(flow.run(&mut log))?;
//! log.sort();
//! assert_eq!(log, ["hello, ada", "hello, bob", "hello, cy"]);
//! # Ok::<(), miniflow::Error>(())
//! ```
//!
//! # Beyond the basics
//!
//! Everything here is opt-in and costs nothing when unused: a run without options does the
//! same work per node as one in a crate without these features.
//!
//! ## Watching a run
//!
//! Give a run an [`Observer`] with [`RunOptions::observer`] and it sees every [`Event`]: the run's
//! start and end, each node's start and end (with its path, attempts, action and duration),
//! each retry with its error, fallbacks, and what a node's `exec` reports with
//! [`Ctx::emit`] — the tokens of a streamed model answer, say. The observer belongs to the
//! run, not the flow, so each request of a server can have its own. A closure is an
//! observer; `examples/support/trace.rs` is a ready-made one to copy, which times every node
//! and prints a table (node, runs, attempts, start, end, busy, mean, max):
//!
//! ```
//! use miniflow::{Action, Event, Flow, RunOptions, node_fn};
//!
//! let mut flow = Flow::new();
//! flow.add("greet", node_fn(|log: &mut Vec<String>, _| {
//!     log.push("hello".into());
//!     Ok(Action::DEFAULT)
//! }));
//!
//! let print = |event: &Event<'_>| eprintln!("{event}"); // one line per event
//! smol::block_on(flow.run_with(&mut Vec::new(), RunOptions::new().observer(&print)))?;
//! # Ok::<(), miniflow::Error>(())
//! ```
//!
//! Every run ends with exactly one terminal event: `Finished`, `Failed`, or `Cancelled` when
//! its future is dropped. The [`Observer`] docs show how to turn the events into a `Stream`,
//! and how a server that streams several runs into one sink tells them apart: each run has
//! its own observer, so a closure that captures the run's id (and reads the clock, if it
//! wants times) labels every event it forwards; the crate adds nothing to events a run
//! without an observer would pay for.
//!
//! ## Bounding a run
//!
//! An agent whose model never says "done" loops forever. [`RunOptions::max_steps`] turns that
//! into a [`FlowError::StepLimit`] that lists the last nodes run — where it looped. Per node,
//! [`Node::timeout`] limits each attempt of `exec`; a timeout is a failed attempt like any
//! other (retried, then handed to `exec_fallback` as a [`TimedOut`] error). And
//! [`Node::wait`] decides, per error, whether to retry and after how long: at once, after a
//! fixed pause, after a capped exponential [`Backoff`] with jitter, after the pause a rate
//! limit's error asks for — or not at all, for an error that will not go away.
//!
//! For a deadline on more than one attempt, [`Flow::timeout`] limits each whole visit of a
//! node — a nested agent's flow with all its nodes, a batch flow, a parallel node — and
//! [`RunOptions::timeout`] the whole run; either fails the run with [`FlowError::Timeout`]
//! naming what ran out of time. What runs inside stays in the same run, so the step limit,
//! the observer and cancellation keep working there: a nested agent cannot spend past the
//! run's step limit while its deadline runs.
//!
//! ```
//! use std::time::Duration;
//! use miniflow::{Action, Backoff, Ctx, Error, Node, Params, Result};
//!
//! struct AskModel;
//!
//! impl Node<String> for AskModel {
//!     type Prep = String;
//!     type Output = String;
//!     fn prep(&self, question: &String, _: &Params) -> Result<String> {
//!         Ok(question.clone())
//!     }
//!     async fn exec(&self, question: &String, _: Ctx<'_>) -> Result<String> {
//!         Ok(format!("an answer to {question}")) // an HTTP call in real life
//!     }
//!     fn post(&self, out: &mut String, _: String, answer: String) -> Result<Action> {
//!         *out = answer;
//!         Ok(Action::DEFAULT)
//!     }
//!     fn max_retries(&self) -> usize {
//!         4 // one try and three retries...
//!     }
//!     fn wait(&self, _error: &Error, cx: Ctx<'_>) -> Option<Duration> {
//!         // ...after about 0.5 s, 1 s, 2 s: backing off from a busy server, with jitter
//!         let backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(8));
//!         Some(backoff.jitter(0.5).delay(cx.attempt()))
//!     }
//!     fn timeout(&self) -> Option<Duration> {
//!         Some(Duration::from_secs(60)) // each try gets a minute
//!     }
//! }
//! ```
//!
//! ## Resume
//!
//! [`RunOptions::start_at`] starts a run at a node other than the start node: a node of the
//! outermost flow (`"review"`), or one inside a nested flow, by its path (`"checkout/receipt"`:
//! the outer flow starts at its nested flow `checkout`, which starts at `receipt`; when it
//! ends, the outer flow goes on as usual). That is all durable execution needs, with no
//! serialization in the crate:
//!
//! - **After a crash.** [`RunOptions::checkpoint`] calls you after every node with the store
//!   and the path of the node that runs next — inside nested flows too, so a resumed run
//!   re-runs nothing that had finished. Save both in one write (one database transaction:
//!   `examples/durable.rs` uses SQLite); if the save fails, return the error and the run
//!   stops. After a crash, load them and run again with `start_at(next)`: the run goes on
//!   where it stopped, and reaches the same end as a run that never stopped. When a run
//!   ends, discard its last save: it names a node that already ran.
//! - **Inside a batch flow or a parallel node**, no checkpoint is taken: its sub-runs run
//!   concurrently or in any number, and there is no one "next node" to name. A run resumes
//!   such a node as a whole, at the node itself, and all its sub-runs run again; to skip the
//!   ones that had finished, let its prep leave out the items the store already has results
//!   for.
//! - **Waiting for a person.** Let a node end the run with an action such as
//!   `"ask_human"` (declared with [`Flow::end`]); the app shows the question, and when the
//!   answer comes — a minute or a week later — writes it into the store and resumes at that
//!   node, which now finds its answer and goes on. The run's result is only the action, so
//!   where several nodes can pause, give each its own action (`"ask_legal"`,
//!   `"ask_manager"`) or let the pausing node note its name in the store.
//! - **Side effects run once.** A resumed run runs its first node again from its `prep`. So
//!   the node that pauses (or the one a crash interrupts) should not be the one that sends
//!   the email or makes the payment: give the side effect its own node before the pause,
//!   and the checkpoint after it names the node that waits, as below, where the notice is
//!   sent once however many times the review is resumed.
//!
//! ```
//! use miniflow::{Action, Flow, RunOptions, node_fn};
//!
//! #[derive(Default)]
//! struct Post { text: String, notices: u32, approved: Option<bool>, published: bool }
//!
//! let mut flow = Flow::new();
//! let draft = flow.add("draft", node_fn(|p: &mut Post, _| {
//!     p.text = "Hello, world".into();
//!     Ok(Action::DEFAULT)
//! }));
//! let notify = flow.add("notify", node_fn(|p: &mut Post, _| {
//!     p.notices += 1; // in real life: email the reviewer, once
//!     Ok(Action::DEFAULT)
//! }));
//! let review = flow.add("review", node_fn(|p: &mut Post, _| Ok(match p.approved {
//!     None => "ask_human".into(), // pause: the run ends here
//!     Some(true) => "approved".into(),
//!     Some(false) => "rejected".into(),
//! })));
//! let publish = flow.add("publish", node_fn(|p: &mut Post, _| {
//!     p.published = true;
//!     Ok(Action::DEFAULT)
//! }));
//! flow.chain(&[draft, notify, review]);
//! flow.end(review, "ask_human");
//! flow.edge(review, "approved", publish);
//! flow.edge(review, "rejected", draft);
//!
//! let mut post = Post::default();
//! assert_eq!(smol::block_on(flow.run(&mut post))?, "ask_human");
//! // Asked again before the reviewer answers: the run pauses again, and sends nothing.
//! let resume = || RunOptions::new().start_at("review");
//! assert_eq!(smol::block_on(flow.run_with(&mut post, resume()))?, "ask_human");
//! post.approved = Some(true); // the answer arrives
//! smol::block_on(flow.run_with(&mut post, resume()))?;
//! assert!(post.published);
//! assert_eq!(post.notices, 1);
//! # Ok::<(), miniflow::Error>(())
//! ```
//!
//! ## Parallel branches
//!
//! A [`Parallel`] node runs several different nodes or flows at once on the same store and
//! goes on when all have finished — for steps that do not need each other's results. Like
//! everything concurrent here, the branches are polled in the run's own task.
//!
//! Fan-outs fail fast by default: the first failed sub-run or branch fails the batch flow or
//! parallel node. Where one failure out of a thousand should not lose the other results,
//! give it a post with `post_outcomes` ([`BatchFlow::post_outcomes`],
//! [`BatchAsyncFlow::post_outcomes`], [`Parallel::post_outcomes`]): every sub-run runs to its
//! end, and the post gets each one's action or error, in input order, and decides.
//!
//! ## Checking and drawing a flow
//!
//! Every run checks its whole tree of flows before its first node (and [`Flow::validate`] does
//! the same without running): a node that no edge reaches from the start is an error that
//! says how to connect it, and so is a flow without nodes. A node's own settings (such as
//! `max_retries()`) are checked when the node is reached, before its `prep`. Edges into
//! another flow's nodes, and a second edge for an action, panic where they are added.
//! [`Flow::to_mermaid`] writes the graph as Mermaid text — nested flows as subgraphs, edges
//! labelled with their actions — to paste into a README, where GitHub draws it.
//!
//! # Concepts
//!
//! - **Shared store**: the one value of your type `S` a run borrows (`flow.run(&mut store)`).
//!   Nodes communicate through it: earlier nodes' `post`s write what later nodes' `prep`s read.
//!   It is the only generic parameter you ever name.
//! - **Params**: a small immutable map ([`Params`]) a parent passes down to the nodes it runs:
//!   batch flows give each sub-run its own (`"class" = "4b"`), merged over what they inherited.
//!   Store = what the run has produced; params = which piece of work this is.
//! - **Node**: a [`Node`] (or a [`BatchNode`], or a quick [`exec_fn`] or [`node_fn`]), added to
//!   a flow under a name (an `Arc` of a node, to keep a handle on it). Its phases: [`prep`](Node::prep) (sync, `&S`), [`exec`](Node::exec) (async, retried,
//!   no store), [`post`](Node::post) (sync, `&mut S`, returns the action).
//! - **Action**: the [`Action`] a `post` returns. The flow follows the edge for it; "default"
//!   is what [`Flow::then`] connects. An action without an edge is an error
//!   ([`FlowError::UnknownAction`]) unless it was declared an end with [`Flow::end`], or the
//!   node has no edges at all.
//! - **Retries and fallback**: [`max_retries`](Node::max_retries) is the total number of
//!   attempts (default 1), [`wait`](Node::wait) the pause between them; when all fail,
//!   [`exec_fallback`](Node::exec_fallback) may turn the error into a value.
//! - **Flow**: the graph ([`Flow`]). It is a node itself: nest it, and its last action routes
//!   the outer flow. [`BatchFlow`] and [`BatchAsyncFlow`] run a flow once per params set.
//! - **Errors**: user code returns any error ([`Error`], a boxed `dyn Error`, so `?` works on
//!   anything); a run returns [`FlowError`], which names the failing node by its path
//!   ([`NodePath`]: `"outer/inner"`, `"translate[3]"`) and keeps your error as its `source()`.
//! - **Run options**: [`Flow::run`] runs with none; [`Flow::run_with`] takes [`RunOptions`]:
//!   params, an observer, a step limit, a checkpoint hook, a node to start at.
//!
//! # Coming from PocketFlow
//!
//! miniflow keeps PocketFlow's vocabulary (shared store, params, `prep`/`exec`/`post`,
//! actions, `max_retries`, `wait`, `exec_fallback`). What changes is that every `exec` is
//! async, `prep` and `post` are synchronous (see the FAQ), and mistakes PocketFlow only warns
//! about are errors. The map:
//!
//! | PocketFlow | miniflow |
//! |---|---|
//! | `Node` | [`Node`]: `prep(&S, &Params)`, `async exec(&Prep, Ctx)`, `post(&mut S, Prep, Output)` |
//! | `AsyncNode` (`prep_async`, `exec_async`, `post_async`) | [`Node`] too: every `exec` is async. A quick one from closures: [`exec_fn`]; a synchronous glue step: [`node_fn`] |
//! | `BatchNode`, `AsyncBatchNode` | [`BatchNode`] (items one after another, the default) |
//! | `AsyncParallelBatchNode` (all items at once) | [`BatchNode`] whose [`max_in_flight`](BatchNode::max_in_flight) is `usize::MAX` (or a limit above 1) |
//! | `Flow(start=a)`, `AsyncFlow` | [`Flow`]: the first node added is the start ([`Flow::set_start`] moves it); every flow is async |
//! | `a >> b`, `a >> b >> c` | `flow.then(a, b)`, `flow.chain(&[a, b, c])` |
//! | `a - "action" >> b` | `flow.edge(a, "action", b)`; an action that ends the flow: `flow.end(a, "action")` |
//! | `BatchFlow` | [`BatchFlow`] |
//! | a `Flow` subclass with its own `prep`/`post` | for a batch flow, the closures of [`BatchFlow::new`] and [`BatchFlow::post`]; for a plain flow, a node before it and a node after it, in the outer flow |
//! | `AsyncBatchFlow` (sub-runs one after another) | [`BatchFlow`], **not** [`BatchAsyncFlow`] |
//! | `AsyncParallelBatchFlow` (sub-runs at once) | [`BatchAsyncFlow`], with [`max_in_flight`](BatchAsyncFlow::max_in_flight) to bound them |
//! | `node.run(shared)` | `Flow::of(node).run(&mut shared).await` ([`Flow::of`]) |
//! | `max_retries`, `wait` | [`Node::max_retries`] (the same meaning: attempts in all); [`Node::wait`] decides per error: `Some(pause)` retries, `None` gives up |
//! | `self.cur_retry` | [`Ctx::attempt`] in `exec` and `exec_fallback` (0 for the first attempt) |
//! | `exec_fallback(prep_res, exc)` | [`Node::exec_fallback`]: its `Ok` value goes to `post` as `exec`'s would |
//! | `self.params`, `flow.set_params(...)` | the `&Params` `prep` gets (and a batch node's `post`): `exec` and a node's `post` see them only through what `prep` returns; [`RunOptions::params`] sets them for a run; a batch flow's prep returns one [`Params`] per sub-run. Values are strings, numbers and bools: a list goes in the store |
//! | `self.params.get("k", 1)` | `params.get_or("k", 1)?` ([`Params::get_or`]) |
//! | `post` returning `None` | `Ok(Action::DEFAULT)` |
//! | a write to `shared` in `exec` | not possible: `exec` gets no store. Return the value and write it in `post`, so that a retried or concurrent `exec` never leaves the store half written |
//! | an action with no successor (a warning) | the end of the flow if the node has no edges at all; else [`FlowError::UnknownAction`], unless declared with [`Flow::end`] |
//! | the `shared` dict | your own struct `S`, borrowed by the run |
//!
//! # Executor independence
//!
//! miniflow has no runtime and never spawns. A run is an ordinary future: await it in tokio,
//! smol, async-std, a GUI event loop, or drive it with `futures::executor::block_on` from a
//! plain `main`. "Concurrent" batch items and sub-runs are futures polled together inside the
//! run's own task, so they overlap whenever an `exec` awaits I/O or a timer; CPU-bound `exec`s
//! still run one at a time (hand those to a thread pool yourself, for example with
//! `smol::unblock` or `tokio::task::spawn_blocking`, and await the result in `exec`).
//!
//! A run also never keeps its thread to itself: every 256th pass of each of its loops — a
//! flow's node runs, a batch node's items, a batch flow's sub-runs, finished concurrent
//! items — it gives its executor a turn (it wakes itself and returns `Pending` once, as the
//! runtimes' `yield_now` does), always between two passes, where every `post` so far is
//! whole. So a loop of nodes that never await (a routing bug, or `exec`s answered from a
//! cache) can still be cancelled by a timeout, and a heartbeat or any other task on the same
//! thread keeps getting turns. The turns cost a plain chain of nodes about 1.5 % more
//! instructions per node run, and nothing when a node awaits anyway.
//!
//! Each loop counts its own passes, so loops nested in loops multiply: a flow that loops over
//! a nested flow of 5 nodes turns every 256 visits of it, that is every 1,280 node runs; loops
//! nested three deep, each ending within 255 passes, run up to 255³ units between two turns.
//! And a concurrent batch with no in-flight limit sets up all its items or sub-runs in its
//! first poll (a million one-node sub-runs take about half a second of it in a release
//! build) before the first turn: give a large concurrent batch a
//! [`max_in_flight`](BatchAsyncFlow::max_in_flight). (Pacing the start of concurrent jobs
//! was measured: 8–10 % more instructions per concurrent item, so it was left out.)
//!
//! The one timer the crate uses — for the pause between attempts and for timeouts — is
//! smol's `async-io` timer, which works under any executor (it drives itself, on a thread of
//! its own, when no `async-io` reactor is running).
//!
//! Run futures are `Send` whenever the store is, so they can be spawned on a multi-threaded
//! runtime, and a built flow is `Send + Sync`: share one `Arc<Flow<S>>` between many concurrent
//! runs, each with its own store. The test suite runs the same flows under `smol::block_on`,
//! `futures::executor::block_on`, tokio's current-thread and multi-thread runtimes, and a
//! hand-written poll loop with a no-op waker.
//!
//! # Concurrent updates to the store
//!
//! Concurrent sub-runs ([`BatchAsyncFlow`]) and branches ([`Parallel`]) never see the store
//! half written: each `prep` and
//! `post` has it to itself. But between a sub-run's `prep` and its `post` the others run, so
//! a value read in `prep` may be stale by the time `post` writes. **Read-modify-write inside
//! `post`**, never across phases. Wrong: `prep` reads a counter and `post` writes it back plus
//! one — every sub-run read the same value, and all but one update are lost. Right: `post`
//! adds to the store as it is when `post` runs.
//!
//! ```
//! use miniflow::{Action, BatchAsyncFlow, Ctx, Flow, Node, Params, Result};
//!
//! /// Counts one done job: `Wrong` carries the count over from `prep`, `Right` does not.
//! struct Wrong;
//! struct Right;
//!
//! impl Node<u32> for Wrong {
//!     type Prep = u32;
//!     type Output = ();
//!     fn prep(&self, done: &u32, _: &Params) -> Result<u32> { Ok(*done) }
//!     async fn exec(&self, _: &u32, _: Ctx<'_>) -> Result<()> {
//!         smol::future::yield_now().await; // any real work awaits: the siblings run meanwhile
//!         Ok(())
//!     }
//!     fn post(&self, done: &mut u32, seen: u32, _: ()) -> Result<Action> {
//!         *done = seen + 1; // stale: overwrites what the siblings' posts wrote
//!         Ok(Action::DEFAULT)
//!     }
//! }
//!
//! impl Node<u32> for Right {
//!     type Prep = ();
//!     type Output = ();
//!     fn prep(&self, _: &u32, _: &Params) -> Result<()> { Ok(()) }
//!     async fn exec(&self, _: &(), _: Ctx<'_>) -> Result<()> {
//!         smol::future::yield_now().await;
//!         Ok(())
//!     }
//!     fn post(&self, done: &mut u32, _: (), _: ()) -> Result<Action> {
//!         *done += 1; // read and written in one synchronous phase
//!         Ok(Action::DEFAULT)
//!     }
//! }
//!
//! let ten_jobs = |_: &u32, _: &Params| Ok(vec![Params::new(); 10]);
//! let (mut wrong, mut right) = (Flow::new(), Flow::new());
//! wrong.add("jobs", BatchAsyncFlow::new({ let mut f = Flow::new(); f.add("job", Wrong); f }, ten_jobs));
//! right.add("jobs", BatchAsyncFlow::new({ let mut f = Flow::new(); f.add("job", Right); f }, ten_jobs));
//!
//! let (mut lost, mut counted) = (0, 0);
//! smol::block_on(wrong.run(&mut lost))?;
//! smol::block_on(right.run(&mut counted))?;
//! assert_eq!((lost, counted), (1, 10)); // nine updates lost, none lost
//! # Ok::<(), miniflow::Error>(())
//! ```
//!
//! # Cancellation
//!
//! To cancel a run, drop its future (or let a timeout combinator drop it). The run stops at
//! the `.await` it was suspended at — inside some `exec`, a `wait` between attempts, or a turn
//! it gave its executor between two units of work (see
//! [Executor independence](#executor-independence)), because nothing else awaits — and nothing
//! keeps running in the background, because nothing was spawned. Even a loop of nodes that
//! never await gets there: it returns to its executor every 256 passes of its loop, so a
//! timeout around it fires.
//!
//! What the store holds afterwards: the writes of every `post` that finished, and nothing of
//! the node that was interrupted (its `exec` result is lost; its `post` never started). `prep`
//! and `post` are synchronous, so no `post` is ever half applied. In a concurrent batch node,
//! the whole batch is lost (its single `post` had not run); in a [`BatchAsyncFlow`], the
//! sub-runs' finished `post`s stay, the others' are absent. A dropped run can be followed by a
//! new run of the same flow at once.
//!
//! The same holds for failure: when a concurrent sibling fails, the others are dropped at
//! their current `.await` (fail-fast), and what their `post`s already wrote stays. And for
//! time limits: a visit past its [`Flow::timeout`], or a run past its
//! [`RunOptions::timeout`], is dropped the same way, and the run returns
//! [`FlowError::Timeout`].
//!
//! Blocking code inside an `exec` (a synchronous HTTP call, a long computation) cannot be
//! interrupted: the drop takes effect when it returns control.
//!
//! # How it works
//!
//! Every node added to a flow is stored as one of three things: a node or batch node behind a
//! type-erased adapter, a nested [`Flow`], or a fan-out ([`BatchFlow`], [`BatchAsyncFlow`]
//! and [`Parallel`] are one engine: prep, then runs of flows one after another or up to a
//! limit at once, then post; a parallel node's branches are flows of one node). A run is a
//! loop: visit the current node, look up the edge for the action its `post` returned, go on.
//! Validation and diagrams walk the same structure. Nothing is copied per step: nodes are
//! shared by `&self`, and what a run needs lives in the run.
//!
//! Where a step's cost goes, and the structures that keep it small (instructions counted by
//! `benches/instructions.py` under valgrind, rustc 1.95.0; a chain node run costs about 374
//! instructions, an item of a sequential batch node about 58, a `BatchFlow` sub-run of a
//! one-node flow about 763):
//!
//! - **One boxed future per node run**, about 40 % of a chain step: a node's visit (prep,
//!   `exec` with its retries, post) is one future behind a box, written straight into its
//!   allocation (`Box::write`) rather than built on the stack and copied, which saved a
//!   quarter of a trivial node run. It is the only heap allocation of a plain node run.
//! - **The store without a lock** while a run is sequential: `prep` and `post` get the `&mut`
//!   the run borrowed. Only concurrent sub-runs share it through a mutex, taken for one
//!   synchronous `prep` or `post` at a time. With a lock throughout, a chain step cost 45 %
//!   more.
//! - **Sequential loops awaited in place**: a batch node's items and a batch flow's sub-runs
//!   are awaited where their futures are built, not moved into a list of jobs first (126 %
//!   more per batch item otherwise).
//! - **The first attempt awaited in place**, with retries, pauses, timeouts and the fallback
//!   in a future boxed apart that only a failure (or a timeout) builds. A plain `async fn`
//!   retry loop cost a chain step 18 % more, a batch item 111 %, and the fanout's memory
//!   50 %.
//! - **Params of one literal key held inline**, and params borrowed, not merged, when a
//!   sub-run's or its parent's side is empty: a batch flow's prep that builds a hundred
//!   thousand one-key params allocates nothing for them (57 % more per sub-run with an
//!   allocation; the borrow saves a tenth more).
//! - **Actions compared inline**: an action made from a literal is compared by address and
//!   length before its bytes, and the comparison is inlined into the edge lookup (a call to
//!   `bcmp` per lookup made a chain 1.4–1.8× slower).
//! - **What is unused costs nothing measurable**: no observer, no step limit, no timeout
//!   each cost a branch. The turn a loop gives its executor every 256 passes is a counter
//!   (1.5 % of a chain step); an observer adds two events, two clock reads and one more box
//!   per node run.
//!
//! # Non-goals
//!
//! miniflow is the graph and the loop around it, and stays small enough to read in an
//! afternoon. It does not include, and examples show how to plug in: LLM clients, prompt
//! templates, vector stores, storage backends, a runtime, a server, a tracing exporter, image
//! rendering, or graph-wide "superstep" scheduling with per-key reducers.
//!
//! # FAQ
//!
//! **Why are `prep` and `post` synchronous?** So that touching the store can never be
//! interrupted or interleaved. If `post` could await, a cancellation or a concurrent sibling
//! could observe the store half updated, and a lock around it would be held across `.await`
//! (the classic async deadlock). With synchronous `prep`/`post`, every store update is atomic
//! with respect to the run, concurrent sub-runs can share one store without you writing a
//! lock, and `exec` — the part that waits — is free to be retried, timed out and run in
//! parallel.
//!
//! **Then how do I do async I/O around the store?** In `exec`. Let `prep` hand out what the I/O
//! needs — a copy of the input, an `Arc` of a client, a channel's `Sender` or `Receiver` kept
//! in the store — and await it in `exec`; `post` stores the result. For example, a node that
//! waits for a human's reply reads an `async_channel::Receiver` clone from the store in `prep`,
//! awaits `recv()` in `exec`, and writes the reply in `post`.
//!
//! **How do I share a client (HTTP, database) between nodes?** Put it in the node (`struct
//! Ask { client: Arc<Client> }`): nodes are shared by every run of the flow, so it must be
//! `Send + Sync`, which clients are designed to be.
//!
//! **Why does `exec` borrow what `prep` returned?** So each retry gets the same input without
//! cloning it, and `post` gets it back by value afterwards.
//!
//! **Why must a node with edges have an edge for every action it returns?** Because a typo in
//! an action name otherwise ends the flow silently — the most common bug in graphs built from
//! strings. Declare intended endings with [`Flow::end`].
//!
//! **Why is `max_retries` the total number of attempts?** It is the name and meaning Python's
//! PocketFlow gives it, which many users know; 1 means "try once".
//!
//! **Can `post` see how many attempts `exec` took?** Not as an argument: `post` runs once,
//! after `exec` succeeded or `exec_fallback` stood in, and most nodes never ask. The count is
//! in [`Event::NodeEnd`] for observers and in [`FlowError::NodeFailed`] for errors. A node
//! that routes on it returns it from `exec` with its output: `Ok((reply, cx.attempt() + 1))`.
//!
//! **Can nodes hold state?** Yes, but a flow is shared by every run (`run` takes `&self`), so
//! per-run state belongs in the store, and a node's own state must be thread-safe (an atomic
//! counter, a `Mutex` used only inside a synchronous phase).
//!
//! **What if my store borrows data (`struct Store<'a>`)?** Nodes and flat flows work with any
//! `Send` store; nesting a flow inside another needs `S: 'static` (a flow is stored as a boxed
//! node), so own the data or put it behind an `Arc`.
//!
//! **What happens if a node panics?** The panic unwinds out of the run future, like any panic
//! in a future. Nothing is caught or hidden; the flow itself is left unchanged and can run
//! again. An observer sees the run end with [`Event::Cancelled`].
//!
//! **Why is there no default step limit?** A flow is a general graph, and a loop over a work
//! queue or a long batch has no natural bound: any default would be an arbitrary failure in
//! production. Set [`RunOptions::max_steps`] wherever a loop is driven by a model's decisions.
//!
//! **Can I resume inside a nested flow?** Yes: [`RunOptions::start_at`] takes a path
//! (`"checkout/receipt"`), and the checkpoint hook names the next node by its path, nested
//! flows included. Batch flows and parallel nodes resume as a whole; see [Resume](#resume).
//!
//! **Why are events not stamped with a run id and a time?** Because the observer already
//! knows both. It is given per run, and `event` is called synchronously as each thing
//! happens, so a closure that captures the run's id and reads `Instant::now()` labels every
//! event exactly; stamping them in the crate would cost every observed run a clock read per
//! event whether it wanted one or not. See [`Observer`].

mod action;
mod batch;
mod error;
mod fan;
mod flow;
mod mermaid;
mod node;
mod observe;
mod params;
mod retry;
mod run;

pub use action::Action;
pub use batch::BatchNode;
pub use error::{Error, FlowError, Phase, Result};
pub use fan::{BatchAsyncFlow, BatchFlow, Parallel};
pub use flow::{Flow, NodeId, RunOptions};
pub use node::{Ctx, ExecFn, Node, NodeFn, exec_fn, node_fn};
pub use observe::{Event, Observer};
pub use params::{FromValue, Params, Value};
pub use retry::{Backoff, MAX_ATTEMPTS, TimedOut, sleep};
pub use run::{IntoNode, MAX_DEPTH, NodePath};

// The README's examples are compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
