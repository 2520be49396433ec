"""Every `pip install` the repository tells people to run installs a pinned source (issue 18).

`clawpolicy` on the public package index is an unrelated project, so a recipe that installs a
name from the index can run a stranger's code with the job's token. Allowed: a local checkout
(`.`, `./x`, `-e .`), a VCS URL at a full commit or a version tag (or at a variable the same
file refuses unless it is 40 hex), a wheel or requirements file with hashes, and a third-party
name pinned with `==`. Our own names (`clawpolicy`, `clawpolicy-compiler`) never come from the
index by name. The checker is tested on good and bad lines first, then run on the docs.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

from clawpolicy.version import DISTRIBUTION

REPO = Path(__file__).resolve().parents[2]
OWN_NAMES = {"clawpolicy", "clawpolicy-compiler"}
_PIP = re.compile(r"\b(?:pip3?|pipx|uv pip)\s+install\b(?P<rest>.*)")
_END = re.compile(r"\s(?:#|&&|\|\||;|\|)|`|\)\s*$")
_FULL_COMMIT = re.compile(r"[0-9a-f]{40}")
_TAG = re.compile(r"v?\d+(?:\.\d+)+")
_VAR = re.compile(r"^\$\{?\{?\s*(?:env\.)?(\w+)\s*\}?\}?$")
_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*(.*)$")
_VALUE_OPTIONS = {"-r", "--requirement", "-c", "--constraint", "-e", "--editable", "-i", "--index-url",
                  "--extra-index-url", "-f", "--find-links", "--target", "-t", "--python-version"}


def documents() -> list[Path]:
    """Where the repository tells people what to run."""
    found = [REPO / "README.md", REPO / ".pre-commit-hooks.yaml", *sorted((REPO / "docs").rglob("*.md")),
             *sorted(p for p in (REPO / "examples").rglob("*") if p.is_file() and not p.suffix == ".claw"),
             *sorted((REPO / "benchmarks").glob("*.md"))]
    return [p for p in found if p.exists()]


def _rev_pinned(rev: str, text: str) -> bool:
    if _FULL_COMMIT.fullmatch(rev) or _TAG.fullmatch(rev):
        return True
    var = _VAR.match(rev)  # a variable the same file refuses unless it holds a full commit
    return bool(var) and re.search(rf"\$\{{?{var.group(1)}\}}?\"?\s*=~\s*\^\[0-9a-f\]\{{40\}}\$",
                                   text) is not None


def _requirement_problem(req: str, hashed: bool, text: str) -> str | None:
    if req.startswith((".", "/", "~")) and not req.endswith(".whl"):
        return None  # a checkout on disk: the source is what is in front of you
    if req.endswith(".whl") or re.match(r"https?://", req):
        return None if hashed or "#sha256=" in req else f"{req}: a wheel or archive without --hash"
    name_part, _, url = req.partition(" @ ")
    url = url.strip() if url else (req if req.startswith("git+") else "")
    if url:
        if not url.startswith("git+"):
            return None if hashed or "#sha256=" in url else f"{req}: a URL without a hash"
        rev = url.rsplit("@", 1)[1] if url.count("@") >= 1 and "@" in url.split("//", 1)[-1] else ""
        return None if rev and _rev_pinned(rev, text) else f"{req}: a VCS URL not at a full commit or tag"
    m = _NAME.match(name_part)
    if not m:
        return f"{req}: not understood"
    name, spec = m.group(1).lower().replace("_", "-"), m.group(3).strip()
    if name in OWN_NAMES:
        return f"{req}: clawpolicy by name from the index (that name is another project's)"
    if hashed and spec.startswith("=="):
        return None
    return None if re.fullmatch(r"==\s*[0-9][\w.+!-]*", spec) else f"{req}: an unpinned third-party name"


def problems(line: str, text: str = "") -> list[str]:
    """What is unpinned in one line's `pip install` commands (empty: all pinned)."""
    out: list[str] = []
    for m in _PIP.finditer(line):
        rest = m.group("rest")
        if end := _END.search(rest):
            rest = rest[:end.start()]
        try:
            words = shlex.split(rest)
        except ValueError:
            words = rest.split()
        hashed = any(w == "--require-hashes" or w.startswith("--hash") for w in words)
        i = 0
        while i < len(words):
            word = words[i]
            if word in ("-r", "--requirement"):
                if not hashed:
                    out.append(f"-r {words[i + 1] if i + 1 < len(words) else ''}: without --require-hashes")
                i += 2
            elif word in ("-e", "--editable"):
                if i + 1 < len(words) and (p := _requirement_problem(words[i + 1], hashed, text)):
                    out.append(p)
                i += 2
            elif word in _VALUE_OPTIONS:
                i += 2
            elif word.startswith("-"):
                i += 1
            else:
                if p := _requirement_problem(word, hashed, text):
                    out.append(p)
                i += 1
    return out


