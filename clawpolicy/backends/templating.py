"""The text targets' templates: floor 2. One jinja2 environment, and each template's Python
code generated ahead of time.

Every target that renders text (nftables, dnsmasq, AppArmor, docs) loads its template here:
undefined names are errors, nothing is escaped implicitly (autoescape off), so each target
passes its own escaping filters and every user string must go through one.

jinja2 turns a template into Python source on every load (lexer, parser, code generator):
about 25-45 ms of each `compile` (issue 14). That source is the same every time, so it is
generated once and committed beside the template, as `<name>.j2` -> `<name>.j2c`, with a
first line naming the SHA-256 of the template it came from and the jinja2 version that
wrote it. A load uses the `.j2c` only when both match (else it compiles the `.j2` as
before: a stale file costs time, never output). tests/unit/test_templating.py fails when a
`.j2c` is stale; `CLAWPOLICY_REGENERATE=1` rewrites them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when a template target renders, not by every command
    import jinja2

COMPILED_SUFFIX = "c"  # ruleset.nft.j2 -> ruleset.nft.j2c
_HEADER = "# clawpolicy template code: {name} sha256 {digest} jinja2 {version}; do not edit\n"


def environment(filters: Mapping[str, Callable[[Any], str]]) -> jinja2.Environment:
    """The one environment every text target renders in, with the target's filters."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("clawpolicy", "templates"),
                             undefined=jinja2.StrictUndefined, autoescape=False,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(filters)
    return env


def compiled_text(name: str, filters: Mapping[str, Callable[[Any], str]]) -> str:
    """What `<name>c` holds: the header, then the Python source jinja2 generates for the
    template (the filters must be the target's own: jinja2 checks their names)."""
    import jinja2

    env = environment(filters)
    source, filename, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
    code = env.compile(source, name, filename, raw=True)
    return _header(name, source, jinja2.__version__) + code


def load_template(name: str, filters: Mapping[str, Callable[[Any], str]]) -> jinja2.Template:
    """The template `name` (a path under clawpolicy/templates/) with the target's filters;
    from its committed code when that is current, from its source otherwise."""
    import jinja2

    env = environment(filters)
    source, filename, uptodate = env.loader.get_source(env, name)  # type: ignore[union-attr]
    compiled = resources.files("clawpolicy").joinpath("templates", name + COMPILED_SUFFIX)
    try:
        text = compiled.read_text(encoding="utf-8")
    except FileNotFoundError:
        return env.get_template(name)
    header, _, code = text.partition("\n")
    if header + "\n" != _header(name, source, jinja2.__version__):
        return env.get_template(name)
    return env.template_class.from_code(env, compile(code, filename or name, "exec"),
                                        env.make_globals(None), uptodate)


def _header(name: str, source: str, version: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()
    return _HEADER.format(name=name, digest=digest, version=version)
