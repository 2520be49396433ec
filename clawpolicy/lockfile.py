"""Names to a lock file of addresses: floor 2, the library behind `clawpolicy resolve`.

Firewalls see addresses; policies name hosts. `resolve` asks DNS (dnspython; A and AAAA) for
every exact name the egress rules of a policy file use and records the answers in
`<file stem>.lock.json` beside the file. `compile --lock` then puts those addresses into the
nftables FQDN sets without any DNS at build time: reproducible, and usable by targets that
only take addresses.

The format (version 1), written deterministically (sorted keys, addresses in numeric order,
two-space indent, final newline)::

    {"version": 1,
     "names": {"api.openai.com": {"ipv4": ["104.18.6.192"], "ipv6": ["2606:4700::6812:6c0"],
                                  "observed": {"resolver": "10.0.0.53", "time": "2026-11-23T19:41:19Z",
                                               "ttl": {"A": 300, "AAAA": 300}}}},
     "wildcards": ["*.slack.com"]}

Compile reads `ipv4` and `ipv6` only. `observed` (who answered, when, with which TTL) is
volatile, so it is rewritten only when the name's addresses change: refreshing a lock shows up
in review as a diff of added and removed addresses, nothing else. Wildcards cannot be locked
(a wildcard has no addresses of its own); they are listed so a reviewer sees what the lock
does not cover, and they hold at run time through the dnsmasq target. Literal addresses (a
catalog's fallback address, CIDR rules) are never looked up: they are in the policy already.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clawpolicy.ir import Direction, Policy
from clawpolicy.names import embedded_ipv4_problem, normalise_name
from clawpolicy.sources import SourceError, read_capped

LOCK_VERSION = 1
LOCK_SUFFIX = ".lock.json"
WILDCARD_NOTE = ("wildcards cannot be locked: a wildcard names no addresses of its own. The "
                 "nftables sets learn them at run time from the dnsmasq target's resolver")


class LockError(Exception):
    """The lock file cannot be read, or DNS could not answer for a name."""


class _Model(BaseModel):
    # hide_input_in_errors: a lock path can point anywhere; never echo what the file holds
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class Observed(_Model):
    """How a name's addresses were learnt: volatile, never read by compile."""

    resolver: str
    time: str  # UTC, ISO 8601 to the second
    ttl: dict[str, int] = Field(default_factory=dict)  # record type -> TTL of the answer


class LockedName(_Model):
    ipv4: tuple[str, ...] = ()
    ipv6: tuple[str, ...] = ()
    observed: Observed

    @property
    def addresses(self) -> tuple[str, ...]:
        return (*self.ipv4, *self.ipv6)


class Lock(_Model):
    version: int = LOCK_VERSION
    names: dict[str, LockedName] = Field(default_factory=dict)
    wildcards: tuple[str, ...] = ()
    # Names the operator accepted with no address (`resolve --allow-empty`): written only when
    # there are some, so every other lock file reads as before.
    accepted_empty: tuple[str, ...] = ()

    def addresses(self) -> dict[str, tuple[str, ...]]:
        """What compile reads: name -> locked addresses (IPv4 first, each family sorted)."""
        return {name: entry.addresses for name, entry in self.names.items()}

    def unaccepted_empty(self) -> list[str]:
        """Names locked with no address that nobody accepted: a lock that admits nothing for
        a name the policy allows is a broken rule (NXDOMAIN, a typo, a retired host), so
        `resolve`, `resolve --check` and `compile --lock` refuse it."""
        return sorted(n for n, e in self.names.items() if not e.addresses and n not in self.accepted_empty)


# ------------------------------------------------------------------------------ DNS


@dataclass(frozen=True)
class Answer:
    """One name's addresses as a resolver gave them."""

    ipv4: tuple[str, ...] = ()
    ipv6: tuple[str, ...] = ()
    ttl: Mapping[str, int] = field(default_factory=dict)


class Resolver(Protocol):
    """Anything that answers A and AAAA for a name (tests pass a stub)."""

    description: str  # the resolver's address, or "system"

    def lookup(self, name: str) -> Answer: ...


