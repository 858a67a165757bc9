"""Toy settings of model-collapse research.

- A ground-truth language with exact metrics (``language``, ``language_metrics``).
- Vector settings: Gaussian (``gaussian``), Gaussian mixture with GMM and KDE models (``mixture``),
  a VAE on scikit-learn's 8x8 digits (``vae``); rows carry a vector column ``x`` (list of floats)
  plus the lineage columns, and each setting is a trainer and generator pair in the registries, so
  every curation regime applies unchanged. ``evaluate.toy_stats`` and the ``truncation.truncate_likely``
  preprocessor work with all of them.
"""
