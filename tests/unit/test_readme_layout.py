"""README's layout section names every module of the package, and names no module that is gone,
so the map a newcomer reads cannot drift from the tree again (issue 18, item 9)."""

from __future__ import annotations

import re
from typing import Any

from shared_schemas import REPO

PACKAGE = REPO / "clawpolicy"
MODULE = re.compile(r"[\w/{},.-]+\.py\b")  # `ir.py`, `backends/{k8s,k8s_common}.py`


def layout_lines() -> list[str]:
    """The package's lines of the first code block under `## Layout`."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Layout\n", 1)[1]
    block = section.split("```\n", 2)[1]
    lines = block.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("clawpolicy/"))
    out = []
    for line in lines[start + 1:]:
        if not line.startswith(" "):  # examples/, tests/: the package's part ended
            break
        out.append(line)
    return out


def expand(token: str) -> list[str]:
    """`dir/{a,b}.py` -> [`dir/a.py`, `dir/b.py`] (one brace group, as the README writes them)."""
    m = re.fullmatch(r"(.*)\{([^{}]*)\}(.*)", token)
    if not m:
        return [token]
    return [f"{m[1]}{name}{m[3]}" for name in m[2].split(",")]


def mentioned() -> set[str]:
    return {path for line in layout_lines() for token in MODULE.findall(line) for path in expand(token)}


def on_disk() -> set[str]:
    return {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
            if p.name != "__init__.py" and "__pycache__" not in p.parts}


def test_expand(subtests: Any) -> None:
    for token, expected in {"ir.py": ["ir.py"], "review/{lint,sarif}.py": ["review/lint.py", "review/sarif.py"],
                            "operate/netlab/{lab}.py": ["operate/netlab/lab.py"]}.items():
        with subtests.test(token):
            assert expand(token) == expected


def test_layout_names_every_module(subtests: Any) -> None:
    listed = mentioned()
    assert len(layout_lines()) > 10 and len(listed) > 50, "the layout section was not found"
    with subtests.test("every module is in README's layout"):
        missing = sorted(on_disk() - listed)
        assert not missing, f"add these to README.md's Layout section: {missing}"
    with subtests.test("every module README's layout names exists"):
        gone = sorted(listed - on_disk())
        assert not gone, f"README.md's Layout section names modules that do not exist: {gone}"
