"""Name -> class registries, so the command line picks methods and memories by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class ChoiceError(ValueError):
    """An unknown name was asked for; the message lists the valid ones."""


class Registry(Generic[T]):
    """Maps the names users type (mode=er, mem_manage=reservoir) to the classes that do the work."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def decorate(cls: type[T]) -> type[T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = cls
            cls.name = name  # type: ignore[attr-defined]
            return cls

        return decorate

    def get(self, name: str) -> type[T]:
        if name not in self._entries:
            raise ChoiceError(
                f"unknown {self.kind} '{name}'; valid choices are: {', '.join(self.names())}."
            )
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)
