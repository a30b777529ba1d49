//! The benchmarks: `cargo bench` builds in release and prints one table.
//!
//! Every figure is the median of several runs of one workload, with the fastest and the
//! slowest run beside it, measured in this one process after warm-up runs (the fanout runs in
//! a child process of its own, so that its peak memory is its own). The workloads are the
//! ones `benches/pocketflow.py` runs on Python PocketFlow; `python3 benches/compare.py` runs
//! both and prints the ratios.
//!
//! ```text
//! cargo bench                          # the table
//! cargo bench -- --tsv                 # key, unit, median, min, max, runs: for compare.py
//! cargo bench -- --runs 21 --warmup 3  # more runs
//! cargo bench -- --only batch          # the workloads whose key starts with "batch"
//! cargo bench -- --count chain 1000000  # one run of one workload, untimed: for instructions.py
//! ```
//!
//! `--count KEY N` runs the workload `KEY` (one of [`WORKLOADS`]) once at size `N`, with no
//! warm-up, and prints nothing but the key and size; `python3 benches/instructions.py` runs it
//! under valgrind at `N` and `2 * N` to count the instructions per unit of work.
//!
//! Each workload checks its own result (a count or a sum), so a broken workload fails instead
//! of reporting a number. Timing assertions do not belong in tests (machines are shared and
//! noisy); the targets are read off this table.

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use async_io::Timer;
use miniflow::{
    Action, BatchAsyncFlow, BatchFlow, BatchNode, Ctx, Flow, Node, Params, Result, RunOptions,
};

// The trace observer is a recipe in the examples, not part of the crate.
#[path = "../examples/support/trace.rs"]
mod trace;
use trace::Trace;

/// The executor of every workload but the fanout: `futures`' `block_on` polls a run again at
/// once when it wakes itself (as it does every 256 passes, to give its executor a turn) and
/// has no reactor to look at, so the instructions a run executes are the same every time.
/// smol's `block_on` looks at its reactor on every such turn, a clock-dependent amount of work
/// that moved `benches/instructions.py`'s counts by up to 3 per node run between two runs.
/// (The fanout awaits timers: it runs on smol, whose reactor drives them.)
use futures::executor::block_on;

/// The size of each headline workload.
const CHAIN: u64 = 1_000_000;
const ITEMS: u64 = 100_000;
const SUB_RUNS: u64 = 100_000;
const FANOUT: u64 = 10_000;
/// How long each fanout item sleeps: the floor of the fanout's wall time.
const SLEEP: Duration = Duration::from_millis(10);

/// A workload that a size can be given to: key, unit, and the workload run once at that size.
type Workload = (&'static str, &'static str, fn(u64) -> f64);

/// The first six are the headline rows (at the sizes above); all of them can be `--count`ed.
const WORKLOADS: &[Workload] = &[
    ("chain", "ns/node run", chain),
    ("batch-node/seq", "ns/item", |n| batch_node(n, 1)),
    ("batch-node/concurrent", "ns/item", |n| batch_node(n, usize::MAX)),
    ("batch-node/limit-64", "ns/item", |n| batch_node(n, 64)),
    ("batch-flow/BatchFlow", "ns/sub-run", |n| batch_flow(n, 1, false)),
    ("batch-flow/BatchAsyncFlow", "ns/sub-run", |n| batch_flow(n, 0, false)),
    ("batch-flow/trace", "ns/sub-run", |n| batch_flow(n, 1, true)),
];

