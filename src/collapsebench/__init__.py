"""collapsebench: recursive train / generate / evaluate / curate experiments on model collapse."""

__version__ = "0.1.0"
