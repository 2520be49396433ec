"""Find and load an OpenClaw configuration: JSON5 with `$include`, as OpenClaw reads it.

Mirrors OpenClaw's own rules (src/config/paths.ts and src/config/includes.ts, read 2026-11),
because a starter policy built from a different file, or from a differently merged one, would
describe a deployment that does not exist:

* where: an explicit path; else ``OPENCLAW_CONFIG_PATH`` (or the legacy
  ``CLAWDBOT_CONFIG_PATH``); else the first existing of ``openclaw.json``, ``clawdbot.json``,
  ``moldbot.json``, ``moltbot.json`` in ``$OPENCLAW_STATE_DIR`` (legacy ``CLAWDBOT_STATE_DIR``),
  then in ``~/.openclaw``, ``~/.clawdbot``, ``~/.moldbot``, ``~/.moltbot`` (``~`` is
  ``$OPENCLAW_HOME`` when set, else ``$HOME``);
* `$include`: in any object, a path or a list of paths relative to the including file; the
  included objects are deep-merged (objects merge key by key, arrays concatenate, scalars: the
  later wins) and the object's other keys are merged over them. Includes may not leave the
  directory of the top-level file, cycles are errors, and nesting stops at depth 10.

Errors are `ConfigError`s that say file:line:col where the JSON5 parser gives a position.

The file is the user's, but `init` may be pointed at anything, and an `$include` at anything
inside the configuration directory, so reading is bounded before any byte is trusted: only
regular files (opened with O_NONBLOCK, so a FIFO cannot hang the open, then checked with
fstat: no FIFO, device such as /dev/zero, directory or socket), at most `MAX_FILE_BYTES`
each (checked on fstat before reading, then read with that cap: /proc files lie about
their size) and `MAX_TOTAL_BYTES` over all includes (sibling includes of one big file would
otherwise multiply it), nesting at most `MAX_NESTING` deep (counted outside strings and
comments before the recursive JSON5 parser sees it). Plain JSON is parsed by the standard
library's C parser; only text that needs JSON5 goes to the (pure Python, slow) `json5`
package, and only up to `MAX_JSON5_BYTES`, so no file takes more than seconds.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import json5

INCLUDE_KEY = "$include"
MAX_INCLUDE_DEPTH = 10  # OpenClaw's MAX_INCLUDE_DEPTH
MAX_FILE_BYTES = 2 * 1024 * 1024  # OpenClaw's MAX_INCLUDE_FILE_BYTES
MAX_TOTAL_BYTES = 8 * MAX_FILE_BYTES  # every file read for one configuration, includes and all
MAX_NESTING = 64  # objects and arrays; OpenClaw's own schema nests about 6 deep
# The `json5` package parses ~20 KB/s (2 MB: over a minute); plain JSON goes to the C parser.
MAX_JSON5_BYTES = 256 * 1024
STATE_DIRS = (".openclaw", ".clawdbot", ".moldbot", ".moltbot")
CONFIG_NAMES = ("openclaw.json", "clawdbot.json", "moldbot.json", "moltbot.json")
_JSON5_POSITION = re.compile(r"^<string>:(\d+) (.*?)(?: at column (\d+))?$", re.S)


class ConfigError(Exception):
    """The configuration cannot be found, read or merged; rendered like a compiler error."""

    def __init__(self, message: str, file: str | None = None, line: int = 0, col: int = 0) -> None:
        super().__init__(message)
        self.message, self.file, self.line, self.col = message, file, line, col

    def __str__(self) -> str:
        where = self.file or "openclaw config"
        if self.line:
            where += f":{self.line}" + (f":{self.col}" if self.col else "")
        return f"{where}: error: {self.message}"


@dataclass(frozen=True)
class LoadedConfig:
    path: Path  # the top-level file
    data: dict[str, Any]  # after `$include`
    files: tuple[Path, ...]  # every file read, top-level first


def candidates(env: Mapping[str, str], home: Path | None = None) -> list[Path]:
    """Where OpenClaw looks, in its order (the first existing one wins)."""
    explicit = (env.get("OPENCLAW_CONFIG_PATH") or env.get("CLAWDBOT_CONFIG_PATH") or "").strip()
    home = home or Path(env.get("OPENCLAW_HOME") or env.get("HOME") or Path.home()).expanduser()
    if explicit:
        return [_user_path(explicit, home)]
    dirs = []
    state = (env.get("OPENCLAW_STATE_DIR") or env.get("CLAWDBOT_STATE_DIR") or "").strip()
    if state:
        dirs.append(_user_path(state, home))
    dirs += [home / d for d in STATE_DIRS]
    return [d / name for d in dirs for name in CONFIG_NAMES]


def locate(explicit: Path | None, env: Mapping[str, str] | None = None,
           home: Path | None = None) -> Path:
    """The configuration file to read; `ConfigError` naming every place tried if none exists."""
    if explicit is not None:
        if not explicit.exists():
            raise ConfigError("no such file", str(explicit))
        if not explicit.is_file():
            raise ConfigError("not a regular file", str(explicit))
        return explicit
    tried = candidates(os.environ if env is None else env, home)
    for path in tried:
        if path.is_file():
            return path
    raise ConfigError("no OpenClaw configuration found; looked at " + ", ".join(map(str, tried))
                      + " (give the path, or set OPENCLAW_CONFIG_PATH)")


def load(path: Path) -> LoadedConfig:
    """Parse `path` and resolve its `$include`s; the result is a plain JSON-like dict."""
    loader = _Includes(path.resolve().parent)
    data = loader.process(loader.read(path, ()), (path.resolve(),))
    if not isinstance(data, dict):
        raise ConfigError("the configuration is not an object", str(path))
    # Name included files the way the top-level file was named (relative stays relative).
    files = [path] + [f if path.is_absolute() else Path(os.path.relpath(f)) for f in loader.files[1:]]
    return LoadedConfig(path, data, tuple(files))


def _user_path(text: str, home: Path) -> Path:
    return home / text[2:] if text.startswith("~/") else Path(text).expanduser()


def deep_merge(target: Any, source: Any) -> Any:
    """OpenClaw's deepMerge: arrays concatenate, objects merge recursively, else source wins."""
    if isinstance(target, list) and isinstance(source, list):
        return [*target, *source]
    if isinstance(target, dict) and isinstance(source, dict):
        out = dict(target)
        for key, value in source.items():
            if key in ("__proto__", "constructor", "prototype"):  # OpenClaw drops these too
                continue
            out[key] = deep_merge(out[key], value) if key in out else value
        return out
    return source


