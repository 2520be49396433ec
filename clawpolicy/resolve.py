"""Files, includes and names: floor 3, the first half of lowering.

Reads policy files, follows `include`s (relative to the including file; cycles are errors),
collects `define`s with an explicit context (no globals), and resolves the words of a peer
list into typed atoms: networks, names, wildcards, `any`, each remembering where it was
written and, for catalog groups, the ports the catalog knows for the service.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from clawpolicy.catalog import CatalogGroup, load_catalog
from clawpolicy.errors import Diagnostics, Location, PolicyError, closest
from clawpolicy.ir import PortRange, Protocol
from clawpolicy.parse import parse_text
from clawpolicy.syntax import Define, SourceFile, ToSyntax, Word

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_PORT = re.compile(r"^(?:([0-9]+)(?:-([0-9]+))?|any)/(\w+)$")  # ASCII digits: \d admits ٤٤٣
PROTOCOLS = {p.value: p for p in Protocol}


@dataclass(frozen=True)
class Atom:
    """One resolved peer: kind is any | net4 | net6 | name | wildcard."""

    kind: str
    value: str
    origin: str  # the word as written in the rule (e.g. "@llm")
    ports: tuple[PortRange, ...] | None = None  # catalog ports; None: the rule decides
    net: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None  # parsed once, for net4/net6


@dataclass
class Workspace:
    """Everything loaded for one compile: parsed files, their texts, defines in scope."""

    diagnostics: Diagnostics = field(default_factory=Diagnostics)
    files: dict[str, SourceFile] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    includes: dict[str, list[str]] = field(default_factory=dict)  # file -> files it included


def display_path(path: Path) -> str:
    """The path as artifacts and messages show it: relative to the working directory when
    inside it, so output does not depend on where a checkout lives."""
    resolved = path.resolve()
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return resolved.as_posix()


def load_file(ws: Workspace, path: Path, stack: tuple[str, ...] = (),
              at: Location | None = None) -> SourceFile | None:
    """Parse `path` and, recursively, what it includes. Returns None when it cannot be read."""
    if any(ord(c) < 32 for c in str(path)):  # NUL makes every OS call raise ValueError
        ws.diagnostics.error(f"invalid file name {str(path)!r}", at,
                             "file names cannot contain control characters", code="io")
        return None
    name = display_path(path)
    if name in stack:
        chain = " -> ".join((*stack[stack.index(name):], name))
        ws.diagnostics.error(f"include cycle: {chain}", at, "a file cannot include itself, "
                             "directly or through other files", code="include-cycle")
        return None
    if name in ws.files:
        return ws.files[name]
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        hint = (f"include paths are relative to the including file ({Path(at.file).parent.as_posix()}/)"
                if at is not None else None)
        ws.diagnostics.error(f"no such file: {name}", at, hint, code="io")
        return None
    except (OSError, UnicodeDecodeError) as exc:
        ws.diagnostics.error(f"cannot read {name}: {exc}", at, code="io")
        return None
    ws.sources[name] = text
    try:
        tree = parse_text(text, name)
    except PolicyError as exc:
        ws.diagnostics.extend(exc.diagnostics)
        return None
    source: SourceFile = ToSyntax(name).transform(tree)
    ws.files[name] = source
    ws.includes[name] = []
    for inc in source.includes:
        target = Path(os.path.normpath(path.parent / inc.path.text))
        included = load_file(ws, target, (*stack, name), inc.path.loc)
        if included is not None:
            ws.includes[name].append(included.path)
        if included is not None and included.policies:
            ws.diagnostics.error(
                f"included file {display_path(target)} defines policies", inc.path.loc,
                "includes share definitions; compile policy files by naming them", code="include")
    return source


def file_defines(ws: Workspace, source: SourceFile, seen: set[str] | None = None) -> list[Define]:
    """The defines a file sees: its own and those of everything it includes, transitively."""
    seen = set() if seen is None else seen
    if source.path in seen:
        return []
    seen.add(source.path)
    out: list[Define] = []
    # The files `load_file` found, not paths recomputed here: those could differ (symlinks).
    for target in ws.includes.get(source.path, ()):
        out.extend(file_defines(ws, ws.files[target], seen))
    out.extend(source.defines)
    return out


class Resolver:
    """Resolves peer words against the defines in scope and the catalog."""

    def __init__(self, defines: list[Define], diagnostics: Diagnostics) -> None:
        self.diag = diagnostics
        self.catalog = load_catalog()
        self.defines: dict[str, Define] = {}
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
        text = word.text
        if text.startswith("@"):
            return self._ref(word, stack)
        if text == "any":
            return [Atom("any", "any", text)]
        group = self.catalog.get(text.lower())
        if group is not None:
            return _group_atoms(group, text)
        atom = parse_literal(word, self.diag, suggestions=[*self.catalog, *(f"@{d}" for d in self.defines)])
        return [atom] if atom else []

    def _ref(self, word: Word, stack: tuple[str, ...]) -> list[Atom]:
        name = word.text[1:]
        define = self.defines.get(name)
        if define is None:
            guess = closest(name, self.defines)
            hint = f"did you mean @{guess}?" if guess else "define it first: define NAME = ..."
            if guess is None and name in self.catalog:
                hint = f"'{name}' is a catalog group: write it without '@'"
            self.diag.error(f"unknown definition '@{name}'", word.loc, hint, code="unknown-name")
            return []
        if name in stack:
            self.diag.error(f"definition cycle: {' -> '.join((*stack, name))}", word.loc,
                            "a definition cannot refer to itself, directly or through others",
                            code="define-cycle")
            return []
        atoms: list[Atom] = []
        for item in define.items:
            atoms.extend(Atom(a.kind, a.value, word.text, a.ports, a.net)
                         for a in self.resolve(item, (*stack, name)))
        return atoms


def _group_atoms(group: CatalogGroup, origin: str) -> list[Atom]:
    ports = tuple(parse_port_text(p) for p in group.ports)
    atoms = [Atom("name", n, origin, ports) for n in group.fqdns]
    atoms += [Atom("wildcard", w, origin, ports) for w in group.wildcards]
    for addr in group.addresses:
        net = ipaddress.ip_network(addr)
        atoms.append(Atom(f"net{net.version}", str(net), origin, ports, net))
    return atoms


def parse_literal(word: Word, diag: Diagnostics, suggestions: list[str] | None = None) -> Atom | None:
    """An address, CIDR, FQDN or *.wildcard as written in a policy."""
    text = word.text
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
        guess = closest(text, suggestions or [])
        hint = f"did you mean {guess}?" if guess else (
            "peers are addresses, CIDRs, domain names, *.wildcards, @definitions, catalog "
            "groups (see `clawpolicy catalog`) or 'any'")
        diag.error(f"unknown peer '{text}'", word.loc, hint, code="unknown-name")
        return None
    return Atom("name", name, text)


def _looks_like_address(text: str) -> bool:
    return ":" in text or bool(re.fullmatch(r"[0-9./]+", text))


def normalise_name(text: str) -> str | None:
    """Lower-case, IDNA-encoded (punycode) DNS name, or None when it is not one."""
    text = text.rstrip(".")
    try:
        ascii_name = text.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None
    labels = ascii_name.split(".")
    if len(ascii_name) > 253 or not all(_LABEL.match(label) for label in labels):
        return None
    if labels[-1].isdigit():
        return None
    return ascii_name


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
