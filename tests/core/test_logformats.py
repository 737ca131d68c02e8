"""Log files users trust: JSON lines, lifecycle markers, rotation by time, a disk budget."""

from __future__ import annotations

import datetime
import json
import os
import re
import time

from gaffer import Manager, ProcessConfig
from gaffer.core.logrotate import LogFile, period_end
from tests.helpers import EventRecorder, child_cmd, wait_until

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}"


async def run_once(manager: Manager, config: ProcessConfig) -> dict:
    events = EventRecorder(manager)
    manager.load(config.replace(numprocesses=0))
    pid = manager.commit(config.name)
    msg = await events.wait("exit", pid=pid, timeout=30)
    assert await manager.flush_logs()
    return msg


async def test_json_lines_hold_time_job_pid_stream_and_line(tmp_path):
    log = tmp_path / "app.log"
    async with Manager() as manager:
        # "both": lines 0 and 2 on stdout, 1 on stderr (20 ms apart), then exit 3
        await run_once(
            manager,
            ProcessConfig(
                "api",
                child_cmd("lines", 3, 20, "both", 3),
                stdout_logfile=str(log),
                stderr_logfile=str(log),
                log_format="json",
            ),
        )
        await run_once(
            manager,
            ProcessConfig(
                "part",
                child_cmd("bytes", "é\nunfini".encode().hex()),
                stdout_logfile=str(log),
                log_format="json",
            ),
        )
    records = [json.loads(line) for line in log.read_text().splitlines()]
    for record in records:
        assert set(record) == {"ts", "job", "pid", "stream", "line"}
        assert datetime.datetime.fromisoformat(record["ts"]).tzinfo is not None
    api = [r for r in records if r["job"] == "default.api"]
    assert [(r["pid"], r["stream"], r["line"].rsplit(" ", 1)[0]) for r in api] == [
        (1, "gaffer", "spawned pid"),
        (1, "stdout", "line 0 of"),
        (1, "stderr", "line 1 of"),
        (1, "stdout", "line 2 of"),
        (1, "gaffer", "exited with"),
    ]
    assert api[-1]["line"] == "exited with 3"
    # a line never ended is written whole before the exit marker, not cut in pieces
    part = [(r["stream"], r["line"]) for r in records if r["job"] == "default.part"]
    assert part[1:] == [("stdout", "é"), ("stdout", "unfini"), ("gaffer", "exited with 0")]


async def test_markers_say_spawned_exited_stopped_and_killed(tmp_path):
    log = tmp_path / "w.log"
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(
            ProcessConfig(
                "w",
                child_cmd("ignore-term", tmp_path / "ready"),
                stdout_logfile=str(log),
                graceful_timeout=0.5,
            )
        )
        await wait_until(lambda: (tmp_path / "ready").exists())
        manager.stop_job("w")  # it ignores SIGTERM: SIGKILL after 0.5 s
        await events.wait("exit", pid=1)
        manager.unload("w")
        manager.load(ProcessConfig("s", child_cmd("sleep"), stdout_logfile=str(log)))
        await events.wait("spawn", name="default.s")
        manager.stop_job("s")  # it dies of SIGTERM
        await events.wait("exit", pid=2)
        manager.load(
            ProcessConfig("c", child_cmd("crash", 0, 3), stdout_logfile=str(log), numprocesses=0)
        )
        await events.wait("exit", pid=manager.commit("c"))
        assert await manager.flush_logs()
    text = log.read_text()
    lines = [re.sub(STAMP, "<t>", line) for line in text.splitlines()]
    os_pids = re.findall(r"spawned pid (\d+)", text)
    assert lines == [
        f"<t> [gaffer] w.1: spawned pid {os_pids[0]}",
        "<t> [gaffer] w.1: killed by SIGKILL after 0.5 s",
        f"<t> [gaffer] s.2: spawned pid {os_pids[1]}",
        "<t> [gaffer] s.2: stopped by SIGTERM",
        f"<t> [gaffer] c.3: spawned pid {os_pids[2]}",
        "<t> [gaffer] c.3: exited with 3",
    ]


async def test_a_marker_starts_a_line_of_its_own(tmp_path):
    log = tmp_path / "out.log"
    async with Manager() as manager:
        await run_once(
            manager,
            ProcessConfig("p", child_cmd("bytes", b"no newline".hex()), stdout_logfile=str(log)),
        )
    lines = [re.sub(STAMP, "<t>", line) for line in log.read_text().splitlines()]
    assert lines[1:] == ["no newline", "<t> [gaffer] p.1: exited with 0"]


