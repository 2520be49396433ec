"""Project configuration: `clawpolicy.toml`, or `[tool.clawpolicy]` in pyproject.toml.

Floor 4's input beside the command line: what a project always passes to `compile` and
`lint` (targets, k8s flavour, output directory, per-target options, lint settings), so that
`compile --check` in CI reproduces exactly what the project's pipeline generates.
Precedence: command line > config > built-in defaults. The file is found by walking up
from the working directory (the nearest `clawpolicy.toml`, or `pyproject.toml` that has a
`[tool.clawpolicy]` table), or named with `--config`; `--no-config` ignores it.

The schema is a table (`SCHEMA`): every key maps to the argparse destination it fills and
the converter that checks it. Unknown keys and bad values are errors at file:line: tomllib
gives no positions, so the line of a key is found by a scan of the text (`_locate`).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clawpolicy.errors import Diagnostic, Location, Severity, closest

if TYPE_CHECKING:  # the review package is imported only when the config has lint ignores
    from clawpolicy.review.finding import LintIgnore

CONFIG_NAME = "clawpolicy.toml"
PYPROJECT = "pyproject.toml"
PYPROJECT_TABLE = ("tool", "clawpolicy")
MAX_CONFIG_BYTES = 1 << 20


class ConfigError(Exception):
    """The config cannot be used; carries positioned diagnostics and the file's text."""

    def __init__(self, diagnostics: list[Diagnostic], sources: dict[str, str]) -> None:
        self.diagnostics = diagnostics
        self.sources = sources
        super().__init__(diagnostics[0].message if diagnostics else "config error")


@dataclass(frozen=True)
class Config:
    path: Path | None = None
    compile: dict[str, Any] = field(default_factory=dict)  # argparse dest -> value
    lint: dict[str, Any] = field(default_factory=dict)
    ignores: tuple[LintIgnore, ...] = ()


# ------------------------------------------------------------------------ value converters

Convert = Callable[[Any, Path], Any]


def _choice(*allowed: str) -> Convert:
    def convert(value: Any, _: Path) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise ValueError(f"expected one of {', '.join(map(repr, allowed))}, not {value!r}")
        return value
    return convert


def _choices(*allowed: str) -> Convert:
    def convert(value: Any, base: Path) -> list[str]:
        if not isinstance(value, list) or not value:
            raise ValueError(f"expected a non-empty list of {', '.join(map(repr, allowed))}")
        return [_choice(*allowed)(v, base) for v in value]
    return convert


def _bool(value: Any, _: Path) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, not {value!r}")
    return value


def _positive(value: Any, _: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"expected a positive integer, not {value!r}")
    return value


def _path(value: Any, base: Path) -> Path:
    """Relative paths are the config file's directory's, wherever the command runs."""
    if not isinstance(value, str) or not value or value == "-":
        raise ValueError(f"expected a directory path, not {value!r}")
    return Path(os.path.normpath(base / value))  # examples/../generated is shown as generated


def _argtype(parse: Callable[[str], Any]) -> Convert:
    """One of the command line's own argument checks, so both say the same thing."""
    def convert(value: Any, _: Path) -> Any:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, not {value!r}")
        import argparse
        try:
            return parse(value)
        except argparse.ArgumentTypeError as exc:
            raise ValueError(str(exc)) from None
    return convert


def _strings(parse: Convert) -> Convert:
    def convert(value: Any, base: Path) -> list[Any]:
        if not isinstance(value, list):
            raise ValueError(f"expected a list, not {value!r}")
        return [parse(v, base) for v in value]
    return convert


def _ports(value: Any, _: Path) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool)
                                              and 0 < v < 65536 for v in value):
        raise ValueError(f"expected a list of TCP ports (1-65535), not {value!r}")
    return list(value)


