"""LoRA adapter slots: at most ``max_loras`` adapters loaded at once, loaded on demand.

An adapter not loaded costs ``lora_load_time`` before its first request can prefill. When all
slots are taken, the least recently used adapter that no running request uses is unloaded; if
every loaded adapter is in use, requests for another adapter wait (the engine skips them and
admits others behind them, as vLLM's scheduler does for LoRA constraints).
"""

from __future__ import annotations

from collections import OrderedDict


class LoraSlots:
    """Which adapters are loaded, when each becomes usable, and how many requests run on it."""

    def __init__(self, max_loras: int, load_time: float) -> None:
        self.max_loras = max_loras
        self.load_time = load_time
        self._loaded: OrderedDict[str, float] = OrderedDict()  # name -> ready time, LRU first
        self._users: dict[str, int] = {}
        self.loads = 0

    def can_run(self, name: str) -> bool:
        """Whether a request for ``name`` could start now."""
        if name in self._loaded or len(self._loaded) < self.max_loras:
            return True
        return any(not self._users.get(n) for n in self._loaded)

    def acquire(self, name: str, now: float) -> float:
        """Count one running request on ``name``, loading it if needed; returns its ready time."""
        if name in self._loaded:
            self._loaded.move_to_end(name)
        else:
            if len(self._loaded) >= self.max_loras:
                victim = next(n for n in self._loaded if not self._users.get(n))
                del self._loaded[victim]
            self._loaded[name] = now + self.load_time
            self.loads += 1
        self._users[name] = self._users.get(name, 0) + 1
        return self._loaded[name]

    def release(self, name: str) -> None:
        """One request on ``name`` finished; the adapter stays loaded until a slot is needed."""
        left = self._users.get(name, 0) - 1
        if left > 0:
            self._users[name] = left
        else:
            self._users.pop(name, None)

    @property
    def loaded(self) -> list[str]:
        return list(self._loaded)

    @property
    def running(self) -> list[str]:
        """Adapters with at least one running request."""
        return sorted(self._users)
