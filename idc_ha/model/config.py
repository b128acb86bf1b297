"""The controller's config: a TOML file, with ``IDC_HA_*`` environment variables taking precedence.

Environment names follow the file's structure with ``__`` between levels, e.g.
``IDC_HA_STATE_DIR``, ``IDC_HA_CREDENTIALS__PASSWORD``, ``IDC_HA_MQTT__PORT``. Secrets come from
the environment or from a file named in the config (``password_file``) and are held as
``SecretStr``, so they never reach a log line or a repr.

``load_config(path)`` returns a ``Config`` or raises ``ConfigError`` carrying every problem found,
each naming the field and the fix; it changes nothing on disk.
"""

from __future__ import annotations

import tomllib
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from idc_ha.errors import ConfigError
from idc_ha.model.problems import Problem, problems
from idc_ha.model.topology import City, Idc, Machine, Node, Shard, Topology


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Credentials(Section):
    """Who the controller connects as, and the user replicas replicate with."""

    user: str = "idcha"
    password: SecretStr | None = None
    password_file: Path | None = None
    replication_user: str = "repl"
    replication_password: SecretStr | None = None
    replication_password_file: Path | None = None

    def resolved(self, base: Path) -> Credentials:
        """Read password files (relative to the config's directory) where no password is given."""
        upd: dict[str, Any] = {}
        for key, file_key in (("password", "password_file"), ("replication_password", "replication_password_file")):
            f: Path | None = getattr(self, file_key)
            if getattr(self, key) is None and f is not None:
                path = f if f.is_absolute() else base / f
                try:
                    upd[key] = SecretStr(path.read_text().strip())
                except OSError as e:
                    raise ConfigError(
                        [
                            Problem(
                                field=f"credentials.{file_key}",
                                message=f"cannot read {path}: {e.strerror}",
                                fix=f"create the file, or set IDC_HA_CREDENTIALS__{key.upper()}",
                            )
                        ]
                    ) from e
        return self.model_copy(update=upd)


class ProbeSettings(Section):
    """How the controller watches nodes. Every call has a timeout: an open aiomysql connection
    never times out by itself."""

    interval_s: float = Field(0.2, gt=0, le=60)
    connect_timeout_s: float = Field(0.3, gt=0, le=30)
    query_timeout_s: float = Field(0.5, gt=0, le=60)
    backoff_max_s: float = Field(2.0, gt=0, le=300)
    fresh_window_s: float = Field(10.0, ge=0, le=600)  # no backoff while a failure is being confirmed
    # How long a round waits for a node that failed its last probe (its probe runs on meanwhile):
    # a node that is back answers within milliseconds; one still silent should not delay verdicts.
    failing_hold_s: float = Field(0.05, gt=0, le=60)


