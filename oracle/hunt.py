"""`oracle hunt`: search a case's `search` ranges for the inputs that break it, and where each verdict holds.

Three stages, cheapest first:
1. sample: seeded draws, uniform over the dtype's ordered values in each range (equal weight per binade
   and sign, as Herbie samples), screened vectorised in every framework (`oracle.screen`);
2. bisect: along each searched input, wherever the screened class changes between neighbouring samples,
   evaluate evenly spaced values in between, until the change lies between two adjacent values of the
   dtype (integer bit patterns): exact boundaries;
3. certify: the runner (`run_case`, the certified reference and the classifier of `oracle run`) names the
   verdict at both ends of every region; the worst candidate of each output is shrunk and written as a
   plain case (`oracle.finding`), whose expectation is what the runner measured there.
Nothing the screen computes is reported but the summary's error bits (labelled as screened).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np

from oracle import boundaries
from oracle import screen as screening
from oracle.case import Case
from oracle.floats import Format, fmt, ordinal_range, ordinals_to_values
from oracle.regions import label_text

SAMPLES = 4096  # default candidates
SUMMARY_POINTS = 256  # samples certified for the summary's mean and max error bits
BATCH = 1024
SPLIT = 31  # values evaluated between two samples whose classes differ: 5 bits of the gap per step
MAX_CHANGES = 12  # class changes bisected per output and input, the first along it
MAX_FLICKER = 4  # within-tolerance flips inside one stretch of the same behaviour beyond which the flag is dropped
MAX_REGIONS = 16  # screened regions reported per output and input
MAX_VERDICT_CHANGES = boundaries.MAX_CHANGES  # certified verdict changes bisected inside one screened region
SCREEN_SHARE, BISECT_SHARE, CERTIFY_SHARE = 0.3, 0.5, 0.7  # of the budget, by the end of each stage; then findings
# and the certified summary, each skipped (and said) once the budget is spent


class HuntError(ValueError):
    """The case cannot be hunted (no search input, or a sweep beside one)."""


@dataclasses.dataclass
class Options:
    seed: int = 0
    budget: float = 60.0
    samples: int = SAMPLES
    frameworks: list[str] | None = None
    dtypes: list[str] | None = None
    out: str = "hunt"
    max_precision: int = 4096
    summary_points: int = SUMMARY_POINTS


def searched_inputs(case: Case) -> list[str]:
    names = [name for name, s in case.sweeps.items() if s.kind == "search"]
    if not names:
        raise HuntError(f"{case.file}: no input to search: declare one as {{search: {{low: ..., high: ...}}}}")
    others = [name for name in case.sweeps if name not in names]
    if others:
        raise HuntError(f"{case.file}: inputs.{others[0]}: a sweep beside a search; the hunt keeps other inputs fixed")
    return names


def hunt(case: Case, options: Options, progress: Callable[[str], None] = lambda _: None) -> dict:
    """The hunt block of the `--json` document for one case (see the module docstring)."""
    from oracle import finding

    started = time.monotonic()
    deadline = started + options.budget
    names = searched_inputs(case)
    frameworks = [fw for fw in case.spec.frameworks if options.frameworks is None or fw in options.frameworks]
    out = {"id": case.id, "file": case.file, "budget_s": options.budget, "seed": options.seed, "samples": 0,
           "certified": 0, "false_alarms": 0, "stopped_by": "samples", "findings": [], "regions": [], "summary": []}
    for dtype in options.dtypes or case.spec.dtypes:
        f = fmt(dtype)
        screen = screening.Screen(case, f, frameworks, names, screening.fixed_inputs(case, f, names))
        bounds = {name: ordinal_range(case.sweeps[name].low, case.sweeps[name].high, f) for name in names}
        samples, stopped = _sample(screen, bounds, options, started, deadline, progress)
        out["stopped_by"] = stopped if stopped == "budget" else out["stopped_by"]
        out["samples"] += len(next(iter(samples.points.values())))
        anchor = _anchor(screen, samples, names)
        certified: list[int] = [0]
        for name in names:
            if not _time_left(deadline, out, f"regions along {name} ({dtype})"):
                break
            slice_ = samples if len(names) == 1 else _slice(screen, bounds[name], name, anchor, options, progress)
            _bisect(screen, slice_, name, f, started + options.budget * BISECT_SHARE, progress)
            out["regions"] += _regions(case, screen, slice_, name, anchor, f, frameworks, options, certified, progress,
                                       started + options.budget * CERTIFY_SHARE)
        if _time_left(deadline, out, f"findings ({dtype})"):
            found = finding.findings(case, screen, samples, names, f, frameworks, options, progress)
            certified[0] += found["certified"]
            out["findings"] += found["findings"]
            out["false_alarms"] += found["false_alarms"]
        measured = None
        # several searched inputs vary jointly, which no sweep case evaluates: their summary is screened only
        if len(names) == 1 and _time_left(deadline, out, f"certified summary ({dtype})"):
            subset = sorted(set(samples.points[names[0]][:options.summary_points].tolist()))  # the first draws: seeded
            progress(f"{dtype}: certifying {len(subset)} samples for the summary")
            measured = certify(case, names[0], subset, anchor, f, frameworks, options)
            certified[0] += len(subset)
        out["summary"] += _summary(screen, samples, measured)
        if measured:
            out.setdefault("plot", {})[dtype] = _plot(case, names[0], measured, out["regions"], f)
        out["certified"] += certified[0]
    out["wall_s"] = round(time.monotonic() - started, 2)
    return out


def _time_left(deadline: float, out: dict, stage: str) -> bool:
    """Is there budget left for `stage`? If not, the hunt block says what was skipped."""
    if time.monotonic() < deadline:
        return True
    out["stopped_by"] = "budget"
    out.setdefault("skipped", []).append(stage)
    return False


@dataclasses.dataclass
class Samples:
    """Screened points: each searched input's ordinals, and per key the error bits and classes."""

    points: dict[str, np.ndarray]
    bits: dict[tuple, np.ndarray]
    classes: dict[tuple, np.ndarray]

    def add(self, points: dict[str, np.ndarray], screened: dict) -> None:
        for name in self.points:
            self.points[name] = np.concatenate([self.points[name], points[name]])
        for key, (bits, classes) in screened.items():
            self.bits[key] = np.concatenate([self.bits.get(key, np.empty(0)), bits])
            self.classes[key] = np.concatenate([self.classes.get(key, np.empty(0, dtype=object)), classes])


