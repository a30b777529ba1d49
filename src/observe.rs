//! Watching a run: the [`Observer`] hook, the [`Event`]s it receives, and [`Trace`], a
//! ready-made observer that times every node.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::causes;
use crate::{Action, Error, FlowError, NodePath};

/// A hook that sees everything one run does, given to
/// [`RunOptions::observer`](crate::RunOptions::observer).
///
/// It is attached to a run, not to a flow, so a server running one shared flow can give each
/// request its own observer. Nested flows, batch flows, parallel branches and concurrent
/// sub-runs all report to the run's one observer; each [`Event`] names its node by its
/// [`NodePath`], which tells them apart (`"fan[2]/fetch"`).
///
/// `event` is called synchronously, from inside the run, in the order things happen; keep it
/// quick (record, print, send on a channel) — the run waits for it. It must not panic on
/// [`Event::Cancelled`]: when a node panics, that event is sent while the panic unwinds, and
/// a second panic aborts the process. A run future dropped before it was first polled never
/// started, and reports nothing. A closure `Fn(&Event<'_>) + Sync` is an observer:
///
/// ```
/// use miniflow::{Action, Event, Flow, RunOptions, node_fn};
///
/// let mut flow = Flow::new();
/// flow.add("hello", node_fn(|n: &mut u32, _| { *n += 1; Ok(Action::DEFAULT) }));
///
/// let print = |event: &Event<'_>| println!("{event}");
/// smol::block_on(flow.run_with(&mut 0, RunOptions::new().observer(&print)))?;
/// // run started
/// // `hello` started
/// // `hello` ended with "default" after 1 attempt in 1.2µs
/// // run finished with "default"
/// # Ok::<(), miniflow::Error>(())
/// ```
///
/// # As a `Stream`
///
/// To consume events asynchronously (say, to forward a model's tokens to a web socket while
/// the run goes on), send them down a channel and read the receiver as a `Stream`. Events
/// borrow from the run, so send what you need of each; the terminal event tells the reader
/// the run is over:
///
/// ```
/// use futures::{StreamExt, channel::mpsc, future};
/// use miniflow::{Action, Ctx, Event, Flow, Node, Params, Result, RunOptions};
///
/// struct Stream;
/// impl Node<String> for Stream {
///     type Prep = ();
///     type Output = String;
///     fn prep(&self, _: &String, _: &Params) -> Result<()> { Ok(()) }
///     async fn exec(&self, _: &(), cx: Ctx<'_>) -> Result<String> {
///         for token in ["Hel", "lo"] {
///             cx.emit("token", token); // a model's streamed answer, piece by piece
///         }
///         Ok("Hello".into())
///     }
///     fn post(&self, out: &mut String, _: (), answer: String) -> Result<Action> {
///         *out = answer;
///         Ok(Action::DEFAULT)
///     }
/// }
///
/// let mut flow = Flow::new();
/// flow.add("answer", Stream);
///
/// let (tx, rx) = mpsc::unbounded();
/// let send = move |event: &Event<'_>| {
///     let text = match event {
///         Event::Custom { data, .. } => Some(data.to_string()),
///         Event::Finished { .. } | Event::Failed { .. } | Event::Cancelled => None,
///         _ => return,
///     };
///     let _ = tx.unbounded_send(text); // `None`: the run is over
/// };
/// let tokens = rx.take_while(|t| future::ready(t.is_some())).filter_map(future::ready);
///
/// let mut answer = String::new();
/// let (run, tokens) = smol::block_on(future::join(
///     flow.run_with(&mut answer, RunOptions::new().observer(&send)),
///     tokens.collect::<Vec<String>>(),
/// ));
/// run?;
/// assert_eq!(tokens, ["Hel", "lo"]);
/// # Ok::<(), miniflow::Error>(())
/// ```
pub trait Observer: Sync {
    /// Receives one event of the run.
    fn event(&self, event: &Event<'_>);
}

impl<F: Fn(&Event<'_>) + Sync> Observer for F {
    fn event(&self, event: &Event<'_>) {
        self(event)
    }
}

/// Something that happened in a run, as an [`Observer`] sees it.
///
/// A run reports, in order: [`RunStart`](Event::RunStart); for every node run a
/// [`NodeStart`](Event::NodeStart), then any [`Retry`](Event::Retry),
/// [`Fallback`](Event::Fallback) and [`Custom`](Event::Custom) events of its `exec`, then its
/// [`NodeEnd`](Event::NodeEnd) (a nested flow's nodes report between the flow's own start and
/// end); and exactly one terminal event — [`Finished`](Event::Finished),
/// [`Failed`](Event::Failed) or [`Cancelled`](Event::Cancelled). A node whose own code fails
/// has no `NodeEnd` (nor have the flows around it): its failure ends the run, and the
/// `Failed` error names it. A node whose action has no edge did end, so it has its `NodeEnd`
/// before the `Failed`. Concurrent sub-runs interleave their events; siblings dropped by a
/// failure keep their `NodeStart` without an end.
///
/// `Display` writes one line per event, for logs. The events that report a failure
/// ([`Retry`](Event::Retry), [`Fallback`](Event::Fallback), [`Failed`](Event::Failed)) show
/// the error with its whole chain of causes, each after `": "`, so the line says why:
/// `` run failed: node `save` failed in post: disk full ``.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// The run began (before its first node).
    RunStart,
    /// A node's run began. Batch flows, nested flows and parallel nodes start before the
    /// nodes inside them.
    #[non_exhaustive]
    NodeStart {
        /// The node.
        node: &'a NodePath<'a>,
    },
    /// A node's run ended, after its `post`.
    #[non_exhaustive]
    NodeEnd {
        /// The node.
        node: &'a NodePath<'a>,
        /// The action its `post` returned.
        action: &'a Action,
        /// How many times `exec` ran (for a batch node, summed over its items; 0 for flows
        /// and parallel nodes, which have no `exec` of their own).
        attempts: usize,
        /// The time from its start to its end, everything inside it included.
        elapsed: Duration,
    },
    /// An attempt of `exec` failed and another will follow, after `delay`.
    #[non_exhaustive]
    Retry {
        /// The node (for a batch node, with the item's index: `"translate[3]"`).
        node: &'a NodePath<'a>,
        /// The 0-based number of the attempt that failed, as [`Ctx::attempt`](crate::Ctx::attempt)
        /// counts. The event's `Display` counts from 1, as people do: "attempt 1 failed".
        attempt: usize,
        /// Its error (a [`TimedOut`](crate::TimedOut) if it ran out of time).
        error: &'a Error,
        /// The pause before the next attempt.
        delay: Duration,
    },
    /// The last attempt failed, and `exec_fallback` is called with this error (by default it
    /// returns it, and the run fails).
    #[non_exhaustive]
    Fallback {
        /// The node (for a batch node, with the item's index).
        node: &'a NodePath<'a>,
        /// The last attempt's error.
        error: &'a Error,
    },
    /// What a node's `exec` reported with [`Ctx::emit`](crate::Ctx::emit).
    #[non_exhaustive]
    Custom {
        /// The node (for a batch node, with the item's index).
        node: &'a NodePath<'a>,
        /// What kind of event it is (`"token"`, `"progress"`, …): yours to choose.
        kind: &'a str,
        /// The event's content.
        data: &'a str,
    },
    /// The run ended with this action: the terminal event of a successful run.
    #[non_exhaustive]
    Finished {
        /// The run's last action, as `run` returns it.
        action: &'a Action,
    },
    /// The run failed with this error: the terminal event of a failed run.
    #[non_exhaustive]
    Failed {
        /// The error `run` returns.
        error: &'a FlowError,
    },
    /// The run's future was dropped before it finished (or a node panicked): the terminal
    /// event of a cancelled run. The store holds every `post` that completed.
    Cancelled,
}

