"""wsrl: online RL fine-tuning of offline pre-trained agents without retaining the offline data."""

__version__ = "0.1.0"
