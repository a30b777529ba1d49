"""Runs the miniflow benchmarks and the same workloads on Python PocketFlow, and prints the
ratio per workload as a Markdown table.

    python3 benches/compare.py [--runs N] [--warmup N]

It works from any folder. PocketFlow lives in its own virtual environment under target/; if
that is missing, it is made first with:

    python3 -m venv target/pocketflow-venv && target/pocketflow-venv/bin/pip install pocketflow==0.0.3

Then it runs `cargo bench --bench miniflow -- --tsv` (its compile progress shows as it goes)
and `target/pocketflow-venv/bin/python benches/pocketflow.py --tsv`, joins the two on the
workload key, and prints the machine and one table, in the order miniflow prints its keys.
The ratio is PocketFlow's median over miniflow's: how many times more time (or memory) it
takes. `--runs` and `--warmup`, when given, go to both sides; otherwise each uses its own
defaults. Standard library only.
"""

import argparse
import math
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO / "target" / "pocketflow-venv" / "bin" / "python"
VENV_COMMAND = (
    "python3 -m venv target/pocketflow-venv && "
    "target/pocketflow-venv/bin/pip install pocketflow==0.0.3"
)


def fail(message):
    print(f"compare.py: {message}", file=sys.stderr)
    sys.exit(1)


def run(command, what):
    """Runs `command` in the repository with its stderr going straight to the terminal, and
    returns its stdout; stops everything if it fails."""
    print(f"$ {' '.join(command)}", file=sys.stderr, flush=True)
    try:
        done = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    except OSError as error:
        fail(f"could not run {what}: {error}")
    if done.returncode != 0:
        fail(f"{what} failed (exit status {done.returncode}): {' '.join(command)}")
    return done.stdout


def parse_tsv(text):
    """The figures of a `--tsv` output, as (rows by key, keys in order, comment lines).

    A figure line is key, unit, median, min, max, runs, separated by tabs; lines starting
    with `#` are comments; blank lines are skipped."""
    rows, order, comments = {}, [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            comments.append(line[1:].strip())
            continue
        fields = line.split("\t")
        if len(fields) < 5:
            raise ValueError(f"line {number} is not key, unit, median, min, max: {line!r}")
        key, unit = fields[0], fields[1]
        try:
            median, low, high = (float(field) for field in fields[2:5])
        except ValueError:
            raise ValueError(f"line {number} has a figure that is not a number: {line!r}")
        if key not in rows:
            order.append(key)
        rows[key] = {"unit": unit, "median": median, "min": low, "max": high}
    return rows, order, comments


def number(x):
    """Three significant figures or one decimal, whichever is more (as the Rust table does)."""
    if math.isnan(x):
        return "NaN"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def cell(row):
    if row is None:
        return "—"
    if row["min"] == row["max"]:
        return number(row["median"])  # one figure, like the peak RSS
    return f"{number(row['median'])} [{number(row['min'])}–{number(row['max'])}]"


def ratio(ours, theirs):
    """PocketFlow's median over miniflow's, like `156×`, or `—` when there is no ratio."""
    if ours is None or theirs is None:
        return "—"
    if ours["unit"] != theirs["unit"]:
        return f"— (units differ: {ours['unit']} / {theirs['unit']})"
    a, b = ours["median"], theirs["median"]
    # A zero, negative (a time over a floor can come out below it) or NaN median has no
    # meaningful ratio.
    if not (a > 0 and b > 0):
        return "—"
    r = b / a
    if r >= 10:
        return f"{r:.0f}×"
    if r >= 1:
        return f"{r:.1f}×"
    return f"{r:.2f}×"


def table(ours, our_order, theirs, their_order):
    """The Markdown table: miniflow's keys in its order, then any keys only PocketFlow has."""
    keys = our_order + [key for key in their_order if key not in ours]
    lines = [
        "| workload | unit | miniflow (median [min–max]) | PocketFlow (median [min–max]) | ratio |",
        "|---|---|---:|---:|---:|",
    ]
    for key in keys:
        a, b = ours.get(key), theirs.get(key)
        unit = (a or b)["unit"]
        lines.append(f"| {key} | {unit} | {cell(a)} | {cell(b)} | {ratio(a, b)} |")
    return "\n".join(lines)


def comment_value(comments, name):
    """The rest of the comment line `name VALUE`, or None."""
    for comment in comments:
        if comment.startswith(name + " "):
            return comment[len(name) + 1:]
    return None


def machine(pocketflow_comments):
    cpu = None
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        rustc = subprocess.run(
            ["rustc", "--version"], cwd=REPO, stdout=subprocess.PIPE, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        rustc = "unknown"
    lines = []
    if cpu:
        lines.append(f"- CPU: {cpu}")
    lines += [
        f"- CPUs: {os.cpu_count()}",
        f"- OS: {platform.platform()}",
        f"- Rust: {rustc}",
        f"- Python: {comment_value(pocketflow_comments, 'python') or 'unknown'}",
        f"- PocketFlow: {comment_value(pocketflow_comments, 'pocketflow') or 'unknown'}",
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(
        description="Run the miniflow and PocketFlow benchmarks and print the ratios."
    )
    parser.add_argument("--runs", type=int, help="measured runs per figure, on both sides")
    parser.add_argument("--warmup", type=int, help="warm-up runs per figure, on both sides")
    # For trying the table out: read miniflow's `--tsv` output from a file instead of
    # running cargo bench.
    parser.add_argument("--miniflow-tsv", metavar="FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()

    passed = []
    if args.runs is not None:
        passed += ["--runs", str(args.runs)]
    if args.warmup is not None:
        passed += ["--warmup", str(args.warmup)]

    if not VENV_PYTHON.exists():
        print(f"$ {VENV_COMMAND}", file=sys.stderr, flush=True)
        if subprocess.run(VENV_COMMAND, shell=True, cwd=REPO).returncode != 0:
            fail(f"could not set up PocketFlow: {VENV_COMMAND}")

    if args.miniflow_tsv:
        try:
            miniflow_out = Path(args.miniflow_tsv).read_text()
        except OSError as error:
            fail(f"cannot read {args.miniflow_tsv}: {error}")
    else:
        miniflow_out = run(
            ["cargo", "bench", "--bench", "miniflow", "--", "--tsv", *passed], "cargo bench"
        )
    pocketflow_out = run(
        [str(VENV_PYTHON), str(REPO / "benches" / "pocketflow.py"), "--tsv", *passed],
        "benches/pocketflow.py",
    )

    try:
        ours, our_order, our_comments = parse_tsv(miniflow_out)
    except ValueError as error:
        fail(f"cannot read miniflow's output: {error}")
    try:
        theirs, their_order, their_comments = parse_tsv(pocketflow_out)
    except ValueError as error:
        fail(f"cannot read PocketFlow's output: {error}")
    if not ours:
        fail("miniflow printed no figures")
    if not theirs:
        fail("PocketFlow printed no figures")

    print(machine(their_comments))
    print()
    print(table(ours, our_order, theirs, their_order))
    print()
    print("Ratio: PocketFlow's median over miniflow's. Notes from each side:")
    for comment in our_comments:
        print(f"- miniflow: {comment}")
    for comment in their_comments:
        # The versions are in the machine lines already.
        if comment.split(" ", 1)[0] in ("python", "pocketflow"):
            continue
        print(f"- PocketFlow: {comment}")


if __name__ == "__main__":
    main()
