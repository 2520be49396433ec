"""Each template's committed Python code (`<name>.j2c`) is what jinja2 generates from the
`.j2` beside it, and a load uses it only while it is current (issue 14).

After editing a template: `CLAWPOLICY_REGENERATE=1 .venv/bin/python -m pytest
tests/unit/test_templating.py -q`, then read the diff."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2
import pytest

from clawpolicy.backends import apparmor, dnsmasq, docs, nftables, templating

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "clawpolicy" / "templates"
TARGETS = (nftables, dnsmasq, apparmor, docs)


def _filters() -> dict[str, Mapping[str, Callable[[Any], str]]]:
    return {m.TEMPLATE: m.TEMPLATE_FILTERS for m in TARGETS}


def test_every_template_belongs_to_a_target() -> None:
    found = sorted(p.relative_to(TEMPLATES).as_posix() for p in TEMPLATES.rglob("*.j2"))
    assert found == sorted(_filters())


def test_committed_code_matches_its_template(subtests: pytest.Subtests) -> None:
    regenerate = os.environ.get("CLAWPOLICY_REGENERATE") == "1"
    for name, filters in _filters().items():
        with subtests.test(template=name):
            path = TEMPLATES / (name + templating.COMPILED_SUFFIX)
            expected = templating.compiled_text(name, filters)
            if regenerate:
                path.write_text(expected, encoding="utf-8")
            assert path.read_text(encoding="utf-8") == expected, (
                f"{path.name} is stale: CLAWPOLICY_REGENERATE=1 pytest {__file__}")


def _loads_from_source(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    compiled_from_source: list[str] = []
    original = jinja2.Environment.get_template

    def spy(self: jinja2.Environment, name: str | jinja2.Template, *args: Any,
            **kwargs: Any) -> jinja2.Template:
        compiled_from_source.append(str(name))
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(jinja2.Environment, "get_template", spy)
    return compiled_from_source


def test_current_code_is_used_and_renders_as_the_source(monkeypatch: pytest.MonkeyPatch) -> None:
    """The committed code is loaded (no template compiled), and the ruleset it renders for
    the bundled example is the one the template compiled from source renders."""
    from clawpolicy.backends.base import CompileOptions
    from clawpolicy.lower import load_policies

    policy = load_policies([REPO / "examples" / "openclaw-workstation.claw"]).policies[0]
    from_source = _loads_from_source(monkeypatch)
    nftables._template.cache_clear()
    ahead = nftables.render(policy, CompileOptions())
    assert from_source == []
    monkeypatch.setattr(jinja2, "__version__", "0.0-not-the-one-that-wrote-it")
    nftables._template.cache_clear()
    assert nftables.render(policy, CompileOptions()) == ahead
    assert from_source == [nftables.TEMPLATE]
    nftables._template.cache_clear()


def test_stale_code_falls_back_to_the_source(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another jinja2 version (or an edited template) makes the header differ: the template
    is compiled from its source, so the output never depends on a stale file."""
    from_source = _loads_from_source(monkeypatch)
    monkeypatch.setattr(jinja2, "__version__", "0.0-not-the-one-that-wrote-it")
    template = templating.load_template(nftables.TEMPLATE, nftables.TEMPLATE_FILTERS)
    assert from_source == [nftables.TEMPLATE]
    assert template.name == nftables.TEMPLATE
