"""Shared pieces of the fuzz targets for untrusted text (logs, flows, OpenClaw configs, test
names): a budget that stays small in the suite and grows on demand, and strategies for the
values attackers put into fields.

`CLAWPOLICY_FUZZ_EXAMPLES=N` runs every target of these files with N examples, randomly
(not derandomized), e.g. `CLAWPOLICY_FUZZ_EXAMPLES=20000 pytest tests/fuzz -k operate
--hypothesis-show-statistics`; without it each target runs a few seconds, derandomized, so
a CI failure reproduces locally."""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Callable
from typing import TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from clawpolicy.printable import HIDDEN_CATEGORIES

T = TypeVar("T")
EXAMPLES = int(os.environ.get("CLAWPOLICY_FUZZ_EXAMPLES", "0") or 0)


def budget(default: int) -> Callable[[T], T]:
    """The suite's few seconds by default, `CLAWPOLICY_FUZZ_EXAMPLES` on demand."""
    decorate: Callable[[T], T] = settings(max_examples=EXAMPLES or default, deadline=None, derandomize=not EXAMPLES,
                    database=None, suppress_health_check=list(HealthCheck))
    return decorate


# Characters that act on a terminal, on reading order, or on encoders and XML parsers.
HIDDEN = ["\x1b", "\x1b[2J", "\x1b]0;t\x07", "\n", "\r", "\t", "\x00", "\x07", "\x0b", "\x7f", "\x85",
          "\x9b", "\u2028", "\u2029", "\u202e", "\u2066", "\u200b", "\ufeff", "\ufffe", "\uffff",
          "\ud800", "\udfff", "\U000e0041", "\U0001f600"]
# Text that is structure in our outputs: policy syntax, Markdown, HTML, CSV, JSON.
STRUCTURE = [",", " ", "}", "{", '"', "'", "|", "`", "<", ">", "&", "#", "*", "[", "](", "\\", ";", "=",
             "any", "openai", "@x", " port 1-65535/tcp", " reason \"x\"", "\n}\npolicy evil {\n",
             "ok   ", "<img src=x>", ":", "%", "/", ".", "-", "_"]
NUMBERS = ["0", "1", "-1", "22", "443", "65535", "65536", "4294967295", "4294967296", "9" * 20, "9" * 5000,
           "1e400", "NaN", "0x10", "00443", "٤٤٣", "", "253402300799", "253402300800", "99999999999999"]

hostile_char = st.sampled_from(HIDDEN + STRUCTURE) | st.characters()
hostile_text = st.lists(hostile_char | st.sampled_from(["a", "b", "example", "."]), max_size=12).map("".join)
numbers = st.sampled_from(NUMBERS) | st.integers(-(2**70), 2**70).map(str)
names = st.sampled_from(["api.example.com", "a.b.example.org", "API.Example.COM.", "xn--bcher-kva.example",
                         "bücher.example", "localhost", "x", "a..b", "-a.example", "a" * 64 + ".example"])
addresses = st.sampled_from(["192.0.2.1", "10.0.0.5", "2001:db8::1", "2001:0db8:0000::0001", "::ffff:10.1.2.3",
                             "fe80::1%eth0", "127.0.0.1", "::1", "0.0.0.0", "224.0.0.251", "ff02::fb",
                             "300.1.1.1", "1.2.3", "10.0.0.0/8"])
peers = names | addresses | hostile_text | st.tuples(names, hostile_text).map("".join)


def printable_lines(text: str) -> bool:
    """Every character visible (line breaks only between lines): what a terminal report holds."""
    return all(c.isprintable() for c in text.replace("\n", ""))


def inert_lines(text: str) -> bool:
    """No control, format, surrogate or separator character (line breaks only between
    lines): what a Markdown report holds (`clawpolicy.markdown`)."""
    return not any(unicodedata.category(c) in HIDDEN_CATEGORIES for c in text.replace("\n", ""))
