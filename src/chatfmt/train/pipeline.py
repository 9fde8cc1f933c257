"""``prepare``: records -> validated conversations -> encoded rows, written atomically, with a report.

Flow: :func:`~chatfmt.train.readers.iter_raw_records` streams raw records; an *engine* turns
batches of them into :class:`~chatfmt.train.encoder.Outcome` lists, in input order, by running
:func:`~chatfmt.train.encoder.encode_records` on each batch:

- ``local`` (default): in this process, or with ``workers > 1`` in that many spawned worker
  processes (each loads the format and tokenizer once), at most ``2 * workers`` batches in flight
  so memory stays bounded; results are taken in submission order, so the output is identical to
  ``workers=1`` (the same batches, the same row groups);
- ``ray``: the same function in Ray Data ``map_batches`` (see :mod:`chatfmt.train.ray_engine`).

This process writes the outcomes: rows to a temporary file beside ``output`` that is renamed over it
at the end, so a run that fails or is killed midway leaves no (partial) output; the same for the
rejects file ``<output>.rejects.jsonl``, and the two are moved into place together (the old rejects
file is put back if the output cannot be). The output is JSONL or Parquet (one row group per batch),
and with ``pack`` examples are packed into sequences (see :mod:`chatfmt.train.writers`).

Before any work the output and rejects paths are checked (:func:`_check_output`) and temporaries
left there by dead runs are removed (:func:`_remove_stale`). Worker processes end with this process
however it ends (:func:`_die_with_parent`) and are killed when the run stops early; the command line
turns SIGTERM/SIGHUP into the same clean stop as Ctrl-C (``chatfmt.cli.prepare``).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import re
import signal
import stat
import struct
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack, contextmanager, suppress
from itertools import chain, islice
from pathlib import Path
from typing import IO, Any, Literal

from ..compat import check_tokenizer
from ..errors import ChatfmtError, OutputError, WorkerError
from ..formats.base import unread_template_kwargs, warn_not_rendered
from ..formats.loader import with_tokenizer_tokens
from ..held import hold_in_this_thread, release_this_thread
from .encoder import TRAIN_ON, TRUNCATIONS, EncodeOptions, Loader, Outcome, encode_records
from .readers import RawRecord, expand_inputs, iter_raw_records
from .report import Rejection, Report
from .writers import (
    OUTPUT_FORMATS,
    JsonlSink,
    Packer,
    ParquetSink,
    open_sink,
    output_format_for,
    require_pyarrow,
)

PrepareTruncation = Literal["error", "right", "drop_oldest_turns", "skip"]
ENGINES = ("local", "ray")

__all__ = ["ENGINES", "OutputError", "TRAIN_ON", "TRUNCATIONS", "WorkerError", "prepare", "rejects_path"]


def rejects_path(output: str | Path) -> Path:
    """Where the rejected records of ``output`` go: ``<output>.rejects.jsonl``."""
    return Path(f"{output}.rejects.jsonl")


def _tmp_path(path: Path, pid: int | None = None, kind: str = "tmp") -> Path:
    """``.NAME.PID.tmp`` beside ``path``: where this run writes it (``kind="bak"``: where the old
    rejects file waits while the new output and rejects are moved into place)."""
    return path.with_name(f".{path.name}.{os.getpid() if pid is None else pid}.{kind}")


def _what(path: Path, rejects: Path) -> str:
    return "the rejects file" if path == rejects else "the output"


def _check_output(output: Path, rejects: Path) -> None:
    """Refuse, before any work, an output that could only fail at the end: a missing parent
    directory, a directory (or a device, FIFO, socket) where the output or rejects file goes, a file
    that cannot be renamed over (:func:`_unreplaceable`), a directory where this process cannot
    create a file. Raises :class:`OutputError` naming it."""
    try:
        parent_mode = output.parent.stat().st_mode
    except FileNotFoundError:
        raise OutputError(f"cannot write the output {output}: {output.parent} does not exist") from None
    except OSError as e:
        raise OutputError(f"cannot write the output {output}: {e.strerror or e} ({output.parent})") from e
    if not stat.S_ISDIR(parent_mode):
        raise OutputError(f"cannot write the output {output}: {output.parent} is not a directory")
    for path in (output, rejects):
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            continue
        except OSError as e:
            raise OutputError(f"cannot write {_what(path, rejects)} {path}: {e.strerror or e}") from e
        if stat.S_ISDIR(mode):
            raise OutputError(f"cannot write {_what(path, rejects)} {path}: it is a directory")
        if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            raise OutputError(
                f"cannot write {_what(path, rejects)} {path}: it is not a regular file "
                "(the output is written beside it and renamed over it)"
            )
        why = _unreplaceable(path, mode, parent_mode, output.parent)
        if why:
            raise OutputError(f"cannot write {_what(path, rejects)} {path}: {why}")
    probe = _tmp_path(output)
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError as e:
        raise OutputError(f"cannot write the output {output}: {e.strerror or e} (in {output.parent})") from e
    os.close(fd)
    with suppress(OSError):
        os.unlink(probe)


#: ioctl reading a Linux inode's flags (``_IOR('f', 1, long)``), and the two that forbid a rename over it
_FS_IOC_GETFLAGS = (2 << 30) | (struct.calcsize("l") << 16) | (ord("f") << 8) | 1
_FS_IMMUTABLE_FL, _FS_APPEND_FL = 0x10, 0x20


def _unreplaceable(path: Path, mode: int, parent_mode: int, parent: Path) -> str | None:
    """Why an existing regular file cannot be renamed over by this process, when that can be told
    beforehand: an immutable or append-only file (Linux ``chattr +i`` / ``+a``), another user's
    file in a sticky directory (such as /tmp)."""
    st = path.lstat()
    euid = os.geteuid() if hasattr(os, "geteuid") else None
    if (
        euid not in (None, 0)
        and parent_mode & stat.S_ISVTX
        and st.st_uid != euid
        and parent.stat().st_uid != euid
    ):
        return "it belongs to another user in a sticky directory (it cannot be replaced)"
    if not (sys.platform.startswith("linux") and stat.S_ISREG(mode)):
        return None
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        buf = bytearray(8)
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, buf)
    except OSError:  # a filesystem without inode flags
        return None
    finally:
        os.close(fd)
    flags = int.from_bytes(buf[:4], sys.byteorder)
    if flags & (_FS_IMMUTABLE_FL | _FS_APPEND_FL):
        kind = "immutable" if flags & _FS_IMMUTABLE_FL else "append-only"
        return f"it is {kind} (chattr), so it cannot be replaced"
    return None


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie is not); another user's process counts."""
    if pid == os.getpid():  # a file with our pid was left by a dead run that had it before
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    with suppress(OSError, IndexError):  # Linux: a zombie holds its pid until it is reaped
        stat_line = Path(f"/proc/{pid}/stat").read_text()
        return stat_line[stat_line.rindex(")") + 2] != "Z"
    return True


