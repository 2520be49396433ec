"""Argument checks of `compile` that the project config (config.py) applies to its values too,
so a bad value reads the same from either; a module of their own so config need not import
the command (and the command, config)."""

from __future__ import annotations

import argparse

from clawpolicy.kubernetes import namespace_problem, parse_selector


def k8s_selector(text: str) -> tuple[tuple[str, str], ...]:
    labels, problems = parse_selector(text)
    if problems:
        raise argparse.ArgumentTypeError("; ".join(problems) + " (write app=openclaw[,key=value])")
    return labels


def k8s_namespace(text: str) -> str:
    problem = namespace_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def dns_upstream(text: str) -> str:
    from clawpolicy.dnsgate.upstreams import parse_address
    try:
        parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
    return text


def systemd_unit(text: str) -> str:
    from clawpolicy.backends.systemd import UNIT_NAME

    if not UNIT_NAME.match(text):
        raise argparse.ArgumentTypeError(f"{text!r}: a service unit name (letters, digits, "
                                         "':_.\\@-', ending in .service)")
    return text