impl fmt::Display for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::RunStart => f.write_str("run started"),
            Event::NodeStart { node } => write!(f, "`{node}` started"),
            Event::NodeEnd { node, action, attempts, elapsed } => {
                let s = if *attempts == 1 { "" } else { "s" };
                write!(
                    f,
                    "`{node}` ended with {action:?} after {attempts} attempt{s} in {elapsed:?}"
                )
            }
            Event::Retry { node, attempt, error, delay } => {
                let nth = attempt + 1; // people count attempts from 1
                write!(f, "`{node}` attempt {nth} failed")?;
                causes(f, Some(&***error))?;
                write!(f, "; retrying in {delay:?}")
            }
            Event::Fallback { node, error } => {
                write!(f, "`{node}` falls back after its last attempt failed")?;
                causes(f, Some(&***error))
            }
            Event::Custom { node, kind, data } => write!(f, "`{node}` {kind}: {data}"),
            Event::Finished { action } => write!(f, "run finished with {action:?}"),
            Event::Failed { error } => write!(f, "run failed: {error:#}"),
            Event::Cancelled => f.write_str("run cancelled"),
        }
    }
}

/// Reports the start of a run, and on drop its terminal event: `Cancelled` unless
/// [`finish`](Ending::finish) reported how it ended.
pub(crate) struct Ending<'a>(Option<&'a dyn Observer>);

