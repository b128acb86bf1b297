"""Hypothesis settings for the unit suite.

No deadline: a property test must fail on a wrong answer, never on a slow machine. Set
``HYPOTHESIS_PROFILE=thorough`` for a longer search (ten times the examples) before a release.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("unit", deadline=None)
settings.register_profile("thorough", deadline=None, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "unit"))
