"""Run directory files: metrics as JSON lines (+ TensorBoard), and a progress bar for long jobs."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from tqdm import tqdm

from wsrl.errors import WsrlError

METRICS_FILE, CONFIG_FILE = "metrics.jsonl", "config.json"
SWEEP_MANIFEST = "sweep.json"  # at the root of a sweep: every run's task, label, variant and folder (wsrl.sweep)


def _plain(value):
    value = float(value) if hasattr(value, "__float__") and not isinstance(value, (bool, int, str)) else value
    return None if isinstance(value, float) and not math.isfinite(value) else value


class MetricsLog:
    """Appends one JSON object per evaluation to metrics.jsonl and mirrors the numbers to TensorBoard."""

    def __init__(self, run_dir: Path, tensorboard: bool = True, resume_step: int | None = None):
        """`resume_step`: a resumed run continues after this step; TensorBoard hides what the killed run logged
        after it (tensorboardX's `purge_step`), as `truncate_after` drops it from metrics.jsonl."""
        self.path = Path(run_dir) / METRICS_FILE
        self._tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter
            purge = None if resume_step is None else resume_step + 1
            self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=purge)

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


def load_records(run_dir: Path) -> list[dict]:
    """metrics.jsonl records; a cut last line (a run killed mid-write) is ignored, a bad line elsewhere is not."""
    path = Path(run_dir) / METRICS_FILE
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number == len(lines):
                break
            raise WsrlError(f"{path}, line {number}: not valid JSON ({err}); the file is damaged") from err
    return records


def progress_bar(total: int, start: int = 0, enabled: bool = True, label: str = "wsrl") -> tqdm:
    """A tqdm bar for a long job: steps done, rate, ETA; redrawn twice a second on a terminal, else a line every
    30 s (logs stay short). Callers add the phase and last score with `set_postfix_str`."""
    tty = sys.stderr.isatty()
    return tqdm(total=total, initial=start, disable=not enabled, desc=label, unit="step", dynamic_ncols=True,
                mininterval=0.5 if tty else 30.0, file=sys.stderr)
