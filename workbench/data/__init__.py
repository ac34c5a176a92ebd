"""Stage 2, what the experiments are run on: attributes (instructions, paraphrases, questions and
their judge), the prompt-steered triplets ``(x, x', y')`` sampled and judged from them, and the
verifiable instruction set."""

from workbench.data.attributes import Attribute, list_attributes, load_attribute, make_attribute, split_questions
from workbench.data.instructions import Instruction, get_instruction, instruction_attribute, load_instructions
from workbench.data.triplets import TripletConfig, TripletSet, build_triplets, summarize

__all__ = [
    "Attribute", "Instruction", "TripletConfig", "TripletSet", "build_triplets", "get_instruction", "instruction_attribute", "list_attributes", "load_attribute", "load_instructions",
    "make_attribute", "split_questions", "summarize",
]
