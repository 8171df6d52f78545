"""datarl: data-centric RLHF (hybrid rewards, Pre-PPO selection, curriculum PPO)."""

__version__ = "0.1.0"
