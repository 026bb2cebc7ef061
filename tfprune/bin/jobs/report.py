"""What ``tfprune-report`` does once its flags have parsed (see :mod:`tfprune.bin.report`)."""

from __future__ import annotations

import os

from absl import app, flags

from tfprune.bin.common import progress
from tfprune.protocols.report import write_report


def main(args: flags.FlagValues) -> None:
    """Flags -> write_report -> print the Markdown table."""
    if not os.path.isdir(args.output_dir):
        raise app.UsageError(f"--output_dir={args.output_dir!r} is not a folder")
    report = write_report(args.output_dir, protocol=args.protocol, plots=args.plots, log=progress)
    if report.expected is not None and report.finished < report.expected:
        print(f"(partial: {report.finished} of {report.expected} runs finished)")
    print(report.markdown)
