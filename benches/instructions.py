"""Counts the instructions miniflow executes per unit of work: the figure every performance
claim is checked against, since it is the same on any x86-64 machine however busy it is
(wall times on a shared machine swing 2-4x from one minute to the next).

    python3 benches/instructions.py                  # every workload below
    python3 benches/instructions.py chain            # the workloads whose key starts so
    python3 benches/instructions.py --scale 0.1      # sizes times 0.1: quicker, same figures
    python3 benches/instructions.py --preload /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 chain
                                                     # with another malloc (LD_PRELOAD)

It builds the benchmark program in release (`cargo bench --bench miniflow --no-run`), then
runs each workload once at size n and once at 2n under valgrind, through the program's
`--count KEY N` (one untimed run, no warm-up):

    setarch -R valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file=DIR/out \
        ./miniflow-HASH --count KEY N

and prints (I(2n) - I(n)) / n, where I is the instructions executed by the thread that runs the
flow (the main thread: nothing in a run is spawned): the instructions one more unit of work
costs (a node run, an item, a sub-run), with what a run costs once (start-up, the executor,
the flow's first check) cancelled out. Callgrind counts per thread, which leaves out smol's
timer thread (async-io's driver, started by `smol::block_on`): it does a clock-dependent
amount of work, which moved cachegrind's whole-process count by up to 15,000 instructions
between two runs. (Callgrind also counts a little lower than cachegrind on some workloads:
792 against 794 per `BatchFlow` sub-run, 363 both per chain node run; so compare figures
from this script with figures from this script only.) Nothing else outside the program moves the counts: it runs
with an empty environment, from its own folder by a relative path (so neither the shell's
variables nor the checkout's path shift the stack), with address randomization off
(`setarch -R`: where buffers land changes what `memcpy` executes). Two runs agree to within
a few dozen instructions per run (the main thread's atomics meeting the timer thread's).
The counts change with the code and with the compiler (even with the executor's inlining), so
compare figures only from one `rustc --version` (printed first) and one harness.

Needs valgrind (Debian: `apt-get install valgrind`). About two minutes on 2 cores, most of it
the release build the first time. Standard library only.
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Key (as in benches/miniflow.rs), unit, n. Each n is large enough that the run's fixed cost,
# which does not quite cancel (a buffer grown once more at 2n), is below 0.01 per unit.
WORKLOADS = [
    ("chain", "node run", 1_000_000),
    ("batch-node/seq", "item", 200_000),
    ("batch-node/concurrent", "item", 200_000),
    ("batch-node/limit-64", "item", 200_000),
    ("batch-flow/BatchFlow", "sub-run", 100_000),
    ("batch-flow/BatchAsyncFlow", "sub-run", 100_000),
    # A `BatchFlow` observed by a `Trace`. While the trace searches its rows for each sub-run
    # (quadratic), this figure grows with n; a small n keeps it quick.
    ("batch-flow/trace", "sub-run", 2_000),
]


def fail(message):
    print(f"instructions.py: {message}", file=sys.stderr)
    sys.exit(1)


def bench_program():
    """Builds the benchmark program in release and returns its path."""
    command = ["cargo", "bench", "--bench", "miniflow", "--no-run", "--message-format=json"]
    print(f"$ {' '.join(command)}", file=sys.stderr, flush=True)
    done = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        fail(f"the build failed (exit status {done.returncode})")
    for line in done.stdout.splitlines():
        message = json.loads(line)
        target = message.get("target", {})
        if (
            message.get("reason") == "compiler-artifact"
            and target.get("name") == "miniflow"
            and "bench" in target.get("kind", [])
            and message.get("executable")
        ):
            return Path(message["executable"])
    fail("cargo built no benchmark program named miniflow")


# Address randomization off for the program (util-linux; always there on Debian).
SETARCH = ["setarch", "-R"] if shutil.which("setarch") else []


def instructions(valgrind, program, key, n, env):
    """The instructions that the main thread executes in one run of workload `key` at size
    `n`."""
    with tempfile.TemporaryDirectory(prefix="miniflow-instructions-") as out:
        command = [
            *SETARCH,
            valgrind,
            "--tool=callgrind",
            "--separate-threads=yes",
            f"--callgrind-out-file={out}/out",
            f"./{program.name}",
            "--count",
            key,
            str(n),
        ]
        done = subprocess.run(
            command, cwd=program.parent, env=env, capture_output=True, text=True
        )
        if done.returncode != 0 or done.stdout.strip() != f"{key} {n}":
            fail(f"{' '.join(command)} failed (exit status {done.returncode}):\n{done.stderr}")
        # One file per thread, numbered from 1 in the order the threads started.
        main_thread = Path(out, "out-01").read_text()
    found = re.search(r"^totals:\s+(\d+)", main_thread, re.MULTILINE)
    if not found:
        fail(f"no instruction total in callgrind's output for {key} {n}")
    return int(found.group(1))


def version(command):
    try:
        return subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main():
    parser = argparse.ArgumentParser(
        description="Count miniflow's instructions per unit of work under valgrind."
    )
    parser.add_argument("prefixes", nargs="*", metavar="WORKLOAD", help="key prefixes")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every n by this")
    parser.add_argument("--preload", metavar="LIB", help="run with LD_PRELOAD=LIB (a malloc)")
    args = parser.parse_args()
    env = {"LD_PRELOAD": str(Path(args.preload).resolve())} if args.preload else {}

    valgrind = shutil.which("valgrind")
    if not valgrind:
        fail("valgrind is not installed (Debian: apt-get install valgrind)")
    if not SETARCH:
        print("instructions.py: no setarch; counts may vary by a little", file=sys.stderr)
    chosen = [
        (key, unit, max(2, round(n * args.scale)) // 2 * 2)  # the chain needs an even n
        for key, unit, n in WORKLOADS
        if not args.prefixes or any(key.startswith(p) for p in args.prefixes)
    ]
    if not chosen:
        fail(f"no workload starts with {' or '.join(args.prefixes)}")
    program = bench_program()

    preloaded = f"; LD_PRELOAD={env['LD_PRELOAD']}" if env else ""
    print(f"# {version(['rustc', '--version'])}; {version([valgrind, '--version'])}{preloaded}")
    print(f"{'workload':<27} {'unit':>9} {'n':>9} {'I(n)':>14} {'I(2n)':>14} {'per unit':>12}")
    for key, unit, n in chosen:
        once = instructions(valgrind, program, key, n, env)
        twice = instructions(valgrind, program, key, 2 * n, env)
        per_unit = (twice - once) / n
        print(f"{key:<27} {unit:>9} {n:>9} {once:>14} {twice:>14} {per_unit:>12.3f}", flush=True)


if __name__ == "__main__":
    main()
