"""The hunt's findings: the worst candidate per framework x impl x output, shrunk, written as a plain case.

A finding is a case file with the searched inputs fixed (every other field as the hunted case wrote it),
`source` naming the hunt, and `expect` set to what the runner measured at that input: ready for
`oracle check`. Shrinking, as hypothesis does, tries the value with fewer significant digits (1, 2, ...)
and keeps the first that the screen puts in the same class; the runner then certifies both, and the
exact value is kept when shrinking changed the verdict.
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import yaml

from oracle import case as case_io
from oracle import expect, yamlio
from oracle.floats import Format, ordinals_to_values, round_to, to_ordinals

MAX_DIGITS = 9  # float32 needs at most 9 significant digits to round-trip; more are tried as the exact value


def findings(case, screen, samples, names: list[str], f: Format, frameworks: list[str], options, progress) -> dict:
    """Write the findings of one dtype's hunt; their JSON entries, and how many points the runner certified."""
    groups: dict[tuple, list] = {}  # worst point (ordinals of the searched inputs) -> keys worst there
    for key in screen.keys:
        bits = samples.bits[key]
        if not np.isfinite(bits).any() or np.nanmax(bits) <= case.spec.tolerance_bits:
            continue  # nothing failed: the summary says so
        ties = np.flatnonzero(bits == np.nanmax(bits))
        size = sum(np.abs(samples.points[n][ties]).astype(np.float64) for n in names)
        k = int(ties[np.argmin(size)])  # among equally bad samples, the one nearest zero in the dtype's order
        groups.setdefault(tuple(int(samples.points[n][k]) for n in names), []).append(key)
    out, false_alarms, measured, kept = [], 0, {}, set()

    def place(values: dict, shrunk_from: dict | None, keys: list) -> tuple[str, dict]:
        """The finding's file and the runner's rows there; a file this hunt already wrote is not rewritten."""
        path = write(case, values, f, frameworks, options, keys, shrunk_from, measured)
        if path not in measured:
            measured[path] = _measure(path, frameworks, f, options)
        return path, measured[path]

    for point, keys in groups.items():
        progress(f"{f.name}: certifying the finding at {_shown(point, names, f)} ({len(keys)} outputs)")
        exact = dict(zip(names, _values(point, f)))
        chosen, rows = place(exact, None, keys)
        small, shrunk = _shrink(screen, point, keys, names, f), False
        if small != point:
            small_file, small_rows = place(dict(zip(names, _values(small, f, short=True))), exact, keys)
            if all(small_rows[k]["verdict"] == rows[k]["verdict"] for k in keys):  # same failure: the simpler input
                chosen, rows, shrunk = small_file, small_rows, True
        if all(rows[k]["verdict"] == "ok" for k in keys):  # the screen's alarm: the certified reference disagrees
            false_alarms += len(keys)
            continue
        kept.add(chosen)
        inputs = {n: _text(v) for n, v in case_io.load(chosen).spec.inputs.items() if n in names}
        for key in (k for k in keys if rows[k]["verdict"] != "ok"):
            out.append({"framework": key[0], "impl": key[1], "dtype": key[2], "output": key[3],
                        "verdict": rows[key]["verdict"], "error_bits": rows[key]["error_bits"], "inputs": inputs,
                        "case_file": chosen, "shrunk": shrunk})
    for path, rows in measured.items():
        if path in kept:
            finish(path, rows)
        else:  # the exact value of a shrunk finding, a shrink that changed the verdict, or a false alarm
            Path(path).unlink()
    certified = len(measured)
    return {"findings": out, "certified": certified, "false_alarms": false_alarms}


def _values(point: tuple, f: Format, short: bool = False) -> list:
    values = [ordinals_to_values(np.array(o, dtype=np.int64), f)[()] for o in point]
    return [_decimal(_digits(v, f) if short else str(v)) for v in values]


def _decimal(text: str) -> Decimal:
    """A number as a person writes it: 90 rather than 9E+1, 1e-30 rather than 0.000...1."""
    d = Decimal(text)
    return Decimal(format(d, "f")) if d.is_finite() and d and -6 <= d.adjusted() < 7 else d


def _digits(v, f: Format) -> str:
    """The shortest decimal text of a shrunk value that rounds to it (`v` came from such text)."""
    for d in range(1, 18):
        text = f"{float(v):.{d}g}"
        if round_to(Fraction(Decimal(text)), f) == float(v):
            return text
    return repr(float(v))


def _shown(point: tuple, names: list[str], f: Format) -> str:
    return ", ".join(f"{n} = {v}" for n, v in zip(names, _values(point, f)))


