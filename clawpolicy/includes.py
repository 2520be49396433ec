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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from clawpolicy.catalog import CatalogGroup, load_catalog
from clawpolicy.errors import Diagnostics, Location, PolicyError, closest
from clawpolicy.literals import Atom as Atom
from clawpolicy.literals import _fast_ipv4, address_keys, parse_port_text
from clawpolicy.literals import parse_literal as parse_literal
from clawpolicy.literals import parse_port as parse_port
from clawpolicy.names import normalise_name as normalise_name
from clawpolicy.parse import parse_text
from clawpolicy.peerlist import Peers
from clawpolicy.sources import SourceError, read_policy
from clawpolicy.syntax import Define, Include, SourceFile, ToSyntax, Word

MAX_FILES = 10_000  # policy files per compile, includes counted


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
        self._literal_lists: dict[str, tuple[Atom, ...] | None] = {}
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
        # Address literals first (no other peer spells like one), before any other kind.
        literal = self.literal(text)
        if literal is not None:
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

    def literal(self, text: str) -> Atom | None:
        """The atom of an address literal resolved before (one dict probe), or of a canonical
        IPv4 one (the fast path); None: resolve its Word (`resolve`), which may need a position."""
        cached = self._literals.get(text)
        if cached is not None or not text[:1].isdigit():
            return cached
        fast = _fast_ipv4(text)
        if fast is None:
            return None
        atom = self._literals[text] = Atom("net4", text, text, None, fast)
        return atom

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
        return [a.named(word.text) for a in self._expand(word.text[1:])]

    def literal_list(self, name: str) -> tuple[Atom, ...] | None:
        """A definition of address literals only (100,000 of them) as one `nets` atom, every
        item valid (`literals.address_keys`); None for any other definition."""
        if name not in self._literal_lists:
            keys = address_keys(self.defines[name].items.texts)
            self._literal_lists[name] = None if keys is None else (
                Atom("nets", "", f"@{name}", keys=(tuple(keys[0]), tuple(keys[1]))),)
        return self._literal_lists[name]

    def check(self, name: str) -> None:
        """Report the problems of a definition's items (unused definitions must be valid too)."""
        if self.literal_list(name) is None:
            items = self.defines[name].items
            for index in range(len(items)):
                self.resolve_at(items, index)

    def _expand(self, name: str) -> tuple[Atom, ...]:
        """The atoms of a definition, every reference followed, depth first."""
        if name in self._expanded:
            return self._expanded[name]
        whole = self.literal_list(name)
        if whole is not None:
            self._expanded[name] = whole
            return whole
        frames: list[tuple[str, Iterator[int], list[Atom]]] = [
            (name, iter(range(len(self.defines[name].items))), [])]
        path = [name]
        while frames:
            current, pending, acc = frames[-1]
            index = next(pending, None)
            if index is None:
                frames.pop()
                path.pop()
                done = self._expanded[current] = tuple(dict.fromkeys(acc))
                if frames:
                    frames[-1][2].extend(a.named(f"@{current}") for a in done)
                continue
            items = self.defines[current].items
            text = items.texts[index]
            if not text.startswith("@"):
                acc.extend(self.resolve_at(items, index))
                continue
            item, ref = items[index], text[1:]
            if ref not in self.defines:
                self._unknown(item)
            elif ref in path:
                self.diag.error(f"definition cycle: {' -> '.join((*path[path.index(ref):], ref))}",
                                item.loc, "a definition cannot refer to itself, directly or "
                                "through others", code="define-cycle")
            elif ref in self._expanded or self.literal_list(ref) is not None:
                self._expanded.setdefault(ref, self.literal_list(ref) or ())
                acc.extend(a.named(item.text) for a in self._expanded[ref])
            else:
                frames.append((ref, iter(range(len(self.defines[ref].items))), []))
                path.append(ref)
        return self._expanded[name]

    def resolve_at(self, peers: Peers, index: int) -> list[Atom]:
        """The atoms of `peers[index]`, its Word (with a position) made only when needed: for
        a reference (its expansion reports problems once, where it is written), or when the
        item has a problem to report. Other kinds depend on the text alone (nothing but valid
        literals is cached), so a second resolution with the Word reports exactly what the
        first found."""
        text = peers.texts[index]
        literal = self.literal(text)
        if literal is not None:
            return [literal]
        if text.startswith("@"):
            return self.resolve(peers[index])
        diag, self.diag = self.diag, Diagnostics()
        try:
            atoms = self.resolve(Word(text, _NOWHERE))
            quiet = not self.diag.items
        finally:
            self.diag = diag
        return atoms if quiet else self.resolve(peers[index])


_NOWHERE = Location("<peer>")


def _group_atoms(group: CatalogGroup, origin: str) -> list[Atom]:
    ports = tuple(parse_port_text(p) for p in group.ports)
    atoms = [Atom("name", n, origin, ports) for n in group.fqdns]
    atoms += [Atom("wildcard", w, origin, ports) for w in group.wildcards]
    for addr in group.addresses:
        net = ipaddress.ip_network(addr)
        atoms.append(Atom(f"net{net.version}", str(net), origin, ports, net))
    return atoms
