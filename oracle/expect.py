"""Expectations: the verdicts a case should get, per framework version (the case's `expect` field).

`expect` maps a framework to an expectation, and an expectation is, at every level
(framework, then impl label, then output):

* a verdict (`ok`, `overflow`, ...): every row below this point gets it, at every dtype the case runs;
* a mapping to the next level (framework -> impl label -> output); rows it does not name are not covered;
* a list of version-ranged entries `{versions: "<2.20", verdict: ...}` whose verdict is a verdict or a mapping to
  the next level. `versions` is a PEP 440 specifier set matched against the installed framework's version
  (tensorflow, torch, jax), pre-releases and local versions (`2.13.0+cpu`) included as PEP 440 says; the first
  entry whose range contains it applies (`""` contains every version: a fallback). When none does, the
  expectation does not apply: its rows are reported as not checked, never as failed.

Everything here is pure and imports no framework: `parse` validates a case's field against the frameworks,
impls and outputs the case runs; `Expectations.check` compares a result's rows with it for given versions;
`updated` computes the most compact expectation that the observed verdicts satisfy; `rewrite` writes it into the
case file's text (ruamel.yaml round trip, imported only then).
"""

from __future__ import annotations

import difflib
import io
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from oracle import yamlio
from oracle.frameworks import PACKAGES
from oracle.verdicts import SEVERITY

MAX_SPECIFIER = 200
Fail = Callable[[tuple, str], Exception]  # (field path, message) -> the error to raise, located in the case file


@dataclass(frozen=True)
class Entry:
    """One version-ranged expectation: `node` applies where the installed version is in `versions`."""

    text: str  # the specifier as written
    versions: SpecifierSet
    node: Node  # a verdict or a mapping to the next level, never another list


Node = str | dict[str, "Node"] | list[Entry]  # a verdict, the next level by key, or version-ranged entries


class Range(str):
    """A version specifier in an updated expectation (written quoted: `>=` cannot start a plain YAML scalar)."""


@dataclass(frozen=True)
class Installed:
    """A framework's installed version, as the report records it (`2.13.0+cpu`), and parsed (None: unknown)."""

    package: str
    version: str | None

    @property
    def parsed(self) -> Version | None:
        try:
            return Version(self.version) if self.version else None
        except InvalidVersion:
            return None

    def __str__(self) -> str:
        return f"{self.package} {self.version}" if self.version else f"{self.package} (version unknown)"


def installed(framework: str, versions: dict[str, str]) -> Installed:
    package = PACKAGES[framework]
    return Installed(package, versions.get(package))


# parsing


def parse(data: Any, known: dict[str, dict[str, list[str]]], fail: Fail) -> Expectations:
    """Validate a case's `expect` against `known` (framework -> impl label -> outputs, for what the case runs)."""
    if not isinstance(data, dict) or not data:
        raise fail(("expect",), f"expected a mapping framework -> expectation, e.g. {{torch: ok}}; got {_shown(data)}")
    tree = {}
    for framework, value in data.items():
        path = ("expect", framework)
        if framework not in PACKAGES:
            raise fail(path, f"unknown framework {framework!r} (known: {', '.join(PACKAGES)})")
        if framework not in known:
            raise fail(path, f"the case runs nothing in {framework} (it runs: {', '.join(known) or 'nothing'})")
        tree[framework] = _node(value, path, known[framework], fail)
    return Expectations(tree)


def parse_fixed_in(data: dict[str, str], fail: Fail) -> None:
    """`fixed_in` documents the first release of each framework with the fix: each must be a PEP 440 version."""
    for framework, version in data.items():
        try:
            Version(version)
        except InvalidVersion:
            raise fail(("fixed_in", framework), f"{version!r} is not a PEP 440 version (e.g. \"2.1.0\")") from None


