"""The policy file: shipped defaults, unknown keys and out-of-range values."""

from __future__ import annotations

from pathlib import Path

import pytest

from idc_ha.errors import ConfigError
from idc_ha.model.policy import Policy, load_policy

SHIPPED = Path(__file__).resolve().parents[2] / "policies" / "default.toml"


def test_the_shipped_policy_is_the_documented_default() -> None:
    """policies/default.toml shows every setting with its default: loading it equals Policy()."""
    assert load_policy(SHIPPED) == Policy()


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[rules]\nauto_idc_failovr = false\n", "policy rules.auto_idc_failovr"),
        ("[detection]\nconfirm_refused_s = -1\n", "policy detection.confirm_refused_s"),
        ("[detection]\nidc_down_share = 0\n", "policy detection.idc_down_share"),
        ("[detection]\nmin_rounds = 0\n", "policy detection.min_rounds"),
        ("[alerts]\nrepeat_s = 0.5\n", "policy alerts.repeat_s"),
        ("[surprise]\nx = 1\n", "policy surprise"),
    ],
    ids=[
        "misspelt-switch",
        "negative-confirm",
        "zero-share",
        "zero-rounds",
        "repeat-too-short",
        "unknown-section",
    ],
)
def test_a_bad_policy_names_the_field(tmp_path: Path, text: str, field: str) -> None:
    """A misspelt switch or an out-of-range value is refused naming the field, never silently ignored."""
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_policy(path)
    assert field in {p.field for p in e.value.problems}
    assert all(p.fix for p in e.value.problems)


def test_a_partial_policy_keeps_the_other_defaults(tmp_path: Path) -> None:
    """Settings not named in the file keep their defaults."""
    path = tmp_path / "policy.toml"
    path.write_text("[rules]\nauto_idc_failover = false\n")
    p = load_policy(path)
    assert p.rules.auto_idc_failover is False
    assert p.detection == Policy().detection


def test_a_missing_or_malformed_policy_is_a_config_error(tmp_path: Path) -> None:
    """A missing file or broken TOML raises ConfigError, not OSError or TOMLDecodeError."""
    with pytest.raises(ConfigError):
        load_policy(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[rules\n")
    with pytest.raises(ConfigError):
        load_policy(bad)
