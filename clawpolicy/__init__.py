"""clawpolicy: one egress/ingress policy for an AI agent, compiled into every enforcement point.

``__version__`` is the one place the version is written: pyproject.toml reads it at build time,
and `clawpolicy.version` falls back to it where no distribution metadata is installed.
"""

__version__ = "0.1.0"
