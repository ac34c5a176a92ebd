"""Training streamed from a delta store, shard by shard: the same data, the same fits, flat memory."""

import pytest
import torch

from workbench.activations.deltas import extract_deltas
from workbench.activations.extraction import SpanActivations
from workbench.activations.store import DeltaStore, DeltaWriter
from workbench.steering import (
    SteererInfo,
    StoreTokens,
    TokenData,
    TrainConfig,
    fit_const_mse,
    fit_dim,
    load_token_data,
    relative_mse,
    token_data_from_store,
    train_steerer,
)
from workbench.steering import data as data_module
from workbench.steering.layerwise import LayerwisePSRTrainer, closed_form, psr_init

pytestmark = pytest.mark.usefixtures("one_thread")

D, N_SEQ, LAYERS = 16, 60, (0, 1)


def planted_store(directory, per_shard: int, seed: int = 0) -> tuple[DeltaStore, torch.Tensor, torch.Tensor]:
    """A float32 store whose local deltas are ``alpha * ReLU(a . w_l - 1) z_l`` (plus a little noise),
    ``per_shard`` sequences of 5 to 14 tokens per shard. Returns ``(store, w [L, D], z [L, D])``."""
    g = torch.Generator().manual_seed(seed)
    w, z = [], []
    for _ in LAYERS:
        q, _ = torch.linalg.qr(torch.randn(D, 2, generator=g))
        w.append(q[:, 0] / 3)
        z.append(q[:, 1] * 4)
    w, z = torch.stack(w), torch.stack(z)
    writer = DeltaWriter(directory, model_id="planted", layers=LAYERS, d_model=D, dtype="float32", local=True)
    for start in range(0, N_SEQ, per_shard):
        ids = list(range(start, min(N_SEQ, start + per_shard)))
        lens = torch.randint(5, 15, (len(ids),), generator=g)
        n = int(lens.sum())
        sample = torch.arange(len(ids)).repeat_interleave(lens)
        alpha = torch.tensor([0.5 + 0.5 * (i % 5) / 4 for i in ids])[sample]
        base = torch.randn(len(LAYERS), n, D, generator=g) * 3 + 1
        lam = torch.relu(torch.einsum("ltd,ld->lt", base, w) - 1)
        loc = alpha[None, :, None] * lam[..., None] * z[:, None, :] + 0.01 * torch.randn(len(LAYERS), n, D, generator=g)
        position = torch.cat([torch.arange(int(k)) for k in lens])
        writer.write(SpanActivations(LAYERS, base, loc.clone(), loc, torch.zeros(n, dtype=torch.long), sample, position,
                                     torch.ones(len(ids), dtype=torch.long)), ids)
    return DeltaStore(directory), w, z


def labels():
    return {i: 0.5 + 0.5 * (i % 5) / 4 for i in range(N_SEQ)}


def psr_info(rank=1):
    return SteererInfo("psr-mse", "all", "layerwise", LAYERS, rank, "planted", D, len(LAYERS))


def test_chunks_are_the_in_memory_data_shard_by_shard(tmp_path):
    store, _, _ = planted_store(tmp_path / "s", per_shard=7)
    lazy = StoreTokens(store, LAYERS, "loc", labels())
    full = token_data_from_store(store, LAYERS, "loc", labels())
    assert lazy.n_chunks == len(store.shards) == 9
    assert lazy.n_tokens == full.n_tokens
    assert lazy.nbytes == full.n_tokens * len(LAYERS) * D * 8
    loaded = lazy.load()
    for name in ("acts", "delta", "alpha", "seq"):
        assert torch.equal(getattr(loaded, name), getattr(full, name)), name
    some = lazy.select([3, 40, 41])
    assert some.sequences == [3, 40, 41] and some.n_chunks == 2
    assert torch.equal(some.load().seq, full.select([3, 40, 41]).seq)
    assert lazy.fingerprint() == StoreTokens(store, LAYERS, "loc", labels()).fingerprint() != some.fingerprint()
    with pytest.raises(KeyError, match="not in this data"):
        lazy.select([999])
    with pytest.raises(ValueError, match="kind must be"):
        StoreTokens(store, LAYERS, "steered", labels())


def test_statistics_and_closed_forms_match_in_memory(tmp_path):
    store, _, _ = planted_store(tmp_path / "s", per_shard=7)
    lazy, full = StoreTokens(store, LAYERS, "loc", labels()), token_data_from_store(store, LAYERS, "loc", labels())
    torch.testing.assert_close(fit_dim(lazy), fit_dim(full), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fit_const_mse(lazy), fit_const_mse(full), rtol=1e-5, atol=1e-6)
    for key, value in psr_init(full, 2).items():
        torch.testing.assert_close(psr_init(lazy, 2)[key], value, rtol=1e-4, atol=1e-5)
    const = closed_form(SteererInfo("const-mse", "all", "layerwise", LAYERS, 1, "planted", D, 2), lazy)
    torch.testing.assert_close(relative_mse(const, lazy), relative_mse(const, full), rtol=1e-5, atol=1e-6)


