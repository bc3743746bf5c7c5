"""Run every benchmarks/bench_*.py in turn (one at a time: they time things on all cores).

Usage: python benchmarks/run_all.py [--quick] [NAME ...]   e.g. `python benchmarks/run_all.py onnx`
--quick sets FASFLOW_BENCH_QUICK=1 for the benchmarks that have a small variant (scale, decode).
Exit status: non-zero when any benchmark failed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    env = dict(os.environ)
    if "--quick" in argv:
        argv = [a for a in argv if a != "--quick"]
        env["FASFLOW_BENCH_QUICK"] = "1"
    scripts = sorted(HERE.glob("bench_*.py"))
    if argv:
        wanted = {name.removeprefix("bench_").removesuffix(".py") for name in argv}
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in wanted]
        if not scripts:
            print(f"run_all: no benchmark named {sorted(wanted)}", file=sys.stderr)
            return 2
    failed = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, str(script)], cwd=HERE.parent, env=env)
        print(f"== {script.name}: exit {code} after {time.perf_counter() - start:.1f} s", flush=True)
        if code != 0:
            failed.append(script.name)
    if failed:
        print(f"run_all: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