fn main() {
    let options = Options::parse();
    if let Some(items) = options.fanout_child {
        return fanout_child(items, &options);
    }
    if let Some((key, n)) = &options.count {
        let (_, _, run) = WORKLOADS.iter().find(|(k, ..)| k == key).unwrap_or_else(|| {
            let keys: Vec<_> = WORKLOADS.iter().map(|(k, ..)| *k).collect();
            usage(&format!("--count: no workload {key:?} (there are {})", keys.join(", ")))
        });
        run(*n);
        return println!("{key} {n}");
    }
    let mut report = Report::new(options);

    for &(key, unit, run) in &WORKLOADS[..6] {
        let n = match key {
            "chain" => CHAIN,
            _ if key.starts_with("batch-node") => ITEMS,
            _ => SUB_RUNS,
        };
        report.figure(key, unit, || run(n));
    }
    let fanout = report.wants("fanout").then(|| Fanout::measure(FANOUT, &report.options));
    if let Some(fanout) = &fanout {
        report.push("fanout/wall", "ms", fanout.wall_ms.clone());
        report.push("fanout/peak-rss", "MiB", vec![fanout.peak_rss_mib]);
    }

    // Scaling: the cost per unit at each size should stay flat. The headline size reuses the
    // headline figure instead of measuring it twice.
    for exp in 3..=6 {
        let n = 10u64.pow(exp);
        report.figure_or_reuse(
            &format!("scaling/chain/{n}"),
            "ns/node run",
            "chain",
            n == CHAIN,
            || chain(n),
        );
    }
    for exp in 3..=6 {
        let n = 10u64.pow(exp);
        let key = format!("scaling/batch-node/{n}");
        report.figure_or_reuse(&key, "ns/item", "batch-node/seq", n == ITEMS, || batch_node(n, 1));
    }
    // A `BatchFlow` observed by a `Trace`, which keeps one row per sub-run's node path.
    for exp in 3..=5 {
        let n = 10u64.pow(exp);
        report.figure(&format!("scaling/trace/{n}"), "ns/sub-run", || batch_flow(n, 1, true));
    }
    for exp in 3..=5 {
        let n = 10u64.pow(exp);
        let key = format!("scaling/fanout/{n}");
        if !report.wants(&key) {
            continue;
        }
        let measured = match &fanout {
            Some(fanout) if n == FANOUT => fanout.clone(),
            _ => Fanout::measure(n, &report.options),
        };
        report.push(&key, "ns/item over floor", measured.overhead_ns_per_item(n));
    }
    report.print();
}

// ---------------------------------------------------------------------------------------------
// The workloads. Each returns the cost of one unit of work, from one timed run.

/// Does nothing in all three phases.
struct Noop;

impl Node<u64> for Noop {
    type Prep = ();
    type Output = ();

    fn prep(&self, _: &u64, _: &Params) -> Result<()> {
        Ok(())
    }

    async fn exec(&self, _: &(), _: Ctx<'_>) -> Result<()> {
        Ok(())
    }

    fn post(&self, _: &mut u64, _: (), _: ()) -> Result<Action> {
        Ok(Action::DEFAULT)
    }
}

/// Counts the loops in the store, and goes round again until there have been `loops`.
struct Count {
    loops: u64,
}

/// The chain's looping action, one text for the edge and for `post`: an action compares by
/// address first (see `Action`'s `PartialEq`), and whether two equal literals share one
/// address is up to the compiler, which decided differently from one build to the next (the
/// chain's count moved by 13 instructions per node run with a `memcmp` call).
static AGAIN: &str = "again";

impl Node<u64> for Count {
    type Prep = ();
    type Output = ();

    fn prep(&self, _: &u64, _: &Params) -> Result<()> {
        Ok(())
    }

    async fn exec(&self, _: &(), _: Ctx<'_>) -> Result<()> {
        Ok(())
    }

    fn post(&self, loops: &mut u64, _: (), _: ()) -> Result<Action> {
        *loops += 1;
        Ok(if *loops < self.loops { Action::new(AGAIN) } else { Action::new("done") })
    }
}

/// chain: two no-op nodes looping for `node_runs` node runs. Nanoseconds per node run.
fn chain(node_runs: u64) -> f64 {
    let mut flow = Flow::new();
    let a = flow.add("a", Noop);
    let b = flow.add("b", Count { loops: node_runs / 2 });
    flow.then(a, b);
    flow.edge(b, AGAIN, a);
    flow.end(b, "done");

    let mut loops = 0;
    let started = Instant::now();
    let last = block_on(flow.run(black_box(&mut loops))).expect("the chain runs");
    let elapsed = started.elapsed();
    assert_eq!((loops, last.as_str()), (node_runs / 2, "done"));
    per_unit(elapsed, node_runs)
}

