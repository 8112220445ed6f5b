"""SQLite binds ``None`` and ``bytes`` as they are, without the adapter search it makes first.

The standard library's ``sqlite3`` passes every value that is not exactly an ``int``, a
``float``, a ``str`` or a ``bytearray`` through its adaptation protocol before binding it: it
looks the value's type up among the registered adapters, then asks the ``PrepareProtocol``
class for ``__adapt__`` and the value for ``__conform__``.  Neither exists, and the failed
lookup on the class builds an ``AttributeError`` with a formatted message, only to drop it:
~1,800 machine instructions for each ``NULL`` and each stream id, audit row and payload bound
(measured with callgrind: 4.5 such values an event in a rebuild, 3% of its instructions;
docs/performance.md).

:func:`bind_as_they_are` registers an adapter for each of the two types that gives the value
back unchanged (``bytes`` gives an exact ``bytes`` back as it is; an empty dict's ``get``
gives ``None`` for ``None``), both C functions: the value found among the adapters, the
lookups skipped, and what SQLite is given is the same object.  The registry is the
``sqlite3`` module's, for every connection of the process: an adapter registered there
already for either type is left as it is.
"""

from __future__ import annotations

import sqlite3

_AS_THEY_ARE = ((bytes, bytes), (type(None), {}.get))


def bind_as_they_are() -> None:
    """Register the adapters (once a process; ones registered already are kept)."""
    for cls, same in _AS_THEY_ARE:
        if (cls, sqlite3.PrepareProtocol) not in sqlite3.adapters:
            sqlite3.register_adapter(cls, same)