impl<'a> Ending<'a> {
    pub(crate) fn start(observer: Option<&'a dyn Observer>) -> Self {
        if let Some(observer) = observer {
            observer.event(&Event::RunStart);
        }
        Ending(observer)
    }

    pub(crate) fn finish(mut self, result: &Result<Action, FlowError>) {
        if let Some(observer) = self.0.take() {
            observer.event(&match result {
                Ok(action) => Event::Finished { action },
                Err(error) => Event::Failed { error },
            });
        }
    }
}

impl Drop for Ending<'_> {
    fn drop(&mut self) {
        if let Some(observer) = self.0 {
            observer.event(&Event::Cancelled);
        }
    }
}

/// A ready-made [`Observer`] that times every node: how often it ran, with how many attempts,
/// when it first started and last ended, how long it was busy in all, on average and at most.
/// `Display` prints the table:
///
/// ```text
/// node          runs  attempts   start ms     end ms    busy ms    mean ms     max ms
/// fetch            1         2        0.0      212.4      212.4      212.4      212.4
/// summarize        1         1      212.5      250.9       38.4       38.4       38.4
/// ```
///
/// Start and end are measured from the run's start, so nodes that overlapped (concurrent
/// sub-runs, parallel branches) show it: one starts before the other ends.
///
/// ```
/// use miniflow::{Action, Flow, RunOptions, Trace, node_fn};
///
/// let mut flow = Flow::new();
/// let a = flow.add("a", node_fn(|n: &mut u32, _| { *n += 1; Ok(Action::DEFAULT) }));
/// let b = flow.add("b", node_fn(|n: &mut u32, _| {
///     Ok(if *n < 3 { "again" } else { "done" }.into())
/// }));
/// flow.then(a, b)?;
/// flow.edge(b, "again", a)?;
/// flow.end(b, "done")?;
///
/// let trace = Trace::new();
/// smol::block_on(flow.run_with(&mut 0, RunOptions::new().observer(&trace)))?;
/// let runs: Vec<_> = trace.rows().into_iter().map(|row| (row.node, row.runs)).collect();
/// assert_eq!(runs, [("a".to_string(), 3), ("b".to_string(), 3)]);
/// println!("{trace}");
/// # Ok::<(), miniflow::Error>(())
/// ```
///
/// # One row per node of the flow's definition
///
/// A `Trace` keeps one row per node as the flows define it, not per node run: the runs of a
/// node in a loop, in every sub-run of a batch flow and in every item's flow share its row,
/// named by its path without the items' indices (`"fan/fetch"` for `"fan[0]/fetch"`,
/// `"fan[1]/fetch"`, …). So a batch flow of 100,000 sub-runs prints as many rows as its flow
/// has nodes, with the count, total, mean and maximum of their times — the numbers that show a
/// slow node or a straggler — and a `Trace` costs the same per event however large the run
/// (a lookup in a hash map). A batch node's items are one node run: its `attempts` add up over
/// its items. A nested flow's or `Parallel`'s row spans the rows of the nodes inside it, so to
/// add up the time of the work itself, skip the rows that others extend (`"draft"` when
/// `"draft/write"` is there). For each item's own timing, write a closure observer: every
/// [`Event::NodeEnd`] carries the full path and the elapsed time.
///
/// Give each run its own `Trace`; reused, it adds the runs up, with times measured from the
/// first.
#[derive(Debug, Default)]
pub struct Trace {
    state: Mutex<Table>,
}

