"""Models: loading any causal LM, sampling from it, and the tiny policy trained here."""
