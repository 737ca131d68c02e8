"""gafferd without the ``ssl`` module when nothing it runs can use TLS (docs/design.md#memory).

asyncio, uvloop and tornado import ``ssl`` when they are imported, TLS or not: that maps
libssl and libcrypto and builds ssl's enums, 4.5 MiB of gafferd's resident memory (measured
in docs/design.md#memory). When gafferd's configuration names no certificate, no https
webhook, no cluster, no plugin, and tornado is 6.6 or later (which makes its TLS
contexts on first use), ``tls_reason`` says None and ``install`` puts a stand-in in
``sys.modules["ssl"]`` before those imports. It holds what they read at import time:
the exception classes (never raised), the error numbers they compare with, and classes
and a function that refuse to work, saying how to turn TLS on. Any other name is an
AttributeError, so ``hasattr(ssl, ...)`` is False and a new use fails loudly.

Only gafferd's entry point installs it, and only if ``ssl`` is not imported yet: a program
that embeds the Manager keeps the real module. The choice is made once per process; a
SIGHUP that would need TLS is refused (gafferd/server.py), and ``gaffer daemon:restart``
starts a new gafferd in place (its jobs keep running) that loads ``ssl``.
"""

from __future__ import annotations

import sys
import types
from importlib.machinery import ModuleSpec
from typing import Any, NoReturn

from gaffer.errors import ConfigError
from gafferd.plugin_discovery import ENTRY_POINT_GROUP, may_declare

#: an attribute only the stand-in has: how ``active`` tells it from the real ssl
MARK = "__gaffer_without_ssl__"

# OpenSSL's SSL_ERROR_* numbers, as ssl exports them (tests compare with the real module)
ERROR_NUMBERS = {
    "SSL_ERROR_SSL": 1,
    "SSL_ERROR_WANT_READ": 2,
    "SSL_ERROR_WANT_WRITE": 3,
    "SSL_ERROR_WANT_X509_LOOKUP": 4,
    "SSL_ERROR_SYSCALL": 5,
    "SSL_ERROR_ZERO_RETURN": 6,
    "SSL_ERROR_WANT_CONNECT": 7,
    "SSL_ERROR_EOF": 8,
    "SSL_ERROR_INVALID_ERROR_CODE": 10,
}

REFUSAL = (
    "TLS is not available in this gafferd: it started with no certfile, no https webhook, "
    "no cluster and no plugin, so it did not load the ssl module; set what needs TLS and "
    "restart gafferd (gaffer daemon:restart keeps the jobs running)"
)


def _refuse(*_args: Any, **_kwargs: Any) -> NoReturn:
    raise ConfigError(REFUSAL)


class _Refusing:
    """A class of ssl's that cannot be made here."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        _refuse()


def _classes() -> dict[str, type]:
    """ssl's classes by name: its exceptions, in the same hierarchy (never raised: no TLS
    runs), and the classes that would do TLS, which cannot be made. Made per stand-in,
    not gaffer's own: they are not in gaffer's error tree."""

    def kind(name: str, *bases: type) -> type:
        return type(name, bases, {"__module__": "ssl"})

    error = kind("SSLError", OSError)
    classes = [
        error,
        kind("SSLZeroReturnError", error),
        kind("SSLWantReadError", error),
        kind("SSLWantWriteError", error),
        kind("SSLSyscallError", error),
        kind("SSLEOFError", error),
        kind("SSLCertVerificationError", error, ValueError),
        *(kind(name, _Refusing) for name in ("SSLContext", "SSLSocket", "SSLObject", "MemoryBIO")),
    ]
    return {cls.__name__: cls for cls in classes}


class _Module(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"module 'ssl' has no attribute {name!r}: {REFUSAL}")


def stand_in() -> types.ModuleType:
    """A new module that can take ssl's place."""
    module = _Module("ssl", __doc__)
    module.__spec__ = ModuleSpec("ssl", None)  # importlib.util.find_spec("ssl") finds it
    names: dict[str, Any] = {**_classes(), **ERROR_NUMBERS}
    names.update(
        CertificateError=names["SSLCertVerificationError"],
        HAS_SNI=False,
        create_default_context=_refuse,
        wrap_socket=_refuse,
    )
    names[MARK] = True
    for name, value in names.items():
        setattr(module, name, value)
    return module


def install() -> bool:
    """Stand in for ssl unless it is imported already. True if the stand-in is in place."""
    if "ssl" not in sys.modules:
        sys.modules["ssl"] = stand_in()
    return active()


def active() -> bool:
    """True while the ssl this process imports is the stand-in."""
    return getattr(sys.modules.get("ssl"), MARK, False) is True


def tls_reason(effective: Any, config: Any, plugin_dir: str | None = None) -> str | None:
    """Why gafferd's settings (``Effective``) and configuration (``DaemonConfig``) may
    need TLS at its start, or None if nothing in them can."""
    reason = reload_reason(effective, config)
    if reason is not None:
        return reason
    if effective.cluster:
        return "cluster: nodes call each other's API, over TLS where they serve it"
    if plugin_dir or config.plugins:
        return "plugins: their code may use TLS"
    if may_declare(ENTRY_POINT_GROUP):
        return "plugins: an installed distribution declares gaffer.apps entry points"
    if _tornado_reads_ssl_at_import():
        return "tornado older than 6.6 makes TLS contexts when it is imported"
    return None


def reload_reason(effective: Any, config: Any) -> str | None:
    """Why a configuration read again on SIGHUP would use TLS, or None: what a reload
    rebuilds (the HTTP binds, the webhooks); plugins and the cluster wait for a start."""
    if effective.certfile or effective.keyfile:
        return "certfile/keyfile: the HTTP API is served over TLS"
    for _, url in config.webhooks:
        if url.lower().startswith("https:"):
            return f"the webhook {url}"
    return None


def _tornado_reads_ssl_at_import() -> bool:
    import tornado  # the package alone: its version, no asyncio, no ssl

    return tornado.version_info < (6, 6)
