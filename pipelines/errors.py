"""The one exception hierarchy of faithwatch.

    FaithwatchError            root; library exceptions are translated to it at the boundary
    ├── InvalidRecord          an input record breaks the contract (carries the field and reason)
    ├── StateError             a saved state cannot be restored (other version or other config)
    ├── ConfigError            settings or policy files that cannot be used
    └── StoreError             storage failed (raised by services, defined here so all share a root)
"""

from __future__ import annotations


class FaithwatchError(Exception):
    """Root of every error faithwatch raises on purpose."""


class InvalidRecord(FaithwatchError):
    """An input record breaks the interaction contract.

    ``field`` names the offending field (dotted path, ``"<record>"`` for the record as a whole)
    and ``reason`` says what is wrong, so the dead-letter store can tell a producer what to fix.
    """

    def __init__(self, field: str, reason: str, interaction_id: str | None = None):
        self.field = field
        self.reason = reason
        self.interaction_id = interaction_id
        super().__init__(f"{field}: {reason}")


class StateError(FaithwatchError):
    """A saved state was written by another version or another configuration."""


class ConfigError(FaithwatchError):
    """Settings or a policy file cannot be used."""


class StoreError(FaithwatchError):
    """The storage backend failed."""
