"""The README's pictures of the quickstart: how the terminal ends and what the report shows.

    python docs/make_pictures.py                                   # runs the quickstart (about 2 minutes)
    python docs/make_pictures.py --run runs/quickstart --log quickstart.log   # a run made before

Without ``--run``, the quickstart runs under a pseudo-terminal (``script``), so the output is what
a person sees at a terminal (progress bars off: ``COLLAPSEBENCH_PROGRESS=0``). With ``--run`` and
``--log``, a finished run directory and the terminal output it was made with (``script -c
"collapsebench run configs/quickstart.yaml" quickstart.log``) are used as they are. Writes:

* ``docs/images/quickstart_terminal.svg``: the last lines of the terminal output, drawn by rich;
* ``docs/images/quickstart_report.png``: the top of the run's ``report/report.html``, from headless
  Chromium (Playwright driving the system's ``chromium``; ``playwright install`` is not needed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
TAIL = 26  # terminal lines kept: the last iterations and the summary


def run_quickstart(out: Path) -> tuple[Path, Path]:
    """Run the quickstart into ``out`` under a pseudo-terminal; its run directory and log."""
    log = out / "quickstart.log"
    command = (f"{sys.executable} -m collapsebench run {ROOT / 'configs' / 'quickstart.yaml'} "
               f"output_dir={out / 'quickstart'}")
    env = {**os.environ, "COLLAPSEBENCH_PROGRESS": "0", "COLUMNS": "110"}
    subprocess.run(["script", "-q", "-e", "-c", command, str(log)], check=True, env=env, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    return out / "quickstart", log


def terminal_svg(log: Path, target: Path) -> None:
    """The log's last lines as the terminal drew them (colours kept, control sequences dropped)."""
    from rich.console import Console
    from rich.text import Text

    raw = log.read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    lines = [line for line in raw.splitlines() if not line.startswith("Script ")]
    with open(os.devnull, "w") as nowhere:  # recorded, not shown
        console = Console(record=True, width=110, force_terminal=True, color_system="truecolor", file=nowhere)
        console.print(Text.from_ansi("\n".join(lines[-TAIL:])))
    console.save_svg(str(target), title="collapsebench run configs/quickstart.yaml")


def report_png(run: Path, target: Path) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("needs Debian's chromium (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1500})
        page.goto((run / "report" / "report.html").resolve().as_uri())
        page.screenshot(path=str(target))
        browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a finished quickstart run directory (with --log)")
    parser.add_argument("--log", type=Path, help="the terminal output that run was made with")
    args = parser.parse_args()
    if (args.run is None) != (args.log is None):
        parser.error("give both --run and --log, or neither")
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="collapsebench-pictures-") as tmp:
        run, log = (args.run, args.log) if args.run else run_quickstart(Path(tmp))
        terminal_svg(log, IMAGES / "quickstart_terminal.svg")
        report_png(run, IMAGES / "quickstart_report.png")
    print(f"wrote {IMAGES / 'quickstart_terminal.svg'} and {IMAGES / 'quickstart_report.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