/// What a [`Trace`] has recorded: the rows, an index of them by node, and the clock's origin.
#[derive(Debug, Default)]
struct Table {
    origin: Option<Instant>,
    rows: Vec<TraceRow>,
    index: HashMap<String, usize>,
    /// The path of the event being recorded, reused from one event to the next.
    path: String,
}

/// One node's line in a [`Trace`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TraceRow {
    /// The node's path, without the indices of items and sub-runs (`"fan/fetch"`).
    pub node: String,
    /// How many of its runs ended (a run that failed is not counted).
    pub runs: usize,
    /// The attempts of `exec` over those runs.
    pub attempts: usize,
    /// When its first run started, from the start of the run.
    pub start: Duration,
    /// When its last run ended, from the start of the run.
    pub end: Duration,
    /// The time spent in its runs, added up.
    pub busy: Duration,
    /// The longest of its runs.
    pub max: Duration,
}

impl TraceRow {
    /// The average time of one of its runs: [`busy`](TraceRow::busy) divided by
    /// [`runs`](TraceRow::runs).
    pub fn mean(&self) -> Duration {
        let nanos = self.busy.as_nanos() / self.runs.max(1) as u128;
        Duration::from_nanos(nanos as u64) // at most `busy`, which fits
    }
}

impl Trace {
    /// An empty trace.
    pub fn new() -> Self {
        Trace::default()
    }

    /// The rows so far, in the order the nodes first ended.
    pub fn rows(&self) -> Vec<TraceRow> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).rows.clone()
    }
}

impl Observer for Trace {
    fn event(&self, event: &Event<'_>) {
        let now = Instant::now();
        let mut table = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let table = &mut *table;
        let origin = *table.origin.get_or_insert(now);
        let &Event::NodeEnd { node, attempts, elapsed, .. } = event else { return };
        table.path.clear();
        let _ = node.write(&mut table.path, false);
        let end = now - origin;
        let i = match table.index.get(&table.path) {
            Some(&i) => i,
            None => {
                let node = table.path.clone();
                table.index.insert(node.clone(), table.rows.len());
                let start = end.saturating_sub(elapsed);
                let zero = Duration::ZERO;
                let row =
                    TraceRow { node, runs: 0, attempts: 0, start, end, busy: zero, max: zero };
                table.rows.push(row);
                table.rows.len() - 1
            }
        };
        let row = &mut table.rows[i];
        row.start = row.start.min(end.saturating_sub(elapsed));
        row.runs += 1;
        row.attempts += attempts;
        row.end = end;
        row.busy += elapsed;
        row.max = row.max.max(elapsed);
    }
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows = self.rows();
        let width = rows.iter().map(|row| row.node.chars().count()).max().unwrap_or(0).max(4);
        write!(f, "{:width$}  runs  attempts", "node")?;
        for column in ["start", "end", "busy", "mean", "max"] {
            write!(f, "  {column:>6} ms")?;
        }
        for r in &rows {
            write!(f, "\n{:width$}  {:>4}  {:>8}", r.node, r.runs, r.attempts)?;
            for time in [r.start, r.end, r.busy, r.mean(), r.max] {
                write!(f, "  {:>9.1}", time.as_secs_f64() * 1e3)?;
            }
        }
        Ok(())
    }
}