def _remove_stale(output: Path, rejects: Path) -> list[Path]:
    """Remove what runs into ``output`` that are no longer alive left behind (their ``.NAME.PID.tmp``
    files), and put back an old rejects file such a run had set aside (``.NAME.PID.bak``) if it died
    before its output was in place. Returns the removed paths. A live run's files are left alone."""
    names = {f".{output.name}.": output, f".{rejects.name}.": rejects}
    pattern = re.compile(r"(\d+)\.(tmp|bak)")
    found: list[tuple[int, str, Path, Path]] = []
    try:
        entries = list(os.scandir(output.parent))
    except OSError:
        return []
    for entry in entries:
        for prefix, target in names.items():
            m = pattern.fullmatch(entry.name[len(prefix) :]) if entry.name.startswith(prefix) else None
            if m is not None:
                found.append((int(m[1]), m[2], target, Path(entry.path)))
    removed: list[Path] = []
    dead = {pid for pid, *_ in found if not _pid_alive(pid)}
    for pid, kind, target, path in sorted(found, key=lambda f: f[1] != "bak"):  # .bak first
        if pid not in dead or (kind == "bak" and target != rejects):
            continue
        with suppress(OSError):
            if kind == "bak" and (not os.path.lexists(rejects) or _tmp_path(output, pid).exists()):
                os.replace(path, rejects)  # its output was never replaced: the old rejects belong to it
                continue
            path.unlink()
            removed.append(path)
    return removed


def _commit(tmp_out: Path, output: Path, tmp_rej: Path, rejects: Path) -> None:
    """Move the new output and rejects into place together: the old rejects file is set aside first
    and put back if the output cannot be moved (or a signal comes in between), so a failed run never
    leaves a new rejects file beside an old output. The output's rename is the commit point."""
    backup = _tmp_path(rejects, kind="bak")
    had_rejects = os.path.lexists(rejects)
    try:
        with _writing(rejects, "the rejects file"):
            if had_rejects:
                os.replace(rejects, backup)
            os.replace(tmp_rej, rejects)
        with _writing(output):
            os.replace(tmp_out, output)
    except BaseException:
        if os.path.lexists(tmp_out):  # the output was not replaced: undo the rejects
            with suppress(OSError):
                if os.path.lexists(backup):
                    os.replace(backup, rejects)
                elif not had_rejects and not os.path.lexists(tmp_rej):
                    os.unlink(rejects)
        raise
    with suppress(OSError):
        os.unlink(backup)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _batches(records: Iterable[RawRecord], size: int) -> Iterator[list[RawRecord]]:
    it = iter(records)
    while batch := list(islice(it, size)):
        yield batch


# -- the garbage collector ---------------------------------------------------------------------------

