"""The AppArmor target without the parser: escaping, the rules each mode derives, options,
notes, determinism, and the security-profiles-operator resource against its CRD.
tests/kernel/test_apparmor_parser.py compiles the same output with the real apparmor_parser
and reads it back against the IR."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from policy_snippets import snippet_policy as _policy
from shared_schemas import schema_path

from clawpolicy import confine
from clawpolicy.backends import apparmor, apparmor_text, registry
from clawpolicy.backends.base import CompileOptions, Feature, Level
from clawpolicy.errors import Severity
from clawpolicy.ir import Mode, Policy
from clawpolicy.lower import load_policies

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.claw"))




def _compile(policy: Policy, **options: Any) -> tuple[str, str, list[Any]]:
    result = apparmor.BACKEND.compile(policy, CompileOptions(**options))
    assert [a.path for a in result.artifacts] == [options.get(
        "apparmor_profile_name", "clawpolicy-{policy}").replace("{policy}", policy.name),
        "apparmorprofile.yaml"]
    profile, resource = (a.content.decode("utf-8") for a in result.artifacts)
    return profile, resource, result.diagnostics


def _rules(text: str) -> list[str]:
    """The profile body's rule lines, without trailing comments."""
    body = text[text.index("\nprofile ") + 1:].split("\n")[1:-2]
    return [re.sub(r",\s+#.*$", ",", line.strip()) for line in body
            if line.strip() and not line.strip().startswith("#")]


def _decode(escaped: str) -> str:
    """What the parser makes of aa_escape's output (octal bytes; backslash-escaped literals)."""
    out, pending, i = [], bytearray(), 0
    while i < len(escaped):
        m = re.match(r"\\([0-7]{3})", escaped[i:])
        if m:
            pending.append(int(m.group(1), 8))
            i += 4
            continue
        out.append(pending.decode("utf-8"))
        pending.clear()
        if escaped[i] == "\\":
            assert escaped[i + 1] in "*?[]{}", escaped
            i += 1
        out.append(escaped[i])
        i += 1
    out.append(pending.decode("utf-8"))
    return "".join(out)


# ------------------------------------------------------------------------------- escaping


ESCAPES = {
    "plain": ("/home/u/.ssh", "/home/u/.ssh"),
    "quote": ('/a"b', "/a\\042b"),
    "backslash at the end": ("/a\\", "/a\\134"),
    "globs are literal": ("/a*b?[c]{d,e}", "/a\\*b\\?\\[c\\]\\{d,e\\}"),
    "no variable": ("/srv/@{HOME}", "/srv/@\\{HOME\\}"),
    "line break": ("/a\nb\r", "/a\\012b\\015"),
    "comment and comma": ("/a #b, c", "/a #b, c"),
    "utf-8 stays": ("/é/日本", "/é/日本"),
    "invisible characters": ("/a\u202eb\u2028", "/a\\342\\200\\256b\\342\\200\\250"),
    "profile injection": ('/x" r, } profile pwn { capability, "/y',
                          "/x\\042 r, \\} profile pwn \\{ capability, \\042/y"),
}


def test_aa_escape(subtests: Any) -> None:
    for what, (text, want) in ESCAPES.items():
        with subtests.test(msg=what):
            assert apparmor_text.aa_escape(text) == want
            assert _decode(want) == text
    assert apparmor_text.aa_escape("/opt/*/{a,b}", globs=True) == "/opt/*/{a,b}"
    with pytest.raises(ValueError):
        apparmor_text.aa_escape("/a\0b")


@given(st.text(st.characters(codec="utf-8", exclude_characters="\0")))
def test_aa_escape_is_one_closed_literal(text: str) -> None:
    out = apparmor_text.aa_escape(text)
    assert '"' not in out and "\n" not in out and not re.search(r"\\[^0-7*?\[\]{}]", out)
    assert not any(c in out for c in "\u2028\u2029\u202e\x85")
    assert _decode(out) == text


