"""wsrl: online RL fine-tuning of offline pre-trained agents without retaining the offline data."""

__version__ = "0.1.0"


def __getattr__(name):
    # The training API imports JAX and the environments: load it on first use, not on `import wsrl`.
    if name in ("pretrain", "finetune", "run", "PretrainConfig", "FinetuneConfig"):
        from wsrl import api
        return getattr(api, name)
    raise AttributeError(f"module 'wsrl' has no attribute {name!r}")
