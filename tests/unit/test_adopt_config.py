"""openclaw_config: where OpenClaw's configuration is found, and `$include` as OpenClaw merges it."""

from __future__ import annotations

from pathlib import Path

import pytest

from clawpolicy.adopt.openclaw_config import ConfigError, candidates, deep_merge, load, locate

DATA = Path(__file__).resolve().parents[1] / "data" / "openclaw"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_where_openclaw_looks(tmp_path: Path, subtests: pytest.FixtureRequest) -> None:
    home = tmp_path / "home"
    cases = [  # (env, files present, expected)
        ({}, [".openclaw/openclaw.json", ".clawdbot/clawdbot.json"], ".openclaw/openclaw.json"),
        ({}, [".clawdbot/clawdbot.json", ".moltbot/moltbot.json"], ".clawdbot/clawdbot.json"),
        ({}, [".moltbot/moltbot.json"], ".moltbot/moltbot.json"),
        ({}, [".openclaw/clawdbot.json", ".clawdbot/openclaw.json"], ".openclaw/clawdbot.json"),
        ({"OPENCLAW_CONFIG_PATH": "~/custom.json5"}, ["custom.json5", ".openclaw/openclaw.json"],
         "custom.json5"),
        ({"CLAWDBOT_CONFIG_PATH": "~/legacy.json"}, ["legacy.json"], "legacy.json"),
        ({"OPENCLAW_STATE_DIR": "~/state"}, ["state/openclaw.json", ".openclaw/openclaw.json"],
         "state/openclaw.json"),
    ]
    for n, (env, present, expected) in enumerate(cases):
        with subtests.test(msg=f"{env} {present}"):  # type: ignore[attr-defined]
            root = home / str(n)
            for rel in present:
                _write(root / rel, "{}")
            assert locate(None, env={**env, "HOME": str(root)}) == root / expected


def test_openclaw_home_and_missing(tmp_path: Path) -> None:
    assert candidates({"OPENCLAW_HOME": str(tmp_path)})[0] == tmp_path / ".openclaw/openclaw.json"
    with pytest.raises(ConfigError, match="no OpenClaw configuration found"):
        locate(None, env={"HOME": str(tmp_path)})
    with pytest.raises(ConfigError, match="no such file"):
        locate(tmp_path / "nope.json")


def test_include_merges_like_openclaw(tmp_path: Path) -> None:
    _write(tmp_path / "a.json5", "{channels: {slack: {mode: 'socket'}}, list: [1]}")
    _write(tmp_path / "sub/b.json5", "{channels: {discord: {}}, list: [2], $include: './c.json5'}")
    _write(tmp_path / "sub/c.json5", "{gateway: {port: 1}}")
    top = _write(tmp_path / "openclaw.json",
                 "{$include: ['./a.json5', './sub/b.json5'], gateway: {port: 2}, list: [3]}")
    loaded = load(top)
    assert loaded.data == {"channels": {"slack": {"mode": "socket"}, "discord": {}},
                           "list": [1, 2, 3], "gateway": {"port": 2}}
    assert [p.name for p in loaded.files] == ["openclaw.json", "a.json5", "b.json5", "c.json5"]
    assert deep_merge({"a": [1], "b": {"c": 1}}, {"a": [2], "b": {"d": 2}, "__proto__": 1}) == {
        "a": [1, 2], "b": {"c": 1, "d": 2}}


def test_config_errors(tmp_path: Path, subtests: pytest.FixtureRequest) -> None:
    cases = {  # name -> (files, message, line)
        "json5 syntax": ({"openclaw.json": "{\n  a: 1,\n  b: [1,,],\n}"}, "invalid JSON5", 3),
        "cycle": ({"openclaw.json": "{$include: './x.json5'}", "x.json5": "{$include: './openclaw.json'}"},
                  "cycle: ", 0),
        "self": ({"openclaw.json": "{a: {$include: './openclaw.json'}}"}, "cycle", 0),
        "escape": ({"openclaw.json": "{$include: '../outside.json'}"}, "leaves the configuration", 0),
        "missing include": ({"openclaw.json": "{$include: './gone.json'}"}, "cannot read", 0),
        "bad include value": ({"openclaw.json": "{$include: 3}"}, "a path or a list", 0),
        "sibling needs object": ({"openclaw.json": "{$include: './l.json', a: 1}", "l.json": "[1]"},
                                 "must include an object", 0),
        "not an object": ({"openclaw.json": "[1, 2]"}, "not an object", 0),
        "depth": ({"openclaw.json": "{$include: './d1.json'}",
                   **{f"d{i}.json": f"{{$include: './d{i + 1}.json'}}" for i in range(1, 12)},
                   "d12.json": "{}"}, "deeper than 10", 0),
    }
    for name, (files, message, line) in cases.items():
        with subtests.test(msg=name):  # type: ignore[attr-defined]
            root = tmp_path / name.replace(" ", "-") / "cfg"
            for rel, text in files.items():
                _write(root / rel, text)
            with pytest.raises(ConfigError) as info:
                load(root / "openclaw.json")
            assert message in info.value.message
            if line:
                assert info.value.line == line and info.value.col > 0
                assert str(info.value).startswith(f"{root / 'openclaw.json'}:{line}:")


