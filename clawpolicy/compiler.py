"""Policy files to artifacts in memory: floor 3, the library behind `clawpolicy compile`.

Loads and lowers every file, checks what the selected targets can enforce, runs each backend,
proves that no two IR identities share a derived name (backends/naming.py) and, on request,
validates what real parsers read (nft rulesets with libnftables and `nft -c`, AppArmor profiles
with apparmor_parser, dnsmasq fragments with `dnsmasq --test`). Nothing touches the disk
here: the caller hands `outputs` to `write`, so a failure anywhere leaves generated/ as it was.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import gc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from clawpolicy.backends.base import Artifact, CompileOptions
from clawpolicy.backends.naming import NameClaim, collisions
from clawpolicy.backends.registry import BACKENDS, check_support, targets_for
from clawpolicy.errors import Diagnostic, Location, Severity
from clawpolicy.ir import Mode, Policy, Refusal
from clawpolicy.lower import LoadResult, load_policies

if TYPE_CHECKING:  # --validate and --lock import these when asked for
    from clawpolicy.validate import Validation


@dataclass
class CompileResult:
    policies: list[Policy] = field(default_factory=list)
    outputs: dict[str, bytes] = field(default_factory=dict)  # "<policy>/<target>/<path>" -> bytes
    owned_dirs: set[str] = field(default_factory=set)  # "<policy>/<target>"
    diagnostics: list[Diagnostic] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    validations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(d.severity is Severity.ERROR for d in self.diagnostics)


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Compiling allocates millions of short-lived acyclic objects (tokens, networks, IR
    models); the cyclic collector rescans them over and over for nothing, which measured
    ~35% of a 100,000-CIDR compile. Reference counting still frees them."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def compile_paths(paths: Sequence[Path], targets: Sequence[str], *, mode: Mode | None = None,
                  strict: bool = False, validate: bool = False, lock: bool = False,
                  today: dt.date | None = None,
                  options: CompileOptions | None = None, explicit: bool = False,
                  include_root: Path | None = None,
                  refusal: tuple[Refusal | None, Refusal | None] = (None, None),
                  loaded: LoadResult | None = None) -> CompileResult:
    """`loaded`: the same paths already loaded by the caller (`diff` compares them first), so a
    100,000-network file is not read, parsed and lowered twice. `refusal`: how denies without
    their own `reject`/`drop` refuse, egress and ingress (`--deny-action`,
    `--ingress-deny-action`; None keeps the policy's). `lock`: put the addresses of each policy
    file's lock (`<stem>.lock.json`, written by `clawpolicy resolve`) into the FQDN sets; a
    name the lock lacks is an error. `options`: target settings (AppArmor ABI, FQDN set
    timeout, ...); `strict` overrides its field.
    `explicit`: the user named the targets (`registry.targets_for` narrows defaults per policy).
    `include_root`: the tree includes must stay in (default: each named file's directory)."""
    with _no_cyclic_gc():
        return _compile(paths, targets, mode, strict, validate, lock, today,
                        options or CompileOptions(), explicit, include_root, refusal, loaded)


def _compile(paths: Sequence[Path], targets: Sequence[str], mode: Mode | None, strict: bool,
             validate: bool, lock: bool, today: dt.date | None,
             given: CompileOptions, explicit: bool, include_root: Path | None,
             refusal: tuple[Refusal | None, Refusal | None] = (None, None),
             loaded: LoadResult | None = None) -> CompileResult:
    if loaded is None:
        loaded = load_policies(paths, today=today, include_root=include_root)
    result = CompileResult(sources=loaded.sources)
    result.diagnostics.extend(_strictly(loaded.diagnostics, strict))
    if not loaded.ok:
        return result
    base = dataclasses.replace(given, strict=strict)
    claims: dict[NameClaim, str] = {}  # every derived name -> the policy file that claimed it
    for policy in loaded.policies:
        if mode is not None:
            policy = policy.with_mode(mode)
        policy = policy.with_refusal(*refusal)
        options = base
        if lock:
            locked = _locked_addresses(policy, result.diagnostics)
            if locked is None:
                continue
            options = dataclasses.replace(base, lock=locked)
        result.policies.append(policy)
        chosen, narrowed = targets_for(policy, targets, options, explicit)
        result.diagnostics.extend(narrowed)
        result.diagnostics.extend(check_support(policy, chosen, strict, options, explicit))
        for target in chosen:
            produced = BACKENDS[target].compile(policy, options)
            result.diagnostics.extend(_strictly(produced.diagnostics, strict))
            result.owned_dirs.add(f"{policy.name}/{target}")
            claims.update(dict.fromkeys(produced.names, policy.source))
            for n, artifact in enumerate(produced.artifacts):
                rel = f"{policy.name}/{target}/{artifact.path}"
                claims.setdefault(NameClaim("output file", rel, f"{target} artifact #{n}"),
                                  policy.source)
                result.outputs[rel] = artifact.content
                if validate:
                    for check in _validations(target, artifact):
                        result.validations.append(f"{rel}: {check.tool}: {check.message}")
                        if not check.ok:
                            result.diagnostics.append(Diagnostic(
                                Severity.ERROR, f"generated {target} artifact rejected by {check.tool}",
                                Location(policy.source), check.message.splitlines()[0]
                                if check.message else None, code="validation"))
    result.diagnostics.extend(_name_check(claims))
    return result


def _validations(target: str, artifact: Artifact) -> list[Validation]:
    """`--validate`: the real parsers on what they read (nft rulesets, AppArmor profiles,
    dnsmasq fragments); each says "none" when its tool is not installed."""
    from clawpolicy.validate import validate_apparmor, validate_dnsmasq, validate_nft

    if target == "nftables":
        return validate_nft(artifact.content.decode("utf-8"))
    if target == "apparmor" and artifact.media_type == "text/x-apparmor":
        return validate_apparmor(artifact.content.decode("utf-8"), artifact.path)
    if target == "dnsmasq":
        return validate_dnsmasq(artifact.content.decode("utf-8"))
    return []


def _name_check(claims: dict[NameClaim, str]) -> list[Diagnostic]:
    """The proof that no backend merged two identities into one name (naming.py): a
    collision is the compiler's fault (or a target option's, such as an AppArmor profile name
    without {policy}), never the policy's, so it is an error that stops the compile."""
    out = []
    for found in collisions(claims):
        source = next(src for c, src in claims.items() if (c.space, c.name) == (found.space, found.name))
        out.append(Diagnostic(Severity.ERROR, found.message(), Location(source),
                              "nothing was written; please report this (renaming one of them "
                              "works around it)", code="internal"))
    return out


def _locked_addresses(policy: Policy, diagnostics: list[Diagnostic]) -> dict[str, tuple[str, ...]] | None:
    """The lock beside the policy's file, as name -> addresses; None (and an error) when it
    is missing, unreadable or lacks a name the policy uses."""
    from clawpolicy.lockfile import LockError, load, lock_path, names_of

    path = lock_path(Path(policy.source))
    try:
        lock = load(path)
        locked = lock.addresses()
    except LockError as exc:
        diagnostics.append(Diagnostic(Severity.ERROR, str(exc), Location(policy.source), code="lock"))
        return None
    empty = [n for n in lock.unaccepted_empty() if n in names_of([policy])[0]]
    if empty:  # NXDOMAIN at resolve time: the rule would admit nothing
        diagnostics.append(Diagnostic(
            Severity.ERROR, f"{policy.name}: {path} holds no address for {', '.join(empty)}",
            Location(policy.source), f"run `clawpolicy resolve --update {policy.source}`, or accept "
            "the names with `resolve --allow-empty`", code="lock"))
        return None
    missing = [n for n in names_of([policy])[0] if n not in locked]
    if missing:
        diagnostics.append(Diagnostic(
            Severity.ERROR, f"{policy.name}: {path} has no addresses for {', '.join(missing)}",
            Location(policy.source), f"run `clawpolicy resolve {policy.source}`", code="lock"))
        return None
    return locked


def _strictly(diagnostics: Sequence[Diagnostic], strict: bool) -> list[Diagnostic]:
    """Under --strict, warnings (expired rules, unenforced rules) become errors."""
    if not strict:
        return list(diagnostics)
    return [Diagnostic(Severity.ERROR, d.message, d.location, d.hint, d.code)
            if d.severity is Severity.WARNING else d for d in diagnostics]
