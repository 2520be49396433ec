"""Every generated AppArmor profile against the real apparmor_parser, and read back against the IR.

No root and no AppArmor in the running kernel are needed: the parser compiles (-QK, -S) with the
feature sets pinned in tests/data/apparmor/ (--kernel-features), and --config-file=/dev/null
keeps the host's parser.conf out. Three independent checks per profile and mode:

1. the parser accepts it, emits binary policy, and `-N` names exactly one profile (a syntax
   check alone accepts an injected second profile: DESIGN.md);
2. a reader that decodes AppArmor's quoting (processunquoted: octal and backslash escapes)
   finds exactly the rules `expected()` derives from the IR, each under a comment naming its
   rule ID: none lost, none added;
3. a reference profile written here from those rules, with every byte of every path in
   octal, compiles to byte-identical binary policy: the parser reads the generated profile
   as meaning exactly the IR's rules.
Broken profiles are shown to fail each check, so the checks can fail.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clawpolicy.backends import apparmor, apparmor_text
from clawpolicy.backends.base import CompileOptions
from clawpolicy.ir import Action, Mode, Policy
from clawpolicy.lower import load_policies

REPO = Path(__file__).resolve().parents[2]
FEATURES = sorted((REPO / "tests/data/apparmor").glob("features-*"))
PARSER = shutil.which("apparmor_parser") or next(
    (p for p in ("/usr/sbin/apparmor_parser", "/sbin/apparmor_parser") if Path(p).exists()), None)
needs_parser = pytest.mark.skipif(PARSER is None, reason="apparmor_parser not installed "
                                  "(apt-get install apparmor)")
# Expected on stderr: no securityfs here; the Debian feature set has no af_unix mediation, so
# the parser downgrades abstractions/base's unix rules (see tests/data/apparmor/README.md).
BENIGN_STDERR = re.compile(r"^(Cache read/write disabled: .*|Warning from profile \S+ \(\S+\): "
                           r"downgrading extended network unix socket rule to generic network rule|)$")

CASES = {
    "no-confinement": "",
    "drop-all": "capabilities drop all",
    "drop-list": "capabilities drop net_admin, sys_admin, sys_ptrace",
    "keep-net-raw": "capabilities drop all keep net_raw, net_bind_service",
    "raw-and-packet": "sockets allow inet raw, packet, netlink, unix stream",
    "any-inet-type": 'sockets allow inet, inet6 dgram reason "sockets, with a comma"',
    "netlink-protocols": "sockets allow unix, inet stream, netlink route, netlink audit",
    "workspace": """
        files allow ~/.openclaw, /srv/agent-workspace reason "agent state and workspace"
        files deny ~/.ssh, ~/.openclaw/credentials reason "deny overrides allow" ticket SEC-1
        capabilities drop all keep net_bind_service
        sockets allow unix, inet stream, inet6 stream""",
    "root-and-home": 'files allow ~/ reason "home" \n files deny / reason "everything else"',
    "hostile-paths": r'''
        files deny "/srv/a\"b", "/tmp/x y/z", "/srv/{a,b}", "/srv/[ab]*?", "/srv/@{HOME}",
                   "/srv/#x", "/srv/c,d", "/srv/e } profile pwn { /** rwx,", "~/é",
                   "/srv/\" rw, } profile pwn /** { capability, audit deny \"/x", "/srv/\u2028x"
          reason "quote \" brace } #include <x> profile pwn { capability, end"
        files allow "~/work space", "/srv/ok,{x}" reason "allow \" } too"''',
    "executable-glob": 'executable "/opt/open claw/*/bin/{node,openclaw}"',
}


def _load(text: str, tmp: Path, name: str = "p.claw") -> Policy:
    src = tmp / name
    src.write_text(text, encoding="utf-8")
    result = load_policies([src])
    assert result.ok and len(result.policies) == 1, result.diagnostics
    return result.policies[0]


def backend_only_hostile(policy: Policy) -> Policy:
    """Paths and text the lowering rejects (line breaks, backslashes, control characters):
    the backend must still render them as one literal rule each."""
    files = tuple(f.model_copy(update={
        "paths": tuple(sorted({*f.paths, "/srv/new\nline", "/srv/back\\slash\\", "/srv/\x7f\x1b[0m"})),
        "reason": "line\n} profile pwn {\ncapability,\n#include <x>"}) for f in policy.files)
    return policy.model_copy(update={"files": files})


@pytest.fixture(scope="module")
def policies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Policy]:
    tmp = tmp_path_factory.mktemp("aa")
    out = {}
    for case, body in CASES.items():
        out[case] = _load(f"policy t-{case} {{\n mode enforce\n applies-to host\n{body}\n}}\n", tmp,
                          f"{case}.claw")
    out["backend-only-hostile"] = backend_only_hostile(out["hostile-paths"])
    for path in [*sorted((REPO / "examples").glob("*.claw")),
                 *sorted((REPO / "tests/golden/cases").glob("*.claw"))]:
        result = load_policies([path])
        assert result.ok, result.diagnostics
        for p in result.policies:
            out[f"{path.parent.name}/{p.name}"] = p
    return out


def profile_text(policy: Policy, **options: Any) -> str:
    result = apparmor.BACKEND.compile(policy, CompileOptions(**options))
    assert not [d for d in result.diagnostics if d.severity.value == "error"], result.diagnostics
    (artifact,) = [a for a in result.artifacts if a.path != "apparmorprofile.yaml"]
    return artifact.content.decode("utf-8")


def each_profile(policies: dict[str, Policy]) -> list[tuple[str, Policy, str]]:
    return [(f"{case} {mode.value}", p.with_mode(mode), profile_text(p.with_mode(mode)))
            for case, p in policies.items() for mode in Mode]


# ------------------------------------------------------------------------------- the parser


def run_parser(text: str, *args: str, features: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    assert PARSER is not None
    cmd = [PARSER, "--config-file=/dev/null", *args]
    if features is not None:
        cmd.append(f"--kernel-features={features}")
    return subprocess.run(cmd, input=text.encode("utf-8"), capture_output=True, check=False,
                          timeout=60)


def compiled(text: str, features: Path) -> bytes:
    proc = run_parser(text, "-QKS", features=features)
    errors = [line for line in proc.stderr.decode().splitlines() if not BENIGN_STDERR.match(line)]
    assert proc.returncode == 0 and not errors, proc.stderr.decode()
    assert proc.stdout, "no binary policy emitted"
    return proc.stdout


def names(text: str) -> list[str]:
    proc = run_parser(text, "-N")
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode().split()


# ------------------------------------------------------------------------------- reading back

TOKEN = re.compile(r'"(?:\\"|[^\0"])*"|#.*|,|[^\s,"#]+')  # the lexer's QUOTED_ID, then words
QUALIFIERS = ("audit", "deny", "owner")
Rule = tuple[Any, ...]


def unescape(text: str) -> list[tuple[str, bool]]:
    """Characters of a quoted string as processunquoted decodes them, each with whether it was
    escaped (an escaped glob character is a literal). Octal escapes are bytes (UTF-8)."""
    out: list[tuple[str, bool]] = []
    pending = bytearray()
    simple = {"\\": "\\", '"': '"', "n": "\n", "t": "\t", "r": "\r", "a": "\a", "f": "\f", "e": "\x1b"}
    i = 0
    while i < len(text):
        digits = re.match(r"\\([0-7]{1,3})", text[i:])
        if digits:
            pending.append(int(digits.group(1), 8))
            i += len(digits.group())
            continue
        out += [(c, True) for c in pending.decode("utf-8", errors="surrogateescape")]
        pending.clear()
        if text[i] == "\\" and i + 1 < len(text):
            out.append((simple.get(text[i + 1], text[i + 1]), True))
            i += 2
        else:
            out.append((text[i], False))
            i += 1
    out += [(c, True) for c in pending.decode("utf-8", errors="surrogateescape")]
    return out


def read_path(token: str) -> tuple[Any, ...]:
    """('literal', head, path, tail) for a quoted literal path, else ('glob', token)."""
    if not token.startswith('"'):
        return ("glob", token)
    chars = unescape(token[1:-1])
    raw = "".join(c if not esc else "\0" for c, esc in chars)  # escaped chars masked
    head = "@{HOME}" if raw.startswith("@{HOME}") else ""
    tail = next((t for t in ("{,/**}", "{,**}") if raw.endswith(t)), "")
    middle = chars[len(head):len(chars) - len(tail)]
    if any(c in "*?[]{}" and not esc for c, esc in middle):
        return ("glob", token)
    return ("literal", head, "".join(c for c, _ in middle), tail)


def read_back(text: str) -> tuple[dict[str, str], set[tuple[str, Rule]]]:
    """The profile header and every (block id, rule) of the body."""
    header = re.search(r'^profile (\S+) ("(?:\\"|[^\0"])*"|\S+)(?: flags=\((\w+)\))? \{$', text, re.M)
    assert header, "no profile header"
    body = text[header.end():].split("\n")[1:-1]  # lines end at \n only (not U+2028)
    assert body[-1] == "}", "the profile does not end the file"
    rules: set[tuple[str, Rule]] = set()
    block = ""
    for line in body[:-1]:
        stripped = line.strip()
        if not stripped:
            block = ""
            continue
        if stripped.startswith("#"):
            m = re.match(r"#\s*([^\s:(]+)", stripped)
            block = block or (m.group(1) if m else "?")
            continue
        assert block, f"a rule without its comment: {line!r}"
        if stripped.startswith("include "):
            rules.add((block, ("include", stripped.split(None, 1)[1])))
            continue
        tokens = [t for t in TOKEN.findall(stripped) if not t.startswith("#")]
        while tokens:
            assert "," in tokens, f"unterminated rule: {line!r}"
            rule, tokens = tokens[:tokens.index(",")], tokens[tokens.index(",") + 1:]
            quals = tuple(t for t in rule if t in QUALIFIERS)
            rest = rule[len(quals):]
            if rest[0] in ("capability", "network"):
                rules.add((block, (quals, rest[0], " ".join(rest[1:]))))
            else:
                assert len(rest) == 2, f"not a file rule: {rest}"
                rules.add((block, (quals, "file", read_path(rest[0]), rest[1])))
    return {"name": header.group(1), "attachment": header.group(2),
            "flags": header.group(3) or ""}, rules


def location(path: str) -> tuple[str, str, str, str]:
    """The IR's meaning of a path: that path and everything below it; ~/ in every home."""
    if path == "~":
        return ("literal", "@{HOME}", "", "{,**}")
    if path.startswith("~/"):
        return ("literal", "@{HOME}", path[1:], "{,/**}")
    return ("literal", "", path, "{,**}" if path == "/" else "{,/**}")