/// Doubles every item; the store gets the sum.
struct Double {
    items: u64,
    limit: usize,
}

impl BatchNode<u64> for Double {
    type Item = u64;
    type Output = u64;

    fn prep(&self, _: &u64, _: &Params) -> Result<Vec<u64>> {
        Ok((0..self.items).collect())
    }

    async fn exec(&self, item: &u64, _: Ctx<'_>) -> Result<u64> {
        Ok(item * 2)
    }

    fn post(&self, sum: &mut u64, _: &Params, _: Vec<u64>, outputs: Vec<u64>) -> Result<Action> {
        *sum = outputs.iter().sum();
        Ok(Action::DEFAULT)
    }

    fn max_in_flight(&self) -> usize {
        self.limit
    }
}

/// batch-node: a batch node over `items` items, at most `limit` in flight. Nanoseconds per
/// item (prep's list and post's sum included).
fn batch_node(items: u64, limit: usize) -> f64 {
    let mut flow = Flow::new();
    flow.add("double", Double { items, limit });
    let mut sum = 0;
    let started = Instant::now();
    block_on(flow.run(black_box(&mut sum))).expect("the batch runs");
    let elapsed = started.elapsed();
    assert_eq!(sum, items * (items - 1));
    per_unit(elapsed, items)
}

/// Adds the param `i` to the store.
struct AddParam;

impl Node<i64> for AddParam {
    type Prep = i64;
    type Output = ();

    fn prep(&self, _: &i64, params: &Params) -> Result<i64> {
        Ok(params.int("i")?)
    }

    async fn exec(&self, _: &i64, _: Ctx<'_>) -> Result<()> {
        Ok(())
    }

    fn post(&self, sum: &mut i64, i: i64, _: ()) -> Result<Action> {
        *sum += i;
        Ok(Action::DEFAULT)
    }
}

/// batch-flow: a one-node flow run once per params set, `sub_runs` sets, by a `BatchFlow`
/// (`limit` 1) or a `BatchAsyncFlow` with that limit (0 for none), observed by a [`Trace`] if
/// `traced`. Nanoseconds per sub-run (prep's params sets included).
fn batch_flow(sub_runs: u64, limit: usize, traced: bool) -> f64 {
    let mut inner = Flow::new();
    inner.add("add", AddParam);
    let sets = move |_: &i64, _: &Params| {
        Ok((0..sub_runs as i64).map(|i| Params::new().with("i", i)).collect())
    };
    let mut flow = Flow::new();
    match limit {
        1 => flow.add("batch", BatchFlow::new(inner, sets)),
        0 => flow.add("batch", BatchAsyncFlow::new(inner, sets)),
        n => flow.add("batch", BatchAsyncFlow::new(inner, sets).max_in_flight(n)),
    };
    let mut sum = 0;
    let trace = Trace::new();
    let options = if traced { RunOptions::new().observer(&trace) } else { RunOptions::new() };
    let started = Instant::now();
    block_on(flow.run_with(black_box(&mut sum), options)).expect("the batch flow runs");
    let elapsed = started.elapsed();
    let n = sub_runs as i64;
    assert_eq!(sum, n * (n - 1) / 2);
    if traced {
        // However the rows are keyed, they count each sub-run's node run once.
        let rows = trace.rows();
        let adds: usize = rows.iter().filter(|r| r.node.ends_with("/add")).map(|r| r.runs).sum();
        assert_eq!(adds as u64, sub_runs, "the trace counts every sub-run ({} rows)", rows.len());
    }
    per_unit(elapsed, sub_runs)
}

/// Sleeps on smol's timer, every item at once.
struct Sleep {
    items: u64,
}

impl BatchNode<u64> for Sleep {
    type Item = u64;
    type Output = ();

