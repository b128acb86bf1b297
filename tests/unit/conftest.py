"""Hypothesis settings for the unit suite.

No deadline: a property test must fail on a wrong answer, never on a slow machine. Set
``HYPOTHESIS_PROFILE=thorough`` for a longer search (ten times the examples) before a release.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from idc_ha.coord.store import FileStore

settings.register_profile("unit", deadline=None)
settings.register_profile("thorough", deadline=None, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "unit"))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FileStore]:
    """A file store in a fresh directory, released after the test."""
    s = FileStore(tmp_path / "state")
    yield s
    s.release()


def files(d: Path) -> list[str]:
    """Every file and directory under d, relative, sorted."""
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))