def test_path_pattern(subtests: Any) -> None:
    cases = {"/": '"/{,**}"', "~": '"@{HOME}{,**}"', "~/.ssh": '"@{HOME}/.ssh{,/**}"',
             "/etc/openclaw/secrets": '"/etc/openclaw/secrets{,/**}"',
             "/srv/x y": '"/srv/x y{,/**}"', "~/a*": '"@{HOME}/a\\*{,/**}"'}
    for path, want in cases.items():
        with subtests.test(path=path):
            assert apparmor_text.path_pattern(path) == want
    with pytest.raises(ValueError):
        apparmor_text.path_pattern("relative/path")


def test_comments_are_one_visible_line() -> None:
    text = apparmor_text.aa_comment("a\nb\r\x00c\u2028d\u202ee\x85")
    assert text == "a b  c d<U+202E>e "
    assert "\n" not in apparmor_text.aa_comment("x\n#include <abstractions/evil>")


def test_glob_error(subtests: Any) -> None:
    good = ["/usr/bin/node", "/opt/*/{a,b}/node", "/opt/[ab]*/x", "/opt/{a,{b,c}}", "/x/[{]"]
    bad = ["/opt/{a,b", "/opt/a}", "/opt/[ab", "/opt/a]"]
    for glob in good:
        with subtests.test(glob=glob):
            assert apparmor_text.glob_error(glob) is None
    for glob in bad:
        with subtests.test(glob=glob):
            assert apparmor_text.glob_error(glob)


# ------------------------------------------------------------------------------- rules


def test_modes(tmp_path: Path) -> None:
    body = """capabilities drop all keep net_bind_service
      sockets allow unix, inet stream
      files deny ~/.ssh reason "keys" """
    enforce, _, _ = _compile(_policy(tmp_path, body))
    shadow, _, _ = _compile(_policy(tmp_path, body).with_mode(Mode.SHADOW))
    head = re.compile(r"^profile clawpolicy-p \"[^\"]+\"(?P<flags> flags=\(complain\))? \{$", re.M)
    assert (m := head.search(enforce)) and not m.group("flags")
    assert (m := head.search(shadow)) and m.group("flags")
    assert 'audit deny "@{HOME}/.ssh{,/**}" mrwlkx,' in _rules(enforce)
    assert 'audit "@{HOME}/.ssh{,/**}" mrwlkix,' in _rules(shadow)
    assert not [r for r in _rules(shadow) if re.search(r"\bdeny\b", r)]  # enforced even in complain
    assert len(_rules(enforce)) == len(_rules(shadow))
    assert [r.replace("audit deny", "audit").replace("mrwlkx", "mrwlkix") for r in _rules(enforce)] \
        == _rules(shadow)


CAPABILITIES = {  # statement -> (allow rules, denied capabilities)
    "": (["capability,"], []),
    "capabilities drop all": ([], sorted(apparmor.DANGEROUS_CAPABILITIES)),
    "capabilities drop all keep net_raw, chown": (
        ["capability chown,", "capability net_raw,"],
        sorted(set(apparmor.DANGEROUS_CAPABILITIES) - {"net_raw"})),
    "capabilities drop sys_admin, kill": (["capability,"], ["kill", "sys_admin"]),
}


def test_capabilities(tmp_path: Path, subtests: Any) -> None:
    for statement, (allowed, denied) in CAPABILITIES.items():
        with subtests.test(statement=statement):
            rules = [r for r in _rules(_compile(_policy(tmp_path, statement))[0]) if "capability" in r]
            assert [r for r in rules if not r.startswith("audit")] == allowed
            assert [r.split()[-1].rstrip(",") for r in rules if r.startswith("audit deny")] == denied


