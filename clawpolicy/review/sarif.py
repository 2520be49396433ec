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

from clawpolicy.review.lint import CHECKS, Finding
from clawpolicy.version import version

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"


def _uri(file: str) -> str:
    path = Path(file)
    return path.resolve().as_uri() if path.is_absolute() else quote(path.as_posix())


def to_sarif(findings: Iterable[Finding]) -> dict[str, Any]:
    index = {c.id: n for n, c in enumerate(CHECKS)}
    rules = [{"id": c.id, "name": c.id.replace("-", " ").title().replace(" ", ""),
              "shortDescription": {"text": c.title}, "fullDescription": {"text": c.help},
              "help": {"text": c.help}, "defaultConfiguration": {"level": c.severity.value}}
             for c in CHECKS]
    results = []
    for f in findings:
        physical: dict[str, Any] = {"artifactLocation": {"uri": _uri(f.location.file)}}
        if f.location.line > 0:
            physical["region"] = {"startLine": f.location.line,
                                  "startColumn": max(1, f.location.col)}
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
        results.append(result)
    return {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [{
        "tool": {"driver": {"name": "clawpolicy", "version": version(),
                            "rules": rules}},
        "results": results}]}


def dumps(findings: Iterable[Finding]) -> str:
    return json.dumps(to_sarif(findings), indent=2, sort_keys=True) + "\n"
