"""Fuzzing the readers of untrusted operational text (issue 16): kernel/audit/journal log
lines → `explain`, flow files → `simulate`, observations → `suggest`, test names → JUnit.

For every input: no traceback; the text reports show every character (no raw control,
bidi or format character reaches a terminal) and keep their line structure (a field cannot
add a line or a table column); `suggest`'s text parses back to exactly its proposed rules
and holds only validated values; JUnit XML parses with expat. Budget: see hostile.py."""

from __future__ import annotations

import io
import ipaddress
import json
import re
import xml.parsers.expat
from pathlib import Path

import pytest
from hostile import addresses, budget, hostile_text, inert_lines, names, numbers, peers, printable_lines
from hypothesis import given
from hypothesis import strategies as st

from clawpolicy.includes import normalise_name
from clawpolicy.ir import Policy
from clawpolicy.lower import load_policies
from clawpolicy.operate import explain, flowfile, junit, logparse, simulate, suggest, textinput
from clawpolicy.operate.kerneltest import CaseResult

DATA = Path(__file__).resolve().parents[1] / "data" / "logs"


@pytest.fixture(scope="module")
def policy() -> Policy:
    loaded = load_policies([DATA / "logdemo.claw"])
    assert loaded.ok
    return loaded.policies[0]


# ------------------------------------------------------------------ log lines → explain

labels = st.sampled_from(["no-exfil-host", "default-egress", "default-ingress", "ae-0123abcd.2", "x",
                          "egress_allow_fqdn_tcp443", "local-dns-only"]) | hostile_text


@st.composite
def message(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["nft", "seccomp", "apparmor", "kaudit", "ill-seccomp", "ill-apparmor", "junk"]))
    hexed = draw(st.booleans())

    def field(value: str) -> str:
        return value.encode("utf-8", "surrogatepass").hex().upper() if hexed else f'"{value}"'

    if kind == "nft":
        policy = draw(st.sampled_from(["logdemo", "p", "a-b-0"]) | hostile_text)
        verdict = draw(st.sampled_from(["deny", "would-deny", "allow"]))
        return (f"clawpolicy:{policy}:{verdict}:{draw(labels)} IN={draw(st.sampled_from(['', 'eth0']))} "
                f"OUT=v0 SRC={draw(addresses | hostile_text)} DST={draw(addresses | hostile_text)} "
                f"PROTO={draw(st.sampled_from(['TCP', 'UDP', 'ICMP', 'ICMPv6', 'GRE']) | hostile_text)} "
                f"SPT={draw(numbers)} DPT={draw(numbers)}")
    if kind in ("seccomp", "kaudit"):
        body = (f"pid={draw(numbers)} comm={field(draw(hostile_text))} exe={field(draw(hostile_text))} "
                f"arch={draw(st.sampled_from(['c000003e', 'c00000b7', '40000003', 'ffffffff']) | hostile_text)} "
                f"syscall={draw(numbers)} code=0x{draw(st.sampled_from(['7ffc0000', '50001', '80000000', 'f' * 40]))}")
        if kind == "kaudit":
            return f"audit: type=1326 audit({draw(numbers)}.{draw(numbers)}:1): {body}"
        return body
    if kind == "apparmor":
        return (f'apparmor="{draw(st.sampled_from(["DENIED", "ALLOWED", "AUDIT"]))}" operation="open" '
                f'class="{draw(st.sampled_from(["file", "net", "cap"]))}" profile={field("clawpolicy-" + draw(hostile_text))} '
                f"name={field(draw(hostile_text))} pid={draw(numbers)} comm={field(draw(hostile_text))} "
                f'family="inet" sock_type="raw" capname={field(draw(hostile_text))} denied_mask="r"')
    if kind == "ill-seccomp":
        return f"{draw(hostile_text)} seccomp: SCMP_ACT_ERRNO for syscall={draw(numbers)} ({draw(hostile_text)}) arch=c000003e."
    if kind == "ill-apparmor":
        return f"h apparmor: DENIED operation=create for profile={draw(hostile_text)} class=net addr={draw(hostile_text)}."
    return draw(hostile_text)


