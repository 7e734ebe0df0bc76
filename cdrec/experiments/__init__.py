"""Paper recipes for ``cdrec reproduce <paper>`` and the demo; all run through :mod:`pipeline`."""

RECIPES: dict[str, str] = {
    "m3oe": "cdrec.experiments.m3oe",
    "merit": "cdrec.experiments.merit",
    "mtal": "cdrec.experiments.mtal",
    "uclr": "cdrec.experiments.uclr",
}
"""Paper name -> module path of its recipe, exposing
``reproduce(out, *, data_dir, quick, seeds, device) -> Path`` (runs its plan through
:func:`cdrec.experiments.runner.run_plan`; returns the report it wrote) and
``report(out, *, quick, seeds, device) -> Path`` (the report of the runs already in ``out``) and
``headline(out) -> list[HeadlineRow]`` (its main cells for the README's table, :mod:`headline`)."""
