"""The ``collapsebench`` command's entry point (and ``python -m collapsebench``'s).

For ``collapsebench run``, it forks the report process of a vector world's run
(:mod:`collapsebench.analysis.report_process`) before the command line's own imports (argparse,
rich, the parser of every verb): that process's imports are the longest part of a ten-iteration
toy run. What both processes need, the config's schema and the run analysis (a quarter of a
second), is imported once before the fork and shared; imported on both sides of it, it cost the
toy run a seventh of its CPU time for the same wall time (``benchmarks/toy_gaussian.py``). ``run``
stops the process once the config shows a run that is not a vector world's. Then the command line
(:func:`collapsebench.cli.main`) runs as ever.
"""

from __future__ import annotations

import sys


def main() -> int:
    if sys.argv[1:2] == ["run"] and not {"-h", "--help"} & set(sys.argv):
        import collapsebench.analysis.runs  # noqa: F401 - both processes' (see the module docstring)
        import collapsebench.config  # noqa: F401
        from collapsebench.analysis import report_process

        report_process.fork_early()
    from collapsebench.cli import main as cli_main

    return cli_main()