BASELINE_OPEN = {((), "file", ("glob", "/"), "r"), ((), "file", ("glob", "/**"), "rwlkmix")}
BASELINE_WRITES = {((), "file", ("glob", "/"), "r"), ((), "file", ("glob", "/**"), "rmix"),
                   *((("owner",), "file", ("glob", g), "rwlk") for g in ("/tmp/**", "/var/tmp/**", "/dev/shm/**")),
                   *(((), "file", ("glob", d), "rw") for d in ("/dev/tty", "/dev/ptmx", "/dev/pts/*"))}


def expected(policy: Policy) -> set[tuple[str, Rule]]:
    """The rules the IR asks for, as documented in the backend's module docstring."""
    deny = ("audit",) if policy.mode is Mode.SHADOW else ("audit", "deny")
    out: set[tuple[str, Rule]] = {("abstractions/base", ("include", "<abstractions/base>"))}
    s, c = policy.sockets, policy.capabilities
    net_raw = c is not None and ("net_raw" in c.keep if c.drop_all else "net_raw" not in c.drop)
    if s is None:
        out.add(("sockets", ((), "network", "")))
        raw_ok, packet_ok = ({"inet", "inet6"} if net_raw else set()), net_raw
    else:
        out |= {("sockets", ((), "network", f"{k.family} {k.type or ''}".strip()))
                for k in s.allow if k.protocol is None}
        # AppArmor has no netlink protocols: `netlink route` is both netlink types
        out |= {("sockets", ((), "network", f"netlink {t}")) for k in s.allow if k.protocol
                for t in ("raw", "dgram")}
        raw_ok = {k.family for k in s.allow if k.type in (None, "raw")}
        packet_ok = any(k.family == "packet" for k in s.allow)
    out |= {("sockets", (deny, "network", f"{f} raw")) for f in ("inet", "inet6") if f not in raw_ok}
    if not packet_ok:
        out.add(("sockets", (deny, "network", "packet")))
    if c is None or not c.drop_all:
        out.add(("capabilities", ((), "capability", "")))
    denied = (set(apparmor.DANGEROUS_CAPABILITIES) - set(c.keep) if c.drop_all else set(c.drop)) if c else set()
    out |= {("capabilities", ((), "capability", k)) for k in (c.keep if c else ())}
    out |= {("capabilities", (deny, "capability", d)) for d in denied}
    writes = any(f.action is Action.ALLOW for f in policy.files)
    out |= {("baseline", r) for r in (BASELINE_WRITES if writes else BASELINE_OPEN)}
    for f in policy.files:
        for path in f.paths:
            if f.action is Action.DENY:
                perms = "mrwlkix" if policy.mode is Mode.SHADOW else "mrwlkx"
                out.add((f.id, (deny, "file", location(path), perms)))
            else:
                out.add((f.id, (("owner",) if path.startswith("~") else (), "file", location(path), "rwlk")))
    return out


