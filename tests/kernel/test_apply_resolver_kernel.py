"""`clawpolicy apply --resolver` in network namespaces only (apply --netns), the resolver's
directory in tmp_path (never the machine's /etc): the ruleset is loaded first and the gate
started on it fills the sets it created; a rollback puts the resolver's files back as they
were (a previous file's bytes, or no file) before the table; a resolver that cannot be
installed rolls the table back too; a policy without names installs nothing."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnsgate_lab import NAMES, PEERS, POLICY, UPSTREAM, connect, lookup, start_gate, start_upstream, write_policy
from netlab import Daemon, Lab

from clawpolicy.backends.nftables import fqdn_groups
from clawpolicy.operate.apply import Nft, comparable

pytestmark = pytest.mark.root
TABLE = "clawpolicy_gatelab"
UNIT = "clawpolicy-dns-gatelab.service"


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[Lab, Daemon]]:
    with Lab(peer_addresses=PEERS, tcp_ports=(443,), udp_ports=(443,)) as lab_:
        yield lab_, start_upstream(lab_)


def _apply(lab: Lab, policy: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clawpolicy.cli", "apply", str(policy), "--netns", lab.agent_ns,
                           "--state-dir", str(tmp_path / "state"), *args], capture_output=True, text=True,
                          timeout=120)


def _table(lab: Lab) -> list[object] | None:
    nft = Nft(lab.agent_ns)
    return comparable(nft.table_json(TABLE)) if nft.table_text(TABLE) is not None else None


@pytest.fixture
def clean(lab: tuple[Lab, Daemon]) -> Iterator[Lab]:
    lab[0].nft("flush", "ruleset")
    yield lab[0]
    lab[0].nft("flush", "ruleset")


def test_gate_after_apply_fills_the_applied_sets(clean: Lab, tmp_path: Path) -> None:
    path, policy = write_policy(clean, POLICY)
    units = tmp_path / "units"
    units.mkdir()
    result = _apply(clean, path, tmp_path, "--resolver", "gate", "--resolver-dir", str(units),
                    "--dns-upstream", UPSTREAM, "--confirm-within", "0")
    assert result.returncode == 0, result.stderr
    err = result.stderr
    # the order: the ruleset (its sets) first, then the resolver's file
    assert err.index("loaded (policy=gatelab") < err.index(f"resolver (gate): wrote {units / UNIT}")
    assert "nameserver 127.0.0.1" in err  # resolv.conf is printed, not written
    unit = (units / UNIT).read_text()
    assert "ExecStart=" in unit and f'"--upstream" "{UPSTREAM}"' in unit
    sets = [g.set_name(4) for g in fqdn_groups(policy)]
    assert all(clean.set_elements("inet", TABLE, s) == {} for s in sets)  # empty until the gate answers
    gate = start_gate(clean, path)
    try:
        api, c1 = NAMES["api.llm.test"][0], NAMES["c1.cdn.test"][0]
        assert [a.addresses for a in lookup(clean, "api.llm.test", "c1.cdn.test")] == [(api,), (c1,)]
        filled = {a for s in sets for a in clean.set_elements("inet", TABLE, s)}
        assert filled == {api, c1}
        assert connect(clean, api, NAMES["evil.test"][0]) == [True, False]
    finally:
        gate.proc.terminate()
        gate.proc.wait(timeout=10)


@pytest.mark.parametrize("resolver, name", [("gate", UNIT), ("dnsmasq", "clawpolicy-gatelab.conf")])
@pytest.mark.parametrize("existed", [True, False], ids=["over-a-file", "no-file"])
def test_rollback_restores_the_resolver_files(clean: Lab, tmp_path: Path, resolver: str, name: str,
                                              existed: bool) -> None:
    path, _ = write_policy(clean, POLICY)
    where = tmp_path / "conf"
    where.mkdir()
    old = b"# the operator's own file\n\x00bytes kept as they were\n"
    if existed:
        (where / name).write_bytes(old)
    first = _apply(clean, path, tmp_path, "--confirm-within", "0")  # a table to go back to
    assert first.returncode == 0 and "their sets stay empty until a resolver" in first.stderr
    before = _table(clean)
    shadow = path.with_name("shadow.claw")
    shadow.write_text(POLICY.replace("mode enforce", "mode shadow"))
    result = _apply(clean, shadow, tmp_path, "--resolver", resolver, "--resolver-dir", str(where),
                    "--confirm-within", "1")
    assert result.returncode == 1, result.stderr
    err = result.stderr
    assert "not confirmed within 1 s: rolling back" in err
    assert err.index(f"resolver ({resolver}): wrote") < err.index("waiting 1 s")
    put_back = "put back the previous" if existed else "removed"
    assert err.index(f"resolver ({resolver}): {put_back} {where / name}") < err.index("rolled back to")
    assert _table(clean) == before
    if existed:
        assert (where / name).read_bytes() == old
        assert (tmp_path / "state" / f"{TABLE}.resolver" / f"{name}.orig").read_bytes() == old
    else:
        assert not (where / name).exists()
    assert sorted(p.name for p in where.iterdir()) == ([name] if existed else [])


def test_resolver_failure_leaves_the_old_table(clean: Lab, tmp_path: Path, subtests: pytest.Subtests) -> None:
    path, _ = write_policy(clean, POLICY)
    assert _apply(clean, path, tmp_path, "--confirm-within", "0").returncode == 0
    before = _table(clean)
    other = path.with_name("other.claw")
    other.write_text(POLICY.replace('reason "other"', 'reason "changed"'))
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    for label, where in [("missing directory", tmp_path / "nowhere"), ("a file, not a directory", not_a_dir)]:
        with subtests.test(label):
            result = _apply(clean, other, tmp_path, "--resolver", "gate", "--resolver-dir", str(where),
                            "--confirm-within", "0")
            assert result.returncode == 1
            assert "the resolver failed" in result.stderr and "rolled back to the previous table" in result.stderr
            assert _table(clean) == before


def test_no_names_no_resolver(clean: Lab, tmp_path: Path, subtests: pytest.Subtests) -> None:
    plain = tmp_path / "plain.claw"
    plain.write_text(f'policy plain {{\n  applies-to user 4242\n  allow egress to {UPSTREAM} port 53/udp '
                     'reason "dns"\n}\n')
    where = tmp_path / "units"
    where.mkdir()
    for resolver in ("gate", "dnsmasq"):
        with subtests.test(resolver=resolver):
            result = _apply(clean, plain, tmp_path, "--resolver", resolver, "--resolver-dir", str(where),
                            "--confirm-within", "0")
            assert result.returncode == 0, result.stderr
            assert "names no hosts: no resolver to install" in result.stderr
            assert list(where.iterdir()) == []
    usage = _apply(clean, plain, tmp_path, "--start")
    assert usage.returncode == 2 and "--start needs --resolver" in usage.stderr
