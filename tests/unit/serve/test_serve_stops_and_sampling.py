"""End-of-sequence ids from generation_config.json, stop_token_ids, top-k / min-p sampling, and the
finished-sequence counter, on CPU engines (the padded-bucket, one-step-lag path included)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import transformers

from tests.unit.serve.tiny_models import save_tiny_decoder
from workloads.serve.config import EngineConfig
from workloads.serve.engine import Engine, SamplingParams
from workloads.serve.metrics import ServeMetrics
from workloads.serve.sampling import sample, table_column

PROMPT = [7, 300, 42, 9, 120]


def _greedy(engine: Engine, prompt: list[int], n: int) -> list[int]:
    return engine.generate([prompt], SamplingParams(max_tokens=n, ignore_eos=True))[0]


def _first_new(tokens: list[int], avoid: set[int]) -> int:
    """A token at index >= 2 of ``tokens``, seen nowhere before it, with no ``avoid`` token before it."""
    for i, t in enumerate(tokens):
        if t in avoid:
            break
        if i >= 2 and t not in tokens[:i]:
            return t
    raise AssertionError(f"no usable stop token in {tokens}")


@pytest.fixture(scope="module")
def llama3_like_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A tiny Llama directory whose generation_config.json lists two EOS ids (as Llama 3 does:
    <|end_of_text|> and <|eot_id|>); config.json names only the first."""
    path = tmp_path_factory.mktemp("llama3")
    save_tiny_decoder(path)
    (path / "generation_config.json").unlink(missing_ok=True)
    probe = Engine(EngineConfig(model=str(path), max_batch=2, max_model_len=64))
    eot = _first_new(_greedy(probe, PROMPT, 12), {256})
    (path / "generation_config.json").write_text(json.dumps({"bos_token_id": 256, "eos_token_id": [256, eot]}))
    return path, eot


def test_every_eos_id_of_generation_config_stops_like_hf_generate(llama3_like_dir) -> None:
    path, eot = llama3_like_dir
    engine = Engine(EngineConfig(model=str(path), max_batch=2, max_model_len=64))
    free = _greedy(engine, PROMPT, 12)
    out = engine.generate([PROMPT], SamplingParams(max_tokens=12))[0]
    assert out == free[: free.index(eot)]
    # HF generate reads the same generation_config.json and stops after emitting the id.
    x = torch.tensor([PROMPT])
    hf = engine.hf_model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=12, do_sample=False)
    assert hf[0, len(PROMPT) :].tolist() == [*out, eot]
    assert engine.eos_token_ids == {256, eot}


def test_extra_eos_ids_stop_on_the_padded_lagged_gpu_path(llama3_like_dir) -> None:
    """The CUDA-graph path reads tokens one step late from padded buckets: stops are host-side."""
    path, eot = llama3_like_dir
    engine = Engine(EngineConfig(model=str(path), max_batch=4, max_model_len=64))
    free = _greedy(engine, PROMPT, 12)
    engine.runner.pad_buckets, engine.lag_steps = True, 1
    seqs = [engine.submit(PROMPT, SamplingParams(max_tokens=12)) for _ in range(3)]
    ignoring = engine.submit(PROMPT, SamplingParams(max_tokens=12, ignore_eos=True))
    while engine.has_work:
        engine.step()
    assert all(s.out_ids == free[: free.index(eot)] and s.finish_reason == "stop" for s in seqs)
    assert ignoring.out_ids == free and ignoring.finish_reason == "length"


def test_config_eos_list_is_read_too(tmp_path) -> None:
    config = transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=300, eos_token_id=[256, 299])
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path)
    (tmp_path / "generation_config.json").unlink(missing_ok=True)
    assert Engine(EngineConfig(model=str(tmp_path), max_batch=1, max_model_len=32)).eos_token_ids == {256, 299}


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(EngineConfig(model="tiny-random", max_batch=4, max_model_len=64))


