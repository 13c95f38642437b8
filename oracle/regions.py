"""Per-region expectations: the `regions` field of a sweep or search case (one swept input) states the verdict in
each region of that input, with exact ends, per dtype, framework, impl label and output:

    regions:
      float32:
        jax:
          formula:
            value: [ok from -1000.0 to 88.72283, overflow (spurious) from 88.72284 to 1000.0]

Each entry is `<verdict>[ (inherent|spurious)] from <low> to <high>`; the list covers the grid's range in order, as
the sweep's certified, bisected regions do (`oracle.boundaries`): `oracle check` compares them exactly (each end
as the dtype's nearest value; an entry without `(inherent)`/`(spurious)` accepts either), and `oracle check
--update` writes the observed ones into the entries already listed (an empty list asks for them). A case with
`regions` is refined by every command that runs it, within the case's time budget; where that bisection stopped
short and the regions differ, the outcome is "not checked", never failed on a bracket.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from oracle.floats import fmt, round_to
from oracle.verdicts import SEVERITY

ENTRY = re.compile(r"^\s*(?P<verdict>[a-z-]+)(?:\s+\((?P<kind>inherent|spurious)\))?\s+from\s+(?P<low>\S+)\s+"
                   r"to\s+(?P<high>\S+)\s*$")
FORM = "'<verdict>[ (inherent|spurious)] from <low> to <high>', e.g. 'overflow (spurious) from 88.72284 to 1000.0'"
Key = tuple[str, str, str, str]  # dtype, framework, impl, output
KINDED = ("overflow", "underflow")  # verdicts whose text says inherent or spurious


def label_text(verdict: str, inherent: bool | None) -> str:
    """A verdict as a region names it: an overflow or underflow says whether it is inherent (the true value
    itself leaves the dtype) or spurious."""
    if inherent is None or verdict not in KINDED:
        return verdict
    return f"{verdict} ({'inherent' if inherent else 'spurious'})"


@dataclass(frozen=True)
class Region:
    verdict: str
    inherent: bool | None  # None: either
    low: float  # the dtype's value nearest what was written
    high: float
    text: str  # as written

    def matches(self, observed: dict) -> bool:
        f = fmt(observed["dtype"])
        return (self.verdict == observed["verdict"] and (self.inherent is None or self.inherent == observed["inherent"])
                and self.low == round_to(Fraction(observed["from"]), f)
                and self.high == round_to(Fraction(observed["to"]), f))


def parse(data: Any, dtypes: list[str], runs: dict[str, dict[str, list[str]]], swept: list[str],
          fail) -> dict[Key, list[Region]]:
    """Validate `regions` against the case: its dtypes, the runs (framework -> impl label -> outputs) and its one
    swept or searched input. `fail(path, message)` makes the located error."""
    if len(swept) != 1:
        raise fail(("regions",), f"regions need exactly one swept or searched input; the case has "
                                 f"{', '.join(swept) or 'none'}")
    out = {}
    for dtype, by_framework in _mapping(data, ("regions",), "dtype", dtypes, fail).items():
        for framework, by_impl in _mapping(by_framework, ("regions", dtype), "framework", list(runs), fail).items():
            path = ("regions", dtype, framework)
            for impl, by_output in _mapping(by_impl, path, "impl label", list(runs[framework]), fail).items():
                for output, entries in _mapping(by_output, (*path, impl), "output", runs[framework][impl], fail).items():
                    where = (*path, impl, output)
                    if not isinstance(entries, list):
                        raise fail(where, f"expected a list of regions, each {FORM}; got {entries!r:.80}")
                    out[(dtype, framework, impl, output)] = [_entry(e, (*where, k), dtype, fail)
                                                             for k, e in enumerate(entries)]
    return out


def _mapping(value: Any, path: tuple, what: str, known: list[str], fail) -> dict:
    if not isinstance(value, dict) or not value:
        raise fail(path, f"expected a mapping {what} -> ..., got {value!r:.80}")
    for key in value:
        if key not in known:
            raise fail((*path, key), f"unknown {what} {key!r} (the case has: {', '.join(map(str, known))})")
    return value


def _entry(text: Any, path: tuple, dtype: str, fail) -> Region:
    m = ENTRY.match(text) if isinstance(text, str) else None
    if m is None:
        raise fail(path, f"expected {FORM}; got {text!r:.80}")
    if m["verdict"] not in SEVERITY:
        raise fail(path, f"unknown verdict {m['verdict']!r} (known: {', '.join(SEVERITY)})")
    ends = []
    for end in ("low", "high"):
        try:
            value = round_to(Fraction(m[end]), fmt(dtype))
        except (ValueError, ZeroDivisionError):
            raise fail(path, f"{end} {m[end]!r} is not a number") from None
        if value in (float("inf"), float("-inf")):
            raise fail(path, f"{end} {m[end]} is beyond the largest {dtype}")
        ends.append(value)
    if ends[0] > ends[1]:
        raise fail(path, f"low {m['low']} is above high {m['high']}")
    kind = None if m["kind"] is None else m["kind"] == "inherent"
    return Region(m["verdict"], kind, *ends, " ".join(text.split()))


def text(observed: dict) -> str:
    """An observed region as an entry (what --update writes)."""
    return f"{label_text(observed['verdict'], observed['inherent'])} from {observed['from']} to {observed['to']}"


def observed(result: dict, key: Key) -> list[dict] | None:
    """The result's refined regions for one key along its swept input; None when it did not run there."""
    dtype, framework, impl, output = key
    block = result.get("sweep") or {}
    if "regions" not in block:
        return None
    found = [r for r in block["regions"] if (r["dtype"], r["framework"], r["impl"], r["output"]) == key]
    return found or None


