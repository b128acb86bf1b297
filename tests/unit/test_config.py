"""The controller's config: a TOML file plus IDC_HA_* environment overrides; bad input names the field and the fix."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from idc_ha.errors import ConfigError
from idc_ha.model.config import Config, load_config
from idc_ha.model.problems import Problem

from .builders import entry, layout, topology

# -- config: TOML file plus IDC_HA_* environment ----------------------------------------------------


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    return json.dumps(str(v))  # TOML basic strings accept JSON string escapes


def to_toml(data: dict[str, Any]) -> str:
    """A small TOML writer for what a config holds: scalars, sections, arrays of tables."""
    lines = [f"{k} = {toml_value(v)}" for k, v in data.items() if not isinstance(v, dict | list)]
    for k, v in data.items():
        if isinstance(v, dict):
            lines += ["", f"[{k}]", *(f"{kk} = {toml_value(vv)}" for kk, vv in v.items() if vv is not None)]
    for k, v in data.items():
        if isinstance(v, list):
            for item in v:
                lines += [
                    "",
                    f"[[{k}]]",
                    *(f"{kk} = {toml_value(vv)}" for kk, vv in item.items() if vv is not None),
                ]
    return "\n".join(lines) + "\n"


def config_data(**top: Any) -> dict[str, Any]:
    """A valid config: the home layout, a state dir, MQTT and a password file next to the config."""
    data: dict[str, Any] = {
        "cluster": "test",
        "state_dir": "state",
        "credentials": {"user": "idcha", "password_file": "secrets/controller.password"},
        "mqtt": {"host": "broker.example", "port": 1883},
        **{k: v for k, v in layout().items() if k != "cluster"},
    }
    data.update(top)
    return data


PASSWORD = "s3cret-Pa55"


@pytest.fixture(autouse=True)
def _no_idc_ha_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in list(os.environ):
        if k.upper().startswith("IDC_HA_"):
            monkeypatch.delenv(k)


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    d = tmp_path / "etc"
    (d / "secrets").mkdir(parents=True)
    (d / "secrets" / "controller.password").write_text(PASSWORD + "\n")
    return d


def write(config_dir: Path, data: dict[str, Any]) -> Path:
    path = config_dir / "idc-ha.toml"
    path.write_text(to_toml(data))
    return path


def problems_of(e: pytest.ExceptionInfo[ConfigError]) -> dict[str, Problem]:
    return {p.field: p for p in e.value.problems}


def test_a_valid_file_loads(config_dir: Path) -> None:
    """A valid TOML file gives a Config whose topology is the declared layout and whose paths are resolved."""
    cfg = load_config(write(config_dir, config_data()))
    assert cfg.topology == topology()
    assert cfg.state_dir == config_dir.resolve() / "state"
    assert cfg.source == (config_dir / "idc-ha.toml").resolve()
    assert cfg.mqtt.host == "broker.example" and cfg.mqtt.port == 1883
    assert cfg.credentials.password is not None
    assert cfg.credentials.password.get_secret_value() == PASSWORD


def test_password_file_is_read_relative_to_the_config_file(
    config_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative password_file is found next to the config, whatever the working directory."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(write(config_dir, config_data()))
    assert cfg.credentials.password is not None
    assert cfg.credentials.password.get_secret_value() == PASSWORD


def test_the_password_never_shows_in_repr_or_str(config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets are held as SecretStr: repr, str and a JSON dump of the config never show them."""
    monkeypatch.setenv("IDC_HA_MQTT__PASSWORD", "mqtt-" + PASSWORD)
    cfg = load_config(write(config_dir, config_data()))
    for text in (
        repr(cfg),
        str(cfg),
        repr(cfg.credentials),
        str(cfg.credentials),
        repr(cfg.mqtt),
        cfg.model_dump_json(),
    ):
        assert PASSWORD not in text


@pytest.mark.parametrize(
    ("env", "value", "read"),
    [
        ("IDC_HA_STATE_DIR", "/var/lib/idc-ha-test", lambda c: c.state_dir == Path("/var/lib/idc-ha-test")),
        ("IDC_HA_MQTT__PORT", "2883", lambda c: c.mqtt.port == 2883 and c.mqtt.host == "broker.example"),
        ("IDC_HA_MQTT__ENABLED", "false", lambda c: c.mqtt.enabled is False),
        (
            "IDC_HA_CREDENTIALS__PASSWORD",
            "from-env",
            lambda c: c.credentials.password.get_secret_value() == "from-env" and c.credentials.user == "idcha",
        ),
        ("IDC_HA_PROBE__INTERVAL_S", "0.5", lambda c: c.probe.interval_s == 0.5),
        ("IDC_HA_CLUSTER", "other", lambda c: c.cluster == "other" and c.topology.cluster == "other"),
    ],
    ids=[
        "state-dir",
        "mqtt-port-merges-with-file",
        "mqtt-enabled",
        "password-beats-file",
        "probe",
        "cluster",
    ],
)
def test_environment_overrides_the_file(
    config_dir: Path, monkeypatch: pytest.MonkeyPatch, env: str, value: str, read: Callable[[Config], bool]
) -> None:
    """An IDC_HA_* variable (``__`` between levels) beats the file, leaving the rest of its section."""
    monkeypatch.setenv(env, value)
    assert read(load_config(write(config_dir, config_data())))


