"""The herder's settings: typed, loaded once, from defaults < data/herder.json < PERMASTORE_* env < flags.

    settings = HerderSettings.load(data_dir, workers=2)   # flags; None values are skipped

`serve` loads them once and carries them typed in GatewayConfig.herder; nothing reads the
file or the environment again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    SettingsConfigDict,
)

from inference.fees import FeeSchedule
from inference.herder.pool import PoolConfig
from inference.keys import is_address

CONFIG_FILE = "herder.json"  # under the data folder
ENV_PREFIX = "PERMASTORE_"


class SettingsError(ValueError):
    """Settings that cannot be used: unknown names, values of the wrong type or out of range."""


class HerderSettings(BaseSettings):
    """How calls are priced, queued and run, and which model owners this node trusts."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    workers: int = Field(1, ge=1, description="llama.cpp worker processes")
    fee_base: int = Field(0, ge=0, description="fee per call, in credits (both fees 0: pricing off)")
    fee_token: int = Field(0, ge=0, description="fee per prompt + max token")
    require_keys: bool = Field(False, description="False: callers on 127.0.0.1 need no key")
    call_timeout_s: float = Field(300.0, gt=0, description="seconds per call attempt")
    retries: int = Field(1, ge=0, description="attempts after a worker dies or hangs")
    worker_start_timeout_s: float = Field(120.0, gt=0)
    trust_model_owners: tuple[str, ...] = Field((), description="owners whose models this node lists and loads")
    preload_models: int = Field(1, ge=0, description="newest trusted models every worker loads when it starts")

    @field_validator("trust_model_owners")
    @classmethod
    def _addresses(cls, owners: tuple[str, ...]) -> tuple[str, ...]:
        for owner in owners:
            if not is_address(owner):
                raise ValueError(f"not a wallet address (43 base64url characters): {owner!r}")
        return owners

    @property
    def fees(self) -> FeeSchedule:
        """Return the fee schedule."""
        return FeeSchedule(self.fee_base, self.fee_token)

    def pool(self) -> PoolConfig:
        """Return what the worker pool needs of these settings."""
        return PoolConfig(self.workers, self.call_timeout_s, self.retries, self.worker_start_timeout_s)

    @classmethod
    def load(cls, data_dir: Path | str | None = None, **flags: Any) -> HerderSettings:
        """Return the settings from, lowest to highest precedence: defaults, `data/herder.json`,
        PERMASTORE_* environment variables, then flags (None skipped). Raises SettingsError."""
        file_values = _read_file(Path(data_dir) / CONFIG_FILE) if data_dir is not None else {}
        given = {name: value for name, value in flags.items() if value is not None}
        sources = (InitSettingsSource(cls, init_kwargs=given), EnvSettingsSource(cls),
                   InitSettingsSource(cls, init_kwargs=file_values))
        try:
            return cls(_build_sources=(sources, {}))
        except ValidationError as exc:
            raise SettingsError(_describe(exc)) from None

    @classmethod
    def of(cls, **values: Any) -> HerderSettings:
        """Return settings from explicit values alone (defaults for the rest; no file, no environment)."""
        try:
            return cls(_build_sources=((InitSettingsSource(cls, init_kwargs=values),), {}))
        except ValidationError as exc:
            raise SettingsError(_describe(exc)) from None


def _read_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        loaded = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SettingsError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(loaded, dict):
        raise SettingsError(f"{path}: expected a JSON object")
    return loaded


def _describe(exc: ValidationError) -> str:
    """Given pydantic's validation error, return one line naming each bad setting."""
    unknown = sorted(str(err["loc"][0]) for err in exc.errors() if err["type"] == "extra_forbidden")
    if unknown:
        return f"unknown herder settings: {', '.join(unknown)}"
    parts = []
    for err in exc.errors()[:3]:
        name = ".".join(str(part) for part in err["loc"])
        parts.append(f"herder setting {name}: {err['msg']} (got {err.get('input')!r})")
    return "; ".join(parts)
