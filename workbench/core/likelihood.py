"""Teacher-forced log-likelihood of responses under a model (for the coherence proxy).

A response is scored in the neutral context ``x`` (the question with no instruction), so the
number says how plausible the text is as an answer, not how well it fits a persona prompt.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from workbench.core.chat import encode_response, prompt_ids
from workbench.core.models import LoadedModel
from workbench.core.native_path import forward
from workbench.core.span import right_pad


@torch.no_grad()
def mean_response_logprob(
    model: LoadedModel, questions: Sequence[str], responses: Sequence[str], batch_size: int = 16
) -> list[float]:
    """Mean log-probability (nats per token) of each response given its question as ``x``.

    Returns NaN for an empty response.
    """
    if len(questions) != len(responses):
        raise ValueError(f"{len(questions)} questions for {len(responses)} responses")
    out = [float("nan")] * len(responses)
    items = []
    for i, (q, r) in enumerate(zip(questions, responses)):
        if not r.strip():
            continue
        prompt, _ = prompt_ids(model.tokenizer, q)
        resp = encode_response(model.tokenizer, r)[: max(1, model.n_ctx - len(prompt))]
        items.append((i, prompt, resp))
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        ids, mask = right_pad([p + r for _, p, r in chunk], model.tokenizer.pad_token_id)
        logits = forward(model, ids.to(model.device), mask.to(model.device))
        for row, (i, prompt, resp) in enumerate(chunk):
            # Normalise only the positions that predict the response, not the whole padded batch.
            preds = torch.log_softmax(logits[row, len(prompt) - 1 : len(prompt) - 1 + len(resp)].float(), dim=-1)
            targets = torch.tensor(resp, device=preds.device)
            out[i] = float(preds.gather(-1, targets[:, None]).mean())
    return out


def logprob_fn(model: LoadedModel, batch_size: int = 16) -> Callable[[list[str], list[str]], list[float]]:
    """A ``(questions, responses) -> mean log-probs`` function for :class:`CoherenceJudge`."""

    def fn(questions: list[str], responses: list[str]) -> list[float]:
        return mean_response_logprob(model, questions, responses, batch_size=batch_size)

    return fn
