"""The coherence judge's likelihood can come from a model other than the steered one (a model rating
its own steered text is a conflict of interest), and its cache identity says which model that is."""

from workbench.core.likelihood import logprob_fn
from workbench.core.models import load_model
from workbench.judges.base import judge_fingerprint
from workbench.judges.offline import CoherenceJudge

Q = ["Why is the sky blue?", "How do I boil an egg?"]
A = ["Sunlight scatters off the air, and blue light scatters the most.", "Boil it for nine minutes, then cool it."]


def test_a_judge_model_of_another_family_scores_and_is_part_of_the_fingerprint(tiny_model):
    other = load_model("tiny-random-gemma3", n_layers=2)  # another family, another template, another vocabulary
    own, independent = CoherenceJudge(logprob_fn=logprob_fn(tiny_model)), CoherenceJudge(logprob_fn=logprob_fn(other))
    mine, theirs = own.score_batch(Q, A), independent.score_batch(Q, A)
    assert all(0 <= s.value <= 100 for s in mine + theirs)
    assert [s.reason for s in mine] != [s.reason for s in theirs]  # the likelihoods differ: another model read them
    assert judge_fingerprint(own) != judge_fingerprint(independent)
    again = load_model("tiny-random-gemma3", n_layers=2)
    assert judge_fingerprint(CoherenceJudge(logprob_fn=logprob_fn(again))) == judge_fingerprint(independent)
