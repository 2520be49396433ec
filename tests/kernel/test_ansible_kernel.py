"""The fleet recipe (examples/ansible/clawpolicy-apply.yml) run by ansible-playbook against two
"hosts" that are network namespaces (local connection, `clawpolicy_netns`; never the machine's
own ruleset): both load and confirm, serially; a host whose policy would cut its live SSH-like
session refuses, and the play stops before the next host."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from netlab import Lab

from clawpolicy.operate.apply import Nft, read_stamp

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(shutil.which("ansible-playbook", path=f"{Path(sys.executable).parent}:"
                                              f"{os.environ.get('PATH', '')}") is None,
                                 reason="ansible-playbook (ansible-core) not installed")]
REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "examples/ansible/clawpolicy-apply.yml"
AGENT, PEER = "192.0.2.1", "192.0.2.50"


@pytest.fixture
def hosts() -> Iterator[list[Lab]]:
    with Lab(peer_addresses=[PEER], agent_addresses=[AGENT], tcp_ports=(80,)) as a, \
            Lab(peer_addresses=[PEER], agent_addresses=[AGENT], tcp_ports=(80,)) as b:
        yield [a, b]


def _run(tmp_path: Path, labs: list[Lab], policy: Path) -> subprocess.CompletedProcess[str]:
    lines = ["[agents]"]
    for n, lab in enumerate(labs):
        home = tmp_path / f"host{n}"
        (home / "etc").mkdir(parents=True, exist_ok=True)
        lines.append(f"host{n} ansible_connection=local ansible_python_interpreter={sys.executable} "
                     f"clawpolicy_netns={lab.agent_ns} clawpolicy_state_dir={home / 'run'} "
                     f"clawpolicy_policy_dir={home / 'etc'}")
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("\n".join(lines) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "SSH_CONNECTION"}
    env.update(ANSIBLE_LOCAL_TEMP=str(tmp_path / "atmp"), ANSIBLE_REMOTE_TEMP=str(tmp_path / "rtmp"),
               ANSIBLE_ASYNC_DIR=str(tmp_path / "async"), ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_HOST_KEY_CHECKING="0", HOME=str(tmp_path))
    binary = str(Path(sys.executable).parent / "ansible-playbook")
    return subprocess.run([binary, "-i", str(inventory), str(PLAYBOOK),
                           "-e", f"clawpolicy_policy_src={policy}",
                           "-e", f"clawpolicy_command='{sys.executable} -m clawpolicy.cli'",
                           "-e", "clawpolicy_window=60"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=600)


def _policy(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "fleet.claw"
    path.write_text(f"policy fleet {{\n  applies-to host\n{body}\n}}\n")
    return path


def _stamp(lab: Lab) -> str | None:
    return read_stamp(Nft(lab.agent_ns).table_json("clawpolicy_fleet"))


def test_fleet_applies_and_confirms_each_host(hosts: list[Lab], tmp_path: Path) -> None:
    policy = _policy(tmp_path, f'  allow ingress from {PEER} port 22/tcp reason "admin"')
    r = _run(tmp_path, hosts, policy)
    assert r.returncode == 0, r.stdout + r.stderr
    for lab in hosts:
        stamp = _stamp(lab)
        assert stamp is not None and stamp.startswith("policy=fleet mode=enforce")
    assert "host0" in r.stdout and "host1" in r.stdout


def _hold_ssh(lab: Lab) -> None:
    listening, connected = Path(lab.write_file("l", "")), Path(lab.write_file("c", ""))
    listening.unlink()
    connected.unlink()
    server = ("import socket, time\ns = socket.socket()\n"
              f"s.bind(('{AGENT}', 22)); s.listen(); open('{listening}', 'w').close()\n"
              "c = s.accept(); time.sleep(300)\n")
    client = (f"import socket, time\ns = socket.create_connection(('{AGENT}', 22))\n"
              f"open('{connected}', 'w').close(); time.sleep(300)\n")
    lab.spawn(lab.agent_ns, [sys.executable, "-c", server], ready=listening.exists)
    lab.spawn(lab.peer_ns, [sys.executable, "-c", client], ready=connected.exists)


def test_fleet_stops_at_the_first_refusal(hosts: list[Lab], tmp_path: Path) -> None:
    _hold_ssh(hosts[0])
    policy = _policy(tmp_path, '  allow ingress from 10.0.0.0/8 port 22/tcp reason "admin LAN only"')
    r = _run(tmp_path, hosts, policy)
    assert r.returncode != 0
    assert "would refuse SSH from 192.0.2.50" in r.stdout + r.stderr
    assert _stamp(hosts[0]) is None and _stamp(hosts[1]) is None  # the second host was never touched
    assert "host1" not in r.stdout.split("PLAY RECAP")[0].replace("host0", "")
