"""The configuration in force, behind one reference that a reload swaps.

Every part that depends on a setting holds the same `Settings` and reads `settings.current` when
it needs a value, so a reload is one assignment: nothing keeps a stale copy. Reading the new file
happens on the conversation thread when SIGHUP arrives (a small TOML file, parsed and validated);
the swap itself waits for an idle moment, so no turn changes its rules halfway.
"""

from __future__ import annotations

import logging

from omnid.config import Config, ConfigError, keep_restart_only, load_config

log = logging.getLogger("omnid.settings")


class Settings:
    def __init__(self, current: Config) -> None:
        self.current = current
        self.pending: Config | None = None  # read and valid, waiting for an idle moment

    def read_update(self) -> bool:
        """Read the file again. An invalid file is reported one problem per line and changes
        nothing; a valid one waits in `pending`, with what only a restart can change kept as it
        is (and named in the log)."""
        try:
            new = load_config(self.current.source_path, require_api_key=True)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload: %s", problem)
            log.error("reload: the new configuration is invalid; keeping the running one")
            return False
        new, changed = keep_restart_only(new, self.current)
        if changed:
            log.warning(
                "reload: %s changed; that needs a restart (systemctl restart omnid)",
                ", ".join(changed),
            )
        self.pending = new
        log.info("reload: new configuration read; applying at the next idle moment")
        return True

    def swap(self) -> tuple[Config, Config] | None:
        """Put the pending configuration in force; returns (old, new), or None if none waits."""
        new, self.pending = self.pending, None
        if new is None:
            return None
        old, self.current = self.current, new
        logging.getLogger().setLevel(new.log.level.upper())
        return old, new
