"""Named, listable registries of components (one per kind: ``lm``, ``special_embeddings``, ...).

Unlike timm's registry, a duplicate name is an error (two components silently shadowing each other
would make an ablation lie), and a missed lookup lists the names that do exist.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

#: Every registry created, by kind, so ``wb list`` can show all of them.
REGISTRIES: dict[str, Registry[object]] = {}


class RegistryError(KeyError):
    """A duplicate registration or a lookup of an unknown name."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


class Registry(Generic[T]):
    """A mapping from names to components of one kind.

    Example:
        >>> SCHEDULES: Registry[Callable[..., float]] = Registry("schedule")
        >>> @SCHEDULES.register("constant")
        ... def constant(step: int) -> float:
        ...     return 1.0
        >>> SCHEDULES.get("constant")(3)
        1.0
    """

    def __init__(self, kind: str) -> None:
        if kind in REGISTRIES:
            raise RegistryError(f"a registry of kind {kind!r} already exists")
        self.kind = kind
        self._items: dict[str, T] = {}
        REGISTRIES[kind] = self  # type: ignore[assignment]

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; a second use of a name raises."""

        def decorate(obj: T) -> T:
            self.add(name, obj)
            return obj

        return decorate

    def add(self, name: str, obj: T) -> None:
        """Registers ``obj`` under ``name``; raises :class:`RegistryError` if the name is taken."""
        if not name or not isinstance(name, str):
            raise RegistryError(f"{self.kind}: a component name must be a non-empty string")
        if name in self._items:
            raise RegistryError(
                f"{self.kind} {name!r} is already registered (by {self._items[name]!r}); "
                "choose another name"
            )
        self._items[name] = obj

    def get(self, name: str) -> T:
        """Returns the component called ``name``, or raises listing the known names."""
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._items, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise RegistryError(
                f"unknown {self.kind} {name!r}. Known: {', '.join(self.names()) or '(none)'}.{hint}"
            ) from None

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        """``(name, component)`` pairs, sorted by name."""
        for name in self.names():
            yield name, self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


def registry(kind: str) -> Registry[object]:
    """The registry of components of ``kind``.

    The built-in components are registered by importing ``workbench.components`` (the run layer,
    the command line and ``workbench.experiments`` do); the registry itself imports nothing.
    """
    try:
        return REGISTRIES[kind]
    except KeyError:
        raise RegistryError(
            f"no {kind!r} components are registered: import workbench.components first "
            f"(registered kinds: {', '.join(sorted(REGISTRIES)) or 'none'})"
        ) from None