def _values(ordinals: dict[str, np.ndarray], f: Format) -> dict[str, np.ndarray]:
    return {name: ordinals_to_values(o, f) for name, o in ordinals.items()}


def _sample(screen, bounds: dict, options: Options, started: float, deadline: float, progress) -> tuple[Samples, str]:
    """Seeded draws over the ranges' ordered values (the ends of each range first), screened in batches until
    `options.samples` or the screening share of the budget."""
    rng = np.random.default_rng(options.seed)
    samples = Samples({name: np.empty(0, dtype=np.int64) for name in bounds}, {}, {})
    drawn = 0
    while drawn < options.samples:
        size = min(BATCH, options.samples - drawn)
        batch = {name: rng.integers(lo, hi, size=size, endpoint=True, dtype=np.int64) for name, (lo, hi) in bounds.items()}
        if drawn == 0:  # the corners of the box: the range ends
            for name, (lo, hi) in bounds.items():
                batch[name][:2] = lo, hi
        samples.add(batch, screen(_values(batch, screen.f)))
        drawn += size
        worst = max((np.nanmax(b) if np.isfinite(b).any() else 0.0) for b in samples.bits.values())
        progress(f"{screen.f.name}: screened {drawn} candidates; worst so far {worst:.1f} bits (screened)")
        if time.monotonic() > started + (deadline - started) * SCREEN_SHARE:
            return samples, "budget" if drawn < options.samples else "samples"
    return samples, "samples"