def octal(text: str, keep: str = "") -> str:
    """Every byte outside [A-Za-z0-9/] (and `keep`) as a three-digit octal escape."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "/" + keep)
                   else "".join(f"\\{b:03o}" for b in c.encode()) for c in text)


def reference(policy: Policy, name: str, rules: set[tuple[str, Rule]], abi: str = "3.0") -> str:
    """A profile with `rules` written independently of the backend: other escapes, any order."""
    lines = []
    for _, rule in sorted(rules, key=repr):
        if rule[0] == "include":
            lines.append(f"include {rule[1]}")
        elif rule[1] == "file":
            what = rule[2]
            target = what[1] if what[0] == "glob" else f'"{what[1]}{octal(what[2])}{what[3]}"'
            lines.append(" ".join([*rule[0], target, rule[3]]) + ",")
        else:
            lines.append(" ".join([*rule[0], rule[1], *([rule[2]] if rule[2] else [])]) + ",")
    attach = octal(policy.executable or apparmor.OPENCLAW_CLI, keep="*?[]{},")
    flags = " flags=(complain)" if policy.mode is Mode.SHADOW else ""
    body = "\n".join(f"  {line}" for line in lines)
    return (f"abi <abi/{abi}>,\ninclude <tunables/global>\n"
            f'profile {name} "{attach}"{flags} {{\n{body}\n}}\n')


# ------------------------------------------------------------------------------- tests


def test_read_back_equals_ir(policies: dict[str, Policy], subtests: Any) -> None:
    for label, policy, text in each_profile(policies):
        with subtests.test(msg=label):
            header, rules = read_back(text)
            assert header["name"] == f"clawpolicy-{policy.name}"
            assert header["flags"] == ("complain" if policy.mode is Mode.SHADOW else "")
            want = expected(policy)
            assert rules == want, (f"lost: {sorted(want - rules, key=repr)}\n"
                                   f"added: {sorted(rules - want, key=repr)}")


def test_shadow_profiles_have_no_deny_rule(policies: dict[str, Policy], subtests: Any) -> None:
    """AppArmor enforces `deny` even in complain mode: shadow must not contain one."""
    for label, policy, text in each_profile(policies):
        if policy.mode is Mode.SHADOW:
            with subtests.test(msg=label):
                _, rules = read_back(text)
                assert not [r for _, r in rules if r[0] != "include" and "deny" in r[0]]


@needs_parser
def test_every_profile_compiles_to_the_irs_rules(policies: dict[str, Policy], subtests: Any) -> None:
    assert len(FEATURES) == 2, FEATURES
    for label, policy, text in each_profile(policies):
        name = f"clawpolicy-{policy.name}"
        ref = reference(policy, name, expected(policy))
        for features in FEATURES:
            with subtests.test(msg=f"{label} [{features.name}]"):
                binary = compiled(text, features)  # -QKS: parses, compiles, emits binary policy
                assert binary == compiled(ref, features), "the parser reads other rules than the IR's"
        with subtests.test(msg=f"{label} -N"):
            assert names(text) == [name]


@needs_parser
def test_abstractions_add_no_network_or_capability_rules(policies: dict[str, Policy]) -> None:
    """Flattened with its includes (-p), the profile's network and capability rules are ours."""
    rule = re.compile(r"^\s*(?:audit\s+)?(?:deny\s+)?(?:network|capability)\b[^#]*")
    for _, _, text in each_profile(policies)[:4]:
        proc = run_parser(text, "-p")
        assert proc.returncode == 0, proc.stderr.decode()
        flat = [m.group().strip() for m in map(rule.match, proc.stdout.decode().splitlines()) if m]
        ours = [m.group().strip() for m in map(rule.match, text.splitlines()) if m]
        assert flat == ours


