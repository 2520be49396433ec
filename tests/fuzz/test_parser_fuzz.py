"""Fuzzing the front end (parse → resolve → lower): whatever the text, `load_policies` returns
policies or positioned diagnostics and never raises, and every policy it returns survives a
JSON round trip of the IR. Derandomized, so a CI failure reproduces locally."""

from __future__ import annotations

import datetime as dt
import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clawpolicy.errors import Severity, render
from clawpolicy.ir import Policy
from clawpolicy.lower import LoadResult, load_policies
from clawpolicy.parse import parser

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = (REPO / "examples" / "openclaw-workstation.claw").read_text(encoding="utf-8")
TODAY = dt.date(2026, 11, 1)
FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

KEYWORDS = sorted({t.pattern.value for t in parser().terminals if t.pattern.type == "str"})
WORDS = [
    "a.example", "Bücher.example", "*.slack.com", "a.*.com", "*", "any", "icmp", "tcp", "udp",
    "443/tcp", "53/udp", "8000-8100/tcp", "any/udp", "9-3/tcp", "99999/tcp", "80", "0/tcp",
    "10.0.0.0/8", "10.0.0.1/8", "192.0.2.1", "300.1.1.1", "::1", "fe80::1%eth0", "2001:db8::/32",
    "fd7a:115c:a1e0::/48", "ff02::fb", "127.0.0.1", "openai", "anthropic", "slack", "opnai",
    "@llm", "@tailnet", "@tailnt", "@x", "host", "user", "openclaw", "1001", "shadow", "enforce",
    "2027-06-30", "2020-01-01", "2020-13-01", "all", "net_raw", "net_bind_service", "inet",
    "inet6", "unix", "stream", "dgram", "raw", "~/.ssh", "/etc/x", "relative/p", "llm", "x", "p",
]
STRINGS = ['"reason"', '""', '"a\\nb"', '"\\ud800"', '"\\u0000"', '"common/x.claw"', '"x.claw"',
           '"unterminated', "'single'"]
PUNCT = ["{", "}", ",", "=", "#c\n", "\n", "'", "`", ";", "!"]

printable_text = st.text(
    alphabet=st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs")) | st.sampled_from(
        ["\n", "\t", "{", "}", '"', "@", "*", "/", "-", ":", ".", ","]),
    max_size=200)
token_text = st.lists(
    st.sampled_from(KEYWORDS + WORDS + STRINGS + PUNCT), max_size=60).map(" ".join)
# Starts that reach deeper into the grammar than free-form tokens usually do.
policy_text = st.tuples(
    st.sampled_from(["", 'include "x.claw"\n', "define llm = openai\n", "define x = @x\n"]),
    st.lists(st.sampled_from(KEYWORDS + WORDS + STRINGS + PUNCT[:4]), max_size=40).map(" ".join),
).map(lambda parts: f"{parts[0]}policy p {{\n{parts[1]}\n}}\n")

# Statements that parse, with every slot drawn from valid and invalid values alike, so most
# inputs get past the parser and exercise resolving and lowering.
GOOD_PEERS = ["a.example", "Bücher.example", "*.slack.com", "any", "10.0.0.0/8", "192.0.2.1",
              "2001:db8::/32", "ff02::fb", "127.0.0.1", "openai", "anthropic", "slack", "@llm"]
PEERS = GOOD_PEERS * 3 + [w for w in WORDS if "/" not in w or w[0].isdigit() or ":" in w]
GOOD_PORTS = ["443/tcp", "53/udp", "8000-8100/tcp", "any/udp", "icmp", "tcp", "18789/tcp"]
PORTS = GOOD_PORTS * 3 + ["9-3/tcp", "99999/tcp", "80", "0/tcp", "1/icmp", "00053/tcp", "53/tpc"]
QUOTED = ['"r"', '""', '"a\\nb"', '"\\ud800"', '"\\u0000"', '"x\\ty"', '"\\x"']
DIRECTIONS = [("egress", "to"), ("ingress", "from"), ("egress", "from"), ("ingress", "to")]


def _csv(draw: st.DrawFn, items: list[str], most: int = 3) -> str:
    return ", ".join(draw(st.lists(st.sampled_from(items), min_size=1, max_size=most)))


