"""The HTTP API of gaffer, as an application of the Manager (Tornado on the manager's loop).

``HttpHandler`` is imported when first used (module ``__getattr__``): ``gaffer.http.binding``
and the other light modules load nothing of tornado, so gafferd can bind its addresses and
spawn its jobs before the server's code is loaded (docs/design.md#memory).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["HttpHandler"]


def __getattr__(name: str) -> Any:
    if name == "HttpHandler":
        from gaffer.http.app import HttpHandler

        globals()[name] = HttpHandler
        return HttpHandler
    raise AttributeError(f"module 'gaffer.http' has no attribute {name!r}")


if TYPE_CHECKING:
    from gaffer.http.app import HttpHandler
