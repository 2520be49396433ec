"""Every Mermaid diagram the project emits renders with the real renderer (issue 18, item 8):
`@mermaid-js/mermaid-cli` (mmdc) driving Debian's chromium, installed by `scripts/setup.sh
--test-tools` into .tools/. A syntax slip in a template or an escaper would otherwise reach
users' docs and pull-request comments unseen.

What is rendered: the Mermaid blocks of every committed Markdown file (generated/ docs, golden
docs, docs/, README), `diff --format markdown` on sample changes, and one diagram whose labels
are the hostile strings, escaped by `markdown.mermaid_label`. Each diagram must render, and its
SVG must draw exactly the nodes and edges the source declares (so a label that broke out into
a statement of its own is caught even when the result still parses). Canaries prove the check
can fail: a broken diagram must fail to render, an unescaped breakout must be flagged.

All diagrams go through one mmdc run (starting chromium dominates: benchmarks/mermaid_bench.py);
only when that run fails is each diagram rendered alone, to say which one and why. Where node,
mmdc or chromium is missing the test skips saying so, except in CI, where it fails."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt
from shared_schemas import REPO

from clawpolicy.cli import main
from clawpolicy.markdown import mermaid_label

TOOLS = REPO / ".tools"
MMDC = TOOLS / "node_modules" / ".bin" / "mmdc"
PUPPETEER = TOOLS / "puppeteer.json"
MD = MarkdownIt("commonmark")
# Where committed Markdown may carry diagrams (the .tools and .venv trees are not ours).
COMMITTED = ("README.md", "docs", "generated", "examples", "tests/golden")

HOSTILE_LABELS = {
    "quote breakout": '"]) --> evil["x',
    "directive": "%%{init: {'theme': 'dark'}}%%",
    "entity codes": "#quot; ; #35; #lt;",
    "html": "<script>alert(1)</script><img src=x onerror=alert(1)>",
    "pipes and arrows": "a | b --> c -.-> d ||",
    "backticks": "`markdown string` ``x``",
    "keywords": "end subgraph click call style classDef linkStyle",
    "brackets": "[(x)] {y} ((z)) >w]",
    "line breaks": "first\n| x |\r\n# heading",
    "bidi and zero width": "\u202eevil\u200b\ufeff",
    "backslash": "trailing backslash \\",
    "unicode": "faß.de ünïcödé 名前",
}


@dataclass(frozen=True)
class Diagram:
    name: str  # where it comes from, for the subtest and the failure message
    text: str
    canary: bool = False  # expected to FAIL the structure check


@dataclass(frozen=True)
class Rendered:
    svg: str | None
    error: str


# ------------------------------------------------------------------------------ the renderer


def ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def renderer() -> list[str]:
    """mmdc's argv prefix; skips (fails under CI) when a part of the renderer is missing."""
    browser = Path(json.loads(PUPPETEER.read_text())["executablePath"])
    missing = [what for what, ok in (("node", shutil.which("node") is not None),
                                     (str(MMDC.relative_to(REPO)), MMDC.exists()),
                                     (str(browser), browser.exists())) if not ok]
    if missing:
        message = f"Mermaid renderer incomplete, missing {', '.join(missing)}: run scripts/setup.sh --test-tools"
        if ci():
            pytest.fail(message + " (CI must render every diagram)")
        pytest.skip(message)
    return [str(MMDC), "--quiet", "--puppeteerConfigFile", str(PUPPETEER)]


def _run(argv: list[str], diagrams: list[Diagram], work: Path) -> tuple[int, str, list[Path]]:
    work.mkdir(parents=True)
    body = "\n".join(f"## {i}\n\n```mermaid\n{d.text.rstrip()}\n```\n" for i, d in enumerate(diagrams))
    (work / "in.md").write_text(body, encoding="utf-8")
    r = subprocess.run([*argv, "--input", str(work / "in.md"), "--output", str(work / "out.md"),
                        "--artefacts", str(work)], capture_output=True, text=True, timeout=600)
    return r.returncode, (r.stderr + r.stdout).strip(), [work / f"out-{i + 1}.svg" for i in range(len(diagrams))]


