"""``s3://bucket/prefix`` checkpoint store (boto3), for S3 or an S3-compatible emulator.

Endpoint: ``AIDC_S3_ENDPOINT`` if set, else ``AWS_ENDPOINT_URL`` (boto3's own variable), else AWS.
Each rank DCP-writes into a private local staging directory and uploads what it wrote under
``prefix/step_NNNNNNNN/``; after a barrier rank 0 lists those objects and uploads ``COMPLETE.json``
last. S3 PUTs are atomic per object, so a checkpoint without its marker — or whose marker lists an
object that is missing or of another size — is never loaded. Loading downloads the checkpoint once
per node (local rank 0) into a temporary directory shared by that node's ranks.

Errors: the bucket is checked when the store is made; every S3 failure (no credentials, endpoint
unreachable, no such bucket, access denied) is a :class:`CheckpointError` naming the URL and the cause.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from workloads.train import faults
from workloads.train.checkpoint import (
    MARKER,
    STEP_DIR,
    load_local_checkpoint,
    load_train_state,
    marker_matches,
    marker_payload,
    step_name,
    write_local_checkpoint,
)
from workloads.train.coordination import CheckpointError, _rank, on_every_rank, on_rank0


def s3_endpoint() -> str | None:
    return os.environ.get("AIDC_S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL") or None


def parse_s3_url(url: str) -> tuple[str, str]:
    m = re.match(r"^s3://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(?:/(.*))?$", url)
    if not m:
        raise CheckpointError(f"--ckpt-dir {url} is not a valid s3://bucket[/prefix] URL")
    return m.group(1), (m.group(2) or "").strip("/")


def _cause(exc: Exception) -> str:
    """One line for a boto error: S3's error code and message, or botocore's own sentence."""
    if not isinstance(exc, ClientError):
        return str(exc)
    err = exc.response.get("Error", {})
    code, message = str(err.get("Code", "")), str(err.get("Message", ""))
    if code.isdigit():  # a HEAD response has no body: the HTTP status and its reason are all there is
        code = f"HTTP {code}"
    return f"{code}: {message}" if message else code


class S3Store:
    def __init__(self, url: str, *, kms_key_id: str = "") -> None:
        self.url = url
        self.bucket, self.prefix = parse_s3_url(url)
        self.kms_key_id = kms_key_id
        with self._errors("checking the bucket"):
            self.s3 = boto3.client("s3", endpoint_url=s3_endpoint())
            self._check_bucket()

    def _check_bucket(self) -> None:
        """Fail now, not at the first save, when the bucket is missing or out of reach."""
        try:
            self.s3.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            status = str(exc.response.get("Error", {}).get("Code"))
            if status == "404":
                raise CheckpointError(
                    f"--ckpt-dir {self.url}: bucket {self.bucket} does not exist (NoSuchBucket)"
                ) from None
            if status == "403":
                raise CheckpointError(
                    f"--ckpt-dir {self.url}: access to bucket {self.bucket} is denied (AccessDenied); "
                    "check the credentials and the bucket policy"
                ) from None
            raise

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except (BotoCoreError, ClientError) as exc:
            raise CheckpointError(f"--ckpt-dir {self.url}: {doing} failed: {_cause(exc)}") from None

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def _extra_args(self) -> dict[str, str]:
        if not self.kms_key_id:
            return {}
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_id}

    def _objects(self, step: int) -> dict[str, int]:
        """Relative name -> size of every object of one checkpoint, the marker excluded."""
        base = self._key(step_name(step)) + "/"
        out: dict[str, int] = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(base) :]
                if rel != MARKER:
                    out[rel] = obj["Size"]
        return out

    def _steps_present(self) -> list[int]:
        base = self._key() + "/" if self.prefix else ""
        steps = []
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base, Delimiter="/")
        for page in pages:
            for cp in page.get("CommonPrefixes", []):
                m = STEP_DIR.match(cp["Prefix"][len(base) :].rstrip("/"))
                if m:
                    steps.append(int(m.group(1)))
        return sorted(steps)

    def _is_valid(self, step: int) -> bool:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=self._key(step_name(step), MARKER))["Body"].read()
            marker = json.loads(body)
        except (self.s3.exceptions.NoSuchKey, ValueError):
            return False
        return marker_matches(marker, self._objects(step))

    def describe(self, step: int) -> str:
        return f"s3://{self.bucket}/{self._key(step_name(step))}"

    def marker(self, step: int) -> dict[str, Any]:
        with self._errors("reading a checkpoint marker"):
            body = self.s3.get_object(Bucket=self.bucket, Key=self._key(step_name(step), MARKER))["Body"].read()
        return json.loads(body)

    def valid_steps(self) -> list[int]:
        with self._errors("listing checkpoints"):
            return [s for s in self._steps_present() if self._is_valid(s)]

    def _upload(self, stage: Path, step: int, state: dict[str, Any], train_state: dict[str, Any]) -> None:
        write_local_checkpoint(stage, state, train_state)
        with self._errors("uploading a checkpoint"):
            for path in sorted(p for p in stage.rglob("*") if p.is_file()):
                key = self._key(step_name(step), str(path.relative_to(stage)))
                self.s3.upload_file(str(path), self.bucket, key, ExtraArgs=self._extra_args())

    def _put_marker(self, step: int, model: dict[str, Any] | None) -> None:
        with self._errors("completing a checkpoint"):
            body = json.dumps(
                marker_payload(step, self._objects(step), self._key(step_name(step)), model), sort_keys=True
            ).encode()
            self.s3.put_object(
                Bucket=self.bucket, Key=self._key(step_name(step), MARKER), Body=body, **self._extra_args()
            )

    def save(
        self, step: int, state: dict[str, Any], train_state: dict[str, Any], model: dict[str, Any] | None = None
    ) -> None:
        stage = Path(tempfile.mkdtemp(prefix=f"aidc-ckpt-stage-r{_rank()}-"))
        try:
            on_every_rank(lambda: self._upload(stage, step, state, train_state))
            faults.maybe_die("AIDC_FAULT_IN_SAVE_AT_STEP", step, _rank())
            on_rank0(lambda: self._put_marker(step, model))  # the others wait until it is in place
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def _download_dir(self, step: int) -> Path:
        run = os.environ.get("TORCHELASTIC_RUN_ID", "") + os.environ.get("TORCHELASTIC_RESTART_COUNT", "")
        tag = hashlib.sha256(f"{self.url}|{run}|{os.getppid()}".encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"aidc-ckpt-dl-{tag}-{step_name(step)}"

    def _download(self, step: int, target: Path) -> None:
        shutil.rmtree(target, ignore_errors=True)
        with self._errors("downloading a checkpoint"):
            for rel in self._objects(step):
                dest = target / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                self.s3.download_file(self.bucket, self._key(step_name(step), rel), str(dest))

    def load(self, step: int, state: dict[str, Any]) -> dict[str, Any]:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        target = self._download_dir(step)
        try:
            on_every_rank(lambda: self._download(step, target) if local_rank == 0 else None)
            load_local_checkpoint(target, state)
            return on_every_rank(lambda: load_train_state(target))  # no rank reads the files after this
        finally:
            if local_rank == 0:
                shutil.rmtree(target, ignore_errors=True)

    def _delete_step(self, step: int) -> None:
        keys = [self._key(step_name(step), rel) for rel in self._objects(step)]
        keys.append(self._key(step_name(step), MARKER))
        for i in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            chunk = [{"Key": k} for k in keys[i : i + 1000]]
            self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": chunk, "Quiet": True})

    def prune(self, keep_last: int) -> list[int]:
        valid = self.valid_steps()
        doomed = valid[:-keep_last] if keep_last else []
        newest = valid[-1] if valid else -1
        with self._errors("deleting old checkpoints"):
            for step in self._steps_present():
                if step in doomed or (step < newest and step not in valid):
                    self._delete_step(step)
        return doomed
