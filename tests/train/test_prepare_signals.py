"""``chatfmt prepare --workers 2`` stopped by real signals at random moments (issue 18): the run's
whole process tree (the command, its worker processes, multiprocessing's resource tracker) is gone
within 5 s of the signal, whatever the signal; SIGTERM, SIGHUP and Ctrl-C's SIGINT are a clean stop
(one stderr line, temporaries removed, the old output and rejects untouched, exit 128 + signal);
after SIGKILL the temporaries left behind are collected by the next run into the same place; a
``| cat`` reading the command's stdout always finishes.

The command runs as a real subprocess in its own session (so a signal to its process group is what
``timeout``, systemd or a terminal's Ctrl-C send). ``WORKERS_AFTER`` is 0 in the default tests so the
workers start at the second batch; the slow tests run the installed ``chatfmt`` script unchanged."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import pytest

psutil = pytest.importorskip("psutil")

from chatfmt.train import prepare  # noqa: E402

TD = Path(__file__).resolve().parents[2].parent / "shared" / "testdata"
QWEN = TD / "qwen2.5"
pytestmark = [
    pytest.mark.skipif(not QWEN.is_dir(), reason="../shared/testdata/qwen2.5 is absent"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; parent-death signal is Linux's"),
]

GOOD = '{"messages": [{"role": "user", "content": "hi there, how are you?"}, {"role": "assistant", "content": "hello, fine"}]}'
BAD = "{nope"
#: long enough to be mid-run whenever it is signalled (it is never run to the end here)
RECORDS = 400_000
#: the run's processes must all be gone this long after the signal (the behaviour itself, polled)
GONE_WITHIN = 5.0
#: generous bound on waiting for a moment (workers started, rows written) on a busy machine
MOMENT_WITHIN = 180.0

CHILD = """
import faulthandler, signal, sys
# the stop signals as a shell or ``timeout`` starts a command: at their defaults and unblocked. A
# process inherits an ignored or blocked signal from its parent, and a pytest worker that ran other
# tests first may have one (the slow run saw SIGINT alone go unanswered, only after other files)
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
faulthandler.register(signal.SIGUSR1, all_threads=True)  # a stuck run shows where (see Run.wait)
import chatfmt.train.pipeline as pipeline
pipeline.WORKERS_AFTER = float(sys.argv.pop(1))
from chatfmt.cli import main
sys.argv[0] = "chatfmt"
main()
"""


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "in.jsonl"
    path.write_text(((GOOD + "\n") * 999 + BAD + "\n") * (RECORDS // 1000))
    return path


def chatfmt_script() -> list[str]:
    script = Path(sys.executable).parent / "chatfmt"
    if not script.exists():
        pytest.skip(f"{script} is not installed")
    return [str(script)]


def prepare_cmd(src: Path, out: Path, *, script: list[str] | None = None) -> list[str]:
    head = script if script is not None else [sys.executable, "-c", CHILD, "0"]
    return [*head, "prepare", str(src), "-f", "qwen2.5", "-t", str(QWEN), "-o", str(out), "--workers", "2", "-q"]


class Run:
    """A ``chatfmt prepare`` subprocess, its process tree sampled while it runs."""

    def __init__(self, cmd: list[str], out: Path, **popen) -> None:
        self.out = out
        self.stderr_path = out.parent / "stderr.txt"
        with self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(cmd, stderr=err, start_new_session=True, **popen)
        self.ps = psutil.Process(self.proc.pid)
        self.seen: dict[int, psutil.Process] = {self.proc.pid: self.ps}

    def sample(self) -> list[psutil.Process]:
        try:
            kids = self.ps.children(recursive=True)
        except psutil.NoSuchProcess:
            kids = []
        for k in kids:
            self.seen.setdefault(k.pid, k)
        return kids

    def workers(self) -> list[psutil.Process]:
        found = []
        for k in self.sample():
            try:
                if "--multiprocessing-fork" in k.cmdline():
                    found.append(k)
            except psutil.Error:
                pass
        return found

    def temp_size(self) -> int:
        tmp = self.out.with_name(f".{self.out.name}.{self.proc.pid}.tmp")
        try:
            return tmp.stat().st_size
        except OSError:
            return 0

    def catches(self, signum: int) -> bool:
        """Whether the command has its own handler for ``signum`` (SigCgt in /proc/PID/status)."""
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return False
        mask = int(next(x for x in status.splitlines() if x.startswith("SigCgt:")).split()[1], 16)
        return bool(mask >> (signum - 1) & 1)

    def wait_for(self, what: str, cond: Callable[[], bool]) -> None:
        deadline = time.monotonic() + MOMENT_WITHIN
        while not cond():
            self.sample()
            assert self.proc.poll() is None, f"the run ended ({self.proc.returncode}) before {what}: {self.stderr()}"
            assert time.monotonic() < deadline, f"no {what} within {MOMENT_WITHIN} s"
            time.sleep(0.02)
        self.sample()

    def survivors_after(self, signum: int, *, group: bool) -> list[str]:
        """Send ``signum`` (to the process group: what ``timeout``/Ctrl-C do), then poll until every
        process of the run seen so far has ended; what is still alive after :data:`GONE_WITHIN`."""
        self.sample()
        if group:
            os.killpg(self.proc.pid, signum)
        else:
            os.kill(self.proc.pid, signum)
        deadline = time.monotonic() + GONE_WITHIN
        while True:
            self.proc.poll()
            alive = [p for p in self.seen.values() if is_alive(p)]
            if not alive or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        return [f"{p.pid} {' '.join(p.cmdline())[:120]}" for p in alive if is_alive(p)]

    def wait(self, seconds: float) -> int:
        """The command's exit code; if it is still running after ``seconds``, fail with its threads'
        stacks (faulthandler, in the default tests' child)."""
        try:
            return self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            masks = _signal_masks(self.proc.pid)
            with suppress(OSError):
                os.kill(self.proc.pid, signal.SIGUSR1)
            time.sleep(2)
            runner = _signal_masks(os.getpid())
            pytest.fail(
                f"still running {seconds} s later (its signal masks: {masks}; this test process's: {runner}); "
                f"its stderr:\n{self.stderr()[-8000:]}"
            )

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def kill_all(self) -> None:
        for p in self.seen.values():
            with suppress(psutil.Error):
                p.kill()
        self.proc.wait(timeout=30)


def _signal_masks(pid: int) -> str:
    """The blocked, ignored and caught signal masks of a process (/proc), for a failure message."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            return " ".join(line.strip() for line in f if line.startswith(("SigBlk", "SigIgn", "SigCgt")))
    except OSError:
        return "unknown"


def is_alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def at_moment(run: Run, moment: str, rng: random.Random) -> str:
    """Wait for ``moment`` of the run, then a random bit more; returns what happened, for messages."""
    if moment == "starting":  # the command is up (its handler set), its workers not yet
        run.wait_for("the signal handlers", lambda: run.catches(signal.SIGTERM))
        delay = rng.uniform(0, 0.5)
    elif moment == "workers":  # both worker processes exist (loading, or encoding)
        run.wait_for("2 worker processes", lambda: len(run.workers()) >= 2)
        delay = rng.uniform(0, 1.0)
    else:  # "writing": the workers' rows are being written
        run.wait_for("2 worker processes", lambda: len(run.workers()) >= 2)
        size = run.temp_size()
        run.wait_for("rows from the workers", lambda: run.temp_size() > size + 200_000)
        delay = rng.uniform(0, 0.5)
    time.sleep(delay)
    return f"{moment} + {delay:.2f} s, {len(run.workers())} workers, temp {run.temp_size():,} bytes"


def old_output(d: Path) -> tuple[Path, Path]:
    out, rejects = d / "o.jsonl", d / "o.jsonl.rejects.jsonl"
    out.write_text("the old output\n")
    rejects.write_text("the old rejects\n")
    return out, rejects


def leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.startswith("."))


def stop_cleanly(tmp_path: Path, src: Path, signum: int, moment: str, *, group: bool, script=None) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out, rejects = old_output(out_dir)
    rng = random.Random()
    run = Run(prepare_cmd(src, out, script=script), out, stdout=subprocess.DEVNULL)
    try:
        when = at_moment(run, moment, rng)
        survivors = run.survivors_after(signum, group=group)
        code = run.wait(60)
    finally:
        run.kill_all()
    name = signal.Signals(signum).name
    assert survivors == [], f"alive {GONE_WITHIN} s after {name} at {when}: {survivors}"
    assert code == 128 + signum, f"{name} at {when}: exit {code}; {run.stderr()}"
    assert run.stderr().splitlines() == [
        f"chatfmt: prepare stopped by {name}; temporary files removed, the output left as it was"
    ], when
    assert (out.read_text(), rejects.read_text()) == ("the old output\n", "the old rejects\n")
    assert leftovers(out_dir) == [], when


# -- default run ----------------------------------------------------------------------------------


def test_sigterm_to_the_process_group_while_workers_run_stops_cleanly_with_exit_143(tmp_path, big_corpus):
    stop_cleanly(tmp_path, big_corpus, signal.SIGTERM, "workers", group=True)


def test_sigkill_midrun_ends_the_workers_the_pipe_reader_and_the_next_run_collects_the_temporaries(tmp_path, big_corpus):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out, rejects = old_output(out_dir)
    run = Run(prepare_cmd(big_corpus, out), out, stdout=subprocess.PIPE)
    cat = subprocess.Popen(["cat"], stdin=run.proc.stdout, stdout=subprocess.PIPE)
    run.proc.stdout.close()  # `chatfmt prepare ... | cat`: only the run holds the pipe's write end
    try:
        when = at_moment(run, "workers", random.Random())
        survivors = run.survivors_after(signal.SIGKILL, group=False)
        try:
            cat.communicate(timeout=GONE_WITHIN)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`| cat` still waiting {GONE_WITHIN} s after SIGKILL at {when}")
    finally:
        cat.kill()
        run.kill_all()
    assert survivors == [], f"alive {GONE_WITHIN} s after SIGKILL at {when}: {survivors}"
    assert run.proc.returncode == -signal.SIGKILL
    stale = leftovers(out_dir)
    assert stale and all(n.endswith(f".{run.proc.pid}.tmp") for n in stale), stale
    assert (out.read_text(), rejects.read_text()) == ("the old output\n", "the old rejects\n")
    small = tmp_path / "small.jsonl"
    small.write_text(GOOD + "\n")
    prepare(small, "qwen2.5", QWEN, out, workers=1)  # the next run into the same place
    assert leftovers(out_dir) == []
    assert len(out.read_text().splitlines()) == 1


# -- slow: the other moments and signals ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["starting", "workers", "writing"])
@pytest.mark.parametrize("signum, group", [(signal.SIGTERM, False), (signal.SIGHUP, False), (signal.SIGINT, True)],
                         ids=["TERM", "HUP", "INT-group"])
def test_a_stop_signal_at_any_moment_stops_cleanly(tmp_path, big_corpus, moment, signum, group):
    stop_cleanly(tmp_path, big_corpus, signum, moment, group=group)


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["starting", "workers", "writing"])
def test_sigkill_at_any_moment_leaves_no_process_and_the_next_run_no_temporary(tmp_path, big_corpus, moment):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "o.jsonl"
    run = Run(prepare_cmd(big_corpus, out), out, stdout=subprocess.DEVNULL)
    try:
        when = at_moment(run, moment, random.Random())
        survivors = run.survivors_after(signal.SIGKILL, group=False)
    finally:
        run.kill_all()
    assert survivors == [], f"alive {GONE_WITHIN} s after SIGKILL at {when}: {survivors}"
    small = tmp_path / "small.jsonl"
    small.write_text(GOOD + "\n")
    prepare(small, "qwen2.5", QWEN, out, workers=1)
    assert leftovers(out_dir) == []


@pytest.mark.slow
def test_timeout_s_term_on_the_installed_command_through_a_pipe(tmp_path, big_corpus):
    """``timeout -s TERM N chatfmt prepare ... | cat``, the script as installed (workers after 5 s)."""
    if shutil.which("timeout") is None:
        pytest.skip("no timeout(1)")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out, rejects = old_output(out_dir)
    seconds = random.uniform(6, 20)  # before the workers (they start after 5 s of encoding), or during
    cmd = ["timeout", "--preserve-status", "-s", "TERM", f"{seconds:.2f}",
           *prepare_cmd(big_corpus, out, script=chatfmt_script())]
    run = Run(cmd, out, stdout=subprocess.PIPE)
    cat = subprocess.Popen(["cat"], stdin=run.proc.stdout, stdout=subprocess.PIPE)
    run.proc.stdout.close()
    try:
        deadline = time.monotonic() + MOMENT_WITHIN
        while run.proc.poll() is None and time.monotonic() < deadline:
            run.sample()
            time.sleep(0.05)
        ended = time.monotonic()
        cat.communicate(timeout=GONE_WITHIN + 5)
        while any(is_alive(p) for p in run.seen.values()) and time.monotonic() < ended + GONE_WITHIN:
            time.sleep(0.05)
        survivors = [p.pid for p in run.seen.values() if is_alive(p)]
    finally:
        cat.kill()
        run.kill_all()
    assert survivors == [], f"alive {GONE_WITHIN} s after timeout's SIGTERM at {seconds:.1f} s: {survivors}"
    assert run.proc.returncode == 143, run.stderr()
    assert (out.read_text(), rejects.read_text()) == ("the old output\n", "the old rejects\n")
    assert leftovers(out_dir) == []


@pytest.mark.slow
def test_a_worker_killed_from_outside_is_one_line_exit_2_and_nothing_left(tmp_path, big_corpus):
    """What the out-of-memory killer does: SIGKILL to one worker. The run stops with one line
    (``WorkerError``), exit 2, the other worker gone, no output and no temporary."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "o.jsonl"
    run = Run(prepare_cmd(big_corpus, out), out, stdout=subprocess.DEVNULL)
    try:
        at_moment(run, "writing", random.Random())
        victim = run.workers()[0]
        victim.kill()
        code = run.wait(60)
        deadline = time.monotonic() + GONE_WITHIN
        while any(is_alive(p) for p in run.seen.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        survivors = [p.pid for p in run.seen.values() if is_alive(p)]
    finally:
        run.kill_all()
    assert survivors == []
    assert code == 2, run.stderr()
    assert run.stderr().splitlines() == [
        "chatfmt: error: a prepare worker process ended unexpectedly (killed, or out of memory?); no output written"
    ]
    assert not out.exists() and leftovers(out_dir) == []
