"""`python -m klein_engine serve`: one long-lived engine process driven over stdin/stdout.

The main thread owns the model and runs one typed job at a time (the GPU loop); a reader
thread turns frames into jobs and cancellations. With KLEIN_MAX_BATCH > 1 the GPU loop
takes, with the job at the head of the queue, the compatible go_fast jobs already waiting
(batch.py) and runs them as one batch; a cancel drops its job from the batch between steps.
Every frame the server sends is built by messages.py.

stdout carries frames only: the real stdout is kept private and fd 1 is pointed at stderr,
so no library print can corrupt the stream. Exit statuses: 0 after shutdown or end of
input, 2 when the model cannot be loaded (after one error frame with id null), 3 when the
input stream is broken.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import queue
import sys
import threading
import time
import traceback
from collections import deque
from typing import Callable, Optional

from . import __version__, messages
from .batch import BatchJob, batch_key, take_batch
from .job import Cancelled, Engine, EngineError, GenerateRequest, GenerateResult, InvalidInput, LoadError, Preview
from .load import DEFAULT_MODEL
from .options import EngineOptions
from .protocol import BadMessage, FrameWriter, ProtocolError, parse_generate, read_frame

log = logging.getLogger("klein_engine")
_SHUTDOWN = object()
_BROKEN = object()


def _private_stdout():
    """A binary handle on the real stdout; fd 1 and sys.stdout then go to stderr."""
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


def load_engine(model: str, options: EngineOptions | None = None) -> Engine:
    if model.startswith("simulated"):
        from .simulated import SimulatedEngine

        return SimulatedEngine.load(model)
    from .pipeline import KleinEngine

    return KleinEngine.load(model, options=options or EngineOptions.from_env())


def load_and_warm_up(model: str, options: EngineOptions, log: logging.Logger) -> Engine:
    """Loads the engine and compiles its go_fast path for KLEIN_WARMUP_SIZES, logging each
    stage's time: what `serve` does before `ready`, and `generate` before its first image."""
    t0 = time.perf_counter()
    engine = load_engine(model, options)
    log.info("loaded %s in %.1f s", model, time.perf_counter() - t0)
    warm = engine.warm_up()
    if warm:
        log.info("warmed up (compiled %s) in %.1f s", ", ".join(f"{w}x{h}" for w, h in options.warmup_sizes), warm)
    return engine