def test_environment_supplies_a_password_the_file_lacks(config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no password in the file, IDC_HA_CREDENTIALS__PASSWORD is enough."""
    monkeypatch.setenv("IDC_HA_CREDENTIALS__PASSWORD", "from-env")
    cfg = load_config(write(config_dir, config_data(credentials={"user": "idcha"})))
    assert cfg.credentials.password is not None
    assert cfg.credentials.password.get_secret_value() == "from-env"


@pytest.mark.parametrize(
    ("change", "field", "fix_word"),
    [
        ({"colour": "blue"}, "colour", "remove"),
        ({"mqtt": {"host": "h", "prot": 1883}}, "mqtt.prot", "remove"),
        ({"mqtt": {"port": 0}}, "mqtt.port", "valid value"),
        ({"mqtt": {"port": "many"}}, "mqtt.port", "valid value"),
        ({"probe": {"interval_s": -1}}, "probe.interval_s", "valid value"),
        ({"cluster": "bad name!"}, "cluster", "valid value"),
    ],
    ids=[
        "unknown-top-key",
        "unknown-nested-key",
        "port-zero",
        "port-not-a-number",
        "negative-interval",
        "bad-cluster-name",
    ],
)
def test_bad_settings_raise_naming_the_field(
    config_dir: Path, change: dict[str, Any], field: str, fix_word: str
) -> None:
    """Unknown keys and bad values raise ConfigError with a problem naming the field and a fix."""
    with pytest.raises(ConfigError) as e:
        load_config(write(config_dir, config_data(**change)))
    found = problems_of(e)
    assert field in found, found
    assert fix_word in found[field].fix


def test_bad_node_value_names_its_position(config_dir: Path) -> None:
    """A bad value inside an array of tables is named with its index, e.g. nodes[0].port."""
    data = config_data()
    data["nodes"][0]["port"] = 70000
    with pytest.raises(ConfigError) as e:
        load_config(write(config_dir, data))
    assert "nodes[0].port" in problems_of(e)


def test_missing_required_setting_says_to_add_it(config_dir: Path) -> None:
    """A missing required setting is a problem whose fix says to add it."""
    data = config_data()
    del data["state_dir"]
    with pytest.raises(ConfigError) as e:
        load_config(write(config_dir, data))
    assert problems_of(e)["state_dir"].fix == "add state_dir to the config file"


def test_bad_environment_value_names_the_field(config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A malformed IDC_HA_* value is refused like a bad value in the file."""
    monkeypatch.setenv("IDC_HA_MQTT__PORT", "abc")
    with pytest.raises(ConfigError) as e:
        load_config(write(config_dir, config_data()))
    assert "mqtt.port" in problems_of(e)


def test_layout_errors_are_refused_unless_allowed(config_dir: Path) -> None:
    """A config whose layout has errors raises with the cross-check problems; allow_problems hands it back."""
    data = config_data()
    entry(data, "nodes", "shard1-rem")["upstream"] = "shard1-m"
    path = write(config_dir, data)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "nodes[9] (shard1-rem).upstream" in problems_of(e)
    assert load_config(path, allow_problems=True).topology.node_by_name["shard1-rem"].upstream == "shard1-m"


def test_no_password_at_all_is_a_problem(config_dir: Path) -> None:
    """Without password, password_file or environment, the config is refused naming credentials.password."""
    with pytest.raises(ConfigError) as e:
        load_config(write(config_dir, config_data(credentials={"user": "idcha"})))
    assert "IDC_HA_CREDENTIALS__PASSWORD" in problems_of(e)["credentials.password"].fix


def test_unreadable_password_file_is_a_problem(config_dir: Path) -> None:
    """A password_file that does not exist is refused naming credentials.password_file."""
    with pytest.raises(ConfigError) as e:
        load_config(write(config_dir, config_data(credentials={"password_file": "nope.txt"})))
    assert "nope.txt" in problems_of(e)["credentials.password_file"].message


def test_missing_or_malformed_file(tmp_path: Path) -> None:
    """A missing file and invalid TOML are ConfigErrors too, never a raw OSError or TOMLDecodeError."""
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "absent.toml")
    assert "--config" in problems_of(e)
    bad = tmp_path / "bad.toml"
    bad.write_text("cluster = \n")
    with pytest.raises(ConfigError) as e2:
        load_config(bad)
    assert "not valid TOML" in e2.value.problems[0].message
