"""Lock files: the format, what resolve/--update/--check change, and `compile --lock`.

DNS is a stub here; tests/kernel/test_dns_kernel.py runs the same path against a real
dnsmasq upstream in a network namespace."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

import pytest

from clawpolicy import lockfile
from clawpolicy.cli import main
from clawpolicy.compiler import compile_paths
from clawpolicy.ir import Policy
from clawpolicy.lockfile import Answer, Lock, LockError, check, dumps, load, lock_path, resolve
from clawpolicy.lower import load_policies

POLICY = """policy demo {
  mode enforce
  applies-to host
  allow egress to api.example.com, *.cdn.example port 443/tcp reason "api"
  deny egress to evil.example reason "no"
  allow egress to telegram reason "chat"
}
"""


class Stub:
    description = "192.0.2.53"

    def __init__(self, answers: Mapping[str, tuple[str, ...]]) -> None:
        self.answers = dict(answers)
        self.asked: list[str] = []

    def lookup(self, name: str) -> Answer:
        self.asked.append(name)
        addrs = self.answers.get(name, ())
        return Answer(lockfile.sort_addresses(a for a in addrs if ":" not in a),
                      lockfile.sort_addresses(a for a in addrs if ":" in a),
                      {"A": 300, "AAAA": 60})


DNS = {"api.example.com": ("192.0.2.10", "192.0.2.9", "2001:db8::a"),
       "evil.example": ("198.51.100.66",), "api.telegram.org": ("149.154.167.99",)}


def _policies(tmp_path: Path, text: str = POLICY) -> list[Policy]:
    src = tmp_path / "demo.claw"
    src.write_text(text)
    loaded = load_policies([src])
    assert loaded.ok, loaded.diagnostics
    return loaded.policies


def test_format_is_deterministic_and_sorted(tmp_path: Path) -> None:
    policies = _policies(tmp_path)
    result = resolve(policies, Stub(DNS), None, now=lambda: "2026-11-23T00:00:00Z")
    text = dumps(result.lock)
    data = json.loads(text)
    assert list(data["names"]) == ["api.example.com", "api.telegram.org", "evil.example"]
    assert data["names"]["api.example.com"] == {
        "ipv4": ["192.0.2.9", "192.0.2.10"],  # numeric order, not text order
        "ipv6": ["2001:db8::a"],
        "observed": {"resolver": "192.0.2.53", "time": "2026-11-23T00:00:00Z",
                     "ttl": {"A": 300, "AAAA": 60}}}
    assert data["wildcards"] == ["*.cdn.example"]  # listed, never resolved
    assert text.endswith("}\n") and text == dumps(Lock.model_validate(data))
    assert [c.kind for c in result.changes] == ["new"] * 3


def test_catalog_literal_addresses_are_not_looked_up(tmp_path: Path) -> None:
    stub = Stub(DNS)
    lock = resolve(_policies(tmp_path), stub, None).lock
    assert "149.154.167.220" not in dumps(lock)  # telegram's fallback stays a CIDR rule
    assert sorted(stub.asked) == ["api.example.com", "api.telegram.org", "evil.example"]


def test_resolve_keeps_locked_names_unless_update(tmp_path: Path) -> None:
    policies = _policies(tmp_path)
    first = resolve(policies, Stub(DNS), None, now=lambda: "t1").lock
    moved = {**DNS, "api.example.com": ("192.0.2.10", "192.0.2.11", "2001:db8::a")}
    stub = Stub(moved)
    again = resolve(policies, stub, first, now=lambda: "t2")
    assert again.lock == first and not again.changed and stub.asked == []
    updated = resolve(policies, Stub(moved), first, update=True, now=lambda: "t2")
    assert [c.lines() for c in updated.changes] == [
        ["+ api.example.com 192.0.2.11", "- api.example.com 192.0.2.9"]]
    # unchanged names keep their old record: the diff is only the moved addresses
    assert updated.lock.names["evil.example"].observed.time == "t1"
    assert updated.lock.names["api.example.com"].observed.time == "t2"


def test_names_leaving_the_policy_leave_the_lock(tmp_path: Path) -> None:
    first = resolve(_policies(tmp_path), Stub(DNS), None).lock
    smaller = _policies(tmp_path, POLICY.replace("  deny egress to evil.example reason \"no\"\n", ""))
    result = resolve(smaller, Stub(DNS), first)
    assert "evil.example" not in result.lock.names
    assert [c.lines() for c in result.changes] == [["- evil.example (no longer in the policy)"]]


def test_check(tmp_path: Path) -> None:
    policies = _policies(tmp_path)
    lock = resolve(policies, Stub(DNS), None).lock
    assert check(policies, Stub(DNS), lock) == []
    gone = check(policies, Stub({**DNS, "evil.example": ()}), lock)
    assert [c.lines() for c in gone] == [["- evil.example 198.51.100.66"]]


def test_empty_answers_are_reported(tmp_path: Path) -> None:
    result = resolve(_policies(tmp_path), Stub({}), None)
    assert result.empty == ["api.example.com", "api.telegram.org", "evil.example"]


@pytest.mark.parametrize("text, message", [
    ("{", "cannot read"),
    ('{"version": 2, "names": {}}', "version 2"),
    ('{"version": 1, "names": {"a.example": {"ipv4": ["10.0.0.2", "10.0.0.1"], '
     '"observed": {"resolver": "x", "time": "t"}}}}', "sorted"),
    ('{"version": 1, "names": {"a.example": {"ipv4": ["2001:db8::1"], '
     '"observed": {"resolver": "x", "time": "t"}}}}', "family"),
    ('{"version": 1, "names": {}, "extra": 1}', "invalid lock file"),
])
def test_invalid_lock_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "x.lock.json"
    path.write_text(text)
    with pytest.raises(LockError, match=message):
        load(path)


def test_compile_with_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    policies = _policies(tmp_path)
    src = Path("demo.claw")
    missing = compile_paths([src], ["nftables"], lock=True)
    assert not missing.ok and "no lock file" in missing.diagnostics[-1].message
    lock_path(src).write_text(dumps(resolve(policies, Stub(DNS), None).lock))
    result = compile_paths([src], ["nftables"], lock=True)
    assert result.ok, result.diagnostics
    text = result.outputs["demo/nftables/ruleset.nft"].decode()
    assert '192.0.2.9 comment "api.example.com"' in text
    assert '2001:db8::a comment "api.example.com"' in text
    assert '198.51.100.66 comment "evil.example"' in text  # deny names are locked too
    assert re.search(r"set egress_deny_lock4_[a-z0-9.-]+ \{", text)  # one per rule: egress_deny_lock4_<id>
    # a name the lock lacks is an error, not a silently empty set
    (tmp_path / "demo.claw").write_text(POLICY.replace("evil.example", "worse.example"))
    stale = compile_paths([src], ["nftables"], lock=True)
    assert not stale.ok and "no addresses for worse.example" in stale.diagnostics[-1].message


def test_cli_resolve_update_and_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    _policies(tmp_path)
    answers = dict(DNS)
    monkeypatch.setattr(lockfile, "DnsResolver", lambda nameserver=None: Stub(answers))
    assert main(["resolve", "demo.claw", "--check"]) == 1  # no lock yet
    assert main(["resolve", "demo.claw"]) == 0
    out, err = capsys.readouterr()
    assert "wrote demo.lock.json (3 names)" in out
    assert "*.cdn.example: wildcards cannot be locked" in err and "dnsmasq" in err
    before = Path("demo.lock.json").read_text()
    assert main(["resolve", "demo.claw"]) == 0 and "up to date" in capsys.readouterr().out
    assert main(["resolve", "demo.claw", "--check"]) == 0
    answers["api.example.com"] = ("192.0.2.10",)
    assert main(["resolve", "demo.claw", "--check"]) == 1
    out, err = capsys.readouterr()
    assert "- api.example.com 192.0.2.9" in out and "no longer matches the lock" in err
    assert Path("demo.lock.json").read_text() == before  # --check writes nothing
    assert main(["resolve", "demo.claw", "--update"]) == 0
    assert json.loads(Path("demo.lock.json").read_text())["names"]["api.example.com"]["ipv6"] == []
    assert main(["resolve", "demo.claw", "--update", "--check"]) == 2  # one or the other


def test_embedded_ipv4_answers_never_reach_the_lock(tmp_path: Path) -> None:
    """An AAAA answer of ::ffff:a.b.c.d (or ::a.b.c.d) would sit in the IPv6 sets while the
    kernel sends IPv4: dropped, and the lock still loads."""
    answers = {**DNS, "api.example.com": ("192.0.2.10", "::ffff:198.51.100.7", "::203.0.113.1",
                                          "2001:db8::a")}
    result = resolve(_policies(tmp_path), Stub(answers), None, now=lambda: "t")
    assert result.lock.names["api.example.com"].ipv6 == ("2001:db8::a",)
    path = tmp_path / "demo.lock.json"
    path.write_text(dumps(result.lock))
    assert load(path).names["api.example.com"].ipv4 == ("192.0.2.10",)


def test_lock_errors_never_quote_the_file(tmp_path: Path, subtests: pytest.Subtests) -> None:
    secret = "s3cr3t-lock"
    cases = {
        "not JSON": f"TOKEN={secret}\n".encode(),
        "JSON of another shape": json.dumps({"version": 1, "names": {"a.example": secret}}).encode(),
        "wrong types": json.dumps({"version": 1, "names": {}, "wildcards": secret}).encode(),
        "not UTF-8": b"\xff" + secret.encode(),
    }
    for name, content in cases.items():
        with subtests.test(msg=name):
            path = tmp_path / "x.lock.json"
            path.write_bytes(content)
            with pytest.raises(LockError) as caught:
                load(path)
            assert secret not in str(caught.value)
    with subtests.test(msg="a FIFO"):
        fifo = tmp_path / "fifo.lock.json"
        os.mkfifo(fifo)
        with pytest.raises(LockError, match="not a regular file"):
            load(fifo)


# (answers, --allow-empty, exit status of resolve, names accepted in the lock)
EMPTY_CASES: dict[str, tuple[dict[str, tuple[str, ...]], bool, int, list[str]]] = {
    "every name answers": (DNS, False, 0, []),
    "a deny name is NXDOMAIN": ({**DNS, "evil.example": ()}, False, 1, []),
    "a catalog name is NXDOMAIN": ({k: v for k, v in DNS.items() if k != "api.telegram.org"}, False, 1, []),
    "accepted": ({**DNS, "api.example.com": ()}, True, 0, ["api.example.com"]),
}


def test_names_without_addresses_are_errors_unless_accepted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        subtests: pytest.Subtests) -> None:
    for n, (name, (answers, allow, status, accepted)) in enumerate(EMPTY_CASES.items()):
        with subtests.test(msg=name):
            folder = tmp_path / str(n)
            folder.mkdir()
            monkeypatch.chdir(folder)
            _policies(folder)
            monkeypatch.setattr(lockfile, "DnsResolver", lambda nameserver=None, a=answers: Stub(a))
            args = ["resolve", "demo.claw", *(["--allow-empty"] if allow else [])]
            assert main(args) == status
            out, err = capsys.readouterr()
            lock_file = Path("demo.lock.json")
            if status:
                assert not lock_file.exists() and "resolves to no address" in err and "--allow-empty" in err
                continue
            doc = json.loads(lock_file.read_text())
            assert doc.get("accepted_empty", []) == accepted
            # --check and compile --lock accept exactly what the lock accepted
            assert main(["resolve", "demo.claw", "--check"]) == 0, capsys.readouterr()
            assert compile_paths([Path("demo.claw")], ["nftables"], lock=True).ok


def test_check_and_compile_refuse_an_empty_name_nobody_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A lock written before empty answers were errors (or edited by hand): DNS still gives
    nothing, so --check sees no change, yet the lock admits nothing for the name."""
    monkeypatch.chdir(tmp_path)
    policies = _policies(tmp_path)
    answers = {**DNS, "api.telegram.org": ()}
    lock = resolve(policies, Stub(answers), None).lock
    legacy = lock.model_copy(update={"accepted_empty": ()})
    Path("demo.lock.json").write_text(dumps(legacy))
    monkeypatch.setattr(lockfile, "DnsResolver", lambda nameserver=None: Stub(answers))
    assert main(["resolve", "demo.claw", "--check"]) == 1
    assert "api.telegram.org is locked with no address" in capsys.readouterr().err
    result = compile_paths([Path("demo.claw")], ["nftables"], lock=True)
    assert not result.ok and "holds no address for api.telegram.org" in result.diagnostics[-1].message
    # accepting it later is recorded, and kept by the next resolve without the flag
    assert main(["resolve", "demo.claw", "--update", "--allow-empty"]) == 0
    assert main(["resolve", "demo.claw", "--update"]) == 0
    assert json.loads(Path("demo.lock.json").read_text())["accepted_empty"] == ["api.telegram.org"]
    assert main(["resolve", "demo.claw", "--check"]) == 0