async def test_a_log_from_yesterday_is_rotated_at_the_first_write_today(tmp_path):
    log = tmp_path / "day.log"
    log.write_text("yesterday\n")
    yesterday = time.time() - 86400
    os.utime(log, (yesterday, yesterday))
    async with Manager() as manager:
        await run_once(
            manager,
            ProcessConfig(
                "d",
                child_cmd("print", "today"),
                stdout_logfile=str(log),
                log_rotate="daily",
                log_markers=False,
            ),
        )
        # the file is today's now: a second run appends to it
        await run_once(
            manager,
            ProcessConfig(
                "e",
                child_cmd("print", "again"),
                stdout_logfile=str(log),
                log_rotate="daily",
                log_markers=False,
            ),
        )
    assert (tmp_path / "day.log.1").read_text() == "yesterday\n"
    assert log.read_text() == "today\nagain\n"


def test_rotation_periods_end_at_local_midnight_and_at_the_hour():
    moment = datetime.datetime(2026, 3, 14, 15, 9, 26).timestamp()
    assert datetime.datetime.fromtimestamp(period_end(moment, "daily")) == datetime.datetime(
        2026, 3, 15
    )
    assert datetime.datetime.fromtimestamp(period_end(moment, "hourly")) == datetime.datetime(
        2026, 3, 14, 16
    )


def test_an_empty_file_is_not_rotated_when_the_day_changes(tmp_path):
    log = LogFile(str(tmp_path / "x.log"), rotate="daily")
    log.open()
    assert not log.due(time.time() + 2 * 86400)  # nothing to move away: a new day begins
    log.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.log"]


async def test_the_disk_budget_removes_the_oldest_rotated_files_first(tmp_path):
    log = tmp_path / "out.log"
    async with Manager() as manager:
        for index in range(8):
            await run_once(
                manager,
                ProcessConfig(
                    f"w{index}",
                    # one write: a line whose end came in another read could be cut in two
                    child_cmd("bytes", (f"run {index} " + "x" * 2900 + "\n").encode().hex()),
                    stdout_logfile=str(log),
                    logfile_max_bytes=4000,
                    logfile_backups=10,
                    log_max_total=10_000,
                    log_markers=False,
                ),
            )
    sizes = {p.name: p.stat().st_size for p in tmp_path.iterdir()}
    # the current file (up to 4,000 bytes) and the copies fit in 10,000 bytes
    assert sum(sizes.values()) <= 10_000
    # two copies of 2,907 bytes fit beside a full current file; the older ones went
    assert sorted(sizes) == ["out.log", "out.log.1", "out.log.2"]
    assert log.read_text().startswith("run 7 ")
    assert (tmp_path / "out.log.1").read_text().startswith("run 6 ")
    assert (tmp_path / "out.log.2").read_text().startswith("run 5 ")


async def test_two_log_files_share_the_jobs_budget(tmp_path):
    out, err = tmp_path / "out.log", tmp_path / "err.log"
    async with Manager() as manager:
        for index in range(6):
            await run_once(
                manager,
                ProcessConfig(
                    f"w{index}",
                    child_cmd("outerr", "o" * 3000 + "\n", "e" * 3000 + "\n"),
                    stdout_logfile=str(out),
                    stderr_logfile=str(err),
                    logfile_max_bytes=3500,
                    log_max_total=8000,
                    log_markers=False,
                ),
            )
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= 8000
    assert {p.name for p in tmp_path.iterdir()} == {"out.log", "err.log"}


async def test_timestamps_and_json_follow_each_jobs_config_in_a_shared_file(tmp_path):
    log = tmp_path / "shared.log"
    async with Manager() as manager:
        for name, options in (("plain", {}), ("stamped", {"log_timestamps": True})):
            await run_once(
                manager,
                ProcessConfig(
                    name,
                    child_cmd("print", name),
                    stdout_logfile=str(log),
                    log_markers=False,
                    **options,
                ),
            )
    lines = [re.sub(STAMP, "<t>", line) for line in log.read_text().splitlines()]
    assert lines == ["plain", "<t> stamped"]


async def test_an_update_applies_the_new_rotation_settings(tmp_path):
    log = tmp_path / "out.log"
    config = ProcessConfig(
        "u",
        child_cmd("bytes", ("x" * 3000 + "\n").encode().hex()),
        stdout_logfile=str(log),
        logfile_max_bytes=0,
        log_markers=False,
        numprocesses=0,
    )
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(config)
        await events.wait("exit", pid=manager.commit("u"))
        manager.update(config.replace(logfile_max_bytes=4000, logfile_backups=3))  # a SIGHUP
        await events.wait("exit", pid=manager.commit("u"))
        assert await manager.flush_logs()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.log", "out.log.1"]
