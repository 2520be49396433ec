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
