"""The scripted point-maze controller D4RL's maze2d data was made with: breadth-first search on the maze grid
gives the next cell towards the target, a PD controller (gains 10 / -1) drives to its centre."""

from __future__ import annotations

from collections import deque

import numpy as np

P_GAIN, D_GAIN = 10.0, -1.0
ARRIVED = 0.3  # distance at which a random target counts as reached


def distances_to(grid: np.ndarray, target: tuple[int, int]) -> np.ndarray:
    """BFS step counts from every free cell to `target` (inf for walls and unreachable cells)."""
    dist = np.full(grid.shape, np.inf)
    dist[target] = 0
    queue = deque([target])
    while queue:
        r, c = queue.popleft()
        for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
            if 0 <= nr < grid.shape[0] and 0 <= nc < grid.shape[1] and grid[nr, nc] == 0 and dist[nr, nc] == np.inf:
                dist[nr, nc] = dist[r, c] + 1
                queue.append((nr, nc))
    return dist


def next_cell(dist: np.ndarray, cell: tuple[int, int]) -> tuple[int, int]:
    r, c = cell
    options = [(dist[n], n) for n in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1))
               if 0 <= n[0] < dist.shape[0] and 0 <= n[1] < dist.shape[1]]
    return min(options)[1]


class MazePlanner:
    """Per episode: with probability `goal_fraction` drive to the task's goal; otherwise wander between random
    free cells, a new one on arrival (D4RL's maze2d recipe), which covers the maze without solving the task."""

    def __init__(self, goal_fraction: float = 0.5):
        self.goal_fraction = goal_fraction
        self._cache: dict = {}

    def reset(self, env, rng) -> None:
        maze = env.unwrapped.maze
        self.maze = maze
        self.grid = np.array([[1 if v == 1 else 0 for v in row] for row in maze.maze_map])
        self.free = [tuple(c) for c in np.argwhere(self.grid == 0)]
        self.to_goal = rng.random() < self.goal_fraction
        self.goal_xy = np.asarray(env.unwrapped.goal, np.float64)
        self.target_cell = self._cell(self.goal_xy) if self.to_goal else self._random_cell(rng)

    def _cell(self, xy) -> tuple[int, int]:
        return tuple(int(v) for v in self.maze.cell_xy_to_rowcol(np.asarray(xy)))

    def _random_cell(self, rng) -> tuple[int, int]:
        return self.free[rng.integers(len(self.free))]

    def _dist(self, target):
        if target not in self._cache:
            self._cache[target] = distances_to(self.grid, target)
        return self._cache[target]

    def waypoint(self, pos, rng) -> np.ndarray:
        cell = self._cell(pos)
        target_xy = self.goal_xy if self.to_goal else self.maze.cell_rowcol_to_xy(np.array(self.target_cell))
        if not self.to_goal and np.linalg.norm(target_xy - pos) < ARRIVED:
            self.target_cell = self._random_cell(rng)
            return self.waypoint(pos, rng)
        if cell == self.target_cell:
            return target_xy
        return self.maze.cell_rowcol_to_xy(np.array(next_cell(self._dist(self.target_cell), cell)))

    def __call__(self, obs, rng) -> np.ndarray:
        pos, vel = np.asarray(obs[:2], np.float64), np.asarray(obs[2:4], np.float64)
        action = P_GAIN * (self.waypoint(pos, rng) - pos) + D_GAIN * vel
        return np.clip(action, -1.0, 1.0).astype(np.float32)