def _schema() -> dict[tuple[str, ...], dict[str, tuple[str, str, Convert]]]:
    """table path -> key -> (command, argparse dest, converter). Built lazily: the argument
    checks live with the commands (and import the backends' tables)."""
    from clawpolicy.backends.registry import BACKENDS
    from clawpolicy.commands import compile_args as cc
    from clawpolicy.ir import Mode, Refusal
    targets = _choices(*sorted(BACKENDS))
    refusal = _choice(*(r.value for r in Refusal))
    return {
        ("compile",): {
            "targets": ("compile", "target", targets),
            "output": ("compile", "output", _path),
            "mode": ("compile", "mode", _choice(*(m.value for m in Mode))),
            "deny-action": ("compile", "deny_action", refusal),
            "ingress-deny-action": ("compile", "ingress_deny_action", refusal),
            "include-root": ("compile", "include_root", _path),
            "fqdn-timeout": ("compile", "fqdn_timeout", _positive),
            "dns-upstreams": ("compile", "dns_upstream", _strings(_argtype(cc.dns_upstream))),
            "strict": ("compile", "strict", _bool),
            "lock": ("compile", "lock", _bool),
            "validate": ("compile", "validate", _bool),
        },
        ("k8s",): {
            "flavor": ("compile", "k8s_flavor", _choice("vanilla", "cilium", "calico")),
            "selector": ("compile", "k8s_selector", _argtype(cc.k8s_selector)),
            "namespace": ("compile", "k8s_namespace", _argtype(cc.k8s_namespace)),
            "container": ("compile", "k8s_container", _argtype(cc.k8s_namespace)),
        },
        ("seccomp",): {"deny-action": ("compile", "seccomp_deny_action", _choice("errno", "kill"))},
        ("apparmor",): {"abi": ("compile", "apparmor_abi", _choice("3.0", "4.0"))},
        ("systemd",): {"unit": ("compile", "systemd_unit", _argtype(cc.systemd_unit))},
        ("lint",): {
            "targets": ("lint", "target", targets),
            "fail-on": ("lint", "fail_on", _choice(*(s.value for s in Severity))),
            "require-owner": ("lint", "require_owner", _bool),
            "management-ports": ("lint", "management_port", _ports),
            "ignore": ("lint", "", lambda v, _: v),  # checked by _ignores
        },
    }


IGNORE_KEYS = ("check", "rule", "file", "reason")


# ------------------------------------------------------------------------ finding and loading

def find(start: Path) -> Path | None:
    """The nearest config at or above `start`: clawpolicy.toml first in each directory, then a
    pyproject.toml that has a [tool.clawpolicy] table."""
    for directory in (start, *start.parents):
        candidate = directory / CONFIG_NAME
        if candidate.is_file():
            return candidate
        pyproject = directory / PYPROJECT
        if pyproject.is_file() and re.search(r"^\s*\[\s*tool\s*\.\s*clawpolicy\s*[.\]]",
                                             _read(pyproject), re.MULTILINE):
            return pyproject
    return None


def _read(path: Path) -> str:
    with path.open("rb") as fh:
        data = fh.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError([Diagnostic(Severity.ERROR, "config file is larger than 1 MiB",
                                      Location(str(path)), code="config")], {})
    return data.decode("utf-8", errors="replace")


def load(path: Path) -> Config:
    """Read and check one config file; raise ConfigError with every problem found."""
    name = str(path)
    try:
        text = _read(path)
    except OSError as exc:
        raise ConfigError([Diagnostic(Severity.ERROR, f"cannot read config: {exc.strerror or exc}",
                                      Location(name), code="config")], {}) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line, col = _decode_position(str(exc))
        raise ConfigError([Diagnostic(Severity.ERROR, f"not valid TOML: {exc}",
                                      Location(name, line, col), code="config")],
                          {name: text}) from None
    prefix: tuple[str, ...] = ()
    if path.name == PYPROJECT:
        prefix = PYPROJECT_TABLE
        data = data.get("tool", {}).get("clawpolicy", {})
    problems: list[Diagnostic] = []
    out = Config(path=path)
    base = path.parent
    schema = _schema()

    def problem(message: str, table: tuple[str, ...], key: str | None, hint: str | None = None,
                needle: str | None = None) -> None:
        line, col = _locate(text, prefix + table, key, needle)
        problems.append(Diagnostic(Severity.ERROR, message, Location(name, line, col), hint,
                                   code="config"))

    for table_name, table in data.items():
        keys = schema.get((table_name,))
        if keys is None or not isinstance(table, dict):
            near = closest(table_name, [t[0] for t in schema])
            problem(f"unknown config table or key {'.'.join(prefix + (table_name,))!r}", (),
                    table_name, f"did you mean [{near}]?" if near else
                    f"known tables: {', '.join(t[0] for t in schema)}")
            continue
        for key, value in table.items():
            if key not in keys:
                near = closest(key, keys)
                problem(f"unknown key {key!r} in [{'.'.join(prefix + (table_name,))}]",
                        (table_name,), key, f"did you mean {near!r}?" if near else
                        f"known keys: {', '.join(keys)}")
                continue
            command, dest, convert = keys[key]
            if key == "ignore":
                def where(needle: str | None) -> Location:
                    return Location(name, *_locate(text, prefix + ("lint",), "ignore", needle))
                ignores = list(_ignores(value, base, lambda m, n: problem(m, ("lint",), "ignore",
                                                                        needle=n), where))
                out = Config(out.path, out.compile, out.lint, tuple(ignores))
                continue
            try:
                converted = convert(value, base)
            except ValueError as exc:
                problem(f"[{table_name}] {key}: {exc}", (table_name,), key)
                continue
            getattr(out, command)[dest] = converted
    if problems:
        raise ConfigError(problems, {name: text})
    return out


