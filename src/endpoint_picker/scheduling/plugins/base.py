"""What every scheduling plugin shares: its names, its parameter model, and how it is built."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Self

from endpoint_picker.params import NoParams, PluginParams, validate_params


class PluginBase:
    """Holds the upstream type name (class attribute) and the configured instance name.

    ``params_model`` declares the ``parameters`` the type accepts (strict; see
    :mod:`endpoint_picker.params`); ``from_config`` builds an instance from a validated model.
    The config registry uses both, so a parameter is declared in exactly one place.
    """

    type_name: str = ""
    params_model: ClassVar[type[PluginParams]] = NoParams

    def __init__(self, name: str | None = None) -> None:
        self.name = name or self.type_name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    @classmethod
    def from_config(cls, name: str, params: Any) -> Self:
        """Build from validated parameters (an instance of ``params_model``)."""
        return cls(name)

    @classmethod
    def from_params(cls, name: str, raw: Mapping[str, Any] | None = None) -> Self:
        """Validate raw ``parameters`` and build (for code and tests; configs use the loader)."""
        return cls.from_config(name, validate_params(cls.params_model, raw, path=""))