@st.composite
def log_line(draw: st.DrawFn) -> str:
    msg = draw(message())
    envelope = draw(st.sampled_from(["bare", "kmsg", "dmesg", "syslog", "auditd", "journal", "journal-bytes"]))
    if envelope == "kmsg":
        return f"6,{draw(numbers)},{draw(numbers)},-;{msg}"
    if envelope == "dmesg":
        return f"[{draw(numbers)}.{draw(numbers)}] {msg}"
    if envelope == "syslog":
        return f"Nov 20 11:16:01 {draw(hostile_text)} kernel: {msg}"
    if envelope == "auditd":
        kind = draw(st.sampled_from(["SECCOMP", "AVC", "SYSCALL"]))
        return f"type={kind} msg=audit({draw(numbers)}.{draw(numbers)}:{draw(numbers)}): {msg}"
    if envelope in ("journal", "journal-bytes"):
        stamp = draw(numbers | st.integers(-(2**80), 2**80) | st.none() | st.floats())
        body: object = msg
        if envelope == "journal-bytes":
            body = list(msg.encode("utf-8", "surrogatepass")) + draw(st.lists(st.integers(-300, 300), max_size=3))
        doc = {"__REALTIME_TIMESTAMP": stamp, "MESSAGE": body, "_HOSTNAME": draw(hostile_text)}
        nest = draw(st.integers(0, 3)) * draw(st.sampled_from([1, 10, 40, 2000]))
        return json.dumps(doc, allow_nan=True)[:-1] + ', "x": ' + "[" * nest + "]" * nest + "}"
    return msg


def _cells(row: str) -> int:
    """Cells of a GFM table row: pipes that no backslash escapes (`\\|` is text, `\\\\|` is not)."""
    return re.sub(r"\\.", "", row).count("|") - 1


def _check_explanation(result: explain.Explanation) -> None:
    text = explain.render_text(result)
    assert printable_lines(text), repr(text)
    findings = text.splitlines()[:-1]
    assert sum(not line.startswith("         ") for line in findings) == len(result.findings)
    assert text.splitlines()[-1].endswith(("denial records", "unreadable"))
    table = explain.render_markdown(result)
    assert inert_lines(table)
    rows = [r for r in table.splitlines() if r.startswith("| ")]
    assert len(rows) == len(result.findings) + 1
    assert all(_cells(r) == 11 for r in rows), table
    assert json.loads(json.dumps(result.to_json()))["lines"] == result.lines


@given(st.lists(log_line() | hostile_text, min_size=1, max_size=6))
@budget(100)
def test_log_lines_to_explain(policy: Policy, lines: list[str]) -> None:
    parsed = logparse.parse_lines(lines, name="fuzz.log")
    assert parsed.lines == sum(bool(line.strip()) for line in lines)
    assert parsed.unrecognised + parsed.unreadable.count + len(parsed.records) == parsed.lines
    _check_explanation(explain.explain(parsed, [policy]))
    _check_explanation(explain.explain(parsed, []))


@given(st.binary(max_size=3000), st.integers(16, 256))
@budget(100)
def test_log_bytes_to_explain(policy: Policy, data: bytes, limit: int) -> None:
    """Arbitrary bytes, lines read with a small cap: overlong lines counted, never read whole."""
    lines = list(textinput.read_lines(io.BytesIO(data), limit=limit))
    assert all(isinstance(x, textinput.Overlong) or len(x.encode("utf-8", "replace")) <= 3 * limit for x in lines)
    _check_explanation(explain.explain(logparse.parse_lines(lines), [policy]))


# ------------------------------------------------------------------ flow files → simulate, suggest

SIM_POLICY = """policy sim {
  applies-to host
  allow egress to 192.0.2.53 port 53/udp reason "resolver"
  allow egress to api.example.com port 443/tcp reason "api"
  deny egress to 192.0.2.66 reason "exfil host" id no-exfil
}
"""


@pytest.fixture(scope="module")
def sim_policy(tmp_path_factory: pytest.TempPathFactory) -> Policy:
    path = tmp_path_factory.mktemp("sim") / "sim.claw"
    path.write_text(SIM_POLICY)
    loaded = load_policies([path])
    assert loaded.ok
    return loaded.policies[0]


