"""Fuzzing policy text with includes through the real CLI: graphs of files (cycles, depth,
diamonds, self-includes) mixed with odd files (secrets, binary, non-UTF-8, FIFOs, directories,
symlinks out of the tree and to devices, /proc), each policy drawn from the grammar and
mutated, with an output tree that may have a file, a symlink loop or a symlink out in the
way, and with the include root as default, widened, or `/` (so that the guard against quoting
a non-policy file, not only the tree bound, is what stands between /proc/self/environ and
the terminal). Whatever is drawn, `compile` exits 0, or exits 1 with positioned diagnostics; it
never prints a traceback, never quotes a byte of a file that is not a policy, and never puts
a raw control character on the terminal.

Derandomized and modest in the suite; `CLAWPOLICY_FUZZ_EXAMPLES=N` runs N random inputs (a
longer hunt: `CLAWPOLICY_FUZZ_EXAMPLES=20000 pytest tests/fuzz/test_include_fuzz.py
--hypothesis-show-statistics`)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_parser_fuzz import statement

from clawpolicy.cli import main

SECRET = "s3cr3t-Zq8-never-print"
_LONG = "CLAWPOLICY_FUZZ_EXAMPLES" in os.environ
FUZZ = settings(max_examples=int(os.environ.get("CLAWPOLICY_FUZZ_EXAMPLES", "120")), deadline=None,
                derandomize=not _LONG, suppress_health_check=list(HealthCheck))

# Files that are not policies: each holds the secret, none may ever be quoted.
ODD: dict[str, bytes] = {
    "secret.env": f"TOKEN={SECRET}\nPATH=/bin\n".encode(),
    "shadow.claw": f"root:$6${SECRET}:19000::::::\n".encode(),
    "eq.claw": f"policy={SECRET}\n".encode(),
    "nul.claw": f"define x = 1.2.3.4\x00{SECRET}\n".encode(),
    "latin1.claw": f"# caf\xe9 {SECRET}\n".encode("latin-1"),
    "binary.claw": bytes(range(1, 256)) + SECRET.encode(),
    "bom-utf16.claw": "\ufeffpolicy p { }".encode("utf-16") + SECRET.encode(),
}
SPECIAL = ["fifo.claw", "dir.claw", "zero.claw", "out-link.claw", "out-dir/defs.claw", "missing.claw",
           "loop.claw", "sub/dangling.claw"]
ESCAPING = ["../outside/secret.env", "/proc/self/environ", "/etc/hostname", "/dev/zero",
            "sub/../../outside/defs.claw", "./sub/../main.claw", "sub//f1.claw", "", ".", "sub/"]
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_POSITIONED = re.compile(r"^\S.*:\d+:\d+: error: |^clawpolicy: error: |^\S.*: error: ", re.M)


@dataclass(frozen=True)
class Tree:
    files: dict[str, str]  # policy files (relative path -> text); main.claw is compiled
    odd: tuple[str, ...]  # which odd files exist
    root: str  # --include-root: "" (the default), "base" (repo and outside) or "/" (everything)
    out: str  # what is in the way under -o: "", "file", "loop", "link" (p/docs -> outside)


@st.composite
def policy_file(draw: st.DrawFn, names: list[str], top: bool) -> str:
    targets = names + list(ODD) + SPECIAL + ESCAPING
    includes = draw(st.lists(st.sampled_from(targets), max_size=4))
    lines = [f'include "{t}"' for t in includes]
    lines += [f"define d{draw(st.integers(0, 3))} = " + draw(st.sampled_from(
        ["192.0.2.1", "@d1", "@d2, 10.0.0.0/8", "faß.de", "::ffff:10.9.9.2", "*.com", "@d0"]))
        for _ in range(draw(st.integers(0, 2)))]
    if top or draw(st.integers(0, 5)) == 0:  # an included file with a policy is an error
        body = draw(st.lists(statement(), max_size=4))
        lines.append("policy p {\n  applies-to host\n  " + "\n  ".join(body) + "\n}")
    text = "\n".join(lines) + "\n"
    if draw(st.integers(0, 3)) == 0:  # mutate: insert hostile characters somewhere
        at = draw(st.integers(0, len(text)))
        junk = "".join(draw(st.lists(st.sampled_from(
            ["\x1b[2J", "\r", "\x00", "\u202e", "\x9b", '"', "{", "}", "@d0", "\n", "é", "ß"]),
            max_size=4)))
        text = text[:at] + junk + text[at:]
    return text


@st.composite
def trees(draw: st.DrawFn) -> Tree:
    count = draw(st.integers(0, 5))
    names = ["main.claw"] + [f"sub/f{i}.claw" if i % 2 else f"f{i}.claw" for i in range(1, count + 1)]
    files = {name: draw(policy_file(names, top=name == "main.claw")) for name in names}
    odd = tuple(draw(st.lists(st.sampled_from(list(ODD)), unique=True)))
    return Tree(files, odd, draw(st.sampled_from(["", "", "base", "/"])),
                draw(st.sampled_from(["", "", "", "file", "loop", "link"])))


def _lay_out(tree: Tree, base: Path) -> Path:
    repo, outside = base / "repo", base / "outside"
    (repo / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.env").write_bytes(ODD["secret.env"])
    (outside / "defs.claw").write_text("define d0 = 192.0.2.99\n")
    for name, text in tree.files.items():
        (repo / name).write_text(text, encoding="utf-8", errors="surrogatepass")
    for name in tree.odd:
        (repo / name).write_bytes(ODD[name])
    os.mkfifo(repo / "fifo.claw")
    (repo / "dir.claw").mkdir()
    (repo / "zero.claw").symlink_to("/dev/zero")
    (repo / "out-link.claw").symlink_to(outside / "secret.env")
    (repo / "out-dir").symlink_to(outside)
    (repo / "loop.claw").symlink_to("loop2.claw")
    (repo / "loop2.claw").symlink_to("loop.claw")
    (repo / "sub" / "dangling.claw").symlink_to("nowhere.claw")
    out = base / "out"
    if tree.out == "file":
        out.write_text("in the way\n")
    elif tree.out == "loop":
        out.symlink_to("out")
    elif tree.out == "link":
        (out / "p").mkdir(parents=True)
        (out / "p" / "docs").symlink_to(outside)
    return repo


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


@FUZZ
@given(trees())
def test_compile_with_includes_never_leaks_or_raises(tree: Tree) -> None:
    os.environ["CLAWPOLICY_FUZZ_SECRET"] = SECRET  # what /proc/self/environ would show
    try:
        with tempfile.TemporaryDirectory() as tmp:
            repo = _lay_out(tree, Path(tmp))
            before = _snapshot(Path(tmp) / "outside")
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                root = {"": [], "base": ["--include-root", tmp], "/": ["--include-root", "/"]}[tree.root]
                code = main(["compile", str(repo / "main.claw"), "-t", "docs", "-t", "nftables",
                             "-o", str(Path(tmp) / "out"), *root])
            assert _snapshot(Path(tmp) / "outside") == before  # nothing written or deleted there
    finally:
        del os.environ["CLAWPOLICY_FUZZ_SECRET"]
    shown = out.getvalue() + err.getvalue()
    assert code in (0, 1), shown
    assert "Traceback" not in shown
    assert SECRET not in shown, shown
    assert not _UNPRINTABLE.search(shown), shown
    if code == 1:
        assert _POSITIONED.search(err.getvalue()), shown
        assert "nothing was written" in err.getvalue()