def check(expected: dict[Key, list[Region]], result: dict, versions: dict[str, str]) -> list[dict]:
    """One outcome per stated key that ran (the shape of `expect`'s outcomes, plus `regions: true`): passed True
    when the observed regions are exactly the stated ones, None when they differ but the bisection stopped short,
    else False. `versions`: package -> installed version, as for `expect`."""
    from oracle.expect import installed

    out = []
    for key, regions in expected.items():
        got = observed(result, key)
        if got is None:
            continue
        dtype, framework, impl, output = key
        who = f"{framework} {impl} {dtype} {output} regions"
        want_text = "; ".join(r.text for r in regions) or "(none stated)"
        got_text = "; ".join(text(r) for r in got)
        held = len(got) == len(regions) and all(r.matches(o) for r, o in zip(regions, got))
        exact = all(o["exact_from"] and o["exact_to"] for o in got)
        if held:
            passed, message = True, f"{who} as expected: {installed(framework, versions)}"
        elif not exact:
            passed, message = None, (f"{who}: not checked: the bisection stopped short of exact ends (got "
                                     f"{got_text}; expected {want_text})")
        else:
            hint = " (oracle check --update writes them)" if not regions else ""
            passed, message = False, f"{who}: expected {want_text}; got {got_text}{hint}: {installed(framework, versions)}"
        out.append({"framework": framework, "impl": impl, "dtype": dtype, "output": output, "expected": want_text,
                    "got": got_text, "version": str(installed(framework, versions)), "versions": None, "passed": passed,
                    "message": message, "measured": None, "regions": True})
    return out


def updated(expected: dict[Key, list[Region]], result: dict) -> dict | None:
    """The `regions` field (plain data) with each stated key's observed regions; keys that did not run keep what
    they state. None when a stated key's regions are not exact (nothing is written on a bracket)."""
    out: dict = {}
    for key, regions in expected.items():
        got = observed(result, key)
        if got is not None and not all(o["exact_from"] and o["exact_to"] for o in got):
            return None
        dtype, framework, impl, output = key
        entries = [text(o) for o in got] if got is not None else [r.text for r in regions]
        out.setdefault(dtype, {}).setdefault(framework, {}).setdefault(impl, {})[output] = entries
    return out