def test_streamed_full_batch_training_recovers_the_plant_and_matches_in_memory(tmp_path):
    store, w, z = planted_store(tmp_path / "s", per_shard=7)
    config = TrainConfig(steps=300, lr=0.05, patience=0, eval_every=25, reg_weight=0)
    lazy_trainer = LayerwisePSRTrainer(psr_info(), StoreTokens(store, LAYERS, "loc", labels()), config)
    mem_trainer = LayerwisePSRTrainer(psr_info(), token_data_from_store(store, LAYERS, "loc", labels()), config)
    assert lazy_trainer.streaming and not mem_trainer.streaming
    assert lazy_trainer.train_ids == mem_trainer.train_ids  # the same split by sequence
    streamed, in_memory = lazy_trainer.run(progress=False), mem_trainer.run(progress=False)
    for key, value in in_memory.params().items():
        torch.testing.assert_close(streamed.params()[key], value, rtol=1e-3, atol=1e-3)
    assert streamed.info.history["best_step"] == in_memory.info.history["best_step"]
    for l in range(len(LAYERS)):  # the planted probe and direction, up to scale
        assert torch.cosine_similarity(streamed.params()["w"][l, 0], w[l], dim=0) > 0.95
        assert torch.cosine_similarity(streamed.params()["z"][l, 0], z[l], dim=0) > 0.99
    full = token_data_from_store(store, LAYERS, "loc", labels())
    assert float(relative_mse(streamed, full).max()) < 0.05


def test_streamed_mini_batches_follow_the_in_memory_order_on_one_shard(tmp_path):
    store, _, _ = planted_store(tmp_path / "s", per_shard=N_SEQ)
    config = TrainConfig(steps=40, lr=0.05, batch_size=8, patience=0, eval_every=10, seed=3)
    lazy = LayerwisePSRTrainer(psr_info(), StoreTokens(store, LAYERS, "loc", labels()), config)
    mem = LayerwisePSRTrainer(psr_info(), token_data_from_store(store, LAYERS, "loc", labels()), config)
    lazy_batches, mem_batches = lazy._batches(), mem._batches()
    for _ in range(12):  # two epochs of 6 batches (48 training sequences)
        assert torch.equal(next(lazy_batches).seq, next(mem_batches).seq)
    a, b = lazy.run(progress=False), mem.run(progress=False)
    for key, value in b.params().items():
        torch.testing.assert_close(a.params()[key], value, rtol=1e-3, atol=1e-3)


def test_streamed_mini_batches_cover_each_epoch_reproducibly_across_shards(tmp_path):
    store, w, _ = planted_store(tmp_path / "s", per_shard=7)
    config = TrainConfig(steps=400, lr=0.05, batch_size=10, patience=0, eval_every=50, reg_weight=0, seed=1)
    trainer = LayerwisePSRTrainer(psr_info(), StoreTokens(store, LAYERS, "loc", labels()), config)
    batches = trainer._batches()
    epoch = [next(batches) for _ in range(5)]  # 48 training sequences: four of 10, then 8
    assert [len(b.sequences) for b in epoch] == [10, 10, 10, 10, 8]
    seen = [s for b in epoch for s in b.sequences]
    assert sorted(seen) == trainer.train_ids  # every training sequence once per epoch
    again = LayerwisePSRTrainer(psr_info(), StoreTokens(store, LAYERS, "loc", labels()), config)._batches()
    assert [next(again).sequences for _ in range(5)] == [b.sequences for b in epoch]  # seeded
    result = LayerwisePSRTrainer(psr_info(), StoreTokens(store, LAYERS, "loc", labels()), config).run(progress=False)
    rerun = LayerwisePSRTrainer(psr_info(), StoreTokens(store, LAYERS, "loc", labels()), config).run(progress=False)
    assert torch.equal(result.params()["w"], rerun.params()["w"])
    for l in range(len(LAYERS)):
        assert torch.cosine_similarity(result.params()["w"][l, 0], w[l], dim=0) > 0.9


def test_large_data_streams_automatically_and_trains_like_in_memory(tiny_model, tiny_pairs, tmp_path, monkeypatch):
    store = extract_deltas(tiny_model, tiny_pairs * 3, tmp_path / "s", batch_size=2, dtype="float32", progress=False)
    assert isinstance(load_token_data(store, [0, 1, 2], "loc", 1.0), TokenData)
    assert isinstance(load_token_data(store, [0, 1, 2], "loc", 1.0, limit_bytes=0), StoreTokens)
    config = TrainConfig(steps=60, patience=0, eval_every=10)
    in_memory = train_steerer("psr-mse", tiny_model, 1.0, layers=None, store=store, config=config, progress=False)
    monkeypatch.setattr(data_module, "IN_MEMORY_LIMIT_BYTES", 0)
    streamed = train_steerer("psr-mse", tiny_model, 1.0, layers=None, store=store, config=config, progress=False)
    single = train_steerer("const-mse", tiny_model, 1.0, layers=1, store=store, progress=False)
    assert streamed.info.data_hash != in_memory.info.data_hash  # hashes say how the data was read
    for key, value in in_memory.params().items():
        torch.testing.assert_close(streamed.params()[key], value, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(single.params()["z"][0, 0], store.get("acc", 1).mean(0), rtol=1e-5, atol=1e-6)
