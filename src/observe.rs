//! Watching a run: the [`Observer`] hook and the [`Event`]s it receives.

use std::fmt;
use std::time::Duration;

use crate::error::causes;
use crate::{Action, Error, FlowError, NodePath, Value};

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
/// # Several runs, one sink
///
/// A server that streams the events of many runs into one place (a log, a queue, a web
/// socket per user) gives each run its own observer: a closure that captures the run's id,
/// chosen by the server, and labels each event with it. Since `event` is called as each thing
/// happens, the time the closure reads is the event's time. Events without an observer cost
/// nothing, and so does this: the crate does not stamp events a run may not want.
///
/// ```
/// use std::sync::Mutex;
/// use std::time::Instant;
/// use miniflow::{Action, Event, Flow, RunOptions, node_fn};
///
/// let mut flow = Flow::new();
/// flow.add("step", node_fn(|n: &mut u32, _| { *n += 1; Ok(Action::DEFAULT) }));
///
/// let sink = Mutex::new(Vec::new()); // one sink for every run
/// let started = Instant::now();
/// let labelled = |run: &'static str| {
///     let sink = &sink;
///     move |event: &Event<'_>| {
///         let _at = started.elapsed(); // when it happened, if you want it
///         sink.lock().unwrap().push(format!("{run}: {event}"));
///     }
/// };
/// let (a, b) = (labelled("run-a"), labelled("run-b"));
/// let (one, two) = smol::block_on(futures::future::join(
///     flow.run_with(&mut 0, RunOptions::new().observer(&a)),
///     flow.run_with(&mut 0, RunOptions::new().observer(&b)),
/// ));
/// (one?, two?);
/// let lines = sink.into_inner().unwrap();
/// assert_eq!(lines.iter().filter(|l| l.starts_with("run-a: ")).count(), 4);
/// assert_eq!(lines.iter().filter(|l| l.starts_with("run-b: ")).count(), 4);
/// assert_eq!(lines[0], "run-a: run started");
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
/// `Failed` error names it — or, in a sub-run of a fan-out whose post is a `post_outcomes`,
/// it ends that sub-run only, reported by a [`SubRunFailed`](Event::SubRunFailed). A node whose action has no edge did end, so it has its `NodeEnd`
/// before the `Failed`. Concurrent sub-runs interleave their events; siblings dropped by a
/// failure keep their `NodeStart` without an end.
///
/// `Display` writes one line per event, for logs. The events that report a failure
/// ([`Retry`](Event::Retry), [`Fallback`](Event::Fallback),
/// [`SubRunFailed`](Event::SubRunFailed), [`Failed`](Event::Failed)) show
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
    /// The last attempt made failed (the attempts ran out, or the node's `wait` gave up), and
    /// `exec_fallback` is called with this error (by default it
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
        /// The event's content, as `emit` was given it (text, or a number or bool).
        data: &'a Value,
    },
    /// A sub-run of a batch flow, or a branch of a parallel node, failed with this error, and
    /// the fan-out goes on: its post is a `post_outcomes`
    /// ([`BatchFlow::post_outcomes`](crate::BatchFlow::post_outcomes)), which will see the
    /// error among the outcomes. The error names the node that failed by its path.
    #[non_exhaustive]
    SubRunFailed {
        /// The error, as the post will see it.
        error: &'a FlowError,
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
            Event::SubRunFailed { error } => {
                write!(f, "a sub-run failed, the others go on: {error:#}")
            }
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
