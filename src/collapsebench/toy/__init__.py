"""Toy settings of model-collapse research: Gaussian, Gaussian mixture (GMM, KDE), VAE on 8x8 digits.

Rows carry a vector column ``x`` (list of floats) plus the lineage columns. Each setting is a trainer
and generator pair in the registries, so every curation regime applies unchanged.
"""
