"""Compare two audits' results.jsonl (`oracle audit cases/ --out DIR` at two commits) over the cases both have.

    python scripts/compare_audits.py BEFORE/results.jsonl AFTER/results.jsonl

Prints rows per framework x verdict, how many failure rows (not inherent) have a traced cause op, the
`uncertain` count, and every verdict change by framework (what issue 12's note reports)."""

from __future__ import annotations

import collections
import json
import sys

VERDICTS = ("ok", "overflow", "underflow", "cancellation", "ill-conditioning", "mismatch", "uncertain", "domain",
            "error")
FAILURES = ("overflow", "underflow", "cancellation", "ill-conditioning", "mismatch", "uncertain")


def load(path: str) -> dict[str, dict]:
    with open(path) as f:
        return {d["id"]: d for d in map(json.loads, f)}


def summary(name: str, results: dict[str, dict]) -> None:
    counts = collections.Counter((r["framework"], r["verdict"]) for c in results.values() for r in c.get("results", []))
    print(f"{name}\nfw     " + " ".join(f"{v[:8]:>8}" for v in VERDICTS))
    for fw in ("tf", "torch", "jax"):
        print(f"{fw:6} " + " ".join(f"{counts[fw, v]:>8}" for v in VERDICTS))
    for fw in ("tf", "torch", "jax"):
        rows = [r for c in results.values() for r in c.get("results", []) if r["framework"] == fw
                and r["verdict"] in FAILURES and not r.get("inherent")]
        traced = sum(1 for r in rows if (r.get("cause") or {}).get("traced"))
        print(f"  {fw}: {len(rows)} failure rows (not inherent), cause traced in {traced}, "
              f"uncertain {sum(r['verdict'] == 'uncertain' for r in rows)}")


def main(before_path: str, after_path: str) -> None:
    before, after = load(before_path), load(after_path)
    common = sorted(set(before) & set(after))
    summary(f"before ({len(common)} cases)", {k: before[k] for k in common})
    summary(f"after ({len(common)} cases)", {k: after[k] for k in common})
    changes = collections.Counter()
    for k in common:
        old = {(r["framework"], r["impl"], r["dtype"], r["output"]): r["verdict"] for r in before[k].get("results", [])}
        for r in after[k].get("results", []):
            key = (r["framework"], r["impl"], r["dtype"], r["output"])
            if key in old and old[key] != r["verdict"]:
                changes[r["framework"], old[key], r["verdict"]] += 1
    print("verdict changes:")
    for (fw, was, now), n in sorted(changes.items()):
        print(f"  {fw}: {was} -> {now}: {n}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