def test_sample_with_include() -> None:
    loaded = load(DATA / "tailnet-server/openclaw.json")
    assert set(loaded.data["channels"]) == {"defaults", "slack", "discord", "whatsapp"}
    assert loaded.data["gateway"]["bind"] == "tailnet"


# ------------------------------------------------------------------ hostile configurations (issue 16)


def test_only_regular_files_are_read(tmp_path: Path, subtests: pytest.FixtureRequest) -> None:
    """A FIFO (which would hang a plain open), devices (/dev/zero: endless), directories and
    sockets are refused, as the configuration and as an `$include`, without blocking."""
    import os
    import socket

    root = tmp_path / "cfg"
    root.mkdir()
    os.mkfifo(root / "fifo")
    (root / "dir").mkdir()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "sock"))
        os.symlink("/dev/zero", root / "zero")
        os.symlink("/dev/null", root / "null")
        for name in ("fifo", "dir", "sock", "zero", "null"):
            with subtests.test(msg=name):  # type: ignore[attr-defined]
                top = _write(root / f"inc-{name}.json", f"{{$include: './{name}'}}")
                with pytest.raises(ConfigError, match="not a regular file|cannot read|leaves the"):
                    load(top)
                with pytest.raises(ConfigError):
                    load(locate(root / name))


def test_size_is_checked_before_reading(tmp_path: Path) -> None:
    """A sparse 300 MB file is refused on its size, not read; a file that grows past the cap
    while read (or lies about its size, as /proc files do) is refused at the cap."""
    import resource

    from clawpolicy.adopt import openclaw_config

    big = tmp_path / "big.json"
    with big.open("wb") as fh:
        fh.truncate(300 * 1024 * 1024)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ConfigError, match="larger than"):
        load(big)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024  # KiB
    with pytest.raises(ValueError, match="larger than 8 bytes"):
        openclaw_config.read_capped(Path("/proc/self/status"), 8)


def test_include_fan_out_is_bounded(tmp_path: Path) -> None:
    """Sibling includes of one big file would multiply it: the total read is capped."""
    from clawpolicy.adopt import openclaw_config

    _write(tmp_path / "big.json", '{"a": [' + "1," * (openclaw_config.MAX_FILE_BYTES // 2 - 10) + "1]}")
    top = _write(tmp_path / "openclaw.json", "{$include: [" + "'./big.json'," * 20 + "]}")
    with pytest.raises(ConfigError, match="larger than .* together"):
        load(top)


def test_nesting_is_bounded_before_parsing(tmp_path: Path, subtests: pytest.FixtureRequest) -> None:
    cases = {
        "3000 arrays": ("[" * 3000 + "]" * 3000, 1),
        "3000 objects": ("{a:" * 3000 + "1" + "}" * 3000, 1),
        "unclosed": ("{\n" + "[\n" * 100_000, 65),
        "mixed": ("{a: [{b: " * 40, 1),
    }
    for name, (text, line) in cases.items():
        with subtests.test(msg=name):  # type: ignore[attr-defined]
            path = _write(tmp_path / f"{name}.json5", text)
            with pytest.raises(ConfigError, match="nested deeper than 64") as info:
                load(path)
            assert info.value.line == line and info.value.col > 0
    fine = _write(tmp_path / "strings.json5",
                  "{a: '" + "[" * 500 + "', // " + "{" * 500 + "\n /* " + "[" * 500 + " */ b: \"\\\"[[[\"}")
    assert load(fine).data == {"a": "[" * 500, "b": '"[[['}


def test_json5_parsing_time_is_bounded(tmp_path: Path) -> None:
    """Plain JSON of any allowed size parses at C speed; JSON5-only text is refused above
    what the pure-Python parser reads in seconds."""
    from clawpolicy.adopt import openclaw_config

    plain = _write(tmp_path / "plain.json", '{"a": "' + "x" * (openclaw_config.MAX_FILE_BYTES - 100) + '"}')
    assert len(load(plain).data["a"]) == openclaw_config.MAX_FILE_BYTES - 100
    slow = _write(tmp_path / "slow.json5", "{a: '" + "x" * (openclaw_config.MAX_JSON5_BYTES + 1) + "'}")
    with pytest.raises(ConfigError, match="convert it to plain JSON"):
        load(slow)
