"""When a worker that died comes back."""

from __future__ import annotations

from typing import Generic, TypeVar

# A worker that dies younger than this is respawned after this long, so a
# worker that crashes at start-up costs one fork a second, not a fork loop.
MIN_WORKER_LIFETIME = 1.0

Key = TypeVar("Key")


class RespawnSchedule(Generic[Key]):
    """Workers (by the master's key: worker number, slot index) waiting to be respawned."""

    def __init__(self, min_lifetime: float = MIN_WORKER_LIFETIME) -> None:
        self.min_lifetime = min_lifetime
        self._due: dict[Key, float] = {}

    def schedule(self, key: Key, spawned_at: float, now: float) -> float:
        """A worker spawned at ``spawned_at`` died at ``now``: plan its respawn; returns the delay."""
        delay = 0.0 if now - spawned_at >= self.min_lifetime else self.min_lifetime
        self._due[key] = now + delay
        return delay

    def due(self, now: float) -> list[Key]:
        """The keys whose time has come, removed from the schedule, in the order scheduled."""
        ready = [key for key, when in self._due.items() if now >= when]
        for key in ready:
            del self._due[key]
        return ready

    def clear(self) -> None:
        self._due.clear()

    def __contains__(self, key: object) -> bool:
        return key in self._due

    def __len__(self) -> int:
        return len(self._due)
