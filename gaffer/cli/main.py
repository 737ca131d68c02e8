"""``gaffer``: drive gafferd from a terminal or a script, and run a Procfile locally.

::

    gaffer [-g URL] [--api-key KEY] [-f Procfile] [-e .env]... [--json] [--no-color]
           <command> [args...]

Exit codes: 0 success; 1 gafferd answered with an error, could not be reached, or a file
is wrong (one line on stderr, no traceback); 2 bad usage; 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import gaffer
from gaffer.cli.commands import COMMANDS, load_commands
from gaffer.cli.context import Context, UsageError
from gaffer.client.transport import DEFAULT_URL
from gaffer.dotenv import DotenvError
from gaffer.errors import ApiError, ClientError

EX_OK, EX_ERROR, EX_USAGE, EX_INTERRUPTED = 0, 1, 2, 130
WAIT_SECONDS = 30.0


def build_parser() -> argparse.ArgumentParser:
    load_commands()
    parser = argparse.ArgumentParser(
        prog="gaffer",
        description="Control gafferd over its HTTP API, or run a Procfile app locally.",
        epilog="Run 'gaffer <command> -h' for a command's options. Docs: docs/gaffer.md.",
    )
    parser.add_argument(
        "-g",
        "--gafferd-http-address",
        dest="url",
        metavar="URL",
        help=f"gafferd's address: http(s)://host:port or unix:/path "
        f"[GAFFER_ADDRESS; default {DEFAULT_URL}]",
    )
    parser.add_argument(
        "--api-key",
        metavar="KEY",
        help="API key [GAFFER_API_KEY; default: the one 'gaffer login' saved]",
    )
    parser.add_argument("--certfile", help="TLS client certificate")
    parser.add_argument("--keyfile", help="TLS client key")
    parser.add_argument("--cacert", help="CA certificate to check gafferd's with")
    parser.add_argument(
        "-f", "--procfile", metavar="FILE", default=None, help="the Procfile (default ./Procfile)"
    )
    parser.add_argument(
        "-e",
        "--env",
        metavar="FILE",
        action="append",
        default=[],
        help="an env file, after .env (repeatable; later files win)",
    )
    parser.add_argument(
        "--app",
        metavar="APP",
        help="the session (app) to work on (default: the Procfile directory's name)",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="every node of gafferd's cluster: ps lists them all; ps:scale, ps:start, "
        "ps:stop and load act on the nodes of --node (docs/cluster.md)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--no-color", action="store_true", help="no colours (or NO_COLOR)")
    parser.add_argument(
        "--wait",
        action="store_true",
        help=f"wait up to {WAIT_SECONDS:g} s for gafferd to answer (one just started) "
        "before running the command",
    )
    parser.add_argument("--version", action="version", version=f"gaffer {gaffer.__version__}")
    # these may also come after the command (gaffer ps --json); given there, they win
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    common.add_argument(
        "--no-color", action="store_true", default=argparse.SUPPRESS, help="no colours"
    )
    common.add_argument(
        "--cluster", action="store_true", default=argparse.SUPPRESS, help="every node"
    )
    common.add_argument(
        "--app", metavar="APP", default=argparse.SUPPRESS, help="the session (app) to work on"
    )
    common.add_argument(
        "-g",
        "--gafferd-http-address",
        dest="url",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="gafferd's address",
    )
    common.add_argument("--api-key", metavar="KEY", default=argparse.SUPPRESS)
    common.add_argument(
        "--wait", action="store_true", default=argparse.SUPPRESS, help="wait for gafferd"
    )
    commands = parser.add_subparsers(dest="command", metavar="<command>", title="commands")
    commands.required = True
    for command in COMMANDS.values():
        sub = commands.add_parser(
            command.name,
            help=command.summary,
            description=command.description,
            parents=[common],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        for names, kwargs in command.arguments:
            sub.add_argument(*names, **kwargs)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    context = Context(args)
    command = COMMANDS[args.command]
    try:
        return _run(_after_wait(context, command.func)) or EX_OK
    except UsageError as exc:
        print(f"gaffer {args.command}: {exc}", file=sys.stderr)
        return EX_USAGE
    except ApiError as exc:
        print(f"gaffer: {_describe(exc)}", file=sys.stderr)
        return EX_ERROR
    except (ClientError, DotenvError, OSError, ValueError) as exc:
        print(f"gaffer: {exc}", file=sys.stderr)
        return EX_ERROR
    except KeyboardInterrupt:
        return EX_INTERRUPTED
    except BrokenPipeError:  # the reader went away (gaffer ps | head): not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EX_OK
    finally:
        context.close()


def _run(coroutine: Any) -> Any:
    import uvloop

    loop_kind = os.environ.get("GAFFER_LOOP", "uvloop")
    if loop_kind == "asyncio":
        import asyncio

        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


async def _after_wait(context: Context, func: Any) -> Any:
    """``--wait``: once gafferd answers (``make run &`` then a command at once)."""
    if getattr(context.args, "wait", False):
        await wait_for_gafferd(context, WAIT_SECONDS)
    return await func(context)


async def wait_for_gafferd(context: Context, seconds: float) -> None:
    import asyncio
    import time

    from gaffer.errors import Unreachable

    deadline = time.monotonic() + seconds
    while True:
        try:
            await context.server().ping()
            return
        except Unreachable:
            if time.monotonic() > deadline:
                raise Unreachable(
                    f"no gafferd answered at {context.url} within {seconds:g} s"
                ) from None
            await asyncio.sleep(0.1)


def _describe(exc: ApiError) -> str:
    if exc.status == 401:
        return f"{exc.reason}: log in with 'gaffer login' or pass --api-key"
    if exc.status == 403:
        return f"forbidden: {exc.reason}"
    return exc.reason or f"{exc.status} {exc.code}"


if __name__ == "__main__":
    sys.exit(main())
