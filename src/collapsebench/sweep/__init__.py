"""Sweeps: a grid of runs over config keys (``collapsebench sweep``).

``grid`` expands a base config into cells with deterministic ids; ``share`` lets cells compute the
steps they have in common once; ``runner`` writes the manifest, runs the cells through an executor
and follows them. A sweep directory is read through :class:`collapsebench.layout.SweepLayout`.
"""
