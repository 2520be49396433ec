"""Log lines to records (logparse) and records to rules (explain), on the fixtures in
tests/data/logs: lines captured from this kernel, the formats of context/001, and the
other envelopes (dmesg, syslog, journalctl short/json, audit.log)."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clawpolicy.backends import nftables
from clawpolicy.backends.base import CompileOptions
from clawpolicy.ir import Policy
from clawpolicy.lower import load_policies
from clawpolicy.operate import explain, logparse, textinput

DATA = Path(__file__).resolve().parents[1] / "data" / "logs"


@pytest.fixture(scope="module")
def policy() -> Policy:
    loaded = load_policies([DATA / "logdemo.claw"])
    assert loaded.ok
    return loaded.policies[0]


def _read(name: str) -> logparse.ParseResult:
    return logparse.parse_lines((DATA / name).read_text().split("\n"))  # not splitlines: auditd writes \x1d


LINES: list[tuple[str, str, dict[str, Any]]] = [
    ("kmsg nft", "4,768,8758135618,-;clawpolicy:logdemo:deny:default-egress IN= OUT=eth0 "
     "SRC=198.51.100.1 DST=198.51.100.99 LEN=40 PROTO=UDP SPT=43287 DPT=53 LEN=20 ",
     {"policy": "logdemo", "verdict": "deny", "label": "default-egress", "protocol": "udp",
      "dst": "198.51.100.99", "dport": 53, "stamp": logparse.Stamp("uptime", "8758.135618")}),
    ("ipv6 expanded", "[ 1.5] clawpolicy:p:deny:r-1 IN= OUT=v0 SRC=2001:0db8:0000:0000:0000:0000:0000:0001 "
     "DST=2001:0db8:0099:0000:0000:0000:0000:0009 PROTO=TCP SPT=1 DPT=443",
     {"dst": "2001:db8:99::9", "label": "r-1", "direction": "egress"}),
    ("ingress", "Nov 20 11:16:01 h kernel: clawpolicy:p:would-deny:r-2 IN=eth0 OUT= SRC=192.0.2.9 "
     "DST=192.0.2.1 PROTO=TCP SPT=5 DPT=22", {"direction": "ingress", "peer": "192.0.2.9", "host": "h",
                                               "stamp": logparse.Stamp("local", "Nov 20 11:16:01")}),
    ("icmpv6", "[ 2.0] clawpolicy:p:deny:default-egress IN= OUT=v0 SRC=::1 DST=ff02::16 PROTO=ICMPv6 TYPE=143 CODE=0",
     {"protocol": "icmp", "dport": None}),
    ("kernel seccomp", "[ 7130.2] audit: type=1326 audit(1795466852.942:2868): pid=29882 comm=\"python\" "
     "exe=\"/usr/bin/python3\" sig=0 arch=c000003e syscall=41 compat=0 ip=0x7f code=0x50000",
     {"name": "socket", "arch": "x86_64", "action": "ERRNO", "pid": 29882,
      "stamp": logparse.Stamp("utc", "2026-11-23T20:47:32.942Z")}),
    ("aarch64 number", "type=SECCOMP msg=audit(1795465004.000:1): arch=c00000b7 syscall=203 code=0x80000000",
     {"name": "connect", "arch": "aarch64", "action": "KILL_PROCESS"}),
    ("hex comm", "type=SECCOMP msg=audit(1.0:1): comm=6E6F6465 arch=c000003e syscall=42 code=0x7ffc0000",
     {"comm": "node", "name": "connect", "action": "LOG"}),
    ("001 seccomp", "agent-pod-xyz seccomp: SCMP_ACT_ERRNO (Operation not permitted) for syscall=42 "
     "(connect) at pid=1234, arch=c000003e.", {"name": "connect", "pid": 1234, "host": "agent-pod-xyz"}),
    ("001 apparmor", "agent-pod-xyz apparmor: DENIED operation=create for profile=/usr/bin/agent-network-confined "
     "class=net addr=1.2.3.4:443.", {"profile": "/usr/bin/agent-network-confined", "target": "1.2.3.4:443"}),
    ("real apparmor", 'type=AVC msg=audit(1.5:2): apparmor="DENIED" operation="create" class="net" '
     'profile="clawpolicy-x" pid=1 comm="node" family="inet" sock_type="raw" protocol=1 '
     'requested_mask="create" denied_mask="create"', {"status": "DENIED", "target": "inet raw", "klass": "net"}),
    ("journal json", '{"__REALTIME_TIMESTAMP":"1000000","MESSAGE":"clawpolicy:p:deny:r IN= OUT=e SRC=1.1.1.1 '
     'DST=2.2.2.2 PROTO=UDP SPT=1 DPT=2"}', {"stamp": logparse.Stamp("utc", "1970-01-01T00:00:01.000000Z")}),
]


def test_lines(subtests: Any) -> None:
    for label, line, expected in LINES:
        with subtests.test(msg=label):
            record = logparse.parse_line(line)
            assert record is not None
            for key, value in expected.items():
                assert getattr(record, key) == value, key


def test_other_lines_are_counted_not_fatal() -> None:
    lines = ["", "random", "{broken json", '{"MESSAGE": 3}', "[ 1.0] usb 1-1: new device",
             "type=SYSCALL msg=audit(1.0:1): arch=c000003e syscall=41", "clawpolicy:UPPER:deny:x",
             "type=SECCOMP msg=audit(1.0:1): arch=c000003e", "\udcff garbage \x00"]
    result = logparse.parse_lines(lines)
    assert (result.lines, result.unrecognised, result.records) == (8, 8, [])


def test_captured_lines_name_the_rules(policy: Policy) -> None:
    """Lines this kernel wrote (see tests/data/logs/README.md) lead back to the policy."""
    parsed = _read("captured-kmsg.txt")
    assert parsed.unrecognised == 0
    result = explain.explain(parsed, [policy], explain.Processes(comms=("python",)))  # the capture's agent
    got = {(f.mechanism, f.verdict, f.rule) for f in result.findings}
    assert got == {("nftables", "deny", "no-exfil-host"), ("nftables", "deny", "default-egress"),
                   ("nftables", "would-deny", "no-exfil-host"), ("nftables", "would-deny", "default-egress"),
                   ("seccomp", "LOG", "sockets")}
    exfil = next(f for f in result.findings if f.rule == "no-exfil-host")
    assert exfil.reason == "known exfiltration host" and exfil.where and "logdemo.claw:10:" in exfil.where
    assert all(f.note is None for f in result.findings)


def test_formats_fixture(policy: Policy) -> None:
    parsed = _read("formats.txt")
    result = explain.explain(parsed, [policy], explain.Processes(exes=("/usr/bin/node",)))
    assert (parsed.lines, parsed.unrecognised) == (14, 5)
    by_what = {f.what: f for f in result.findings}
    repeated = by_what["egress tcp 203.0.113.9:443"]
    assert (repeated.count, repeated.first, repeated.last) == (3, "8327.425438s after boot", "Nov 20 11:16:01")
    assert by_what["ingress tcp [2001:db8::20]:18789"].rule == "default-ingress"
    ssh = by_what["open file /home/openclaw/.ssh/id_ed25519"]
    assert (ssh.mechanism, ssh.verdict, ssh.policy, ssh.reason) == ("apparmor", "ALLOWED", "logdemo", "credential store")
    assert by_what["create net packet raw"].rule == "sockets"
    assert by_what["syscall socket (198) on aarch64"].rule == "sockets"
    assert by_what["syscall bpf (321) on x86_64"].verdict == "LOG"


def test_without_policy_the_prefix_still_names_the_rule() -> None:
    result = explain.explain(_read("captured-kmsg.txt"), [])
    rules = {(f.policy, f.rule) for f in result.findings if f.mechanism == "nftables"}
    assert rules == {("logdemo", "no-exfil-host"), ("logdemo", "default-egress")}
    assert all(f.where is None for f in result.findings)


def test_changed_policy_is_noted(policy: Policy) -> None:
    line = "[ 1.0] clawpolicy:logdemo:deny:default-egress IN= OUT=e SRC=198.51.100.1 DST=198.51.100.80 PROTO=TCP SPT=1 DPT=443"
    (finding,) = explain.explain(logparse.parse_lines([line]), [policy]).findings
    assert finding.note and "allow" in finding.note
    gone = line.replace("default-egress", "removed-rule")
    (finding,) = explain.explain(logparse.parse_lines([gone]), [policy]).findings
    assert finding.note and "no rule 'removed-rule'" in finding.note


def test_renderings_are_deterministic(policy: Policy) -> None:
    parsed = _read("formats.txt")
    first = explain.explain(parsed, [policy])
    again = explain.explain(_read("formats.txt"), [policy])
    assert explain.render_text(first) == explain.render_text(again)
    table = explain.render_markdown(first)
    assert table.splitlines()[0].startswith("| count |") and "\\|" not in table.splitlines()[0]
    assert first.to_json()["unrecognised"] == 5


def test_markdown_keeps_hostile_log_fields_inert(policy: Policy) -> None:
    """Log fields come from whoever made the denied call (a file name here): in the Markdown
    table they stay text in their cell, never a tag, a link or a new column."""
    line = ('type=AVC msg=audit(1795465003.000:2003): apparmor="DENIED" operation="open" class="file" '
            'profile="clawpolicy-logdemo" name="/tmp/<img src=x onerror=alert(1)>|[x](http://e)`" '
            'pid=4242 comm="node" requested_mask="r" denied_mask="r" fsuid=1000 ouid=1000')
    table = explain.render_markdown(explain.explain(logparse.parse_lines([line]), [policy]))
    row = table.splitlines()[2]
    assert "<img" not in table and "&lt;img" in row
    assert row.count(" | ") == table.splitlines()[0].count(" | ")  # the `|` did not add a column
    assert "\\[x\\]" in row


# ------------------------------------------------------------------ hostile log lines (issue 16)

# Characters that act on a terminal or on reading order instead of showing (other instances
# than the ESC and newline): C0, DEL, C1 (NEL, CSI), line/paragraph separators, bidi
# overrides and isolates, zero-width and BOM, a tag character.
HIDDEN = ["\x1b[2J", "\r", "\n", "\x07", "\x7f", "\x85", "\x9b31m", "\u2028", "\u2029", "\u202e",
          "\u2066", "\u200b", "\ufeff", "\U000e0041", "\x00"]


def _apparmor_line(profile: str, name: str) -> str:
    """An AppArmor record whose profile= and name= are hex-encoded, as audit writes odd values."""
    return (f"type=AVC msg=audit(1795465003.000:2003): apparmor=\"DENIED\" operation=\"open\" "
            f"class=\"file\" profile={profile.encode().hex().upper()} name={name.encode().hex().upper()} "
            "pid=1 comm=\"node\" requested_mask=\"r\" denied_mask=\"r\"")


def test_text_report_escapes_every_hidden_character(policy: Policy, subtests: Any) -> None:
    """Every line of the text report is one line of visible text, whatever the log held:
    no character of HIDDEN reaches the terminal, and a forged finding cannot start a line."""
    for bad in HIDDEN:
        with subtests.test(msg=repr(bad)):
            line = _apparmor_line(f"clawpolicy-logdemo{bad}     1 x DENIED forged",
                                  f"/home/u/.ssh/id{bad}\n     9 x deny       egress tcp 1.2.3.4:443")
            result = explain.explain(logparse.parse_lines([line]), [policy])
            text = explain.render_text(result)
            assert all(c.isprintable() for c in text.replace("\n", "")), repr(text)
            assert len(text.splitlines()) == 6  # one finding (5 lines, with its process) and the summary
            assert not any(row.lstrip().startswith("9 x") for row in text.splitlines())
            table = explain.render_markdown(result)
            assert len(table.splitlines()) == 5 and all(c.isprintable() for c in table.replace("\n", ""))


FORGED = [  # (label, line): ours in shape, impossible in value
    ("audit stamp past 9999", "type=SECCOMP msg=audit(99999999999999.1:1): arch=c000003e syscall=41 code=0x7ffc0000"),
    ("audit stamp fraction", "type=SECCOMP msg=audit(1700000000." + "1" * 40 + ":1): arch=c000003e syscall=41"),
    ("kernel audit stamp", "[ 1.0] audit: type=1326 audit(253402300800.0:1): arch=c000003e syscall=41 code=0x50000"),
    ("audit stamp of 5000 digits", "type=AVC msg=audit(" + "7" * 5000 + ".1:1): apparmor=\"DENIED\" profile=\"x\""),
    ("journal stamp", '{"__REALTIME_TIMESTAMP": "' + "9" * 25 + '", "MESSAGE": "clawpolicy:p:deny:r IN= OUT=e '
     'SRC=1.1.1.1 DST=2.2.2.2 PROTO=UDP SPT=1 DPT=2"}'),
    ("journal bytes above 255", '{"MESSAGE": [99, 108, 256]}'),
    ("journal negative byte", '{"MESSAGE": [-1]}'),
    ("journal nesting", '{"MESSAGE": "x", "a": ' + "[" * 5000 + "]" * 5000 + "}"),
    ("journal nesting unclosed", "{" + '"a":{' * 100000),
    ("kmsg stamp", "6,1," + "9" * 40 + ",-;clawpolicy:p:deny:r IN= OUT=e SRC=1.1.1.1 DST=2.2.2.2 PROTO=TCP SPT=1 DPT=2"),
    ("dmesg stamp", "[" + "9" * 40 + ".5] clawpolicy:p:deny:r IN= OUT=e SRC=1.1.1.1 DST=2.2.2.2 PROTO=TCP"),
    ("port", "[ 1.0] clawpolicy:p:deny:r IN= OUT=e SRC=1.1.1.1 DST=2.2.2.2 PROTO=TCP SPT=1 DPT=65536"),
    ("port of 5000 digits", "[ 1.0] clawpolicy:p:deny:r IN= OUT=e SRC=1.1.1.1 DST=2.2.2.2 PROTO=TCP DPT=" + "4" * 5000),
    ("syscall number", "type=SECCOMP msg=audit(1.0:1): arch=c000003e syscall=4294967296 code=0x7ffc0000"),
    ("illustrative syscall", "h seccomp: SCMP_ACT_ERRNO for syscall=" + "9" * 5000 + " (connect)"),
]


def test_forged_values_are_counted_with_positions(policy: Policy, subtests: Any) -> None:
    """A line any local user can plant with `logger` never stops explain: it is counted as
    unreadable, with file:line and why, and the lines after it are still explained."""
    good = "[ 1.0] clawpolicy:logdemo:deny:no-exfil-host IN= OUT=e SRC=1.1.1.1 DST=198.51.100.66 PROTO=TCP SPT=1 DPT=443"
    for label, line in FORGED:
        with subtests.test(msg=label):
            parsed = logparse.parse_lines(["random", line, good], name="kern.log")
            assert parsed.unreadable.count == 1 and parsed.lines == 3
            (problem,) = parsed.unreadable.first
            assert (problem.file, problem.line) == ("kern.log", 2) and "kern.log:2: warning:" in str(problem)
            result = explain.explain(parsed, [policy])
            assert [f.rule for f in result.findings] == ["no-exfil-host"] and result.unreadable == 1
            assert "1 unreadable" in explain.render_text(result)


def test_overlong_lines_are_skipped_unread() -> None:
    """A line longer than any log line is consumed in bounded pieces and counted."""
    stream = io.BytesIO(b"a" * (3 * 1024 + 5) + b"\nclawpolicy:p:deny:r IN= OUT=e SRC=1.1.1.1 DST=2.2.2.2\n" + b"b" * 5000)
    lines = list(textinput.read_lines(stream, limit=1024))
    assert lines[0] == textinput.Overlong(3 * 1024 + 6) and lines[2] == textinput.Overlong(5000)
    parsed = logparse.parse_lines(lines, name="x")
    assert (parsed.unreadable.count, len(parsed.records)) == (2, 1)


def test_lines_split_on_newline_only() -> None:
    """A bare CR or U+2028 in a field is text of that line, not a line an attacker adds."""
    stream = io.BytesIO("a\rclawpolicy:p:deny:r IN= OUT=e SRC=1.1.1.1 DST=2.2.2.2\u2028b\n".encode())
    assert len(list(textinput.read_lines(stream))) == 1


# Rule IDs as the language makes them: `id` words ([a-z][a-z0-9-]{0,31}), automatic IDs
# (2 letters, '-', hex), each possibly split by port sets into `.1`, `.2`, ...
user_ids = st.from_regex(r"[a-z][a-z0-9-]{0,31}", fullmatch=True)
auto_ids = st.from_regex(r"[adfs][ei]-[0-9a-f]{8,16}", fullmatch=True)
rule_ids = st.tuples(user_ids | auto_ids, st.none() | st.integers(1, 10_000)).map(
    lambda t: t[0] if t[1] is None else f"{t[0]}.{t[1]}")
policy_names = st.from_regex(r"[a-z][a-z0-9-]{0,47}", fullmatch=True)


@given(policy_names, st.sampled_from(["deny", "would-deny"]), rule_ids | st.sampled_from(
    ["default-egress", "default-ingress", "local-dns-only", "egress_allow_fqdn_tcp443",
     "egress_deny_fqdn_p0123456789ab"]))
@settings(max_examples=300, deadline=None, derandomize=True)
def test_every_rule_id_round_trips_through_the_log_prefix(policy_name: str, verdict: str, label: str) -> None:
    line = f"[ 5.1] {policy_name and f'clawpolicy:{policy_name}:{verdict}:{label}'} IN= OUT=v0 SRC=10.0.0.1 DST=10.0.0.2 PROTO=TCP SPT=1 DPT=443"
    record = logparse.parse_line(line)
    assert isinstance(record, logparse.PacketRecord)
    assert (record.policy, record.verdict, record.label, record.dport) == (policy_name, verdict, label, 443)


def test_split_rules_in_compiled_prefixes_are_attributed(tmp_path: Path) -> None:
    """Every log prefix the nftables target writes leads back to its rule: split rules
    (`ID.1`, `ID.2`), the longest user ID, IDs with digits and dashes."""
    longest = "a" + "-0" * 15 + "z"  # 32 characters
    path = tmp_path / "p.claw"
    path.write_text(f"""policy split-ids-0 {{
  applies-to host
  deny egress to openai, 192.0.2.5 reason "split by ports"
  deny egress to slack, 192.0.2.6 port 22/tcp reason "one part" id {longest}
  deny egress to 192.0.2.7 port 1-2/udp reason "x" id r2-d2
  deny egress to openai, 192.0.2.8 reason "split, user id" id de-x
}}
""")
    loaded = load_policies([path])
    assert loaded.ok, loaded.diagnostics
    (pol,) = loaded.policies
    assert {r.id for r in pol.rules} >= {longest, "r2-d2", "de-x.1", "de-x.2"}
    ruleset = nftables.BACKEND.compile(pol, CompileOptions()).artifacts[0].content.decode()
    prefixes = set(re.findall(r'log prefix "(clawpolicy:[^"]*) "', ruleset))
    ids = {r.id for r in pol.rules}
    labels = {p.rsplit(":", 1)[1] for p in prefixes}  # FQDN parts log through shared chains
    assert labels >= {longest, "r2-d2", "de-x.1"} and "de-openai.1" in labels
    for prefix in sorted(prefixes):
        record = logparse.parse_line(f"[ 1.0] {prefix} IN= OUT=v0 SRC=10.0.0.1 DST=192.0.2.5 PROTO=TCP SPT=1 DPT=80")
        assert isinstance(record, logparse.PacketRecord), prefix
        assert prefix.endswith(":" + record.label)
        finding = explain.explain_record(record, {pol.name: pol})
        if record.label in ids:
            assert finding.where and finding.reason and "no rule" not in (finding.note or ""), prefix


def _seccomp_line(stamp: str = "1795465001.25:7", comm: str | None = "node", exe: str | None = "/usr/bin/node",
                  arch: str = "c000003e", number: int = 41, pid: int = 4242) -> str:
    who = (f' comm="{comm}"' if comm else "") + (f' exe="{exe}"' if exe else "")
    return (f"type=SECCOMP msg=audit({stamp}): auid=1000 uid=1000 pid={pid}{who} sig=0 arch={arch} "
            f"syscall={number} compat=0 ip=0x7f code=0x7ffc0000")


def _load_policy(tmp_path: Path, extra: str = "") -> Policy:
    path = tmp_path / "agent.claw"
    path.write_text("policy agent {\n  mode shadow\n  applies-to host\n" + extra +
                    '  sockets allow unix, inet stream reason "no raw sockets"\n}\n')
    loaded = load_policies([path])
    assert loaded.ok, loaded.diagnostics
    return loaded.policies[0]


# (executable line, --comm/--exe, record comm, record exe, whether the record is the policy's)
PROCESSES: list[tuple[str, explain.Processes, str | None, str | None, bool]] = [
    ("  executable /opt/agent/bin/agent\n", explain.Processes(), "agent", "/opt/agent/bin/agent", True),
    ("  executable /opt/agent/bin/agent\n", explain.Processes(), "agent", "/usr/bin/node", True),  # a script
    ("  executable /opt/agent/bin/agent\n", explain.Processes(), "python3", "/usr/bin/python3.12", False),
    ("  executable /opt/agent/bin/*\n", explain.Processes(), "runner", "/opt/agent/bin/runner", True),
    ("", explain.Processes(), "openclaw", "/usr/bin/node", True),  # the OpenClaw CLI by default
    ("", explain.Processes(), "openclaw.mjs", "/usr/bin/node", True),
    ("", explain.Processes(), "sshd", "/usr/sbin/sshd", False),
    ("", explain.Processes(comms=("node",)), "node", "/usr/bin/node", True),
    ("", explain.Processes(comms=("node",)), "chrome", "/opt/google/chrome/chrome", False),
    ("", explain.Processes(exes=("/usr/bin/node*",)), "worker", "/usr/bin/node22", True),
    ("", explain.Processes(comms=("node",)), None, None, True),  # the record names no process
]


def test_seccomp_records_are_the_policy_s_only_for_its_process(tmp_path: Path, subtests: Any) -> None:
    for n, (extra, processes, comm, exe, mine) in enumerate(PROCESSES):
        with subtests.test(msg=f"#{n} {comm} {exe}"):
            (tmp_path / str(n)).mkdir()
            policy = _load_policy(tmp_path / str(n), extra)
            line = _seccomp_line(comm=comm, exe=exe, number=321)  # bpf: outside the baseline
            (finding,) = explain.explain(logparse.parse_lines([line]), [policy], processes).findings
            assert (finding.policy == "agent") is mine, finding
            assert (finding.rule is not None) is mine
            assert (finding.note is not None and "not the profile's process" in finding.note) is not mine
            doc = finding.to_json()
            assert (doc["comm"], doc["exe"], doc["pids"]) == (comm, exe, [4242])
            if comm or exe:
                assert f"process: comm {comm}" in explain.render_text(explain.Explanation([finding], 1, 0))


# (audit arch, number, decoded name or None when libseccomp is absent, architecture shown, refused by)
ARCHES: list[tuple[str, int, str, str, str]] = [
    ("c000003e", 0x40000000 | 42, "connect", "x32", "architecture"),
    ("c000003e", 0x40000000 | 41, "socket", "x32", "architecture"),
    ("40000003", 102, "socketcall", "i386", "architecture"),
    ("40000003", 359, "socket", "i386", "architecture"),  # i386's own table: 41 there is dup
    ("40000028", 281, "socket", "arm", "architecture"),
    ("c00000b7", 198, "socket", "aarch64", "sockets"),
    ("c000003e", 41, "socket", "x86_64", "sockets"),
]


def test_records_are_decoded_and_judged_per_architecture(tmp_path: Path, subtests: Any) -> None:
    policy = _load_policy(tmp_path)
    known = logparse.syscall_name("x86_64", 41) is not None  # libseccomp here
    for arch, number, name, shown, rule in ARCHES:
        with subtests.test(msg=f"{shown} {number}"):
            line = _seccomp_line(comm="openclaw", arch=arch, number=number)
            (record,) = logparse.parse_lines([line]).records
            assert isinstance(record, logparse.SyscallRecord) and record.arch == shown
            if known:
                assert record.name == name
            (finding,) = explain.explain(logparse.parse_lines([line]), [policy]).findings
            assert finding.rule == rule, finding
            if rule == "architecture":
                assert "allowed" not in (finding.reason or "") and "kills" in (finding.reason or "")


def test_first_and_last_follow_the_time_stamps(tmp_path: Path, subtests: Any) -> None:
    policy = _load_policy(tmp_path)
    cases = {
        "audit, fractions as numbers": (["1795465005.5:1", "1795465001.25:2", "1795465005.25:3", "1795465003.0:4"],
                                        "2026-11-23T20:16:41.25Z", "2026-11-23T20:16:45.5Z"),
        "audit, one second apart": (["1795465002.0:1", "1795465001.999:2"],
                                    "2026-11-23T20:16:41.999Z", "2026-11-23T20:16:42.0Z"),
    }
    for name, (stamps, first, last) in cases.items():
        with subtests.test(msg=name):
            lines = [_seccomp_line(stamp=s, comm="openclaw", pid=100 + i) for i, s in enumerate(stamps)]
            (finding,) = explain.explain(logparse.parse_lines(lines), [policy]).findings
            assert (finding.count, finding.first, finding.last) == (len(stamps), first, last)
            assert finding.pids == sorted(100 + i for i in range(len(stamps)))
    uptime = [f"[{t}] audit: type=1326 audit(1795465001.0:1): pid=1 comm=\"openclaw\" arch=c000003e "
              "syscall=321 code=0x7ffc0000" for t in (" 90.5", "100.25", " 9.75")]
    nft = [f"[{t}] clawpolicy:agent:would-deny:default-egress IN= OUT=e SRC=10.0.0.2 DST=203.0.113.9 "
           "PROTO=TCP SPT=1 DPT=443" for t in (" 90.5", "100.25", " 9.75")]
    (finding,) = explain.explain(logparse.parse_lines(nft), [policy]).findings
    assert (finding.first, finding.last) == ("9.75s after boot", "100.25s after boot")
    assert explain.explain(logparse.parse_lines(uptime), [policy]).findings[0].count == 3
