"""Job spec validation and torchrun command lines per node."""

from __future__ import annotations

import shlex

import pytest

from workloads.launch.__main__ import main as launch_main
from workloads.launch.nccl import load_nccl_env, nccl_env_source
from workloads.launch.spec import JobSpec, LaunchError
from workloads.launch.torchrun import job_env, node_commands, torchrun_args

P5_NODES = ("10.0.1.10", "10.0.1.11")


def p5_spec(**kw) -> JobSpec:
    base = {
        "name": "gpt-350m",
        "pool": "gpu",
        "instance_type": "p5.48xlarge",
        "node_ips": P5_NODES,
        "args": ("--preset", "350m", "--steps", "1000"),
    }
    return JobSpec(**{**base, **kw})


def test_two_node_p5_command_line(tmp_path):
    missing = tmp_path / "none.yml"
    cmds = node_commands(p5_spec(), nccl_defaults=missing)
    assert set(cmds) == set(P5_NODES)
    assert len(set(cmds.values())) == 1, "every node runs the same command; c10d assigns ranks"
    argv = shlex.split(cmds["10.0.1.11"])
    assert argv[:8] == [
        "torchrun",
        "--nnodes=2",
        "--nproc-per-node=8",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=10.0.1.10:29500",
        "--rdzv-id=gpt-350m",
        "--max-restarts=3",
        "-m",
    ]
    assert argv[8:] == ["workloads.train", "--preset", "350m", "--steps", "1000"]


def test_nproc_comes_from_the_catalog_and_can_be_overridden_for_cpu():
    assert p5_spec(instance_type="g6e.12xlarge").procs_per_node == 4
    cpu = p5_spec(instance_type="g5.xlarge", nproc_per_node=2, cpu=True)
    assert "--nproc-per-node=2" in torchrun_args(cpu) and not cpu.uses_gpus
    assert p5_spec().world_size == 16
    fewer = p5_spec(nproc_per_node=4)
    assert fewer.uses_gpus and "--nproc-per-node=4" in torchrun_args(fewer)


def test_nccl_env_is_read_from_the_role_defaults_and_job_env_wins(tmp_path):
    defaults = tmp_path / "main.yml"
    defaults.write_text(
        "nccl_env:\n  NCCL_DEBUG: WARN\n  FI_EFA_USE_HUGE_PAGE: 0\n  NCCL_NVLS_ENABLE: true\nother: 1\n"
    )
    assert load_nccl_env(defaults) == {"NCCL_DEBUG": "WARN", "FI_EFA_USE_HUGE_PAGE": "0", "NCCL_NVLS_ENABLE": "true"}
    env = job_env(p5_spec(env={"NCCL_DEBUG": "INFO"}), nccl_defaults=defaults)
    assert env["NCCL_DEBUG"] == "INFO" and env["FI_EFA_USE_HUGE_PAGE"] == "0"
    line = node_commands(p5_spec(), nccl_defaults=defaults)["10.0.1.10"]
    assert line.startswith("env FI_EFA_USE_HUGE_PAGE=0 NCCL_DEBUG=WARN NCCL_NVLS_ENABLE=true torchrun ")


def test_missing_nccl_role_gives_empty_env_and_says_so(tmp_path):
    missing = tmp_path / "main.yml"
    assert load_nccl_env(missing) == {}
    assert nccl_env_source(missing).startswith("none:")


def test_template_values_in_nccl_env_are_refused(tmp_path):
    defaults = tmp_path / "main.yml"
    defaults.write_text("nccl_env:\n  NCCL_SOCKET_IFNAME: '{{ iface }}'\n")
    with pytest.raises(ValueError, match="NCCL_SOCKET_IFNAME"):
        load_nccl_env(defaults)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"name": "Bad_Name"}, "name='Bad_Name' is invalid"),
        ({"instance_type": "p5.48xlrge"}, "did you mean 'p5.48xlarge'"),
        ({"node_ips": ("10.0.0.1", "node-b")}, "'node-b' is not an IP address"),
        ({"node_ips": ("10.0.0.1", "10.0.0.2", "10.0.0.1")}, "10.0.0.1 is listed twice"),
        ({"node_ips": ("fd00::1", "fd00:0::1")}, "fd00:0::1 is listed twice"),
        ({"node_ips": (), "nnodes": 0}, "give the node IPs or a node count"),
        ({"nproc_per_node": 16}, "p5.48xlarge has 8 GPUs: at most 8 workers per node"),
        ({"nproc_per_node": 0}, "nproc_per_node=0 is invalid: must be >= 1"),
        ({"nproc_per_node": -2}, "nproc_per_node=-2 is invalid: must be >= 1"),
        ({"cpu": True}, "CPU workers .* give the number of workers per node"),
        ({"rdzv_port": 70000}, "rdzv_port=70000"),
        ({"nnodes": 3}, "nnodes=3 is invalid"),
    ],
)
def test_bad_spec_names_the_field(kw, message):
    with pytest.raises(LaunchError, match=message):
        p5_spec(**kw)


