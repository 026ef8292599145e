"""Checkpoints in one process: exact round trip, validity rules, retention, metrics + plot."""

from __future__ import annotations

import json
import os

import pytest
import torch

from workloads.train.checkpoint import (
    MARKER,
    CheckpointError,
    CheckpointManager,
    LocalStore,
    make_store,
    marker_payload,
    model_identity,
    step_name,
)
from workloads.train.config import PRESETS, ModelConfig, TrainConfig
from workloads.train.data import BatchLoader
from workloads.train.metrics import MetricsWriter, read_metrics
from workloads.train.model import GPT
from workloads.train.plot import main as plot_main
from workloads.train.trainer import build_optimizer, lr_factor, rng_state, set_rng_state


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    model = GPT(PRESETS["tiny"])
    opt = build_optimizer(TrainConfig(), model, torch.device("cpu"))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, TrainConfig(steps=10, warmup=2)))
    return model, opt, sched


def _step(model, opt, sched, loader):
    x, y = loader.next_batch()
    loss = model(x, y)
    loss.backward()
    opt.step()
    sched.step()
    opt.zero_grad()
    return loss.item()


def _loader():
    return BatchLoader(data="synthetic", batch_size=2, seq_len=16, vocab_size=256, seed=1, rank=0, world_size=1)


def _train_state(step, sched, loader):
    return {"step": step, "scheduler": sched.state_dict(), "data": loader.state_dict(), "rng": rng_state()}


def test_resume_continues_bit_identically(tmp_path):
    model, opt, sched = _setup()
    loader = _loader()
    for _ in range(3):
        _step(model, opt, sched, loader)
    mgr = CheckpointManager(str(tmp_path), keep_last=2)
    mgr.save(3, model, opt, _train_state(3, sched, loader))
    draw_after_save = torch.rand(3)
    expected = [_step(model, opt, sched, loader) for _ in range(3)]

    model2, opt2, sched2 = _setup(seed=99)  # different weights: the load must overwrite them
    loader2 = _loader()
    state = mgr.load_latest(model2, opt2)
    sched2.load_state_dict(state["scheduler"])
    loader2.load_state_dict(state["data"])
    set_rng_state(state["rng"])
    assert torch.equal(torch.rand(3), draw_after_save)  # RNG back at the save point (seed 99 otherwise)
    assert state["step"] == 3
    got = [_step(model2, opt2, sched2, loader2) for _ in range(3)]
    assert [v.hex() for v in got] == [v.hex() for v in expected]


def _saved(tmp_path, steps, keep_last=10):
    model, opt, sched = _setup()
    loader = _loader()
    mgr = CheckpointManager(str(tmp_path), keep_last=keep_last)
    for s in steps:
        _step(model, opt, sched, loader)
        mgr.save(s, model, opt, _train_state(s, sched, loader))
    return mgr


