"""Parsing of the names users type: job ids, signals and scale operations."""

from __future__ import annotations

import signal

from gaffer.errors import InvalidArgument, ProcessNotFound

DEFAULT_SESSION = "default"
MAX_NAME = 200  # characters of a job name or a session id


def split_job_id(name: str, sessionid: str | None = None) -> tuple[str, str]:
    """Return ``(session, name)`` for a job id.

    ``"s.n"`` and ``"s/n"`` split on the first dot or slash (session ids cannot hold
    either, names can hold dots); a bare name belongs to ``sessionid`` or to the
    ``default`` session.
    """
    if not isinstance(name, str) or not name:
        raise InvalidArgument(
            f"job name must be a non-empty string, got {name!r}", reason="bad_name"
        )
    if sessionid is not None:
        return sessionid, name
    cuts = [index for index in (name.find("."), name.find("/")) if index >= 0]
    if not cuts:
        return DEFAULT_SESSION, name
    cut = min(cuts)  # "s.n.x" -> ("s", "n.x"); "s/n.x" -> ("s", "n.x")
    session, bare = name[:cut], name[cut + 1 :]
    if not session or not bare:
        raise InvalidArgument(f"bad job id {name!r}: expected session.name", reason="bad_name")
    return session, bare


def job_id(name: str, sessionid: str | None = None) -> str:
    session, bare = split_job_id(name, sessionid)
    return f"{session}.{bare}"


def validate_session(sessionid: str) -> str:
    """A session id is a name like a job's (printable, no space, at most MAX_NAME
    characters: it goes into URLs and log lines), without '.' or '/'."""
    if not isinstance(sessionid, str) or not sessionid or "." in sessionid or "/" in sessionid:
        raise InvalidArgument(
            f"bad session id {sessionid!r:.80}: a non-empty name without '.' or '/'",
            reason="bad_name",
        )
    if len(sessionid) > MAX_NAME or not sessionid.isprintable() or " " in sessionid:
        raise InvalidArgument(
            f"bad session id {sessionid[:40]!r}: at most {MAX_NAME} printable characters, no space",
            reason="bad_name",
        )
    return sessionid


def parse_signal(sig: int | str) -> int:
    """``9``, ``"9"``, ``"KILL"``, ``"SIGKILL"`` and ``"kill"`` all give ``signal.SIGKILL``."""
    if isinstance(sig, bool):
        raise InvalidArgument(f"bad signal {sig!r}", reason="bad_signal")
    if isinstance(sig, int):
        if 1 <= sig < signal.NSIG:  # real-time signals have numbers but no Signals member
            return sig
        raise InvalidArgument(f"bad signal number {sig}", reason="bad_signal")
    if isinstance(sig, str):
        text = sig.strip().upper()
        if _is_number(text):
            if len(text) > MAX_DIGITS:
                raise InvalidArgument(f"bad signal number {sig[:30]!r}...", reason="bad_signal")
            return parse_signal(int(text))
        if not text.startswith("SIG"):
            text = "SIG" + text
        realtime = _realtime(text)
        if realtime is not None:
            return realtime
        try:
            return int(signal.Signals[text])
        except KeyError:
            raise InvalidArgument(f"unknown signal {sig!r}", reason="bad_signal") from None
    raise InvalidArgument(f"bad signal {sig!r}: an int or a name", reason="bad_signal")


def _realtime(text: str) -> int | None:
    """``SIGRTMIN+3``, ``SIGRTMAX-1``: real-time signals, by offset (Linux)."""
    for base_name, sign in (("SIGRTMIN", "+"), ("SIGRTMAX", "-")):
        if hasattr(signal, base_name) and text.startswith(base_name + sign):
            offset = text[len(base_name) + 1 :]
            if _is_number(offset) and len(offset) <= 2:
                number = getattr(signal, base_name) + int(offset) * (1 if sign == "+" else -1)
                if signal.SIGRTMIN <= number <= signal.SIGRTMAX:
                    return number
    return None


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def apply_scale(current: int, n: int | str) -> int:
    """The new target of a job after ``scale(n)``.

    An int adds (``<= 0`` subtracts its absolute value); a string ``"3"`` or ``"+3"`` adds,
    ``"-3"`` subtracts, ``"=3"`` sets. The result is never negative.
    """
    if isinstance(n, bool):
        raise InvalidArgument(f"bad scale {n!r}", reason="bad_operation")
    if isinstance(n, int):
        target = current + n
    elif isinstance(n, str):
        text = n.strip()
        op, digits = (text[0], text[1:]) if text and text[0] in "+-=" else ("+", text)
        if not _is_number(digits.strip()):
            raise InvalidArgument(
                f"bad scale {n!r}: expected N, +N, -N or =N", reason="bad_operation"
            )
        if len(digits.strip()) > MAX_DIGITS:
            raise InvalidArgument(f"bad scale {n[:30]!r}...: too large", reason="bad_operation")
        value = int(digits)
        target = {"+": current + value, "-": current - value, "=": value}[op]
    else:
        raise InvalidArgument(
            f"bad scale {n!r}: expected an int or a string", reason="bad_operation"
        )
    return max(target, 0)


MAX_DIGITS = 18  # more is no process count, signal or pid (and int() refuses > 4,300)


def _is_number(text: str) -> bool:
    """ASCII digits only: ``"²".isdigit()`` is true but ``int("²")`` fails."""
    return text.isascii() and text.isdigit()


def as_pid(pid: int | str) -> int:
    if isinstance(pid, bool):
        raise ProcessNotFound(f"bad pid {pid!r}")
    if isinstance(pid, int):
        return pid
    if isinstance(pid, str) and pid.isdigit():
        return int(pid)
    raise ProcessNotFound(f"bad pid {pid!r}")
