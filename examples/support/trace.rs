//! A ready-made [`Observer`] that times every node of a run: a recipe to copy into your
//! project (any type that implements [`Observer`] is one; this one is in the examples rather
//! than the crate, so that the crate stays small).
//!
//! [`Observer`]: miniflow::Observer
//! [`Event::NodeEnd`]: miniflow::Event::NodeEnd

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use miniflow::{Event, Observer};

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
/// ```ignore
/// use miniflow::{Action, Flow, RunOptions, node_fn};
/// use support::trace::Trace; // this file, copied into your project
///
/// let mut flow = Flow::new();
/// let a = flow.add("a", node_fn(|n: &mut u32, _| { *n += 1; Ok(Action::DEFAULT) }));
/// let b = flow.add("b", node_fn(|n: &mut u32, _| {
///     Ok(if *n < 3 { "again" } else { "done" }.into())
/// }));
/// flow.then(a, b);
/// flow.edge(b, "again", a);
/// flow.end(b, "done");
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
/// A `Trace` keeps one row per node as the flows define it (once the node has finished a run:
/// a node that never ran has no row), not per node run: the runs of a
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
        // The node's path without the items' indices (`fan[3]/fetch` becomes `fan/fetch`),
        // written into a buffer kept for the purpose: no allocation per event.
        table.path.clear();
        let _ = write!(table.path, "{node}");
        let mut index = false;
        table.path.retain(|c| {
            index |= c == '[';
            let keep = !index;
            index &= c != ']';
            keep
        });
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