#: the collector's first threshold while ``prepare`` runs (Python's default: 700); see :func:`fewer_collections`
GC_THRESHOLD = 100_000
_gc_lock = threading.Lock()
_gc_runs = 0
_gc_saved: tuple[int, int, int] | None = None


def _raise_gc_threshold() -> tuple[int, int, int]:
    """Set the first threshold to :data:`GC_THRESHOLD` (unless it is 0: automatic collection off, or
    higher already); returns the thresholds it replaced."""
    old = gc.get_threshold()
    if old[0] and old[0] < GC_THRESHOLD:
        gc.set_threshold(GC_THRESHOLD, *old[1:])
    return old


@contextmanager
def fewer_collections() -> Iterator[None]:
    """The garbage collector's youngest generation collected after :data:`GC_THRESHOLD` net new
    container objects instead of 700, while a ``prepare`` runs in this process (the first run in
    sets it, the last one out puts back what was there, if nothing else changed it meanwhile).

    Every encoded record is a few long lists of ints that live until they are written; with the
    default threshold the collector traverses them again at every collection of each generation
    while they live (about 100 us of CPU per conversation measured here, 3-4 % of tokenizing it),
    with this one about once per thousand conversations. Nothing else changes: objects are freed by
    their reference counts as before, and garbage cycles are still collected, later."""
    global _gc_runs, _gc_saved
    with _gc_lock:
        if _gc_runs == 0:
            old = _raise_gc_threshold()
            _gc_saved = old if gc.get_threshold() != old else None
        _gc_runs += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_runs -= 1
            if _gc_runs == 0 and _gc_saved is not None:
                if gc.get_threshold()[0] == GC_THRESHOLD:
                    gc.set_threshold(*_gc_saved)
                _gc_saved = None


# -- the tokenizer's own threads ---------------------------------------------------------------------

#: the variable ``tokenizers`` reads on every batch call: a false value runs the batch in the calling
#: thread instead of its thread pool
_PARALLELISM = "TOKENIZERS_PARALLELISM"
_par_lock = threading.Lock()
_par_runs = 0
_par_saved: str | None = None


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


@contextmanager
def serial_tokenizer(active: bool = True) -> Iterator[None]:
    """``tokenizers`` batch calls in the calling thread (``TOKENIZERS_PARALLELISM=false``) while
    ``prepare`` encodes in this process with at least as many threads of its own as there are CPUs
    (``active``); the first run in sets it, the last one out puts back what was there.

    Each of prepare's encoding threads then tokenizes its batch on one core, without the GIL, while
    the others do their Python work; with the tokenizer's pool, two threads' batch calls and their
    Python work contended for two cores. Measured on 2 cores (1,000 conversations, Qwen2.5, same
    runs): 1.16-1.22x the raw reference's CPU time instead of 1.25-1.33x, cpu/wall 1.86-1.94 instead
    of 1.74-1.81 (docs/performance.md). The ids are the same either way (the same tokenizer, one text
    at a time or not).
    Other threads of this process that call ``tokenizers`` meanwhile run their batches in one thread
    too; nothing else changes."""
    global _par_runs, _par_saved
    if not active:
        yield
        return
    with _par_lock:
        if _par_runs == 0:
            _par_saved = os.environ.get(_PARALLELISM)
            os.environ[_PARALLELISM] = "false"
        _par_runs += 1
    try:
        yield
    finally:
        with _par_lock:
            _par_runs -= 1
            if _par_runs == 0:
                if os.environ.get(_PARALLELISM) == "false":
                    if _par_saved is None:
                        del os.environ[_PARALLELISM]
                    else:
                        os.environ[_PARALLELISM] = _par_saved
                _par_saved = None


# -- the local engine --------------------------------------------------------------------------------

_WORKER: tuple[Any, Any, EncodeOptions] | None = None


