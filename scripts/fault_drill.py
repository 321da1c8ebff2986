"""The fault drill (`make fault-drill`): every fault scenario, run for real, in one table.

    python scripts/fault_drill.py [--tiny] [--out DIR]

Runs the tests marked `drill` (tests/test_faults.py, test_bench.py, test_inspect.py; the slow ones too) in one pytest
process and prints one row per test: scenario, what was injected, what speedlab did, what was lost, pass / fail /
skipped. Each test states its row with the figures it measured (the `drill` fixture in tests/conftest.py), so the
table says what happened in this run, not what should have. The training faults run on the quick preset's model at
64 px (1,280 training images, so that 8 epochs stay short); `--tiny` uses the suites' tiny model instead.

Writes drill.md and result.json (with the rows, versions and commit) to a run directory under artifacts/runs/, and
the table to docs/results/fault-drill.md and .csv.
Exits 1 when a row failed or was skipped: a skipped scenario (no Chromium, no mount namespace) was not drilled.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from speedlab import record, study  # noqa: E402
from speedlab.fsutil import atomic_write_text  # noqa: E402
from speedlab.tables import markdown  # noqa: E402

TEST_FILES = ["tests/test_faults.py", "tests/test_bench.py", "tests/test_inspect.py"]
COLUMNS = ("Scenario", "Injected", "What speedlab did", "Lost", "Result")


def run_tests(junit: Path, tiny: bool, only: str | None = None) -> int:
    env = {**os.environ, **({} if tiny else {"SPEEDLAB_DRILL": "quick"})}
    command = [sys.executable, "-m", "pytest", "-m", "drill", "-q", "-p", "no:cacheprovider",
               "-o", "junit_family=xunit1", f"--junitxml={junit}", *TEST_FILES,
               *(["-k", only] if only else [])]  # fmt: skip
    print("fault drill: " + " ".join(command[1:]), flush=True)
    return subprocess.run(command, cwd=REPO, env=env).returncode


def rows_of(junit: Path) -> list[dict[str, str]]:
    """One row per drill test, from pytest's JUnit XML: the properties the test recorded and its outcome."""
    rows = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        if "drill_scenario" not in props:
            continue
        problem = next((case.find(tag) for tag in ("failure", "error", "skipped") if case.find(tag) is not None), None)
        if problem is None:
            result = "pass"
        else:
            kind = "skipped" if problem.tag == "skipped" else "FAIL"
            result = f"{kind}: {(problem.get('message') or '').splitlines()[0][:160]}"
        rows.append({
            "Scenario": props["drill_scenario"],
            "Injected": props.get("drill_injected", f"({case.get('name')} ended before recording)"),
            "What speedlab did": props.get("drill_did", "-"),
            "Lost": props.get("drill_lost", "-"),
            "Result": result,
            "test": f"{case.get('classname')}::{case.get('name')}",
            "seconds": case.get("time"),
        })  # fmt: skip
    return sorted(rows, key=lambda r: r["Scenario"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the suites' tiny model instead of the quick preset's")
    parser.add_argument("--only", help="only the drill tests pytest's -k EXPR selects (a partial drill)")
    parser.add_argument("--study", default="fault-drill", help="docs/results/<study>.md and .csv")
    parser.add_argument("--results-dir", type=Path, default=study.RESULTS_DIR, help="where the study's table goes")
    args = parser.parse_args()
    run_dir = record.new_run_dir("fault-drill")
    config = {"preset": "tiny" if args.tiny else "quick", "tests": TEST_FILES}
    with record.recording(run_dir, "fault_drill", config) as rec:
        junit = run_dir / "junit.xml"
        pytest_rc = run_tests(junit, args.tiny, args.only)
        rows = rows_of(junit)
        passed = sum(r["Result"] == "pass" for r in rows)
        summary = f"{passed} of {len(rows)} drill rows passed (pytest exit code {pytest_rc})"
        rec.update({"rows": rows, "passed": passed, "total": len(rows), "pytest_exit_code": pytest_rc})
        if passed != len(rows) or pytest_rc != 0 or not rows:
            rec.set_status("failed", summary)
        cells = [[row[c] for c in COLUMNS] for row in rows]
        table = markdown(COLUMNS, cells)
        atomic_write_text(run_dir / "drill.md", f"# Fault drill\n\n{table}\n\n{summary}\n")
    md, _ = study.write(
        args.study, COLUMNS, cells, results_dir=args.results_dir,
        title="The fault drill: every fault scenario, run for real" + (f" (only -k {args.only})" if args.only else ""),
        machine=study.machine_of(rec.data),
        notes=[f"{summary}. The training faults ran on the {config['preset']} preset's model. Command: "
               f"`python scripts/fault_drill.py{' --tiny' if args.tiny else ''}`"
               + (f" `--only {args.only!r}`" if args.only else "")],
    )  # fmt: skip
    print(f"\n{md.read_text()}\nresults: {md}, {run_dir / 'drill.md'}, {record.result_path(run_dir)}")
    return 0 if passed == len(rows) and rows and pytest_rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
