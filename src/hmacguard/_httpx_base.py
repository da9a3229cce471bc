"""Where the httpx ``Auth`` base is chosen: httpx, httpx2, or both.

httpx2 is httpx's maintained successor (the same API under another name), and
Starlette's ``TestClient`` uses it when it is installed. Each client accepts as
an auth class only a subclass of its own ``Auth``; anything else it calls as a
function, which for hmacguard's auths is the wrong protocol. So the auths
derive from the ``Auth`` of every one of the two that is installed: one object
then signs for an ``httpx.Client`` and an ``httpx2.Client`` alike. Both
libraries hand the flow the same kind of request (method, ``url.raw_path``,
``headers``, ``content``, ``read()``, ``extensions``), which is all it reads.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__all__ = ["INSTALLED", "AuthBase"]


def _installed() -> tuple[str, ...]:
    names = []
    for name in ("httpx", "httpx2"):
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        names.append(name)
    return tuple(names)


#: The client libraries installed, of httpx and httpx2.
INSTALLED = _installed()

if not INSTALLED:  # pragma: no cover  (tested in a subprocess)
    raise ImportError('the httpx auths need httpx or httpx2: pip install "hmacguard[httpx]"')

if TYPE_CHECKING:
    import httpx

    AuthBase = httpx.Auth
else:
    AuthBase = type(
        "AuthBase",
        tuple(importlib.import_module(name).Auth for name in INSTALLED),
        {"__module__": __name__, "__doc__": "The Auth base class of each client installed."},
    )