def _node(value: Any, path: tuple, below: dict | list | None, fail: Fail, ranged: bool = True) -> Node:
    """One expectation at `path`; `below` holds the next level's keys (impl labels, then outputs), None at outputs."""
    if isinstance(value, str):
        return _verdict(value, path, fail)
    if isinstance(value, dict) and value and below is not None:
        return {key: _node(v, (*path, key), _next(below, key, path, fail), fail) for key, v in value.items()}
    if isinstance(value, list) and value and ranged:
        return [_entry(item, (*path, i), below, fail) for i, item in enumerate(value)]
    forms = ["a verdict"] + [f"a mapping {_level(below)} -> expectation"] * (below is not None) \
        + ["a list of version-ranged entries {versions: \"<2.20\", verdict: ...}"] * ranged
    raise fail(path, f"expected {', or '.join(forms)}; got {_shown(value)}")


def _level(below: dict | list) -> str:
    return "impl label" if isinstance(below, dict) else "output"


def _next(below: dict | list, key: Any, path: tuple, fail: Fail) -> list | None:
    """The keys under `key` (an impl's outputs; None below an output), or a refusal naming the known keys."""
    if key in below:
        return below[key] if isinstance(below, dict) else None
    framework = path[1]
    hint = ""
    if isinstance(below, dict) and any(key in outputs for outputs in below.values()):
        hint = f"; outputs go under an impl label, e.g. {{{next(iter(below))}: {{{key}: ...}}}}"
    raise fail((*path, key), f"unknown {_level(below)} {key!r} for {framework} (known: {', '.join(below)}){hint}")


def _entry(item: Any, path: tuple, below: dict | list | None, fail: Fail) -> Entry:
    if not isinstance(item, dict) or set(item) != {"versions", "verdict"}:
        raise fail(path, f"a version-ranged entry is a mapping {{versions: \"<2.20\", verdict: overflow}}; "
                         f"got {_shown(item)}")
    text = item["versions"]
    if not isinstance(text, str) or len(text) > MAX_SPECIFIER:
        raise fail((*path, "versions"), f"expected a quoted PEP 440 version specifier such as \">=2.20\", "
                                        f"got {_shown(text)}")
    try:
        versions = SpecifierSet(text)
    except InvalidSpecifier as e:
        raise fail((*path, "versions"), f"invalid PEP 440 version specifier {text!r}: {e}") from None
    return Entry(text, versions, _node(item["verdict"], (*path, "verdict"), below, fail, ranged=False))