@st.composite
def statement(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["rule", "rule", "rule", "define", "setting", "caps", "sockets",
                                 "files", "test"]))
    reason = draw(st.sampled_from(['reason "r"'] * 8 + ["reason " + q for q in QUOTED] + [""]))
    attrs = draw(st.lists(st.sampled_from(
        ['owner "o"', "ticket T-1", 'ticket "T 2"', "expires 2027-06-30", "expires 2020-01-01",
         "expires 2020-13-01", "id foo", "id Bad_Id", 'reason "again"']), max_size=2))
    tail = " ".join([reason, *attrs])
    if kind == "rule":
        direction, keyword = draw(st.sampled_from(DIRECTIONS[:2] * 4 + DIRECTIONS[2:]))
        ports = f" port {_csv(draw, PORTS)}" if draw(st.booleans()) else ""
        action = draw(st.sampled_from(["allow", "deny"]))
        return f"{action} {direction} {keyword} {_csv(draw, PEERS)}{ports} {tail}"
    if kind == "define":
        name = draw(st.sampled_from(["llm", "x", "Bad", "tailnet"]))
        return f"define {name} = {_csv(draw, PEERS)}"
    if kind == "setting":
        return draw(st.sampled_from([
            "mode shadow", "mode enforce", "mode shadw", "applies-to host", "applies-to user bob",
            "applies-to user 1001", "applies-to user Bad", "applies-to service x",
            "applies-to agent-ports", "agent-ports 9000/tcp", "agent-ports 80",
            "description " + draw(st.sampled_from(QUOTED)), "owner " + draw(st.sampled_from(QUOTED)),
        ]))
    if kind == "caps":
        prefix = draw(st.sampled_from(["drop all keep", "drop all,", "drop", "keep"]))
        names = _csv(draw, ["net_raw", "net_bind_servce", "cap_chown", "all"])
        return f"capabilities {prefix} {names} {draw(st.sampled_from(['', tail]))}"
    if kind == "sockets":
        kinds = ['unix', 'inet stream', 'inet6 dgram', 'inet5', 'inet strem', 'netlink route', 'netlink',
                 'netlink rout', 'inet route']
        return f"sockets allow {_csv(draw, kinds)}"
    if kind == "files":
        paths = _csv(draw, ["~/.ssh", "/etc/x/", "/", "relative", '"/with space"', '"/a\\u0001"'])
        return f"files {draw(st.sampled_from(['deny', 'allow']))} {paths} {tail}"
    expects = draw(st.lists(st.builds(
        lambda a, d, peer, port, user: f"expect {a} {d[0]} {d[1]} {peer}{port}{user}",
        st.sampled_from(["allow", "deny"]), st.sampled_from(DIRECTIONS + [("egress", "")]),
        st.sampled_from(PEERS), st.sampled_from([""] + [f" port {p}" for p in PORTS]),
        st.sampled_from(["", " as user bob", " as user 1001"])), max_size=3))
    return f"test {draw(st.sampled_from(QUOTED))} {{ {' '.join(expects)} }}"


structured_text = st.lists(statement(), max_size=6).map(
    lambda body: "define llm = openai\npolicy p {\n  " + "\n  ".join(body) + "\n}\n")


def _load(text: str, *, include: str | None = None) -> LoadResult:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.claw"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        if include is not None:
            (Path(tmp) / "x.claw").write_text(include, encoding="utf-8")
        result = load_policies([path], today=TODAY)
        render(result.diagnostics, result.sources)  # rendering never raises either
    return result


def _check(result: LoadResult) -> None:
    assert all(d.location is None or d.location.file for d in result.diagnostics)
    if not result.ok:
        assert any(d.severity is Severity.ERROR for d in result.diagnostics)
    for policy in result.policies:
        again = Policy.model_validate_json(policy.model_dump_json())
        assert again == policy


@FUZZ
@given(printable_text)
def test_random_text_never_raises(text: str) -> None:
    _check(_load(text))


@FUZZ
@given(token_text)
def test_random_tokens_never_raise(text: str) -> None:
    _check(_load(text))


@FUZZ
@given(policy_text, st.sampled_from(["", "define x = 1.2.3.4\n", "define llm = @llm\n",
                                     "policy q { }\n", 'include "x.claw"\n']))
def test_random_policy_bodies_never_raise(text: str, included: str) -> None:
    _check(_load(text, include=included))


# ---------------------------------------------------------------- mutations of the example

_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*|[^\s{},=]+|[{},=]|\s+')
TOKENS = _TOKEN.findall(EXAMPLE)
assert "".join(TOKENS) == EXAMPLE


@st.composite
def token_mutation(draw: st.DrawFn) -> str:
    tokens = list(TOKENS)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(tokens) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "replace"]))
        if op == "delete":
            del tokens[i]
        elif op == "duplicate":
            tokens.insert(i, tokens[i])
        elif op == "swap":
            j = draw(st.integers(0, len(tokens) - 1))
            tokens[i], tokens[j] = tokens[j], tokens[i]
        else:
            tokens[i] = draw(st.sampled_from(KEYWORDS + WORDS + STRINGS + PUNCT))
    return "".join(tokens)


@st.composite
def char_mutation(draw: st.DrawFn) -> str:
    text = EXAMPLE
    start = draw(st.integers(0, len(text) - 1))
    end = draw(st.integers(start, min(len(text), start + 40)))
    op = draw(st.sampled_from(["delete", "duplicate", "move", "insert"]))
    if op == "delete":
        return text[:start] + text[end:]
    if op == "duplicate":
        return text[:end] + text[start:end] + text[end:]
    if op == "move":
        rest = text[:start] + text[end:]
        at = draw(st.integers(0, len(rest)))
        return rest[:at] + text[start:end] + rest[at:]
    return text[:start] + draw(st.text(max_size=5)) + text[start:]


@FUZZ
@given(token_mutation())
def test_token_mutations_of_the_example_never_raise(text: str) -> None:
    _check(_load(text))


@FUZZ
@given(char_mutation())
def test_character_mutations_of_the_example_never_raise(text: str) -> None:
    _check(_load(text))


def test_example_round_trips() -> None:
    result = _load(EXAMPLE)
    assert result.ok, render(result.diagnostics, result.sources)
    assert len(result.policies) == 1
    _check(result)


@FUZZ
@given(structured_text, st.sampled_from(["", "define x = 1.2.3.4\n", "define llm = @llm\n"]))
def test_structured_policies_never_raise(text: str, included: str) -> None:
    result = _load('include "x.claw"\n' + text, include=included)
    _check(result)
