"""`compile -o -`: one target's artifacts as one stream for a pipe (`| kubectl apply -f -`).

Floor 3, beside write.py (which puts the same outputs into files). A pipe carries one
thing, so the choice is made per shape, never by guessing:
- one artifact: its bytes, unchanged;
- a directory that a `kustomization.yaml` describes (the k8s target): the resources it lists,
  in its order, as one YAML stream (`---` between documents, each preceded by a comment
  naming its file), which is what `kubectl apply -f -` reads; the kustomization itself and
  the files it does not list (README, the pod patch to merge by hand) stay out;
- anything else (seccomp's BPF files, AppArmor's profile plus its operator resource):
  refused, naming the files, since no reader of a pipe could take them apart again.
"""

from __future__ import annotations

from collections.abc import Mapping

import yaml

KUSTOMIZATION = "kustomization.yaml"


class StreamError(Exception):
    """The outputs cannot go to stdout as one stream (the message says why and what to do)."""


def to_stream(outputs: Mapping[str, bytes]) -> bytes:
    """`outputs`: "<policy>/<target>/<path>" -> bytes, as `compiler.compile_paths` returns."""
    dirs = sorted({"/".join(rel.split("/", 2)[:2]) for rel in outputs})
    if len(dirs) != 1:
        shown = ", ".join(dirs) or "nothing"
        raise StreamError(f"-o - writes one policy's one target, but this compile produced {shown}; "
                          "name one policy file and one --target")
    prefix = dirs[0] + "/"
    files = {rel.removeprefix(prefix): data for rel, data in outputs.items()}
    if len(files) == 1:
        return next(iter(files.values()))
    if KUSTOMIZATION in files:
        return _kustomized(prefix, files)
    raise StreamError(f"{dirs[0]} is {len(files)} files ({', '.join(sorted(files))}): no single "
                      "stream holds them; write them with -o DIR")


def _kustomized(prefix: str, files: Mapping[str, bytes]) -> bytes:
    try:
        doc = yaml.safe_load(files[KUSTOMIZATION])
    except yaml.YAMLError as exc:  # our own output: a bug, said plainly
        raise StreamError(f"{prefix}{KUSTOMIZATION} does not parse: {exc}") from None
    resources = doc.get("resources") if isinstance(doc, dict) else None
    if not isinstance(resources, list) or not all(isinstance(r, str) and r in files
                                                  for r in resources):
        raise StreamError(f"{prefix}{KUSTOMIZATION} lists resources this compile did not write")
    parts = []
    for name in resources:
        body = files[name].decode("utf-8")
        parts.append(f"---\n# Source: {prefix}{name}\n{body}{'' if body.endswith(chr(10)) else chr(10)}")
    return "".join(parts).encode("utf-8")
