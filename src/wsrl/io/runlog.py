"""Run directory files: metrics as JSON lines (+ TensorBoard), and a progress line for long jobs."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

METRICS_FILE, CONFIG_FILE = "metrics.jsonl", "config.json"


def _plain(value):
    value = float(value) if hasattr(value, "__float__") and not isinstance(value, (bool, int, str)) else value
    return None if isinstance(value, float) and not math.isfinite(value) else value


class MetricsLog:
    """Appends one JSON object per evaluation to metrics.jsonl and mirrors the numbers to TensorBoard."""

    def __init__(self, run_dir: Path, tensorboard: bool = True):
        self.path = Path(run_dir) / METRICS_FILE
        self._tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter
            self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def write(self, record: dict) -> None:
        record = {k: _plain(v) for k, v in record.items()}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "step":
                    self._tb.add_scalar(key, value, record["step"])
            self._tb.flush()

    def truncate_after(self, step: int) -> None:
        """On resume: drop the records a killed run wrote after its last snapshot."""
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    kept.append(line)
            except (json.JSONDecodeError, KeyError):
                break  # a line cut by the kill: everything after it is unreliable
        self.path.write_text("".join(line + "\n" for line in kept))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


class Progress:
    """One status line: step, phase, steps/s, ETA, last score. Redrawn in place on a terminal, else printed
    every `plain_every` seconds."""

    def __init__(self, total: int, start: int = 0, enabled: bool = True, label: str = "wsrl",
                 stream=None, plain_every: float = 30.0):
        self.total, self.enabled, self.label = total, enabled, label
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.plain_every = plain_every
        self._t0, self._s0, self._last_draw = time.monotonic(), start, 0.0
        self.last_score: float | None = None

    def line(self, step: int, phase: str) -> str:
        elapsed = time.monotonic() - self._t0
        rate = (step - self._s0) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - step) / rate if rate > 0 else float("inf")
        score = "" if self.last_score is None else f" | last score {self.last_score:.1f}"
        return (f"[{self.label}] step {step:,}/{self.total:,} | {phase} | {rate:.1f} steps/s | "
                f"ETA {format_duration(eta)}{score}")

    def update(self, step: int, phase: str, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < (0.5 if self.tty else self.plain_every):
            return
        self._last_draw = now
        end = "\r" if self.tty else "\n"
        print(self.line(step, phase).ljust(100 if self.tty else 0), end=end, file=self.stream, flush=True)

    def close(self, step: int, phase: str) -> None:
        if self.enabled:
            print(self.line(step, phase), file=self.stream, flush=True)
