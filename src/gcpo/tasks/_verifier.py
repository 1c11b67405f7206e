"""Hard-deadline ``math-verify`` calls in a pool of persistent worker processes.

Why processes: ``math-verify`` bounds its own work with ``signal.alarm``, which only works in the
main thread (TRL and verl call reward functions from worker threads too), has one-second
granularity, and cannot interrupt C code (a regex or a big-integer operation stuck on adversarial
LaTeX). Each worker here is a plain ``python -m gcpo.tasks._verifier`` subprocess — no
``multiprocessing``, so no fork of a multi-threaded CUDA process and no re-import of the user's
``__main__`` — that imports ``math_verify`` once and answers one JSON line per request. Inside
the worker a ``setitimer`` soft deadline at 80% of the budget stops sympy cleanly; the parent
enforces the hard deadline with ``select`` and kills and replaces a worker that overruns.

Per-call overhead (measured in ``tests/test_tasks_math.py`` / docs/evaluation.md): a pipe round
trip of well under a millisecond plus the math-verify work itself.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

DEFAULT_TIMEOUT_S = float(os.environ.get("GCPO_MATH_VERIFY_TIMEOUT", "3.0"))
DEFAULT_WORKERS = int(os.environ.get("GCPO_MATH_VERIFY_WORKERS", "2"))
STARTUP_TIMEOUT_S = 120.0


class _Worker:
    """One worker subprocess and its line-buffered stdout."""

    def __init__(self, command: list[str] | None = None) -> None:
        src_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src_root, env.get("PYTHONPATH", "")) if p)
        env.setdefault("OMP_NUM_THREADS", "1")
        self.proc = subprocess.Popen(
            command or [sys.executable, "-m", "gcpo.tasks._verifier"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self._fd = self.proc.stdout.fileno()
        self._buf = b""
        self.ready = False
        self.eof = False  # the worker closed its stdout (exited or crashed)

    def read_line(self, deadline: float) -> bytes | None:
        """One line from the worker, or None if the deadline passes or the worker died."""
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([self._fd], [], [], remaining)
            if not readable:
                return None
            chunk = os.read(self._fd, 65536)
            if not chunk:
                self.eof = True
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def send(self, payload: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(payload).encode() + b"\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except Exception:  # noqa: BLE001 - best effort on a process we are discarding
            pass


class MathVerifier:
    """A pool of ``num_workers`` math-verify processes with a hard per-call deadline.

    ``worker_command`` replaces the worker program (tests use it to simulate a stuck worker).
    ``verify(gold, completion, timeout)`` returns True/False and never blocks longer than about
    ``timeout`` seconds once a worker is free (plus a one-off start-up of ~1-2 s per worker).
    Thread-safe. Counters are in :meth:`stats`.
    """

    def __init__(
        self,
        num_workers: int = DEFAULT_WORKERS,
        timeout: float = DEFAULT_TIMEOUT_S,
        *,
        worker_command: list[str] | None = None,
    ):
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.num_workers = num_workers
        self.timeout = timeout
        self._command = worker_command  # tests substitute a misbehaving worker
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._lock = threading.Lock()
        self._started = False
        self._all: list[_Worker] = []
        self._stats = {"calls": 0, "timeouts": 0, "errors": 0, "restarts": 0}

    def _start(self) -> None:
        with self._lock:
            if self._started:
                return
            for _ in range(self.num_workers):
                w = _Worker(self._command)
                self._all.append(w)
                self._idle.put(w)
            self._started = True

    def _replace(self, worker: _Worker) -> _Worker:
        worker.kill()
        new = _Worker(self._command)
        with self._lock:
            self._all = [w for w in self._all if w is not worker] + [new]
            self._stats["restarts"] += 1
        return new

    def _count(self, key: str) -> None:
        with self._lock:
            self._stats[key] += 1

    def verify(self, gold: str, completion: str, timeout: float | None = None) -> bool:
        """True if math-verify finds ``completion``'s answer equivalent to ``gold``."""
        budget = self.timeout if timeout is None else float(timeout)
        if budget <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self._start()
        self._count("calls")
        worker = self._idle.get()
        try:
            if not worker.ready:
                line = worker.read_line(time.monotonic() + STARTUP_TIMEOUT_S)
                if line is None:
                    self._count("errors")
                    worker = self._replace(worker)
                    return False
                worker.ready = True
            deadline = time.monotonic() + budget
            try:
                worker.send({"g": gold, "p": completion, "t": budget})
            except (BrokenPipeError, OSError):
                self._count("errors")
                worker = self._replace(worker)
                return False
            line = worker.read_line(deadline)
            if line is None:
                # no answer by the deadline (stuck, e.g. in C code) or the worker died
                self._count("errors" if worker.eof else "timeouts")
                worker = self._replace(worker)
                return False
            reply = json.loads(line)
            if reply.get("s") == "timeout":
                self._count("timeouts")
            elif reply.get("s") != "ok":
                self._count("errors")
            return bool(reply.get("r"))
        finally:
            self._idle.put(worker)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._stats)

    def close(self) -> None:
        with self._lock:
            workers, self._all = self._all, []
            self._started = False
        for w in workers:
            w.kill()
        self._idle = queue.Queue()


_DEFAULT: MathVerifier | None = None
_DEFAULT_LOCK = threading.Lock()


def default_verifier() -> MathVerifier:
    """The process-wide verifier used by :func:`gcpo.tasks.math_reward` (closed at exit)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = MathVerifier()
            atexit.register(_DEFAULT.close)
        return _DEFAULT


# ----------------------------------------------------------------------------- worker side


class _Deadline(BaseException):
    """Raised by the worker's timer; a BaseException so math-verify's ``except Exception``
    blocks cannot swallow it."""


def _gold_text(gold: str) -> str:
    """Gold answers are bare LaTeX ("\\frac{1}{2}", "(1,2]"): give math-verify a math span."""
    g = gold.strip().replace("\\$", "")
    if "\\boxed" in g or "$" in g:
        return g
    return f"${g}$"


def _worker_main() -> None:  # pragma: no cover - runs in the subprocess
    import logging
    import signal
    from functools import lru_cache

    logging.disable(logging.CRITICAL)
    from math_verify import parse, verify

    def on_alarm(signum, frame):  # noqa: ANN001
        raise _Deadline()

    signal.signal(signal.SIGALRM, on_alarm)
    # Ctrl-C in a terminal reaches the whole process group: let the parent handle it; the
    # worker exits on its own when the parent closes the pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    @lru_cache(maxsize=4096)
    def parse_gold(g: str):  # noqa: ANN202
        return parse(_gold_text(g), parsing_timeout=None)

    out = sys.stdout.buffer
    out.write(b'{"ready": true}\n')
    out.flush()
    for raw in sys.stdin.buffer:
        try:
            req = json.loads(raw)
            signal.setitimer(signal.ITIMER_REAL, max(0.8 * float(req["t"]), 0.01))
            try:
                gold = parse_gold(req["g"])
                pred = parse(req["p"], parsing_timeout=None)
                ok = bool(gold) and bool(pred) and verify(gold, pred, timeout_seconds=None)
                reply = {"r": ok, "s": "ok"}
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except _Deadline:
            reply = {"r": False, "s": "timeout"}
        except Exception:  # noqa: BLE001 - any parser failure means "not verified"
            reply = {"r": False, "s": "error"}
        out.write(json.dumps(reply).encode() + b"\n")
        out.flush()


if __name__ == "__main__":  # pragma: no cover
    _worker_main()
