"""When to try the service again: capped exponential backoff with full jitter.

Full jitter spreads a fleet's reconnects after a shared outage (AWS Architecture Blog, "Exponential
Backoff And Jitter"). The counter resets once a connection has proved *stable* — it answered a turn,
or stayed up `stable_s` — rather than merely opened: a service that accepts and then drops us at
once must still see the delays grow. Refusals that will not heal by retrying soon (bad key, quota)
wait `permanent_s` every time.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(
        self,
        base_s: float = 0.5,
        cap_s: float = 30.0,
        permanent_s: float = 60.0,
        stable_s: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.permanent_s = permanent_s
        self.stable_s = stable_s
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self, permanent: bool = False) -> float:
        self.attempt += 1
        if permanent:
            return self.permanent_s
        ceiling = min(self.cap_s, self.base_s * 2 ** min(self.attempt - 1, 30))
        return self._rng.uniform(0, ceiling)

    def connected_for(self, seconds: float) -> None:
        if seconds >= self.stable_s:
            self.attempt = 0

    def proved(self) -> None:
        """A turn was answered: the connection works, start over from the base delay."""
        self.attempt = 0
