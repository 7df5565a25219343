"""Domain errors and the shared state-machine check used by every status service."""

from __future__ import annotations

from collections.abc import Mapping


class DomainError(Exception):
    """A request the domain refuses; the message is shown to the user as is."""

    code = "domain_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class IllegalTransition(DomainError):
    """A status move that the state machine's table does not allow."""

    code = "illegal_transition"

    def __init__(self, machine: str, current: str, target: str) -> None:
        super().__init__(f"A {machine} cannot move from '{current}' to '{target}'.")
        self.machine = machine
        self.current = current
        self.target = target


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    code = "conflict"


def transition_check(*, machine: str, table: Mapping[str, frozenset[str]], current: str, target: str) -> None:
    """Raise ``IllegalTransition`` unless ``current -> target`` is in ``table``."""
    if target not in table.get(current, frozenset()):
        raise IllegalTransition(machine, current, target)