@pytest.mark.parametrize("lagged", [False, True])
def test_stop_token_ids_stop_even_under_ignore_eos(engine: Engine, lagged: bool) -> None:
    free = _greedy(engine, PROMPT, 10)
    stop = _first_new(free, {256})
    engine.runner.pad_buckets, engine.lag_steps = lagged, int(lagged)
    try:
        params = SamplingParams(max_tokens=10, ignore_eos=True, stop_token_ids=frozenset({stop}))
        seq = engine.submit(PROMPT, params)
        while engine.has_work:
            engine.step()
    finally:
        engine.runner.pad_buckets, engine.lag_steps = False, 0
    assert seq.out_ids == free[: free.index(stop)] and seq.finish_reason == "stop"


def test_top_k_one_and_min_p_one_are_greedy_at_any_temperature(engine: Engine) -> None:
    prompts = [PROMPT, [1, 2, 3], [400, 5]]
    greedy = engine.generate(prompts, SamplingParams(max_tokens=10, ignore_eos=True))
    hot = engine.generate(prompts, SamplingParams(max_tokens=10, temperature=1.5, ignore_eos=True))
    assert hot != greedy  # without the filters, temperature 1.5 does sample
    for extra in ({"top_k": 1}, {"min_p": 1.0}):
        params = SamplingParams(max_tokens=10, temperature=1.5, ignore_eos=True, **extra)
        assert engine.generate(prompts, params) == greedy, extra


def _table(rows: int, **values: float) -> torch.Tensor:
    return torch.tensor([table_column(SamplingParams(max_tokens=1, **values))] * rows).T.contiguous()


def test_sampler_keeps_only_the_top_k_and_min_p_tokens() -> None:
    torch.manual_seed(0)
    logits = torch.randn(256, 50)
    greedy = logits.argmax(-1)
    gen = torch.Generator().manual_seed(1)
    top5 = logits.topk(5, dim=-1).indices
    ids = sample(logits, greedy, _table(256, temperature=1.0, top_k=5), gen)
    assert (ids[:, None] == top5).any(-1).all()
    assert len(set(ids.tolist())) > 5  # rows differ: it samples, it does not just take the argmax
    probs = logits.softmax(-1)
    ids = sample(logits, greedy, _table(256, temperature=1.0, min_p=0.3), gen)
    chosen = probs.gather(-1, ids[:, None])[:, 0]
    assert (chosen >= 0.3 * probs.max(-1).values).all() and (ids != greedy).any()


def test_top_p_applies_to_the_top_k_renormalised_mass_as_in_hf() -> None:
    # p = [0.5, 0.3, 0.2]: top_k=2 leaves [0.625, 0.375]; top_p=0.6 then keeps the first only
    # (HF's TopK then TopP warpers, and vLLM, renormalise between them).
    logits = torch.tensor([[math.log(0.5), math.log(0.3), math.log(0.2)]]).repeat(64, 1)
    greedy = torch.zeros(64, dtype=torch.long)
    gen = torch.Generator().manual_seed(0)
    assert sample(logits, greedy, _table(64, temperature=1.0, top_k=2, top_p=0.6), gen).eq(0).all()
    assert sample(logits, greedy, _table(64, temperature=1.0, top_p=0.6), gen).ne(0).any()


def test_finished_sequences_count_aborts_and_errors() -> None:
    engine = Engine(EngineConfig(model="tiny-random", max_batch=2, max_model_len=64))
    metrics = ServeMetrics(lambda: 0, lambda: 0)
    engine.observer = metrics
    aborted = engine.submit(PROMPT, SamplingParams(max_tokens=20, ignore_eos=True))
    engine.step()
    engine.abort(aborted)
    engine.step()
    engine.submit(PROMPT, SamplingParams(max_tokens=20, ignore_eos=True))
    engine.step()
    engine._fail_all()  # what the loop does after a step raised

    def count(reason: str) -> float | None:
        return metrics.registry.get_sample_value("aidc_serve_finished_sequences_total", {"reason": reason})

    assert (count("abort"), count("error")) == (1.0, 1.0)
