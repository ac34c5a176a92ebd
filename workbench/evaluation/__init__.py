"""Stage 3, how methods are measured: the equal-coherence comparison (TA@C80, TA@Cp) and its
strength search, faithfulness (relative RMSE per layer), instruction following, the costs of each
way to adapt, data efficiency, paired statistics (method differences and claim verdicts), the
attribute check, and the paper's assumptions measured directly (the strength along a direction,
how many directions the prompt uses, whether lambda reads the strength)."""

from workbench.evaluation.adaptation import compare_adaptations
from workbench.evaluation.assumptions import measure_assumptions
from workbench.evaluation.attribute_check import check_attributes
from workbench.evaluation.data_efficiency import differences_pivot, efficiency_pivot, efficiency_table
from workbench.evaluation.comparison import Comparison, EvalConfig, Method, compare_methods, standard_methods
from workbench.evaluation.faithfulness import faithfulness, paraphrase_pairs
from workbench.evaluation.gating import evaluate_gating
from workbench.evaluation.instruction_following import run_instruction_following
from workbench.evaluation.lambda_reading import lambda_reading
from workbench.evaluation.pair_faithfulness import pair_errors
from workbench.evaluation.statistics import claim_verdict, paired_bootstrap, verdict
from workbench.evaluation.strength import SearchResult, bootstrap_ci, find_alpha

__all__ = [
    "Comparison", "EvalConfig", "Method", "SearchResult", "bootstrap_ci", "check_attributes", "claim_verdict",
    "compare_adaptations", "compare_methods", "differences_pivot", "efficiency_pivot", "efficiency_table", "evaluate_gating", "faithfulness",
    "find_alpha", "lambda_reading", "measure_assumptions", "pair_errors", "paired_bootstrap", "paraphrase_pairs",
    "run_instruction_following", "standard_methods", "verdict",
]