    fn prep(&self, _: &u64, _: &Params) -> Result<Vec<u64>> {
        Ok((0..self.items).collect())
    }

    async fn exec(&self, _: &u64, _: Ctx<'_>) -> Result<()> {
        Timer::after(SLEEP).await;
        Ok(())
    }

    fn post(&self, done: &mut u64, _: &Params, _: Vec<u64>, outputs: Vec<()>) -> Result<Action> {
        *done = outputs.len() as u64;
        Ok(Action::DEFAULT)
    }

    fn max_in_flight(&self) -> usize {
        usize::MAX
    }
}

/// fanout: `items` concurrent items each awaiting a 10 ms timer. Wall milliseconds.
fn fanout(items: u64) -> f64 {
    let mut flow = Flow::new();
    flow.add("sleep", Sleep { items });
    let mut done = 0;
    let started = Instant::now();
    smol::block_on(flow.run(&mut done)).expect("the fanout runs");
    let elapsed = started.elapsed();
    assert_eq!(done, items);
    elapsed.as_secs_f64() * 1e3
}

fn per_unit(elapsed: Duration, units: u64) -> f64 {
    elapsed.as_nanos() as f64 / units as f64
}

/// What a fanout child process measured: the wall time of each run, and its peak memory.
#[derive(Clone)]
struct Fanout {
    wall_ms: Vec<f64>,
    peak_rss_mib: f64,
}

impl Fanout {
    /// Runs the fanout of `items` in a child process (this same program), so that the peak
    /// memory is the fanout's alone and not that of the workloads before it.
    fn measure(items: u64, options: &Options) -> Fanout {
        let exe = std::env::current_exe().expect("the benchmark knows its own path");
        let output = Command::new(exe)
            .args(["--fanout-child", &items.to_string()])
            .args(["--runs", &options.runs.to_string(), "--warmup", &options.warmup.to_string()])
            .output()
            .expect("the fanout child starts");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "the fanout child failed: {}{}",
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
        let mut fanout = Fanout { wall_ms: Vec::new(), peak_rss_mib: f64::NAN };
        for line in stdout.lines() {
            match line.split_once(' ') {
                Some(("wall-ms", ms)) => fanout.wall_ms.push(ms.parse().expect("a number")),
                Some(("peak-rss-kib", kib)) => {
                    fanout.peak_rss_mib = kib.parse::<f64>().expect("a number") / 1024.0
                }
                _ => panic!("unexpected line from the fanout child: {line:?}"),
            }
        }
        fanout
    }

    /// Each run's cost per item beyond the 10 ms every item sleeps.
    fn overhead_ns_per_item(&self, items: u64) -> Vec<f64> {
        let floor = SLEEP.as_secs_f64() * 1e3;
        self.wall_ms.iter().map(|ms| (ms - floor) * 1e6 / items as f64).collect()
    }
}

/// The child's side of [`Fanout::measure`]: prints `wall-ms X` per measured run, then
/// `peak-rss-kib X` (Linux's high-water mark of the resident set; NaN elsewhere).
fn fanout_child(items: u64, options: &Options) {
    for _ in 0..options.warmup {
        fanout(items);
    }
    for _ in 0..options.runs {
        println!("wall-ms {}", fanout(items));
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    println!("peak-rss-kib {peak}");
}

// ---------------------------------------------------------------------------------------------
// Running and printing.

struct Options {
    runs: usize,
    warmup: usize,
    tsv: bool,
    only: Option<String>,
    fanout_child: Option<u64>,
    count: Option<(String, u64)>,
}

impl Options {
    fn parse() -> Options {
        let mut options =
            Options { runs: 9, warmup: 2, tsv: false, only: None, fanout_child: None, count: None };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value =
                |name: &str| args.next().unwrap_or_else(|| usage(&format!("{name} needs a value")));
            match arg.as_str() {
                "--tsv" => options.tsv = true,
                "--runs" => options.runs = number(&value("--runs")),
                "--warmup" => options.warmup = number(&value("--warmup")),
                "--only" => options.only = Some(value("--only")),
                "--fanout-child" => options.fanout_child = Some(number(&value("--fanout-child"))),
                "--count" => {
                    let key = value("--count");
                    options.count = Some((key, number(&value("--count"))));
                }
                // `cargo bench` passes `--bench`; a filter without `--only` is taken as one.
                "--bench" => {}
                filter if !filter.starts_with('-') => options.only = Some(filter.to_string()),
                other => usage(&format!("unknown option {other}")),
            }
        }
        if options.runs == 0 {
            usage("--runs must be at least 1");
        }
        options
    }
}

