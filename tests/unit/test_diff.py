"""`clawpolicy diff`: every category on a policy pair that triggers it and one that must not;
reach checked against the evaluator flow by flow; the outputs (Markdown as CommonMark, JSON,
text) and `--git`."""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import subprocess
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from policy_snippets import snippet_policy

from clawpolicy.cli import main
from clawpolicy.evaluate import Flow, evaluate
from clawpolicy.ir import Direction, Policy, Protocol
from clawpolicy.review.diff import Risk, at_or_above, diff_policies, diff_policy_sets
from clawpolicy.review.reach import reach_changes

BASE = """
  allow egress to api.openai.com port 443/tcp reason "llm"
  allow egress to 10.20.0.0/16 port 443/tcp reason "internal" expires 2027-01-31
  allow ingress from 100.64.0.0/10 port 18789/tcp reason "tailnet"
  deny egress to 169.254.169.254 reason "metadata"
  capabilities drop all keep net_bind_service
  sockets allow unix, inet stream, inet6 stream
  files deny ~/.ssh, ~/.aws, /srv/secrets reason "credentials"
  syscalls deny ptrace reason "no debugging"
  test "llm" { expect allow egress api.openai.com port 443/tcp }
"""

HEADER = "mode enforce\n applies-to host"

# name: (old body, new body, header old, header new, category, risk, words in the summary)
CASES: dict[str, tuple[str, str, str, str, str, Risk, str]] = {
    "new egress": (BASE, BASE + 'allow egress to 192.0.2.10 port 22/tcp reason "git"\n',
                   HEADER, HEADER, "reach", Risk.MEDIUM, "egress to 192.0.2.10 on 22/tcp now allowed"),
    "new name": (BASE, BASE + 'allow egress to *.slack.com port 443/tcp reason "slack"\n',
                 HEADER, HEADER, "reach", Risk.MEDIUM, "*.slack.com on 443/tcp now allowed"),
    "wide egress": (BASE, BASE + 'allow egress to 10.0.0.0/8 reason "corp"\n',
                    HEADER, HEADER, "reach", Risk.HIGH, "10.0.0.0/8"),
    "wide egress, another /8": (BASE, BASE + 'allow egress to 172.0.0.0/8 port 443/tcp reason "x"\n',
                                HEADER, HEADER, "reach", Risk.HIGH, "172.0.0.0/8"),
    "wide egress, wider than /8": (BASE, BASE + 'allow egress to 128.0.0.0/2 port 25/tcp reason "x"\n',
                                   HEADER, HEADER, "reach", Risk.HIGH, "128.0.0.0/2"),
    "wide egress, IPv6 /32": (BASE, BASE + 'allow egress to 2001:db8::/32 port 443/tcp reason "x"\n',
                              HEADER, HEADER, "reach", Risk.HIGH, "2001:db8::/32"),
    "narrower than /8 is not wide": (BASE, BASE + 'allow egress to 11.0.0.0/9 port 443/tcp reason "x"\n',
                                     HEADER, HEADER, "reach", Risk.MEDIUM, "11.0.0.0/9"),
    "ingress from a wide range": (BASE, BASE + 'allow ingress from 10.0.0.0/8 port 9100/tcp reason "x"\n',
                                  HEADER, HEADER, "reach", Risk.HIGH, "ingress from 10.0.0.0/8"),
    "ingress from any": (BASE, BASE + 'allow ingress from any port 8443/tcp reason "x"\n',
                         HEADER, HEADER, "reach", Risk.HIGH, "ingress from 0.0.0.0/0"),
    "ingress from a wide IPv6 range": (BASE, BASE + 'allow ingress from 2001:d00::/24 port 22/tcp reason "x"\n',
                                       HEADER, HEADER, "reach", Risk.HIGH, "ingress from 2001:d00::/24"),
    "public-suffix wildcard": (BASE, BASE + 'allow egress to *.org port 443/tcp reason "x"\n',
                               HEADER, HEADER, "reach", Risk.HIGH, "*.org on 443/tcp now allowed"),
    "public-suffix wildcard, two labels": (BASE, BASE + 'allow egress to *.co.uk port 443/tcp reason "x"\n',
                                           HEADER, HEADER, "reach", Risk.HIGH, "*.co.uk"),
    "public-suffix wildcard, private section": (
        BASE, BASE + 'allow egress to *.github.io port 443/tcp reason "x"\n',
        HEADER, HEADER, "reach", Risk.HIGH, "*.github.io"),
    "metadata over IPv6": (BASE, BASE + 'allow egress to fd00:ec2::/32 port 80/tcp reason "x"\n',
                           HEADER, HEADER, "reach", Risk.HIGH, "fd00:ec2::/32"),
    "ECS task credentials": (BASE, BASE + 'allow egress to 169.254.170.2 port 80/tcp reason "x"\n',
                             HEADER, HEADER, "reach", Risk.HIGH, "169.254.170.2"),
    "egress to any": (BASE, BASE + 'allow egress to any port 443/tcp reason "web"\n',
                      HEADER, HEADER, "reach", Risk.HIGH, "any other name"),
    "mdns": (BASE, BASE + 'allow egress to 224.0.0.251 port 5353/udp reason "m"\n',
             HEADER, HEADER, "reach", Risk.HIGH, "224.0.0.251 on 5353/udp"),
    "metadata": (BASE, BASE.replace('deny egress to 169.254.169.254 reason "metadata"',
                                    'allow egress to 169.254.0.0/16 port 80/tcp reason "link"'),
                 HEADER, HEADER, "reach", Risk.HIGH, "egress to 169.254.169.254 on 80/tcp now allowed"),
    "gateway exposed": (BASE, BASE + 'allow ingress from 192.168.0.0/16 port 18789/tcp reason "lan"\n',
                        HEADER, HEADER, "reach", Risk.HIGH, "ingress from 192.168.0.0/16"),
    "ingress elsewhere": (BASE, BASE + 'allow ingress from 192.168.0.0/16 port 9100/tcp reason "x"\n',
                          HEADER, HEADER, "reach", Risk.MEDIUM, "9100/tcp now allowed"),
    "narrowed": (BASE, BASE + 'deny egress to 10.20.30.0/24 reason "lab"\n',
                 HEADER, HEADER, "reach", Risk.LOW, "egress to 10.20.30.0/24 on 443/tcp now denied"),
    "enforce to shadow": (BASE, BASE, HEADER, "mode shadow\n applies-to host", "mode", Risk.HIGH,
                          "enforce → shadow"),
    "shadow to enforce": (BASE, BASE, "mode shadow\n applies-to host", HEADER, "mode", Risk.LOW,
                          "shadow → enforce"),
    "scope": (BASE, BASE, HEADER, "mode enforce\n applies-to user openclaw", "scope", Risk.MEDIUM,
              "applies-to host → user openclaw"),
    "pods selector": (BASE, BASE, "mode enforce\n applies-to pods app=openclaw in namespace a",
                      "mode enforce\n applies-to pods app=openclaw, tier=agent in namespace a", "scope",
                      Risk.MEDIUM, "pods app=openclaw in namespace a → pods app=openclaw, tier=agent"),
    "dns local removed": (BASE + "dns local\n", BASE, HEADER, HEADER, "dns", Risk.MEDIUM, "removed"),
    "dns local added": (BASE, BASE + "dns local\n", HEADER, HEADER, "dns", Risk.LOW, "added"),
    "dangerous capability": (BASE, BASE.replace("keep net_bind_service", "keep net_bind_service, net_raw"),
                             HEADER, HEADER, "capabilities", Risk.HIGH, "CAP_NET_RAW is now kept"),
    "capability": (BASE, BASE.replace("keep net_bind_service", "keep net_bind_service, chown"),
                   HEADER, HEADER, "capabilities", Risk.MEDIUM, "CAP_CHOWN is now kept"),
    "drop all removed": (BASE, BASE.replace("drop all keep net_bind_service", "drop net_raw"),
                         HEADER, HEADER, "capabilities", Risk.HIGH, "no longer `drop all`"),
    "raw socket": (BASE, BASE.replace("inet6 stream", "inet6 stream, packet"), HEADER, HEADER,
                   "sockets", Risk.HIGH, "socket packet now allowed"),
    "socket": (BASE, BASE.replace("inet6 stream", "inet6 stream, inet dgram"), HEADER, HEADER,
               "sockets", Risk.MEDIUM, "socket inet dgram now allowed"),
    "socket removed": (BASE, BASE.replace(", inet6 stream", ""), HEADER, HEADER, "sockets",
                       Risk.LOW, "socket inet6 stream no longer allowed"),
    "netlink protocol": (BASE, BASE.replace("inet6 stream", "inet6 stream, netlink route"), HEADER,
                         HEADER, "sockets", Risk.HIGH, "socket netlink route now allowed"),
    "netlink narrowed": (BASE.replace("inet6 stream", "inet6 stream, netlink"),
                         BASE.replace("inet6 stream", "inet6 stream, netlink route"), HEADER,
                         HEADER, "sockets", Risk.LOW, "socket netlink route now allowed, within netlink"),
    "credentials exposed": (BASE, BASE.replace("~/.ssh, ", ""), HEADER, HEADER, "files", Risk.HIGH,
                            "~/.ssh is no longer denied"),
    "path exposed": (BASE, BASE.replace(", /srv/secrets", ""), HEADER, HEADER, "files", Risk.MEDIUM,
                     "/srv/secrets is no longer denied"),
    "syscall allowed": (BASE, BASE + 'syscalls allow mount reason "fuse"\n', HEADER, HEADER,
                        "syscalls", Risk.MEDIUM, "mount now added to the baseline"),
    "syscall deny dropped": (BASE, BASE.replace('syscalls deny ptrace reason "no debugging"', ""),
                             HEADER, HEADER, "syscalls", Risk.MEDIUM, "ptrace no longer removed"),
    "executable": (BASE, BASE + "executable /opt/agent/bin/agent\n", HEADER, HEADER, "executable",
                   Risk.MEDIUM, "/opt/agent/bin/agent"),
    "expiry removed": (BASE, BASE.replace(" expires 2027-01-31", ""), HEADER, HEADER, "expiry",
                       Risk.MEDIUM, "no longer expires"),
    "expiry added": (BASE, BASE.replace('reason "llm"', 'reason "llm" expires 2027-05-01'),
                     HEADER, HEADER, "expiry", Risk.LOW, "now expires on 2027-05-01"),
    "reason changed": (BASE, BASE.replace('reason "llm"', 'reason "model API"'), HEADER, HEADER,
                       "documentation", Risk.LOW, "reason changed"),
    "test added": (BASE, BASE + 'test "more" { expect deny egress 203.0.113.9 port 443/tcp }\n', HEADER, HEADER,
                   "tests", Risk.LOW, 'test "more" added'),
}


