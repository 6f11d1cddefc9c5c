"""Tasks: environments, datasets, reward conventions, metrics and presets by name."""

from wsrl.tasks.registry import (Task, dataset_present, describe_tasks, get_task, list_tasks,
                                 normalized_score)

__all__ = ["Task", "dataset_present", "describe_tasks", "get_task", "list_tasks", "normalized_score"]
