"""The version clawpolicy reports: floor 1, for `--version` and SARIF's tool driver.

Read from the installed distribution's metadata (`clawpolicy-compiler`: the name `clawpolicy`
on the public index is another project, so asking for that name could report a stranger's
version), falling back to the package's own ``__version__`` when it runs from a source tree
without metadata. ``importlib.metadata`` is imported only when asked, to keep start-up light.
"""

from __future__ import annotations

DISTRIBUTION = "clawpolicy-compiler"


def version() -> str:
    from importlib import metadata

    from clawpolicy import __version__

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return __version__
