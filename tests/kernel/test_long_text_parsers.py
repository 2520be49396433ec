"""The real parsers read what compile writes from 16 KiB of hostile text (issue 16, item 19):
apparmor_parser compiles the profile and names exactly its one profile, nft checks the
ruleset (dry run, as `compile --validate` does), and dnsmasq --test reads the fragment without
finding an option in a comment. tests/unit/test_long_text.py checks the limits themselves."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clawpolicy.compiler import compile_paths

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_long_text import SCOPES, long_policy  # noqa: E402

pytestmark = pytest.mark.root


@pytest.mark.skipif(shutil.which("apparmor_parser") is None and not Path("/usr/sbin/apparmor_parser").exists(),
                    reason="apparmor_parser not installed")
def test_compile_validate_passes_long_text(tmp_path: Path) -> None:
    src = tmp_path / "long.claw"
    src.write_text(long_policy(SCOPES["host"][0]), encoding="utf-8")
    result = compile_paths([src], SCOPES["host"][1], validate=True, explicit=True)
    assert result.ok, [d.message[:300] for d in result.diagnostics]
    tools = {line.split(": ")[1] for line in result.validations}
    assert {"apparmor_parser", "nft -c"} <= tools, result.validations
    if shutil.which("dnsmasq"):
        assert "dnsmasq --test" in tools
    assert all(line.endswith(": ok") or "checked as uid 0" in line for line in result.validations)


def test_compile_validate_catches_a_broken_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check can fail: a profile with an unbalanced brace is rejected by the parser."""
    from clawpolicy.backends import apparmor
    real = apparmor.render
    monkeypatch.setattr(apparmor, "render", lambda *a: real(*a).replace("abi <abi/", "{ abi <abi/", 1))
    src = tmp_path / "broken.claw"
    src.write_text('policy broken {\n files deny ~/.ssh reason "keys"\n}\n')
    result = compile_paths([src], ["apparmor"], validate=True, explicit=True)
    assert not result.ok
    assert any("rejected by apparmor_parser" in d.message for d in result.diagnostics)


@pytest.mark.skipif(shutil.which("dnsmasq") is None, reason="dnsmasq not installed")
def test_dnsmasq_reads_the_long_text_fragment(tmp_path: Path) -> None:
    src = tmp_path / "long.claw"
    src.write_text(long_policy(SCOPES["host"][0]), encoding="utf-8")
    result = compile_paths([src], ["dnsmasq"], explicit=True)
    (fragment,) = [data for rel, data in result.outputs.items() if "/dnsmasq/" in rel]
    conf = tmp_path / "fragment.conf"
    conf.write_bytes(fragment)
    proc = subprocess.run([shutil.which("dnsmasq") or "dnsmasq", "--test", f"--conf-file={conf}"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in fragment.decode().splitlines() if line and not line.startswith("#")]
    assert not any(line.startswith("address=/evil") for line in lines)