def _summary(screen, samples: Samples, certified: dict | None) -> list[dict]:
    """Herbie's summary per key: mean and max error bits over the first `summary_points` samples, certified by the
    runner (points without a certified reference or where the framework raised are left out), and over all the
    samples as screened (the float64 screen's own error included: ranking, not measurement)."""
    def stats(bits) -> tuple:
        bits = np.array([b for b in bits if b is not None and np.isfinite(b)], dtype=np.float64)
        return (int(bits.size), *(None if not bits.size else repr(round(float(g(bits)), 4)) for g in (np.mean, np.max)))

    out = []
    for key in screen.keys:
        fw, impl, dtype, output = key
        points, mean, top = stats([m[1] for m in certified[key].values()]) if certified else (0, None, None)
        screened = stats(samples.bits[key])
        out.append({"framework": fw, "impl": impl, "dtype": dtype, "output": output, "points": points,
                    "mean_error_bits": mean, "max_error_bits": top, "screened_points": screened[0],
                    "screened_mean_error_bits": screened[1], "screened_max_error_bits": screened[2]})
    return out


def _plot(case: Case, name: str, measured: dict, regions: list[dict], f: Format) -> dict:
    """The certified summary samples as a sweep block (`oracle.report.plot` draws it): error bits and verdict per
    sample and key, where each region other than ok starts as a threshold, and the regions (shaded exactly)."""
    ordinals = sorted({o for by in measured.values() for o in by})
    series = [{"framework": k[0], "impl": k[1], "dtype": k[2], "output": k[3], "vectorised": True, "note": None,
               "error_bits": [by[o][1] for o in ordinals], "verdicts": [by[o][0] for o in ordinals]}
              for k, by in measured.items()]
    thresholds = [{**{k: r[k] for k in ("framework", "impl", "dtype", "output", "verdict", "input")},
                   "at": float(r["from"]), "text": r["text"]}
                  for r in regions if r["dtype"] == f.name and r["input"] == name and r["verdict"] != "ok"]
    return {"axes": [{"input": name, "spec": "search", "scale": case.sweeps[name].scale,
                      "values": [float(v) for v in ordinals_to_values(np.array(ordinals, dtype=np.int64), f)]}],
            "points": len(ordinals), "series": series, "thresholds": thresholds,
            "regions": [r for r in regions if r["dtype"] == f.name and r["input"] == name]}


def _anchor(screen, samples: Samples, names: list[str]) -> dict[str, int]:
    """Where the regions' slices cross the other searched inputs: the single worst screened sample."""
    best, at = -1.0, 0
    for key in screen.keys:
        bits = np.nan_to_num(samples.bits[key], nan=-1.0)
        k = int(np.argmax(bits))
        if bits[k] > best:
            best, at = bits[k], k
    return {name: int(samples.points[name][at]) for name in names}