def _drop_line(pattern: str) -> Callable[[str], str]:
    return lambda t: re.sub(pattern, "", t, count=1, flags=re.M)


BREAKAGES: dict[str, Callable[[str], str]] = {
    "a rule without its comma": lambda t: t.replace("network inet stream,", "network inet stream", 1),
    "a misspelled capability": lambda t: t.replace("capability net_bind_service,",
                                                   "capability net_bind_servise,", 1),
    "an unknown permission": lambda t: t.replace(" mrwlkx,", " mrwlkq,", 1),
    "an unclosed quote": lambda t: t.replace('{,/**}" mrwlkx,', '{,/**} mrwlkx,', 1),
    "a missing abstraction": lambda t: t.replace("<abstractions/base>", "<abstractions/no-such>"),
    "an unclosed profile": lambda t: t.rstrip()[:-1],
}


@needs_parser
def test_broken_profiles_are_rejected(policies: dict[str, Policy], subtests: Any) -> None:
    text = profile_text(policies["workspace"])
    for what, breakage in BREAKAGES.items():
        with subtests.test(msg=what):
            broken = breakage(text)
            assert broken != text
            for features in FEATURES:
                assert run_parser(broken, "-QK", features=features).returncode != 0


@needs_parser
def test_an_injected_profile_or_rule_is_caught(policies: dict[str, Policy], subtests: Any) -> None:
    """The checks can fail: a naively quoted hostile path passes -QK, but -N names a second
    profile; a rule added or lost changes both the rules read back and the binary policy."""
    hostile_policy = policies["hostile-paths"]
    text = profile_text(hostile_policy)
    hostile = next(p for f in hostile_policy.files for p in f.paths if "profile pwn /**" in p)
    naive = text.replace(apparmor_text.path_pattern(hostile), f'"{hostile}{{,/**}}"')
    with subtests.test(msg="naive quoting"):
        assert naive != text
        assert run_parser(naive, "-QK", features=FEATURES[0]).returncode == 0
        assert names(naive) == ["clawpolicy-t-hostile-paths", "pwn"]
    policy = policies["workspace"]
    text = profile_text(policy)
    ref = compiled(reference(policy, "clawpolicy-t-workspace", expected(policy)), FEATURES[0])
    ssh = apparmor_text.path_pattern("~/.ssh")
    changes = {"a rule added": text.replace("\n}\n", "\n  capability chown,\n}\n"),
               "a rule lost": text.replace("  network inet stream,\n", "", 1),
               "a deny made an allow": text.replace(f"audit deny {ssh} mrwlkx,", f"audit {ssh} mrwlkix,")}
    for what, changed in changes.items():
        with subtests.test(msg=what):
            assert changed != text
            assert read_back(changed)[1] != expected(policy)
            assert compiled(changed, FEATURES[0]) != ref


@needs_parser
def test_profile_name_and_abi_options(policies: dict[str, Policy]) -> None:
    text = profile_text(policies["workspace"], apparmor_profile_name="agent.{policy}")
    assert names(text) == ["agent.t-workspace"]
    assert compiled(text, FEATURES[0])
    four = profile_text(policies["workspace"], apparmor_abi="4.0")
    assert "abi <abi/4.0>," in four and four.replace("abi/4.0", "abi/3.0").replace(
        "AppArmor 4.0 ", "AppArmor 3.0 ") == profile_text(policies["workspace"])
