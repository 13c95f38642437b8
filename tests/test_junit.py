"""junit.xml: valid against Jenkins' JUnit schema (vendored: tests/schemas/junit-10.xsd from jenkinsci/xunit-plugin),
one testcase per case x framework x impl, failures for findings and unmet expectations, errors for crashed cases."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema
from report_samples import document

from oracle.report import junit

SCHEMA = xmlschema.XMLSchema(Path(__file__).parent / "schemas" / "junit-10.xsd")


def test_junit_is_valid_and_fails_exactly_the_findings():
    xml = junit.render(document())
    SCHEMA.validate(xml)
    suite = ET.fromstring(xml).find("testsuite")
    assert {k: suite.get(k) for k in ("tests", "failures", "errors")} == {"tests": "10", "failures": "3", "errors": "2"}
    outcome = {(c.get("classname"), c.get("name")): [child.tag for child in c] for c in suite.iter("testcase")}
    assert outcome == {
        ("normal.passing", "tf formula"): [], ("normal.passing", "jax formula"): [],
        ("seeds.failing", "tf formula"): ["failure"], ("seeds.failing", "torch formula"): [],
        ("seeds.failing", "jax log_sigmoid"): [], ("seeds.errored", "all frameworks"): ["error"],
        ("kl.expected", "jax formula"): ["failure"], ("kl.expected", "tf formula"): [],
        ("sweeps.swept", "jax formula"): ["failure"],
        ("invalid", "cases/bad.yaml"): ["error"]}
    failing = suite.find("testcase[@classname='seeds.failing'][@name='tf formula']/failure")
    assert failing.get("type") == "overflow"
    assert failing.get("message") == "float32 value: overflow (32.0 bits); float32 grad.z: overflow (32.0 bits)"
    assert "float32 value: tf value went overflow" in failing.text
    expected = suite.find("testcase[@classname='kl.expected']/failure")
    assert expected.get("type") == "expectation"
    assert "expected overflow for float32 value, got ok" in expected.get("message")
    assert "fixed upstream?" in expected.text and "not checked" not in expected.text
    assert suite.find("testcase[@classname='seeds.errored']/error").get("message") == "worker killed by SIGSEGV"
    invalid = suite.find("testcase[@classname='invalid']/error")
    assert invalid.get("message") == "unknown function 'foo' \ufffd | piped"  # a control character XML cannot hold
    assert invalid.text.startswith("cases/bad.yaml:6: formula: ")
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["jax"] == "0.10.2" and properties["python"] == "3.11.7"
    assert properties["option.dtypes"] == "float32" and properties["option.frameworks"] == ""


def test_the_schema_is_strict():
    with pytest.raises(xmlschema.XMLSchemaValidationError):  # a testsuite must count its tests
        SCHEMA.validate('<testsuites><testsuite name="oracle audit"/></testsuites>')
