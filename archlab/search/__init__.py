"""Search: spaces of candidates, Optuna studies over them, and SnapFusion's evolving search."""

from archlab.search.evolve import EvolveConfig, EvolveFile, EvolveResult, evolve, load_evolve_file, transfer
from archlab.search.runner import TrialEvaluator, load_existing, open_study, run_study, run_worker
from archlab.search.searches import EvolveSearch, OptunaSearch, Search, search_for, searches
from archlab.search.space import SearchSpace, SpaceFile, load_space, space_from_dict, spaces
from archlab.search.study import Budget, Constraint, Objective, SamplerConfig, StudyConfig, constraint_values, load_study

__all__ = [
    "Budget", "Constraint", "EvolveSearch", "OptunaSearch", "Search", "search_for", "searches", "EvolveConfig", "EvolveFile", "EvolveResult", "Objective", "SamplerConfig", "SearchSpace",
    "SpaceFile", "StudyConfig", "TrialEvaluator", "constraint_values", "evolve", "load_evolve_file", "load_existing",
    "load_space", "load_study", "open_study", "run_study", "run_worker", "space_from_dict", "spaces", "transfer",
]