#: prctl(2) option: the signal this process gets when the thread that started it ends (Linux)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """End this worker process when the process that started it ends, however it ends (SIGKILL
    included): on Linux the kernel sends SIGKILL at the parent's death (``PR_SET_PDEATHSIG``); on
    every POSIX system a daemon thread also checks twice a second that the parent is still the
    parent. A parent that died before this ran is caught by the first check. The worker ignores
    SIGINT, SIGTERM and SIGHUP (from the moment it starts: the parent blocks them while it starts
    workers, see :func:`_submit`): the parent decides (it kills its workers when it stops), so a
    Ctrl-C or a ``timeout``/systemd signal to the whole process group does not break the pool under it."""
    import multiprocessing
    import threading

    parent = multiprocessing.parent_process()
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):  # blocked by the parent while it started this process
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    if sys.platform.startswith("linux"):
        import ctypes

        with suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent is None or os.name != "posix":
        return
    if os.getppid() != parent.pid:
        os._exit(1)

    def watch(pid: int) -> None:
        while os.getppid() == pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, args=(parent.pid,), name="chatfmt-parent-watch", daemon=True).start()


_STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


def _submit(pool: ProcessPoolExecutor, batch: list[RawRecord]) -> Future[list[Outcome]]:
    """``pool.submit``, with the stop signals blocked in this thread meanwhile: a worker process it
    starts inherits the mask, so it cannot be interrupted before it ignores them (a signal that
    arrives meanwhile is delivered to this process when they are unblocked, not lost)."""
    if not hasattr(signal, "pthread_sigmask"):
        return pool.submit(_worker_run, batch)
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        return pool.submit(_worker_run, batch)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    """SIGKILL the pool's worker processes (they ignore SIGTERM; they hold no file of the run), so
    that ``pool.shutdown(wait=True)`` returns at once.

    A worker killed while it sends a result leaves the pool's manager thread waiting for the rest of
    that message, for ever: this process holds the other write end of the result pipe. Closing it
    here makes that read end (EOF), and the pool winds down as for any dead worker."""
    kill = getattr(pool, "kill_workers", None)  # Python 3.14
    if kill is not None:
        with suppress(Exception):
            kill()
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        with suppress(Exception):
            proc.kill()
    writer = getattr(getattr(pool, "_result_queue", None), "_writer", None)
    if writer is not None:
        with suppress(OSError):
            writer.close()


def _result(future: Future[list[Outcome]], pool: ProcessPoolExecutor) -> list[Outcome]:
    """``future.result()``, checking every second that no worker has died: one killed from outside
    while it sent a result would otherwise leave the pool waiting for ever (see :func:`_kill_workers`);
    then the pool breaks and this raises ``BrokenProcessPool``."""
    while True:
        try:
            return future.result(timeout=1.0)
        except TimeoutError:
            procs = list((getattr(pool, "_processes", None) or {}).values())
            if any(p.exitcode is not None for p in procs):
                _kill_workers(pool)


def _worker_init(fmt: Loader, tok: Loader, opts: EncodeOptions) -> None:
    global _WORKER
    _die_with_parent()
    _raise_gc_threshold()  # for the worker's life: it only encodes (see fewer_collections)
    hold_in_this_thread()  # the tokenizer's encodings freed many batches at a time (chatfmt.held)
    # one thread per worker: K workers use K cores (in-process, tokenizers' own threads do that)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ["RAYON_NUM_THREADS"] = "1"
    _WORKER = (fmt.get(), tok.get(), opts)


def _worker_run(records: list[RawRecord]) -> list[Outcome]:
    assert _WORKER is not None, "worker not initialised"
    return encode_records(*_WORKER[:2], records, _WORKER[2])


#: seconds of in-process encoding after which worker processes are started (starting one costs
#: seconds: a fresh interpreter, imports, loading the tokenizer; a smaller input never pays it)
WORKERS_AFTER = 5.0
#: threads encoding batches in this process (see :func:`local_engine`)
ENCODE_THREADS = 2
#: records of the first batch encoded on their own, ahead of the rest of it (see :func:`pieces`)
FIRST_PIECE = 16


def pieces(batch: list[RawRecord], first: bool, left: int, split: int = 1) -> list[list[RawRecord]]:
    """``batch`` cut into the pieces :func:`local_engine` encodes separately (a record's outcome
    does not depend on the others, so the batch's outcomes are the pieces' in order); ``left`` is
    how many batches follow it (0, 1, or 2 for more).

    The first batch's first :data:`FIRST_PIECE` records go on their own, so that the tokenizer
    starts after the Python work of a few records, not of a whole batch (the two threads' first
    batches would otherwise take turns on the GIL with the tokenizer idle). With the tokenizer on
    its thread pool (``split`` 1) the last batch is cut in two halves, so that its labels are
    computed in both threads, not after the whole of it. With one core per encoding thread
    (``split`` > 1: :func:`serial_tokenizer`) the rest of the last batch, and of the first when the
    input is one or two batches, is cut in ``split`` parts however small, so that a small input is
    tokenized on every core. Other batches stay whole: the threads then work out of step, one
    tokenizing while the other does its Python work; batches cut in equal parts put them in step,
    both on the GIL at once with a core idle (measured here, 1,000 conversations: the
    second-to-last batch cut too, 0.75x raw instead of 0.83-0.85x; every batch cut in two, 0.81x), and
    a tokenizer call costs more CPU per text the fewer texts it gets (32-record pieces: +14 %)."""
    cuts = [0]
    if first and len(batch) >= 2 * FIRST_PIECE:
        cuts.append(FIRST_PIECE)
    start = cuts[-1]
    rest = len(batch) - start
    if split > 1:
        parts = min(split, rest) if left == 0 or (first and left == 1) else 1
    else:
        parts = 2 if left == 0 and rest >= 2 * FIRST_PIECE else 1
    parts = max(parts, 1)
    cuts += [start + rest * k // parts for k in range(1, parts)]
    cuts.append(len(batch))
    return [batch[a:b] for a, b in zip(cuts, cuts[1:])]


def _release_held(done: threading.Barrier) -> None:
    """The last task of each encoding thread (the barrier gives each thread one, once all have
    finished their batches): free the encodings it holds while the last batches are written, not
    when the thread ends."""
    with suppress(threading.BrokenBarrierError):
        done.wait(timeout=60.0)  # (a timeout only breaks the barrier: every thread then frees at once)
    release_this_thread()


def local_engine(
    batches: Iterator[list[RawRecord]], fmt: Loader, tok: Loader, opts: EncodeOptions, workers: int
) -> Iterator[list[Outcome]]:
    """Outcomes of each batch, in order. Batches are encoded in this process for the first
    ``WORKERS_AFTER`` seconds, then (``workers > 1``) by worker processes; a batch's outcome does not
    depend on where it is encoded, so the output is the same either way.

    In this process :data:`ENCODE_THREADS` helper threads encode batches ahead of the caller: the
    tokenizer releases the GIL while it tokenizes, so one batch's Python work (JSON, validation,
    rendering, labels) runs while another is tokenized, and the caller writes batch ``i`` meanwhile;
    with no more CPUs than threads, each tokenizes on its own core (:func:`serial_tokenizer`). The
    first batch and the last (or last two) are encoded in pieces (:func:`pieces`; the next two
    batches are read before one is submitted, to know where the end is). Results are taken in submission order. Lazily built
    state of a format or tokenizer may be built twice by racing threads; every such state gives the
    same output, and the whole-text encoder is built here first so no batch takes the slower
    run-by-run path while it is being built."""
    f, t = fmt.get(), tok.get()
    whole = getattr(t, "whole_text_encoder", None)
    (whole or t.whole_text_backend)()
    started = time.perf_counter()
    switch = False
    inflight: deque[list[Future[list[Outcome]]]] = deque()

    def take() -> list[Outcome]:
        out: list[Outcome] = []
        for future in inflight.popleft():
            out += future.result()
        return out

    # each thread keeps the tokenizer's encodings it is done with and frees them together (chatfmt.held)
    encoder = ThreadPoolExecutor(
        ENCODE_THREADS, thread_name_prefix="chatfmt-prepare", initializer=hold_in_this_thread
    )
    done = threading.Barrier(ENCODE_THREADS)
    ahead: deque[list[RawRecord]] = deque()  # the next batches, read before one is submitted
    one_core_each = usable_cpus() <= ENCODE_THREADS
    split = ENCODE_THREADS if one_core_each else 1
    serial = serial_tokenizer(one_core_each)
    serial.__enter__()
    try:
        ahead.extend(islice(batches, 2))
        at_start = True
        while ahead:
            batch = ahead.popleft()
            if (more := next(batches, None)) is not None:
                ahead.append(more)
            inflight.append(
                [
                    encoder.submit(encode_records, f, t, p, opts)
                    for p in pieces(batch, at_start, len(ahead), split)
                ]
            )
            at_start = False
            if not ahead:  # that was the last batch: each thread frees what it holds once it is done
                for _ in range(ENCODE_THREADS):
                    encoder.submit(_release_held, done)
            if len(inflight) > ENCODE_THREADS:
                yield take()
            if workers > 1 and time.perf_counter() - started > WORKERS_AFTER:
                switch = True
                break
        while inflight:
            yield take()
    finally:
        done.abort()  # a thread waiting in _release_held goes on
        encoder.shutdown(wait=True, cancel_futures=True)
        serial.__exit__(None, None, None)
    pending: deque[Future[list[Outcome]]] = deque()
    batches = chain(ahead, batches)
    if not switch:
        return
    first = next(batches, None)
    if first is None:
        return
    import multiprocessing

    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_init,
        initargs=(fmt, tok, opts),
    )
    try:
        for batch in chain([first], batches):
            pending.append(_submit(pool, batch))
            if len(pending) >= 2 * workers:
                yield _result(pending.popleft(), pool)
        while pending:
            yield _result(pending.popleft(), pool)
    except BaseException as e:  # a signal, an error in the writer, the caller closing us: stop now
        _kill_workers(pool)  # (they ignore the SIGTERM a broken pool sends them)
        if isinstance(e, BrokenProcessPool):
            raise WorkerError(
                "a prepare worker process ended unexpectedly (killed, or out of memory?); no output written"
            ) from e
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# -- writing -----------------------------------------------------------------------------------------


class _Writer:
    """Writes outcomes: rows to the sink (or packer), rejections to the rejects file; counts."""

    def __init__(
        self,
        out: JsonlSink | ParquetSink,
        rej: IO[str],
        report: Report,
        packer: Packer | None,
        *,
        rejects: Path | None = None,
    ) -> None:
        self.out = out
        self.rej = rej
        self.rejects = rejects  # the rejects file's final name, for errors
        self.report = report
        self.packer = packer

    def reject(self, o: Outcome, rule: str, message: str) -> None:
        line = _dumps(Rejection(o.source, o.record, rule, message).to_dict()) + "\n"
        with _writing(self.rejects or Path(self.rej.name), "the rejects file"):
            self.rej.write(line)
        self.report.reject(rule)

    def batch(self, outcomes: list[Outcome]) -> None:
        r = self.report
        for o in outcomes:
            r.read += 1
            if o.fatal:
                raise o.length_error()
            if o.rule is not None:
                self.reject(o, o.rule, o.message or "")
                continue
            ids, labels, mask = o.input_ids or [], o.labels or [], o.attention_mask or []
            n = len(ids)
            if self.packer is not None:
                if n > self.packer.size:
                    self.reject(o, "pack_length", f"example is {n} tokens, over pack {self.packer.size}")
                    continue
                labels = self.packer.add(ids, labels, mask, o.source, o.record)
            else:
                self.out.write(
                    {
                        "input_ids": ids,
                        "labels": labels,
                        "attention_mask": mask,
                        "length": n,
                        "source": o.source,
                        "record": o.record,
                    }
                )
            r.written += 1
            for name in o.not_rendered:
                r.not_rendered[name] = r.not_rendered.get(name, 0) + 1
            r.tokens_total += n
            r.tokens_trained += len(labels) - labels.count(-100)
            r.truncated += o.truncated
            r.count_length(n)
        self.out.end_batch()


@contextmanager
def _writing(path: Path, what: str = "the output") -> Iterator[None]:
    """OS errors (a full disk, a quota, an I/O error) while writing ``path`` become an
    :class:`OutputError` naming it."""
    try:
        yield
    except OSError as e:
        reason = e.strerror or str(e)
        raise OutputError(f"cannot write {what} {path}: {reason}") from e


def _close_quietly(f: Any) -> None:
    """Close ``f`` after a failure: its unwritten buffer (a full disk) must not hide the first error."""
    with suppress(Exception):
        f.close()


def _loaded(what: str, spec: Any) -> Any:
    """``spec`` loaded in this process (errors surface before any file is created)."""
    if not isinstance(spec, (str, Path)):
        return spec
    if what == "format":
        from ..formats.loader import load_format

        return load_format(spec)
    from ..tokenizers import load_tokenizer

    return load_tokenizer(spec)


def _provenance(format: Any, tokenizer: Any, fmt: Any, tok: Any) -> dict[str, Any]:
    """What the output was made with: the format's name and the tokenizer's path (absolute), when known."""

    def where(spec: Any, obj: Any) -> str | None:
        if isinstance(spec, (str, Path)) and Path(spec).exists():
            return str(Path(spec).resolve())
        if isinstance(spec, str):
            from ..hub import pinned

            return pinned(spec) or spec  # a Hub id as ORG/NAME@COMMIT: the exact files
        src = getattr(getattr(obj, "obj", obj), "source", None) or getattr(obj, "source", None)
        return str(src) if src else None

    fmt_obj = getattr(fmt, "obj", fmt)
    info = getattr(fmt_obj, "info", None)
    return {
        "format": where(format, fmt) or (info.name if info is not None else None),
        "tokenizer": where(tokenizer, tok),
        "chatfmt_version": _version(),
    }


def _datasets(
    inputs: Any, dataset: str | Iterable[str], info: str | Path | None, opts: EncodeOptions
) -> tuple[list[Path], EncodeOptions]:
    """The files of the named datasets of a ``dataset_info.json`` and the options that map them."""
    from .dataset_info import DatasetInfoError, load_dataset_info

    names = [
        n.strip()
        for item in ([dataset] if isinstance(dataset, str) else dataset)
        for n in str(item).split(",")
    ]
    names = [n for n in names if n]
    if not names:
        raise DatasetInfoError("no dataset named")
    if opts.input_kind is not None:
        raise DatasetInfoError(
            "input_kind and dataset: the dataset description's formatting decides the record kind"
        )
    if info is None:
        given = [inputs] if isinstance(inputs, (str, Path)) else list(inputs or ())
        if len(given) != 1:
            raise DatasetInfoError(
                "give the directory holding dataset_info.json (or the file) as the one input, "
                "or dataset_info="
            )
        info = given[0]
    elif inputs not in (None, [], ()):
        raise DatasetInfoError(
            "with dataset_info and dataset, the inputs are the datasets' files: give no other"
        )
    found = load_dataset_info(info, names)
    files = [f for d in found for f in d.files]
    layouts = tuple((str(f), d.layout) for d in found for f in d.files)
    return files, dataclasses.replace(opts, layouts=layouts)


def _format_name(fmt: Any, spec: Any) -> str:
    info = getattr(fmt, "info", None)
    return str(getattr(info, "name", None) or spec)


def _version() -> str:
    from .. import __version__

    return __version__


def prepare(
    inputs: str | Path | Iterable[str | Path] | None,
    format: Any,
    tokenizer: Any,
    output: str | Path,
    *,
    max_length: int | None = None,
    truncation: PrepareTruncation = "error",
    train_on: str = "all_assistant",
    input_kind: str | None = None,
    batch_size: int = 256,
    output_format: str | None = None,
    pack: int | None = None,
    workers: int | None = 1,
    engine: str = "local",
    ray_address: str | None = None,
    on_record: Callable[[int], None] | None = None,
    allow_missing_tokens: bool = False,
    ignore_keys: Iterable[str] = (),
    reject_unrendered_tools: bool = False,
    template_kwargs: Mapping[str, Any] | None = None,
    dataset: str | Iterable[str] | None = None,
    dataset_info: str | Path | None = None,
) -> Report:
    """Encode every record of ``inputs`` (JSONL / JSON / Parquet files, directories, globs) with
    ``format`` and ``tokenizer`` into the dataset ``output``; returns the :class:`Report`.

    Rows are ``{"input_ids", "labels", "attention_mask", "length", "source", "record"}`` (labels
    ``-100`` where not trained); rejected records go to ``<output>.rejects.jsonl`` as ``{"source",
    "record", "rule", "message"}``; ``read == written + rejected`` always.

    ``output_format`` is ``"jsonl"`` or ``"parquet"`` (needs pyarrow; columns ``input_ids`` /
    ``labels`` list<int32>, ``attention_mask`` list<int8>, ``length`` int32, ``source`` string,
    ``record`` int64, one row group per batch); by default ``parquet`` when ``output`` ends in
    ``.parquet``, else ``jsonl``. ``pack=N`` packs the examples greedily, in order, into rows of at
    most N tokens with ``position_ids``, ``seq_lengths``, ``sources`` and ``records`` (the first label
    of each packed example is -100 so labels never cross examples; see
    :mod:`chatfmt.train.writers`); an example longer than N is rejected with rule ``pack_length``.
    The report still counts examples (``written``), and ``packed_sequences`` the rows.

    ``format`` and ``tokenizer`` are objects or anything :func:`~chatfmt.load_format` /
    :func:`~chatfmt.load_tokenizer` take (with ``workers > 1`` or Ray, names/paths are loaded once
    in each worker; objects are pickled, and one that cannot be runs in this process with a warning).
    ``truncation`` is an :func:`~chatfmt.encode` strategy or ``"skip"`` (over-length records are
    rejected with rule ``max_length``); with ``"error"`` an over-length record stops the run with a
    :class:`~chatfmt.encode.LengthError` naming it, and no output is left behind. ``input_kind``
    forces the record kind (default: detected per record). ``ignore_keys`` are dropped from every
    record and message before parsing, for data where a key chatfmt acts on (a loss key such as
    ``weight`` or ``mask``, ``chosen``/``rejected``, ``images``, ...) means something else.

    ``workers``: processes for the local engine (``None``: all cores; 1: this process). ``engine``:
    ``"local"`` or ``"ray"`` (Ray Data; ``ray_address`` joins a cluster, else a local Ray instance is
    started). The output is the same whatever the engine and worker count. ``on_record(n)`` is called
    as records are written (for progress).

    A tokenizer that lacks a token the format relies on (a role marker, BOS/EOS, a literal id) is
    refused before any record is read (:class:`~chatfmt.errors.TokenizerMismatchError`), unless
    ``allow_missing_tokens=True``.

    A record with tools the format leaves out of its prompt (a template that never renders tools) is
    written and counted in the report's ``not_rendered``; ``reject_unrendered_tools=True`` rejects it
    instead (rule ``tools_not_rendered``).

    ``template_kwargs`` (``{"enable_thinking": False}``) go to the render of every record, in this
    process, the worker processes and on Ray alike. One the format never reads is reported, once,
    before any record is read (a :class:`~chatfmt.errors.NotRenderedWarning`; the report's
    ``template_kwargs_not_read``), not ignored in silence.

    ``dataset`` names datasets of LLaMA-Factory's ``dataset_info.json`` (a name, ``"a,b"`` or a
    list): their files are the inputs, each read with its description's formatting, column and tag
    mapping (see :mod:`chatfmt.train.dataset_info`). The file is ``dataset_info``, else the
    ``dataset_info.json`` in ``inputs`` (a directory, as LLaMA-Factory's ``dataset_dir``, or the
    file itself).

    ``output_format="arrow"``: ``output`` is a directory written as ``datasets``' ``save_to_disk``
    writes a ``DatasetDict`` with a ``train`` split (``datasets.load_from_disk``, LLaMA-Factory's
    ``tokenized_path``), with the columns trainers take as they are (see
    :mod:`chatfmt.train.datasets_out`).
    """
    if output_format == "arrow":  # first: locals() are the arguments as given
        arguments = dict(locals())
        from .datasets_out import prepare_arrow

        return prepare_arrow(prepare, arguments)
    opts = EncodeOptions(max_length, truncation, train_on, input_kind, tuple(ignore_keys))
    opts = opts.with_template_kwargs(template_kwargs)
    if dataset is not None:
        inputs, opts = _datasets(inputs, dataset, dataset_info, opts)
    elif dataset_info is not None:
        from .dataset_info import DatasetInfoError

        raise DatasetInfoError("dataset_info needs dataset: the names of the datasets to read from it")
    if reject_unrendered_tools:
        opts = dataclasses.replace(opts, reject_unrendered_tools=True)
    opts.check()
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    if output_format is not None and output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output_format must be one of {', '.join(OUTPUT_FORMATS)}, not {output_format!r}")
    if pack is not None and pack < 1:
        raise ValueError(f"pack must be at least 1, not {pack}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    out_format = output_format_for(output, output_format)
    if out_format == "parquet":
        require_pyarrow()
    output = Path(output)
    rejects = rejects_path(output)
    _check_output(output, rejects)  # before any work: a bad output path is found now, not at the end
    _remove_stale(output, rejects)
    tok_l = Loader("tokenizer", tokenizer)
    fmt_l = Loader("format", format, tokens_from=tok_l)  # a bare .jinja takes the tokenizer's special tokens
    tok_l.obj = _loaded("tokenizer", tokenizer)
    fmt_l.obj = with_tokenizer_tokens(_loaded("format", format), tok_l.obj)
    check_tokenizer(fmt_l.obj, tok_l.obj, allow_missing_tokens=allow_missing_tokens)
    kwargs_not_read = unread_template_kwargs(fmt_l.obj, dict(opts.template_kwargs))
    if kwargs_not_read:
        warn_not_rendered(_format_name(fmt_l.obj, format), kwargs_not_read)
    if allow_missing_tokens:
        opts = dataclasses.replace(opts, allow_missing_tokens=True)
    if (workers > 1 or engine == "ray") and not (fmt_l.picklable() and tok_l.picklable()):
        if engine == "ray":
            raise ChatfmtError(
                "--engine ray needs the format and tokenizer as names or paths (these objects do not pickle)"
            )
        warnings.warn(
            "the format or tokenizer object cannot be sent to worker processes; encoding in this process "
            "(pass names or paths to use workers)",
            stacklevel=2,
        )
        workers = 1
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    elif inputs is None:  # (only with ``dataset``, which names the files)
        inputs = ()

    tmp_out, tmp_rej = _tmp_path(output), _tmp_path(rejects)
    records = iter_raw_records(inputs)  # a generator: checked for missing inputs on first use
    report = Report(
        output=str(output),
        rejects=str(rejects),
        engine=engine,
        workers=workers,
        template_kwargs=dict(opts.template_kwargs),
        template_kwargs_not_read=kwargs_not_read,
    )
    started = time.perf_counter()
    try:
        with ExitStack() as stack:
            stack.enter_context(fewer_collections())
            if engine == "ray":
                from .ray_engine import ray_engine

                files = expand_inputs(inputs)  # raises InputError before any file is created
                outcomes = ray_engine(files, fmt_l, tok_l, opts, batch_size, ray_address)
            else:
                first = next(records, None)  # raises InputError before any file is created
                records = chain([first], records) if first is not None else iter(())
                outcomes = local_engine(_batches(records, batch_size), fmt_l, tok_l, opts, workers)
            stack.callback(getattr(outcomes, "close", lambda: None))
            with _writing(output):
                out = open_sink(
                    tmp_out,
                    out_format,
                    packed=pack is not None,
                    metadata=_provenance(format, tokenizer, fmt_l, tok_l),
                )
                stack.callback(_close_quietly, out)  # on the way out of a failed run only: see below
            with _writing(rejects, "the rejects file"):
                rej = tmp_rej.open("w", encoding="utf-8")
                stack.callback(_close_quietly, rej)
            packer = Packer(pack, out) if pack is not None else None
            writer = _Writer(out, rej, report, packer, rejects=rejects)
            for batch in outcomes:
                with _writing(output):
                    writer.batch(batch)
                if on_record is not None:
                    on_record(len(batch))
            with _writing(output):
                if packer is not None:
                    packer.emit()
                    out.end_batch()
                    report.packed_sequences = packer.packed
            with _writing(rejects, "the rejects file"):
                rej.close()  # its last buffered lines: a full disk here names the rejects file
            with _writing(output):
                out.close()
                stack.close()
        report.check()
        _commit(tmp_out, output, tmp_rej, rejects)
    except BaseException:
        for p in (tmp_out, tmp_rej):
            with suppress(OSError):
                p.unlink(missing_ok=True)
        raise
    report.seconds = time.perf_counter() - started
    return report
