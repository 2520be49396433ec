"""Load a policy into the running kernel with a way back: floor 3, the only code outside the
tests that changes a live ruleset (`clawpolicy apply`, `clawpolicy status`).

The pattern is `iptables-apply`'s and `netplan try`'s: compile in memory, validate the ruleset
(libnftables' dry run, as `compile --validate`) and check it against the kernel it will be
loaded into (`nft -c`, a transaction the kernel checks and aborts), remember what is
loaded now, load atomically (`nft -f`: one transaction), then wait for the operator to
confirm; without a confirmation by the deadline (or on SIGINT/SIGTERM) the previous table is
put back in one transaction. A lost SSH connection (SIGHUP) does not stop the wait: the
deadline still rolls back, and a new session can still confirm.

What is remembered is the text of `nft list table inet clawpolicy_<name>` (nft's listing is
meant to be read back by `nft -f`; it keeps comments, which nft 1.0.6's JSON drops, and set
elements with their timeouts) and its JSON for comparison. Rolling back deletes the table and
re-creates the listing in one transaction; with no previous table it deletes the table.

A table comment cannot carry the source hash: the kernel keeps a table's first comment
(`add table` with another is accepted and ignored; measured), and the ruleset never deletes
its table (DNS-filled sets live in it). So apply adds a chain `clawpolicy_applied`, never
jumped to, whose one rule's comment says `policy=… mode=… sha256=…`; `status` reads it back.

`Nft` runs every command in the current network namespace or, with `netns`, under `ip netns
exec` (the tests use namespaces only; nothing here is specific to them).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clawpolicy.evaluate import Flow, Verdict, evaluate
from clawpolicy.ir import Action, Direction, Mode, Policy, Protocol
from clawpolicy.operate.resolver import Installed, ResolverError, ResolverPlan
from clawpolicy.operate.resolver import install as install_resolver
from clawpolicy.operate.resolver import undo as undo_resolver
from clawpolicy.processes import pid_alive
from clawpolicy.validate import validate_nft

STAMP_CHAIN = "clawpolicy_applied"
STAMP_RE = re.compile(r"^policy=(?P<policy>\S+) mode=(?P<mode>\S+) sha256=(?P<sha>[0-9a-f]+)$")
DEFAULT_STATE_DIR = Path("/run/clawpolicy")
DEFAULT_WINDOW = 60
SSH_PORT = 22


class ApplyError(RuntimeError):
    """Apply stopped; the message says what the host has now (always what it had before)."""


# ------------------------------------------------------------------------------ nft


@dataclass(frozen=True)
class Nft:
    netns: str | None = None  # a named network namespace (ip netns), or the current one

    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns] if self.netns else []

    def run(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.prefix(), "nft", *args], input=input, capture_output=True,
                              text=True, check=False)

    def load(self, text: str, *, check: bool = False) -> None:
        r = self.run(*(["-c"] if check else []), "-f", "-", input=text)
        if r.returncode != 0:
            raise ApplyError(f"nft {'-c ' if check else ''}-f failed: {r.stderr.strip()}")

    def table_text(self, table: str) -> str | None:
        r = self.run("list", "table", "inet", table)
        return r.stdout if r.returncode == 0 else None

    def table_json(self, table: str) -> dict[str, Any] | None:
        r = self.run("-j", "list", "table", "inet", table)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def tables(self) -> list[str]:
        r = self.run("-j", "list", "tables")
        if r.returncode != 0:
            raise ApplyError(f"nft list tables failed: {r.stderr.strip()}")
        return sorted(o["table"]["name"] for o in json.loads(r.stdout).get("nftables", [])
                      if "table" in o and o["table"].get("family") == "inet"
                      and o["table"]["name"].startswith("clawpolicy_"))

    def proc_net(self, name: str) -> str:
        """/proc/net/<name> as this namespace sees it."""
        if not self.netns:
            return Path("/proc/net", name).read_text()
        r = subprocess.run([*self.prefix(), "cat", f"/proc/net/{name}"], capture_output=True,
                           text=True, check=False)
        return r.stdout if r.returncode == 0 else ""


def comparable(doc: dict[str, Any] | None) -> list[Any] | None:
    """A table's JSON without what a reload renumbers (handles) or nft's version banner:
    two listings compare equal when the rules, sets, elements and counters are the same."""
    if doc is None:
        return None

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "handle"}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node
    return [strip(o) for o in doc.get("nftables", []) if "metainfo" not in o]


# ------------------------------------------------------------------------------ plan


@dataclass(frozen=True)
class Plan:
    policy: Policy
    table: str
    ruleset: str  # the compiled ruleset plus the stamp chain
    sha256: str  # of the policy's source files (and includes), sorted by path

    @property
    def stamp(self) -> str:
        return f"policy={self.policy.name} mode={self.policy.mode.value} sha256={self.sha256[:16]}"


def source_hash(sources: Mapping[str, str]) -> str:
    digest = hashlib.sha256()
    for path in sorted(sources):
        digest.update(f"{len(path)}:{path}\n{len(sources[path])}:".encode())
        digest.update(sources[path].encode("utf-8"))
    return digest.hexdigest()


def stamped(ruleset: str, table: str, stamp: str) -> str:
    """The ruleset with the stamp chain (declared, deleted, defined: a reload replaces it)."""
    return (f"{ruleset.rstrip()}\n\n# Added by clawpolicy apply: what is loaded, for `clawpolicy status`.\n"
            f"table inet {table} {{\n\tchain {STAMP_CHAIN} {{ }}\n}}\n"
            f"delete chain inet {table} {STAMP_CHAIN}\n"
            f"table inet {table} {{\n\tchain {STAMP_CHAIN} {{\n"
            f"\t\tcomment \"loaded by clawpolicy apply; never jumped to\"\n"
            f"\t\tcounter comment \"{stamp}\"\n\t}}\n}}\n")


# ------------------------------------------------------------------------------ sessions


@dataclass(frozen=True)
class Session:
    client: str
    server_port: int
    how: str  # where it was found: SSH_CONNECTION, or /proc/net/tcp

    def flow(self) -> Flow:
        return Flow(Direction.INGRESS, self.client, Protocol.TCP, self.server_port)


def sessions(nft: Nft, env: Mapping[str, str], ports: Sequence[int] = (SSH_PORT,)) -> list[Session]:
    """The SSH session this runs in (SSH_CONNECTION: client, client port, server, server
    port) and every established TCP connection to a management port in the namespace."""
    from clawpolicy.adopt.procnet import parse_table

    found: dict[tuple[str, int], Session] = {}
    parts = env.get("SSH_CONNECTION", "").split()
    wanted = set(ports)
    if len(parts) == 4 and parts[3].isdigit():
        found[(parts[0], int(parts[3]))] = Session(parts[0], int(parts[3]), "SSH_CONNECTION")
        wanted.add(int(parts[3]))
    for table in ("tcp", "tcp6"):
        for sock in parse_table(nft.proc_net(table), "tcp", nft.netns or "current"):
            if sock.state == "ESTAB" and sock.local_port in wanted:
                found.setdefault((sock.remote, sock.local_port),
                                 Session(sock.remote, sock.local_port, f"/proc/net/{table}"))
    return [found[k] for k in sorted(found)]


def cut_sessions(policy: Policy, found: Sequence[Session]) -> list[tuple[Session, Verdict]]:
    """Sessions whose next connection the policy would refuse (enforced host policies only:
    a user policy's ingress covers the agent's ports alone, shadow refuses nothing)."""
    if policy.scope.kind != "host" or policy.mode is not Mode.ENFORCE:
        return []
    out = []
    for s in found:
        verdict = evaluate(policy, s.flow())
        if verdict.action is Action.DENY:
            out.append((s, verdict))
    return out


# ------------------------------------------------------------------------------ state


@dataclass
class State:
    """Files under the state directory: `<table>.pending` while a load awaits confirmation
    (its nonce, deadline and pid), `<table>.confirm` written by `apply --confirm`, and `log`."""

    root: Path
    echo: Callable[[str], None] = field(default=lambda line: None)

    def log(self, message: str) -> None:
        line = f"{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')} {message}"
        self.echo(line)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        with (self.root / "log").open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def pending(self, table: str) -> Path:
        return self.root / f"{table}.pending"

    def confirm_file(self, table: str) -> Path:
        return self.root / f"{table}.confirm"

    def begin(self, table: str, deadline: float) -> str:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.pending(table)
        if path.exists():
            other = json.loads(path.read_text() or "{}")
            if pid_alive(int(other.get("pid", 0))):
                raise ApplyError(f"another apply of {table} (pid {other['pid']}) awaits confirmation")
        nonce = secrets.token_hex(8)
        self.confirm_file(table).unlink(missing_ok=True)
        path.write_text(json.dumps({"nonce": nonce, "deadline": deadline, "pid": os.getpid()}))
        return nonce

    def confirmed(self, table: str, nonce: str) -> bool:
        try:
            return self.confirm_file(table).read_text().strip() == nonce
        except FileNotFoundError:
            return False

    def end(self, table: str) -> None:
        self.pending(table).unlink(missing_ok=True)
        self.confirm_file(table).unlink(missing_ok=True)

    def confirm(self, table: str | None = None) -> list[str]:
        """Confirm the pending loads (all, or one table's); returns the tables confirmed."""
        done = []
        for path in sorted(self.root.glob("*.pending")) if self.root.is_dir() else []:
            name = path.name.removesuffix(".pending")
            if table not in (None, name):
                continue
            info = json.loads(path.read_text() or "{}")
            if pid_alive(int(info.get("pid", 0))):
                self.confirm_file(name).write_text(str(info["nonce"]))
                done.append(name)
        return done


# ------------------------------------------------------------------------------ apply


@dataclass(frozen=True)
class Snapshot:
    table: str
    text: str | None  # `nft list table` output; None: no such table
    doc: list[Any] | None  # comparable(JSON listing)


def snapshot(nft: Nft, table: str) -> Snapshot:
    text = nft.table_text(table)
    return Snapshot(table, text, comparable(nft.table_json(table)) if text is not None else None)


def restore(nft: Nft, snap: Snapshot) -> None:
    """Put `snap` back in one transaction (`add` first, so the delete works when the failed
    load left no table), then check the listing equals what was saved."""
    t = snap.table
    nft.load(f"add table inet {t}\ndelete table inet {t}\n" + (snap.text or ""))
    now = comparable(nft.table_json(t)) if nft.table_text(t) is not None else None
    if now != snap.doc:
        raise ApplyError(f"rolled back, but table inet {t} differs from the saved one")


class _Stop(Exception):
    """SIGINT or SIGTERM during the confirmation window: roll back now."""


@contextlib.contextmanager
def _signals() -> Iterator[None]:
    """SIGINT/SIGTERM roll back at once; SIGHUP (the SSH connection went away) is ignored, so
    the deadline still rolls back and another session can still confirm."""
    def stop(signum: int, frame: object) -> None:
        raise _Stop(signal.Signals(signum).name)
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


Waiter = Callable[[float, Callable[[], bool]], bool]


def poll_until(deadline: float, confirmed: Callable[[], bool]) -> bool:
    """Wait for `confirmed()` until `deadline` (time.monotonic())."""
    while time.monotonic() < deadline:
        if confirmed():
            return True
        time.sleep(0.1)
    return confirmed()


@dataclass(frozen=True)
class Outcome:
    kept: bool  # False: rolled back
    previous: Snapshot
    message: str


def apply(plan: Plan, nft: Nft, state: State, *, window: int, wait: Waiter = poll_until,
          loaded: Callable[[], None] = lambda: None, resolver: ResolverPlan | None = None,
          start: bool = False) -> Outcome:
    """Check, remember, load, install the resolver (after the ruleset: it creates the sets
    the resolver fills), then keep (confirmed within `window` seconds; 0: at once) or roll
    back: the resolver's files first, then the table. Any failure after the load rolls back;
    a failed load changed nothing (one transaction). `loaded` runs right after the load and
    the resolver (the CLI prints how to confirm)."""
    table = plan.table
    state.log(f"apply {plan.stamp} to table inet {table}{' in netns ' + nft.netns if nft.netns else ''}")
    for check in validate_nft(plan.ruleset):  # libnftables (dry run), as compile --validate
        if not check.ok:
            state.log(f"{check.tool} rejects the ruleset, nothing changed: {check.message}")
            raise ApplyError(f"{check.tool} rejects the ruleset: {check.message}")
    nft.load(plan.ruleset, check=True)
    state.log("libnftables and nft -c: the ruleset is valid and the kernel accepts it")
    previous = snapshot(nft, table)
    state.log("saved the loaded table" if previous.text is not None else
              f"no table inet {table} loaded now: a rollback deletes it")
    deadline = time.monotonic() + window
    nonce = state.begin(table, time.time() + window)
    installed: Installed | None = None
    try:
        with _signals():
            try:
                try:
                    nft.load(plan.ruleset)
                except ApplyError as exc:  # one transaction: nothing changed
                    state.log(f"load failed, nothing changed: {exc}")
                    raise
                stamp = read_stamp(nft.table_json(table))
                if stamp != plan.stamp:
                    raise _Broken(f"loaded, but the table says {stamp!r}, not {plan.stamp!r}")
                state.log(f"loaded ({plan.stamp})")
                if resolver is not None:
                    installed = install_resolver(resolver, state.log, start=start,
                                                 backup_dir=state.root / f"{table}.resolver")
                if window <= 0:
                    state.log("kept (no confirmation window)")
                    return Outcome(True, previous, "loaded")
                loaded()
                state.log(f"waiting {window} s for confirmation (clawpolicy apply --confirm)")
                if wait(deadline, lambda: state.confirmed(table, nonce)):
                    state.log("confirmed: kept")
                    return Outcome(True, previous, "confirmed")
                reason = f"not confirmed within {window} s"
            except ResolverError as exc:  # its files are back already
                reason = f"the resolver failed ({exc})"
            except (_Broken, _Stop, OSError) as exc:  # a stop during the load rolls back too
                reason = f"stopped ({exc})"
            for sig in (signal.SIGINT, signal.SIGTERM):  # the rollback is not interrupted
                signal.signal(sig, signal.SIG_IGN)
            state.log(f"{reason}: rolling back")
            if installed is not None:  # the reverse order: the resolver, then the sets
                undo_resolver(installed, state.log)
            restore(nft, previous)
            state.log("rolled back to the previous table" if previous.text is not None
                      else f"rolled back: table inet {table} deleted")
            return Outcome(False, previous, reason)
    finally:
        state.end(table)


class _Broken(ApplyError):
    """The load went through but the table is not what was loaded."""


def read_stamp(doc: dict[str, Any] | None) -> str | None:
    for obj in (doc or {}).get("nftables", []):
        rule = obj.get("rule")
        if rule and rule.get("chain") == STAMP_CHAIN and STAMP_RE.match(rule.get("comment", "")):
            return str(rule["comment"])
    return None