def test_dangerous_capabilities_are_a_sound_subset() -> None:
    assert set(apparmor.CAPABILITIES) == confine.CAPABILITIES
    assert len(apparmor.CAPABILITIES) == len(set(apparmor.CAPABILITIES)) == 41
    assert set(apparmor.DANGEROUS_CAPABILITIES) <= set(apparmor.CAPABILITIES)
    assert {"sys_admin", "sys_module", "sys_ptrace", "net_admin", "net_raw", "mac_admin",
            "mac_override", "dac_read_search", "bpf"} <= set(apparmor.DANGEROUS_CAPABILITIES)
    assert not {"chown", "setuid", "setgid", "kill", "net_bind_service", "fowner"} & set(
        apparmor.DANGEROUS_CAPABILITIES)


SOCKETS = {  # (sockets, capabilities) -> (network allow rules, denied kinds)
    ("", ""): (["network,"], ["inet raw", "inet6 raw", "packet"]),
    ("", "capabilities drop all keep net_raw"): (["network,"], []),
    ("sockets allow inet stream", ""): (["network inet stream,"], ["inet raw", "inet6 raw", "packet"]),
    ("sockets allow inet, packet dgram", ""): (["network inet,", "network packet dgram,"], ["inet6 raw"]),
    ("sockets allow inet6 raw, netlink raw", "capabilities drop all keep net_raw"): (
        ["network inet6 raw,", "network netlink raw,"], ["inet raw", "packet"]),
    # a netlink protocol is not expressible: both netlink types stand in, once
    ("sockets allow unix, netlink route, netlink audit, netlink raw", ""): (
        ["network unix,", "network netlink raw,", "network netlink dgram,"],
        ["inet raw", "inet6 raw", "packet"]),
}


def test_netlink_protocols_are_a_note(tmp_path: Path) -> None:
    """AppArmor cannot filter the protocol: the profile and the compile output say so."""
    text, _, diagnostics = _compile(_policy(tmp_path, "sockets allow unix, netlink route"))
    notes = [d for d in diagnostics if "netlink protocols" in d.message]
    assert len(notes) == 1 and "netlink route" in notes[0].message
    assert notes[0].hint is not None and "seccomp" in notes[0].hint
    assert "not by protocol: every netlink protocol passes here (seccomp allows only netlink route)" in text
    _, _, plain = _compile(_policy(tmp_path, "sockets allow unix, netlink dgram"))
    assert not [d for d in plain if "netlink protocols" in d.message]


def test_sockets(tmp_path: Path, subtests: Any) -> None:
    for (sockets, caps), (allowed, denied) in SOCKETS.items():
        with subtests.test(sockets=sockets, capabilities=caps):
            rules = [r for r in _rules(_compile(_policy(tmp_path, f"{sockets}\n{caps}"))[0])
                     if " network" in f" {r}"]
            assert [r for r in rules if not r.startswith("audit")] == allowed
            assert [r.removeprefix("audit deny network ").rstrip(",") for r in rules
                    if r.startswith("audit")] == denied


def test_files_baseline_and_owner(tmp_path: Path) -> None:
    open_rules = _rules(_compile(_policy(tmp_path, 'files deny /etc/secret reason "r"'))[0])
    assert "/** rwlkmix," in open_rules and "/** rmix," not in open_rules
    assert 'audit deny "/etc/secret{,/**}" mrwlkx,' in open_rules
    text, _, diags = _compile(_policy(tmp_path, """
        files allow ~/work, /srv/share reason "workspaces"
        files deny ~/work/.env reason "deny overrides allow" """))
    rules = _rules(text)
    assert "/** rmix," in rules and "/** rwlkmix," not in rules
    assert {"owner /tmp/** rwlk,", "/dev/pts/* rw,"} <= set(rules)
    assert 'owner "@{HOME}/work{,/**}" rwlk,' in rules  # only the agent's own files in a home
    assert '"/srv/share{,/**}" rwlk,' in rules
    assert 'audit deny "@{HOME}/work/.env{,/**}" mrwlkx,' in rules  # any owner: stronger
    assert any("do not include ~/.openclaw" in d.message for d in diags)
    assert not any("do not include ~/.openclaw" in d.message for d in _compile(_policy(
        tmp_path, 'files allow ~/.openclaw reason "state"'))[2])


