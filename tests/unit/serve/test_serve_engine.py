"""Engine on CPU with tiny random models: HF-generate parity, batching, sampling, stops, limits."""

from __future__ import annotations

import pytest
import torch
from transformers import GenerationConfig

from tests.unit.serve.tiny_models import save_tiny_decoder
from workloads.serve.config import EngineConfig
from workloads.serve.engine import ADMIT_WAIT_STEPS, Engine, EngineOverloaded, RequestError, SamplingParams
from workloads.serve.sequence import Delta

PROMPT_LENGTHS = (1, 3, 9, 17, 25, 40)


@pytest.fixture(scope="module", params=["tiny-random", "tiny-random-llama"])
def engine(request: pytest.FixtureRequest) -> Engine:
    # 4 slots for 6 prompts: two sequences must join the batch while others are mid-decode.
    return Engine(EngineConfig(model=request.param, max_batch=4, max_model_len=128))


def _prompts(seed: int = 1) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 512, (n,), generator=g).tolist() for n in PROMPT_LENGTHS]


def _hf_greedy(engine: Engine, prompt: list[int], n: int) -> list[int]:
    # No min_new_tokens: it would mask end-of-text and change the argmax. HF stops after an
    # end-of-text token instead; callers compare up to there (see _same_tokens).
    x = torch.tensor([prompt])
    cfg = GenerationConfig(do_sample=False, max_new_tokens=n, pad_token_id=0)
    out = engine.hf_model.generate(x, attention_mask=torch.ones_like(x), generation_config=cfg)
    return out[0, len(prompt) :].tolist()


def _same_tokens(ours: list[int], hf: list[int], n: int) -> bool:
    """Token-for-token equal; where HF stopped early at end-of-text, equal up to and including it."""
    if len(hf) < n:
        return hf[-1] == 256 and ours[: len(hf)] == hf
    return ours == hf


def test_greedy_matches_hf_generate_token_for_token(engine: Engine) -> None:
    prompts = _prompts()
    outs = engine.generate(prompts, SamplingParams(max_tokens=24, ignore_eos=True))
    for prompt, out in zip(prompts, outs, strict=True):
        assert _same_tokens(out, _hf_greedy(engine, prompt, 24), 24), f"{len(prompt)}-token prompt diverged"


def test_sequences_are_decoded_together(engine: Engine) -> None:
    batches: list[int] = []

    class Spy:
        def on_step(self, batch: int, tokens: int) -> None:
            batches.append(batch)

        def on_first_token(self, ttft_s: float) -> None: ...
        def on_finish(self, seq: object) -> None: ...

    engine.observer = Spy()
    try:
        engine.generate(_prompts(2), SamplingParams(max_tokens=8, ignore_eos=True))
    finally:
        engine.observer = None
    assert max(batches) == 4  # all slots busy at once, not one sequence at a time
    assert engine.num_running == 0 and engine.num_waiting == 0


def test_sampling_is_seeded_and_top_p_tiny_is_greedy(engine: Engine) -> None:
    prompts = _prompts(3)[:3]
    greedy = engine.generate(prompts, SamplingParams(max_tokens=12, ignore_eos=True))
    narrow = engine.generate(prompts, SamplingParams(max_tokens=12, temperature=1.0, top_p=1e-6, ignore_eos=True))
    assert narrow == greedy
    hot = engine.generate(prompts, SamplingParams(max_tokens=12, temperature=1.5, ignore_eos=True))
    assert hot != greedy and all(len(o) == 12 for o in hot)


def test_eos_stops_and_is_not_returned(engine: Engine) -> None:
    prompt = _prompts(4)[2]
    free = _hf_greedy(engine, prompt, 6)
    engine.eos_token_ids = frozenset({free[3]})
    try:
        out = engine.generate([prompt], SamplingParams(max_tokens=6))
    finally:
        engine.eos_token_ids = frozenset({256})
    assert out == [free[: free.index(free[3])]]


