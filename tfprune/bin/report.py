"""tfprune-report: tables and plots of a ``tfprune-compare`` output folder.

Writes ``<output_dir>/report/summary.{md,csv,json}`` and PNG plots (accuracy vs epoch, mean JSV
vs epoch when recorded, accuracy vs speed-up) from every finished run, and prints the Markdown
table. Works on partial grids too (e.g. while shards are still running)::

    python -m tfprune.bin.report --output_dir=results
"""

from __future__ import annotations

from absl import flags

from tfprune.bin.common import Binary

FLAGS = flags.FlagValues()
flags.DEFINE_string("output_dir", None, "A tfprune-compare output folder.", flag_values=FLAGS)
flags.DEFINE_string(
    "protocol", None, "Protocol whose summary is used (default: the folder's).", flag_values=FLAGS
)
flags.DEFINE_bool("plots", True, "Write PNG plots (matplotlib).", flag_values=FLAGS)
flags.mark_flag_as_required("output_dir", flag_values=FLAGS)

BINARY = Binary(
    "tfprune-report", __doc__, FLAGS, job="tfprune.bin.jobs.report", interrupted="rerun it"
)


def run() -> None:
    """Console-script entry point (``tfprune-report``)."""
    BINARY.run()


if __name__ == "__main__":
    run()
