"""A two-namespace network lab that shows what an nftables ruleset does in the kernel: floor 3,
used by `clawpolicy test --kernel` and the kernel tests (tests/kernel/netlab.py re-exports it).

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
import re
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

HERE = Path(__file__).resolve().parent / "labprocs"
LISTENER = HERE / "listener.py"
PROBE = HERE / "probe.py"
DNSQUERY = HERE / "dnsquery.py"

DEFAULT_AGENT_ADDRESSES: tuple[str, ...] = ("192.0.2.1", "2001:db8::1")
DEFAULT_TCP_PORTS: tuple[int, ...] = (22, 53, 80, 443, 5353, 8080, 18789)
DEFAULT_UDP_PORTS: tuple[int, ...] = (53, 443, 5353, 41641)

_NS_PREFIX = "cpt"
_NS_RE = re.compile(rf"^{_NS_PREFIX}(\d+)x(\d+)[ap]$")
_lab_ids = itertools.count()


class LabError(RuntimeError):
    """The lab could not be set up or a command inside it failed."""


class NftError(LabError):
    """``nft`` rejected a ruleset (the message carries nft's stderr)."""


@dataclass(frozen=True)
class Probe:
    direction: Literal["egress", "ingress"]
    # egress: destination address in the peer ns; ingress: SOURCE address in the peer ns
    remote: str
    protocol: Literal["tcp", "udp", "icmp"]
    port: int | None = None  # destination port (None for icmp)
    uid: int = 0  # egress only: uid (and gid) the agent-side client runs as
    # ingress only: destination address in the agent ns
    # (default: the first agent address of the same family)
    local: str | None = None

    def __str__(self) -> str:
        arrow = "->" if self.direction == "egress" else "<-"
        port = f":{self.port}" if self.port is not None else ""
        who = f" uid={self.uid}" if self.uid else ""
        local = f" local={self.local}" if self.local else ""
        return f"{self.direction} {self.protocol} {arrow} {self.remote}{port}{who}{local}"


@dataclass(frozen=True)
class Daemon:
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """Stop it now (the lab stops it anyway when it closes)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=5)


@dataclass(frozen=True)
class DnsQuery:
    server: str
    name: str
    type: Literal["A", "AAAA"] = "A"
    tcp: bool = False


@dataclass(frozen=True)
class DnsAnswer:
    query: DnsQuery
    outcome: str  # ok | timeout | eperm | error
    rcode: str | None  # NOERROR, NXDOMAIN, ... (None without a reply)
    addresses: tuple[str, ...]
    ttl: int | None

    @property
    def ok(self) -> bool:
        """A reply came back (whatever its rcode)."""
        return self.outcome == "ok"


@dataclass(frozen=True)
class ProbeResult:
    probe: Probe
    ok: bool  # the flow got through
    outcome: str  # ok | timeout | eperm | refused | unreachable | error
    errno: str | None  # e.g. "EPERM", "ECONNREFUSED"
    elapsed: float  # seconds


def _version(addr: str) -> int:
    return ipaddress.ip_address(addr).version


def _is_multicast(addr: str) -> bool:
    return ipaddress.ip_address(addr).is_multicast


def _host_prefix(addr: str) -> str:
    return f"{addr}/32" if _version(addr) == 4 else f"{addr}/128"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_stale_namespaces() -> list[str]:
    """Delete lab namespaces (and temp dirs) left behind by lab processes that no
    longer exist (e.g. a test run killed with SIGKILL). Returns the deleted
    namespace names. Listeners of such labs exit by themselves (stdin EOF)."""
    try:
        out = subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    deleted = []
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        m = _NS_RE.match(name)
        if m and not _pid_alive(int(m.group(1))):
            if subprocess.run(["ip", "netns", "del", name], capture_output=True).returncode == 0:
                deleted.append(name)
    for tmp in Path(tempfile.gettempdir()).glob(f"{_NS_PREFIX}*x*a-*"):
        m = _NS_RE.match(tmp.name.split("-", 1)[0])
        if m and tmp.is_dir() and not _pid_alive(int(m.group(1))):
            shutil.rmtree(tmp, ignore_errors=True)
    return deleted


def _stop(proc: subprocess.Popen[bytes], what: str, errors: list[str]) -> None:
    """Terminate, then kill after 3 s; record (never raise) what went wrong."""
    try:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=3)
    except Exception as exc:  # noqa: BLE001 - cleanup goes on whatever happened
        errors.append(f"{what} {proc.pid}: {exc}")


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
            if _is_multicast(a):
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
        n = next(_lab_ids)
        self.agent_ns = f"{_NS_PREFIX}{os.getpid()}x{n}a"
        self.peer_ns = f"{_NS_PREFIX}{os.getpid()}x{n}p"
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
            lines.append(f"addr add {_host_prefix(a)} dev {ifname}" + (" nodad" if _version(a) == 6 else ""))
        for a in other:
            lines.append(f"route add {_host_prefix(a)} dev {ifname}")
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
            _stop(proc, "daemon", errors)
        self._daemons.clear()
        for proc in self._listeners:
            if proc.stdin:  # listeners also exit by themselves when their stdin closes
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            _stop(proc, "listener", errors)
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
        doc = json.loads(self.nft("-j", "list", "set", family, table, name))
        out: dict[str, str] = {}
        for obj in doc.get("nftables", []):
            for elem in obj.get("set", {}).get("elem", []):
                if isinstance(elem, dict) and "elem" in elem:
                    inner = elem["elem"]
                    out[str(inner["val"])] = str(inner.get("expires", ""))
                else:
                    out[str(elem)] = ""
        return out

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
        path = Path(self._tmpdir) / f"ruleset{k}.nft"
        path.write_text(text if text.endswith("\n") else text + "\n")
        if flush:
            # A wrapper keeps nft's error positions relative to the caller's text.
            wrapper = Path(self._tmpdir) / f"load{k}.nft"
            wrapper.write_text(f'flush ruleset\ninclude "{path}"\n')
            path = wrapper
        argv: list[str]
        if users or groups:
            extra: list[str] = []
            for src, lines_for, name in (
                ("/etc/passwd", users, "passwd"),
                ("/etc/group", groups, "group"),
            ):
                if not lines_for:
                    continue
                body = Path(src).read_text()
                if body and not body.endswith("\n"):
                    body += "\n"
                for uname, ident in lines_for.items():
                    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", uname):
                        raise ValueError(f"bad user/group name {uname!r}")
                    if name == "passwd":
                        body += f"{uname}:x:{int(ident)}:{int(ident)}::/nonexistent:/usr/sbin/nologin\n"
                    else:
                        body += f"{uname}:x:{int(ident)}:\n"
                copy = Path(self._tmpdir) / f"{name}{k}"
                copy.write_text(body)
                copy.chmod(0o644)
                extra += [str(copy), src]
            binds = " && ".join(
                f'mount --bind "${i + 1}" "${i + 2}"' for i in range(0, len(extra), 2)
            )
            n = len(extra)
            script = f'{binds} && exec ip netns exec "${n + 1}" nft -f "${n + 2}"'
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                    *extra, self.agent_ns, str(path)]  # fmt: skip
        else:
            argv = ["ip", "netns", "exec", self.agent_ns, "nft", "-f", str(path)]
        r = subprocess.run(argv, capture_output=True, text=True)
        if r.returncode != 0:
            raise NftError(f"nft -f failed ({r.returncode}):\n{r.stderr.strip()}")
        self.flush_neighbours()

    def counters(self, family: str, table: str) -> dict[str, int]:
        """chain name -> total packets of all anonymous ``counter`` statements in its rules."""
        doc = json.loads(self.nft("-j", "list", "table", family, table))
        totals: dict[str, int] = {}
        for obj in doc.get("nftables", []):
            if "chain" in obj:
                totals.setdefault(obj["chain"]["name"], 0)
            elif "rule" in obj:
                rule = obj["rule"]
                totals[rule["chain"]] = totals.get(rule["chain"], 0) + _sum_counters(rule.get("expr", []))
        return totals

    # ---------------------------------------------------------------- probing
    def _to_request(self, p: Probe) -> tuple[str, int, dict[str, Any]]:
        if p.protocol not in ("tcp", "udp", "icmp"):
            raise ValueError(f"{p}: unknown protocol")
        if p.protocol == "icmp":
            if p.port is not None:
                raise ValueError(f"{p}: icmp probes take no port")
        elif p.port is None or not 0 < p.port < 65536:
            raise ValueError(f"{p}: {p.protocol} probes need a port")
        fam = _version(p.remote)
        if p.port is not None and not (p.direction == "egress" and _is_multicast(p.remote)):
            ports = self.tcp_ports if p.protocol == "tcp" else self.udp_ports
            if p.port not in ports:
                # Without a listener the flow would be refused, which looks like a block.
                raise ValueError(f"{p}: no {p.protocol} listener on port {p.port} (lab ports: {ports})")
        if p.direction == "egress":
            if p.local is not None:
                raise ValueError(f"{p}: local is for ingress probes")
            req = {
                "protocol": p.protocol,
                "dst": p.remote,
                "port": p.port,
                "src": None,
                "send_only": _is_multicast(p.remote),
            }
            if req["send_only"] and p.protocol == "tcp":
                raise ValueError(f"{p}: tcp to a multicast address")
            return self.agent_ns, p.uid, req
        if p.direction == "ingress":
            if p.uid != 0:
                raise ValueError(f"{p}: uid is for egress probes")
            if p.remote not in self.peer_addresses:
                raise ValueError(f"{p}: ingress source {p.remote} is not a peer address")
            local = p.local
            if local is None:
                local = next((a for a in self.agent_addresses if _version(a) == fam), None)
                if local is None:
                    raise ValueError(f"{p}: no IPv{fam} agent address")
            if _version(local) != fam:
                raise ValueError(f"{p}: address family mismatch")
            if _is_multicast(local):
                raise ValueError(f"{p}: ingress to multicast is not supported")
            return self.peer_ns, 0, {
                "protocol": p.protocol,
                "dst": local,
                "port": p.port,
                "src": p.remote,
                "send_only": False,
            }
        raise ValueError(f"{p}: unknown direction")

    def probe_results(self, probes: Sequence[Probe], *, timeout: float = 0.6) -> list[ProbeResult]:
        """Run all probes concurrently (one process per (namespace, uid) group) and
        return one ProbeResult per probe, in order."""
        groups: dict[tuple[str, int], list[tuple[int, dict[str, Any]]]] = {}
        for i, p in enumerate(probes):
            ns, uid, req = self._to_request(p)
            groups.setdefault((ns, uid), []).append((i, req))
        procs = []
        for (ns, uid), items in groups.items():
            payload = json.dumps({"uid": uid, "timeout": timeout, "probes": [r for _, r in items]})
            with tempfile.TemporaryFile("w+") as f:  # stdin from a file: no pipe juggling
                f.write(payload)
                f.seek(0)
                proc = subprocess.Popen(
                    ["ip", "netns", "exec", ns, self.python, str(PROBE)],
                    stdin=f,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            procs.append((proc, items, ns, uid))
        out: list[ProbeResult | None] = [None] * len(probes)
        failures = []
        for proc, items, ns, uid in procs:
            try:
                stdout, stderr = proc.communicate(timeout=timeout + 15)
            except subprocess.TimeoutExpired:
                proc.kill()
                stdout, stderr = proc.communicate()
                failures.append(f"[{ns} uid={uid}] probe process hung: {stderr.strip()}")
                continue
            if proc.returncode != 0:
                failures.append(f"[{ns} uid={uid}] probe process failed ({proc.returncode}): {stderr.strip()}")
                continue
            results = json.loads(stdout)
            for (i, _), r in zip(items, results, strict=True):
                out[i] = ProbeResult(probes[i], r["ok"], r["outcome"], r["errno"], r["elapsed"])
        if failures:
            raise LabError("; ".join(failures))
        return [r for r in out if r is not None]

    def probe(self, probes: Sequence[Probe], *, timeout: float = 0.6) -> list[bool]:
        """True per probe when the flow got through."""
        return [r.ok for r in self.probe_results(probes, timeout=timeout)]


def _sum_counters(node: Any) -> int:
    """Sum the packets of every anonymous counter in a rule's JSON expression tree."""
    if isinstance(node, list):
        return sum(_sum_counters(x) for x in node)
    if isinstance(node, dict):
        total = 0
        for key, val in node.items():
            if key == "counter" and isinstance(val, dict) and "packets" in val:
                total += int(val["packets"])
            else:
                total += _sum_counters(val)
        return total
    return 0


def format_results(results: Sequence[ProbeResult]) -> str:
    """Human-readable table, handy in assertion messages."""
    return "\n".join(
        f"  {'PASS' if r.ok else 'drop'}  {r.probe}  [{r.outcome}"
        f"{' ' + r.errno if r.errno else ''} {r.elapsed:.3f}s]"
        for r in results
    )
