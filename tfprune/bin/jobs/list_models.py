"""``--list_models`` of the tools that build zoo models: print the names ``--model`` takes."""

from __future__ import annotations

from absl import flags

from tfprune.models import list_models


def main(args: flags.FlagValues) -> None:
    """Prints the zoo models, one per line, then the ``keras:<Application>`` names."""
    del args
    print("\n".join(list_models(include_applications=False)))
    print(
        "keras:<Application>, one of: "
        + ", ".join(n.split(":", 1)[1] for n in list_models() if n.startswith("keras:"))
    )
