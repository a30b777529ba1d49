//! A plain flow makes at most one heap allocation per node run once it has started: the boxed
//! future of the visit. Counted exactly with a counting global allocator, never timed.
//!
//! The count is the test thread's own (`allocation_counter` keeps one per thread): the run
//! is polled to completion on that thread and never spawns, so everything it allocates is
//! counted, and nothing that another thread allocates meanwhile (the test harness, a second
//! test) is.
//!
//! Each case runs the same flow for `n` and for `2 * n` node runs (after a warm-up run) and
//! compares the two counts, so that what a run allocates once (the executor, the first
//! validation) cancels out and only the per-node-run cost is left.

use miniflow::{Action, Ctx, Flow, IntoNode, Node, Params, Result, RunOptions, node_fn};

/// The loop counter and where it stops.
#[derive(Default)]
struct Loops {
    done: u64,
    target: u64,
}

/// A node with all three phases, passing a value from each to the next.
struct Pass;

impl Node<Loops> for Pass {
    type Prep = u64;
    type Output = u64;

    fn prep(&self, loops: &Loops, _: &Params) -> Result<u64> {
        Ok(loops.done)
    }

    async fn exec(&self, done: &u64, _: Ctx<'_>) -> Result<u64> {
        Ok(done + 1)
    }

    fn post(&self, _: &mut Loops, _: u64, _: u64) -> Result<Action> {
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        3 // retries that are never needed cost nothing
    }
}

/// Counts a loop and goes round again until the target.
fn count() -> impl Node<Loops> {
    node_fn(|loops: &mut Loops, params: &Params| {
        if params.len() > 1 {
            params.int("step")?; // read a param on every visit
        }
        loops.done += 1;
        Ok(if loops.done < loops.target { "again" } else { "done" }.into())
    })
}

/// `flow` looped `loops` times under `options`: the allocations (and reallocations) of the run,
/// on this thread.
fn allocations(
    flow: &Flow<Loops>,
    loops: u64,
    options: impl Fn() -> RunOptions<'static, Loops>,
) -> usize {
    let mut store = Loops { done: 0, target: loops };
    let options = options();
    let mut last = None;
    // A reallocation counts as one allocation: the counter's allocator grows a block by
    // allocating a new one (the default `GlobalAlloc::realloc`).
    let counted = allocation_counter::measure(|| {
        last = Some(futures::executor::block_on(flow.run_with(&mut store, options)));
    });
    let last = last.expect("the run was measured").expect("the flow runs");
    assert_eq!((store.done, last.as_str()), (loops, "done"));
    counted.count_total as usize
}

/// Asserts that each extra loop, of `node_runs_per_loop` node runs, allocates at most once per
/// node run.
fn at_most_one_per_node_run(
    case: &str,
    flow: Flow<Loops>,
    node_runs_per_loop: usize,
    options: impl Fn() -> RunOptions<'static, Loops>,
) {
    let loops = 1_000;
    allocations(&flow, 10, &options); // warm-up: the flow checks itself once, on its first run
    let once = allocations(&flow, loops, &options);
    let twice = allocations(&flow, 2 * loops, &options);
    let node_runs = loops as usize * node_runs_per_loop;
    let per_extra_node_run = (twice - once) as f64 / node_runs as f64;
    assert!(
        twice - once <= node_runs,
        "{case}: {node_runs} more node runs made {} more allocations ({per_extra_node_run:.2} each)",
        twice - once
    );
    // And the run's own fixed cost stays small.
    assert!(once <= node_runs + 16, "{case}: {once} allocations for {node_runs} node runs");
}

fn looped<M1, M2>(
    first: impl IntoNode<Loops, M1>,
    second: impl IntoNode<Loops, M2>,
) -> Flow<Loops> {
    let mut flow = Flow::new();
    let a = flow.add("first", first);
    let b = flow.add("second", second);
    flow.then(a, b);
    flow.edge(b, "again", a);
    flow.end(b, "done");
    flow
}

#[test]
fn a_plain_flow_allocates_at_most_once_per_node_run() {
    // Two nodes looping: the node run's future is the one allocation.
    at_most_one_per_node_run("two nodes", looped(Pass, count()), 2, RunOptions::new);

    // Params of one key and of several, read on every visit: cloned and read without allocating.
    let one = || RunOptions::new().params(Params::new().with("step", 1));
    at_most_one_per_node_run("params of one key", looped(Pass, count()), 2, one);
    let three =
        || RunOptions::new().params(Params::new().with("step", 1).with("a", "x").with("b", true));
    at_most_one_per_node_run("params of three keys", looped(Pass, count()), 2, three);

    // A nested flow is a node run of its own, and so is each node inside it.
    let mut inner = Flow::new();
    inner.add("pass", Pass);
    at_most_one_per_node_run("a nested flow", looped(inner, count()), 3, RunOptions::new);

    // A step limit that is never reached costs no allocation.
    let limited = || RunOptions::new().max_steps(1_000_000);
    at_most_one_per_node_run("a step limit", looped(Pass, count()), 2, limited);
}

#[test]
fn the_counter_counts_this_threads_allocations() {
    // Without this, a counter that saw nothing would pass every "at most" above.
    let counted = allocation_counter::measure(|| drop(std::hint::black_box(Box::new(1_u64))));
    assert_eq!(counted.count_total, 1);
}