def read_capped(path: Path, cap: int) -> bytes:
    """The bytes of a regular file of at most `cap` bytes; `OSError` or `ValueError` (why)
    for anything else, decided before reading more than `cap` + 1 bytes."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"not a regular file ({_kind(info.st_mode)})")
        if info.st_size > cap:
            raise ValueError(f"larger than {cap} bytes")
        chunks: list[bytes] = []
        size = 0
        while size <= cap and (chunk := os.read(fd, cap + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
        if size > cap:
            raise ValueError(f"larger than {cap} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a file"


_NESTING_MARKS = re.compile(r"""[\[\]{}"'/\\\n*]""")


def nesting(text: str) -> tuple[int, int, int]:
    """The deepest object/array nesting of JSON5 text and where it is first reached (line,
    col), counted outside strings and comments; stops counting past `MAX_NESTING`. Only the
    characters that matter are visited (a regex finds them), so 2 MB take milliseconds."""
    depth = deepest = 0
    line, line_start, where = 1, 0, (1, 1)
    quote = comment = ""
    skip_to = 0  # the character after a backslash is data
    for m in _NESTING_MARKS.finditer(text):
        i, c = m.start(), m[0]
        if c == "\n":
            line, line_start = line + 1, i + 1
            if comment == "//":
                comment = ""
        if i < skip_to or c == "\n":
            continue
        if comment:
            if comment == "/*" and c == "*" and text.startswith("/", i + 1):
                comment, skip_to = "", i + 2
        elif quote:
            if c == "\\":
                skip_to = i + 2
            elif c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c == "/" and text[i + 1:i + 2] in ("/", "*"):
            comment, skip_to = "/" + text[i + 1], i + 2
        elif c in "[{":
            depth += 1
            if depth > deepest:
                deepest, where = depth, (line, i - line_start + 1)
                if deepest > MAX_NESTING:
                    break
        elif c in "]}":
            depth -= 1
    return deepest, where[0], where[1]


