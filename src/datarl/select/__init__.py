"""Which prompts train: Pre-PPO selection (``prepo``) and the curriculum (``curriculum``)."""
