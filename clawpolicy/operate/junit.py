"""Test results as JUnit XML, the format CI systems read (`clawpolicy test --junit FILE`).

The shape most consumers accept (Jenkins, GitLab, GitHub test reporters; there is no single
official schema): `<testsuites>` with totals, one `<testsuite>` per policy, one `<testcase
classname="<policy>.<layer>" name=... file=... line=... time=...>` per expectation per layer,
holding `<failure message=...>`, `<error message=...>` or `<skipped message=...>`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

from clawpolicy.operate.kerneltest import CaseResult

_CHILD = {"failed": "failure", "error": "error", "skipped": "skipped"}


def _totals(element: ET.Element, cases: Sequence[CaseResult]) -> None:
    element.set("tests", str(len(cases)))
    element.set("failures", str(sum(c.status == "failed" for c in cases)))
    element.set("errors", str(sum(c.status == "error" for c in cases)))
    element.set("skipped", str(sum(c.status == "skipped" for c in cases)))
    element.set("time", f"{sum(c.seconds for c in cases):.3f}")


def to_xml(cases: Sequence[CaseResult]) -> bytes:
    root = ET.Element("testsuites", name="clawpolicy test")
    _totals(root, cases)
    for policy in dict.fromkeys(c.policy for c in cases):
        mine = [c for c in cases if c.policy == policy]
        suite = ET.SubElement(root, "testsuite", name=policy)
        _totals(suite, mine)
        for c in mine:
            case = ET.SubElement(suite, "testcase", classname=f"{policy}.{c.layer}", name=c.name,
                                 file=c.file, line=str(c.line), time=f"{c.seconds:.3f}")
            if c.status in _CHILD:
                child = ET.SubElement(case, _CHILD[c.status], message=c.message)
                if c.status != "skipped":
                    child.set("type", c.layer)
                    child.text = c.message
    ET.indent(root)
    text: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return text + b"\n"
