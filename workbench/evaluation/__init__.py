"""Stage 3, how methods are measured: the equal-coherence comparison (TA@C80, TA@Cp) and its
strength search, faithfulness (relative RMSE per layer), instruction following, the costs of each
way to adapt, and the attribute check."""

from workbench.evaluation.adaptation import compare_adaptations
from workbench.evaluation.attribute_check import check_attributes
from workbench.evaluation.comparison import Comparison, EvalConfig, Method, compare_methods, standard_methods
from workbench.evaluation.faithfulness import faithfulness, paraphrase_pairs
from workbench.evaluation.gating import evaluate_gating
from workbench.evaluation.instruction_following import run_instruction_following
from workbench.evaluation.strength import SearchResult, bootstrap_ci, find_alpha

__all__ = [
    "Comparison", "EvalConfig", "Method", "SearchResult", "bootstrap_ci", "check_attributes", "compare_adaptations",
    "compare_methods", "evaluate_gating", "faithfulness", "find_alpha", "paraphrase_pairs", "run_instruction_following",
    "standard_methods",
]
