"""`python -m klein_engine serve`: one long-lived engine process driven over stdin/stdout.

The main thread owns the model and runs one typed job at a time (the GPU loop); a reader
thread turns frames into jobs and cancellations. stdout carries frames only: the real
stdout is kept private and fd 1 is pointed at stderr, so no library print can corrupt
the stream. Exit statuses: 0 after shutdown or end of input, 2 when the model cannot be
loaded (after one error frame with id null), 3 when the input stream is broken.
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
from typing import Optional

from . import __version__, faults
from .job import Cancelled, EngineError, GenerateRequest, InvalidInput, LoadError
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


def load_engine(model: str):
    if model.startswith("simulated"):
        from .simulated import SimulatedEngine

        return SimulatedEngine.load(model)
    from .pipeline import KleinEngine

    return KleinEngine.load(model)


class Server:
    def __init__(self, engine, writer: FrameWriter, stdin):
        self.engine = engine
        self.writer = writer
        self.stdin = stdin
        self.jobs: "queue.Queue" = queue.Queue()
        self.lock = threading.Lock()
        self.pending: set[str] = set()
        self.dropped: set[str] = set()
        self.current: Optional[str] = None
        self.cancel_current = threading.Event()

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
            if job_id == self.current:
                self.cancel_current.set()
                return
            if job_id in self.pending:
                self.pending.discard(job_id)
                self.dropped.add(job_id)
            else:
                return
        self.error(job_id, "cancelled", "cancelled before it started")

    # -------------------------------------------------------------- GPU loop
    def serve(self) -> int:
        while True:
            item = self.jobs.get()
            if item is _SHUTDOWN:
                return 0
            if item is _BROKEN:
                return 3
            job_id, req = item
            with self.lock:
                if job_id in self.dropped:
                    self.dropped.discard(job_id)
                    continue
                self.pending.discard(job_id)
                self.current = job_id
                self.cancel_current.clear()
            try:
                self.run(job_id, req)
            finally:
                with self.lock:
                    self.current = None

    def run(self, job_id: str, req: GenerateRequest) -> None:
        def on_step(step: int, total: int, preview) -> None:
            h = {"type": "progress", "id": job_id, "step": step, "total": total}
            if preview is not None:
                h["preview"] = {"width": preview.width, "height": preview.height}
                self.writer.send(h, preview.rgb)
            else:
                self.writer.send(h)

        on_step_f, should_stop = faults.wrap(req.prompt, on_step, self.cancel_current.is_set)
        t0 = time.perf_counter()
        try:
            res = self.engine.generate(req, on_step_f, should_stop)
        except Cancelled as e:
            self.error(job_id, "cancelled", str(e))
            return
        except InvalidInput as e:
            self.error(job_id, "invalid_input", str(e))
            return
        except EngineError as e:
            self.error(job_id, e.code, str(e))
            return
        except Exception as e:
            if _is_oom(e):
                _free_memory()
                log.error("job %s: out of memory: %s", job_id, e)
                self.error(job_id, "out_of_memory", "the device ran out of memory; try a smaller size or fewer reference images")
                return
            log.error("job %s failed:\n%s", job_id, traceback.format_exc())
            self.error(job_id, "internal", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".strip())
            return
        log.info("job %s done in %.0f ms", job_id, (time.perf_counter() - t0) * 1000)
        self.writer.send(
            {"type": "result", "id": job_id, "width": res.width, "height": res.height, "seed": res.seed, "timings": res.timings},
            res.rgb,
        )

    def error(self, job_id, code: str, message: str) -> None:
        self.writer.send({"type": "error", "id": job_id, "code": code, "message": message})


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m klein_engine serve")
    p.add_argument("--model", default=os.environ.get("KLEIN_MODEL", "black-forest-labs/FLUX.2-klein-4B"))
    a = p.parse_args(argv)
    logging.basicConfig(level=os.environ.get("KLEIN_ENGINE_LOG_LEVEL", "INFO"), stream=sys.stderr,
                        format="engine %(process)d %(levelname)s %(message)s")
    out = _private_stdout()
    writer = FrameWriter(out)
    try:
        t0 = time.perf_counter()
        engine = load_engine(a.model)
        faults.load_delay()
        log.info("loaded %s in %.1f s", a.model, time.perf_counter() - t0)
    except (LoadError, InvalidInput) as e:
        writer.send({"type": "error", "id": None, "code": "internal", "message": str(e)})
        return 2
    except Exception as e:
        log.error("load failed:\n%s", traceback.format_exc())
        writer.send({"type": "error", "id": None, "code": "internal", "message": f"cannot load {a.model}: {type(e).__name__}: {e}"})
        return 2
    writer.send({"type": "ready", "protocol": 1, "engine_version": __version__, **engine.facts()})
    server = Server(engine, writer, sys.stdin.buffer)
    threading.Thread(target=server.read_loop, name="frame-reader", daemon=True).start()
    return server.serve()