class MqttSettings(Section):
    """Where routing and alerts are published (QoS 1; routing retained)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    topic_prefix: str = "idc-ha"
    username: str | None = None
    password: SecretStr | None = None


class HookEvent(StrEnum):
    FAILOVER = "failover"
    SWITCH = "switch"
    CITY_PROMOTION = "city_promotion"
    FENCE = "fence"
    REJOIN = "rejoin"


class Hooks(Section):
    """Commands run after an event (``act/hooks.py``): an argv per event, run with a timeout and
    the event in its environment (IDC_HA_EVENT, IDC_HA_SHARD, IDC_HA_EPOCH, IDC_HA_PRIMARY_NODE,
    IDC_HA_PRIMARY_HOST, IDC_HA_PRIMARY_PORT, IDC_HA_PRIMARY_IDC, IDC_HA_OLD_PRIMARY,
    IDC_HA_REASON). A failing hook raises ``hook_failed`` and never undoes anything."""

    failover: tuple[str, ...] = ()
    switch: tuple[str, ...] = ()
    city_promotion: tuple[str, ...] = ()
    fence: tuple[str, ...] = ()
    rejoin: tuple[str, ...] = ()
    timeout_s: float = Field(30.0, gt=0, le=3600)

    def command(self, event: HookEvent) -> tuple[str, ...]:
        return tuple(getattr(self, event.value))


class Config(BaseSettings):
    """The whole controller config. ``topology`` is the declared home layout."""

    model_config = SettingsConfigDict(env_prefix="IDC_HA_", env_nested_delimiter="__", extra="forbid", frozen=True)

    cluster: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    state_dir: Path
    policy: Path = Path("policies/default.toml")
    credentials: Credentials = Credentials()
    probe: ProbeSettings = ProbeSettings()
    mqtt: MqttSettings = MqttSettings()
    hooks: Hooks = Hooks()
    cities: tuple[City, ...]
    idcs: tuple[Idc, ...]
    machines: tuple[Machine, ...]
    shards: tuple[Shard, ...]
    nodes: tuple[Node, ...]
    source: Path | None = None  # the file this was loaded from, set by load_config

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment beats the file: init kwargs carry the parsed TOML.
        return (env_settings, init_settings)

    @cached_property
    def topology(self) -> Topology:
        return Topology(
            cluster=self.cluster,
            cities=self.cities,
            idcs=self.idcs,
            machines=self.machines,
            shards=self.shards,
            nodes=self.nodes,
        )


def _field_of(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _validation_problems(e: ValidationError) -> list[Problem]:
    out = []
    for err in e.errors():
        field = _field_of(tuple(err["loc"]))
        if err["type"] == "missing":
            fix = f"add {field} to the config file"
        elif err["type"] == "extra_forbidden":
            fix = f"remove {field}: it is not a known setting (check its spelling)"
        else:
            fix = f"set {field} to a valid value"
        out.append(Problem(field=field or "(file)", message=err["msg"], fix=fix))
    return out


def load_config(path: Path | str, *, allow_problems: bool = False) -> Config:
    """Read, validate and cross-check a config file.

    Raises ConfigError with every problem (field, message, fix); nothing is changed anywhere.
    With allow_problems, cross-check errors are left for the caller (``idc-ha check``).
    """
    path = Path(path)
    raw = read_toml(path, field="--config", what="the TOML config")
    try:
        cfg = Config(**raw)
    except ValidationError as e:
        raise ConfigError(_validation_problems(e)) from e
    base = path.resolve().parent
    cfg = cfg.model_copy(
        update={
            "state_dir": cfg.state_dir if cfg.state_dir.is_absolute() else base / cfg.state_dir,
            "policy": cfg.policy if cfg.policy.is_absolute() else _policy_path(base, cfg.policy),
            "credentials": cfg.credentials.resolved(base),
            "source": path.resolve(),
        }
    )
    found = config_problems(cfg)
    if not allow_problems and any(p.severity == "error" for p in found):
        raise ConfigError(found)
    return cfg


def config_problems(cfg: Config) -> list[Problem]:
    """Every cross-check problem of a loaded config: the topology's, and missing credentials."""
    found = problems(cfg.topology)
    if cfg.credentials.password is None:
        found.append(
            Problem(
                field="credentials.password",
                message="no password for the controller's database user",
                fix="set credentials.password_file, or IDC_HA_CREDENTIALS__PASSWORD in the environment",
            )
        )
    return found


def read_toml(path: Path, *, field: str, what: str) -> dict[str, Any]:
    """Parse a TOML file; raises ConfigError naming ``field`` when it is missing or malformed."""
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError as e:
        raise ConfigError(
            [Problem(field=field, message=f"{path} does not exist", fix=f"pass the path of {what}")]
        ) from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(
            [Problem(field=str(path), message=f"not valid TOML: {e}", fix="fix the TOML syntax at that line")]
        ) from e


def _policy_path(base: Path, rel: Path) -> Path:
    # A relative policy path is looked up next to the config first, then among the policies
    # shipped with the product (so `policy = "policies/default.toml"` works from anywhere).
    here = base / rel
    if here.exists():
        return here
    shipped = Path(__file__).resolve().parents[2] / rel
    return shipped if shipped.exists() else here
