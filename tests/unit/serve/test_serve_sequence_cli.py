"""Incremental text with stop strings and UTF-8 hold-back; CLI/config errors name the field."""

from __future__ import annotations

import pytest

from workloads.serve.__main__ import main
from workloads.serve.config import EngineConfig, ServerConfig
from workloads.serve.models import ByteTokenizer
from workloads.serve.sequence import SamplingParams, Sequence

TOK = ByteTokenizer()


def _feed(seq: Sequence, text: str) -> tuple[list[str], bool]:
    pieces = []
    for b in text.encode():
        seq.out_ids.append(b)
        piece, stopped = seq.update_text(TOK)
        pieces.append(piece)
        if stopped:
            return pieces, True
    return pieces, False


def test_stop_string_prefix_is_held_back_then_cut() -> None:
    seq = Sequence(0, [1], SamplingParams(max_tokens=50, stop=("END",)), None, wants_text=True)
    pieces, stopped = _feed(seq, "abc ENxyz END tail")
    assert stopped and seq.text == "abc ENxyz "
    assert "".join(pieces) == "abc ENxyz "
    assert "EN" not in pieces  # "EN" was not streamed alone while it could still become "END"


def test_incomplete_utf8_is_not_streamed_as_replacement_char() -> None:
    seq = Sequence(0, [1], SamplingParams(max_tokens=50), None, wants_text=True)
    pieces, _ = _feed(seq, "é€x")
    assert "".join(pieces) == "é€x" and all("\ufffd" not in p for p in pieces)
    assert TOK.decode(TOK.encode("ß ok")) == "ß ok"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-batch", "0"], "max_batch=0 is invalid: allowed 1..4096"),
        (["--port", "70000"], "port=70000 is invalid"),
        (["--device", "tpu"], "device='tpu' is invalid: allowed auto|cpu|cuda"),
        (["--api-key", "short"], "api_key='<hidden>' is invalid"),
        (["--model", "/no/such/model"], "model='/no/such/model' is neither a preset"),
    ],
)
def test_cli_rejects_bad_settings_with_one_line(argv, message, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_config_defaults_bind_loopback() -> None:
    cfg = ServerConfig()
    assert cfg.host == "127.0.0.1" and cfg.api_key is None and cfg.engine == EngineConfig()