def test_each_rule_block_names_its_rule(tmp_path: Path) -> None:
    policy = _policy(tmp_path, """
        capabilities drop all reason "no privileges"
        sockets allow inet stream reason "https only"
        files deny ~/.ssh reason "keys" id no-keys ticket SEC-1
        files allow "/srv/a, b" reason "r" """)
    text = _compile(policy)[0]
    assert '# capabilities (p.claw:' in text and "drop all: no privileges" in text
    assert "# sockets (p.claw:" in text and "allow inet stream: https only" in text
    assert re.search(r"# no-keys \(p\.claw:\d+, ticket SEC-1\): deny ~/\.ssh: keys\n  audit deny", text)
    allow_id = next(f.id for f in policy.files if f.action.value == "allow")
    assert re.search(rf"# {allow_id} \(p\.claw:\d+\): allow /srv/a, b: r\n  \"/srv/a, b", text)


def test_notes(tmp_path: Path) -> None:
    policy = _policy(tmp_path, """allow egress to 192.0.2.1 port 443/tcp reason "api"
        sockets allow inet stream""")
    diags = _compile(policy)[2]
    assert all(d.severity is Severity.NOTE for d in diags)
    text = " | ".join(d.message for d in diags)
    assert "cannot match addresses or ports" in text and policy.rules[0].id in text
    assert "unix sockets stay allowed" in text
    assert "apparmorprofile.yaml cannot carry" not in text  # inet stream: SPO's allowTcp
    assert not _compile(_policy(tmp_path, "sockets allow unix"))[2]


def test_options(tmp_path: Path) -> None:
    policy = _policy(tmp_path, 'executable "/opt/agent/bin/node"')
    text = _compile(policy, apparmor_profile_name="agents.{policy}")[0]
    assert '\nprofile agents.p "/opt/agent/bin/node" {\n' in text
    assert "abi <abi/4.0>," in _compile(policy, apparmor_abi="4.0")[0]
    for bad in ("Bad_Name", "x/{policy}", "-{policy}", "{policy}" + "x" * 300):
        result = apparmor.BACKEND.compile(policy, CompileOptions(apparmor_profile_name=bad))
        assert not result.artifacts and result.diagnostics[0].severity is Severity.ERROR
    unbalanced = policy.model_copy(update={"executable": "/opt/{a,b/node"})
    result = apparmor.BACKEND.compile(unbalanced, CompileOptions())
    assert not result.artifacts and "not a valid AppArmor glob" in result.diagnostics[0].message


def test_default_attachment_is_the_openclaw_cli(tmp_path: Path) -> None:
    text = _compile(_policy(tmp_path, ""))[0]
    assert f'\nprofile clawpolicy-p "{apparmor.OPENCLAW_CLI}" {{\n' in text
    assert "set `executable` in the policy" in text


def test_deterministic_and_order_independent(tmp_path: Path) -> None:
    body = """files deny ~/.ssh, ~/.aws reason "a"
      files allow /srv/w reason "b"
      sockets allow inet6 stream, unix, inet stream
      capabilities drop all keep net_raw, chown"""
    reordered = "\n".join(reversed(body.splitlines()))
    a = _compile(_policy(tmp_path, body))
    b = _compile(_policy(tmp_path, reordered))
    assert a == _compile(_policy(tmp_path, body))

    def no_lines(text: str) -> str:  # comments cite source lines, which moved
        return re.sub(r"p\.claw:\d+", "p.claw:N", text)

    assert no_lines(a[0]) == no_lines(b[0]) and a[1] == b[1]


# ------------------------------------------------------------------------------- SPO resource


