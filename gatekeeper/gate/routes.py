"""Which room gates a request: the path rules and the configured rooms, cached per path."""

from __future__ import annotations

from gatekeeper.asgi import Scope
from gatekeeper.core.rooms import Rooms
from gatekeeper.gate.paths import PathRules

# Routing decisions remembered per (path, raw path); cleared when full (paths are unbounded).
_ROUTES_MAX = 4096


class Routes:
    """The room of a request (None: bypass) and whether its path is a done path."""

    def __init__(self, rules: PathRules, rooms: Rooms) -> None:
        self.rules = rules
        self._rooms = rooms
        # Routing depends on the path alone unless client IPs or User-Agents may bypass.
        self._cacheable = not rules.per_client
        self._cache: dict[tuple[str, object], tuple[str | None, bool]] = {}

    def room(self, scope: Scope) -> str | None:
        """The room gating the request (None: bypass), uncached."""
        room = self.rules.room_for(scope)
        if room is None:
            return None
        # A room named by the path that the config does not allow queues in the default.
        return self._rooms.resolve(room) or self._rooms.default

    def route(self, scope: Scope) -> tuple[str | None, bool]:
        """The room gating the request (None: bypass) and whether its path is a done path."""
        key = None
        if self._cacheable:
            key = (scope["path"], scope.get("raw_path"))
            found = self._cache.get(key)
            if found is not None:
                return found
        route = (self.room(scope), self.rules.is_done(scope["path"]))
        if key is not None:
            if len(self._cache) >= _ROUTES_MAX:
                self._cache.clear()
            self._cache[key] = route
        return route