def _pair(tmp_path: Path, case: tuple[str, str, str, str, str, Risk, str]) -> tuple[Policy, Policy]:
    old_body, new_body, old_header, new_header = case[:4]
    (tmp_path / "old").mkdir(parents=True, exist_ok=True)
    (tmp_path / "new").mkdir(parents=True, exist_ok=True)
    return (snippet_policy(tmp_path / "old", old_body, old_header),
            snippet_policy(tmp_path / "new", new_body, new_header))


def test_every_category_triggers_and_stays_quiet_otherwise(tmp_path: Path, subtests: pytest.Subtests) -> None:
    for name, case in CASES.items():
        category, risk, words = case[4:]
        with subtests.test(msg=name):
            old, new = _pair(tmp_path / name.replace(" ", "-"), case)
            changes = diff_policies(old, new)
            hits = [c for c in changes if c.category == category and words in c.summary]
            assert hits, [c.summary for c in changes]
            assert hits[0].risk is risk, (hits[0].summary, hits[0].why)
            # the same policy on both sides: nothing to report
            assert diff_policies(old, old) == [] and diff_policies(new, new) == []
            # the reverse change is reported too (in the same category)
            assert any(c.category == category for c in diff_policies(new, old))


def test_meaning_preserving_edits_are_not_changes(tmp_path: Path, subtests: pytest.Subtests) -> None:
    rules = [line for line in BASE.strip().splitlines() if line.strip().startswith(("allow", "deny"))]
    rest = [line for line in BASE.strip().splitlines() if line not in rules]
    edits = {
        "rules reordered": "\n".join([*reversed(rules), *rest]),
        "peers reordered and split": BASE.replace(
            'allow egress to 10.20.0.0/16 port 443/tcp reason "internal" expires 2027-01-31',
            'allow egress to 10.20.128.0/17, 10.20.0.0/17 port 443/tcp reason "internal" expires 2027-01-31'),
        "comments and blank lines": BASE.replace("\n", "\n\n  # note\n"),
    }
    for name, body in edits.items():
        with subtests.test(msg=name):
            old, new = _pair(tmp_path / name.replace(" ", "-"), (BASE, body, HEADER, HEADER, "", Risk.LOW, ""))
            assert diff_policies(old, new) == []


