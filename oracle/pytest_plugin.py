"""pytest plugin: case files' expectations as test items (opt in with `--oracle-cases` or the ini `oracle_cases`).

pytest loads it in every run where oracle is installed (entry point pytest11), including runs that have
nothing to do with cases, so it imports only pytest until it collects, and collects nothing unless asked.
Then every *.yaml / *.yml file under the paths given to pytest is a case file (as for `oracle check`), with
one item per case x framework x impl, named `case-id[framework-impl]` for -k. Each case runs once per
framework, when that framework's first item runs. An item fails with the lines `oracle check` prints, errors
when the case cannot run, and is skipped, with the reason, when no expectation covers it or no version range
contains the installed version. A YAML file that is not a case (no `id` and no `kind`: a CI config, a
docker-compose file) is skipped, not a collection error.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

SUFFIXES = (".yaml", ".yml")


def pytest_addoption(parser: pytest.Parser) -> None:
    help_text = "collect *.yaml case files as tests of their expect field (oracle check as pytest items)"
    parser.getgroup("oracle").addoption("--oracle-cases", action="store_true", default=False, help=help_text)
    parser.addini("oracle_cases", help_text, type="bool", default=False)


def pytest_collect_file(file_path, parent: pytest.Collector) -> pytest.Collector | None:
    config = parent.config
    if file_path.suffix in SUFFIXES and (config.getoption("oracle_cases") or config.getini("oracle_cases")):
        return CaseFile.from_parent(parent, path=file_path)
    return None


def is_case(text: str) -> bool:
    """Does this YAML text mean to be a case: a mapping with an `id` or a `kind`? Text that does not parse
    counts when a line starts with `id:` or `kind:`, so that a case with a syntax error is still reported."""
    from oracle import yamlio

    try:
        data = yamlio.load(text)
    except yamlio.YamlError:
        return re.search(r"^(id|kind)\s*:", text, re.MULTILINE) is not None
    return isinstance(data, dict) and ("id" in data or "kind" in data)


def _relative(path: Path, start: Path) -> Path:
    try:
        return path.relative_to(start)
    except ValueError:
        return path


class ExpectationFailed(Exception):
    """Unmet expectations; the message is `oracle check`'s lines."""


class CaseFile(pytest.File):
    """One case file: its items, and the case's result per framework (run once, on demand)."""

    def collect(self):
        from oracle import case as case_io
        from oracle import yamlio

        try:
            if not is_case(yamlio.read(self.path)):
                pytest.skip(f"not an oracle case (no id or kind): {self.path.name}")
        except (OSError, UnicodeDecodeError, yamlio.YamlError):
            pass  # the loader below says what is wrong
        try:  # the path as `oracle check` would show it, run from the same folder
            self.case = case_io.load(_relative(self.path, self.config.invocation_params.dir))
        except case_io.CaseError as e:
            raise self.CollectError(f"invalid: {e}") from None
        self.results: dict[str, dict] = {}
        case = self.case
        for framework in case.spec.frameworks:
            labels = ["formula"] * (case.formula is not None) + [label for label, _ in case.impls.get(framework, [])]
            for label in labels:
                yield CaseItem.from_parent(self, name=f"{case.id}[{framework}-{label}]", framework=framework,
                                           impl=label)

    def result(self, framework: str) -> dict:
        if framework not in self.results:
            from oracle import budget
            from oracle.runner import run_case

            try:  # bounded like `oracle check`: a case that runs past its time is this item's error, not a hang
                with budget.limit(budget.CASE_PART, budget.DEFAULT_TIMEOUT_S):
                    self.results[framework] = run_case(self.case, [framework])
            except budget.OutOfBudget:
                raise RuntimeError(budget.timed_out(budget.DEFAULT_TIMEOUT_S)) from None
        return self.results[framework]


class CaseItem(pytest.Item):
    """One framework and impl of a case: its rows' expectations at every dtype and output."""

    def __init__(self, *, framework: str, impl: str, **kwargs):
        super().__init__(**kwargs)
        self.framework, self.impl = framework, impl
        self.outcomes: list[dict] = []

    def setup(self) -> None:
        """Run the case (a crash is an error, not a failure), unless no expectation could cover this item."""
        case = self.parent.case
        if case.expect is None or not case.expect.may_cover(self.framework, self.impl):
            pytest.skip(f"no expectation for {self.framework} {self.impl} in {case.file}")
        self.outcomes = [o for o in self.parent.result(self.framework).get("expectations", [])
                         if o["framework"] == self.framework and o["impl"] == self.impl]

    def runtest(self) -> None:
        from oracle.expect import line

        case = self.parent.case
        failed = [o for o in self.outcomes if o["passed"] is False]
        if failed:
            raise ExpectationFailed("\n".join(line(case.file, case.id, o) for o in failed))
        if not self.outcomes:
            pytest.skip(f"no expectation for {self.framework} {self.impl} in {case.file} at the installed version")
        if all(o["passed"] is None for o in self.outcomes):
            pytest.skip(self.outcomes[0]["message"])

    def reportinfo(self):
        """Where pytest's report points, and the failure section's header: the item itself."""
        return self.path, None, self.name

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ExpectationFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)