def render(argv: list[str], diagrams: list[Diagram], work: Path) -> list[Rendered]:
    """One mmdc run for all; when it fails, one run per diagram to attribute the failure."""
    code, error, svgs = _run(argv, diagrams, work / "batch")
    if code == 0:
        return [Rendered(p.read_text(encoding="utf-8") if p.exists() else None, "no SVG written")
                for p in svgs]
    out = []
    for i, d in enumerate(diagrams):
        code, error, (svg,) = _run(argv, [d], work / f"alone{i}")
        out.append(Rendered(svg.read_text(encoding="utf-8") if code == 0 and svg.exists() else None, error))
    return out


# ------------------------------------------------------------------------------ the diagrams


def mermaid_blocks(markdown: str) -> list[str]:
    return [t.content for t in MD.parse(markdown) if t.type == "fence" and t.info.strip() == "mermaid"]


def committed() -> list[Diagram]:
    files: list[Path] = []
    for entry in COMMITTED:
        path = REPO / entry
        files += [path] if path.is_file() else sorted(path.rglob("*.md"))
    out = []
    for path in files:
        for n, block in enumerate(mermaid_blocks(path.read_text(encoding="utf-8"))):
            out.append(Diagram(f"{path.relative_to(REPO)}#{n + 1}", block))
    return out


def _changed(text: str) -> str:
    """A sample change of an example: a rule removed, egress and ingress added."""
    text = re.sub(r"(?m)^  allow egress to slack\.com.*\n(?:    .*\n)?", "", text, count=1)
    added = ('  allow egress to github.com, *.githubusercontent.com port 443/tcp reason "git"\n'
             '  allow egress to 2001:db8::/32 port 22/tcp reason "v6 hosts"\n'
             '  allow ingress from 192.0.2.0/24 port 18789/tcp reason "lab"\n')
    end = text.rstrip().rfind("}")
    return text[:end] + added + text[end:]


def diff_markdown(old: Path, new: Path) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["diff", str(old), str(new), "--format", "markdown"])
    return out.getvalue()


TWO_POLICIES = """policy alpha {
  mode enforce
  applies-to host
  allow egress to 192.0.2.1 port 443/tcp reason "a"
  allow egress to 203.0.113.5 port 22/tcp reason "ssh"
}
policy beta {
  mode shadow
  applies-to user openclaw
  allow egress to api.example.com port 443/tcp reason "b"
}
"""


def diffs(tmp: Path) -> list[Diagram]:
    """`diff --format markdown` of an example changed, and of two policies in one file."""
    example = REPO / "examples" / "openclaw-workstation.claw"
    changed = tmp / "openclaw-workstation.claw"
    changed.write_text(_changed(example.read_text(encoding="utf-8")), encoding="utf-8")
    two_old, two_new = tmp / "old.claw", tmp / "new.claw"
    two_old.write_text(TWO_POLICIES, encoding="utf-8")
    two_new.write_text(TWO_POLICIES.replace('  allow egress to 203.0.113.5 port 22/tcp reason "ssh"\n', "")
                       .replace("192.0.2.1 port", "192.0.2.1, 198.51.100.0/24, fd00::/8 port")
                       .replace("api.example.com port", "*.example.com port"), encoding="utf-8")
    pairs = {"diff: an example changed": (example, changed), "diff: two policies changed": (two_old, two_new)}
    out = []
    for name, (old, new) in pairs.items():
        blocks = mermaid_blocks(diff_markdown(old, new))
        assert blocks, f"{name}: the diff printed no diagram"
        out += [Diagram(f"{name}#{n + 1}", b) for n, b in enumerate(blocks)]
    return out


def labels() -> Diagram:
    """Every hostile string as a node label and an edge label, through the one escaper."""
    lines = ["flowchart LR"]
    values = list(HOSTILE_LABELS.values())
    lines += [f"  n{i}[{mermaid_label(v)}]" for i, v in enumerate(values)]
    lines += [f"  n{i} -->|{mermaid_label(v)}| n{i + 1}" for i, v in enumerate(values[1:])]
    return Diagram("hostile labels (markdown.mermaid_label)", "\n".join(lines))


