//! Errors: the [`Error`] alias user code returns, and [`FlowError`], what a run returns.

use std::fmt;

use crate::Action;

/// The error type of user code: any error that can cross threads.
///
/// `prep`, `exec`, `exec_fallback` and `post` return [`Result<T>`](Result), so `?` works on any
/// error type, and a plain string becomes an error with `.into()`:
///
/// ```
/// fn parse(reply: &str) -> miniflow::Result<u32> {
///     let n: u32 = reply.trim().parse()?; // a ParseIntError
///     if n == 0 {
///         return Err("the model answered zero".into());
///     }
///     Ok(n)
/// }
/// # assert_eq!(parse(" 7 ").unwrap(), 7);
/// # assert!(parse("x").is_err());
/// ```
pub type Error = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The phase of a node in which its own code failed: see [`FlowError::NodeFailed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// `prep` returned an error (and so `exec` never ran).
    Prep,
    /// `exec` failed on its last attempt (the attempts ran out, or `wait` gave up) and
    /// `exec_fallback` returned an error too (by default
    /// `exec_fallback` returns the error of the last attempt unchanged).
    Exec,
    /// `post` returned an error.
    Post,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Prep => "prep",
            Phase::Exec => "exec",
            Phase::Post => "post",
        })
    }
}

/// What went wrong in a flow: either a node's own code failed, or the flow itself was misused.
///
/// Every variant names the node concerned by its *path*: the names given to
/// [`Flow::add`](crate::Flow::add) from the outermost flow inwards, joined by `/`, with `[i]`
/// after a batch node for its item `i` and after a batch flow for its sub-run `i`
/// (`"school[1]/class[0]/average"`). The path is empty for the outermost flow itself.
///
/// The variants are `#[non_exhaustive]`: match them with `..`.
///
/// # Printing: `{}` says where, `{:#}` says why
///
/// `Display` (`{}`) writes this error's own message, which names the node, the phase and the
/// attempts; the cause — your error, a [`TimedOut`](crate::TimedOut), the hook's error — is
/// its [`source()`](std::error::Error::source), as error-reporting crates expect (they print
/// the chain themselves, and would print it twice otherwise). The alternate form `{:#}`
/// writes the message followed by the whole chain of causes, each after `": "`: use it where
/// a person reads the error (a log line, `eprintln!`). [`Event`](crate::Event)s always show
/// the chain.
///
/// ```
/// use std::time::Duration;
/// use miniflow::{Action, Ctx, Flow, Node, Params, Result};
///
/// struct Slow;
/// impl Node<()> for Slow {
///     type Prep = ();
///     type Output = ();
///     fn prep(&self, _: &(), _: &Params) -> Result<()> { Ok(()) }
///     async fn exec(&self, _: &(), _: Ctx<'_>) -> Result<()> {
///         smol::Timer::after(Duration::from_secs(60)).await; // far too slow
///         Ok(())
///     }
///     fn post(&self, _: &mut (), _: (), _: ()) -> Result<Action> { Ok(Action::DEFAULT) }
///     fn timeout(&self) -> Option<Duration> { Some(Duration::from_millis(5)) }
///     fn max_retries(&self) -> usize { 2 }
/// }
///
/// let mut flow = Flow::new();
/// flow.add("slow", Slow);
/// let err = smol::block_on(flow.run(&mut ())).unwrap_err();
/// assert_eq!(err.to_string(), "node `slow` failed in exec after 2 attempts");
/// assert_eq!(
///     format!("{err:#}"),
///     "node `slow` failed in exec after 2 attempts: exec timed out after 5ms"
/// );
/// ```
///
/// Routing, validation and configuration errors:
///
/// ```
/// use miniflow::{Action, Flow, FlowError, node_fn};
///
/// let mut flow = Flow::<u32>::new();
/// let a = flow.add("a", node_fn(|_, _| Ok("oops".into())));
/// let b = flow.add("b", node_fn(|_, _| Ok(Action::DEFAULT)));
/// flow.edge(a, "next", b);
///
/// let err = smol::block_on(flow.run(&mut 0)).unwrap_err();
/// match &err {
///     FlowError::UnknownAction { node, action, expected, .. } => {
///         assert_eq!(node, "a");
///         assert_eq!(action, "oops");
///         assert_eq!(expected, &["next"]);
///     }
///     other => panic!("unexpected error: {other}"),
/// }
/// # Ok::<(), miniflow::Error>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum FlowError {
    /// A node's own code failed: its `prep`, its `exec` after every attempt and the fallback, or
    /// its `post`. The node's error is kept as [`source()`](std::error::Error::source).
    #[non_exhaustive]
    NodeFailed {
        /// The failing node's path.
        node: String,
        /// Which of the node's phases failed.
        phase: Phase,
        /// How many times `exec` ran: for an exec failure, the attempts made (for a batch
        /// node, by the failing item); for a post failure, the attempts whose results `post`
        /// received (for a batch node, summed over its items); 0 when `prep` failed, and for
        /// the prep and post of a batch flow, which has no `exec` of its own.
        attempts: usize,
        /// The error the node's code returned.
        source: crate::Error,
    },
    /// A node's `post` returned an action for which it has no edge, and the node has edges
    /// (a node with no edges at all ends the flow with whatever action it returns).
    #[non_exhaustive]
    UnknownAction {
        /// The node's path.
        node: String,
        /// The action it returned.
        action: Action,
        /// The actions it has edges (or end edges) for, in the order they were added.
        expected: Vec<Action>,
    },
    /// A param a node asked for is missing, or has another type.
    ///
    /// Returned by the getters of [`Params`](crate::Params); when it leaves a node's `prep`
    /// the run fills in the node's path.
    #[non_exhaustive]
    Param {
        /// The path of the node that asked (empty outside a run).
        node: String,
        /// The param's key.
        key: String,
        /// The type the node asked for, as [`FromValue::EXPECTED`](crate::FromValue::EXPECTED)
        /// says it: `"a string"`, `"an integer"`, `"a non-negative integer"` (`usize`, `u64`),
        /// `"an integer that fits an i32"`, `"a float"`, `"a bool"`.
        expected: &'static str,
        /// The type the param has (`"a string"`, `"an integer"`, `"a negative integer"`, `"an
        /// integer above i64::MAX"`, `"a float"`, `"a bool"`), or `None` when it is missing.
        found: Option<&'static str>,
    },
    /// A flow cannot run as it was built, or a node's settings are out of range.
    ///
    /// Found before any node of the run has run, and by [`Flow::validate`](crate::Flow::validate):
    ///
    /// - a flow with no nodes;
    /// - nodes no edge leads to from the start node (or an [entry](crate::Flow::entry));
    /// - flows nested deeper than [`MAX_DEPTH`](crate::MAX_DEPTH).
    ///
    /// Found before any node has run, by a run only: a
    /// [`start_at`](crate::RunOptions::start_at) path with a name its flow has no node of, or
    /// one that leads into anything but a nested [`Flow`](crate::Flow) (`node` is then the
    /// flow the name was looked up in).
    ///
    /// Found when the node is reached, before its `prep` (so earlier nodes' `post`s are in
    /// the store; `validate` does not call a node's settings): `max_retries()` of 0 or above
    /// [`MAX_ATTEMPTS`](crate::MAX_ATTEMPTS), a `timeout()` of zero, or a batch node's
    /// `max_in_flight()` of 0.
    ///
    /// Mistakes in the calls that build a flow (a bad name, a second edge for an action, a
    /// [`NodeId`](crate::NodeId) of another flow) panic where they are made instead.
    #[non_exhaustive]
    InvalidConfig {
        /// The path of the node or flow concerned (empty for the outermost flow).
        node: String,
        /// What is wrong and how to fix it, naming the node: the error's whole `Display`.
        message: String,
    },
    /// The run reached its step limit ([`RunOptions::max_steps`](crate::RunOptions::max_steps))
    /// and did not start another node.
    #[non_exhaustive]
    StepLimit {
        /// The limit.
        limit: usize,
        /// The paths of the last node runs (up to eight), oldest first: where the run was
        /// looping. A nested flow that was still running when the limit was reached is not
        /// listed itself; its nodes are, under its path. Each flow lists its own runs, so the
        /// other sub-runs of a batch flow and the other branches of a parallel node (finished
        /// or still running) are left out: the list shows the one that reached the limit and
        /// the flows around it.
        last: Vec<String>,
        /// The path of the node the run did not start: where it was when it reached the limit,
        /// even when `last` is empty (a limit reached inside a fan-out before any node there
        /// finished).
        next: String,
    },
    /// A node, nested flow, batch flow or parallel node ran past the time limit set with
    /// [`Flow::timeout`](crate::Flow::timeout), or the whole run past
    /// [`RunOptions::timeout`](crate::RunOptions::timeout) (then `node` is empty). Whatever was
    /// running inside was dropped at its next `.await`, as a dropped run is: every `post` that
    /// completed is in the store, none ran halfway. There is no fallback: the time was for
    /// everything inside, retries and fallbacks included.
    #[non_exhaustive]
    Timeout {
        /// The path of the node that ran out of time; empty for the run.
        node: String,
        /// The limit it ran past.
        after: std::time::Duration,
    },
    /// The [checkpoint hook](crate::RunOptions::checkpoint) returned an error, and the run
    /// stopped before the node it was saving for. The store holds every `post` so far; the
    /// hook's error is kept as [`source()`](std::error::Error::source).
    #[non_exhaustive]
    Checkpoint {
        /// The path of the node that would have run next (as the hook was given it).
        node: String,
        /// The error the hook returned.
        source: crate::Error,
    },
}