def _probe_flows(*policies: Policy) -> list[Flow]:
    """Edges and insides of every network, names, on the ports the rules mention and beyond."""
    peers: set[str] = {"203.0.113.9", "2001:db8::9", "unlisted.example"}
    ports: set[tuple[Protocol, int | None]] = {(Protocol.TCP, 1), (Protocol.UDP, 65535), (Protocol.ICMP, None)}
    for policy in policies:
        for rule in policy.rules:
            for net in (*rule.peers.ipv4, *rule.peers.ipv6):
                peers.update(str(a) for a in (net.network_address, net.broadcast_address,
                                              net.network_address + net.num_addresses // 2))
                for a in (int(net.network_address) - 1, int(net.broadcast_address) + 1):
                    if 0 <= a < (1 << net.max_prefixlen):
                        peers.add(str(ipaddress.ip_address(a) if net.version == 4 else ipaddress.IPv6Address(a)))
            peers.update(rule.peers.names)
            peers.update(f"x.{w}" for w in rule.peers.wildcards)
            for p in rule.ports:
                lo, hi = p.bounds
                ports.update((p.protocol, q) for q in {max(lo, 1), hi, max(lo - 1, 1), min(hi + 1, 65535)})
    return [Flow(d, peer, proto, port) for d, peer, (proto, port)
            in itertools.product(Direction, sorted(peers), sorted(ports, key=str))
            if not (proto is Protocol.ICMP and port is not None)]


def _covered(changes: list, flow: Flow) -> bool:  # type: ignore[type-arg]
    for c in changes:
        if c.direction is not flow.direction:
            continue
        port_ok = any(p is flow.protocol and (flow.port is None or lo <= flow.port <= hi)
                      for p, (lo, hi) in c.ports)
        if not port_ok:
            continue
        try:
            if c.family is not None and c.covers_address(flow.peer):
                return True
        except ValueError:
            pass
        if c.family is None and c.covers_name(flow.peer):
            return True
    return False


def test_reach_changes_are_exactly_the_flows_whose_verdict_changed(tmp_path: Path,
                                                                   subtests: pytest.Subtests) -> None:
    for name, case in CASES.items():
        if case[4] != "reach":
            continue
        with subtests.test(msg=name):
            old, new = _pair(tmp_path / name.replace(" ", "-"), case)
            changes = reach_changes(old, new)
            for flow in _probe_flows(old, new):
                changed = evaluate(old, flow).action is not evaluate(new, flow).action
                if "any other name" in str([c.names for c in changes]) and not changed:
                    continue  # names the other side mentions are atoms of their own
                assert changed == _covered(changes, flow), (flow, evaluate(old, flow), evaluate(new, flow))


def test_policy_added_and_removed(tmp_path: Path) -> None:
    p = snippet_policy(tmp_path, BASE)
    q = p.model_copy(update={"name": "q"})
    changes = diff_policy_sets([p], [q])
    assert [(c.policy, c.category, c.risk) for c in changes] == [
        ("p", "policy", Risk.HIGH), ("q", "policy", Risk.MEDIUM)]


def test_fail_on_thresholds() -> None:
    from clawpolicy.review.diff import Change
    changes = [Change("p", "tests", Risk.LOW, "x"), Change("p", "reach", Risk.MEDIUM, "y")]
    assert at_or_above(changes, "any") and at_or_above(changes, "medium")
    assert not at_or_above(changes, "high") and not at_or_above(changes, "never")
    assert not at_or_above([], "any")


HOSTILE = 'allow egress to 192.0.2.7 port 443/tcp reason "</details> | <script>x</script> `` ``` *b* [l](http://x) \\" #quot;"\n'


def _write(tmp_path: Path, name: str, body: str, header: str = HEADER) -> Path:
    path = tmp_path / name
    path.write_text(f"policy p {{\n {header}\n{body}\n}}\n", encoding="utf-8")
    return path


def test_markdown_is_commonmark_and_user_text_cannot_escape(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    old = _write(tmp_path, "old.claw", BASE)
    new = _write(tmp_path, "new.claw", BASE + HOSTILE, "mode shadow\n applies-to host")
    assert main(["diff", str(old), str(new), "--format", "markdown"]) == 0
    text = capsys.readouterr().out
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    kinds = [t.type for t in tokens]
    assert "table_open" in kinds and kinds.count("fence") >= 2
    html = [t for t in tokens if t.type == "html_block"]
    assert all(t.content.strip().startswith(("<details>", "<summary>", "</details>")) for t in html)
    inline_html = [c for t in tokens if t.children for c in t.children if c.type == "html_inline"]
    assert inline_html == []  # the hostile reason became text, not markup
    details = text.split("### Details")[1].split("### Flows")[0]
    assert "&lt;script&gt;" in details and "<script>" not in details  # artifact diffs quote it in fences
    fences = [t for t in tokens if t.type == "fence"]
    mermaid = next(t for t in fences if t.info == "mermaid")
    assert mermaid.content.startswith("flowchart LR")
    assert '"' not in mermaid.content.replace('(("p"))', "").split("peer0[")[1].split("]")[0][1:-1]
    details = [t for t in fences if t.info == "diff"]
    assert any("ruleset.nft" in t.content for t in details)  # artifact diffs, inside the fences
    assert "| 🔴 high | p | enforce → shadow" in text


def test_json_and_text_outputs_and_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = _write(tmp_path, "old.claw", BASE)
    new = _write(tmp_path, "new.claw", BASE + 'allow ingress from 0.0.0.0/0 port 18789/tcp reason "x"\n')
    assert main(["diff", str(old), str(new), "--format", "json", "--fail-on", "high"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["counts"] == {"high": 1, "medium": 0, "low": 0}
    (change,) = doc["changes"]
    assert change["summary"] == ("ingress from 0.0.0.0/0 except 100.64.0.0/10, 127.0.0.0/8 on "
                                 "18789/tcp now allowed")
    assert change["old"] == [{"rule": "default deny", "where": "", "reason": ""}]
    assert change["new"][0]["where"].endswith("new.claw:14:1") and change["new"][0]["reason"] == "x"
    assert {a["path"].split("/")[-1] for a in doc["artifacts"]} >= {"ruleset.nft", "README.md"}
    assert main(["diff", str(old), str(new), "--no-artifacts", "--fail-on", "never"]) == 0
    out = capsys.readouterr().out
    assert "1 high, 0 medium, 0 low" in out and "gateway port 18789/tcp" in out
    assert main(["diff", str(old)]) == 2
    assert main(["diff", str(old), str(tmp_path / "missing.claw")]) == 1
    bad = tmp_path / "bad.claw"
    bad.write_text("policy p { allow }\n")
    assert main(["diff", str(old), str(bad)]) == 1
    assert "bad.claw:1:18: error" in capsys.readouterr().err


def _git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, env=env)


def test_git_revision_against_the_work_tree(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    (repo / "policies" / "common").mkdir(parents=True)
    (repo / "policies" / "common" / "nets.claw").write_text("define corp = 10.20.0.0/16\n")
    (repo / "policies" / "agent.claw").write_text(
        'include "common/nets.claw"\npolicy agent {\n mode enforce\n applies-to host\n'
        ' allow egress to @corp port 443/tcp reason "corp"\n}\n')
    (repo / "policies" / "other.claw").write_text("policy other {\n}\n")
    # links git commits that tarfile's data filter refuses: left out of the old tree, not fatal
    (repo / "venv").symlink_to("/usr")
    (repo / "up").symlink_to("../..")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "one")
    # only the included file changes: the policy that includes it is compared
    (repo / "policies" / "common" / "nets.claw").write_text("define corp = 10.0.0.0/8\n")
    monkeypatch.chdir(repo)
    assert main(["diff", "--git", "HEAD", "--format", "json", "--no-artifacts"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (change,) = doc["changes"]
    assert change["policy"] == "agent" and change["risk"] == "high"  # a /8 less a /16 is wide
    assert change["summary"] == "egress to 10.0.0.0/8 except 10.20.0.0/16 on 443/tcp now allowed"
    assert change["old"] == [{"rule": "default deny", "where": "", "reason": ""}]
    monkeypatch.chdir(repo / "policies")
    assert main(["diff", "--git", "HEAD", "agent.claw", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [a["path"] for a in doc["artifacts"] if a["path"].endswith(".nft")] == [
        "generated/agent/nftables/ruleset.nft"]
    assert main(["diff", "--git", "no-such-rev"]) == 1
    assert "no-such-rev" in capsys.readouterr().err