class DnsResolver:
    """dnspython, against one nameserver or the system's (/etc/resolv.conf)."""

    def __init__(self, nameserver: str | None = None, timeout: float = 5.0) -> None:
        import dns.resolver

        self._resolver = dns.resolver.Resolver(configure=nameserver is None)
        if nameserver is not None:
            self._resolver.nameservers = [nameserver]
        self._resolver.lifetime = timeout
        self.description = nameserver or "system (" + ", ".join(
            str(n) for n in self._resolver.nameservers) + ")"

    def lookup(self, name: str) -> Answer:
        import dns.exception
        import dns.resolver

        found: dict[str, tuple[str, ...]] = {}
        ttl: dict[str, int] = {}
        for rdtype in ("A", "AAAA"):
            try:
                answer = self._resolver.resolve(name + ".", rdtype, search=False,
                                                raise_on_no_answer=False)
            except dns.resolver.NXDOMAIN:
                found[rdtype] = ()
                continue
            except dns.exception.DNSException as exc:
                raise LockError(f"{name}: {rdtype} lookup via {self.description} failed: {exc}") from exc
            rrset = answer.rrset
            found[rdtype] = tuple(r.to_text() for r in rrset) if rrset is not None else ()
            if rrset is not None:
                ttl[rdtype] = answer.chaining_result.minimum_ttl
        return Answer(sort_addresses(found["A"]), sort_addresses(found["AAAA"]), ttl)


def sort_addresses(addresses: Iterable[str]) -> tuple[str, ...]:
    """Canonical text, numeric order, no duplicates."""
    parsed = {ipaddress.ip_address(a) for a in addresses}
    return tuple(str(a) for a in sorted(parsed, key=lambda a: (a.version, int(a))))


# ------------------------------------------------------------------------ the file


def lock_path(policy_file: Path) -> Path:
    """`examples/x.claw` -> `examples/x.lock.json`."""
    return policy_file.with_name(policy_file.stem + LOCK_SUFFIX)


def names_of(policies: Iterable[Policy]) -> tuple[list[str], list[str]]:
    """The exact names and the wildcards (as `*.suffix`) of the policies' egress rules."""
    names: set[str] = set()
    wildcards: set[str] = set()
    for policy in policies:
        for rule in policy.rules:
            if rule.direction is Direction.EGRESS:
                names.update(rule.peers.names)
                wildcards.update(f"*.{w}" for w in rule.peers.wildcards)
    return sorted(names), sorted(wildcards)


def dumps(lock: Lock) -> str:
    data = lock.model_dump(mode="json")
    if not data["accepted_empty"]:
        del data["accepted_empty"]
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def load(path: Path) -> Lock:
    """Read and check a lock file: a regular file of at most 8 MiB (`sources.read_capped`),
    names in their IDNA 2008 form, addresses canonical, sorted, of the right family and with
    no IPv4 embedded in IPv6. Errors never quote the file's content."""
    try:
        data = json.loads(read_capped(path).decode("utf-8"))
    except FileNotFoundError:
        raise LockError(f"{path}: no lock file; run `clawpolicy resolve` to create it") from None
    except SourceError as exc:
        raise LockError(f"{path}: cannot read the lock file: it {exc.message}") from None
    except UnicodeDecodeError:
        raise LockError(f"{path}: cannot read the lock file: it is not UTF-8 text") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise LockError(f"{path}: cannot read the lock file: not JSON ({_json_where(exc)})") from None
    if isinstance(data, dict) and data.get("version") != LOCK_VERSION:
        raise LockError(f"{path}: lock file version {data.get('version')!r}; this clawpolicy "
                        f"reads version {LOCK_VERSION}")
    try:
        lock = Lock.model_validate(data)
        for entry in lock.names.values():
            if sort_addresses(entry.ipv4) != entry.ipv4 or sort_addresses(entry.ipv6) != entry.ipv6:
                raise ValueError("addresses must be canonical, sorted and of the right family")
            if any(ipaddress.ip_address(a).version != 4 for a in entry.ipv4) or any(
                    ipaddress.ip_address(a).version != 6 for a in entry.ipv6):
                raise ValueError("an address is in the wrong family")
            embedded = [a for a in entry.ipv6 if embedded_ipv4_problem(ipaddress.ip_network(a))]
            if embedded:
                raise ValueError(f"{embedded[0]} embeds an IPv4 address (write it under ipv4)")
        for name in lock.names:
            if normalise_name(name) != name:
                raise ValueError(f"{name!r} is not a host name in its IDNA 2008 (A-label) form")
    except (ValidationError, ValueError) as exc:
        raise LockError(f"{path}: invalid lock file: {exc}") from exc
    return lock


