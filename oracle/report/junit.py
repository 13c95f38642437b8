"""junit.xml: an audit as the test report CI systems read (Jenkins' JUnit schema, junit-10.xsd).

One testcase per case x framework x impl (its dtypes and outputs together), classname "<family>.<case id>". It
fails where a row's verdict is not ok or an expectation (issue 6) is not met; a case the tool could not run is one
testcase with an error, and so is each invalid case file. The versions are the suite's properties."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from oracle.report import not_ok_rows, unmet_expectations
from oracle.report.markdown import family

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")  # characters XML 1.0 cannot carry


def render(doc: dict) -> str:
    suite = ET.Element("testsuite", name="oracle audit")
    suite.append(_properties(doc["environment"]))
    cases = [case for result in doc["cases"] for case in _testcases(result)]
    cases += [_invalid(entry) for entry in doc.get("invalid", [])]
    suite.extend(cases)
    counts = {"tests": len(cases), "failures": sum(c.find("failure") is not None for c in cases),
              "errors": sum(c.find("error") is not None for c in cases)}
    seconds = sum(result.get("elapsed_s", 0.0) for result in doc["cases"])
    suite.attrib.update({k: str(v) for k, v in counts.items()}, skipped="0", time=f"{seconds:.3f}")
    root = ET.Element("testsuites", name="oracle audit", time=f"{seconds:.3f}", **{k: str(v) for k, v in counts.items()})
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _text(value: object) -> str:
    return _NOT_XML.sub("\ufffd", str(value))


def _properties(env: dict) -> ET.Element:
    """Python, platform, every version and the audit's options: what the verdicts depend on."""
    pairs = {"python": env.get("python"), "platform": env.get("platform"),
             **env.get("versions", {}), **{f"option.{k}": v for k, v in env.get("options", {}).items()}}
    properties = ET.Element("properties")
    for name, value in pairs.items():
        ET.SubElement(properties, "property", name=_text(name), value=_text(_plain(value)))
    return properties


def _plain(value: object) -> str:
    """A property value as written on a command line: lists comma-separated, None empty."""
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return "" if value is None else str(value)


def _testcases(result: dict) -> list[ET.Element]:
    classname = _text(f"{family(result)}.{result['id']}")
    if "error" in result:
        case = ET.Element("testcase", name="all frameworks", classname=classname)
        ET.SubElement(case, "error", type="error", message=_text(result["error"])).text = _text(
            f"{result['file']}: the tool could not run this case: {result['error']}")
        return [case]
    runs = dict.fromkeys((r["framework"], r["impl"]) for r in result["results"] + result.get("expectations", []))
    return [_testcase(classname, result, framework, impl) for framework, impl in runs]


def _testcase(classname: str, result: dict, framework: str, impl: str) -> ET.Element:
    """One framework and impl of a case: failing on a verdict that is not ok or an unmet expectation."""
    case = ET.Element("testcase", name=_text(f"{framework} {impl}"), classname=classname)
    rows, bad, unmet = (_of(items, framework, impl) for items in (result["results"], not_ok_rows(result),
                                                                  unmet_expectations(result)))
    if not bad and not unmet:
        return case
    outputs = [f"{r['dtype']} {r['output']}: {r['verdict']} ({r['error_bits'] or '-'} bits)" for r in rows]
    expected = [f"expected {e['expected']} for {e['dtype']} {e['output']}, got {e['got']}" for e in unmet]
    details = [f"{r['dtype']} {r['output']}: {r['explanation']}" for r in bad if r["explanation"]]
    details += [f"{e['dtype']} {e['output']}: {e['message']}" for e in unmet if e.get("message")]
    kinds = sorted({r["verdict"] for r in bad} | ({"expectation"} if unmet else set()))
    failure = ET.SubElement(case, "failure", type=_text(", ".join(kinds)), message=_text("; ".join(outputs + expected)))
    failure.text = _text("\n".join([f"{result['file']}: {result['title']}", *details]))
    return case


def _of(items: list[dict], framework: str, impl: str) -> list[dict]:
    return [x for x in items if (x["framework"], x["impl"]) == (framework, impl)]


def _invalid(entry: dict) -> ET.Element:
    case = ET.Element("testcase", name=_text(entry["file"]), classname="invalid")
    where = ": ".join(filter(None, [entry["file"] + (f":{entry['line']}" if entry.get("line") else ""),
                                    entry.get("field"), entry["message"]]))
    ET.SubElement(case, "error", type="invalid", message=_text(entry["message"])).text = _text(where)
    return case
