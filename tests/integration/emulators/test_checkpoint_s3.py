"""(c) Training checkpoints written to and resumed from ``s3://`` with SSE-KMS on the emulators.

The bucket is set up like the program's checkpoint bucket (default SSE-KMS with a CMK, bucket key,
versioning); the checkpoint code talks to it through ``AIDC_S3_ENDPOINT``.
"""

from __future__ import annotations

import pytest
import torch

from workloads.train.checkpoint import CheckpointManager

pytestmark = pytest.mark.emulator


@pytest.fixture
def kms_bucket(aws, unique):
    """(bucket, key ARN): a bucket whose default encryption is SSE-KMS with a fresh CMK."""
    s3, kms = aws("s3"), aws("kms")
    key = kms.create_key(Description=f"aidc test {unique}")["KeyMetadata"]
    key_arn = key["Arn"]
    bucket = f"aidc-ckpt-{unique}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn},
                    "BucketKeyEnabled": True,
                }
            ]
        },
    )
    yield bucket, key_arn
    _empty_and_delete(s3, bucket)
    kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)


def _empty_and_delete(s3, bucket: str) -> None:
    pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket)
    for page in pages:
        for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
            s3.delete_object(Bucket=bucket, Key=item["Key"], VersionId=item["VersionId"])
    s3.delete_bucket(Bucket=bucket)


def _model_and_optimizer(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    return model, optimizer


def _train_step(model, optimizer) -> None:
    x = torch.randn(4, 8)
    loss = model(x).pow(2).mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()


def _objects(s3, bucket: str, prefix: str) -> list[str]:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


@pytest.mark.parametrize("explicit_key", [False, True], ids=["bucket-default-key", "explicit-key"])
def test_checkpoint_roundtrip_sse_kms(aws, aws_endpoint, kms_bucket, monkeypatch, explicit_key):
    bucket, key_arn = kms_bucket
    monkeypatch.setenv("AIDC_S3_ENDPOINT", aws_endpoint)
    url = f"s3://{bucket}/runs/r1"

    model, optimizer = _model_and_optimizer(seed=1)
    for _ in range(3):
        _train_step(model, optimizer)
    manager = CheckpointManager(url, keep_last=2, kms_key_id=key_arn if explicit_key else "")
    manager.save(3, model, optimizer, {"step": 3, "tokens_seen": 96})

    s3 = aws("s3")
    keys = _objects(s3, bucket, "runs/r1/")
    assert keys and any(k.endswith("COMPLETE.json") for k in keys)
    for key in keys:  # every object, data and marker, is encrypted with the stack's CMK
        head = s3.head_object(Bucket=bucket, Key=key)
        assert head["ServerSideEncryption"] == "aws:kms", key
        assert head["SSEKMSKeyId"] == key_arn, key

    # Resume into a differently initialised model: weights, optimizer state and step come back.
    resumed, resumed_opt = _model_and_optimizer(seed=2)
    state = CheckpointManager(url, kms_key_id=key_arn if explicit_key else "").load_latest(resumed, resumed_opt)
    assert state is not None and state["step"] == 3 and state["tokens_seen"] == 96
    for (name, p), q in zip(model.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    # One more identical step on both: equal only if the AdamW moments were restored too.
    torch.manual_seed(123)
    _train_step(resumed, resumed_opt)
    torch.manual_seed(123)
    _train_step(model, optimizer)
    for (name, p), q in zip(model.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(p, q), f"{name} diverged after resume"


def test_newest_valid_checkpoint_wins_and_old_ones_are_pruned(aws, aws_endpoint, kms_bucket, monkeypatch):
    bucket, _ = kms_bucket
    monkeypatch.setenv("AIDC_S3_ENDPOINT", aws_endpoint)
    url = f"s3://{bucket}/runs/r2"
    model, optimizer = _model_and_optimizer(seed=1)
    manager = CheckpointManager(url, keep_last=2)
    for step in (1, 2, 3):
        _train_step(model, optimizer)
        manager.save(step, model, optimizer, {"step": step})
    steps = {k.split("/")[2] for k in _objects(aws("s3"), bucket, "runs/r2/")}
    assert len(steps) == 2 and all(s.startswith("step_") for s in steps)
    assert CheckpointManager(url).newest_step() == 3
