"""Trainer config: presets, validation messages, CLI mapping, MFU formula and peaks."""

from __future__ import annotations

import pytest
import torch

from workloads.train.__main__ import ArgumentsError, build_parser, config_from_args, main, parse_config
from workloads.train.config import PRESETS, ConfigError, ModelConfig, TrainConfig, preset
from workloads.train.mfu import PEAK_FLOPS, flops_per_token, mfu, peak_flops
from workloads.train.model import GPT, count_parameters


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [("124m", 123e6, 125e6), ("350m", 352e6, 357e6), ("1.3b", 1.30e9, 1.33e9)],
)
def test_preset_parameter_counts_match_their_names(name, low, high):
    with torch.device("meta"):  # shapes only: no memory for 1.3B weights
        total = count_parameters(GPT(PRESETS[name]))["total"]
    assert low <= total <= high, f"{name}: {total}"


def test_tiny_preset_fits_the_byte_tokenizer():
    assert PRESETS["tiny"].vocab_size == 256


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": 0}, "steps=0 is invalid"),
        ({"parallel": "tp"}, "parallel='tp' is invalid"),
        ({"dtype": "fp16"}, "dtype='fp16' is invalid"),
        ({"seq_len": 65}, "max_seq_len=64"),
        ({"ckpt_every": 5}, "needs --ckpt-dir"),
        ({"min_lr_ratio": 1.5}, "min_lr_ratio=1.5"),
        ({"compile_mode": "fast"}, "compile_mode='fast'"),
    ],
)
def test_bad_train_config_names_field_and_value(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kwargs)


def test_model_config_rejects_width_not_divisible_by_heads():
    with pytest.raises(ConfigError, match="d_model=100 is invalid: must be divisible by n_head=3"):
        ModelConfig(d_model=100, n_head=3)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError, match="preset='7b'.*tiny, 124m, 350m, 1.3b"):
        preset("7b")


def test_config_is_keyword_only():
    with pytest.raises(TypeError):
        TrainConfig(PRESETS["tiny"])  # type: ignore[misc]


def test_cli_flags_reach_the_config():
    ns = build_parser().parse_args(
        [
            "--preset",
            "tiny",
            "--steps",
            "7",
            "--parallel",
            "fsdp",
            "--grad-accum",
            "2",
            "--ckpt-dir",
            "/x",
            "--ckpt-every",
            "3",
            "--keep-last",
            "2",
            "--deterministic",
            "--seed",
            "9",
            "--loss-chunks",
            "4",
        ]
    )
    cfg = config_from_args(ns)
    assert (cfg.steps, cfg.parallel, cfg.grad_accum, cfg.ckpt_every, cfg.keep_last, cfg.seed) == (7, "fsdp", 2, 3, 2, 9)
    assert cfg.deterministic and cfg.loss_chunks == 4 and cfg.model == PRESETS["tiny"]


def test_cli_bad_value_prints_one_error_line(capsys):
    assert main(["--steps", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --steps -1 is invalid: must be a positive integer"]


def test_flops_per_token_follows_the_facts_formula():
    cfg = PRESETS["124m"]
    n = 85_000_000
    expected = 6 * n + 12 * 12 * 12 * 64 * 1024
    assert flops_per_token(cfg, n, 1024) == expected


@pytest.mark.parametrize(
    ("device", "peak"),
    [
        ("NVIDIA H100 80GB HBM3", 989e12),
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA H200", 989e12),
        ("NVIDIA H100 SXM5 80GB", 989e12),
        ("cpu", None),
        ("NVIDIA A10G", None),
    ],
)
def test_peak_flops_by_device_name(device, peak):
    assert peak_flops(device) == peak


def test_mfu_is_tokens_times_flops_over_peak():
    assert mfu(1000.0, 1e9, PEAK_FLOPS["H100 SXM"]) == pytest.approx(1e12 / 989e12)
    assert mfu(1000.0, 1e9, None) is None


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--batch-size", "0"], "error: --batch-size 0 is invalid: must be a positive integer"),
        (["--grad-accum", "0"], "error: --grad-accum 0 is invalid: must be a positive integer"),
        (
            ["--ckpt-every", "1"],
            "error: --ckpt-every 1 is invalid: needs --ckpt-dir (a directory or s3://bucket/prefix)",
        ),
        (["--warmup", "50", "--steps", "2"], "error: --warmup 50 is invalid: must be <= --steps (2)"),
        (["--preset", "huge"], "error: --preset huge is invalid: choose one of tiny, 124m, 350m, 1.3b"),
        (["--steps", "-1"], "error: --steps -1 is invalid: must be a positive integer"),
    ],
)
def test_bad_values_print_one_line_naming_the_flag(capsys, args, line):
    assert main(args) == 2
    assert capsys.readouterr().err.strip().splitlines() == [line]


def test_help_states_the_defaults():
    # The options section only, on one line (argparse wraps them).
    text = " ".join(build_parser().format_help().split("options:")[1].split())
    for flag, default in [
        ("--batch-size", "8"),
        ("--lr", "0.001"),
        ("--grad-accum", "1"),
        ("--steps", "100"),
        ("--keep-last", "3"),
        ("--preset", "tiny"),
    ]:
        i = text.index(f"{flag} {flag.lstrip('-').replace('-', '_').upper()}")
        assert f"(default: {default})" in text[i : i + 200], flag
    assert "(default: 10, or --steps if fewer)" in text


def test_default_warmup_is_capped_at_steps_and_an_explicit_one_is_checked():
    assert parse_config(["--steps", "3"]).warmup == 3
    assert parse_config(["--steps", "30"]).warmup == 10
    with pytest.raises(ConfigError, match=r"--warmup 4 is invalid: must be <= --steps \(3\)"):
        parse_config(["--steps", "3", "--warmup", "4"])


def test_parse_config_raises_instead_of_exiting():
    with pytest.raises(ArgumentsError, match="unrecognized arguments: --stepz"):
        parse_config(["--stepz", "3"])
    with pytest.raises(ArgumentsError, match="argument --steps: invalid int value: 'x'"):
        parse_config(["--steps", "x"])


@pytest.mark.parametrize("raw", ["abc", "0", "-5", "inf", "nan", ""])
def test_bad_timeout_in_the_environment_names_the_variable(monkeypatch, raw):
    from workloads.train.config import ConfigError, env_seconds

    monkeypatch.setenv("AIDC_CKPT_TIMEOUT_S", raw)
    with pytest.raises(ConfigError, match=r"^AIDC_CKPT_TIMEOUT_S=.* is invalid: a number of seconds > 0$"):
        env_seconds("AIDC_CKPT_TIMEOUT_S", 1800.0)


def test_timeout_from_the_environment_or_its_default(monkeypatch):
    from workloads.train.config import env_seconds

    monkeypatch.delenv("AIDC_DIST_TIMEOUT_S", raising=False)
    assert env_seconds("AIDC_DIST_TIMEOUT_S", 60.0) == 60.0
    monkeypatch.setenv("AIDC_DIST_TIMEOUT_S", "12.5")
    assert env_seconds("AIDC_DIST_TIMEOUT_S", 60.0) == 12.5
