"""Named registries: one per kind (operators, denoisers, solvers, presets, models).

A registry drives the CLI listings, the parametrised tests and the docs, so a new entry is usable, listed
and tested by being registered. There are no if/elif factories anywhere else. A renamed entry keeps its old
name as an alias (:meth:`Registry.alias`): accepted wherever the registry is asked, with a one-line notice.
"""
from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass
from typing import Callable, Generic, Iterator, TypeVar

from pnprgm.errors import UserError

T = TypeVar("T")

#: ``(old, new)`` renames already announced in this process (one notice per old name, whichever registry saw it).
_ANNOUNCED: set[tuple[str, str]] = set()


def announce_rename(kind: str, old: str, new: str, why: str = "") -> None:
    """One line on stderr, once per process and old name: ``old`` is now called ``new``."""
    if (old, new) in _ANNOUNCED:
        return
    _ANNOUNCED.add((old, new))
    print(f"pnprgm: {kind} {old!r} is now called {new!r}{f' ({why})' if why else ''}; the old name still works.",
          file=sys.stderr, flush=True)


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
        self._aliases: dict[str, tuple[str, str]] = {}

    def add(self, name: str, obj: T, summary: str = "") -> T:
        """Register ``obj`` under ``name``; a name can be registered once."""
        if name in self:
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

    def alias(self, old: str, new: str, why: str = "") -> None:
        """Accept ``old``, the former name of the entry ``new``; ``why``: the reason of the rename, for the notice."""
        if old in self or new not in self._entries:
            raise KeyError(f"cannot alias {self.kind} {old!r} to {new!r}: the old name is taken or the new one unknown")
        self._aliases[old] = (new, why)

    def canonical(self, name: str, *, notice: bool = True) -> str:
        """Today's name of ``name``: the new name of an alias (announced on stderr once per process), else itself;
        a name that is not a string (a list read from a file) is a :class:`UserError`."""
        if not isinstance(name, str):
            raise UserError(f"{self.kind} names are text; got {type(name).__name__} {str(name)[:60]} (check the file "
                            f"it was read from: a damaged model, config or sidecar).")
        if name not in self._aliases:
            return name
        new, why = self._aliases[name]
        if notice:
            announce_rename(self.kind, name, new, why)
        return new

    def aliases(self) -> dict[str, str]:
        """Old name -> today's name of every renamed entry."""
        return {old: new for old, (new, _) in self._aliases.items()}

    def get(self, name: str) -> T:
        """The object registered as ``name`` (or an old name of it); an unknown name is a :class:`UserError`
        listing the choices."""
        try:
            return self._entries[self.canonical(name)].obj
        except KeyError:
            raise UserError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, self.names(), n=1) if isinstance(name, str) else []
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind} {name!r}.{hint} Valid choices: {', '.join(self.names())}."

    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> list[Entry[T]]:
        return list(self._entries.values())

    def summary(self, name: str) -> str:
        self.get(name)
        return self._entries[self.canonical(name)].summary

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._entries or name in self._aliases)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def _first_doc_line(obj: object) -> str:
    doc = getattr(obj, "__doc__", None) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""
