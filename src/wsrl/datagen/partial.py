"""Resumable generation. Every recipe collects whole episodes; the episodes so far and the generator's random
state are saved beside the output about once a minute (`<out>.partial`, replaced atomically), so that a killed
`wsrl datagen` continues with `--resume` and writes the dataset an uninterrupted run writes."""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from wsrl.errors import ConfigError
from wsrl.io.atomic import write_bytes
from wsrl.io.runlog import progress_bar

SAVE_SECONDS = 60.0
FORMAT = 1


def partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


@dataclass
class Resumable:
    """Where an interrupted generation is kept (`path`), whether to continue it (`resume`), and what it generates
    (`identity`: the options that must match to continue). `path=None`: nothing is saved."""

    path: Path | None = None
    resume: bool = False
    identity: dict = field(default_factory=dict)
    progress: bool = False

    def check(self, overwrite: bool) -> None:
        """Before anything is generated: an interrupted generation is continued, replaced or refused."""
        if self.path is None or not self.path.exists():
            return
        if not self.resume and not overwrite:
            raise ConfigError(f"{self.path} holds an interrupted generation of this dataset: pass --resume true to "
                              f"continue it, --overwrite to start over, or delete that file")
        if not self.resume:
            self.path.unlink()

    def episodes(self, next_episode: Callable[[dict, int], dict | None], state: dict, steps: int) -> list[dict]:
        """Episodes until `steps` transitions: `next_episode(state, steps_left)` returns one episode's per-step
        arrays, or None for one that is redone, and advances `state` (picklable: counters, generators); NumPy's
        global generator is saved with it (OGBench's oracles and mazes draw from it)."""
        episodes, done = [], 0
        if self.resume and self.path is not None and self.path.exists():
            episodes, state, done = self._load()
        elif self.resume:
            print(f"no interrupted generation at {self.path}: starting from the beginning")
        bar = progress_bar(steps, start=done, enabled=self.progress, label="datagen")
        bar.set_postfix_str("generating", refresh=False)
        saved_at = time.monotonic()
        while done < steps:
            episode = next_episode(state, steps - done)
            if episode is None:
                continue
            length = len(episode["actions"])
            episodes.append(episode)
            done += length
            bar.update(length)
            if self.path is not None and done < steps and time.monotonic() - saved_at >= SAVE_SECONDS:
                self._save(episodes, state, done)
                saved_at = time.monotonic()
        bar.close()
        return episodes

    def finish(self) -> None:
        """The dataset is written: the interrupted generation is no longer needed."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    def _save(self, episodes: list[dict], state: dict, done: int) -> None:
        blob = {"format": FORMAT, "identity": self.identity, "episodes": episodes, "state": state, "done": done,
                "numpy_global": np.random.get_state()}
        self.path.parent.mkdir(parents=True, exist_ok=True)  # the dataset's directory is made when it is written
        write_bytes(self.path, pickle.dumps(blob, protocol=pickle.HIGHEST_PROTOCOL))

    def _load(self) -> tuple[list[dict], dict, int]:
        try:
            blob = pickle.loads(self.path.read_bytes())
            saved = blob["identity"]
        except Exception as err:  # a file that is not ours, or from another wsrl version
            raise ConfigError(f"{self.path} is not a readable interrupted generation ({err}): delete it and "
                              f"generate again") from None
        if blob.get("format") != FORMAT or saved != self.identity:
            changed = sorted(k for k in {**saved, **self.identity} if saved.get(k) != self.identity.get(k))
            raise ConfigError(f"{self.path} is an interrupted generation with other options ("
                              + ", ".join(f"{k}: it has {saved.get(k)!r}, now {self.identity.get(k)!r}"
                                          for k in changed)
                              + "): continue it with its own options, or pass --overwrite to start over")
        np.random.set_state(blob["numpy_global"])
        print(f"resuming the generation at {blob['done']:,} steps from {self.path}")
        return blob["episodes"], blob["state"], blob["done"]