def test_stop_string_cuts_text_and_streams_only_text_before_it(engine: Engine) -> None:
    prompt = _prompts(5)[3]
    full = engine.tokenizer.decode(_hf_greedy(engine, prompt, 20))
    stop = next(full[i : i + 2] for i in range(2, len(full) - 2) if "\ufffd" not in full[i : i + 2])
    deltas: list[Delta] = []
    seq = engine.submit(prompt, SamplingParams(max_tokens=20, stop=(stop,), ignore_eos=True), deltas.append)
    for _ in range(40):
        if seq.finished:
            break
        engine.step()
    assert deltas[-1].finish_reason == "stop"
    assert "".join(d.text for d in deltas) == full[: full.index(stop)]


def test_abort_frees_the_slot(engine: Engine) -> None:
    seq = engine.submit(_prompts(6)[0], SamplingParams(max_tokens=50, ignore_eos=True))
    engine.step()
    assert engine.num_running == 1
    engine.abort(seq)
    engine.step()
    assert seq.finished and seq.finish_reason == "abort" and engine.num_running == 0


@pytest.mark.parametrize(
    ("prompt", "max_tokens", "param"),
    [([], 4, "prompt"), ([1] * 128, 1, "prompt"), ([1] * 100, 29, "max_tokens"), ([600], 4, "prompt")],
)
def test_requests_that_cannot_fit_are_refused(engine: Engine, prompt: list[int], max_tokens: int, param: str) -> None:
    with pytest.raises(RequestError) as err:
        engine.submit(prompt, SamplingParams(max_tokens=max_tokens))
    assert err.value.param == param


def test_full_queue_raises_overloaded(engine: Engine) -> None:
    engine.max_waiting = 2
    try:  # 4 free slots + 2 queue places
        seqs = [engine.submit([1, 2], SamplingParams(max_tokens=2)) for _ in range(6)]
        with pytest.raises(EngineOverloaded):
            engine.submit([1, 2], SamplingParams(max_tokens=2))
        for s in seqs:
            engine.abort(s)
        engine.step()
    finally:
        engine.max_waiting = 1 << 30
    assert engine.num_waiting == 0


def test_gpu_scheduling_path_on_cpu_padded_buckets_and_one_step_lag(engine: Engine) -> None:
    """The CUDA path pads batches to graph buckets and reads each step's tokens one step late;
    both are exercised here on CPU (without graphs) and must not change a single token."""
    engine.runner.pad_buckets, engine.lag_steps = True, 1
    try:
        prompts = _prompts(7)
        mixed = [SamplingParams(max_tokens=n, ignore_eos=True) for n in (5, 24, 1, 13, 24, 7)]
        seqs = [engine.submit(p, sp) for p, sp in zip(prompts, mixed, strict=True)]
        for _ in range(200):
            if not engine.has_work:
                break
            engine.step()
    finally:
        engine.runner.pad_buckets, engine.lag_steps = False, 0
    for prompt, sp, seq in zip(prompts, mixed, seqs, strict=True):
        ref = _hf_greedy(engine, prompt, sp.max_tokens)
        assert _same_tokens(seq.out_ids, ref, sp.max_tokens), f"{len(prompt)}-token prompt diverged"
    assert engine.num_running == 0


def test_zero_queue_still_admits_into_free_slots(engine: Engine) -> None:
    engine.max_waiting = 0
    try:
        seq = engine.submit([1, 2], SamplingParams(max_tokens=2))
    finally:
        engine.max_waiting = 1 << 30
    while engine.has_work:
        engine.step()
    assert seq.finished and len(seq.out_ids) >= 1


@pytest.mark.parametrize("config_name", ["Qwen2Config", "MistralConfig"])
def test_local_model_directory_of_llama_like_types_matches_hf(tmp_path, config_name: str) -> None:
    save_tiny_decoder(tmp_path, config_name, sliding_window=None)
    engine = Engine(EngineConfig(model=str(tmp_path), max_batch=2, max_model_len=64))
    assert engine.model_name == tmp_path.name
    prompts = _prompts(8)[:3]
    outs = engine.generate(prompts, SamplingParams(max_tokens=10, ignore_eos=True))
    for prompt, out in zip(prompts, outs, strict=True):
        assert _same_tokens(out, _hf_greedy(engine, prompt, 10), 10)


