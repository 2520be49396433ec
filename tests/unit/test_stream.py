"""`compile -o -` (stream.py): one target to stdout, a YAML stream for kubectl, or a clear
refusal; never a file written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from clawpolicy.cli import main
from clawpolicy.stream import StreamError, to_stream

REPO = Path(__file__).resolve().parents[2]
K8S = str(REPO / "examples/openclaw-k8s.claw")
SERVER = str(REPO / "examples/openclaw-server.claw")


def test_shapes(subtests: pytest.Subtests) -> None:
    with subtests.test("one file: its bytes"):
        assert to_stream({"p/nftables/ruleset.nft": b"table x\n"}) == b"table x\n"
    kustomized = {"p/k8s/kustomization.yaml": b"resources:\n- b.yaml\n- a.yaml\n",
                  "p/k8s/a.yaml": b"kind: A\n", "p/k8s/b.yaml": b"kind: B",
                  "p/k8s/README.md": b"# not a manifest\n"}
    with subtests.test("kustomization: its resources in its order"):
        text = to_stream(kustomized).decode()
        assert text == "---\n# Source: p/k8s/b.yaml\nkind: B\n---\n# Source: p/k8s/a.yaml\nkind: A\n"
    # (case, outputs, fragment of the refusal)
    refused = [
        ("several files", {"p/seccomp/profile.json": b"{}", "p/seccomp/f.bpf": b"\0"}, "-o DIR"),
        ("two targets", {"p/a/x": b"", "p/b/y": b""}, "p/a, p/b"),
        ("nothing", {}, "produced nothing"),
        ("a kustomization naming a missing file", {"p/k8s/kustomization.yaml": b"resources: [x.yaml]",
                                                   "p/k8s/y.yaml": b""}, "did not write"),
    ]
    for case, outputs, fragment in refused:
        with subtests.test(case):
            with pytest.raises(StreamError, match=fragment.replace(".", r"\.")):
                to_stream(outputs)


def test_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes],
             subtests: pytest.Subtests) -> None:
    monkeypatch.chdir(tmp_path)
    with subtests.test("k8s manifests for kubectl apply -f -"):
        assert main(["compile", K8S, "-t", "k8s", "-o", "-", "--no-config"]) == 0
        docs = list(yaml.safe_load_all(capsysbinary.readouterr().out))
        assert [d["kind"] for d in docs] == ["NetworkPolicy"]
    with subtests.test("cilium"):
        assert main(["compile", K8S, "-t", "k8s", "--k8s-flavor", "cilium", "-o", "-"]) == 0
        assert [d["kind"] for d in yaml.safe_load_all(capsysbinary.readouterr().out)] == [
            "CiliumNetworkPolicy"]
    with subtests.test("one file"):
        assert main(["compile", SERVER, "-t", "nftables", "-o", "-"]) == 0
        assert capsysbinary.readouterr().out.startswith(b"#")
    with subtests.test("refused"):
        assert main(["compile", SERVER, "-t", "seccomp", "-o", "-"]) == 1
        err = capsysbinary.readouterr().err.decode()
        assert "openclaw-server/seccomp is 6 files" in err and "-o DIR" in err
        assert main(["compile", SERVER, "-o", "-"]) == 1
        assert "one policy's one target" in capsysbinary.readouterr().err.decode()
    with subtests.test("--check needs a directory"):
        assert main(["compile", SERVER, "-t", "nftables", "-o", "-", "--check"]) == 2
    assert list(tmp_path.iterdir()) == []  # nothing written, ever