class Server:
    def __init__(self, engine: Engine, writer: FrameWriter, stdin):
        self.engine = engine
        self.writer = writer
        self.stdin = stdin
        self.jobs: "queue.Queue" = queue.Queue()
        self.lock = threading.Lock()
        self.pending: set[str] = set()
        self.dropped: set[str] = set()
        # The jobs the GPU loop runs now (one, or a batch), each with its cancel flag.
        self.running: dict[str, threading.Event] = {}
        self.max_batch = engine.max_batch

    # ------------------------------------------------------------ reader side
    def read_loop(self) -> None:
        try:
            while True:
                frame = read_frame(self.stdin)
                if frame is None:
                    self.jobs.put(_SHUTDOWN)
                    return
                kind = frame.header["type"]
                if kind == "generate":
                    try:
                        job_id, req = parse_generate(frame)
                    except BadMessage as e:
                        self.error(e.job_id, "invalid_input", str(e))
                        continue
                    with self.lock:
                        self.pending.add(job_id)
                    self.jobs.put((job_id, req))
                elif kind == "cancel":
                    self.cancel(frame.header.get("id"))
                elif kind == "shutdown":
                    self.jobs.put(_SHUTDOWN)
                    return
                # Unknown types are ignored (forward compatibility).
        except ProtocolError as e:
            log.error("broken input stream: %s", e)
            self.jobs.put(_BROKEN)
        except Exception:  # pragma: no cover - a bug in the reader
            log.error("reader failed:\n%s", traceback.format_exc())
            self.jobs.put(_BROKEN)

    def cancel(self, job_id) -> None:
        if not isinstance(job_id, str):
            return
        with self.lock:
            if job_id in self.running:
                self.running[job_id].set()
                return
            if job_id in self.pending:
                self.pending.discard(job_id)
                self.dropped.add(job_id)
            else:
                return
        self.error(job_id, "cancelled", "cancelled before it started")

    # -------------------------------------------------------------- GPU loop
    def serve(self) -> int:
        backlog: deque = deque()
        while True:
            if not backlog:
                backlog.append(self.jobs.get())
            if self.max_batch > 1:
                # What is already waiting may join the head's batch.
                while True:
                    try:
                        backlog.append(self.jobs.get_nowait())
                    except queue.Empty:
                        break
            head = backlog[0]
            if head is _SHUTDOWN:
                return 0
            if head is _BROKEN:
                return 3
            batch = take_batch(backlog, self.max_batch, self._key, lambda item: item is _SHUTDOWN or item is _BROKEN)
            with self.lock:
                live = []
                for job_id, req in batch:
                    if job_id in self.dropped:
                        self.dropped.discard(job_id)
                        continue
                    self.pending.discard(job_id)
                    self.running[job_id] = threading.Event()
                    live.append((job_id, req))
            try:
                if len(live) == 1:
                    self.run(*live[0])
                elif live:
                    self.run_batch(live)
            finally:
                with self.lock:
                    self.running.clear()

    def _key(self, item):
        if not isinstance(item, tuple):
            return None
        return batch_key(item[1], self.max_batch)

    def _progress(self, job_id: str):
        def on_step(step: int, total: int, preview: Optional[Preview]) -> None:
            self.writer.send(messages.progress(job_id, step, total, preview), preview.rgb if preview is not None else b"")

        return on_step

    def run(self, job_id: str, req: GenerateRequest) -> None:
        t0 = time.perf_counter()
        try:
            res = self.engine.generate(req, self._progress(job_id), self.running[job_id].is_set)
        except Exception as e:
            self.failed([job_id], e)
            return
        log.info("job %s done in %.0f ms", job_id, (time.perf_counter() - t0) * 1000)
        self.result(job_id, res)

    def run_batch(self, live: list) -> None:
        jobs = [BatchJob(req, self._progress(job_id), self.running[job_id].is_set) for job_id, req in live]
        finished: set[int] = set()

        def on_done(k: int, outcome) -> None:
            finished.add(k)
            if isinstance(outcome, BaseException):
                self.failed([live[k][0]], outcome)
            else:
                self.result(live[k][0], outcome)

        t0 = time.perf_counter()
        log.info("batch of %d: %s", len(live), ", ".join(job_id for job_id, _ in live))
        try:
            self.engine.generate_batch(jobs, on_done)
        except Exception as e:
            # A failure of the shared forward (out of memory, a bug) fails every job still in it.
            self.failed([live[k][0] for k in range(len(live)) if k not in finished], e)
            return
        log.info("batch of %d done in %.0f ms", len(live), (time.perf_counter() - t0) * 1000)

    def result(self, job_id: str, res: GenerateResult) -> None:
        self.writer.send(messages.result(job_id, res), res.rgb)

    def failed(self, job_ids: list, e: BaseException) -> None:
        """One error frame per job, with the code the exception maps to."""
        if isinstance(e, Cancelled):
            code, message = "cancelled", str(e)
        elif isinstance(e, InvalidInput):
            code, message = "invalid_input", str(e)
        elif isinstance(e, EngineError):
            code, message = e.code, str(e)
        elif _is_oom(e):
            _free_memory()
            log.error("jobs %s: out of memory: %s", ", ".join(job_ids), e)
            code, message = "out_of_memory", "the device ran out of memory; try a smaller size or fewer reference images"
        else:
            log.error("jobs %s failed:\n%s", ", ".join(job_ids), "".join(traceback.format_exception(e)))
            code, message = "internal", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".strip()
        for job_id in job_ids:
            self.error(job_id, code, message)

    def error(self, job_id: Optional[str], code: messages.ErrorCode, message: str) -> None:
        self.writer.send(messages.error(job_id, code, message))


def _is_oom(e: BaseException) -> bool:
    try:
        import torch

        if isinstance(e, torch.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover
        pass
    return "out of memory" in str(e).lower() and isinstance(e, RuntimeError)


def _free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


def main(argv: list[str] | None = None, wrap: Optional[Callable[[Engine], Engine]] = None) -> int:
    """Serves until shutdown. `wrap`, when given, wraps the loaded engine before `ready`
    (testing/faults.py does, for tests)."""
    parser = argparse.ArgumentParser(prog="python -m klein_engine serve")
    parser.add_argument("--model", default=os.environ.get("KLEIN_MODEL", DEFAULT_MODEL))
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("KLEIN_ENGINE_LOG_LEVEL", "INFO"), stream=sys.stderr,
                        format="engine %(process)d %(levelname)s %(message)s")
    writer = FrameWriter(_private_stdout())
    try:
        engine = load_and_warm_up(args.model, EngineOptions.from_env(), log)
        if wrap is not None:
            engine = wrap(engine)
    except (LoadError, InvalidInput) as e:
        writer.send(messages.error(None, "internal", str(e)))
        return 2
    except Exception as e:
        log.error("load failed:\n%s", traceback.format_exc())
        writer.send(messages.error(None, "internal", f"cannot load {args.model}: {type(e).__name__}: {e}"))
        return 2
    writer.send(messages.ready(engine.facts(), __version__))
    server = Server(engine, writer, sys.stdin.buffer)
    threading.Thread(target=server.read_loop, name="frame-reader", daemon=True).start()
    return server.serve()
