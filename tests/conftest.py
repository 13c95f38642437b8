"""Print the classifier's confusion matrix after the labelled-corpus tests ran."""

from __future__ import annotations


def pytest_terminal_summary(terminalreporter):
    import sys

    module = sys.modules.get("test_classify") or sys.modules.get("tests.test_classify")
    if module is None or not module.CONFUSION:
        return
    confusion = module.CONFUSION
    labels = sorted({label for label, _, _ in confusion})
    verdicts = sorted({verdict for _, _, verdict in confusion} | set(labels))
    write = terminalreporter.write_line
    terminalreporter.section("classifier confusion matrix (label x verdict, case x framework)")
    write(f"{'label':<18}" + "".join(f"{v:>18}" for v in verdicts))
    for label in labels:
        counts = [sum(n for (lab, _, v), n in confusion.items() if lab == label and v == verdict) for verdict in verdicts]
        write(f"{label:<18}" + "".join(f"{c:>18}" for c in counts))
