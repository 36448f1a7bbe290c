"""Named registries: one per kind (operators, denoisers, solvers, presets, models).

A registry drives the CLI listings, the parametrised tests and the docs, so a new entry is usable, listed
and tested by being registered. There are no if/elif factories anywhere else.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable, Generic, Iterator, TypeVar

from pnprgm.errors import UserError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered object with a one-line summary for listings."""

    name: str
    obj: T
    summary: str


class Registry(Generic[T]):
    """A name -> object map with helpful errors.

    :param kind: what the entries are (used in messages, e.g. "operator").
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def add(self, name: str, obj: T, summary: str = "") -> T:
        """Register ``obj`` under ``name``; a name can be registered once."""
        if name in self._entries:
            raise KeyError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = Entry(name, obj, summary)
        return obj

    def register(self, name: str, summary: str = "") -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def decorate(obj: T) -> T:
            return self.add(name, obj, summary or _first_doc_line(obj))

        return decorate

    def remove(self, name: str) -> None:
        """Unregister ``name`` (a test that registers a temporary entry cleans up with it)."""
        self.get(name)
        del self._entries[name]

    def get(self, name: str) -> T:
        """The object registered as ``name``; an unknown name is a :class:`UserError` listing the choices."""
        try:
            return self._entries[name].obj
        except KeyError:
            raise UserError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, self.names(), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind} {name!r}.{hint} Valid choices: {', '.join(self.names())}."

    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> list[Entry[T]]:
        return list(self._entries.values())

    def summary(self, name: str) -> str:
        self.get(name)
        return self._entries[name].summary

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def _first_doc_line(obj: object) -> str:
    doc = getattr(obj, "__doc__", None) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""
