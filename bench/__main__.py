"""Run every benchmark and print its table: ``python -m bench [NAME...]``."""

from __future__ import annotations

import sys

from bench import attack, cluster, engine, handover, http, io, metrics, peers, soak

BENCHMARKS = {
    "engine": engine.main,
    "handover": handover.main,
    "io": io.main,
    "http": http.main,
    "attack": attack.main,
    "metrics": metrics.main,
    "peers": peers.main,
    "cluster": cluster.main,
    "soak": soak.main,
}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        print(
            f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}",
            file=sys.stderr,
        )
        return 2
    for name in names:
        BENCHMARKS[name]()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