def test_unsupported_model_type_is_refused_before_loading_weights(tmp_path) -> None:
    import transformers

    transformers.GPTNeoXConfig(hidden_size=64, num_attention_heads=4, num_hidden_layers=1).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="model type 'gpt_neox' .* allowed gpt2, llama, mistral, qwen2"):
        Engine(EngineConfig(model=str(tmp_path)))


def test_under_load_waiting_requests_are_admitted_in_groups() -> None:
    """With 3 requests waiting and min_prefill_batch=2, one freed slot is not enough: decoding goes
    on without a prefill until a second slot frees, then both join in one prefill. An idle engine,
    and a lone waiting request, are admitted at once."""
    engine = Engine(EngineConfig(model="tiny-random", max_batch=4, max_model_len=64, min_prefill_batch=2))
    prefills: list[int] = []
    real_prefill = engine.runner.prefill

    def counting_prefill(slots: list[int], prompts: list[list[int]]) -> torch.Tensor:
        prefills.append(len(prompts))
        return real_prefill(slots, prompts)

    engine.runner.prefill = counting_prefill
    running = [engine.submit([1, 2, 3], SamplingParams(max_tokens=n, ignore_eos=True)) for n in (3, 6, 30, 30)]
    engine.step()
    assert prefills == [4]  # idle engine: everything that fits is admitted at once
    waiting = [engine.submit([4, 5], SamplingParams(max_tokens=4, ignore_eos=True)) for _ in range(3)]
    while not running[0].finished:
        engine.step()
    engine.step()
    assert engine.num_running == 3 and engine.num_waiting == 3 and prefills == [4]  # 1 free slot < group of 2
    while not running[1].finished:
        engine.step()
    engine.step()
    assert prefills == [4, 2] and engine.num_waiting == 1  # two slots free: one prefill of two
    for _ in range(100):
        if not engine.has_work:
            break
        engine.step()
    assert prefills[-1] == 1  # the last one waited alone: admitted as soon as a slot was free
    assert all(s.finished and len(s.out_ids) == s.params.max_tokens for s in running + waiting)


def test_a_held_back_group_is_admitted_after_admit_wait_steps() -> None:
    """Long sequences hold 3 of 4 slots: the one free slot is filled after ADMIT_WAIT_STEPS steps,
    counted from when it freed (steps with every slot busy held nothing back)."""
    engine = Engine(EngineConfig(model="tiny-random", max_batch=4, max_model_len=160, min_prefill_batch=2))
    long = [engine.submit([1, 2], SamplingParams(max_tokens=n, ignore_eos=True)) for n in (20, 120, 120, 120)]
    engine.step()
    waiting = [engine.submit([3], SamplingParams(max_tokens=2, ignore_eos=True)) for _ in range(2)]
    while not long[0].finished:  # about 20 steps with all four slots busy
        engine.step()
    for _ in range(ADMIT_WAIT_STEPS):
        engine.step()
        assert engine.num_waiting == 2 and engine.num_running == 3  # one slot free, a group of two
    engine.step()
    assert engine.num_waiting == 1 and waiting[0].slot is not None


def test_group_is_capped_by_what_one_prefill_holds() -> None:
    """max_prefill_tokens=16 takes one 10-token prompt per prefill: a group of 2 could never be
    admitted together, so one free slot is filled at once instead of idling."""
    engine = Engine(
        EngineConfig(
            model="tiny-random", max_batch=4, max_model_len=160, min_prefill_batch=2, max_prefill_tokens=16
        )
    )
    long = [engine.submit([1, 2], SamplingParams(max_tokens=n, ignore_eos=True)) for n in (3, 120, 120, 120)]
    engine.step()
    waiting = [engine.submit(list(range(10)), SamplingParams(max_tokens=20, ignore_eos=True)) for _ in range(2)]
    while not long[0].finished:
        engine.step()
    engine.step()
    assert engine.num_waiting == 1 and waiting[0].slot is not None and engine.num_running == 4


def test_min_prefill_batch_beyond_max_batch_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"min_prefill_batch=9 is invalid: allowed 1\.\.max_batch \(8\)"):
        EngineConfig(max_batch=8, min_prefill_batch=9)
