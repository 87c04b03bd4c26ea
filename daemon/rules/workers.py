"""Worker processes: a batch of pure work (a backlog of mail to interpret) on more than one core.

`WorkerPool.map(function, context, items)` runs `function(context, item)` for every item in
`python -m daemon.rules.workers` children and returns the outcomes in order: the result, or
the exception it raised. The children start with the first batch (never at idle: each holds
~25 MB) and stop after `idle_s` without one, or at `close()`.

A poison item fails alone. A batch goes out in chunks, one answer per chunk; when a child
dies on one (a crash, the kernel's OOM killer) or takes longer than `timeout_s`, its items go
again one at a time, each in a fresh child if need be, and the item that does it again gets
`WorkerDied` as its outcome; the rest of the batch goes on. A child that cannot start at all
raises `PoolUnavailable`: the caller does the work itself.

Not multiprocessing: its spawned children re-import the parent's main script (for the
`alertd` command that is the whole daemon, 1 s and 80 MB a child), and its forked ones copy
a process that runs threads. Frames on a child's stdin and stdout are an 8-byte length and a
pickle: a chunk (item count, then function, context and items) in; "read", then the list of
outcomes out. Both ends are alertd; mail travels inside them as bytes.
"""

from __future__ import annotations

import collections
import logging
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO, TypeVar

log = logging.getLogger(__name__)

C = TypeVar("C")
I = TypeVar("I")  # noqa: E741 - item
R = TypeVar("R")

# A frame starts with its length; a chunk's payload with its number of items.
_LENGTH = _COUNT = struct.Struct("!Q")
_READY = b"ready"  # a new child's greeting
_READ = b"read"  # a child has a chunk and starts on it
START_TIMEOUT_S = 30.0  # a child's start, or its imports for a chunk, on a busy machine
CHUNKS_PER_WORKER = 4  # smaller chunks even out the children's shares of a batch
MAX_CHUNK_BYTES = 8 * 1024 * 1024  # a chunk's items by their `sizes`: pickled, then copied


class WorkerDied(RuntimeError):
    """The worker process died or overran its time while on this item."""


class PoolUnavailable(RuntimeError):
    """No worker process could be started."""


