"""Fixtures shared by several test files: work done once per session, read only. A test that writes into a shared
run or checkpoint directory works on its own copy (`copy_of`)."""

import shutil
from pathlib import Path

import jax
import pytest

from wsrl.datagen import generate

MAZE_TASK = "pointmaze-umaze-v0"
MIN_CACHED_COMPILE_SECONDS = 0.1


def pytest_collection_modifyitems(items):
    """Files holding end-to-end (`slow`) tests first. The two test workers take whole files in collection order
    (`--dist loadfile --no-loadscope-reorder`), so the longest files start first and the workers finish together;
    xdist's default order (most tests first) started them last."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: each file keeps its order


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
    """One on-disk XLA compilation cache for the session, also used by the runs that tests start in other
    processes (test_run_safety.py): they load what was already compiled instead of compiling it again."""
    path = str(tmp_path_factory.mktemp("xla-cache"))
    jax.config.update("jax_compilation_cache_dir", path)
    # Tests build many fresh jitted closures of the same programs: caching compilations from 0.1 s on (JAX's default:
    # 1 s) saved 11% of tests/test_config_cli.py + tests/test_user_env.py's time.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_CACHED_COMPILE_SECONDS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAX_COMPILATION_CACHE_DIR", path)  # inherited by subprocesses
        patch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", str(MIN_CACHED_COMPILE_SECONDS))
        yield path


@pytest.fixture(scope="session")
def maze_dataset(tmp_path_factory) -> str:
    """A 3,000-step scripted-planner dataset of the point U-maze, seed 0 (docs/tasks-and-data.md, 'Generating
    datasets')."""
    out = tmp_path_factory.mktemp("maze") / "data.hdf5"
    return str(generate("maze-planner", MAZE_TASK, out, steps=3_000, seed=0, progress=False))


@pytest.fixture
def copy_of(tmp_path):
    """copy_of(directory, name=None) -> a copy of `directory` in this test's tmp_path, named `name` or as the
    original."""
    def copy(directory, name: str | None = None) -> Path:
        return Path(shutil.copytree(directory, tmp_path / (name or Path(directory).name)))
    return copy
