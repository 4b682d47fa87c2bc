"""`python -m klein_engine serve`: one long-lived engine process driven over stdin/stdout.

The main thread owns the model and runs one typed job at a time (the GPU loop); a reader
thread turns frames into jobs and cancellations. With KLEIN_MAX_BATCH > 1 jobs run in
batches (batch.py), formed two ways:
- the worker's: `generate` frames that name one `batch: {id, size}` are gathered by the
  reader until all `size` have arrived (or a frame of another batch, a shutdown or the end of
  input comes first), then handed to the GPU loop together, so which jobs share a forward
  does not depend on how fast frames are read (protocol/PROTOCOL.md, Batching);
- the engine's own: when the GPU loop takes a job without a batch, the compatible go_fast
  jobs without one already waiting join it.
Either way batch.py's rules decide what may share a forward (a batch of the worker's that
breaks them is split), and a cancel drops its job from the batch between steps.
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
from dataclasses import dataclass, field
from typing import Callable, Optional

from . import __version__, messages
from .batch import BatchJob, batch_key, take_batch
from .job import Cancelled, Engine, EngineError, GenerateRequest, GenerateResult, InvalidInput, LoadError, Preview
from .options import EngineOptions
from .protocol import BadMessage, Frame, FrameWriter, ProtocolError, parse_generate, read_frame

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
    options = options or EngineOptions.from_env()
    if model.startswith("simulated"):
        from .simulated import SimulatedEngine

        return SimulatedEngine.load(model, max_batch=options.max_batch)
    from .pipeline import KleinEngine

    return KleinEngine.load(model, options=options)


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


@dataclass
class Group:
    """The jobs of one batch the worker formed, handed to the GPU loop together."""

    members: list = field(default_factory=list)  # (job_id, GenerateRequest), in arrival order


@dataclass
class _Forming:
    """A worker's batch whose frames are still arriving (reader thread only)."""

    batch_id: str
    size: int
    arrived: int = 0
    group: Group = field(default_factory=Group)


def batch_of(header: dict, job_id: Optional[str]) -> Optional[tuple[str, int]]:
    """A generate header's `batch: {id, size}` as (id, size); None when it has none.
    BadMessage when it is malformed."""
    batch = header.get("batch")
    if batch is None:
        return None
    if (not isinstance(batch, dict) or not isinstance(batch.get("id"), str) or not batch["id"]
            or not isinstance(batch.get("size"), int) or isinstance(batch.get("size"), bool) or batch["size"] < 1):
        raise BadMessage("batch must be {id: non-empty string, size: integer >= 1}", job_id)
    return batch["id"], batch["size"]


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
        self.forming: Optional[_Forming] = None

    # ------------------------------------------------------------ reader side
    def read_loop(self) -> None:
        try:
            while True:
                frame = read_frame(self.stdin)
                if frame is None:
                    self.flush_batch()
                    self.jobs.put(_SHUTDOWN)
                    return
                kind = frame.header["type"]
                if kind == "generate":
                    self.on_generate(frame)
                elif kind == "cancel":
                    self.cancel(frame.header.get("id"))
                elif kind == "shutdown":
                    self.flush_batch()
                    self.jobs.put(_SHUTDOWN)
                    return
                # Unknown types are ignored (forward compatibility).
        except ProtocolError as e:
            log.error("broken input stream: %s", e)
            self.jobs.put(_BROKEN)
        except Exception:  # pragma: no cover - a bug in the reader
            log.error("reader failed:\n%s", traceback.format_exc())
            self.jobs.put(_BROKEN)

    def on_generate(self, frame: Frame) -> None:
        """A generate frame: queued at once, or gathered into its batch (see the header). A
        frame that is refused (invalid_input) still counts as one of its batch's arrivals."""
        raw_id = frame.header.get("id")
        try:
            batch = batch_of(frame.header, raw_id if isinstance(raw_id, str) and raw_id else None)
        except BadMessage as e:
            self.error(e.job_id, "invalid_input", str(e))
            return
        job = None
        try:
            job_id, req = parse_generate(frame)
        except BadMessage as e:
            self.error(e.job_id, "invalid_input", str(e))
        else:
            with self.lock:
                self.pending.add(job_id)
            job = (job_id, req)
        if self.forming is not None and (batch is None or batch[0] != self.forming.batch_id):
            self.flush_batch()  # the worker sends a batch's frames back to back: this one has ended
        if batch is None or batch[1] <= 1:
            if job is not None:
                self.jobs.put(job)
            return
        if self.forming is None:
            self.forming = _Forming(batch[0], batch[1])
        self.forming.arrived += 1
        if job is not None:
            self.forming.group.members.append(job)
        if self.forming.arrived >= self.forming.size:
            self.flush_batch()

    def flush_batch(self) -> None:
        """Hands the batch being gathered to the GPU loop, as far as it has arrived."""
        forming, self.forming = self.forming, None
        if forming is not None and forming.group.members:
            self.jobs.put(forming.group)

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
            if isinstance(head, Group):
                # The worker's batch, split only where batch.py's rules (or max_batch) say so.
                backlog.popleft()
                members = deque(head.members)
                while members:
                    self.run_items(take_batch(members, self.max_batch, self._key, lambda item: False))
                continue
            # A worker's batch is a barrier too: what waits behind it does not jump ahead.
            self.run_items(take_batch(backlog, self.max_batch, self._key,
                                      lambda item: item is _SHUTDOWN or item is _BROKEN or isinstance(item, Group)))

    def run_items(self, batch: list) -> None:
        """Runs (job_id, request) items taken together, less those cancelled while waiting."""
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
            code, message = e.code, str(e)  # invalid_input, or invalid_lora (InvalidLora)
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
    parser.add_argument("--model", default=os.environ.get("KLEIN_MODEL"))
    args = parser.parse_args(argv)
    if not args.model:
        # Imported here: loading a real model imports torch (seconds); the simulated engine must
        # start without it (a fleet worker leaving when idle counts its engine's start-up).
        from .load import DEFAULT_MODEL

        args.model = DEFAULT_MODEL
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