impl FlowError {
    /// The path of the node this error is about (empty for the outermost flow; for
    /// [`FlowError::StepLimit`], the node it did not start; for
    /// [`FlowError::Checkpoint`], the node that would have run next).
    pub fn node(&self) -> &str {
        match self {
            FlowError::NodeFailed { node, .. }
            | FlowError::UnknownAction { node, .. }
            | FlowError::Param { node, .. }
            | FlowError::InvalidConfig { node, .. }
            | FlowError::Checkpoint { node, .. }
            | FlowError::Timeout { node, .. }
            | FlowError::StepLimit { next: node, .. } => node,
        }
    }

    /// A user error leaving `phase` of the node at `node`. A param getter's error (a
    /// [`FlowError::Param`] with no path yet) is passed on with the node's path filled in;
    /// anything else, including a [`FlowError`] from a flow the node ran by itself, becomes the
    /// `source` of a [`FlowError::NodeFailed`].
    pub(crate) fn user(
        node: &dyn fmt::Display,
        phase: Phase,
        attempts: usize,
        error: crate::Error,
    ) -> Self {
        let source = match error.downcast::<FlowError>() {
            Ok(inner) => match *inner {
                FlowError::Param { node: path, key, expected, found } if path.is_empty() => {
                    return FlowError::Param { node: node.to_string(), key, expected, found };
                }
                other => Box::new(other),
            },
            Err(source) => source,
        };
        FlowError::NodeFailed { node: node.to_string(), phase, attempts, source }
    }
}

