"""Commands the operator configures (a machine's fence command, later the hooks): an argv whose
items may name facts of the event in braces, e.g. ``["/usr/local/bin/fence", "{address}", "{port}"]``.

An argv, not a shell line: nothing is split or interpreted, so a node name can never inject a
word. The placeholders are checked when the config is loaded (``unknown_placeholders``), so a
typo is an error in ``idc-ha check``, not a failed fence on the worst day.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence

# What a fence command may name: the node to fence and where it runs.
FENCE_FIELDS = ("cluster", "shard", "node", "machine", "idc", "address", "port")


def unknown_placeholders(argv: Sequence[str], allowed: Sequence[str]) -> list[str]:
    """The placeholders in ``argv`` that are not in ``allowed`` (or are malformed), in order."""
    bad: list[str] = []
    for item in argv:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(item) if f is not None]
        except ValueError as e:  # a lone brace
            bad.append(f"{item!r} ({e}; write {{{{ or }}}} for a literal brace)")
            continue
        bad += [f"{{{f}}}" for f in fields if f not in allowed]
    return bad


def expand(argv: Sequence[str], values: Mapping[str, object]) -> list[str]:
    """``argv`` with each placeholder replaced by its value (checked beforehand: none is unknown)."""
    return [item.format_map(values) for item in argv]