values = (st.none() | st.booleans() | numbers | st.integers(-(2**70), 2**70) | st.floats() | hostile_text
          | addresses | names | st.lists(st.integers(), max_size=2) | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
FIELDS = ["time", "direction", "src", "dst", "port", "proto", "uid", "name", "dport", "protocol", "user"]


@st.composite
def flow_file(draw: st.DrawFn) -> tuple[str, bytes]:
    fmt = draw(st.sampled_from(["jsonl", "csv", "conntrack", "ss"]))
    rows = draw(st.lists(st.dictionaries(st.sampled_from(FIELDS), values, max_size=8), min_size=1, max_size=5))
    lines: list[str] = []
    if fmt == "jsonl":
        for row in rows:
            text = json.dumps(row, allow_nan=True)
            if draw(st.booleans()):
                depth = draw(st.sampled_from([20, 500, 50_000]))
                text = text[:-1] + (', "n": ' if row else '"n": ') + "[" * depth + "]" * depth + "}"
            lines.append(text)
    elif fmt == "csv":
        lines.append(",".join(draw(st.permutations(FIELDS[:8]))))
        for row in rows:
            cells = [str(row.get(k, "")) for k in FIELDS[:8]]
            if draw(st.booleans()):
                cells[draw(st.integers(0, 7))] = draw(st.sampled_from(['"open', "a\rb", "x" * 140_000, '"q""q"', "\x00"]))
            lines.append(",".join(cells))
    elif fmt == "conntrack":
        for row in rows:
            lines.append(f"{draw(st.sampled_from(['tcp', 'udp', 'icmp', 'gre']))} 6 1 src={row.get('src', draw(addresses))} "
                         f"dst={row.get('dst', draw(addresses))} sport={draw(numbers)} dport={row.get('port', draw(numbers))}")
    else:
        lines.append("Netid State Recv-Q Send-Q Local Address:Port Peer Address:Port")
        for row in rows:
            lines.append(f"{draw(st.sampled_from(['tcp', 'udp', 'x']))} {draw(st.sampled_from(['ESTAB', 'LISTEN', 'UNCONN']))} 0 0 "
                         f"{draw(addresses)}:{draw(numbers)} [{row.get('dst', draw(addresses))}]:{draw(numbers | st.just('*'))} "
                         f"uid:{draw(numbers)}")
    eol = draw(st.sampled_from(["\n", "\r\n", "\r", "\u2028"]))
    return draw(st.sampled_from(["auto", fmt])), eol.join(str(x) for x in lines).encode("utf-8", "surrogatepass")


def _valid_flow(f: flowfile.FlowRecord) -> None:
    assert f.direction in ("egress", "ingress") and f.proto in ("tcp", "udp", "icmp")
    for address in (f.src, f.dst):
        assert address == "" or str(ipaddress.ip_address(address)) == address
        assert "%" not in address and not address.startswith("::ffff:")
    assert f.port is None or 1 <= f.port <= 65535
    assert f.name is None or (normalise_name(f.name) == f.name and "." in f.name)
    assert f.uid is None or flowfile.USER.match(f.uid)
    assert len(f.time) <= flowfile.MAX_TIME_CHARS


@given(flow_file(), st.sampled_from([64, 4096, textinput.MAX_LINE_BYTES]))
@budget(60)
def test_flow_files_to_simulate_and_suggest(sim_policy: Policy, case: tuple[str, bytes], limit: int) -> None:
    fmt, data = case
    flows = flowfile.parse_flows(textinput.read_lines(io.BytesIO(data), limit=limit), fmt,
                                 [ipaddress.ip_network("10.0.0.5/32")], None, "fuzz.flows")
    assert all(str(p).startswith("fuzz.flows:") for p in flows.unreadable.first)
    for f in flows.flows:
        _valid_flow(f)
    sim = simulate.simulate(sim_policy, flows.flows)
    text = simulate.render_text(sim)
    assert printable_lines(text)
    md = simulate.render_markdown(sim)
    assert inert_lines(md)
    for row in md.splitlines():
        if row.startswith("| ") and "flows |" not in row and row.count("|") > 4:
            assert _cells(row) == 8, row
    proposal = suggest.suggest(sim_policy.name, suggest.from_simulation(sim))  # parses back, or raises
    _check_suggestion(proposal)


# ------------------------------------------------------------------ observations → suggest

observations = st.builds(
    suggest.Observation,
    st.sampled_from(["egress", "ingress"]) | hostile_text,
    peers,
    st.sampled_from(["tcp", "udp", "icmp"]) | hostile_text,
    st.none() | st.integers(-5, 70_000) | st.booleans(),
    st.integers(0, 5),
    st.none() | st.sampled_from(["no-exfil", "de-1a2b3c4d.2", "default-egress"]) | hostile_text)
syscalls = st.lists(st.tuples(st.sampled_from(["bpf", "ptrace", "reason", "any", "x y", "connect"]) | hostile_text,
                              st.integers(0, 9)), max_size=3)
LINE_SHAPES = re.compile(r"^(#.*|allow (egress to|ingress from) .*|    .*|  reason \"TODO\"|syscalls allow [a-z0-9_]+|)$")


def _check_suggestion(out: suggest.Suggestion) -> None:
    assert printable_lines(out.text)
    assert all(LINE_SHAPES.match(line) for line in out.text.splitlines()), out.text
    assert suggest.parse_back(out) is not None


@given(st.lists(observations, max_size=12), syscalls, st.integers(1, 4), st.integers(1, 4))
@budget(80)
def test_suggest_only_writes_validated_values(obs: list[suggest.Observation], calls: list[tuple[str, int]],
                                              min_hosts: int, min_names: int) -> None:
    out = suggest.suggest("sim", obs, calls, min_hosts=min_hosts, min_names=min_names)
    _check_suggestion(out)
    valid = []
    for o in obs:
        try:
            valid.append(suggest.validate(o))
        except ValueError:
            pass
    good_calls = [c for c in calls if c[0] in out.syscalls]
    assert len(out.dropped) == len(obs) - len(valid) + len(calls) - len(good_calls)
    assert out.syscalls == sorted({c for c, _ in good_calls})
    allowed = [o for o in valid if o.denied_by is None]
    written = {p for rule in out.proposed for p in rule.peers}
    inputs = {o.peer for o in allowed}
    for peer in written:  # every written peer is an input, or covers only inputs' neighbours
        if peer.startswith("*."):
            assert any(name.endswith(peer[1:]) for name in inputs)
        elif "/" in peer and not peer.endswith(("/32", "/128")):
            assert any(ipaddress.ip_address(a) in ipaddress.ip_network(peer) for a in inputs if _is_address(a))
        else:
            assert peer.removesuffix("/32").removesuffix("/128") in inputs
    for o in allowed:  # and every input is covered
        assert any(o.peer == p.removesuffix("/32").removesuffix("/128") or (
            p.startswith("*.") and o.peer.endswith(p[1:])) or (
            "/" in p and _is_address(o.peer) and ipaddress.ip_address(o.peer) in ipaddress.ip_network(p))
            for rule in out.proposed if rule.direction == o.direction for p in rule.peers)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------ test names → JUnit

any_text = st.text(alphabet=st.characters(codec=None), max_size=40) | hostile_text


@given(st.lists(st.builds(CaseResult, any_text, st.sampled_from(["evaluator", "nftables"]), any_text,
                          st.sampled_from(["passed", "failed", "skipped", "error"]), any_text, any_text,
                          st.integers(0, 10**6), st.floats(0, 1e6)), min_size=1, max_size=5))
@budget(150)
def test_test_names_to_junit(cases: list[CaseResult]) -> None:
    data = junit.to_xml(cases)
    parser = xml.parsers.expat.ParserCreate()
    seen: list[str] = []
    parser.StartElementHandler = lambda tag, attrs: seen.extend(attrs.values())
    parser.Parse(data, True)
    assert all(printable_lines(v) and "\n" not in v for v in seen)
