"""Paper recipes for ``cdrec reproduce <paper>`` and the demo; all run through :mod:`pipeline`."""

RECIPES: dict[str, str] = {
    "uclr": "cdrec.experiments.uclr",
}
"""Paper name -> module path of its recipe (``run(out, data_dir, quick, seeds, device)``)."""
