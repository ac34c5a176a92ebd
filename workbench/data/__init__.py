"""Stage 2, what the experiments are run on: attributes (instructions, paraphrases, questions and
their judge), the prompt-steered triplets ``(x, x', y')`` sampled and judged from them, and the
verifiable instruction set."""

from workbench.data.attributes import Attribute, list_attributes, load_attribute, make_attribute, split_questions
from workbench.data.triplets import TripletConfig, TripletSet, build_triplets, summarize

__all__ = [
    "Attribute", "TripletConfig", "TripletSet", "build_triplets", "list_attributes", "load_attribute",
    "make_attribute", "split_questions", "summarize",
]
