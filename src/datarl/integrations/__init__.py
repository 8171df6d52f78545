"""Adapters that plug datarl's data and rewards into other trainers (DESIGN section 5).

- :mod:`datarl.integrations.verl`: ``export_verl`` (parquet for verl's RLHFDataset, the curriculum baked
  into row order) and ``compute_score`` (verl's custom reward function, backed by the router).
- :mod:`datarl.integrations.trl`: reward callables with TRL's signature for ``GRPOTrainer``.

Neither module imports its framework: verl and TRL call into them, not the other way round.
"""