class _Includes:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: list[Path] = []
        self.total = 0

    def read(self, path: Path, chain: tuple[Path, ...]) -> Any:
        name = str(path)
        via = f" (included from {chain[-1]})" if chain else ""
        try:
            raw = read_capped(path, MAX_FILE_BYTES)
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror or exc}{via}", name) from exc
        except ValueError as exc:
            raise ConfigError(f"{exc}{via}", name) from exc
        self.total += len(raw)
        if self.total > MAX_TOTAL_BYTES:
            raise ConfigError(f"the configuration and its includes are larger than "
                              f"{MAX_TOTAL_BYTES} bytes together", name)
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", name) from exc
        self.files.append(path)
        deepest, deep_line, deep_col = nesting(text)
        if deepest > MAX_NESTING:
            raise ConfigError(f"objects and arrays nested deeper than {MAX_NESTING} levels",
                              name, deep_line, deep_col)
        try:  # most configurations are plain JSON: C-speed, same result
            return json.loads(text)
        except (ValueError, RecursionError):
            pass
        if len(raw) > MAX_JSON5_BYTES:
            raise ConfigError(f"JSON5 that is not plain JSON, larger than {MAX_JSON5_BYTES} bytes: "
                              "the JSON5 parser would take minutes (convert it to plain JSON)", name)
        try:
            return json5.loads(text)
        except RecursionError as exc:  # nesting() bounds it; this is the backstop
            raise ConfigError("nested too deeply to parse", name) from exc
        except ValueError as exc:
            match = _JSON5_POSITION.match(str(exc))
            if match is None:
                raise ConfigError(f"invalid JSON5: {exc}", name) from exc
            line, message, col = match.groups()
            raise ConfigError(f"invalid JSON5: {message}", name, int(line),
                              int(col) if col else 0) from exc

    def process(self, value: Any, chain: tuple[Path, ...]) -> Any:
        if isinstance(value, list):
            return [self.process(item, chain) for item in value]
        if not isinstance(value, dict):
            return value
        rest = {k: self.process(v, chain) for k, v in value.items() if k != INCLUDE_KEY}
        if INCLUDE_KEY not in value:
            return rest
        included = self._include(value[INCLUDE_KEY], chain)
        if not rest:
            return included
        if not isinstance(included, dict):
            raise ConfigError(f"{INCLUDE_KEY} beside other keys must include an object",
                              str(chain[-1]))
        return deep_merge(included, rest)

    def _include(self, spec: Any, chain: tuple[Path, ...]) -> Any:
        if isinstance(spec, str):
            return self._file(spec, chain)
        if isinstance(spec, list):
            merged: Any = {}
            for item in spec:
                if not isinstance(item, str):
                    raise ConfigError(f"{INCLUDE_KEY} list items must be paths (strings), "
                                      f"not {type(item).__name__}", str(chain[-1]))
                merged = deep_merge(merged, self._file(item, chain))
            return merged
        raise ConfigError(f"{INCLUDE_KEY} must be a path or a list of paths", str(chain[-1]))

    def _file(self, spec: str, chain: tuple[Path, ...]) -> Any:
        including = chain[-1]
        target = Path(os.path.normpath(including.parent / spec))
        real = target.resolve()
        if not (target.is_relative_to(self.root) and real.is_relative_to(self.root.resolve())):
            raise ConfigError(f"{INCLUDE_KEY} {spec!r} leaves the configuration directory "
                              f"{self.root}", str(including))
        if real in chain:
            shown = " -> ".join(str(p) for p in (*chain, real))
            raise ConfigError(f"{INCLUDE_KEY} cycle: {shown}", str(including))
        if len(chain) > MAX_INCLUDE_DEPTH:
            raise ConfigError(f"{INCLUDE_KEY} nested deeper than {MAX_INCLUDE_DEPTH} files at "
                              f"{spec!r}", str(including))
        return self.process(self.read(target, chain), (*chain, real))
