"""Comparing two reports (`oracle run --json`, an audit's report.json): what got fixed, what regressed.

Rows are keyed by case id, framework, impl, dtype and output. A row whose verdict went from not ok to ok is
fixed, from ok to anything else regressed, from one failure to another changed; rows only in one report are
added or removed. A case the tool could not run (its `error`) is a case-level entry: one that errors now but
did not before regressed; one that errored before and runs now has its rows added (they were not measured).
A case only in the old report is one `removed` entry, not one per row. A case whose file changed between the
reports (its results' `digest` differs) is one `edited` entry: its rows measure another case, so they are
neither fixed nor regressed. Pure: documents in, plain data and lines out.
"""

from __future__ import annotations

import json
from typing import Any

from oracle.report import SCHEMA_VERSION

KINDS = ("regressed", "fixed", "changed", "added", "removed", "edited")
ROW_KEY = ("framework", "impl", "dtype", "output")


class ReportError(ValueError):
    """The text is not a report this oracle can read."""


def read(text: str) -> dict:
    """Parse a report document and check what `compare` relies on; ReportError says what is missing."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ReportError(f"not JSON: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("cases"), list):
        raise ReportError("not an oracle report: no 'cases' list")
    version = doc.get("schema_version", 1)  # reports before schema_version existed are version 1
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ReportError(f"schema_version {version!r}: this oracle reads up to {SCHEMA_VERSION}")
    verdicts(doc)
    return doc


def verdicts(doc: dict) -> dict[str, dict[tuple, str] | str]:
    """case id -> {(framework, impl, dtype, output): verdict}, or the case's error when it did not run."""
    out: dict[str, dict[tuple, str] | str] = {}
    for case in doc["cases"]:
        if not isinstance(case, dict) or not isinstance(case.get("id"), str):
            raise ReportError("a case without an id")
        if case["id"] in out:
            raise ReportError(f"case {case['id']!r} appears twice")
        out[case["id"]] = str(case["error"]) if "error" in case else _rows(case)
    return out


def _rows(case: dict) -> dict[tuple, str]:
    rows = case.get("results")
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise ReportError(f"case {case['id']!r}: no 'results' list")
    out = {}
    for row in rows:
        key = tuple(row.get(field, "formula" if field == "impl" else None) for field in ROW_KEY)  # impl came later
        if not all(isinstance(part, str) for part in (*key, row.get("verdict"))):
            raise ReportError(f"case {case['id']!r}: a result without {', '.join(ROW_KEY)} and verdict")
        out[key] = row["verdict"]
    return out


def compare(old: dict, new: dict) -> dict[str, Any]:
    """Each kind of change (KINDS) as a list of {case, framework, impl, dtype, output, old, new} (a case-level
    entry has None for the row fields and the case's `error`), the count of unchanged rows, and both runs'
    environment.versions."""
    before, after = verdicts(old), verdicts(new)
    old_digests, new_digests = _digests(old), _digests(new)
    changes: dict[str, Any] = {kind: [] for kind in KINDS}
    unchanged = 0
    for case in [*before, *(c for c in after if c not in before)]:
        was, now = before.get(case), after.get(case)
        a, b = old_digests.get(case), new_digests.get(case)
        if was is not None and now is not None and a and b and a != b:  # another case under the same id
            differ = sum(_measured(was).get(k) != _measured(now).get(k) for k in {*_measured(was), *_measured(now)})
            changes["edited"].append({**_entry(case, (None,) * len(ROW_KEY), a, b), "rows": differ})
        elif now is None and was is not None:  # the whole case is gone: one entry
            changes["removed"].append({**_case_entry(case, was, now), "rows": len(_measured(was))})
        elif isinstance(now, str) and isinstance(was, str):
            unchanged += 1
        elif isinstance(now, str):  # a case that errors now
            changes["regressed"].append(_case_entry(case, was, now))
        else:  # rows against rows; a case that errored before has its rows added
            was_rows, now_rows = _measured(was), _measured(now)
            for key in [*was_rows, *(k for k in now_rows if k not in was_rows)]:
                a, b = was_rows.get(key), now_rows.get(key)
                if a == b:
                    unchanged += 1
                else:
                    changes[_kind(a, b)].append(_entry(case, key, a, b))
    return {**changes, "unchanged": unchanged,
            "versions": {"old": _versions(old), "new": _versions(new)}}


def _digests(doc: dict) -> dict[str, str]:
    """case id -> the content digest of its file, where the report records one (older reports do not)."""
    return {c["id"]: str(c["digest"]) for c in doc["cases"] if isinstance(c, dict) and c.get("digest")}


def _case_entry(case: str, was: dict | str | None, now: dict | str | None) -> dict:
    """A case-level change: old and new are "ran", "error" or None (absent); `error` is the case's message."""
    def state(x):
        return "error" if isinstance(x, str) else None if x is None else "ran"

    return {**_entry(case, (None,) * len(ROW_KEY), state(was), state(now)),
            "error": now if isinstance(now, str) else was}


def _measured(rows: dict | str | None) -> dict:
    return rows if isinstance(rows, dict) else {}


def _kind(old: str | None, new: str | None) -> str:
    if old is None:
        return "added"
    if new is None:
        return "removed"
    if new == "ok":
        return "fixed"
    return "regressed" if old == "ok" else "changed"


def _entry(case: str, key: tuple, old: str | None, new: str | None) -> dict:
    return {"case": case, **dict(zip(ROW_KEY, key)), "old": old, "new": new}


def _versions(doc: dict) -> dict[str, str]:
    versions = (doc.get("environment") or {}).get("versions") or {}
    return {str(k): str(v) for k, v in versions.items()} if isinstance(versions, dict) else {}


def lines(changes: dict[str, Any], old_name: str, new_name: str) -> list[str]:
    """What `oracle diff` prints: both runs' versions, one line per change, then the counts."""
    out = [f"{label} ({name}): {_shown_versions(changes['versions'][label])}"
           for label, name in (("old", old_name), ("new", new_name))]
    for kind in KINDS:
        out += [f"{kind}: {_described(entry)}" for entry in changes[kind]]
    counted = [kind for kind in KINDS if kind != "edited" or changes[kind]]
    out.append(", ".join(f"{len(changes[kind])} {kind}" for kind in counted) + f", {changes['unchanged']} unchanged")
    return out


def _shown_versions(versions: dict[str, str]) -> str:
    return ", ".join(f"{name} {version}" for name, version in versions.items()) or "versions not recorded"


def _described(entry: dict) -> str:
    change = f"{entry['old'] or '(absent)'} -> {entry['new'] or '(absent)'}"
    if "rows" in entry and "error" not in entry:  # edited: old and new are the digests
        return (f"{entry['case']}: case file changed (digest {change}); {entry['rows']} rows differ, "
                "not compared as fixed or regressed")
    if entry["framework"] is None and entry["new"] is None:  # the case as a whole is gone
        said = f": {entry['error']}" if entry["old"] == "error" else f" ({entry['rows']} row{'s' * (entry['rows'] != 1)})"
        return f"{entry['case']}{said}"
    if entry["framework"] is None:  # the case as a whole: it could not run
        return f"{entry['case']}: {change}: {entry['error']}"
    return f"{entry['case']} {' '.join(entry[field] for field in ROW_KEY)}: {change}"
