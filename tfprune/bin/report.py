"""tfprune-report: tables and plots of a ``tfprune-compare`` output folder.

Writes ``<output_dir>/report/summary.{md,csv,json}`` and PNG plots (accuracy vs epoch, mean JSV
vs epoch when recorded, accuracy vs speed-up) from every finished run, and prints the Markdown
table. Works on partial grids too (e.g. while shards are still running)::

    python -m tfprune.bin.report --output_dir=results
"""

from __future__ import annotations

import os

from absl import app, flags

from tfprune.bin.common import progress, run_main
from tfprune.protocols.report import write_report

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", None, "A tfprune-compare output folder.")
flags.DEFINE_string("protocol", None, "Protocol whose summary is used (default: the folder's).")
flags.DEFINE_bool("plots", True, "Write PNG plots (matplotlib).")
flags.mark_flag_as_required("output_dir")


def main(argv: list[str]) -> None:
    """Flags -> write_report -> print the Markdown table."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if not os.path.isdir(FLAGS.output_dir):
        raise app.UsageError(f"--output_dir={FLAGS.output_dir!r} is not a folder")
    try:
        report = write_report(
            FLAGS.output_dir, protocol=FLAGS.protocol, plots=FLAGS.plots, log=progress
        )
    except (FileNotFoundError, KeyError, ValueError) as err:
        raise app.UsageError(str(err).strip('"')) from None
    if report.expected is not None and report.finished < report.expected:
        print(f"(partial: {report.finished} of {report.expected} runs finished)")
    print(report.markdown)


def run() -> None:
    """Console-script entry point (``tfprune-report``)."""
    run_main(main, "tfprune-report")


if __name__ == "__main__":
    run()
