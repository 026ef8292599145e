"""Tokenizers that add BOS, and start-up errors: bad model/tokenizer paths, Triton on CPU."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from workloads.serve.__main__ import main
from workloads.serve.config import EngineConfig, ServerConfig
from workloads.serve.engine import Engine
from workloads.serve.server import DrainingServer, create_app

BOS = 1


def _save_bos_tokenizer(path: Path, chat_template: str | None = None) -> Path:
    """A character-level tokenizer that prepends <s>, as Llama's and Mistral's do."""
    vocab = {"<unk>": 0, "<s>": BOS, "</s>": 2} | {c: 3 + i for i, c in enumerate("abcdefghijklmnopqrstuvwxyz <>|\n")}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", BOS)])
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    if chat_template is not None:
        fast.chat_template = chat_template
    fast.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def bos_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, list[list[int]]]]:
    """A server whose tokenizer adds BOS, and the prompt ids its engine received."""
    tok_dir = _save_bos_tokenizer(tmp_path_factory.mktemp("tok"))
    engine = Engine(EngineConfig(model="tiny-random-llama", tokenizer=str(tok_dir), max_batch=2, max_model_len=64))
    seen: list[list[int]] = []
    submit = engine.submit

    def recording_submit(ids: list[int], *args, **kwargs):
        seen.append(list(ids))
        return submit(ids, *args, **kwargs)

    engine.submit = recording_submit
    with TestClient(create_app(ServerConfig(engine=engine.config), engine)) as client:
        yield client, seen


def test_completion_prompt_gets_bos_like_tokenizer_call_and_vllm(bos_client, tmp_path) -> None:
    client, seen = bos_client
    hf = AutoTokenizer.from_pretrained(_save_bos_tokenizer(tmp_path), local_files_only=True)
    resp = client.post("/v1/completions", json={"model": "tiny-random-llama", "prompt": "hi there", "max_tokens": 2})
    assert resp.status_code == 200, resp.text
    assert seen[-1] == hf("hi there").input_ids and seen[-1][0] == BOS
    assert resp.json()["usage"]["prompt_tokens"] == len("hi there") + 1


def test_token_id_prompts_are_taken_as_given(bos_client) -> None:
    client, seen = bos_client
    resp = client.post("/v1/completions", json={"model": "tiny-random-llama", "prompt": [5, 6, 7], "max_tokens": 2})
    assert resp.status_code == 200 and seen[-1] == [5, 6, 7]


def test_chat_template_text_is_not_given_a_second_bos(tmp_path) -> None:
    template = "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    tok_dir = _save_bos_tokenizer(tmp_path, chat_template=template)
    engine = Engine(EngineConfig(model="tiny-random-llama", tokenizer=str(tok_dir), max_batch=1, max_model_len=64))
    ids = engine.tokenizer.chat_ids([{"role": "user", "content": "hi"}])
    assert ids[0] == BOS and ids.count(BOS) == 1 and len(ids) == 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tokenizer", "/nonexistent"], "tokenizer='/nonexistent' is invalid: not an existing local directory"),
        (["--tokenizer", "{empty}"], "tokenizer='{empty}' could not be loaded: "),
        (["--model", "{empty}"], "model='{empty}' could not be loaded: "),
        (["--model", "{no_weights}"], "model='{no_weights}' could not be loaded: "),
        (["--model", "{bad_json}"], "model='{bad_json}' could not be loaded: "),
    ],
)
def test_unloadable_paths_are_one_line_errors_naming_the_option(argv, message, tmp_path, capsys) -> None:
    import transformers

    dirs = {name: tmp_path / name for name in ("empty", "no_weights", "bad_json")}
    for d in dirs.values():
        d.mkdir()
    transformers.LlamaConfig(hidden_size=32, num_attention_heads=2, num_hidden_layers=1).save_pretrained(
        dirs["no_weights"]
    )
    (dirs["bad_json"] / "config.json").write_text("{not json")
    paths = {name: str(d) for name, d in dirs.items()}
    argv = [a.format(**paths) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message.format(**paths) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_triton_attention_on_cpu_is_refused_at_start_not_per_request(monkeypatch, capsys) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # the tests' interpreter would run the kernels on CPU
    monkeypatch.setattr(DrainingServer, "run", lambda self: None)  # never listen, whatever happens
    with pytest.raises(ValueError, match=r"decode_attention='triton' is invalid on device 'cpu'"):
        Engine(EngineConfig(model="tiny-random", device="cpu", decode_attention="triton"))
    assert main(["--device", "cpu", "--decode-attention", "triton"]) == 2
    assert "decode_attention='triton' is invalid on device 'cpu'" in capsys.readouterr().err
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert Engine(EngineConfig(model="tiny-random", device="cpu", decode_attention="triton")).runner.triton_attention
