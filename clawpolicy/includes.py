"""Files, includes and definitions: floor 3, the first half of lowering (named apart from
`clawpolicy resolve`, which locks DNS answers: lockfile.py).

Reads policy files, follows `include`s (relative to the including file; cycles are errors),
collects `define`s with an explicit context (no globals), and resolves the words of a peer
list into typed atoms: networks, names, wildcards, `any`, each remembering where it was
written and, for catalog groups, the ports the catalog knows for the service.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from clawpolicy.catalog import CatalogGroup, load_catalog
from clawpolicy.errors import Diagnostics, Location, PolicyError, closest
from clawpolicy.ir import PortRange, Protocol
from clawpolicy.parse import parse_text
from clawpolicy.names import embedded_ipv4_problem, normalise_name
from clawpolicy.netspace import ipv4_network
from clawpolicy.sources import SourceError, read_policy
from clawpolicy.syntax import Define, Include, SourceFile, ToSyntax, Word

MAX_FILES = 10_000  # policy files per compile, includes counted
_PORT = re.compile(r"^(?:([0-9]+)(?:-([0-9]+))?|any)/(\w+)$")  # ASCII digits: \d admits ٤٤٣
PROTOCOLS = {p.value: p for p in Protocol}


@dataclass(frozen=True, slots=True)
class Atom:
    """One resolved peer: kind is any | net4 | net6 | name | wildcard."""

    kind: str
    value: str
    origin: str  # the word as written in the rule (e.g. "@llm")
    ports: tuple[PortRange, ...] | None = None  # catalog ports; None: the rule decides
    net: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None  # parsed once, for net4/net6


@dataclass
class Workspace:
    """Everything loaded for one compile: parsed files, their texts, defines in scope.

    `include_root`: the directory tree includes must stay in. None: each file named on the
    command line bounds its own includes by its policy repository (`policy_tree`)."""

    diagnostics: Diagnostics = field(default_factory=Diagnostics)
    files: dict[str, SourceFile] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    includes: dict[str, list[str]] = field(default_factory=dict)  # file -> files it included
    include_root: Path | None = None
    failed: set[str] = field(default_factory=set)  # files that could not be used (reported once)


def display_path(path: Path) -> str:
    """The path as artifacts and messages show it: relative to the working directory when
    inside it, so output does not depend on where a checkout lives."""
    resolved = Path(os.path.realpath(path))  # never raises, even on a symlink loop
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return resolved.as_posix()


@dataclass
class _Frame:
    """One file being loaded, with the includes it still has to follow."""

    name: str
    path: Path
    pending: Iterator[Include]


def load_file(ws: Workspace, path: Path, stack: tuple[str, ...] = (),
              at: Location | None = None) -> SourceFile | None:
    """Parse `path` and everything it includes, transitively. Returns None when it cannot be
    used. Iterative (an explicit stack, not recursion), so a chain of thousands of includes is
    no RecursionError; at most MAX_FILES files are loaded per workspace. Includes must resolve
    (symlinks followed first) inside the include root, and be regular policy files."""
    if _bad_name(ws, path, at):
        return None
    root = Path(os.path.realpath(ws.include_root)) if ws.include_root else policy_tree(path)
    if display_path(path) in ws.files:  # loaded already, with everything it includes
        return ws.files[display_path(path)]
    top = _read(ws, path, at)
    if top is None:
        return None
    frames = [_Frame(top.path, path, iter(top.includes))]
    on_stack = [*stack, top.path]
    on_stack_set = set(on_stack)
    while frames:
        frame = frames[-1]
        inc = next(frame.pending, None)
        if inc is None:
            frames.pop()
            on_stack_set.discard(on_stack.pop())
            continue
        target = Path(os.path.normpath(frame.path.parent / inc.path.text))
        if _bad_name(ws, target, inc.path.loc) or not _inside(ws, target, root, inc.path.loc):
            continue
        name = display_path(target)
        if name in on_stack_set:
            chain = " -> ".join((*on_stack[on_stack.index(name):], name))
            ws.diagnostics.error(f"include cycle: {chain}", inc.path.loc, "a file cannot include "
                                 "itself, directly or through other files", code="include-cycle")
            continue
        known = name in ws.files
        if not known and len(ws.files) >= MAX_FILES:
            ws.diagnostics.error(f"too many files: more than {MAX_FILES} policy files", inc.path.loc,
                                 f"a compile reads at most {MAX_FILES} files, includes counted",
                                 code="include")
            break
        included = ws.files[name] if known else _read(ws, target, inc.path.loc)
        if included is None:
            continue
        ws.includes[frame.name].append(included.path)
        if included.policies:
            ws.diagnostics.error(
                f"included file {name} defines policies", inc.path.loc,
                "includes share definitions; compile policy files by naming them", code="include")
        if not known:
            frames.append(_Frame(included.path, target, iter(included.includes)))
            on_stack.append(included.path)
            on_stack_set.add(included.path)
    return top


def policy_tree(path: Path) -> Path:
    """The tree a policy file's includes must stay in: its repository, i.e. the nearest
    enclosing git work tree (a directory holding `.git`, a directory or a worktree's file),
    else the file's own directory. Symlinks are resolved first, so a link cannot move it."""
    directory = Path(os.path.realpath(path.absolute().parent))
    for candidate in (directory, *directory.parents):
        if os.path.lexists(candidate / ".git"):
            return candidate
    return directory


def _bad_name(ws: Workspace, path: Path, at: Location | None) -> bool:
    if any(ord(c) < 32 or ord(c) == 127 for c in str(path)):  # NUL: every OS call raises
        ws.diagnostics.error(f"invalid file name {str(path)!r}", at,
                             "file names cannot contain control characters", code="io")
        return True
    return False


def _inside(ws: Workspace, target: Path, root: Path, at: Location) -> bool:
    """Whether an include stays in the include root, symlinks resolved before the check (a
    symlink loop resolves to itself here, and fails when opened)."""
    try:
        Path(os.path.realpath(target)).relative_to(root)
        return True
    except ValueError:
        ws.diagnostics.error(f"include outside the policy tree: {display_path(target)}", at,
                             f"includes must stay inside {display_path(root)}/ (the git work tree "
                             "of the file named on the command line, else its directory; "
                             "symlinks resolved); "
                             "`compile --include-root DIR` (and `ir`) widens it", code="include")
        return False


def _read(ws: Workspace, path: Path, at: Location | None) -> SourceFile | None:
    """One file, parsed, without following its includes; errors never quote a non-policy."""
    name = display_path(path)
    if name in ws.files:
        return ws.files[name]
    if name in ws.failed:
        return None
    try:
        text = read_policy(path)
    except FileNotFoundError:
        hint = (f"include paths are relative to the including file ({Path(at.file).parent.as_posix()}/)"
                if at is not None else None)
        ws.diagnostics.error(f"no such file: {name}", at, hint, code="io")
        ws.failed.add(name)
        return None
    except SourceError as exc:
        ws.diagnostics.error(f"cannot use {name}: it {exc.message}", at, exc.hint, code="io")
        ws.failed.add(name)
        return None
    ws.sources[name] = text
    try:
        tree = parse_text(text, name)
    except PolicyError as exc:
        ws.diagnostics.extend(exc.diagnostics)
        ws.failed.add(name)
        return None
    source: SourceFile = ToSyntax(name).transform(tree)
    ws.files[name] = source
    ws.includes[name] = []
    return source


def file_defines(ws: Workspace, source: SourceFile) -> list[Define]:
    """The defines a file sees: those of everything it includes, transitively (depth first, in
    include order, each file once), then its own. Iterative, like `load_file`."""
    out: list[Define] = []
    seen = {source.path}
    # The files `load_file` found, not paths recomputed here: those could differ (symlinks).
    frames: list[tuple[str, Iterator[str]]] = [(source.path, iter(ws.includes.get(source.path, ())))]
    while frames:
        name, pending = frames[-1]
        target = next(pending, None)
        if target is None:
            frames.pop()
            out.extend(ws.files[name].defines)
        elif target not in seen:
            seen.add(target)
            frames.append((target, iter(ws.includes.get(target, ()))))
    return out


class Resolver:
    """Resolves peer words against the defines in scope and the catalog.

    Each definition is expanded once (iteratively, memoised, duplicates dropped), so neither
    500 chained definitions (RecursionError) nor a = @b, @b; b = @c, @c; ... (2^n atoms) can
    exhaust the interpreter."""

    def __init__(self, defines: list[Define], diagnostics: Diagnostics) -> None:
        self.diag = diagnostics
        self.catalog = load_catalog()
        self.defines: dict[str, Define] = {}
        self._expanded: dict[str, tuple[Atom, ...]] = {}
        # Valid address literals by text: a literal in a definition is resolved once when the
        # definition is checked and again when a rule expands it, and lists repeat addresses.
        self._literals: dict[str, Atom] = {}
        for d in defines:
            name = d.name.text
            if name in self.defines and self.defines[name] is not d:
                first = self.defines[name].loc
                diagnostics.error(f"'{name}' is already defined at {first.file}:{first.line}",
                                  d.name.loc, "give one of them another name", code="redefined")
                continue
            if not re.fullmatch(r"[a-z0-9_][a-z0-9_-]*", name):
                diagnostics.error(f"invalid definition name '{name}'", d.name.loc,
                                  "use lower-case letters, digits, '-' and '_'", code="name")
            self.defines[name] = d

    def resolve(self, word: Word, stack: tuple[str, ...] = ()) -> list[Atom]:
        """The atoms of one peer word; `stack` is accepted for callers that validate a define
        (its name), and is otherwise unused: cycles are found while expanding."""
        text = word.text
        # Address literals first (no other peer spells like one): one dict probe for a
        # literal seen before, else the IPv4 fast path, before any other kind is tried.
        cached = self._literals.get(text)
        if cached is not None:
            return [cached]
        if text[:1].isdigit():
            fast = _fast_ipv4(text)
            if fast is not None:
                literal = self._literals[text] = Atom("net4", text, text, None, fast)
                return [literal]
        if text.startswith("@"):
            return self._ref(word)
        if text == "any":
            return [Atom("any", "any", text)]
        group = self.catalog.get(text.lower())
        if group is not None:
            return _group_atoms(group, text)
        atom = parse_literal(word, self.diag, suggestions=self._suggestions)
        if atom is None:
            return []
        if atom.kind in ("net4", "net6"):  # depends on the text alone; errors are never cached
            self._literals[text] = atom
        return [atom]

    def _suggestions(self) -> list[str]:
        return [*self.catalog, *(f"@{d}" for d in self.defines)]

    def _unknown(self, word: Word) -> None:
        name = word.text[1:]
        guess = closest(name, self.defines)
        hint = f"did you mean @{guess}?" if guess else "define it first: define NAME = ..."
        if guess is None and name in self.catalog:
            hint = f"'{name}' is a catalog group: write it without '@'"
        self.diag.error(f"unknown definition '@{name}'", word.loc, hint, code="unknown-name")

    def _ref(self, word: Word) -> list[Atom]:
        if word.text[1:] not in self.defines:
            self._unknown(word)
            return []
        return [Atom(a.kind, a.value, word.text, a.ports, a.net) for a in self._expand(word.text[1:])]

    def _expand(self, name: str) -> tuple[Atom, ...]:
        """The atoms of a definition, every reference followed, depth first."""
        if name in self._expanded:
            return self._expanded[name]
        frames: list[tuple[str, Iterator[Word], list[Atom]]] = [
            (name, iter(self.defines[name].items), [])]
        path = [name]
        while frames:
            current, pending, acc = frames[-1]
            item = next(pending, None)
            if item is None:
                frames.pop()
                path.pop()
                done = self._expanded[current] = tuple(dict.fromkeys(acc))
                if frames:
                    frames[-1][2].extend(Atom(a.kind, a.value, f"@{current}", a.ports, a.net)
                                         for a in done)
                continue
            if not item.text.startswith("@"):
                acc.extend(self.resolve(item))
                continue
            ref = item.text[1:]
            if ref not in self.defines:
                self._unknown(item)
            elif ref in path:
                self.diag.error(f"definition cycle: {' -> '.join((*path[path.index(ref):], ref))}",
                                item.loc, "a definition cannot refer to itself, directly or "
                                "through others", code="define-cycle")
            elif ref in self._expanded:
                acc.extend(Atom(a.kind, a.value, item.text, a.ports, a.net)
                           for a in self._expanded[ref])
            else:
                frames.append((ref, iter(self.defines[ref].items), []))
                path.append(ref)
        return self._expanded[name]


def _group_atoms(group: CatalogGroup, origin: str) -> list[Atom]:
    ports = tuple(parse_port_text(p) for p in group.ports)
    atoms = [Atom("name", n, origin, ports) for n in group.fqdns]
    atoms += [Atom("wildcard", w, origin, ports) for w in group.wildcards]
    for addr in group.addresses:
        net = ipaddress.ip_network(addr)
        atoms.append(Atom(f"net{net.version}", str(net), origin, ports, net))
    return atoms


# A canonical IPv4 address or CIDR (no leading zeros): the common case, parsed in C by
# inet_pton (strict dotted-quad decimal: it refuses "1.2.3", "01.2.3.4" and hex). Anything else
# that looks like an address goes through `ipaddress`, which gives the error messages; the fast
# path accepts only text `ipaddress` accepts, with the same network.
def _fast_ipv4(text: str) -> ipaddress.IPv4Network | None:
    """The network of a canonical IPv4 literal without host bits, else None (the slow path)."""
    addr, slash, plen = text.partition("/")
    if not text.isascii():
        return None
    try:
        value = int.from_bytes(socket.inet_pton(socket.AF_INET, addr), "big")
    except OSError:
        return None
    if not slash:
        return ipv4_network(value, 32)
    if not plen.isdigit() or (len(plen) > 1 and plen[0] == "0") or int(plen) > 32:
        return None  # "/08", "/33", "/": leave to ipaddress
    prefix = int(plen)
    if value & ((1 << (32 - prefix)) - 1):
        return None  # host bits set: the slow path says so, with a fix
    return ipv4_network(value, prefix)


def parse_literal(word: Word, diag: Diagnostics,
                  suggestions: Iterable[str] | Callable[[], Iterable[str]] | None = None) -> Atom | None:
    """An address, CIDR, FQDN or *.wildcard as written in a policy. `suggestions` (names for a
    "did you mean" hint) may be a callable: it is only needed for an unknown peer."""
    text = word.text
    fast = _fast_ipv4(text) if text[:1].isdigit() else None
    if fast is not None:
        return Atom("net4", text, text, None, fast)
    if _looks_like_address(text):
        if "%" in text:  # ipaddress accepts fe80::1%eth0; no firewall rule can hold a zone
            diag.error(f"invalid address '{text}': interface zones are not supported", word.loc,
                       f"drop the zone: {re.sub(r'%[^/]*', '', text)}", code="address")
            return None
        try:
            net = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            try:
                fix = ipaddress.ip_network(text, strict=False)
            except ValueError:
                diag.error(f"invalid address '{text}'", word.loc, str(exc), code="address")
                return None
            diag.error(f"{text} has host bits set", word.loc,
                       f"did you mean {fix}? (or {text.split('/')[0]} for the single host)",
                       code="cidr")
            return None
        problem = embedded_ipv4_problem(net)
        if problem is not None:
            diag.error(f"invalid address '{text}': {problem[0]}", word.loc, problem[1], code="address")
            return None
        return Atom(f"net{net.version}", text, text, None, net)
    if text.startswith("*."):
        name = normalise_name(text[2:])
        if name is None:
            diag.error(f"invalid wildcard '{text}'", word.loc,
                       "a wildcard is '*.' followed by a domain name, e.g. *.slack.com", code="name")
            return None
        return Atom("wildcard", name, text)
    if "*" in text:
        diag.error(f"invalid wildcard '{text}'", word.loc,
                   "only a leading '*.' is supported; use 'any' for every address", code="name")
        return None
    name = normalise_name(text)
    if name is None or "." not in name:
        options = suggestions() if callable(suggestions) else suggestions
        guess = closest(text, list(options or []))
        hint = f"did you mean {guess}?" if guess else (
            "peers are addresses, CIDRs, domain names, *.wildcards, @definitions, catalog "
            "groups (see `clawpolicy catalog`) or 'any'")
        diag.error(f"unknown peer '{text}'", word.loc, hint, code="unknown-name")
        return None
    return Atom("name", name, text)


def _looks_like_address(text: str) -> bool:
    return ":" in text or bool(re.fullmatch(r"[0-9./]+", text))


def parse_port_text(text: str) -> PortRange:
    """A port item known to be valid (catalog data); see `parse_port` for user input."""
    diag = Diagnostics()
    port = parse_port(Word(text, Location("<catalog>")), diag)
    if port is None:
        raise ValueError(f"invalid catalog port {text!r}")
    return port


def parse_port(word: Word, diag: Diagnostics) -> PortRange | None:
    """`443/tcp`, `8000-8100/tcp`, `any/udp`, `tcp`, `udp` or `icmp`."""
    text = word.text.lower()
    if text in PROTOCOLS:
        return PortRange(protocol=PROTOCOLS[text])
    m = _PORT.match(text)
    if not m:
        hint = "write ports as 443/tcp, 53/udp, 8000-8100/tcp, any/udp or icmp"
        if text.isdigit():
            hint = f"name the protocol: {text}/tcp or {text}/udp"
        diag.error(f"invalid port '{word.text}'", word.loc, hint, code="port")
        return None
    lo_text, hi_text, proto_text = m.groups()
    proto = PROTOCOLS.get(proto_text)
    if proto is Protocol.ICMP and lo_text:
        diag.error(f"icmp has no ports: '{word.text}'", word.loc, "write icmp alone", code="port")
        return None
    if proto is None:
        guess = closest(proto_text, ["tcp", "udp"])
        diag.error(f"unknown protocol '{proto_text}' in '{word.text}'", word.loc,
                   f"did you mean {guess}?" if guess else "ports are tcp or udp; icmp has none",
                   code="port")
        return None
    if lo_text is None:
        return PortRange(protocol=proto)
    lo = int(lo_text)
    hi = int(hi_text) if hi_text else lo
    if not (1 <= lo <= 65535 and 1 <= hi <= 65535):
        diag.error(f"port out of range in '{word.text}'", word.loc, "ports are 1-65535", code="port")
        return None
    if lo > hi:
        diag.error(f"empty port range '{word.text}'", word.loc, f"did you mean {hi}-{lo}/{proto_text}?",
                   code="port")
        return None
    return PortRange(protocol=proto, first=lo, last=hi)