def _crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load(schema_path("spo/apparmorprofile.yaml").read_text(encoding="utf-8"))
    assert crd["spec"]["scope"] == "Cluster"
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    assert f"{crd['spec']['group']}/v1" == apparmor.SPO_API_VERSION
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def _closed(schema: Any) -> Any:
    """The schema with unknown fields forbidden: the API server would prune them silently."""
    schema = copy.deepcopy(schema)
    if isinstance(schema, dict):
        if schema.get("type") == "object" and "properties" in schema:
            schema.setdefault("additionalProperties", False)
        return {k: _closed(v) for k, v in schema.items()}
    return schema


def test_spo_resource_validates_against_the_crd(tmp_path: Path, subtests: Any) -> None:
    schema = _crd_schema()
    policies = [p for path in EXAMPLES for p in load_policies([path]).policies]
    policies += [_policy(tmp_path, body) for body in (
        "", 'files allow ~/w, "/srv/a\\"b" reason "r"\n sockets allow netlink raw, unix',
        "capabilities drop all\n sockets allow inet6 dgram")]
    for policy in policies:
        for mode in Mode:
            with subtests.test(policy=policy.name, mode=mode.value):
                _, resource, _ = _compile(policy.with_mode(mode))
                doc = yaml.safe_load(resource)
                jsonschema.validate(doc, schema)
                jsonschema.validate(doc, _closed(schema))
                assert (doc["apiVersion"], doc["kind"]) == (apparmor.SPO_API_VERSION, "AppArmorProfile")
                assert "namespace" not in doc["metadata"]  # cluster-scoped
                assert doc["metadata"]["name"] == f"clawpolicy-{policy.name}"
                assert doc["spec"]["mode"] == ("Complain" if mode is Mode.SHADOW else "Enforce")
                lost = doc["metadata"]["annotations"].get(apparmor.ANNOTATION + "not-carried", "")
                for f in policy.files:
                    if f.action.value == "deny":
                        assert f.id in lost  # an allow list cannot deny: said, not dropped


def test_spo_resource_content(tmp_path: Path) -> None:
    policy = _policy(tmp_path, """capabilities drop all keep net_bind_service
        sockets allow inet stream, inet6 stream, netlink dgram
        files allow ~/.openclaw, "/srv/a\\"b" reason "state" """)
    doc = yaml.safe_load(_compile(policy)[1])
    spec = doc["spec"]["abstract"]
    assert spec["capability"] == {"allowedCapabilities": ["net_bind_service"]}
    assert spec["network"] == {"allowRaw": False, "allowedProtocols": {"allowTcp": True, "allowUdp": False}}
    assert "@{HOME}/.openclaw{,/**}" in spec["filesystem"]["readWritePaths"]
    assert not [p for p in spec["filesystem"]["readWritePaths"] if '"' in p or "\\" in p]
    lost = doc["metadata"]["annotations"][apparmor.ANNOTATION + "not-carried"]
    assert "sockets netlink dgram" in lost and '/srv/a"b' in lost and "owner-only" in lost
    unrestricted = yaml.safe_load(_compile(_policy(tmp_path, ""))[1])["spec"]["abstract"]
    assert unrestricted["capability"]["allowedCapabilities"] == sorted(apparmor.CAPABILITIES)


# ------------------------------------------------------------------------------- registry


def test_registered_and_checked(tmp_path: Path) -> None:
    assert registry.BACKENDS["apparmor"] is apparmor.BACKEND
    assert "apparmor" in registry.DEFAULT_TARGETS
    assert set(apparmor.BACKEND.support) == set(Feature)
    assert apparmor.BACKEND.support[Feature.CIDR_PORT].level is Level.NO
    policy = _policy(tmp_path, """allow egress to 192.0.2.1 port 443/tcp reason "api"
        files deny ~/.ssh reason "keys"
        capabilities drop all""")
    only = registry.check_support(policy, ["apparmor"])
    assert [d.message for d in only] == [(f"{policy.rules[0].id}: no selected target enforces "
                                         "addresses and ports")]
    assert "AppArmor 3 network rules name socket families" in (only[0].hint or "")
    assert not registry.check_support(policy, ["nftables", "apparmor"])
