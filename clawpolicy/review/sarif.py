"""SARIF 2.1.0 output of lint findings: floor 3, for code-scanning upload (e.g. GitHub).

The rule list comes from `lint.CHECKS`; the JSON is dumped with sorted keys, so the same
findings always give the same bytes. Spec: https://docs.oasis-open.org/sarif/sarif/v2.1.0/
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from clawpolicy.errors import Location
from clawpolicy.review.finding import Finding
from clawpolicy.review.lint import CHECKS
from clawpolicy.version import version

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"


def _uri(file: str) -> str:
    path = Path(file)
    return path.resolve().as_uri() if path.is_absolute() else quote(path.as_posix())


def _physical(loc: Location) -> dict[str, Any]:
    physical: dict[str, Any] = {"artifactLocation": {"uri": _uri(loc.file)}}
    if loc.line > 0:
        physical["region"] = {"startLine": loc.line, "startColumn": max(1, loc.col)}
    return physical


def _suppression(f: Finding) -> dict[str, Any]:
    """SARIF 2.1.0 §3.35: kind inSource (a comment in the policy) or external (the project
    config), the reviewer's reason as the justification, and where it is written."""
    assert f.suppression is not None
    out: dict[str, Any] = {"kind": f.suppression.kind,
                           "justification": f.suppression.justification}
    if f.suppression.location is not None:
        out["location"] = {"physicalLocation": _physical(f.suppression.location)}
    return out


def to_sarif(findings: Iterable[Finding]) -> dict[str, Any]:
    index = {c.id: n for n, c in enumerate(CHECKS)}
    rules = [{"id": c.id, "name": c.id.replace("-", " ").title().replace(" ", ""),
              "shortDescription": {"text": c.title}, "fullDescription": {"text": c.help},
              "help": {"text": c.help}, "defaultConfiguration": {"level": c.severity.value}}
             for c in CHECKS]
    results = []
    for f in findings:
        physical = _physical(f.location)
        result: dict[str, Any] = {
            "ruleId": f.check, "ruleIndex": index[f.check], "level": f.severity.value,
            "message": {"text": f.message + (f" ({f.rule_id})" if f.rule_id else "")},
            "locations": [{"physicalLocation": physical}],
        }
        props: dict[str, Any] = {}
        if f.rule_id:
            props["policyRule"] = f.rule_id
        if f.hint:
            props["hint"] = f.hint
        if props:
            result["properties"] = props
        if f.suppression is not None:
            result["suppressions"] = [_suppression(f)]
        results.append(result)
    return {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [{
        "tool": {"driver": {"name": "clawpolicy", "version": version(),
                            "rules": rules}},
        "results": results}]}


def dumps(findings: Iterable[Finding]) -> str:
    return json.dumps(to_sarif(findings), indent=2, sort_keys=True) + "\n"