fn number<T: std::str::FromStr>(text: &str) -> T {
    text.parse().unwrap_or_else(|_| usage(&format!("{text:?} is not a number")))
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "{problem}\nusage: cargo bench -- [--tsv] [--runs N] [--warmup N] [--only PREFIX] | --count KEY N"
    );
    std::process::exit(2)
}

struct Row {
    key: String,
    unit: &'static str,
    runs: Vec<f64>,
}

impl Row {
    /// Median, min and max.
    fn summary(&self) -> (f64, f64, f64) {
        let mut runs = self.runs.clone();
        runs.sort_by(f64::total_cmp);
        let n = runs.len();
        let median = if n % 2 == 1 { runs[n / 2] } else { (runs[n / 2 - 1] + runs[n / 2]) / 2.0 };
        (median, runs[0], runs[n - 1])
    }
}

struct Report {
    options: Options,
    rows: Vec<Row>,
}

impl Report {
    fn new(options: Options) -> Report {
        Report { options, rows: Vec::new() }
    }

    fn wants(&self, key: &str) -> bool {
        self.options.only.as_deref().is_none_or(|prefix| key.starts_with(prefix))
    }

    /// Measures `run` after the warm-up runs, if `--only` lets it.
    fn figure(&mut self, key: &str, unit: &'static str, mut run: impl FnMut() -> f64) {
        if !self.wants(key) {
            return;
        }
        for _ in 0..self.options.warmup {
            run();
        }
        let runs = (0..self.options.runs).map(|_| run()).collect();
        self.push(key, unit, runs);
    }

    /// A scaling row: the runs of the headline row `headline` when this is its size and it was
    /// measured, else measured afresh.
    fn figure_or_reuse(
        &mut self,
        key: &str,
        unit: &'static str,
        headline: &str,
        same: bool,
        run: impl FnMut() -> f64,
    ) {
        let measured = self.rows.iter().find(|row| same && row.key == headline);
        match measured.map(|row| row.runs.clone()) {
            Some(runs) if self.wants(key) => self.push(key, unit, runs),
            _ => self.figure(key, unit, run),
        }
    }

    fn push(&mut self, key: &str, unit: &'static str, runs: Vec<f64>) {
        self.rows.push(Row { key: key.to_string(), unit, runs });
    }

    fn print(&self) {
        let Options { runs, warmup, .. } = self.options;
        if self.options.tsv {
            println!(
                "# miniflow {}: median, min and max of {runs} runs after {warmup} warm-up runs",
                env!("CARGO_PKG_VERSION")
            );
            for row in &self.rows {
                let (median, min, max) = row.summary();
                println!(
                    "{}\t{}\t{median:.3}\t{min:.3}\t{max:.3}\t{}",
                    row.key,
                    row.unit,
                    row.runs.len()
                );
            }
            return;
        }
        println!(
            "miniflow {}: median of {runs} runs after {warmup} warm-up runs, with the fastest and the slowest",
            env!("CARGO_PKG_VERSION")
        );
        println!();
        println!("{:<28} {:>20} {:>10} {:>10} {:>10}", "workload", "unit", "median", "min", "max");
        for row in &self.rows {
            let (median, min, max) = row.summary();
            println!(
                "{:<28} {:>20} {:>10} {:>10} {:>10}",
                row.key,
                row.unit,
                fmt(median),
                fmt(min),
                fmt(max)
            );
        }
    }
}

/// Three significant figures or one decimal, whichever is more.
fn fmt(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}
