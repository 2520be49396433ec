"""Fuzzing `init --from-openclaw` (issue 16): whatever the OpenClaw configuration holds
(hostile ids, URLs, ports, binds, deep or broken JSON5, includes of odd files), reading it
either fails with a `ConfigError` or gives a starter policy that loads, compiles for every
default target and passes its own tests (`starter.check`, the gate `init` uses), and whose
comments and strings hold no raw control character. Budget: see hostile.py."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

from hostile import budget, hostile_text, numbers, printable_lines
from hypothesis import given
from hypothesis import strategies as st

from clawpolicy.adopt import deployment, openclaw_config, starter

WORKDIR = Path(tempfile.mkdtemp(prefix="clawpolicy-init-fuzz-"))
atexit.register(shutil.rmtree, WORKDIR, True)
os.mkfifo(WORKDIR / "fifo")
(WORKDIR / "dir").mkdir(exist_ok=True)

ids = st.sampled_from(["openai", "anthropic", "ollama", "slack", "telegram", "signal", "acme", "matrix",
                       "mattermost", "defaults"]) | hostile_text
urls = (st.sampled_from(["https://api.example.com/v1", "http://[fe80::1%25eth0]:8080", "http://[::ffff:10.1.2.3]",
                         "http://10.0.0.5:0", "http://[2001:db8::5]:99999", "http://localhost:1", "wss://a.example",
                         "ftp://x.example", "https://Bücher.example", "http://[::1]:1", "http://0.0.0.0", "//x",
                         "http://224.0.0.251:5353", "https://a.example:8443/x?y#z", "http://[fd00::1%eth0]/"])
        | hostile_text | st.tuples(st.sampled_from(["https://", "http://["]), hostile_text).map("".join))
scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | hostile_text | numbers


@st.composite
def config(draw: st.DrawFn) -> object:
    providers = draw(st.dictionaries(ids, st.fixed_dictionaries({}, optional={"baseUrl": urls | scalars}), max_size=3))
    channels = draw(st.dictionaries(ids, st.fixed_dictionaries({}, optional={
        "baseUrl": urls, "homeserver": urls, "enabled": st.booleans() | scalars,
        "accounts": st.dictionaries(hostile_text, st.fixed_dictionaries({"serverUrl": urls}), max_size=2)}), max_size=3))
    gateway = draw(st.fixed_dictionaries({}, optional={
        "port": st.integers(-5, 70_000) | scalars, "bind": st.sampled_from(["loopback", "lan", "tailnet", "auto", "custom"]) | scalars,
        "customBindHost": hostile_text | urls, "tailscale": st.fixed_dictionaries({"mode": st.sampled_from(["serve", "funnel"]) | scalars})}))
    refs = st.lists(st.tuples(ids, hostile_text).map("/".join), max_size=3)
    doc = {"models": {"providers": providers}, "channels": channels, "gateway": gateway,
           "agents": {"defaults": {"model": draw(st.fixed_dictionaries({"primary": ids.map(lambda i: f"{i}/m"),
                                                                        "fallbacks": refs}))}},
           "discovery": {"mdns": {"mode": draw(st.sampled_from(["off", "minimal", "full"]) | scalars)}},
           "update": {"checkOnStart": draw(st.booleans() | scalars)}}
    return draw(st.sampled_from([doc, doc["models"], [doc], doc]))


@st.composite
def config_text(draw: st.DrawFn) -> str:
    text = json.dumps(draw(config()), allow_nan=True)
    mutation = draw(st.sampled_from(["none", "none", "json5", "deep", "include", "cut", "char"]))
    if mutation == "json5":  # unquoted keys, single quotes, comments, trailing commas
        text = "// c\n" + text.replace('"models"', "models").replace('"gateway"', "/* x */ 'gateway'") + "\n"
    elif mutation == "deep":
        n = draw(st.sampled_from([63, 65, 3000, 100_000]))
        text = text[:-1] + (', "x": ' if len(text) > 2 else '"x": ') + draw(st.sampled_from(["[", "{a:", "[{b:"])) * n + "}"
    elif mutation == "include":
        target = draw(st.sampled_from(["fifo", "dir", "/dev/zero", "../x", "self.json", "missing", "sub/../fifo"]))
        text = text[:-1] + (', "$include": ' if len(text) > 2 else '"$include": ') + json.dumps(target) + "}"
    elif mutation == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    elif mutation == "char":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(hostile_text) + text[at:]
    return text


@given(config_text(), st.none() | st.sampled_from(["openclaw", "1000"]))
@budget(40)
def test_openclaw_configs_to_starter(text: str, user: str | None) -> None:
    path = WORKDIR / "self.json"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        loaded = openclaw_config.load(path)
    except openclaw_config.ConfigError as exc:
        assert exc.message
        return
    out = starter.render(deployment.read_deployment(loaded.data), name="fuzzed", user=user,
                         config_files=loaded.files)
    assert printable_lines(out)
    assert starter.check(out, "fuzzed") == [], out