def _ignores(value: Any, base: Path, problem: Callable[[str, str | None], None],
             where: Callable[[str | None], Location]) -> Iterator[LintIgnore]:
    from clawpolicy.review.finding import LintIgnore
    from clawpolicy.review.lint import CHECKS

    known = {c.id for c in CHECKS}
    if not isinstance(value, list):
        problem("[lint] ignore: expected a list of tables "
                "({check = \"...\", rule = \"...\", reason = \"...\"})", None)
        return
    for entry in value:
        if not isinstance(entry, dict):
            problem(f"[lint] ignore: expected a table, not {entry!r}", None)
            continue
        needle = entry.get("check") if isinstance(entry.get("check"), str) else None
        extra = [k for k in entry if k not in IGNORE_KEYS]
        check, reason = entry.get("check"), entry.get("reason")
        rule, file = entry.get("rule"), entry.get("file")
        if extra:
            problem(f"[lint] ignore: unknown key {extra[0]!r} (known: {', '.join(IGNORE_KEYS)})",
                    extra[0])
        elif not isinstance(check, str) or check not in known:
            problem(f"[lint] ignore: unknown check {check!r} (known: {', '.join(sorted(known))})",
                    needle)
        elif not isinstance(reason, str) or not reason.strip():
            problem(f"[lint] ignore: {check}: a reason is required (why is this finding accepted?)",
                    needle)
        elif rule is not None and not isinstance(rule, str) or file is not None and not isinstance(file, str):
            problem(f"[lint] ignore: {check}: rule and file are strings", needle)
        else:
            yield LintIgnore(check, reason.strip(), rule,
                             None if file is None else (base / file).resolve(), where(needle))


def _decode_position(message: str) -> tuple[int, int]:
    m = re.search(r"at line (\d+), column (\d+)", message)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")


def _locate(text: str, table: tuple[str, ...], key: str | None, needle: str | None = None
            ) -> tuple[int, int]:
    """Line and column of `key` in `table` (or of the table's header when the key is a table),
    by a scan of the text: good enough for the plain layouts people write, and falls back to
    line 1 (dotted keys, inline tables) rather than guess."""
    current: tuple[str, ...] = ()
    wanted_header = table + ((key,) if key is not None else ())
    key_re = re.compile(rf'^(\s*)["\']?{re.escape(key)}["\']?\s*=') if key else None
    found_key: tuple[int, int] | None = None
    for number, line in enumerate(text.split("\n"), start=1):
        header = _HEADER.match(line)
        if header:
            current = tuple(p.strip().strip("\"'") for p in header.group(1).split("."))
            if current == wanted_header and found_key is None:
                found_key = (number, line.index("[") + 1)
                if needle is None:
                    return found_key
            continue
        if key_re and current == table and found_key is None:
            m = key_re.match(line)
            if m:
                found_key = (number, len(m.group(1)) + 1)
                if needle is None:
                    return found_key
        if needle and found_key is not None and f'"{needle}"' in line:
            return number, line.index(f'"{needle}"') + 1
    return found_key or (1, 1)


def resolve(explicit: Path | None, disabled: bool, cwd: Path | None = None) -> Config:
    """The config a command uses: `--config FILE`, else the nearest one, else none."""
    if disabled:
        return Config()
    if explicit is not None:
        return load(explicit)
    here = (cwd or Path.cwd()).resolve()
    found = find(here)
    if found is None:
        return Config()
    shown = found.relative_to(here) if cwd is None and found.is_relative_to(here) else found
    return load(shown)  # messages name it as the user sees it from here


def settle(args: Any, values: dict[str, Any], defaults: dict[str, Any]) -> None:
    """Fill the options the command line left unset (None): from the config, else the
    built-in default. The command line always wins."""
    for dest in {*values, *defaults}:
        if getattr(args, dest, None) is None:
            setattr(args, dest, values[dest] if dest in values else defaults.get(dest))
