"""Time spent recording and replaying tf/torch runs per case (oracle.runner._recorded) over the shipped corpus.

    python scripts/recording_cost.py

Imports excluded (each case runs in this one process): what issue 12 calls the extra time recording costs."""
import statistics
import time

from oracle import case as case_io
from oracle import runner

spent = {}
original = runner._recorded
def timed(case, *args, **kw):
    start = time.perf_counter()
    try:
        return original(case, *args, **kw)
    finally:
        spent[case.id] = spent.get(case.id, 0.0) + time.perf_counter() - start
runner._recorded = timed
cases, errors = case_io.load_all(["cases/"])
total = {}
for c in cases:
    if c.file.startswith("cases/hunt"):
        continue
    start = time.perf_counter()
    runner.run_case(c)
    total[c.id] = time.perf_counter() - start
rec = {k: v for k, v in spent.items()}
print(f"cases: {len(total)}; cases that recorded: {len(rec)}")
print(f"recording+replay per recording case: median {statistics.median(rec.values()):.2f} s, mean {statistics.mean(rec.values()):.2f} s, max {max(rec.values()):.2f} s ({max(rec, key=rec.get)})")
print(f"share of those cases' run_case time: median {statistics.median(rec[k] / total[k] for k in rec):.0%}")
allc = [rec.get(k, 0.0) for k in total]
print(f"over all {len(total)} cases: median {statistics.median(allc):.2f} s, mean {statistics.mean(allc):.2f} s; run_case median {statistics.median(total.values()):.2f} s")
