"""The keeper: gafferd's parent, so that a crash of gafferd loses no process.

Run as ``python -I -S keeper_main.py GRACE LISTEN_FDS -- GAFFERD_COMMAND...`` by gafferd
itself at its start when ``on_daemon_crash = keep`` (gafferd/keeper.py): the standard
library only, a few megabytes. It is a child subreaper, starts gafferd as its child, and
talks with it over a ``SOCK_SEQPACKET`` socket (``GAFFER_KEEPER_FD`` in gafferd's
environment):

* gafferd -> keeper: ``+PGID`` / ``-PGID`` lines (the groups to stop if all else fails,
  as with the guard); ``hold JSON`` with descriptors (``SCM_RIGHTS``): processes spawned,
  their pidfd and the gaffer's ends of their pipes, which the keeper holds; ``drop
  OS_PID,...``: processes gone; ``listen JSON`` with descriptors: the listening sockets
  now served; ``ready``: gafferd runs; ``bye``: gafferd stops on purpose.
* keeper -> gafferd: right after its start, ``held JSON`` with descriptors, in batches,
  then ``end JSON``: what it holds (``next_pid``: internal pids go on, never reused);
  ``exit OS_PID STATUS``: a process the keeper reaped (its child since a crash).

When gafferd dies without ``bye`` (SIGKILL, out of memory, a crash), its processes are
handed to the keeper by the kernel (it is their nearest subreaper): the keeper reaps them
when they exit, keeps their exit statuses, and starts gafferd again, which adopts them
through what the keeper sends back. A gafferd that dies within ``YOUNG`` seconds of its
start ``GIVE_UP`` times in a row is not started again: the keeper then does what the
guard does (every group registered gets SIGTERM, then SIGKILL ``GRACE`` seconds later)
and exits. The signals gafferd handles, sent to the keeper (by systemd, a terminal), are
passed on to gafferd; the keeper exits with gafferd's exit code.
"""

import ctypes
import json
import os
import resource
import select
import signal
import socket
import sys
import time

YOUNG = 10.0  # seconds: a gafferd dying younger than this counts as a quick crash
GIVE_UP = 3  # quick crashes in a row before the keeper gives up
RESTART_DELAY = 0.05  # seconds before gafferd is started again
BATCH = 50  # processes per message (a message carries at most 253 descriptors)
MAX_MESSAGE = 256 * 1024
FORWARDED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
PR_SET_CHILD_SUBREAPER = 36


def say(text):
    print(f"gaffer keeper: {text}", file=sys.stderr, flush=True)