def test_retention_keeps_last_k(tmp_path):
    _saved(tmp_path, [1, 2, 3, 4], keep_last=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [step_name(3), step_name(4)]


def test_checkpoint_without_marker_is_not_valid(tmp_path):
    mgr = _saved(tmp_path, [1, 2])
    (tmp_path / step_name(2) / MARKER).unlink()
    assert mgr.store.valid_steps() == [1]
    assert mgr.newest_step() == 1


def test_truncated_data_file_is_not_valid(tmp_path):
    mgr = _saved(tmp_path, [1, 2])
    data = next((tmp_path / step_name(2)).glob("*.distcp"))
    os.truncate(data, data.stat().st_size - 1)
    assert mgr.store.valid_steps() == [1]


def test_tmp_directory_is_never_valid_and_is_pruned(tmp_path):
    _saved(tmp_path, [1, 2])
    os.rename(tmp_path / step_name(2), tmp_path / (step_name(2) + ".tmp"))
    store = LocalStore(str(tmp_path))
    assert store.valid_steps() == [1]
    (tmp_path / (step_name(0) + ".tmp")).mkdir()  # an older crashed write
    store.prune(keep_last=5)
    assert not (tmp_path / (step_name(0) + ".tmp")).exists()


def test_marker_must_list_files(tmp_path):
    mgr = _saved(tmp_path, [1])
    (tmp_path / step_name(1) / MARKER).write_text(json.dumps({"step": 1, "files": {}}))
    assert mgr.store.valid_steps() == []
    assert mgr.newest_step() is None


def test_unknown_scheme_is_refused():
    with pytest.raises(CheckpointError, match="gs://b/p"):
        make_store("gs://b/p")


def test_bad_s3_url_is_refused():
    with pytest.raises(CheckpointError, match="not a valid s3://bucket"):
        make_store("s3://B_ad/prefix")


def test_metrics_lines_and_plot(tmp_path, capsys):
    path = tmp_path / "m.jsonl"
    w = MetricsWriter(str(path), enabled=True)
    for s, loss in enumerate([3.0, 2.5, 2.25], start=1):
        w.step(step=s, total=3, loss=loss, lr=1e-3, tokens_per_s=100.0 * s, mfu=None, mem_gib=0.1, progress=True)
    w.event("resume", from_step=1)
    w.step(step=2, total=3, loss=2.5, lr=1e-3, tokens_per_s=200.0, mfu=0.5, mem_gib=0.1, progress=False)
    w.close()
    steps, events = read_metrics(path)
    assert sorted(steps) == [1, 2, 3] and steps[2]["mfu"] == 0.5
    assert steps[3]["loss_hex"] == (2.25).hex() and events[0]["from_step"] == 1
    assert "step      3/3 | loss   2.2500" in capsys.readouterr().out
    assert plot_main([str(path)]) == 0
    png = path.with_suffix(".png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_plot_of_empty_metrics_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    assert plot_main([str(path)]) == 2
    assert "no step records" in capsys.readouterr().err


def test_marker_refuses_a_checkpoint_missing_rank_files():
    ok = marker_payload(5, {".metadata": 10, "__0_0.distcp": 20, "train_state_rank0.pt": 30}, "ckpt/step_5")
    assert ok["world_size"] == 1 and ok["step"] == 5
    with pytest.raises(CheckpointError, match="ckpt/step_5: files of other ranks are missing.*FSx"):
        marker_payload(5, {"train_state_rank0.pt": 30}, "ckpt/step_5")


def test_marker_records_the_model_and_another_shape_is_refused_before_loading(tmp_path):
    model, opt, _ = _setup()
    CheckpointManager(str(tmp_path), model=model_identity("tiny", PRESETS["tiny"])).save(1, model, opt, {"step": 1})
    marker = json.loads((tmp_path / step_name(1) / MARKER).read_text())
    assert marker["model"] == {
        "preset": "tiny",
        "vocab_size": 256,
        "n_layer": 2,
        "n_head": 2,
        "d_model": 64,
        "max_seq_len": 64,
        "mlp_ratio": 4,
    }
    deeper = ModelConfig(vocab_size=256, n_layer=3, n_head=2, d_model=64, max_seq_len=64)
    other = GPT(deeper)
    mgr = CheckpointManager(str(tmp_path), model=model_identity("custom", deeper))
    with pytest.raises(CheckpointError, match=r"step_00000001 was saved by another model .*n_layer 2 -> 3\)"):
        mgr.load_latest(other, build_optimizer(TrainConfig(), other, torch.device("cpu")))


def test_checkpoint_without_a_model_record_that_does_not_fit_is_a_checkpoint_error(tmp_path):
    model, opt, _ = _setup()
    CheckpointManager(str(tmp_path)).save(1, model, opt, {"step": 1})  # as older versions wrote it
    wider = GPT(ModelConfig(vocab_size=256, n_layer=2, n_head=2, d_model=128, max_seq_len=64))
    with pytest.raises(CheckpointError, match=r"step_00000001 does not fit this model \(.*Size mismatch"):
        CheckpointManager(str(tmp_path)).load_latest(wider, build_optimizer(TrainConfig(), wider, torch.device("cpu")))
