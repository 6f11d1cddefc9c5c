"""Tasks: environments, datasets, reward conventions, metrics and presets by name, or your own environment."""

from wsrl.tasks.registry import (Task, dataset_present, describe_tasks, get_task, list_tasks,
                                 normalized_score)
from wsrl.tasks.user import resolve_task, user_task

__all__ = ["Task", "dataset_present", "describe_tasks", "get_task", "list_tasks", "normalized_score",
           "resolve_task", "user_task"]