class Keeper:
    def __init__(self, grace, listen, command):
        self.grace = grace
        self.listen = listen  # descriptors of the listening sockets, passed to each gafferd
        self.command = command
        self.held = {}  # os_pid -> [record, fds, status]
        self.groups = {}  # pgid -> count
        self.next_pid = 1
        self.child = None  # gafferd's pid
        self.sock = None
        self.bye = False
        self.ready = False  # the first gafferd ever got ready: a crash is restarted
        self.started_at = 0.0
        self.quick = 0  # quick crashes in a row
        self.lives = 0
        self.code = 0

    # -- gafferd ---------------------------------------------------------------------------
    def start(self):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        theirs.set_inheritable(True)
        for fd in self.listen:
            os.set_inheritable(fd, True)
        env = dict(os.environ)
        env["GAFFER_KEEPER_FD"] = str(theirs.fileno())
        env["GAFFERD_LISTEN_FDS"] = ",".join(map(str, self.listen))
        env["GAFFER_KEEPER_LIVES"] = str(self.lives)
        pid = os.fork()
        if pid == 0:  # the keeper is single-threaded: fork then exec is safe here
            try:
                for sig in FORWARDED:
                    signal.signal(sig, signal.SIG_DFL)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_SETMASK, [])
                os.execve(self.command[0], self.command, env)
            finally:
                os._exit(127)
        theirs.close()
        self.sock = ours
        self.child = pid
        self.bye = False
        self.started_at = time.monotonic()
        self.lives += 1
        self.send_held()

    def send_held(self):
        records = [(record, fds, status) for record, fds, status in self.held.values()]
        for start in range(0, len(records), BATCH):
            batch = records[start : start + BATCH]
            fds = [fd for _, held_fds, status in batch if status is None for fd in held_fds]
            payload = [
                dict(record, status=status, fds=record["fds"] if status is None else [])
                for record, _, status in batch
            ]
            self.send(b"held " + json.dumps(payload).encode(), fds)
        end = {
            "next_pid": self.next_pid,
            "lives": self.lives,
            "groups": [[pgid, count] for pgid, count in self.groups.items()],
        }
        self.send(b"end " + json.dumps(end).encode())

    def send(self, data, fds=()):
        if self.sock is None:
            return
        try:
            socket.send_fds(self.sock, [data], list(fds)) if fds else self.sock.send(data)
        except OSError as exc:
            say(f"cannot reach gafferd ({exc})")

    def message(self):
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.sock, MAX_MESSAGE, 253)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, fds = b"", []
        if not data:  # gafferd's end closed: it died (its exit comes as SIGCHLD)
            self.sock.close()
            self.sock = None
            for fd in fds:
                os.close(fd)
            return
        kind, _, body = data.partition(b" ")
        if kind == b"hold":
            self.hold(json.loads(body), fds)
            return
        for fd in fds:  # only "hold" and "listen" carry descriptors
            if kind != b"listen":
                os.close(fd)
        if kind == b"listen":
            for fd in self.listen:
                os.close(fd)
            self.listen = list(fds)
        elif kind == b"drop":
            for text in body.split(b","):
                if text.strip().isdigit():
                    self.forget(int(text))
        elif kind == b"ready":
            self.ready = True
        elif kind == b"bye":
            self.bye = True
        else:
            self.lines(data)

    def lines(self, data):
        for line in data.split(b"\n"):
            if line[:1] in (b"+", b"-") and line[1:].isdigit():
                pgid = int(line[1:])
                self.groups[pgid] = self.groups.get(pgid, 0) + (1 if line[:1] == b"+" else -1)
                if self.groups[pgid] <= 0:
                    del self.groups[pgid]

    def hold(self, records, fds):
        for record in records:
            count = len(record["fds"])
            mine, fds = fds[:count], fds[count:]
            old = self.held.pop(record["os_pid"], None)
            if old is not None:
                close_all(old[1])
            self.held[record["os_pid"]] = [record, mine, None]
            self.next_pid = max(self.next_pid, record["pid"] + 1)
        close_all(fds)

    def forget(self, os_pid):
        entry = self.held.pop(os_pid, None)
        if entry is not None:
            close_all(entry[1])

    # -- children ------------------------------------------------------------------------
    def reap(self):
        """Every child that exited: gafferd, a held process (a child since a crash), an
        orphan handed here. Returns False when the keeper is done."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return True
            if pid == 0:
                return True
            if pid == self.child:
                if not self.gafferd_exited(pid, status):
                    return False
            elif pid in self.held:
                entry = self.held[pid]
                entry[2] = status
                close_all(entry[1])
                entry[1] = []
                self.send(b"exit %d %d" % (pid, status))

    def gafferd_exited(self, pid, status):
        self.child = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        code = os.waitstatus_to_exitcode(status)
        self.code = code if code >= 0 else 128 - code
        if self.bye or not self.ready:
            if not self.bye:
                say(f"gafferd exited at its start (code {code}): not started again")
            self.stop_all()
            return False
        how = f"signal {-code}" if code < 0 else f"exit {code}"
        young = time.monotonic() - self.started_at < YOUNG
        self.quick = self.quick + 1 if young else 0
        if self.quick >= GIVE_UP:
            say(f"gafferd died ({how}) {GIVE_UP} times in a row, young: stopping everything")
            self.stop_all()
            self.code = self.code or 1
            return False
        say(f"gafferd (pid {pid}) died ({how}): starting it again")
        time.sleep(RESTART_DELAY * (2**self.quick))
        self.start()
        return True

    def stop_all(self):
        """What the guard does when gafferd dies: every group registered, SIGTERM, then
        SIGKILL after GRACE seconds; held processes too."""
        targets = set(self.groups) | {pid for pid, entry in self.held.items() if entry[2] is None}
        if not targets:
            return
        say(f"stopping {len(targets)} process group(s)")
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pgid in targets:
                try:
                    os.killpg(pgid, sig)
                except OSError:
                    pass
            if sig == signal.SIGTERM:
                deadline = time.monotonic() + self.grace
                while time.monotonic() < deadline and any(group_alive(p) for p in targets):
                    self.reap_quietly()
                    time.sleep(0.02)
        self.reap_quietly()

    def reap_quietly(self):
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    # -- the loop -------------------------------------------------------------------------
    def run(self):
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda sig, frame: None)
        for sig in FORWARDED:
            signal.signal(sig, self.forward)
        self.start()
        poller = select.poll()
        poller.register(wake_r, select.POLLIN)
        watched = None
        while True:
            if self.sock is not None and watched != self.sock.fileno():
                if watched is not None:
                    poller.unregister(watched)
                watched = self.sock.fileno()
                poller.register(watched, select.POLLIN)
            elif self.sock is None and watched is not None:
                poller.unregister(watched)
                watched = None
            for fd, _ in poller.poll(1000):
                if fd == wake_r:
                    drain(wake_r)
                elif self.sock is not None and fd == self.sock.fileno():
                    self.message()
            if not self.reap():
                return self.code

    def forward(self, sig, frame):
        if self.child is not None:
            try:
                os.kill(self.child, sig)
            except OSError:
                pass


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
    except OSError:
        return False
    return True


def close_all(fds):
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def drain(fd):
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass


def become_subreaper():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def main(argv):
    separator = argv.index("--")
    grace = float(argv[0])
    listen = [int(fd) for fd in argv[1].split(",") if fd] if len(argv) > 1 else []
    command = argv[separator + 1 :]
    if not become_subreaper():
        say("this system cannot make the keeper a subreaper: a crash loses the processes")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # it holds a few descriptors per process
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return Keeper(grace, listen, command).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
