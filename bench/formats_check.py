"""Run a folder of documents through the pipeline and report per format what completed
and what failed, with which reason (``make formats-check DIR=<folder>``).

The format is the file's extension (the pipeline itself sniffs content); needs a running
devstack (``ragstream up``)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path


def main() -> int:
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        print("usage: formats_check.py <folder>", file=sys.stderr)
        return 2
    folder = Path(sys.argv[1])
    run = subprocess.run(
        [str(Path(sys.executable).parent / "ragstream"), "ingest", "--wait", "--json", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    if not lines:
        print(run.stdout + run.stderr, file=sys.stderr)
        return 1
    report = json.loads(lines[-1])
    done: Counter[str] = Counter()
    failed: dict[str, Counter[str]] = defaultdict(Counter)
    for item in report["items"]:
        fmt = Path(item["path"]).suffix.lower().lstrip(".") or "(none)"
        if item["status"] == "complete":
            done[fmt] += 1
        else:
            failed[fmt][f"{item['status']}: {item['error'] or ''}"[:160]] += 1
    for fmt in sorted(set(done) | set(failed)):
        total = done[fmt] + sum(failed[fmt].values())
        print(f"{fmt:6} {done[fmt]}/{total} complete")
        for reason, count in failed[fmt].most_common():
            print(f"         {count} x {reason}")
    print(
        f"{report['documents']} documents: {report['complete']} complete, "
        f"{report['failed']} failed, {report['stuck']} not finished"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
