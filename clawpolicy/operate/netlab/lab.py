"""The kernel lab itself: floor 3 (operate/netlab), used by `clawpolicy test --kernel` and the
kernel tests (tests/kernel/netlab.py re-exports it). Setup, teardown, running commands and
daemons inside its namespaces; loading rulesets (nftload.py) and probing (probing.py) are
their own modules.

Layout::

    +---------------- agent ns ----------------+        +------------- peer ns --------------+
    | lo (up)                                  |        | lo (up)                            |
    | eth0: agent_addresses (/32, /128 nodad)  |<-veth->| peer0: peer_addresses              |
    |   host route per peer address,           |        |   host route per agent address     |
    |   224.0.0.0/4 and ff00::/8 via eth0      |        |                                    |
    | ruleset under test (load_ruleset)        |        | no firewall                        |
    | listener.py (tcp accept / udp echo)      |        | listener.py (tcp accept / udp echo)|
    +------------------------------------------+        +------------------------------------+

Every peer address is a "remote host": egress probes run in the agent namespace
(as any uid), ingress probes run in the peer namespace with the client socket
bound to the chosen peer (source) address.

Daemons (``spawn``, ``start_dnsmasq``) run in either namespace and stop with the
lab; ``dns`` asks DNS questions from a namespace as any uid (dnsquery.py). A DNS
lab puts an upstream resolver (authoritative for test names whose addresses are
peer addresses) in the peer namespace, and the agent's own resolver in the agent
namespace, beside the ruleset whose sets it fills (nftables sets belong to a
network namespace, so the resolver that fills them must live in the same one).

All traffic stays inside the two namespaces; nothing touches the host
namespace's interfaces, routes or firewall. Needs root, ``ip`` and ``nft``.

Plain library: no pytest import.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import clawpolicy.operate.netlab.nftload as nftload
import clawpolicy.operate.netlab.probing as probing
from clawpolicy.operate.netlab.model import (
    DEFAULT_AGENT_ADDRESSES,
    DEFAULT_TCP_PORTS,
    DEFAULT_UDP_PORTS,
    DNSQUERY,
    LISTENER,
    Daemon,
    DnsAnswer,
    DnsQuery,
    LabError,
    NftError,
    Probe,
    ProbeResult,
    host_prefix,
    ip_version,
    is_multicast,
)
from clawpolicy.operate.netlab.namespaces import new_names, stop


class Lab:
    """Context manager: two namespaces, a veth pair, listeners on both sides."""

    def __init__(
        self,
        *,
        peer_addresses: Sequence[str],
        agent_addresses: Sequence[str] = DEFAULT_AGENT_ADDRESSES,
        tcp_ports: Sequence[int] = DEFAULT_TCP_PORTS,
        udp_ports: Sequence[int] = DEFAULT_UDP_PORTS,
        agent_ifname: str = "eth0",
        peer_ifname: str = "peer0",
        python: str = sys.executable,
    ) -> None:
        if not agent_addresses:
            raise ValueError("agent_addresses must not be empty")
        for a in (*peer_addresses, *agent_addresses):
            if is_multicast(a):
                raise ValueError(f"{a} is multicast and cannot be assigned to an interface")
        overlap = set(map(ipaddress.ip_address, peer_addresses)) & set(
            map(ipaddress.ip_address, agent_addresses)
        )
        if overlap:
            raise ValueError(f"addresses on both sides: {sorted(map(str, overlap))}")
        self.peer_addresses = tuple(str(ipaddress.ip_address(a)) for a in peer_addresses)
        self.agent_addresses = tuple(str(ipaddress.ip_address(a)) for a in agent_addresses)
        self.tcp_ports = tuple(tcp_ports)
        self.udp_ports = tuple(udp_ports)
        self.agent_ifname = agent_ifname
        self.peer_ifname = peer_ifname
        self.python = python
        self.agent_ns, self.peer_ns = new_names(os.getpid())
        self._created: list[str] = []
        self._listeners: list[subprocess.Popen[bytes]] = []
        self._daemons: list[subprocess.Popen[bytes]] = []
        self._tmpdir: str | None = None
        self._loads = itertools.count()

    # ------------------------------------------------------------------ setup
    def __enter__(self) -> Lab:
        try:
            self._setup()
        except BaseException:
            self.close(raise_errors=False)
            raise
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        # Never let a cleanup problem hide the exception that ended the block.
        self.close(raise_errors=exc_type is None)

    def _ip(self, *args: str, input: str | None = None) -> None:
        r = subprocess.run(["ip", *args], input=input, capture_output=True, text=True)
        if r.returncode != 0:
            raise LabError(f"ip {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")

    def _setup(self) -> None:
        self._tmpdir = tempfile.mkdtemp(prefix=f"{self.agent_ns}-")
        os.chmod(self._tmpdir, 0o755)
        for ns in (self.agent_ns, self.peer_ns):
            self._ip("netns", "add", ns)
            self._created.append(ns)
            # No DAD anywhere (also for the link-local addresses the veth gets when it
            # comes up), ping sockets for every uid/gid. Set before the veth exists so
            # the "default" values apply to it.
            self.run(
                ns,
                [
                    "sysctl",
                    "-q",
                    "-w",
                    "net.ipv6.conf.all.accept_dad=0",
                    "net.ipv6.conf.default.accept_dad=0",
                    "net.ipv6.conf.all.accept_ra=0",
                    "net.ipv6.conf.default.accept_ra=0",
                    "net.ipv4.ping_group_range=0 2147483647",
                ],
            )
        # Create the pair directly inside the namespaces (never in the host ns).
        self._ip(
            "-n", self.agent_ns, "link", "add", self.agent_ifname, "type", "veth",
            "peer", "name", self.peer_ifname, "netns", self.peer_ns,
        )  # fmt: skip
        self._configure(self.agent_ns, self.agent_ifname, self.agent_addresses, self.peer_addresses, multicast=True)
        self._configure(self.peer_ns, self.peer_ifname, self.peer_addresses, self.agent_addresses, multicast=False)
        self._start_listeners()

    def _configure(
        self, ns: str, ifname: str, own: Sequence[str], other: Sequence[str], *, multicast: bool
    ) -> None:
        lines = ["link set lo up", f"link set {ifname} up"]
        for a in own:
            lines.append(f"addr add {host_prefix(a)} dev {ifname}" + (" nodad" if ip_version(a) == 6 else ""))
        for a in other:
            lines.append(f"route add {host_prefix(a)} dev {ifname}")
        if multicast:
            lines.append(f"route add 224.0.0.0/4 dev {ifname}")
            lines.append(f"route add ff00::/8 dev {ifname}")
        self._ip("-n", ns, "-batch", "-", input="\n".join(lines) + "\n")

    def _start_listeners(self) -> None:
        argv = [
            self.python,
            str(LISTENER),
            "--tcp",
            ",".join(map(str, self.tcp_ports)),
            "--udp",
            ",".join(map(str, self.udp_ports)),
        ]
        for ns in (self.agent_ns, self.peer_ns):
            self._listeners.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", ns, *argv],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
            )
        deadline = time.monotonic() + 15
        for proc in self._listeners:
            assert proc.stdout is not None
            with selectors.DefaultSelector() as sel:
                sel.register(proc.stdout, selectors.EVENT_READ)
                if not sel.select(max(deadline - time.monotonic(), 0)):
                    raise LabError("listener did not become ready in time")
            line = proc.stdout.readline()
            if line.strip() != b"READY":
                err = ""
                try:
                    proc.wait(timeout=3)
                    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                except subprocess.TimeoutExpired:
                    pass
                raise LabError(f"listener in {self._ns_of(proc)} failed to start: {line!r}\n{err.strip()}")

    # ---------------------------------------------------------------- cleanup
    def _ns_of(self, proc: subprocess.Popen[bytes]) -> str:
        return str(proc.args[3]) if isinstance(proc.args, list) else "?"

    def close(self, *, raise_errors: bool = True) -> None:
        """Stop daemons and listeners, delete both namespaces, remove temp files. Idempotent."""
        errors: list[str] = []
        for proc in self._daemons:
            stop(proc, "daemon", errors)
        self._daemons.clear()
        for proc in self._listeners:
            if proc.stdin:  # listeners also exit by themselves when their stdin closes
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            stop(proc, "listener", errors)
            for f in (proc.stdout, proc.stderr):
                if f:
                    f.close()
        self._listeners.clear()
        for ns in reversed(self._created):
            r = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True)
            if r.returncode != 0:
                errors.append(f"ip netns del {ns}: {r.stderr.strip()}")
        self._created.clear()
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
        if errors and raise_errors:
            raise LabError("cleanup: " + "; ".join(errors))
        if errors:
            print("netlab cleanup: " + "; ".join(errors), file=sys.stderr)

    # ---------------------------------------------------------------- helpers
    def run(self, ns: str, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[Any]:
        """Run ``argv`` inside namespace ``ns`` (``ip netns exec``).

        Defaults: capture_output=True, text=True, check=True (overridable)."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        check = kw.pop("check", True)
        r = subprocess.run(["ip", "netns", "exec", ns, *argv], **kw)
        if check and r.returncode != 0:
            raise LabError(
                f"[{ns}] {' '.join(argv)} failed ({r.returncode}): {(r.stderr or '').strip()}"
            )
        return r

    def write_file(self, name: str, text: str) -> Path:
        """A file in the lab's temporary directory (readable by every uid)."""
        assert self._tmpdir, "lab not entered"
        path = Path(self._tmpdir) / name
        path.write_text(text)
        path.chmod(0o644)
        return path

    def spawn(self, ns: str, argv: list[str], *, ready: Callable[[], bool] | None = None,
              timeout: float = 10.0) -> subprocess.Popen[bytes]:
        """Start a long-running process in namespace ``ns``; it is stopped by close().
        ``ready`` is polled until true (LabError after ``timeout`` or if the process dies)."""
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._daemons.append(proc)
        deadline = time.monotonic() + timeout
        while ready is not None and not ready():
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise LabError(f"[{ns}] {argv[0]} exited ({proc.returncode}): {err.strip()}")
            if time.monotonic() > deadline:
                raise LabError(f"[{ns}] {argv[0]} not ready after {timeout}s")
            time.sleep(0.02)
        return proc

    def start_dnsmasq(self, ns: str, config: str, *, name: str, user: str = "root") -> Daemon:
        """Run dnsmasq in the foreground in ``ns`` with ``config`` (the text of a
        configuration file) as ``user``, logging every query to ``Daemon.log``."""
        conf = self.write_file(f"{name}.conf", config)
        log = Path(self._tmpdir or "") / f"{name}.log"
        log.write_text("")
        log.chmod(0o666)
        argv = ["dnsmasq", "--keep-in-foreground", f"--conf-file={conf}", "--pid-file=",
                f"--log-facility={log}", "--log-queries", f"--user={user}", "--group=nogroup"]
        proc = self.spawn(ns, argv, ready=lambda: "started, version" in log.read_text(errors="replace"))
        return Daemon(proc, log)

    def dns(self, queries: Sequence[DnsQuery], *, uid: int = 0, ns: str | None = None,
            timeout: float = 0.6) -> list[DnsAnswer]:
        """Ask each query in turn from ``ns`` (default: the agent namespace) as ``uid``."""
        payload = json.dumps({"uid": uid, "timeout": timeout, "queries": [
            {"server": q.server, "name": q.name, "type": q.type, "tcp": q.tcp} for q in queries]})
        r = self.run(ns or self.agent_ns, [self.python, str(DNSQUERY)], input=payload,
                     timeout=len(queries) * (timeout + 2) + 10)
        return [DnsAnswer(q, a["outcome"], a["rcode"], tuple(a["addresses"]), a["ttl"])
                for q, a in zip(queries, json.loads(r.stdout), strict=True)]

    def set_elements(self, family: str, table: str, name: str) -> dict[str, str]:
        """Elements of a named set in the agent namespace: address -> "expires ..." text
        (empty for elements without a timeout)."""
        return nftload.set_elements(self.nft("-j", "list", "set", family, table, name))

    def nft(self, *args: str) -> str:
        """Run ``nft ARGS`` in the agent namespace and return stdout."""
        r = self.run(self.agent_ns, ["nft", *args], check=False)
        if r.returncode != 0:
            raise NftError(f"nft {' '.join(args)} failed: {r.stderr.strip()}")
        return str(r.stdout)

    def list_ruleset(self) -> str:
        return self.nft("list", "ruleset")

    def flush_neighbours(self) -> None:
        """Forget ARP/ND entries on both sides, so the next probes start cold."""
        for ns in (self.agent_ns, self.peer_ns):
            self._ip("-n", ns, "neigh", "flush", "all")

    # ----------------------------------------------------------------- nft
    def load_ruleset(
        self,
        text: str,
        *,
        users: Mapping[str, int] = {},
        groups: Mapping[str, int] = {},
        flush: bool = True,
    ) -> None:
        """Load ``text`` with ``nft -f`` in the agent namespace.

        ``flush`` (default) prepends ``flush ruleset`` (in the same atomic
        transaction), so the agent namespace ends up with exactly ``text``.
        ``users`` / ``groups`` are extra name -> id entries nft can resolve
        (``meta skuid "name"``): /etc/passwd and /etc/group are bind-mounted
        over, in a private mount namespace only, by copies with extra lines;
        the host's files are never changed.

        The ARP/ND caches of both namespaces are flushed afterwards, so the
        probes that follow see the new ruleset from a cold start (otherwise
        whether IPv6 works under a ruleset that drops neighbour discovery
        would depend on which probes ran before it).

        Raises NftError (with nft's stderr) when nft rejects the ruleset.
        """
        assert self._tmpdir, "lab not entered"
        k = next(self._loads)
        tmp = Path(self._tmpdir)
        path = nftload.write_ruleset(tmp, k, text, flush=flush)
        argv = nftload.load_argv(tmp, k, self.agent_ns, path, users=users, groups=groups)
        r = subprocess.run(argv, capture_output=True, text=True)
        if r.returncode != 0:
            raise NftError(f"nft -f failed ({r.returncode}):\n{r.stderr.strip()}")
        self.flush_neighbours()

    def counters(self, family: str, table: str) -> dict[str, int]:
        """chain name -> total packets of all anonymous ``counter`` statements in its rules."""
        return nftload.chain_counters(self.nft("-j", "list", "table", family, table))

    # ---------------------------------------------------------------- probing
    def probe_results(self, probes: Sequence[Probe], *, timeout: float = 0.6) -> list[ProbeResult]:
        """Run all probes concurrently (one process per (namespace, uid) group) and
        return one ProbeResult per probe, in order."""
        sides = probing.Sides(self.agent_ns, self.peer_ns, self.agent_addresses, self.peer_addresses,
                              self.tcp_ports, self.udp_ports)
        return probing.run_probes(sides, self.python, probes, timeout)

    def probe(self, probes: Sequence[Probe], *, timeout: float = 0.6) -> list[bool]:
        """True per probe when the flow got through."""
        return [r.ok for r in self.probe_results(probes, timeout=timeout)]
