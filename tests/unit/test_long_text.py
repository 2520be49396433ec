"""Long and multi-line hostile text reaches no reader beyond its limits (issue 16, item 19).

A 16 KiB reason once made apparmor_parser fail while compile exited 0, and dnsmasq reads 1 KiB
of a line at a time (the rest of a longer comment line is parsed as an option). Every backend
gets 16 KiB of hostile text in each free-text field; each artifact stays within what its reader
accepts: AppArmor and dnsmasq line lengths, nft's 128-byte comments and log prefixes, the
Kubernetes API's 256 KiB of annotations. Line breaks never get that far: lowering refuses them.
The real parsers read the same artifacts in tests/kernel/test_long_text_parsers.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from clawpolicy.backends.apparmor import PARSER_LINE_MAX_BYTES
from clawpolicy.backends.base import COMMENT_LINE_MAX_BYTES, annotations_problem
from clawpolicy.compiler import compile_paths
from clawpolicy.lower import load_policies

KIB16 = 16 * 1024
# Quotes, braces, AppArmor/dnsmasq/nft syntax, multi-byte and invisible characters, repeated.
HOSTILE = ('"} profile pwn { /** rwx, #include <x> address=/evil/127.0.0.9 ;table inet x{} '
           "é漢\u202e\u200b ")


def hostile(size: int = KIB16) -> str:
    return (HOSTILE * (size // len(HOSTILE) + 1))[:size].replace('"', "'")


def long_policy(scope: str) -> str:
    text = hostile()
    fields = f'reason "{text}" owner "{text}" ticket "{text}"'
    return f"""policy long-text {{
  {scope}
  description "{text}"
  owner "{text}"
  allow egress to example.com, *.example.org port 443/tcp {fields}
  allow egress to 192.0.2.0/24 {fields}
  deny egress to 192.0.2.9 {fields}
  files deny ~/.ssh {fields}
  files allow ~/.openclaw {fields}
  syscalls deny ptrace {fields}
  capabilities drop all reason "{text}"
  sockets allow inet stream, unix reason "{text}"
}}
"""


SCOPES = {
    "host": ("applies-to host\n  dns local", ["nftables", "dnsmasq", "apparmor", "seccomp", "docs"]),
    "pods": ("applies-to pods app=openclaw in namespace agents", ["k8s", "apparmor", "seccomp", "docs"]),
}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _check_artifact(rel: str, data: bytes) -> None:
    if "/apparmor/" in rel and not rel.endswith(".yaml"):
        for line in _lines(data):
            assert len(line) <= PARSER_LINE_MAX_BYTES
            if line.lstrip().startswith(b"#"):
                assert len(line) <= COMMENT_LINE_MAX_BYTES + 80, line[:80]
    if "/nftables/" in rel:
        text = data.decode()
        for quoted in re.findall(r'(?:comment|log prefix) ("[^"\n]*")', text):
            assert len(quoted[1:-1].encode()) <= 127, quoted[:60]
        for line in _lines(data):
            if line.startswith(b"#"):
                assert len(line) <= COMMENT_LINE_MAX_BYTES + 80, line[:80]
    if "/dnsmasq/" in rel:
        assert all(len(line) < 1024 for line in _lines(data))  # dnsmasq's read buffer
    if rel.endswith(".yaml"):
        for doc in yaml.safe_load_all(data):
            annotations = ((doc or {}).get("metadata") or {}).get("annotations") or {}
            assert annotations_problem(doc["kind"], annotations) is None


def test_every_artifact_stays_within_its_reader(workdir: Path, subtests: pytest.Subtests) -> None:
    for scope, (header, targets) in SCOPES.items():
        src = workdir / f"{scope}.claw"
        src.write_text(long_policy(header), encoding="utf-8")
        flavors = ("vanilla", "cilium", "calico") if scope == "pods" else ("vanilla",)
        for flavor in flavors:
            from clawpolicy.backends.base import CompileOptions
            result = compile_paths([src], targets, explicit=True,
                                   options=CompileOptions(k8s_flavor=flavor))  # type: ignore[arg-type]
            with subtests.test(scope=scope, flavor=flavor):
                assert result.ok, [d.message[:200] for d in result.diagnostics if d.severity.value == "error"]
                assert {rel.split("/")[1] for rel in result.outputs} == set(targets)
            for rel, data in sorted(result.outputs.items()):
                with subtests.test(scope=scope, flavor=flavor, artifact=rel):
                    _check_artifact(rel, data)


LINE_BREAKS = ("\\n", "\\r", "\\u2028", "\\u0085")
INJECTED = "address=/evil.example/127.0.0.9"


def test_line_breaks_in_rule_text_are_refused(workdir: Path, subtests: pytest.Subtests) -> None:
    for brk in LINE_BREAKS:
        for field, text in (
                ("reason", f'allow egress to 192.0.2.1 reason "a{brk}b"'),
                ("rule owner", f'allow egress to 192.0.2.1 reason "r" owner "a{brk}b"'),
                ("ticket", f'files deny ~/.ssh reason "r" ticket "a{brk}b"')):
            with subtests.test(field=field, line_break=brk):
                src = workdir / "breaks.claw"
                src.write_text(f"policy breaks {{\n {text}\n}}\n", encoding="utf-8")
                result = load_policies([src])
                assert not result.ok
                assert any("one non-empty line" in d.message for d in result.diagnostics)


def test_line_breaks_in_policy_text_stay_in_one_comment_line(workdir: Path, subtests: pytest.Subtests) -> None:
    """A policy's description and owner may hold line breaks (tests/golden/cases/hostile-text):
    every target writes them on one line, so the text after a break never starts a line."""
    for brk in LINE_BREAKS:
        for field in ("description", "owner"):
            for scope, (header, targets) in SCOPES.items():
                with subtests.test(field=field, line_break=brk, scope=scope):
                    src = workdir / "breaks.claw"
                    src.write_text(f'policy breaks {{\n {header}\n {field} "x{brk}{INJECTED}{brk}"\n'
                                   ' allow egress to example.com port 443/tcp reason "r"\n'
                                   ' files deny ~/.ssh reason "r"\n}\n', encoding="utf-8")
                    result = compile_paths([src], targets, explicit=True)
                    assert result.ok, [d.message for d in result.diagnostics]
                    for rel, data in result.outputs.items():
                        lines = data.decode("utf-8", "replace").splitlines()
                        assert not [line for line in lines if line.lstrip().startswith(INJECTED)], rel


def test_annotations_over_the_api_limit_are_refused() -> None:
    assert annotations_problem("NetworkPolicy", {"k": "v" * (256 * 1024 - 1)}) is None
    problem = annotations_problem("NetworkPolicy", {"k": "v" * (256 * 1024)})
    assert problem is not None and "NetworkPolicy" in problem


def test_a_path_longer_than_path_max_is_refused(workdir: Path) -> None:
    src = workdir / "path.claw"
    src.write_text('policy path {\n files deny "/srv/' + "a" * 4091 + '" reason "r"\n}\n')
    assert not load_policies([src]).ok
    src.write_text('policy path {\n files deny "/srv/' + "a" * 4090 + '" reason "r"\n}\n')
    assert load_policies([src]).ok


def test_a_profile_line_the_parser_cannot_scan_is_refused(workdir: Path) -> None:
    """Every character of this path is escaped as four: the rule line would pass 16 KiB."""
    src = workdir / "quotes.claw"
    src.write_text('policy quotes {\n files deny "/srv/' + '\\"' * 4000 + '" reason "r"\n}\n')
    result = compile_paths([src], ["apparmor"], explicit=True)
    assert not result.ok and not result.outputs
    assert any("would not parse" in d.message for d in result.diagnostics)


def test_a_dnsmasq_line_dnsmasq_would_split_is_refused(workdir: Path, subtests: pytest.Subtests) -> None:
    """One name in many port lists makes one long nftset= line (dnsmasq keeps one entry per
    name, so it cannot be split): refused, not written; a few port lists still compile."""
    for count, ok in ((4, True), (60, False)):
        with subtests.test(rules=count):
            rules = "".join(f'  allow egress to example.com port {1000 + i}/tcp reason "r" id rule-{i}\n'
                            for i in range(count))
            src = workdir / "many.claw"
            src.write_text(f"policy many {{\n applies-to host\n dns local\n{rules}}}\n")
            result = compile_paths([src], ["dnsmasq"], explicit=True)
            assert result.ok is ok
            if not ok:
                assert not result.outputs
                assert any("dnsmasq would misread" in d.message for d in result.diagnostics)