def _slice(screen, bound: tuple[int, int], name: str, anchor: dict[str, int], options: Options, progress) -> Samples:
    """Samples along one input with the other searched inputs at the anchor (hunts of several inputs)."""
    rng = np.random.default_rng([options.seed, len(name)])
    n = max(BATCH // 4, options.samples // 4)
    along = np.concatenate([[bound[0], bound[1]], rng.integers(bound[0], bound[1], size=n - 2, endpoint=True)])
    points = {other: np.full(n, o, dtype=np.int64) for other, o in anchor.items()}
    points[name] = along.astype(np.int64)
    samples = Samples({k: np.empty(0, dtype=np.int64) for k in points}, {}, {})
    samples.add(points, screen(_values(points, screen.f)))
    progress(f"{screen.f.name}: screened {n} candidates along {name}")
    return samples


def _classes_along(samples: Samples, key: tuple, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The samples' ordinals along `name`, sorted and unique, and their classes, settled (`_settle`)."""
    order = np.argsort(samples.points[name], kind="stable")
    ordinals = samples.points[name][order]
    classes = samples.classes[key][order]
    keep = np.concatenate([[True], ordinals[1:] != ordinals[:-1]])
    return ordinals[keep], _settle(classes[keep])


def _settle(classes: np.ndarray) -> np.ndarray:
    """Drop the within-tolerance flag inside any stretch of the same behaviour (true value, returned kind) where it
    flips more than MAX_FLICKER times: an error hovering near the tolerance (a cancellation) is one region, not
    hundreds of bisected flickers, while a clean crossing (error growing through the tolerance) stays a boundary."""
    coarse = np.array([screening.coarse(c) for c in classes], dtype=object)
    out = classes.copy()
    cut = np.flatnonzero(coarse[1:] != coarse[:-1])
    for a, b in zip(np.concatenate([[0], cut + 1]), np.concatenate([cut + 1, [len(classes)]])):
        if np.count_nonzero(classes[a + 1:b] != classes[a:b - 1]) > MAX_FLICKER:
            out[a:b] = coarse[a:b]
    return out


def _changes(ordinals: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Indices i where the class changes between sample i and i + 1."""
    return np.flatnonzero(classes[1:] != classes[:-1])


def _bisect(screen, samples: Samples, name: str, f: Format, until: float, progress) -> None:
    """Narrow every class change along `name` (the first MAX_CHANGES per key) to two adjacent values of the dtype."""
    others = {k: v[0] for k, v in samples.points.items() if k != name}
    step = 0
    while time.monotonic() < until:
        wanted = set()
        for key in screen.keys:
            ordinals, classes = _classes_along(samples, key, name)
            for i in _changes(ordinals, classes)[:MAX_CHANGES]:
                lo, hi = int(ordinals[i]), int(ordinals[i + 1])
                if hi - lo > 1:
                    wanted.update(boundaries.between(lo, hi, SPLIT))
        if not wanted:
            return
        step += 1
        along = np.array(sorted(wanted), dtype=np.int64)
        points = {k: np.full(len(along), v, dtype=np.int64) for k, v in others.items()}
        points[name] = along
        samples.add(points, screen(_values(points, f)))
        progress(f"{f.name}: bisecting along {name}: step {step}, {len(along)} values")
    progress(f"{f.name}: bisection along {name} stopped by the budget: some boundaries are not exact")


def _regions(case: Case, screen, samples: Samples, name: str, anchor: dict, f: Format, frameworks: list[str],
             options: Options, certified: list[int], progress, until: float) -> list[dict]:
    """Runs of one screened class along `name`, per key, with the runner's verdict certified at both ends. Where
    the two ends disagree (the verdict changes where the screen saw nothing change: an overflow that becomes a
    flush to zero, an error growing through the tolerance), the change is bisected with the runner itself to
    two adjacent values of the dtype. Neighbouring pieces with the same verdict and the same returned kind of
    value are merged."""
    runs = {}
    for key in screen.keys:
        ordinals, classes = _classes_along(samples, key, name)
        cut = _changes(ordinals, classes)
        starts, ends = np.concatenate([[0], cut + 1]), np.concatenate([cut, [len(ordinals) - 1]])
        runs[key] = [(int(ordinals[a]), int(ordinals[b]), classes[a], a == 0 or ordinals[a] - ordinals[a - 1] == 1,
                      b == len(ordinals) - 1 or ordinals[b + 1] - ordinals[b] == 1)
                     for a, b in zip(starts, ends)][:MAX_REGIONS]
    verdicts: dict[int, dict[tuple, tuple]] = {}  # ordinal -> key -> certified (verdict, inherent)

    def run_certify(points: set[int], what: str) -> None:
        todo = sorted(points - set(verdicts))
        if todo:
            progress(f"{f.name}: certifying {len(todo)} values along {name} ({what})")
            for key, by_point in certify(case, name, todo, anchor, f, frameworks, options).items():
                for o, (v, _, inherent) in by_point.items():
                    verdicts.setdefault(o, {})[key] = (v, inherent)
            certified[0] += len(todo)

    run_certify({o for key_runs in runs.values() for run in key_runs for o in run[:2]}, "region ends")
    known = {key: {o for run in key_runs for o in run[:2]} for key, key_runs in runs.items()}
    spans = {key: [run[:2] for run in key_runs] for key, key_runs in runs.items()}
    while time.monotonic() < until:
        wanted = set().union(*boundaries.wanted(spans, known, lambda key, o: verdicts[o][key]).values())
        if not wanted:
            break
        run_certify(wanted, "bisecting a verdict change")
        for key in known:
            known[key] |= wanted
    out = []
    for key, key_runs in runs.items():
        fw, impl, dtype, output = key
        merged: list[dict] = []
        for lo, hi, cls, exact_lo, exact_hi in key_runs:
            inside = sorted(o for o in known[key] if lo <= o <= hi)
            pieces, start = [], 0  # stretches of one certified verdict between the run's certified values
            for i in range(1, len(inside) + 1):
                if i == len(inside) or (verdicts[inside[i]][key] != verdicts[inside[start]][key]
                                        and len(pieces) < MAX_VERDICT_CHANGES):
                    pieces.append((inside[start], inside[i - 1] if i < len(inside) else inside[-1]))
                    start = i
            for k, (a, b) in enumerate(pieces):
                (v_a, inherent), (v_b, _) = verdicts[a][key], verdicts[b][key]
                exact_a = exact_lo if k == 0 else a - pieces[k - 1][1] == 1
                exact_b = exact_hi if k == len(pieces) - 1 else pieces[k + 1][0] - b == 1
                what = screening.returned(cls)
                if merged and merged[-1]["verdict"] == merged[-1]["verdict_at_to"] == v_a == v_b \
                        and verdicts[merged[-1]["_last"]][key] == verdicts[a][key] == verdicts[b][key] \
                        and merged[-1]["returns"] == what and merged[-1]["exact_to"] and exact_a:
                    merged[-1].update({"to": boundaries.text_of(b, f), "exact_to": bool(exact_b), "_last": b})
                    continue
                merged.append({"framework": fw, "impl": impl, "dtype": dtype, "output": output, "input": name,
                               "verdict": v_a, "verdict_at_to": v_b, "inherent": inherent, "returns": what,
                               "from": boundaries.text_of(a, f), "to": boundaries.text_of(b, f),
                               "exact_from": bool(exact_a), "exact_to": bool(exact_b),
                               "at": {n: boundaries.text_of(v, f) for n, v in anchor.items() if n != name}, "_last": b})
        for region in merged:
            del region["_last"]
            region["text"] = region_text(region)
        out += merged
    return out


def region_text(r: dict) -> str:
    first = label_text(r["verdict"], r.get("inherent"))
    verdict = first if r["verdict"] == r["verdict_at_to"] else f"{first} (at {r['from']}) .. " \
                                                               f"{r['verdict_at_to']} (at {r['to']})"
    exact = "exactly" if r["exact_from"] and r["exact_to"] else "bracketed by samples"
    return (f"{r['framework']} {r['impl']} {r['dtype']} {r['output']}: {verdict}, returns {r['returns']}, for "
            f"{r['input']} from {r['from']} to {r['to']} ({exact})")


def certify(case: Case, name: str, ordinals: list[int], anchor: dict, f: Format, frameworks: list[str],
            options: Options) -> dict[tuple, dict[int, tuple[str, float | None, bool | None]]]:
    """The runner's verdicts (as `oracle run` classifies, certified reference), error bits and inherent flags at
    values of `name` (ordinals of the dtype), the other searched inputs at the anchor (`boundaries.certify`).
    key -> ordinal -> (verdict, error bits or None, inherent)."""
    points = {name: np.array(ordinals, dtype=np.int64)}
    for other, o in anchor.items():
        if other != name:
            points[other] = np.full(len(ordinals), o, dtype=np.int64)
    measured = boundaries.certify(case, points, f, frameworks, options.max_precision)
    return {key: dict(zip(ordinals, rows)) for key, rows in measured.items()}


def lines(block: dict) -> list[str]:
    """The hunt as text: what ran, the findings, the regions other than ok, the summary."""
    out = [f"{block['id']} ({block['file']}): {block['samples']} candidates screened, {block['certified']} points "
           f"certified, {block['wall_s']} s (stopped by {block['stopped_by']})"]
    for s in block["summary"]:
        certified = f"mean {s['mean_error_bits']} bits, max {s['max_error_bits']} bits over {s['points']} certified " \
                    f"samples" if s["points"] else "no certified samples"
        out.append(f"  {s['framework']} {s['impl']} {s['dtype']} {s['output']}: {certified} (screened over "
                   f"{s['screened_points']}: mean {s['screened_mean_error_bits']}, max {s['screened_max_error_bits']})")
    for r in block["regions"]:
        if not (r["verdict"] == r["verdict_at_to"] == "ok"):
            out.append(f"  {r['text']}")
    for fnd in block["findings"]:
        shown = ", ".join(f"{n} = {v}" for n, v in fnd["inputs"].items())
        out.append(f"  finding: {fnd['framework']} {fnd['impl']} {fnd['dtype']} {fnd['output']}: {fnd['verdict']}, "
                   f"{fnd['error_bits']} bits at {shown} -> {fnd['case_file']}")
    return out