# The one slip a structure check must see although the diagram still parses: a label that was
# not escaped ends its node and declares another.
BREAKOUT = Diagram("canary: unescaped label", 'flowchart LR\n  a(["x"]) --> evil["x"]\n  b["y"]\n  a --> b',
                   canary=True)
BROKEN = Diagram("canary: broken diagram", 'flowchart LR\n  a(["agent]) --> b["peer"]')


# ------------------------------------------------------------------------------ structure

NODE_DECL = re.compile(r"^\s*(\w+)\s*[\[\(]")  # the generated sources declare one node a line
EDGE_DECL = re.compile(r"^\s*(\w+)\s*(?:-->|-\.->)(?:\|.*\|)?\s*(\w+)\s*$")


def declared(text: str) -> tuple[set[str], Counter[tuple[str, str]]]:
    nodes, edges = set(), Counter[tuple[str, str]]()
    for line in text.splitlines()[1:]:
        if m := EDGE_DECL.match(line):
            edges[m[1], m[2]] += 1
        elif m := NODE_DECL.match(line):
            nodes.add(m[1])
    return nodes, edges


def drawn(svg: str) -> tuple[set[str], Counter[tuple[str, str]]]:
    nodes = set(re.findall(r'<g class="node[^"]*" id="[^"]*?flowchart-(\w+?)-\d+"', svg))
    edges = Counter((m[0], m[1]) for m in re.findall(r'<path [^>]*?id="L_([A-Za-z0-9]+)_([A-Za-z0-9]+)_\d+"', svg))
    return nodes, edges


def problems(d: Diagram, r: Rendered) -> list[str]:
    if r.svg is None:
        return [f"did not render: {r.error[-1500:]}"]
    out = []
    if not r.svg.lstrip().startswith("<svg") or "Syntax error" in r.svg:
        out.append("the output is not a diagram")
    if len(r.svg) < 2000:
        out.append(f"a trivial SVG ({len(r.svg)} bytes)")
    nodes, edges = declared(d.text)
    got_nodes, got_edges = drawn(r.svg)
    if got_nodes != nodes:
        out.append(f"nodes drawn {sorted(got_nodes)} != declared {sorted(nodes)}")
    if got_edges != edges:
        out.append(f"edges drawn {sorted(got_edges.elements())} != declared {sorted(edges.elements())}")
    return out


# ------------------------------------------------------------------------------ the tests


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Diagram, Rendered]]:
    argv = renderer()
    tmp = tmp_path_factory.mktemp("mermaid")
    diagrams = [*committed(), *diffs(tmp), labels(), BREAKOUT]
    return list(zip(diagrams, render(argv, diagrams, tmp / "render"), strict=True))


def test_every_diagram_renders(rendered: list[tuple[Diagram, Rendered]], subtests: Any) -> None:
    names = [d.name for d, _ in rendered]
    assert sum(n.startswith("generated/") for n in names) >= 3, names  # one per example, at least
    assert sum(n.startswith("diff: ") for n in names) >= 2, names
    for d, r in rendered:
        with subtests.test(d.name):
            found = problems(d, r)
            if d.canary:
                assert r.svg is not None, r.error  # it parses ...
                assert found, "an unescaped label drew an extra node, and the check missed it"
            else:
                assert not found, f"{d.name}:\n{d.text}\n" + "\n".join(found)


def test_hostile_labels_show_as_text(rendered: list[tuple[Diagram, Rendered]]) -> None:
    """The directive in a label did not restyle the diagram (dark theme fills nodes #1f2020)."""
    result = next(r for d, r in rendered if d.name.startswith("hostile labels"))
    svg = result.svg
    assert svg is not None, result.error
    assert "#1f2020" not in svg
    assert "evil" in svg and "<script>" not in svg


def test_a_broken_diagram_fails(tmp_path: Path) -> None:
    argv = renderer()
    (result,) = render(argv, [BROKEN], tmp_path)
    assert result.svg is None
    assert "Parse error" in result.error or "Error" in result.error, result.error