impl fmt::Display for FlowError {
    /// The error's own message; with `{:#}`, followed by its chain of causes (see
    /// [`FlowError`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlowError::NodeFailed { node, phase: Phase::Exec, attempts, .. } => {
                let s = if *attempts == 1 { "" } else { "s" };
                write!(f, "node `{node}` failed in exec after {attempts} attempt{s}")
            }
            FlowError::NodeFailed { node, phase, .. } => {
                write!(f, "node `{node}` failed in {phase}")
            }
            FlowError::UnknownAction { node, action, expected } => {
                let expected: Vec<String> = expected.iter().map(|a| format!("{a:?}")).collect();
                write!(
                    f,
                    "node `{node}` returned action {action:?}, but its edges are for {}; add an \
                     edge for it, or `Flow::end` if it should end the flow",
                    expected.join(", ")
                )
            }
            FlowError::Param { node, key, expected, found } => {
                if !node.is_empty() {
                    write!(f, "node `{node}`: ")?;
                }
                match found {
                    None => write!(
                        f,
                        "param `{key}` is missing; set it in the params the run or a batch flow passes down"
                    ),
                    Some(found) => {
                        write!(f, "param `{key}` should be {expected}, but it is {found}")
                    }
                }
            }
            FlowError::InvalidConfig { message, .. } => f.write_str(message),
            FlowError::StepLimit { limit, last, next } => {
                let s = if *limit == 1 { "" } else { "s" };
                write!(f, "the run reached its limit of {limit} step{s} before starting `{next}`")?;
                match last.is_empty() {
                    true if *limit == 0 => write!(f, ", before any node ran")?,
                    // Only flows still running around `next`, or earlier sub-runs and
                    // branches, which are not listed: `next` says where the run was.
                    true => {}
                    false => {
                        let last: Vec<String> = last.iter().map(|n| format!("`{n}`")).collect();
                        write!(f, "; the last nodes run were {}", last.join(" -> "))?;
                    }
                }
                write!(
                    f,
                    ". If that is a loop that should end, give it an exit; else raise the limit with `RunOptions::max_steps`"
                )
            }
            FlowError::Timeout { node, after } => {
                let what =
                    if node.is_empty() { "the run".into() } else { format!("node `{node}`") };
                write!(f, "{what} did not finish within its time limit of {after:?}")
            }
            FlowError::Checkpoint { node, .. } => write!(
                f,
                "the checkpoint before node `{node}` could not be saved, so the run stopped before it"
            ),
        }?;
        match f.alternate() {
            true => causes(f, std::error::Error::source(self)),
            false => Ok(()),
        }
    }
}

/// Writes `: cause` for `error` and each error in its chain of [`source`]s, in order.
///
/// [`source`]: std::error::Error::source
pub(crate) fn causes(
    f: &mut fmt::Formatter<'_>,
    mut error: Option<&(dyn std::error::Error + 'static)>,
) -> fmt::Result {
    while let Some(cause) = error {
        write!(f, ": {cause}")?;
        error = cause.source();
    }
    Ok(())
}

impl std::error::Error for FlowError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FlowError::NodeFailed { source, .. } | FlowError::Checkpoint { source, .. } => {
                Some(&**source)
            }
            _ => None,
        }
    }
}
