"""`wsrl datagen` never destroys data and fails before generating: existing outputs, unwritable or malformed
output paths and bad noise are refused up front with one line naming the path and the fix."""

import os

import numpy as np
import pytest

from wsrl import cli
from wsrl.data.loaders import load_dataset
from wsrl.datagen import generate, write_hdf5
from wsrl.errors import ConfigError
from wsrl.tasks import get_task

TASK = "pointmaze-umaze-v0"
STEPS = "300"
USER_BYTES = b"a user's D4RL file, not to be touched"


def datagen(*args: str) -> int:
    return cli.main(["datagen", "--task", TASK, "--recipe", "random", "--steps", STEPS, "--quiet", *args])


def never_called(obs, rng):
    """A policy that fails the test if anything is generated (the output checks must come first)."""
    raise AssertionError("data was generated before the output was checked")


def generate_nothing(out, **kwargs):
    return generate("policy", TASK, out, steps=300, progress=False, policy_fn=never_called, **kwargs)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def stray_tmp_files(root) -> list:
    return sorted(root.rglob("*.tmp"))


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("WSRL_DATA_DIR", str(tmp_path / "datasets"))
    return tmp_path / "datasets"


def test_an_existing_dataset_at_the_task_path_is_left_byte_identical(data_dir, capsys):
    path = get_task(TASK).dataset_path
    path.parent.mkdir(parents=True)
    path.write_bytes(USER_BYTES)
    assert datagen() == 2
    err = one_line_error(capsys)
    assert str(path) in err and "--overwrite" in err
    assert path.read_bytes() == USER_BYTES and not stray_tmp_files(data_dir)
    with pytest.raises(ConfigError, match="--overwrite"):
        generate_nothing(path)
    assert path.read_bytes() == USER_BYTES


def test_overwrite_replaces_the_existing_dataset(data_dir):
    path = get_task(TASK).dataset_path
    path.parent.mkdir(parents=True)
    path.write_bytes(USER_BYTES)
    assert datagen("--overwrite") == 0
    assert len(load_dataset(path)) == int(STEPS) and not stray_tmp_files(data_dir)


def test_out_that_is_a_directory_is_refused_without_a_stray_tmp(tmp_path, capsys):
    out = tmp_path / "runs"
    out.mkdir()
    assert datagen("--out", str(out)) == 2
    err = one_line_error(capsys)
    assert str(out) in err and "is a directory" in err and str(out / "dataset.hdf5") in err
    assert out.is_dir() and not any(out.iterdir()) and not stray_tmp_files(tmp_path)
    with pytest.raises(ConfigError, match="is a directory"):
        generate_nothing(out)


def test_a_read_only_directory_is_refused_before_generating(tmp_path, capsys):
    parent = tmp_path / "read-only"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        if os.access(parent, os.W_OK):
            pytest.skip("running as root: a 0o555 directory is still writable")
        out = parent / "new" / "d.hdf5"
        with pytest.raises(ConfigError, match="not writable"):
            generate_nothing(out)
        assert datagen("--out", str(out)) == 2
        err = one_line_error(capsys)
        assert str(out) in err and str(parent) in err and "writable" in err
        assert not any(parent.iterdir())
    finally:
        parent.chmod(0o755)


def test_a_parent_that_is_a_file_is_refused_before_generating(tmp_path, capsys):
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(USER_BYTES)
    out = blocker / "d.hdf5"
    with pytest.raises(ConfigError, match="is a file"):
        generate_nothing(out)
    assert datagen("--out", str(out)) == 2
    assert str(blocker) in one_line_error(capsys) and blocker.read_bytes() == USER_BYTES


def test_out_without_the_hdf5_suffix_is_refused_with_the_suffix_to_use(tmp_path, capsys):
    out = tmp_path / "mydata"
    assert datagen("--out", str(out)) == 2
    err = one_line_error(capsys)
    assert ".hdf5" in err and str(tmp_path / "mydata.hdf5") in err
    assert not out.exists() and not any(tmp_path.iterdir())
    with pytest.raises(ConfigError, match="suffix"):
        generate_nothing(tmp_path / "data.npz")


@pytest.mark.parametrize("noise", ["nan", "-0.5", "inf"])
def test_non_finite_or_negative_noise_is_refused(tmp_path, capsys, noise):
    out = tmp_path / "n.hdf5"
    assert cli.main(["datagen", "--task", TASK, "--recipe", "maze-planner", "--steps", STEPS, "--quiet",
                     f"--noise={noise}", "--out", str(out)]) == 2
    assert "--noise" in one_line_error(capsys) and not out.exists()
    with pytest.raises(ConfigError, match="finite number >= 0"):
        generate_nothing(out, noise=float(noise))


def test_a_failed_write_leaves_no_tmp_and_keeps_the_old_file(tmp_path):
    incomplete = {"observations": np.zeros((3, 2), np.float32)}  # no actions: the write fails half way
    with pytest.raises(KeyError):
        write_hdf5(tmp_path / "new.hdf5", incomplete, {})
    assert not any(tmp_path.iterdir())
    old = tmp_path / "old.hdf5"
    old.write_bytes(USER_BYTES)
    with pytest.raises(KeyError):
        write_hdf5(old, incomplete, {}, overwrite=True)
    assert old.read_bytes() == USER_BYTES and not stray_tmp_files(tmp_path)


def test_an_existing_minari_dataset_is_refused_and_overwrite_replaces_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    dataset_id = "wsrl/kept-v0"
    existing = tmp_path / dataset_id / "data" / "main_data.hdf5"
    existing.parent.mkdir(parents=True)
    existing.write_bytes(USER_BYTES)
    assert datagen("--format", "minari", "--out", dataset_id) == 2
    err = one_line_error(capsys)
    assert dataset_id in err and "--overwrite" in err and existing.read_bytes() == USER_BYTES
    assert datagen("--format", "minari", "--out", dataset_id, "--overwrite") == 0
    assert len(load_dataset(dataset_id)) == int(STEPS)
    assert sorted(p.name for p in (tmp_path / "wsrl").iterdir() if p.is_dir()) == ["kept-v0"]  # nothing aside


def test_a_malformed_minari_id_is_refused_before_generating(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="not a Minari dataset id"):
        generate_nothing("wsrl/no-version", fmt="minari")
    assert not any(tmp_path.iterdir())