def _verdict(value: str, path: tuple, fail: Fail) -> str:
    if value in SEVERITY:
        return value
    close = difflib.get_close_matches(value, SEVERITY, 1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise fail(path, f"unknown verdict {value!r}{hint} (verdicts: {', '.join(SEVERITY)})")


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return f"a mapping with keys {', '.join(map(str, value)) or '(none)'}"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return str(value) if isinstance(value, Decimal) else repr(value)


# evaluation


@dataclass(frozen=True)
class Resolution:
    """What an expectation says of one row: a verdict and the ranges that selected it, or the entries none of
    which matched."""

    verdict: str | None
    ranges: tuple[str, ...] = ()
    unmatched: list[Entry] | None = None


@dataclass(frozen=True)
class Expectations:
    """A case's parsed `expect`: framework -> expectation."""

    tree: dict[str, Node]

    def check(self, result: dict, versions: dict[str, str]) -> list[dict]:
        """One outcome per row of `result` that an expectation covers, evaluated against `versions` (package ->
        installed version, as in a report's environment.versions): passed is True, False, or None (not checked:
        no version range contains the installed version)."""
        return [outcome for row in result["results"] if (outcome := self._outcome(row, versions)) is not None]

    def may_cover(self, framework: str, impl: str) -> bool:
        """False when no expectation covers this framework's impl at any version: no need to run it."""
        node = self.tree.get(framework)
        return node is not None and not (isinstance(node, dict) and impl not in node)

    def _outcome(self, row: dict, versions: dict[str, str]) -> dict | None:
        framework, got = row["framework"], row["verdict"]
        at = installed(framework, versions)
        found = _resolve(self.tree[framework], (row["impl"], row["output"]), at.parsed) \
            if framework in self.tree else None
        if found is None:
            return None
        who = f"{framework} {row['impl']} {row['dtype']} {row['output']}"
        ranges = ",".join(found.ranges) or None
        against = f"{at} (versions {ranges!r})" if ranges else str(at)
        if found.verdict is None:
            passed = None
            listed = ", ".join(repr(e.text) for e in found.unmatched)
            message = f"{who}: not checked: no version range ({listed}) contains {at}"
        elif got == found.verdict:
            passed, message = True, f"{who}: {got} as expected: {against}"
        else:
            hint = "fixed upstream?" if got == "ok" else "regression?" if found.verdict == "ok" else "changed?"
            passed, message = False, f"{who}: expected {found.verdict}, got {got}: {hint} {against}"
        return {"framework": framework, "impl": row["impl"], "dtype": row["dtype"], "output": row["output"],
                "expected": found.verdict, "got": got, "version": str(at), "versions": ranges, "passed": passed,
                "message": message, "measured": _measured(row)}


def _measured(row: dict) -> str | None:
    """The row's numbers, for a failure line: `inf, reference 100.0, 32.0 bits`; an error's message."""
    if row.get("verdict") == "error":
        text = " ".join(str(row.get("explanation") or "").split())
        return f"error: {text[:160]}{'...' * (len(text) > 160)}" if text else None
    if row.get("got") is None:
        return None
    bits = f", {row['error_bits']} bits" if row.get("error_bits") is not None else ""
    return f"{row['got']}, reference {row.get('reference')}{bits}"


def _resolve(node: Node, keys: tuple[str, ...], version: Version | None) -> Resolution | None:
    """The expectation for the row at `keys` (impl, output) below `node`; None when nothing covers it."""
    if isinstance(node, list):
        entry = _match(node, version)
        if entry is None:
            return Resolution(None, unmatched=node)
        inner = _resolve(entry.node, keys, version)
        return inner and replace(inner, ranges=(entry.text, *inner.ranges))
    if isinstance(node, str):
        return Resolution(node)
    key, *rest = keys
    return _resolve(node[key], tuple(rest), version) if key in node else None


def _match(entries: list[Entry], version: Version | None) -> Entry | None:
    """The first entry whose range contains `version` (an unknown version is in none)."""
    return next((e for e in entries if version is not None and e.versions.contains(version, prereleases=True)), None)


def line(file: str, case_id: str, outcome: dict) -> str:
    """How `check` and the pytest plugin report one outcome: a failure adds the numbers behind it."""
    measured = f" (got {outcome['measured']})" if outcome["passed"] is False and outcome.get("measured") else ""
    return f"{file} ({case_id}): {outcome['message']}{measured}"


# updating


def updated(current: Expectations | None, rows: list[dict], versions: dict[str, str]) -> tuple[dict | None, list[str]]:
    """The most compact `expect` (plain data) that `rows` satisfy at the installed `versions`, and notes on what it
    could not say. Frameworks that did not run keep their expectations; version-ranged expectations keep their
    other entries and update the one that contains the installed version, or gain one (`==` its public version)."""
    notes: list[str] = []
    seen = _observed(rows, notes)
    merged = _merge((current.tree if current else {}), seen, lambda framework: installed(framework, versions),
                    "expect", notes)
    return merged, notes


def _observed(rows: list[dict], notes: list[str]) -> dict:
    """framework -> impl -> output -> the verdict at every dtype (None, with a note, when dtypes disagree)."""
    by_dtype: dict = {}
    for row in rows:
        by_dtype.setdefault(row["framework"], {}).setdefault(row["impl"], {}).setdefault(row["output"], {})[
            row["dtype"]] = row["verdict"]

    def one(where: str, got: dict[str, str]) -> str | None:
        if len(set(got.values())) == 1:
            return next(iter(got.values()))
        said = ", ".join(f"{dtype} {verdict}" for dtype, verdict in got.items())
        notes.append(f"{where}: not written: the dtypes disagree ({said}) and an expectation holds at every dtype")
        return None

    return {fw: {impl: {out: one(f"expect.{fw}.{impl}.{out}", got) for out, got in outputs.items()}
                 for impl, outputs in impls.items()} for fw, impls in by_dtype.items()}


def _merge(node: dict, seen: dict, at: Callable[[str], Installed], where: str, notes: list[str]) -> dict | None:
    """Update the keys that ran (in `seen`) and keep the others as written, in the written order."""
    out = {}
    for key in [*node, *(k for k in seen if k not in node)]:
        value = _update(node.get(key), seen[key], at(key), f"{where}.{key}", notes) if key in seen \
            else _plain(node[key])
        if value is not None:
            out[key] = value
    return out or None


def _update(node: Node | None, seen: Any, at: Installed, where: str, notes: list[str]) -> Any:
    """The expectation `seen` satisfies, keeping the version ranges written at or below `node`."""
    if isinstance(node, list):
        return _update_entries(node, seen, at, where, notes)
    if isinstance(node, dict) and _ranged(node):
        return _merge(node, seen, lambda _: at, where, notes)
    return _compact(seen)


def _update_entries(entries: list[Entry], seen: Any, at: Installed, where: str, notes: list[str]) -> list | None:
    entry = _match(entries, at.parsed)
    if entry is None and at.parsed is None:
        notes.append(f"{where}: kept as written: {at} cannot be matched against version ranges")
        return _plain(entries)
    if entry is None:
        new = _compact(seen)
        if new is None:
            return _plain(entries)
        spec = Range(f"=={at.parsed.public}")
        notes.append(f"{where}: added an entry for {at} (versions {spec!r}): no written range contained it")
        return [*_plain(entries), {"versions": spec, "verdict": new}]
    out = []
    for i, e in enumerate(entries):
        verdict = _update(e.node, seen, at, f"{where}.{i}.verdict", notes) if e is entry else _plain(e.node)
        if verdict is not None:
            out.append({"versions": Range(e.text), "verdict": verdict})
    return out or None


def _compact(seen: Any) -> Any:
    """One verdict where every row below agrees, else a mapping to the next level; None where nothing holds."""
    if not isinstance(seen, dict):
        return seen
    verdicts = set(_leaves(seen))
    if len(verdicts) == 1 and None not in verdicts:
        return verdicts.pop()
    children = {key: c for key, value in seen.items() if (c := _compact(value)) is not None}
    return children or None


def _leaves(seen: Any):
    if isinstance(seen, dict):
        for value in seen.values():
            yield from _leaves(value)
    else:
        yield seen


def _ranged(node: Node) -> bool:
    return isinstance(node, list) or isinstance(node, dict) and any(map(_ranged, node.values()))


def _plain(node: Node) -> Any:
    """A parsed expectation as the plain data it was written as."""
    if isinstance(node, list):
        return [{"versions": Range(e.text), "verdict": _plain(e.node)} for e in node]
    if isinstance(node, dict):
        return {key: _plain(value) for key, value in node.items()}
    return node


# writing


def rewrite(text: str, expect: dict | None, field: str = "expect") -> str:
    """`text` (a case file) with its `expect` field (or another top-level `field`, such as `regions`) set to
    `expect` (None: removed). Only the field's own lines
    are parsed by ruamel.yaml's round-trip loader (safe: it builds no Python objects) and edited in place, so
    comments inside it survive; every other line is copied from `text` byte for byte. Raises ValueError when the
    file cannot be edited that way, or the result would not read back as the same case with the new field."""
    data = yamlio.load(text)
    lines = text.splitlines(keepends=True)
    start, end = _span(data, lines, field)
    if start == len(lines) and lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    block = "" if expect is None else _edited("".join(lines[start:end]), expect, field)
    new = "".join(lines[:start]) + block + "".join(lines[end:])
    _same_case(text, new, expect, field)
    return new


def _span(data: dict, lines: list[str], field: str = "expect") -> tuple[int, int]:
    """The lines of the `expect` field (an empty span at the end when absent), without the blank and comment lines
    that follow it: those stay where they are."""
    if not all(lines[line - 1].startswith(key) for key, line in data.lines.items()):
        raise ValueError("only a case written as a block mapping, each field at the start of its line, can be updated")
    if field not in data:
        return len(lines), len(lines)
    keys = list(data)
    k = keys.index(field)
    start = data.lines[field] - 1
    end = data.lines[keys[k + 1]] - 1 if k + 1 < len(keys) else len(lines)
    while end > start + 1 and lines[end - 1].strip()[:1] in ("", "#"):
        end -= 1
    return start, end


def _edited(block: str, expect: dict, field: str = "expect") -> str:
    """The `expect:` block (its text; empty when the field is new) changed to say `expect`."""
    from ruamel.yaml import YAML, YAMLError
    from ruamel.yaml.comments import CommentedMap

    yaml = YAML(typ="rt", pure=True)
    yaml.width = 1 << 20  # never fold a long line
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    try:
        doc = yaml.load(block) or CommentedMap()
    except YAMLError as e:
        raise ValueError(f"ruamel.yaml cannot read the expect field: {e}") from None
    new = field not in doc
    doc[field] = _graft(doc.get(field), expect)
    if new:
        doc[field].fa.set_block_style()
    stream = io.StringIO()
    yaml.dump(doc, stream)
    return stream.getvalue()


def _graft(node: Any, want: Any) -> Any:
    """`node` (round-trip data) changed in place to equal `want`, keeping what stays and its comments; a new node
    where the kind differs."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(want, dict) and isinstance(node, CommentedMap):
        for key in [k for k in node if k not in want]:
            del node[key]
        for key, value in want.items():
            node[key] = _graft(node.get(key), value)
        if any(isinstance(value, (dict, list)) for value in want.values()):
            node.fa.set_block_style()  # flow style only for mappings of verdicts
        return node
    if isinstance(want, list) and isinstance(node, CommentedSeq):
        del node[len(want):]
        for i, value in enumerate(want):
            if i < len(node):
                node[i] = _graft(node[i], value)
            else:
                node.append(_fresh(value))
        return node
    return node if isinstance(want, str) and node == want else _fresh(want)


def _fresh(want: Any) -> Any:
    """New round-trip data for `want`: mappings of verdicts in flow style, as in `{value: ok, grad.x: overflow}`."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    if isinstance(want, Range):
        return DoubleQuotedScalarString(want)
    if isinstance(want, str):
        return want
    if isinstance(want, list):
        return CommentedSeq(map(_fresh, want))
    node = CommentedMap((key, _fresh(value)) for key, value in want.items())
    if all(isinstance(value, str) for value in want.values()):
        node.fa.set_flow_style()
    return node


def _same_case(text: str, new: str, expect: dict | None, field: str = "expect") -> None:
    """Refuse an edit that would change anything but `field`, or not say `expect` there."""
    before, after = yamlio.load(text), yamlio.load(new)
    before.pop(field, None)
    written = after.pop(field, None)
    if after != before or written != expect:
        raise ValueError("the edited file would not read back as the same case with the new expect (left unchanged)")


def json_schema() -> dict:
    """The JSON Schema of `expect`, for editors (`parse` is the check: it also knows the case's impls and outputs)."""
    verdict = {"enum": list(SEVERITY)}

    def level(below: dict | None) -> dict:
        values = [verdict, *([{"type": "object", "minProperties": 1, "additionalProperties": below}] if below else [])]
        entry = {"type": "object", "required": ["versions", "verdict"], "additionalProperties": False,
                 "properties": {"versions": {"type": "string", "description": "PEP 440 specifiers, e.g. >=2.20"},
                                "verdict": {"anyOf": values}}}
        return {"anyOf": [*values, {"type": "array", "minItems": 1, "items": entry}]}

    return {"type": "object", "minProperties": 1, "propertyNames": {"enum": list(PACKAGES)},
            "additionalProperties": level(level(level(None)))}
