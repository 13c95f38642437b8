"""Case files: the schema (format version 1), loading, and one clear message per bad input.

A case file is untrusted: it is parsed with a safe YAML loader, validated against
the pydantic model below, and its formulas and impls are parsed into allowlisted
trees (an impl's library paths are checked against `oracle.native`'s allowlist,
without importing any framework). Nothing in it is evaluated as Python, imported
or used as a path.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema

from oracle import expect as expectations
from oracle import formula, native, yamlio
from oracle import regions as region_expectations
from oracle.floats import FORMATS
from oracle.formula import FormulaError
from oracle.inputs import (
    GENERATORS,
    INTEGER_DTYPES,
    MAX_SWEEPS,
    SWEEPS,
    InputError,
    Sweep,
    all_integers,
    exact_value,
    integer_input,
    is_integer_input,
    is_search,
    is_sweep,
    round_inputs,
    search,
    sweep,
)

FRAMEWORKS = ("tf", "torch", "jax")
DTYPES = ("float32", "float64", "float16")
DEFAULT_MAX_ELEMENTS = 1_000_000

_NUMBER = {"anyOf": [{"type": "number"}, {"type": "string", "description": 'inf, -inf, nan, a hex float such as "0x1p-126", or a decimal'}]}
_INPUT_SCHEMA = {
    "description": "A number, a nested list of numbers, or a generator",
    "anyOf": [
        _NUMBER,
        {"type": "array", "items": {"anyOf": [_NUMBER, {"type": "array"}]}},
        *({"type": "object", "required": [g], "additionalProperties": False, "properties": {g: {}}} for g in GENERATORS),
        {"type": "object", "required": ["sweep"], "additionalProperties": False, "description": "evaluate at each "
         "point (two sweeps form a grid)", "properties": {"sweep": {"type": "object", "minProperties": 1,
                                                                     "maxProperties": 1, "properties": {
                                                                         s: {} for s in SWEEPS}}}},
        {"type": "object", "required": ["search"], "additionalProperties": False, "description": "a range for "
         "oracle hunt to search (oracle run evaluates its default grid, like a sweep)", "properties": {"search": {
             "anyOf": [{"type": "object", "required": ["low", "high"], "additionalProperties": False,
                        "properties": {"low": _NUMBER, "high": _NUMBER}},
                       {"type": "object", "required": ["float32"], "additionalProperties": False,
                        "properties": {"float32": {"const": "all"}}}]}}},
        *({"type": "object", "required": [d], "additionalProperties": False, "description": f"integers ({d}: labels, "
           "lengths, paddings): a number, a nested list or a generator; never differentiated nor perturbed",
           "properties": {d: {}}} for d in INTEGER_DTYPES),
    ],
}
InputSpec = Annotated[Any, WithJsonSchema(_INPUT_SCHEMA)]
LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
_IMPL_SCHEMA = {
    "description": "One library call (an expression), or a mapping label -> expression",
    "anyOf": [{"type": "string"},
              {"type": "object", "minProperties": 1, "propertyNames": {"pattern": LABEL_PATTERN, "not": {"const": "formula"}},
               "additionalProperties": {"type": "string"}}],
}
ImplSpec = Annotated[Any, WithJsonSchema(_IMPL_SCHEMA)]  # checked in _impls, with the field's path in messages
ExpectSpec = Annotated[Any, WithJsonSchema(expectations.json_schema())]  # checked by expect.parse


class CaseSpec(BaseModel):
    """Case format version 1, field by field (the contract: extend it, never break it)."""

    model_config = ConfigDict(extra="forbid", title="oracle case")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", description="unique in a corpus")
    title: str
    kind: Literal["logprob", "loss", "kl"]
    description: str | None = None
    source: str | None = Field(None, description="where the case comes from (article, issue URL)")
    tags: list[str] = []
    inputs: dict[str, InputSpec] = Field(min_length=1, description="name -> value")
    wrt: list[str] | None = Field(None, description="inputs to differentiate with respect to; default all")
    formula: str | None = Field(None, description="evaluated by every framework with its own ops; "
                                                  "a case has formula, impl, or both")
    impl: dict[Literal["tf", "torch", "jax"], ImplSpec] | None = Field(
        None, description="framework -> library call(s) to audit: one expression, or a mapping label -> expression")
    reference: str | None = Field(None, description="mathematical definition for the reference; default: formula "
                                                    "(required with impl when there is no formula)")
    frameworks: list[Literal["tf", "torch", "jax"]] = list(FRAMEWORKS)
    dtypes: list[Literal["float32", "float64", "float16"]] = ["float32"]
    tolerance_bits: float = Field(5, ge=0, description="within tolerance iff error_bits <= this")
    expect: ExpectSpec | None = Field(None, description="expected verdicts: framework -> impl label -> output, each "
                                                        "a verdict, a mapping to the next level, or a list of "
                                                        "version-ranged entries {versions, verdict}")
    regions: dict[str, Any] | None = Field(None, description="a sweep's verdict per region of its one swept input: "
                                           "dtype -> framework -> impl label -> output -> list of '<verdict>[ "
                                           "(inherent|spurious)] from <low> to <high>' (oracle.regions)")
    fixed_in: dict[Literal["tf", "torch", "jax"], str] | None = Field(
        None, description="framework -> the first release (a PEP 440 version) with the upstream fix")
    reported: str | None = Field(None, pattern=r"^https?://\S+$", description="URL of the upstream report")
    data: list[str] | None = Field(None, description="inputs that are exact data (labels, counts, indices): the "
                                                     "condition number is taken over the other inputs only; default: "
                                                     "the inputs not in wrt whose values are all integers (0/1 too)")


class CaseError(ValueError):
    """One bad input, located: `file:line: field: message`."""

    def __init__(self, file: str, field: str | None, message: str, line: int | None = None):
        self.file, self.field, self.line, self.message = file, field, line, message
        where = f"{file}:{line}" if line else file
        text = f"{where}: {field}: {message}" if field else f"{where}: {message}"
        # one line, whatever the case file put in a key or label: control characters are shown escaped
        super().__init__("".join(c if c.isprintable() else repr(c)[1:-1] for c in text))


class CaseErrors(CaseError):
    """Every bad input found in one file (a user fixes them in one pass, not one per run): located as the
    first, printed one per line; `errors` lists each."""

    def __init__(self, errors: list[CaseError]):
        first = errors[0]
        super().__init__(first.file, first.field, first.message, first.line)
        self.errors = errors
        self.args = ("\n".join(str(e) for e in errors),)


def each_error(error: CaseError) -> list[CaseError]:
    """The single errors a CaseError stands for."""
    return list(error.errors) if isinstance(error, CaseErrors) else [error]


@dataclass
class Case:
    spec: CaseSpec
    file: str
    formula: formula.Node | None  # None: the case audits impls only
    reference: formula.Node
    inputs: dict[str, np.ndarray]  # exact values (object arrays)
    wrt: list[str]
    digest: str  # content hash of the file
    lines: dict[str, int] = field(default_factory=dict)  # top-level field -> line
    impls: dict[str, list[tuple[str, formula.Node]]] = field(default_factory=dict)  # framework -> [(label, tree)]
    max_elements: int = DEFAULT_MAX_ELEMENTS  # the cap on inputs, and on every tensor the case computes
    sweeps: dict[str, Sweep] = field(default_factory=dict)  # swept inputs; `inputs` holds their points
    expect: expectations.Expectations | None = None  # the verdicts the case should get
    integers: dict[str, str] = field(default_factory=dict)  # integer inputs: name -> int32/int64
    regions: dict | None = None  # the verdict regions a sweep should get (oracle.regions)
    zipped: bool = False  # the sweeps' values are taken together, point by point (oracle.boundaries), not as a grid

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def data_inputs(self) -> list[str]:
        """Inputs that are exact data, not measurements: `data` when given, else every input outside `wrt`
        whose values are all integers (labels, counts, indices, 0/1 masks). Integer inputs are always data."""
        if self.spec.data is not None:
            return list(self.spec.data) + [name for name in self.integers if name not in self.spec.data]
        return [name for name, value in self.inputs.items() if name not in self.wrt and all_integers(value)]

    @property
    def perturbed(self) -> list[str]:
        """The inputs whose rounding the condition number measures: all but the data inputs."""
        data = set(self.data_inputs)
        return [name for name in self.inputs if name not in data]

    @property
    def points(self) -> int:
        """How many points the case is evaluated at (the product of the sweeps' lengths; 1 without)."""
        if self.zipped:
            return len(next(iter(self.sweeps.values())).values)
        return math.prod(len(s.values) for s in self.sweeps.values())

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Each input's shape at one point: a swept input is a scalar."""
        return {name: () if name in self.sweeps else value.shape for name, value in self.inputs.items()}

    def rounded(self, f, exact: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """The inputs (`exact`, default the batched exact inputs) as evaluated at Format `f`: each float input
        rounded once to it, each integer input an integer array of its own dtype."""
        return round_inputs(self.batched_inputs() if exact is None else exact, f, self.integers)

    def batched_inputs(self) -> dict[str, np.ndarray]:
        """The exact inputs; with sweeps, each gets a leading axis of the points (the grid, row-major)."""
        if not self.sweeps:
            return self.inputs
        grid = {name: s.values for name, s in self.sweeps.items()} if self.zipped else \
            dict(zip(self.sweeps, (g.ravel() for g in np.meshgrid(*(s.values for s in self.sweeps.values()),
                                                                   indexing="ij"))))
        return {name: grid[name] if name in grid else np.stack([value] * self.points)
                for name, value in self.inputs.items()}


def load(path: str | Path, max_elements: int = DEFAULT_MAX_ELEMENTS) -> Case:
    """Load and validate one case file; raise CaseError on any bad input.

    Total: whatever goes wrong while reading, validating or building a case's inputs (an exception nobody
    foresaw included) is a CaseError naming the file, so one file never ends a batch."""
    try:
        return _load(path, max_elements)
    except CaseError:
        raise
    except (Exception, RecursionError) as e:  # noqa: BLE001 - a bug or a limit hit: still this file's message
        raise CaseError(str(path), None, f"cannot load: {type(e).__name__}: {str(e)[:300]}") from None


def _load(path: str | Path, max_elements: int) -> Case:
    file = str(path)
    try:
        text = yamlio.read(path)
    except (OSError, UnicodeDecodeError) as e:
        raise CaseError(file, None, f"cannot read: {e}") from None
    except yamlio.YamlError as e:
        raise CaseError(file, None, str(e)) from None
    return loads(text, file, max_elements)


def loads(text: str, file: str, max_elements: int = DEFAULT_MAX_ELEMENTS) -> Case:
    """Load and validate a case from its YAML text; `file` names it in messages. Raise CaseError (CaseErrors
    when more than one field is bad)."""
    try:
        data = yamlio.load(text)
    except yamlio.YamlError as e:
        raise CaseError(file, None, str(e), e.line) from None
    if not isinstance(data, dict):
        raise CaseError(file, None, "a case file is a YAML mapping (id, title, kind, inputs, formula, ...)", 1)
    try:
        spec = CaseSpec.model_validate(data)
    except ValidationError as e:
        raise _errors(file, data, e) from None

    def fail(path: tuple, message: str):
        return CaseError(file, ".".join(map(str, path)), message, yamlio.line_of(data, path))

    problems: list[CaseError] = []  # independent checks all run: every bad field is reported at once
    inputs, sweeps, integers = {}, {}, {}
    for name, value in spec.inputs.items():
        # a bad name is reported alone: every formula and impl is read against the names
        if not name.isidentifier() or name in formula.FUNCTIONS or name in formula.CONSTANTS:
            raise fail(("inputs", name), f"input name '{name}' must be an identifier that is not a function or constant name")
        if spec.impl and name in native.ROOTS:
            raise fail(("inputs", name), f"input name '{name}' is a library that impl expressions call "
                                         f"({', '.join(native.ROOTS)}): rename the input")
        try:
            if is_search(value):
                sweeps[name] = search(value)
                inputs[name] = sweeps[name].values
            elif is_sweep(value):
                sweeps[name] = sweep(value, max_elements)
                inputs[name] = sweeps[name].values
            elif is_integer_input(value):
                integers[name], inputs[name] = integer_input(value, max_elements)
            else:
                inputs[name] = exact_value(value, max_elements)
        except InputError as e:
            problems.append(fail(("inputs", name, *e.path), str(e)))
            continue
        except (Exception, RecursionError) as e:  # noqa: BLE001 - numpy's or mpmath's own, or a bug: this input's
            problems.append(fail(("inputs", name), f"cannot build this input: {type(e).__name__}: {str(e)[:300]}"))
            continue
        overflowing = _draws_overflow(value, inputs[name], spec.dtypes)
        if overflowing:
            problems.append(fail(("inputs", name, *value), f"draws reach {overflowing[1]:.4g}, beyond the largest "
                                                           f"{overflowing[0]} ({float(FORMATS[overflowing[0]].max_finite):.4g}): "
                                                           "they would be inf; make the spread smaller"))
    points = math.prod(len(s.values) for s in sweeps.values())
    per_point = sum(1 if name in sweeps else v.size for name, v in inputs.items())
    if len(sweeps) > MAX_SWEEPS:
        problems.append(fail(("inputs", list(sweeps)[MAX_SWEEPS]), f"at most {MAX_SWEEPS} inputs may sweep (a grid); "
                                                                   f"{', '.join(sweeps)} do"))
    elif not problems and points * per_point > max_elements:  # the total needs every input
        largest = next(iter(sweeps)) if sweeps else max(inputs, key=lambda name: inputs[name].size)
        problems.append(fail(("inputs", largest), f"{points} points x {per_point} input elements make "
                                                  f"{points * per_point}, more than the cap of {max_elements}"))
    wrt = spec.wrt if spec.wrt is not None else [name for name in spec.inputs if name not in integers]
    for k, name in enumerate(wrt):
        if name not in spec.inputs:
            problems.append(fail(("wrt", k), f"'{name}' names no input (inputs: {', '.join(spec.inputs)})"))
        elif name in integers:
            problems.append(fail(("wrt", k), f"'{name}' is an {integers[name]} input: integers are never "
                                             "differentiated (leave it out of wrt)"))
    for k, name in enumerate(spec.data or []):
        if name not in spec.inputs:
            problems.append(fail(("data", k), f"'{name}' names no input (inputs: {', '.join(spec.inputs)})"))
    if spec.formula is None and spec.impl is None:
        problems.append(CaseError(file, "formula", "required field is missing (a case has formula, impl, or both)", 1))
    if spec.formula is None and spec.reference is None and spec.impl is not None:
        problems.append(CaseError(file, "reference", "required when impl is given without a formula: the "
                                                     "mathematical definition the impls are audited against",
                                  data.lines.get("impl")))
    trees = {}
    for key in ("formula", "reference"):
        source = getattr(spec, key)
        if source is None:
            continue
        try:
            trees[key] = _parse_definition(key, source, set(spec.inputs))
        except FormulaError as e:
            col = f" (column {e.col + 1})" if e.col is not None else ""
            problems.append(fail((key,), f"{e}{col}"))
    try:
        impls = _impls(spec, fail)
        if spec.fixed_in:
            expectations.parse_fixed_in(spec.fixed_in, fail)
    except CaseError as e:
        problems.append(e)
    if problems:  # expect names the runs above, so it is checked once they are valid
        raise problems[0] if len(problems) == 1 else CaseErrors(problems)
    expect = None if spec.expect is None else expectations.parse(spec.expect, _runs(spec, impls, wrt), fail)
    regions = None if spec.regions is None else \
        region_expectations.parse(spec.regions, spec.dtypes, _runs(spec, impls, wrt), list(sweeps), fail)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return Case(spec, file, trees.get("formula"), trees.get("reference", trees.get("formula")), inputs, wrt, digest,
                dict(data.lines), impls, max_elements, sweeps, expect, integers, regions=regions)


def _parse_definition(key: str, source: str, names: set[str]) -> formula.Node:
    """A formula, or a reference: the formula language, and for a reference also the jax impl allowlist's
    library calls (`optax.ctc_loss(...)`): JAX traces them and the exact interpreter evaluates what they
    compute, so a library function whose jaxpr is its mathematical definition can serve as the reference.
    A reference in the formula language parses exactly as before."""
    try:
        return formula.parse(source, names)
    except FormulaError as e:
        if key != "reference" or not str(e).startswith("only plain function names can be called"):
            raise
    return formula.parse(source, names, impl="jax")


def _draws_overflow(spec, value: np.ndarray, dtypes: list[str]) -> tuple[str, float] | None:
    """(dtype, largest draw) when a random generator's draws round to infinity in one of the case's dtypes: a
    sampler's parameters chosen for float64 that float16 or float32 cannot hold (explicit infs stay allowed)."""
    if not (isinstance(spec, dict) and set(spec) & {"normal", "uniform"}) or not value.size:
        return None
    largest = max(abs(float(v)) for v in value.ravel())
    for dtype in dtypes:
        if largest > FORMATS[dtype].max_finite:
            return dtype, largest
    return None


def _runs(spec: CaseSpec, impls: dict[str, list[tuple[str, formula.Node]]], wrt: list[str]) -> dict[str, dict]:
    """framework -> impl label -> outputs, for each framework that runs something: what `expect` may name."""
    outputs = ["value", *(f"grad.{name}" for name in wrt)]
    labels = {fw: ["formula"] * (spec.formula is not None) + [label for label, _ in impls.get(fw, [])]
              for fw in spec.frameworks}
    return {fw: dict.fromkeys(names, outputs) for fw, names in labels.items() if names}


def _impls(spec: CaseSpec, fail) -> dict[str, list[tuple[str, formula.Node]]]:
    """Parse every impl expression (allowlist checked, nothing imported); label bare calls by their callee."""
    impls: dict[str, list[tuple[str, formula.Node]]] = {}
    if not spec.impl:
        return impls
    for framework, given in spec.impl.items():
        if not isinstance(given, (str, dict)):
            raise fail(("impl", framework), f"expected one expression (a string) or a mapping label -> expression, "
                                            f"got {given!r}")
        entries = [(None, given)] if isinstance(given, str) else list(given.items())
        if not entries:
            raise fail(("impl", framework), "an impl mapping needs at least one label: expression")
        parsed = []
        for label, source in entries:
            path = ("impl", framework) if label is None else ("impl", framework, label)
            if not isinstance(source, str):
                raise fail(path, f"expected an expression (a string), got {source!r}")
            if label is not None and (label == "formula" or not re.match(LABEL_PATTERN, label)):
                raise fail(path, f"label {label!r} must match {LABEL_PATTERN} and not be 'formula' (the formula's rows "
                                 "are labelled formula)")
            try:
                tree = formula.parse(source, set(spec.inputs), impl=framework)
            except FormulaError as e:
                col = f" (column {e.col + 1})" if e.col is not None else ""
                raise fail(path, f"{e}{col}") from None
            parsed.append((label if label is not None else formula.callee(tree) or "impl", tree))
        impls[framework] = parsed
    return impls


def line_in(case: Case, key: str) -> int | None:
    """The line of a top-level field; a defaulted `reference` points at `formula`."""
    return case.lines.get(key) or case.lines.get("formula") or case.lines.get("impl")


def _errors(file: str, data: dict, error: ValidationError) -> CaseError:
    """Each schema violation, located (one CaseError, or CaseErrors when there are several)."""
    errors = list({(e.field, e.message): e for e in (_located(file, data, err) for err in error.errors())}.values())
    return errors[0] if len(errors) == 1 else CaseErrors(errors)


def _located(file: str, data: dict, err: dict) -> CaseError:
    loc = tuple(err["loc"])
    if loc[-1:] == ("[key]",):  # a mapping key that is not allowed: name the key itself
        loc = loc[:-1]
    if loc[:1] in (("impl",), ("fixed_in",)) and len(loc) == 2 and loc[1] not in FRAMEWORKS:
        message = f"unknown framework '{loc[1]}' (known: {', '.join(FRAMEWORKS)})"
    elif err["type"] == "extra_forbidden":
        known = ", ".join(CaseSpec.model_fields)
        message = f"unknown field '{loc[-1]}' (known fields: {known})"
    elif err["type"] == "missing":
        message = "required field is missing"
    else:
        message = err["msg"]
        if "input" in err and err["type"] not in ("dict_type", "list_type"):
            message += f" (got {err['input']!r})"
    line = yamlio.line_of(data, loc) or (1 if err["type"] == "missing" else None)
    return CaseError(file, ".".join(map(str, loc)), message, line)


def discover(paths: list[str | Path]) -> list[Path]:
    """Case files named by `paths`: files as given, folders searched recursively for *.yaml/*.yml."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(q for q in p.rglob("*") if q.suffix in (".yaml", ".yml") and q.is_file()))
        else:
            found.append(p)
    return found


def load_all(paths: list[str | Path], max_elements: int = DEFAULT_MAX_ELEMENTS) -> tuple[list[Case], list[CaseError]]:
    """Load every case under `paths`; bad files become CaseErrors and the rest still load."""
    cases: list[Case] = []
    errors: list[CaseError] = []
    first_seen: dict[str, str] = {}
    for path in discover(paths):
        try:
            case = load(path, max_elements)
        except CaseError as e:
            errors.extend(each_error(e))
            continue
        if case.id in first_seen:
            errors.append(CaseError(case.file, "id", f"duplicate id '{case.id}' (first defined in {first_seen[case.id]})",
                                    case.lines.get("id")))
            continue
        first_seen[case.id] = case.file
        cases.append(case)
    return cases, errors


def json_schema() -> dict:
    schema = CaseSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    # a case has formula, impl, or both; impl without formula needs a reference
    schema["anyOf"] = [{"required": ["formula"]}, {"required": ["impl", "reference"]}]
    return schema
