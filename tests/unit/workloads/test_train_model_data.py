"""Model forward/loss, token shards, the synthetic stream, the batch loader and the tokenizer CLI."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
import torch

from workloads.train.config import PRESETS, TrainConfig
from workloads.train.data import (
    HEADER_BYTES,
    BatchLoader,
    DataError,
    load_tokens,
    read_header,
    synthetic_permutation,
    write_shard,
)
from workloads.train.model import GPT, count_parameters
from workloads.train.tokenize import main as tokenize_main
from workloads.train.trainer import lr_factor


def _tiny() -> GPT:
    torch.manual_seed(0)
    return GPT(PRESETS["tiny"])


def test_initial_loss_is_near_uniform():
    x, y = torch.randint(0, 256, (2, 16)), torch.randint(0, 256, (2, 16))
    loss = _tiny()(x, y)
    assert abs(loss.item() - math.log(256)) < 0.3


def test_chunked_loss_equals_full_loss_and_gradients():
    model = _tiny()
    x, y = torch.randint(0, 256, (2, 32)), torch.randint(0, 256, (2, 32))
    full = model(x, y)
    full.backward()
    g_full = model.wte.weight.grad.clone()
    model.zero_grad()
    chunked = model(x, y, loss_chunks=4)
    chunked.backward()
    torch.testing.assert_close(chunked, full)
    torch.testing.assert_close(model.wte.weight.grad, g_full)


def test_logits_shape_without_targets():
    assert _tiny()(torch.zeros(3, 5, dtype=torch.long)).shape == (3, 5, 256)


def test_non_embedding_count_excludes_only_position_table_when_head_is_tied():
    model = _tiny()
    counts = count_parameters(model)
    assert counts["total"] - counts["non_embedding"] == model.wpe.weight.numel()


@pytest.mark.parametrize(("vocab", "token_bytes"), [(256, 2), (50304, 2), (200_000, 4)])
def test_shard_roundtrip(tmp_path, vocab, token_bytes):
    tokens = np.arange(1000) % vocab
    path = tmp_path / "s.bin"
    write_shard(path, tokens, vocab)
    h = read_header(path)
    assert (h.token_bytes, h.num_tokens, h.vocab_size) == (token_bytes, 1000, vocab)
    assert path.stat().st_size == HEADER_BYTES + 1000 * token_bytes


def test_truncated_or_foreign_shard_is_rejected(tmp_path):
    path = tmp_path / "s.bin"
    write_shard(path, np.arange(100), 256)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataError, match="truncated"):
        read_header(path)
    (tmp_path / "x.bin").write_bytes(b"NOTTOKENS" * 10)
    with pytest.raises(DataError, match="not a token shard"):
        read_header(tmp_path / "x.bin")


def test_out_of_range_token_is_rejected(tmp_path):
    with pytest.raises(DataError, match=r"\[0, 256\)"):
        write_shard(tmp_path / "s.bin", np.array([1, 256]), 256)


def test_synthetic_stream_follows_its_permutation_and_is_positional():
    loader = BatchLoader(data="synthetic", batch_size=4, seq_len=16, vocab_size=256, seed=3, rank=1, world_size=2)
    perm = synthetic_permutation(3, 256)
    x, y = loader.next_batch()
    assert x.shape == y.shape == (4, 16)
    assert torch.equal(y, torch.from_numpy(perm)[x])
    second = loader.next_batch()
    replay = BatchLoader(data="synthetic", batch_size=4, seq_len=16, vocab_size=256, seed=3, rank=1, world_size=2)
    replay.load_state_dict(loader.state_dict() | {"position": 1})
    assert all(torch.equal(a, b) for a, b in zip(replay.next_batch(), second, strict=True))


def test_ranks_see_different_samples():
    a = BatchLoader(data="synthetic", batch_size=4, seq_len=8, vocab_size=256, seed=3, rank=0, world_size=2)
    b = BatchLoader(data="synthetic", batch_size=4, seq_len=8, vocab_size=256, seed=3, rank=1, world_size=2)
    assert not torch.equal(a.next_batch()[0], b.next_batch()[0])


def test_resume_with_other_world_size_is_refused():
    loader = BatchLoader(data="synthetic", batch_size=1, seq_len=8, vocab_size=256, seed=0, rank=0, world_size=1)
    with pytest.raises(DataError, match="world_size=2, now 1"):
        loader.load_state_dict({"position": 3, "world_size": 2})


@pytest.mark.parametrize(
    ("changed", "message"),
    [
        ({"batch_size": 2}, "batch_size=1, now 2: resume with the same --batch-size"),
        ({"seq_len": 16}, "seq_len=8, now 16: resume with the same --seq-len"),
        ({"seed": 5}, "seed=0, now 5: resume with the same --seed"),
    ],
)
def test_resume_under_another_data_layout_is_refused(changed, message):
    settings = {"data": "synthetic", "batch_size": 1, "seq_len": 8, "vocab_size": 256, "seed": 0, "rank": 0,
                "world_size": 1}
    saved = BatchLoader(**settings)
    saved.next_batch()
    loader = BatchLoader(**{**settings, **changed})
    with pytest.raises(DataError, match=message):
        loader.load_state_dict(saved.state_dict())


def test_resume_on_other_shards_is_refused_and_moved_shards_resume(tmp_path):
    first, moved, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for d, n in ((first, 400), (moved, 400), (other, 500)):
        d.mkdir()
        (d / "text.txt").write_text("x" * n, encoding="utf-8")
        assert tokenize_main([str(d / "text.txt"), str(d / "data.bin")]) == 0
    settings = {"batch_size": 1, "seq_len": 8, "vocab_size": 256, "seed": 0, "rank": 0, "world_size": 1}
    state = BatchLoader(data=str(first), **settings).state_dict()
    BatchLoader(data=str(moved), **settings).load_state_dict(state)  # same tokens elsewhere: fine
    with pytest.raises(DataError, match="data_tokens=400, now 500: resume with the same --data"):
        BatchLoader(data=str(other), **settings).load_state_dict(state)


def test_checkpoints_from_before_the_layout_was_recorded_still_resume():
    loader = BatchLoader(data="synthetic", batch_size=1, seq_len=8, vocab_size=256, seed=0, rank=0, world_size=1)
    loader.load_state_dict({"position": 3, "world_size": 1})
    assert loader.position == 3


def test_tokenize_byte_fallback_feeds_the_loader(tmp_path, capsys):
    text = tmp_path / "in.txt"
    text.write_text("hello aidc! " * 50, encoding="utf-8")
    out = tmp_path / "data.bin"
    assert tokenize_main([str(text), str(out)]) == 0
    assert "600 tokens, vocab 256" in capsys.readouterr().out
    loader = BatchLoader(data=str(tmp_path), batch_size=2, seq_len=10, vocab_size=256, seed=0, rank=0, world_size=1)
    x, y = loader.next_batch()
    decoded = bytes(x[0].tolist()).decode()
    assert decoded in "hello aidc! " * 3
    assert torch.equal(x[:, 1:], y[:, :-1])


def test_data_path_without_shards_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no token shard found"):
        BatchLoader(data=str(tmp_path), batch_size=1, seq_len=8, vocab_size=256, seed=0, rank=0, world_size=1)


def test_a_directory_of_shards_is_mapped_not_loaded_and_reads_as_their_concatenation(tmp_path):
    rng = np.random.default_rng(0)
    shards = [rng.integers(0, 256, n) for n in (300_001, 5, 0, 200_003)]  # 1 MB of uint16 tokens
    (tmp_path / "dir").mkdir()
    for i, tokens in enumerate(shards):
        write_shard(tmp_path / "dir" / f"part{i}.bin", tokens, 256)
    whole = np.concatenate(shards)
    write_shard(tmp_path / "whole.bin", whole, 256)  # what a directory used to be read as

    tracemalloc.start()
    try:
        tokens, vocab = load_tokens(tmp_path / "dir")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100_000, f"loading allocated {peak} bytes: the shards were copied"
    assert vocab == 256 and len(tokens) == len(whole)
    assert all(isinstance(s, np.memmap) for s in tokens.shards)
    for start, stop in [(0, 10), (300_000, 300_010), (299_990, 300_020), (300_004, 300_007), (0, len(whole))]:
        assert np.array_equal(tokens[start:stop], whole[start:stop]), (start, stop)

    # Windows of 17 tokens cross every shard boundary; batches equal those of the one-file data.
    args = {"batch_size": 8, "seq_len": 16, "vocab_size": 256, "seed": 5, "world_size": 2}
    sharded = BatchLoader(data=str(tmp_path / "dir"), rank=1, **args)
    one_file = BatchLoader(data=str(tmp_path / "whole.bin"), rank=1, **args)
    for _ in range(50):
        assert all(torch.equal(a, b) for a, b in zip(sharded.next_batch(), one_file.next_batch(), strict=True))


def test_lr_schedule_warms_up_then_decays_to_floor():
    cfg = TrainConfig(steps=100, warmup=10, min_lr_ratio=0.1)
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(10, cfg) == pytest.approx(1.0)
    assert lr_factor(55, cfg) == pytest.approx(0.55)
    assert lr_factor(100, cfg) == pytest.approx(0.1)
