"""What every plugin shares: its names, and strict reading of its ``parameters`` block."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from endpoint_picker import units
from endpoint_picker.errors import ConfigError


class PluginBase:
    """Holds the upstream type name (class attribute) and the configured instance name."""

    type_name: str = ""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or self.type_name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def parse_duration(text: str) -> float:
    """Seconds in a non-negative Go duration string (``200ms``, ``1m30s``); empty reads as 0.
    Raises ValueError."""
    if not text.strip():
        return 0.0
    seconds = units.parse_duration(text)
    if seconds < 0:
        raise ValueError(f"must not be negative, got {text!r}")
    return seconds


class Params:
    """Typed, strict access to a plugin's raw parameters.

    Unknown keys are an error (after :meth:`done`), so a typo never silently means "default".
    Errors are :class:`ConfigError` whose ``path`` is the parameter name; the config loader
    prefixes the plugin's location in the file.
    """

    def __init__(self, raw: Mapping[str, Any] | None) -> None:
        if raw is not None and not isinstance(raw, Mapping):
            raise ConfigError("parameters must be a mapping")
        self._raw = dict(raw or {})
        self._seen: set[str] = set()

    def _get(self, key: str) -> Any:
        self._seen.add(key)
        return self._raw.get(key)

    def get_int(self, key: str, default: int) -> int:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            raise ConfigError(f"must be an integer, got {value!r}", path=key)
        return int(value)

    def get_float(self, key: str, default: float) -> float:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"must be a number, got {value!r}", path=key)
        return float(value)

    def get_bool(self, key: str, default: bool) -> bool:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ConfigError(f"must be true or false, got {value!r}", path=key)
        return value

    def get_str(self, key: str, default: str) -> str:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise ConfigError(f"must be a string, got {value!r}", path=key)
        return value

    def get_duration(self, key: str, default: float) -> float:
        value = self._get(key)
        if value is None:
            return default
        try:
            return parse_duration(str(value))
        except ValueError as err:
            raise ConfigError(str(err), path=key) from None

    def ignore(self, *keys: str) -> dict[str, Any]:
        """Accept ``keys`` without using them; returns those that were given."""
        return {k: self._raw[k] for k in keys if self._get(k) is not None}

    def done(self) -> None:
        unknown = sorted(set(self._raw) - self._seen)
        if unknown:
            raise ConfigError("unknown parameter", path=unknown[0])