def default_workers() -> int:
    """One child per core this process may use, at most 4; 0 (none) on one core."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux, or a seccomp filter refuses the call
        cores = os.cpu_count() or 1
    return 0 if cores < 2 else min(cores, 4)


class _Child:
    """One worker process and its two pipes."""

    def __init__(self, command: Sequence[str]):
        self.process = subprocess.Popen(list(command), stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, bufsize=0, close_fds=True)
        assert self.process.stdin is not None and self.process.stdout is not None
        self._in = self.process.stdin.fileno()
        self._out = self.process.stdout.fileno()
        self._readable = select.poll()  # not select(): a daemon's descriptors pass 1024
        self._readable.register(self._out, select.POLLIN)

    def send(self, payload: bytes) -> None:
        """Raises OSError (BrokenPipeError) when the child is gone."""
        view = memoryview(_LENGTH.pack(len(payload)) + payload)
        while view:
            view = view[os.write(self._in, view):]

    def receive(self, timeout_s: float) -> bytes:
        """The next frame. Raises EOFError when the child is gone, TimeoutError."""
        deadline = time.monotonic() + timeout_s
        size = _LENGTH.unpack(self._read(_LENGTH.size, deadline))[0]
        return self._read(size, deadline)

    def _read(self, size: int, deadline: float) -> bytes:
        parts: list[bytes] = []
        while size:
            remaining_ms = 1000 * (deadline - time.monotonic())
            if remaining_ms <= 0 or not self._readable.poll(remaining_ms):
                raise TimeoutError
            data = os.read(self._out, min(size, 1 << 20))
            if not data:
                raise EOFError
            parts.append(data)
            size -= len(data)
        return b"".join(parts)

    def stop(self, wait_s: float) -> None:
        """End the child: EOF on its stdin, then SIGKILL if it is still there after `wait_s`.
        Never raises."""
        try:
            assert self.process.stdin is not None and self.process.stdout is not None
            self.process.stdin.close()
            try:
                self.process.wait(wait_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process.stdout.close()
        except Exception as err:
            log.debug("workers: stopping child %s: %s", self.process.pid, err)


class WorkerPool:
    """Up to `workers` children, started on demand; thread-safe (one batch at a time).
    `timeout_s` bounds a child's answer to one chunk of a batch."""

    def __init__(self, workers: int, *, timeout_s: float = 60.0, idle_s: float = 60.0,
                 command: Sequence[str] = (sys.executable, "-m", "daemon.rules.workers")):
        self.workers = workers
        self._timeout_s = timeout_s
        self._idle_s = idle_s
        self._command = tuple(command)
        self._children: list[_Child | None] = [None] * workers
        self._lock = threading.Lock()
        self._idle_timer: threading.Timer | None = None
        self._closed = False

    @property
    def running(self) -> int:
        """How many children are alive now."""
        return sum(child is not None and child.process.poll() is None
                   for child in self._children)

    def map(self, function: Callable[[C, I], R], context: C, items: Sequence[I],
            sizes: Sequence[int] | None = None) -> list[R | Exception]:
        """`function(context, item)` for each item, in children; the outcomes in order.

        `function` must be importable by name; `context`, the items and the outcomes must
        pickle. `sizes` (bytes, one per item) keep large items in small chunks. Raises
        `PoolUnavailable` when the children cannot do it (nothing is lost: run the batch in
        this process).
        """
        with self._lock:
            if self._closed or not self.workers:
                raise PoolUnavailable("the worker pool is closed" if self._closed
                                      else "no worker processes configured")
            if self._idle_timer is not None:
                self._idle_timer.cancel()
            outcomes: list[Any] = [None] * len(items)
            todo = collections.deque(_chunks(
                sizes or [0] * len(items), -(-len(items) // (self.workers * CHUNKS_PER_WORKER))))
            failures: list[BaseException] = []
            threads = [threading.Thread(target=self._feed, name=f"worker-feed-{slot}",
                                        args=(slot, function, context, items, todo, outcomes,
                                              failures))
                       for slot in range(self.workers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            self._idle_timer = threading.Timer(self._idle_s, self._stop_if_idle)
            self._idle_timer.daemon = True
            self._idle_timer.start()
            if failures:
                raise PoolUnavailable(f"the worker processes failed: {failures[0]}"
                                      ) from failures[0]
            return outcomes

    def close(self) -> None:
        """Stop every child (at shutdown). Never raises."""
        with self._lock:
            self._closed = True
            if self._idle_timer is not None:
                self._idle_timer.cancel()
            self._stop_children()

    # --- inside map ---------------------------------------------------------------------

    def _feed(self, slot: int, function: Callable[..., Any], context: Any,
              items: Sequence[Any], todo: collections.deque[tuple[int, int]],
              outcomes: list[Any], failures: list[BaseException]) -> None:
        """One child's share: take chunks until none is left (deque operations are atomic).
        A chunk whose child dies or overruns goes back as single items, to find the one to
        blame; a single item that does it again is the one."""
        try:
            self._take_chunks(slot, function, context, items, todo, outcomes, failures)
        except Exception as err:  # a bug here: no outcome may stay unset, give up instead
            log.exception("workers: feeding child slot %d failed", slot)
            failures.append(err)

    def _take_chunks(self, slot: int, function: Callable[..., Any], context: Any,
                     items: Sequence[Any], todo: collections.deque[tuple[int, int]],
                     outcomes: list[Any], failures: list[BaseException]) -> None:
        lost = 0
        while not failures:
            try:
                start, end = todo.popleft()
            except IndexError:
                return
            try:
                child = self._child(slot)
            except PoolUnavailable as err:
                todo.appendleft((start, end))
                failures.append(err)
                return
            try:
                child.send(_COUNT.pack(end - start) + pickle.dumps(
                    (function, context, items[start:end]), protocol=pickle.HIGHEST_PROTOCOL))
            except OSError as err:  # gone since its last batch (the OOM killer?): a new one
                self._replace(slot)
                todo.appendleft((start, end))
                lost += 1
                if lost > 2:  # children die as soon as they start: give up on the pool
                    failures.append(err)
                continue
            try:
                # The chunk's time starts once the child has read it (and imported what the
                # function needs: seconds for a fresh child on a busy machine).
                if child.receive(START_TIMEOUT_S) != _READ:
                    raise EOFError("unexpected answer")
                outcomes[start:end] = pickle.loads(child.receive(self._timeout_s))  # noqa: S301 - our own child
            except (EOFError, TimeoutError, OSError) as err:
                reason = self._stop_failed(slot, err)
                if end - start > 1:
                    todo.extendleft((index, index + 1) for index in range(end - 1, start - 1, -1))
                    continue
                log.error("workers: a child %s on item %d of a batch", reason, start)
                outcomes[start] = WorkerDied(f"the worker process {reason} on this message")

    def _stop_failed(self, slot: int, err: Exception) -> str:
        """Stop the slot's child after a failed chunk; why it failed."""
        child = self._children[slot]
        if isinstance(err, TimeoutError):
            self._replace(slot, wait_s=0)
            return f"took longer than {self._timeout_s:.0f} s and was stopped"
        self._replace(slot, wait_s=1)  # dying already: its own exit status, not our SIGKILL
        status = child.process.returncode if child is not None else None
        return f"died (exit status {status})"

    def _child(self, slot: int) -> _Child:
        child = self._children[slot]
        if child is None:
            child = _Child(self._command)
            try:
                if child.receive(START_TIMEOUT_S) != _READY:
                    raise EOFError("unexpected greeting")
            except (EOFError, TimeoutError, OSError) as err:
                child.stop(0)
                raise PoolUnavailable(f"{' '.join(self._command)} did not start: "
                                      f"{type(err).__name__}") from err
            self._children[slot] = child
            log.info("workers: child %s started (slot %d of %d)", child.process.pid, slot + 1,
                     self.workers)
        return child

    def _replace(self, slot: int, wait_s: float = 0) -> None:
        child, self._children[slot] = self._children[slot], None
        if child is not None:
            child.stop(wait_s)

    # --- idle ---------------------------------------------------------------------------

    def _stop_if_idle(self) -> None:
        if self._lock.acquire(blocking=False):  # busy: a batch is on, the next one re-arms
            try:
                if self.running:
                    log.info("workers: idle for %.0f s; stopping %d child(ren)",
                             self._idle_s, self.running)
                self._stop_children()
            finally:
                self._lock.release()

    def _stop_children(self) -> None:
        for slot in range(self.workers):
            self._replace(slot, wait_s=2)


def _chunks(sizes: Sequence[int], most: int) -> list[tuple[int, int]]:
    """(start, end) of consecutive chunks of at most `most` items and, unless one item is
    larger, `MAX_CHUNK_BYTES`."""
    chunks: list[tuple[int, int]] = []
    start, total = 0, 0
    for index, size in enumerate(sizes):
        if index > start and (index - start >= most or total + size > MAX_CHUNK_BYTES):
            chunks.append((start, index))
            start, total = index, 0
        total += size
    if start < len(sizes):
        chunks.append((start, len(sizes)))
    return chunks


# --- the child ----------------------------------------------------------------------------


def _answer(function: Callable[[Any, Any], Any], context: Any, items: Sequence[Any]
            ) -> bytes:
    """The outcomes of a chunk, pickled: each result, or the exception it raised. (A result
    that does not pickle is a bug of the caller's: the chunk's child dies of it.)"""
    outcomes: list[Any] = []
    for item in items:
        try:
            outcomes.append(function(context, item))
        except Exception as err:
            outcomes.append(err)
    return pickle.dumps([_portable(outcome) for outcome in outcomes],
                        protocol=pickle.HIGHEST_PROTOCOL)


def _portable(outcome: Any) -> Any:
    """An exception as it will unpickle in the parent; its text when it would not (an
    exception class whose arguments are not what its constructor takes)."""
    if not isinstance(outcome, BaseException):
        return outcome
    try:
        pickle.loads(pickle.dumps(outcome))  # noqa: S301 - what this process just made
        return outcome
    except Exception:
        return RuntimeError(f"{type(outcome).__name__}: {outcome}")


def _read_frame(stream: BinaryIO) -> bytes | None:
    header = stream.read(_LENGTH.size)
    if len(header) < _LENGTH.size:
        return None
    size = _LENGTH.unpack(header)[0]
    payload = stream.read(size)
    return payload if len(payload) == size else None


def _write_frame(stream: BinaryIO, payload: bytes) -> None:
    stream.write(_LENGTH.pack(len(payload)) + payload)
    stream.flush()


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    """The child's loop: a chunk in, its outcomes out; ends at EOF."""
    _write_frame(answers, _READY)
    while (frame := _read_frame(requests)) is not None:
        try:
            function, context, items = pickle.loads(frame[_COUNT.size:])  # noqa: S301 - from our parent
        except Exception as err:  # e.g. a function this child cannot import: each item fails
            failed = RuntimeError(f"the worker could not read its batch: "
                                  f"{type(err).__name__}: {err}")
            _write_frame(answers, _READ)
            _write_frame(answers, pickle.dumps([failed] * _COUNT.unpack_from(frame)[0]))
            continue
        _write_frame(answers, _READ)
        _write_frame(answers, _answer(function, context, items))


def main() -> None:
    # Ctrl-C reaches the whole process group: the parent decides when children end (EOF).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print must not break a frame
    serve(sys.stdin.buffer, answers)


if __name__ == "__main__":
    main()
