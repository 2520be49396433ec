"""Kubernetes names: floor 1. Label and namespace syntax, checked where a policy or the
command line names pods (`applies-to pods`, `--k8s-selector`), so the k8s target only ever
emits names the API server accepts (Kubernetes docs, "Labels and Selectors": syntax and
character set; "Namespaces": RFC 1123 labels)."""

from __future__ import annotations

import re

_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
DEFAULT_NAMESPACE = "default"


def label_problem(key: str, value: str) -> str | None:
    """Why `key=value` is not a valid Kubernetes label, or None."""
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        return (f"label key prefix '{prefix}' is not a DNS subdomain (lower-case letters, digits, "
                "'-' and '.', at most 253 characters)")
    if not _NAME.fullmatch(name):
        return (f"label key '{name}' must be 1-63 letters, digits, '-', '_' or '.', starting and "
                "ending with a letter or digit")
    if value and not _NAME.fullmatch(value):
        return (f"label value '{value}' must be empty or 1-63 letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit")
    return None


def namespace_problem(name: str) -> str | None:
    if _DNS_LABEL.fullmatch(name):
        return None
    return (f"namespace '{name}' must be 1-63 lower-case letters, digits and '-', starting and "
            "ending with a letter or digit")


def parse_selector(text: str) -> tuple[tuple[tuple[str, str], ...], list[str]]:
    """`app=openclaw,tier=agent` -> sorted ((key, value), ...) and the problems found."""
    labels: dict[str, str] = {}
    problems: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            problems.append(f"'{item}' is not key=value")
            continue
        problem = label_problem(key, value)
        if problem:
            problems.append(problem)
        elif key in labels and labels[key] != value:
            problems.append(f"label '{key}' is given twice")
        labels[key] = value
    return tuple(sorted(labels.items())), problems
