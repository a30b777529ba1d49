"""The miniflow benchmark workloads, run on Python PocketFlow.

    target/pocketflow-venv/bin/python benches/pocketflow.py [--runs N] [--warmup N] [--tsv] [--only KEYPREFIX]

Each figure is the median, min and max of several measured runs after warm-up runs, in one
process, except the peak RSS, which is read at the end of a fresh child process that does only
the fan-out. `benches/compare.py` runs this next to `cargo bench --bench miniflow -- --tsv`
and joins the two on the workload key.

With `--tsv` every figure is a line `key<TAB>unit<TAB>median<TAB>min<TAB>max<TAB>runs`, and
every other line starts with `# `.
"""

import argparse
import asyncio
import gc
import importlib.metadata
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings

# This file is itself named pocketflow.py, and Python puts the script's folder first on the
# import path, so `import pocketflow` would find this file instead of the package. Take that
# folder (and the current folder, if it is the same one) off the path before importing.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

from pocketflow import (
    AsyncFlow,
    AsyncNode,
    AsyncParallelBatchFlow,
    AsyncParallelBatchNode,
    BatchFlow,
    BatchNode,
    Flow,
    Node,
)

# Every fan-out item sleeps this long, so a fan-out can never take less than this.
SLEEP_S = 0.01
FLOOR_NS = 10_000_000

# The chain ends when its second node returns "done", which has no successor on purpose, and
# PocketFlow warns about that ("Flow ends: 'done' not found in ['again']") once per process.
# That is the intended way out of the loop here, so this one warning is silenced.
warnings.filterwarnings("ignore", message="Flow ends:")


def timed(run):
    """Wall nanoseconds of `run()`, after a collection so that no earlier garbage is swept
    during it."""
    gc.collect()
    start = time.perf_counter_ns()
    run()
    return time.perf_counter_ns() - start


# --- chain: two no-op nodes looping --------------------------------------------------------


class Nothing(Node):
    """Does nothing: no prep, no exec, and `post` returns None, which means "default"."""


class CountLoops(Node):
    """Counts one loop per run and sends the flow back to the start until the target."""

    def post(self, shared, prep_res, exec_res):
        shared["n"] += 1
        return "again" if shared["n"] < shared["target"] else "done"


def chain(node_runs):
    """One `flow.run` of `node_runs` node runs (half by each node); returns the wall ns."""
    assert node_runs % 2 == 0
    loops = node_runs // 2
    a, b = Nothing(), CountLoops()
    a >> b
    b - "again" >> a
    flow = Flow(start=a)
    shared = {"n": 0, "target": loops}
    elapsed = timed(lambda: flow.run(shared))
    assert shared["n"] == loops, (shared["n"], loops)
    return elapsed


# --- batch nodes ----------------------------------------------------------------------------


class DoubleAll(BatchNode):
    def prep(self, shared):
        return list(range(shared["items"]))

    def exec(self, item):
        return item * 2

    def post(self, shared, prep_res, exec_res):
        shared["sum"] = sum(exec_res)


class DoubleAllAsync(AsyncParallelBatchNode):
    async def prep_async(self, shared):
        return list(range(shared["items"]))

    async def exec_async(self, item):
        return item * 2

    async def post_async(self, shared, prep_res, exec_res):
        shared["sum"] = sum(exec_res)


class DoubleAllLimited(DoubleAllAsync):
    """PocketFlow has no limit on items in flight, so the limit of 64 is a semaphore taken
    around each item's exec. It is created in prep_async so that it belongs to the running
    event loop. Since exec never awaits anything while holding it, no item ever waits for it:
    this measures what taking and releasing the semaphore costs."""

    async def prep_async(self, shared):
        self.sem = asyncio.Semaphore(64)
        return await super().prep_async(shared)

    async def exec_async(self, item):
        async with self.sem:
            return item * 2


def batch_seq(items):
    flow = Flow(start=DoubleAll())
    shared = {"items": items}
    elapsed = timed(lambda: flow.run(shared))
    assert shared["sum"] == items * (items - 1), shared["sum"]
    return elapsed


def batch_async(node_class, items):
    flow = AsyncFlow(start=node_class())
    shared = {"items": items}
    loop = event_loop()
    elapsed = timed(lambda: loop.run_until_complete(flow.run_async(shared)))
    assert shared["sum"] == items * (items - 1), shared["sum"]
    return elapsed


# --- batch flows ----------------------------------------------------------------------------


