"""Looking at and handing on results: the Pareto front, the HTML report, and the export of
a chosen architecture (a study trial, an evolve result, or a description)."""

from archlab.results.export import export_architecture, inherit_from_diffusers, load_evolve_output, pick_trial
from archlab.results.pareto import front_rows, hypervolume, indistinguishable, is_feasible, pareto, trials_frame
from archlab.results.report import write_report

__all__ = ["export_architecture", "front_rows", "hypervolume", "indistinguishable", "inherit_from_diffusers", "is_feasible",
           "load_evolve_output", "pareto", "pick_trial", "trials_frame", "write_report"]
