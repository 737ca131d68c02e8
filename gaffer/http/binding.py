"""Listening addresses: ``host:port``, ``[v6]:port`` and ``unix:/path``, parsed and bound.

Unix sockets are created with mode 0600 (only gaffer's user may connect); a stale socket
file (nothing listens on it) is replaced, a live one is an error; the file is removed
when the socket is closed. Binding errors say which address and why.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import stat
from dataclasses import dataclass

from gaffer.errors import ConfigError


@dataclass(frozen=True)
class Address:
    kind: str  # "tcp" or "unix"
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        """Reachable only from this machine (unix sockets, 127/8, ::1, localhost)."""
        if self.kind == "unix":
            return True
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_address(text: str) -> Address:
    """Raises ValueError saying what is wrong with ``text``."""
    text = text.strip()
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if not path:
            raise ConfigError(f"bad address {text!r}: unix: needs a path")
        return Address("unix", path=os.path.abspath(os.path.expanduser(path)))
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ConfigError(f"bad address {text!r}: expected [v6 address]:port")
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ConfigError(f"bad address {text!r}: expected host:port or unix:/path")
        if ":" in host:
            raise ConfigError(f"bad address {text!r}: write IPv6 addresses as [addr]:port")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"bad address {text!r}: the port must be a number from 0 to 65535")
    return Address("tcp", host=host or "0.0.0.0", port=int(port))


def bind(address: Address, backlog: int = 128) -> socket.socket:
    """A listening, non-blocking socket for ``address``. Raises OSError naming it."""
    if address.kind == "unix":
        return _bind_unix(address.path, backlog)
    try:
        infos = socket.getaddrinfo(
            address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise OSError(exc.errno, f"cannot bind {address}: {exc.strerror}") from None
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot bind {address}: {exc.strerror}") from None
    return sock


def _bind_unix(path: str, backlog: int) -> socket.socket:
    if os.path.exists(path):
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            raise OSError(
                errno.EEXIST, f"cannot bind unix:{path}: a file that is not a socket is in the way"
            )
        if _unix_socket_in_use(path):
            raise OSError(
                errno.EADDRINUSE, f"cannot bind unix:{path}: a process is already listening on it"
            )
        os.unlink(path)  # stale: nobody listens
    directory = os.path.dirname(path)
    if directory and not os.path.isdir(directory):
        raise OSError(
            errno.ENOENT, f"cannot bind unix:{path}: directory {directory} does not exist"
        )
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # Linux gives the socket file the socket inode's mode: set 0600 before bind, so the
        # file is never briefly reachable by others (no process-wide umask change either)
        os.fchmod(sock.fileno(), 0o600)
        sock.bind(path)
        os.chmod(path, 0o600)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot bind unix:{path}: {exc.strerror}") from None
    return sock


def _unix_socket_in_use(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def unix_path(sock: socket.socket) -> str | None:
    """The file of a bound unix socket (None for other sockets, or once closed)."""
    if sock.family != socket.AF_UNIX:
        return None
    try:
        path = sock.getsockname()
    except OSError:
        return None
    return path if isinstance(path, str) and path else None


def remove_unix_file(path: str | None) -> None:
    if path and os.path.exists(path) and stat.S_ISSOCK(os.stat(path).st_mode):
        try:
            os.unlink(path)
        except OSError:
            pass


def close(sock: socket.socket) -> None:
    """Close a bound socket, removing its file for a unix socket."""
    path = unix_path(sock)
    sock.close()
    remove_unix_file(path)


def bound_address(sock: socket.socket) -> str:
    """The address a socket is bound to, in the form parse_address reads (port 0 resolved)."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{name}"
    host, port = name[0], name[1]
    return f"[{host}]:{port}" if sock.family == socket.AF_INET6 else f"{host}:{port}"