class AddParam(Node):
    def post(self, shared, prep_res, exec_res):
        shared["sum"] += self.params["i"]


class EveryI(BatchFlow):
    def prep(self, shared):
        return [{"i": i} for i in range(shared["items"])]


class AddParamAsync(AsyncNode):
    async def post_async(self, shared, prep_res, exec_res):
        shared["sum"] += self.params["i"]


class EveryIAsync(AsyncParallelBatchFlow):
    async def prep_async(self, shared):
        return [{"i": i} for i in range(shared["items"])]


def batch_flow(sub_runs):
    flow = EveryI(start=Flow(start=AddParam()))
    shared = {"items": sub_runs, "sum": 0}
    elapsed = timed(lambda: flow.run(shared))
    assert shared["sum"] == sub_runs * (sub_runs - 1) // 2, shared["sum"]
    return elapsed


def batch_async_flow(sub_runs):
    flow = EveryIAsync(start=AsyncFlow(start=AddParamAsync()))
    shared = {"items": sub_runs, "sum": 0}
    loop = event_loop()
    elapsed = timed(lambda: loop.run_until_complete(flow.run_async(shared)))
    assert shared["sum"] == sub_runs * (sub_runs - 1) // 2, shared["sum"]
    return elapsed


# --- fan-out: many items each sleeping 10 ms at the same time --------------------------------


class SleepEach(AsyncParallelBatchNode):
    async def prep_async(self, shared):
        return list(range(shared["items"]))

    async def exec_async(self, item):
        await asyncio.sleep(SLEEP_S)
        return 1

    async def post_async(self, shared, prep_res, exec_res):
        shared["done"] = sum(exec_res)


def fanout(items):
    flow = AsyncFlow(start=SleepEach())
    shared = {"items": items}
    loop = event_loop()
    elapsed = timed(lambda: loop.run_until_complete(flow.run_async(shared)))
    assert shared["done"] == items, shared["done"]
    return elapsed


# --- running ---------------------------------------------------------------------------------

_loop = None


def event_loop():
    """One event loop for every async run, made once, so no run pays for making one."""
    global _loop
    if _loop is None:
        _loop = asyncio.new_event_loop()
    return _loop


WORKLOADS = {
    "chain": chain,
    "batch-node/seq": batch_seq,
    "batch-node/concurrent": lambda n: batch_async(DoubleAllAsync, n),
    "batch-node/limit-64": lambda n: batch_async(DoubleAllLimited, n),
    "batch-flow/BatchFlow": batch_flow,
    "batch-flow/BatchAsyncFlow": batch_async_flow,
    "fanout": fanout,
}

_samples = {}


def wall_ns(workload, size, runs, warmup):
    """The wall ns of `runs` measured runs after `warmup` unmeasured ones; each
    (workload, size) is measured once, so a scaling row reuses its headline's runs."""
    if (workload, size) not in _samples:
        run = WORKLOADS[workload]
        for _ in range(warmup):
            run(size)
        _samples[workload, size] = [run(size) for _ in range(runs)]
    return _samples[workload, size]


def fanout_child(items, runs, warmup):
    """Body of the fresh child process: the fan-out's warm-up and measured runs, then the
    peak RSS of the whole process, in KiB."""
    wall_ns("fanout", items, runs, warmup)
    print(peak_rss_kib())