def _shrink(screen, point: tuple, keys: list, names: list[str], f: Format) -> tuple:
    """The point with each searched input in turn cut to the fewest significant digits that keep every key's
    screened class (one screened batch per input)."""
    current = list(point)
    target = None
    for i, name in enumerate(names):
        value = float(ordinals_to_values(np.array(current[i], dtype=np.int64), f)[()])
        if value == 0 or not np.isfinite(value):
            continue
        tried = [int(to_ordinals(round_to(Fraction(Decimal(f"{value:.{d}g}")), f), f)) for d in range(1, MAX_DIGITS)]
        tried.append(current[i])
        batch = {n: np.array([current[j]] * len(tried), dtype=np.int64) for j, n in enumerate(names)}
        batch[name] = np.array(tried, dtype=np.int64)
        screened = screen({n: ordinals_to_values(o, f) for n, o in batch.items()})
        target = [screened[k][1][-1] for k in keys]
        for t, o in enumerate(tried):
            if all(screened[k][1][t] == c for k, c in zip(keys, target)):
                current[i] = o
                break
    return tuple(current)


def _measure(path: str, frameworks: list[str], f: Format, options) -> dict[tuple, dict]:
    """The runner's rows for a written finding, as `oracle check` will run it: key -> row."""
    from oracle.runner import run_case

    result = run_case(case_io.load(path), frameworks=frameworks, dtypes=[f.name], max_precision=options.max_precision)
    if "error" in result:
        raise RuntimeError(result["error"])
    return {(r["framework"], r["impl"], r["dtype"], r["output"]): r for r in result["results"]}


class _Dumper(yaml.SafeDumper):
    """Numbers read as Decimal are written back as plain YAML numbers, exactly as read."""


def _text(value) -> str:
    """A number as written in a finding: 1e-30, 88.72284, 90."""
    return format(value, "g") if isinstance(value, Decimal) else str(value)


_Dumper.add_representer(Decimal, lambda d, v: d.represent_scalar(d.resolve(yaml.ScalarNode, _text(v), (True, False)),
                                                                  _text(v)))


def _plain(data):
    """yamlio's containers (with line numbers) as plain dicts and lists."""
    if isinstance(data, dict):
        return {k: _plain(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_plain(v) for v in data]
    return data


def write(case, values: dict[str, Decimal], f: Format, frameworks: list[str], options, keys: list,
          shrunk_from: dict | None, written=()) -> str:
    """The case with the searched inputs fixed at `values`, as a file in `options.out` (no expect yet); its path.
    A path in `written` is left as it is."""
    data = _plain(yamlio.load(yamlio.read(case.file)))
    for name, value in values.items():
        data["inputs"][name] = value
    slug = "-".join(re.sub(r"[^a-z0-9.]", "", _text(v).lower().replace("-", "m").replace("+", "")) for v in values.values())
    data["id"] = f"{case.id}-{f.name}-{slug}"[:120].rstrip(".-_")
    shown = ", ".join(f"{n} = {_text(v)}" for n, v in values.items())
    data["title"] = f"{case.spec.title}: {shown} (found by oracle hunt)"
    data["source"] = f"oracle hunt {case.file} --seed {options.seed} (dtype {f.name})"
    worst = ", ".join(" ".join(k[:2]) + " " + k[3] for k in keys)
    data["description"] = (f"Found by oracle hunt {case.file} (seed {options.seed}, {f.name}): the worst screened "
                           f"error of {worst}" + (f", shrunk from {', '.join(f'{n} = {_text(v)}' for n, v in shrunk_from.items())}"
                                                  if shrunk_from else "") + ".")
    data["tags"] = list(dict.fromkeys([*data.get("tags", []), "hunt"]))
    data["frameworks"] = frameworks
    data["dtypes"] = [f.name]
    data.pop("expect", None)
    data.pop("regions", None)  # regions are along a searched input, which a finding fixes
    Path(options.out).mkdir(parents=True, exist_ok=True)
    path = str(Path(options.out) / f"{data['id']}.yaml")
    if path not in written:
        Path(path).write_text(yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110))
    return path


def finish(path: str, rows: dict[tuple, dict]) -> None:
    """Fill the written case's expect with the verdicts the runner measured there."""
    from oracle.frameworks import versions

    measured = list(rows.values())
    want, _ = expect.updated(None, measured, versions({r["framework"] for r in measured}))
    text = Path(path).read_text()
    Path(path).write_text(expect.rewrite(text, want))