def _run(capsys, *args: str, instance_type: str = "p5.48xlarge") -> tuple[int, str, str]:
    """The launcher CLI for job ``j`` on pool ``gpu``: (exit code, stdout, stderr)."""
    rc = launch_main(["--name", "j", "--pool", "gpu", "--instance-type", instance_type, *args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_cli_prints_commands_and_clear_errors(capsys):
    rc, out, _ = _run(capsys, "--nodes", ",".join(P5_NODES), "--", "--preset", "124m")
    assert rc == 0
    assert out.count("--rdzv-endpoint=10.0.1.10:29500") == 2 and "--preset 124m" in out
    rc, _, err = _run(capsys, "--nodes", "10.0.0.1", instance_type="p9.huge")
    assert rc == 2 and "p9.huge" in err


def _launch(capsys, *args: str) -> tuple[int, list[str]]:
    rc, _, err = _run(capsys, *args)
    return rc, err.strip().splitlines()


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--nodes", "10.0.0.1,10.0.0.1"], "error: --nodes 10.0.0.1,10.0.0.1 is invalid: 10.0.0.1 is listed twice"),
        (
            ["--nodes", "10.0.0.1", "--nproc-per-node", "16"],
            "error: --nproc-per-node 16 is invalid: p5.48xlarge has 8 GPUs",
        ),
        (["--nodes", "10.0.0.1", "--nproc-per-node", "0"], "error: --nproc-per-node 0 is invalid: must be >= 1"),
        (["--nodes", "10.0.0.1", "--cpu"], "error: --nproc-per-node is missing: CPU workers (--cpu)"),
        (
            ["--nodes", "10.0.0.1", "--", "--preset", "huge"],
            "error: training arguments after --: --preset huge is invalid",
        ),
        (["--nodes", "10.0.0.1", "--", "--steps", "0"], "error: training arguments after --: --steps 0 is invalid"),
        (["--nodes", "10.0.0.1", "--", "--stepz", "3"], "error: training arguments after --: unrecognized arguments"),
        (
            ["--nodes", "10.0.0.1", "--", "--warmup", "9", "--steps", "3"],
            "error: training arguments after --: --warmup 9",
        ),
        (["--nnodes", "2", "--format", "torchrun"], "error: --nodes '' is invalid: the torchrun and ansible formats"),
    ],
)
def test_cli_refuses_jobs_that_cannot_run(capsys, args, line):
    rc, err = _launch(capsys, *args)
    assert rc == 2 and len(err) == 1 and err[0].startswith(line), err


def test_cli_accepts_fewer_workers_than_gpus_and_cpu_workers_beyond_them(capsys):
    rc, out, _ = _run(capsys, "--nodes", "10.0.0.1", "--nproc-per-node", "4", "--", "--preset", "tiny", "--steps", "3")
    assert rc == 0 and "--nproc-per-node=4" in out
    rc, out, _ = _run(capsys, "--nodes", "10.0.0.1", "--cpu", "--nproc-per-node", "4", instance_type="g5.xlarge")
    assert rc == 0 and "--nproc-per-node=4" in out
    assert (
        launch_main(
            [
                "--name",
                "j",
                "--pool",
                "gpu",
                "--instance-type",
                "g5.xlarge",
                "--nodes",
                "10.0.0.1",
                "--cpu",
                "--nproc-per-node",
                "4",
            ]
        )
        == 0
    )
    assert "--nproc-per-node=4" in capsys.readouterr().out


def test_only_the_leading_separator_is_dropped_from_the_training_arguments(capsys):
    """A later "--" is passed on, so the trainer's own check refuses it instead of it vanishing."""
    rc, _, err = _run(capsys, "--nodes", "10.0.0.1", "--", "--preset", "tiny", "--", "--steps", "3")
    assert rc == 2 and "unrecognized arguments: -- --steps 3" in err, err