def peak_rss_kib():
    """This process's peak RSS in KiB.

    On Linux, ru_maxrss is not reset by exec: a child reports at least the peak its parent had
    reached when starting it, whatever the child itself used (here the parent has run the
    other workloads by then, and reaches about 165 MiB). VmHWM in /proc/self/status is the peak of this process's
    own memory since exec, so it is read first; ru_maxrss (KiB on Linux) is the fallback."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def peak_rss_mib(items, runs, warmup):
    out = subprocess.run(
        [sys.executable, __file__, "--fanout-child", str(items),
         "--runs", str(runs), "--warmup", str(warmup)],
        check=True, stdout=subprocess.PIPE, text=True,
    ).stdout
    return [int(out.strip()) / 1024]


def rows(runs, warmup):
    """Every figure as (key, unit, function giving its values). Nothing is measured until a
    function is called, so `--only` measures only what it prints."""

    def per(workload, size, count):
        return lambda: [ns / count for ns in wall_ns(workload, size, runs, warmup)]

    def ms(workload, size):
        return lambda: [ns / 1_000_000 for ns in wall_ns(workload, size, runs, warmup)]

    def over_floor(size):
        return lambda: [(ns - FLOOR_NS) / size for ns in wall_ns("fanout", size, runs, warmup)]

    out = [
        ("chain", "ns/node run", per("chain", 1_000_000, 1_000_000)),
        ("batch-node/seq", "ns/item", per("batch-node/seq", 100_000, 100_000)),
        ("batch-node/concurrent", "ns/item", per("batch-node/concurrent", 100_000, 100_000)),
        ("batch-node/limit-64", "ns/item", per("batch-node/limit-64", 100_000, 100_000)),
        ("batch-flow/BatchFlow", "ns/sub-run", per("batch-flow/BatchFlow", 100_000, 100_000)),
        ("batch-flow/BatchAsyncFlow", "ns/sub-run",
         per("batch-flow/BatchAsyncFlow", 100_000, 100_000)),
        ("fanout/wall", "ms", ms("fanout", 10_000)),
        ("fanout/peak-rss", "MiB", lambda: peak_rss_mib(10_000, runs, warmup)),
    ]
    for n in (1_000, 10_000, 100_000, 1_000_000):
        out.append((f"scaling/chain/{n}", "ns/node run", per("chain", n, n)))
    for n in (1_000, 10_000, 100_000, 1_000_000):
        out.append((f"scaling/batch-node/{n}", "ns/item", per("batch-node/seq", n, n)))
    for n in (1_000, 10_000, 100_000):
        out.append((f"scaling/fanout/{n}", "ns/item over floor", over_floor(n)))
    return out


def main():
    parser = argparse.ArgumentParser(description="The miniflow benchmark workloads on PocketFlow.")
    parser.add_argument("--runs", type=int, default=5, help="measured runs per figure (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up runs per figure (default 1)")
    parser.add_argument("--tsv", action="store_true", help="machine-readable lines for compare.py")
    parser.add_argument("--only", metavar="KEYPREFIX", default="",
                        help="only the workloads whose key starts with this")
    parser.add_argument("--fanout-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be at least 1 and --warmup at least 0")

    if args.fanout_child is not None:
        fanout_child(args.fanout_child, args.runs, args.warmup)
        return

    selected = [row for row in rows(args.runs, args.warmup) if row[0].startswith(args.only)]
    if not selected:
        parser.error(f"no workload key starts with {args.only!r}")

    pocketflow_version = importlib.metadata.version("pocketflow")
    python_version = platform.python_version()
    keys = {key for key, _, _ in selected}
    notes = [
        ("fanout/peak-rss",
         f"fanout/peak-rss: one figure, the peak RSS of a fresh child process doing the fan-out "
         f"of 10,000 ({args.warmup} warm-up and {args.runs} measured runs)"),
        ("batch-node/limit-64",
         "batch-node/limit-64: PocketFlow has no in-flight limit; an asyncio.Semaphore(64) "
         "is taken around each item's exec"),
        (None, "gc.collect() before every run; the garbage collector stays on"),
    ]
    notes = [text for key, text in notes if key is None or key in keys]

    if args.tsv:
        print(f"# pocketflow {pocketflow_version}")
        print(f"# python {python_version}")
        print(f"# median, min and max of {args.runs} runs after {args.warmup} warm-up run(s)")
        for note in notes:
            print(f"# {note}")
    else:
        print(f"PocketFlow {pocketflow_version} on Python {python_version}: "
              f"median, min and max of {args.runs} runs after {args.warmup} warm-up run(s)")
        key_width = max(len("workload"), *(len(key) for key, _, _ in selected))
        unit_width = max(len("unit"), *(len(unit) for _, unit, _ in selected))
        print(f"{'workload':<{key_width}}  {'unit':<{unit_width}}  "
              f"{'median':>10}  {'min':>10}  {'max':>10}")
    sys.stdout.flush()

    # Each row is printed as soon as it is measured, which also shows the progress.
    for key, unit, values in selected:
        values = values()
        median, low, high = statistics.median(values), min(values), max(values)
        if args.tsv:
            print(f"{key}\t{unit}\t{median:.3f}\t{low:.3f}\t{high:.3f}\t{len(values)}")
        else:
            print(f"{key:<{key_width}}  {unit:<{unit_width}}  "
                  f"{median:>10.1f}  {low:>10.1f}  {high:>10.1f}")
        sys.stdout.flush()

    if not args.tsv:
        print()
        for note in notes:
            print(note)


if __name__ == "__main__":
    main()