GUARD = '[[ "$REV" =~ ^[0-9a-f]{40}$ ]] || exit 1'
CASES = [
    ("pip install .", True),
    ("python -m pip install -e '.[test,fleet]'", True),
    ("pip install ./dist", True),
    ('pip install "clawpolicy-compiler[nftables] @ git+https://h/o/clawpolicy@' + "a" * 40 + '"', True),
    ("pip install git+https://h/o/clawpolicy@v0.1.0", True),
    ('pip install "clawpolicy-compiler @ git+https://h/o/clawpolicy@${REV}"', True),
    ("pip install --require-hashes -r requirements.txt", True),
    ("pip install clawpolicy_compiler-0.1.0-py3-none-any.whl --hash=sha256:" + "0" * 64, True),
    ("pip install 'ansible-core==2.19.14'", True),
    ("make run   # no pip here", True),
    ('python -m pip install "clawpolicy[nftables]"', False),
    ("pip install clawpolicy-compiler==0.1.0", False),
    ("pip install clawpolicy-compiler", False),
    ("pip install 'ansible-core>=2.15'", False),
    ("pip install --upgrade pip", False),
    ("pip install git+https://h/o/clawpolicy", False),
    ("pip install git+https://h/o/clawpolicy@main", False),
    ('pip install "clawpolicy-compiler @ git+https://h/o/clawpolicy@${OTHER}"', False),
    ("pip install -r requirements.txt", False),
    ("pip install dist/clawpolicy_compiler-0.1.0-py3-none-any.whl", False),
    ("cd x && pip install requests && make", False),
    ("# elsewhere: pipx install clawpolicy", False),
]


def test_the_checker_tells_pinned_from_unpinned(subtests: pytest.Subtests) -> None:
    for line, pinned in CASES:
        with subtests.test(line=line):
            found = problems(line, GUARD)
            assert (found == []) is pinned, found


def test_every_documented_install_is_pinned(subtests: pytest.Subtests) -> None:
    seen = 0
    for path in documents():
        text = path.read_text(encoding="utf-8", errors="replace")
        for n, line in enumerate(text.splitlines(), 1):
            if _PIP.search(line):
                seen += 1
                with subtests.test(msg=f"{path.relative_to(REPO)}:{n}"):
                    assert problems(line, text) == [], line.strip()
    assert seen >= 3  # the CI recipes and the README's install lines are found at all


def test_the_distribution_name_is_ours() -> None:
    """The distribution is not `clawpolicy` (another project on the index); `--version` and
    SARIF read the metadata of the name pyproject.toml builds."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == DISTRIBUTION == "clawpolicy-compiler"
    assert project["scripts"] == {"clawpolicy": "clawpolicy.cli:main"}
    assert project["license"] == "Apache-2.0" and (REPO / "LICENSE").is_file()


def test_the_github_recipe_has_least_privilege() -> None:
    """No permissions by default, each job its own; every action at a full commit; the job
    that may write to pull requests checks nothing out and runs no clawpolicy (it must not run
    code from the pull request with a write token)."""
    text = (REPO / "examples" / "ci" / "github-actions.yml").read_text(encoding="utf-8")
    workflow = yaml.safe_load(text)
    assert workflow["permissions"] == {}
    for name, job in workflow["jobs"].items():
        assert "permissions" in job, name
        for step in job["steps"]:
            if "uses" in step:
                ref = step["uses"].rsplit("@", 1)[1]
                assert _FULL_COMMIT.fullmatch(ref), f"{name}: {step['uses']} is not at a full commit"
        writes = {k for k, v in job["permissions"].items() if v == "write"}
        runs = " ".join(str(step.get("run", "")) + str(step.get("uses", "")) for step in job["steps"])
        if "pull-requests" in writes:
            assert writes == {"pull-requests"}, name
            assert "clawpolicy " not in runs and "checkout" not in runs, name
        assert "contents" not in writes, name
