"""Paper recipes for ``cdrec reproduce <paper>`` and the demo; all run through :mod:`pipeline`."""

RECIPES: dict[str, str] = {
    "m3oe": "cdrec.experiments.m3oe",
}
"""Paper name -> module path of its recipe (``run(out, data_dir, quick, seeds, device)``)."""
RECIPES["merit"] = "cdrec.experiments.merit"
RECIPES["mtal"] = "cdrec.experiments.mtal"