def _json_where(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"line {exc.lineno} column {exc.colno}"
    return "nested too deeply"


# ------------------------------------------------------------------- resolve, check


@dataclass(frozen=True)
class Change:
    name: str
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    kind: str = "changed"  # new | gone | changed

    def lines(self) -> list[str]:
        if self.kind == "gone":
            return [f"- {self.name} (no longer in the policy)"]
        head = [f"+ {self.name} (new)"] if self.kind == "new" else []
        return head + [f"+ {self.name} {a}" for a in self.added] + [
            f"- {self.name} {a}" for a in self.removed]


@dataclass
class Resolution:
    lock: Lock
    changes: list[Change]
    empty: list[str]  # names locked with no address that nobody accepted: an error
    accepted: list[str] = field(default_factory=list)  # ... that the operator accepted

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def resolve(policies: Sequence[Policy], resolver: Resolver, old: Lock | None, *,
            update: bool = False, now: Callable[[], str] = _utc_now,
            allow_empty: bool = False) -> Resolution:
    """The lock for these policies. Names the old lock has keep their record unless `update`
    asks DNS again; then a name keeps its record when DNS gives the same addresses, so only
    real changes reach the file. A name with no address is an error (`Resolution.empty`)
    unless `allow_empty`, or the old lock accepted it already."""
    names, wildcards = names_of(policies)
    previous = old.names if old is not None else {}
    entries: dict[str, LockedName] = {}
    changes: list[Change] = []
    for name in names:
        kept = previous.get(name)
        if kept is not None and not update:
            entries[name] = kept
            continue
        answer = _plain_ipv6(resolver.lookup(name))
        fresh = LockedName(ipv4=answer.ipv4, ipv6=answer.ipv6, observed=Observed(
            resolver=resolver.description, time=now(), ttl=dict(sorted(answer.ttl.items()))))
        if kept is not None and kept.addresses == fresh.addresses:
            entries[name] = kept
            continue
        entries[name] = fresh
        before = set(kept.addresses) if kept is not None else set()
        changes.append(Change(name, tuple(a for a in fresh.addresses if a not in before),
                              tuple(a for a in (kept.addresses if kept else ()) if a not in
                                    set(fresh.addresses)), "changed" if kept else "new"))
    changes.extend(Change(n, kind="gone") for n in sorted(set(previous) - set(names)))
    before = set(old.accepted_empty) if old is not None else set()
    empty = sorted(n for n, e in entries.items() if not e.addresses)
    accepted = [n for n in empty if allow_empty or n in before]
    lock = Lock(names=entries, wildcards=tuple(wildcards), accepted_empty=tuple(accepted))
    return Resolution(lock, changes, [n for n in empty if n not in accepted], accepted)


def _plain_ipv6(answer: Answer) -> Answer:
    """An AAAA answer holding an IPv4-mapped or -compatible address would go into the IPv6
    sets while the kernel sends IPv4 (names.embedded_ipv4_problem): such answers are dropped,
    whichever resolver gave them."""
    kept = tuple(a for a in answer.ipv6 if embedded_ipv4_problem(ipaddress.ip_network(a)) is None)
    return answer if kept == answer.ipv6 else Answer(answer.ipv4, kept, answer.ttl)


def check(policies: Sequence[Policy], resolver: Resolver, lock: Lock) -> list[Change]:
    """How today's DNS differs from the lock (empty: it matches). Nothing is written."""
    return resolve(policies, resolver, lock, update=True, now=lambda: "").changes
