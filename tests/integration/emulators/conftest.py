"""Fixtures for the AWS-emulator tests: every test runs against LocalStack and moto server.

The endpoints come from ``AIDC_LOCALSTACK_ENDPOINT`` / ``AIDC_MOTO_ENDPOINT``, written by
``.ci/emulators.sh start`` to ``.ci/state/emulators.env``. A missing variable skips that emulator's
tests with instructions, except under CI (``CI`` set), where it fails: a CI run without its
emulators must not look green.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import boto3
import pytest

REGION = "us-east-1"
ENV_VARS = {"localstack": "AIDC_LOCALSTACK_ENDPOINT", "moto": "AIDC_MOTO_ENDPOINT"}
START_HINT = (
    "start the emulators with `.ci/emulators.sh start`, then `set -a; . .ci/state/emulators.env; set +a` "
    "(or run `.ci/run`)"
)
#: Services LocalStack's community edition does not offer (they are licensed features there).
LOCALSTACK_LACKS = frozenset({"fsx", "efs", "eks", "cloudtrail"})


@dataclass(frozen=True)
class Emulator:
    """One running emulator: its name (``localstack`` / ``moto``) and endpoint URL."""

    name: str
    url: str

    def client(self, service: str):
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )


@pytest.fixture(autouse=True)
def _dummy_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials and region; no shared config files, no instance metadata lookups."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)


def _endpoint(name: str) -> str:
    var = ENV_VARS[name]
    url = os.environ.get(var, "").strip()
    if url:
        return url
    message = f"{var} is not set: {START_HINT}"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(params=sorted(ENV_VARS), scope="session")
def emulator(request: pytest.FixtureRequest) -> Emulator:
    """Each emulator in turn; tests marked ``needs_services("fsx", ...)`` skip LocalStack."""
    return Emulator(request.param, _endpoint(request.param))


@pytest.fixture(autouse=True)
def _services_available(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("needs_services")
    if marker is None or "emulator" not in request.fixturenames:
        return
    emulator = request.getfixturevalue("emulator")
    lacking = sorted(LOCALSTACK_LACKS.intersection(marker.args))
    if emulator.name == "localstack" and lacking:
        pytest.skip(
            f"LocalStack community edition has no {', '.join(lacking)} (licensed feature); "
            "this test runs against moto server only"
        )


@pytest.fixture
def aws_endpoint(emulator: Emulator) -> str:
    """The endpoint URL of the emulator under test."""
    return emulator.url


@pytest.fixture
def aws(emulator: Emulator) -> Callable[[str], object]:
    """``aws("s3")`` -> a boto3 client for the emulator under test (dummy credentials, us-east-1)."""
    return emulator.client


class KnownImage:
    """An AMI id each emulator knows, looked up once (DescribeImages takes seconds there)."""

    def __init__(self) -> None:
        self._ids: dict[str, str] = {}

    def __call__(self, emulator: Emulator) -> str:
        if emulator.name not in self._ids:
            images = emulator.client("ec2").describe_images(Owners=["amazon"])["Images"]
            self._ids[emulator.name] = images[0]["ImageId"]
        return self._ids[emulator.name]


@pytest.fixture(scope="session")
def known_image() -> KnownImage:
    return KnownImage()


@pytest.fixture
def unique() -> Iterator[str]:
    """A short name unique to this test run (both emulators keep state across tests and reruns)."""
    yield f"t{uuid.uuid4().hex[:10]}"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "needs_services(*names): AWS services the test needs; LocalStack skips fsx/efs/eks/cloudtrail"
    )
