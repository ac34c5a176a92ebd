import math

import torch

from workbench.core.chat import encode_response, prompt_ids
from workbench.core.likelihood import mean_response_logprob


def test_mean_logprob_matches_a_direct_computation(tiny_model):
    questions = ["What is the capital of France?", "Hi", "Why is the sky blue?"]
    responses = ["Paris, matey!", "Meow meow purr.", ""]
    got = mean_response_logprob(tiny_model, questions, responses, batch_size=2)
    assert math.isnan(got[2])
    for q, r, value in zip(questions[:2], responses[:2], got[:2]):
        prompt, _ = prompt_ids(tiny_model.tokenizer, q)
        resp = encode_response(tiny_model.tokenizer, r)
        with torch.no_grad():
            logits = tiny_model.bridge.original_model(torch.tensor([prompt + resp])).logits[0]
        logprobs = torch.log_softmax(logits.float(), dim=-1)[len(prompt) - 1 : -1]
        want = logprobs.gather(-1, torch.tensor(resp)[:, None]).mean().item()
        assert value < 0 and abs(value - want) < 1e-4
