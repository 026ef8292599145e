"""Node pools under Pulumi mocks: exact counts, the EFA NIC layout, placement, IMDSv2, CMK roots,
capacity blocks, tags — for every example stack, evaluated through the real program."""

import copy

import pytest

from infra import catalog
from infra.config import DEFAULT_AMI_PARAMETER, ConfigError
from infra.offline import MOCK_AMI_PREFIX, load_stack_yaml, run_stack
from infra.tags import TAG_CLUSTER, TAG_POOL, TAG_ROLE, TAG_STACK

LT = "aws:ec2/launchTemplate:LaunchTemplate"
INSTANCE = "aws:ec2/instance:Instance"
PG = "aws:ec2/placementGroup:PlacementGroup"
ASG = "aws:autoscaling/group:Group"
KEY = "aws:kms/key:Key"


@pytest.fixture(scope="module")
def runs():
    return {stack: run_stack(stack) for stack in ("dev", "p5", "inference")}


def cmk_arn(run):
    (key,) = run.of_type(KEY)
    return key.outputs["arn"]


def nic_layout(lt):
    return [
        (int(n["networkCardIndex"]), int(n["deviceIndex"]), n.get("interfaceType"))
        for n in lt.inputs["networkInterfaces"]
    ]


def test_p5_two_instances_32_efa_each_no_placement_group_on_the_capacity_block(runs):
    run = runs["p5"]
    instances = run.of_type(INSTANCE)
    assert sorted(i.inputs["tags"]["Name"] for i in instances) == ["p5-train-0", "p5-train-1"]
    (lt,) = run.of_type(LT)
    layout = nic_layout(lt)
    assert layout == [(0, 0, "interface"), (0, 1, "efa-only")] + [(c, 0, "efa-only") for c in range(1, 32)]
    assert sum(kind == "efa-only" for *_, kind in layout) == 32
    for inst in instances:  # every instance launches from that template
        assert inst.inputs["launchTemplate"] == {"id": lt.id, "version": "$Latest"}
    # The block is delivered co-located: a group would only add a constraint outside it.
    assert run.of_type(PG) == []
    assert placement_group_of(lt) is None
    assert run.outputs["nodePools"]["train"]["placementGroup"] is None
    # All NICs in the private subnet of the pool's one AZ, with the node security group.
    subnets = {n["subnetId"] for n in lt.inputs["networkInterfaces"]}
    assert subnets == {run.outputs["privateSubnetIds"]["us-east-1a"]}
    assert {sg for n in lt.inputs["networkInterfaces"] for sg in n["securityGroups"]} == {
        run.outputs["nodeSecurityGroupId"]
    }
    assert lt.inputs["networkInterfaces"][0]["associatePublicIpAddress"] == "false"


def placement_group_of(lt):
    return (lt.inputs.get("placement") or {}).get("groupName")


def _pool_run(**pool_settings):
    """The p5 program with its pool changed (e.g. another capacity type)."""
    config = _p5_config()
    config["aidc:cluster"]["nodePools"][0].update(pool_settings)
    return run_stack(config=config, stack_name="p5")


ODCR = {"type": "odcr", "reservationId": "cr-0123456789abcdef0", "reservationInstanceCount": 2,
        "reservationAvailabilityZone": "us-east-1a"}  # fmt: skip


def test_on_demand_efa_pool_gets_exactly_one_new_cluster_group_in_its_template():
    run = _pool_run(capacity={"type": "on-demand"})
    (pg,) = run.of_type(PG)
    (lt,) = run.of_type(LT)
    assert pg.inputs["strategy"] == "cluster"
    assert placement_group_of(lt) == pg.outputs["name"]
    assert lt.inputs["placement"]["availabilityZone"] == "us-east-1a"
    assert run.outputs["nodePools"]["train"]["placementGroup"] == pg.outputs["name"]


def test_odcr_in_a_placement_group_launches_into_that_existing_group():
    run = _pool_run(capacity={**ODCR, "reservationPlacementGroup": "odcr-p5-pg"})
    assert run.of_type(PG) == []  # the reservation's group exists; creating one could never match it
    (lt,) = run.of_type(LT)
    assert placement_group_of(lt) == "odcr-p5-pg"
    assert lt.inputs["placement"]["availabilityZone"] == "us-east-1a"
    target = lt.inputs["capacityReservationSpecification"]["capacityReservationTarget"]
    assert target == {"capacityReservationId": "cr-0123456789abcdef0"}
    assert "instanceMarketOptions" not in lt.inputs
    assert run.outputs["nodePools"]["train"]["placementGroup"] == "odcr-p5-pg"


def test_odcr_outside_any_group_is_placed_as_on_demand():
    """An ODCR made outside any group serves matching launches into a cluster group too (AWS), so an
    EFA pool keeps co-location; placementGroup: false trades it for capacity."""
    run = _pool_run(capacity=ODCR)
    (lt,) = run.of_type(LT)
    (pg,) = run.of_type(PG)
    assert pg.inputs["strategy"] == "cluster" and placement_group_of(lt) == pg.outputs["name"]
    run = _pool_run(capacity=ODCR, placementGroup=False)
    (lt,) = run.of_type(LT)
    assert run.of_type(PG) == [] and placement_group_of(lt) is None


def test_p5_capacity_block_fields(runs):
    (lt,) = runs["p5"].of_type(LT)
    assert lt.inputs["instanceMarketOptions"] == {"marketType": "capacity-block"}
    target = lt.inputs["capacityReservationSpecification"]["capacityReservationTarget"]
    assert target == {"capacityReservationId": "cr-0123456789abcdef0"}


@pytest.mark.parametrize("stack", ["dev", "p5", "inference"])
def test_imdsv2_and_cmk_encrypted_gp3_root(runs, stack):
    run = runs[stack]
    for lt in run.of_type(LT):
        md = lt.inputs["metadataOptions"]
        assert md["httpTokens"] == "required" and md["httpEndpoint"] == "enabled"
        (root,) = lt.inputs["blockDeviceMappings"]
        ebs = root["ebs"]
        assert root["deviceName"] == "/dev/sda1"
        assert (ebs["volumeType"], ebs["encrypted"], ebs["kmsKeyId"]) == ("gp3", "true", cmk_arn(run))
    for inst in run.of_type(INSTANCE):
        assert inst.inputs["metadataOptions"]["httpTokens"] == "required"
        rbd = inst.inputs["rootBlockDevice"]
        assert rbd["encrypted"] is True and rbd["kmsKeyId"] == cmk_arn(run) and rbd["volumeType"] == "gp3"


def test_fixed_nodes_ignore_launch_template_changes(runs):
    """A new DLAMI (the default AMI is read from .../latest/ami-id on every `pulumi up`) gives the
    template a new version; the provider replaces an instance whose "$Latest" version moved, so
    without ignore_changes one AMI release would replace every node, Capacity Block ones included."""
    for stack in ("dev", "p5"):
        instances = runs[stack].of_type(INSTANCE)
        assert instances
        for inst in instances:
            assert inst.ignore_changes == ["launchTemplate"], inst.name
    # Nothing else is frozen: the template follows the AMI, the ASG launches from its newest version.
    run = runs["inference"]
    assert [r.ignore_changes for r in run.of_type(LT) + run.of_type(ASG)] == [[], []]
    assert runs["p5"].of_type(LT)[0].ignore_changes == []


def test_hop_limit_follows_config(runs):
    assert runs["dev"].of_type(LT)[0].inputs["metadataOptions"]["httpPutResponseHopLimit"] == 1
    assert runs["inference"].of_type(LT)[0].inputs["metadataOptions"]["httpPutResponseHopLimit"] == 2


def test_dev_single_node_no_efa_no_placement_group(runs):
    run = runs["dev"]
    assert len(run.of_type(INSTANCE)) == 1
    assert run.of_type(PG) == []
    (lt,) = run.of_type(LT)
    assert nic_layout(lt) == [(0, 0, "interface")]
    assert "instanceMarketOptions" not in lt.inputs and "capacityReservationSpecification" not in lt.inputs
    # AMI: the DLAMI SSM parameter, resolved at deploy time.
    assert lt.inputs["imageId"].startswith(MOCK_AMI_PREFIX)
    assert "aws:ssm/getParameter:getParameter" in run.invokes


def test_inference_pool_is_an_asg_across_azs(runs):
    run = runs["inference"]
    assert run.of_type(INSTANCE) == [] and run.of_type(PG) == []
    (asg,) = run.of_type(ASG)
    assert (asg.inputs["minSize"], asg.inputs["maxSize"], asg.inputs["desiredCapacity"]) == (1, 6, 2)
    private = run.outputs["privateSubnetIds"]
    assert sorted(asg.inputs["vpcZoneIdentifiers"]) == sorted([private["us-east-1a"], private["us-east-1b"]])
    tags = {t["key"]: (t["value"], t["propagateAtLaunch"]) for t in asg.inputs["tags"]}
    assert tags[TAG_ROLE] == ("infer", True) and tags[TAG_POOL] == ("serve", True)
    (lt,) = run.of_type(LT)
    assert all("subnetId" not in n for n in lt.inputs["networkInterfaces"])  # the ASG picks subnets


@pytest.mark.parametrize("stack", ["dev", "p5", "inference"])
def test_pool_tags_on_template_instances_volumes_nics(runs, stack):
    run = runs[stack]
    for lt in run.of_type(LT):
        kinds = {spec["resourceType"]: spec["tags"] for spec in lt.inputs["tagSpecifications"]}
        assert set(kinds) == {"instance", "volume", "network-interface"}
        for tags in [*kinds.values(), lt.inputs["tags"]]:
            assert tags[TAG_STACK] == stack and tags[TAG_CLUSTER] and tags[TAG_POOL] and tags[TAG_ROLE]
    for inst in run.of_type(INSTANCE):
        assert inst.inputs["tags"][TAG_POOL] and inst.inputs["volumeTags"][TAG_ROLE]


def test_node_pools_output_for_launchers(runs):
    pools = runs["p5"].outputs["nodePools"]
    assert pools["train"]["gpusPerNode"] == 8 and pools["train"]["efaPerNode"] == 32
    assert pools["train"]["names"] == ["p5-train-0", "p5-train-1"]
    assert len(pools["train"]["privateIps"]) == 2


def _p5_config():
    return copy.deepcopy(load_stack_yaml("p5"))


def test_ami_id_override_skips_ssm():
    config = _p5_config()
    config["aidc:cluster"]["nodePools"][0]["ami"] = {"id": "ami-0abcdef0123456789"}
    run = run_stack(config=config, stack_name="p5")
    assert run.of_type(LT)[0].inputs["imageId"] == "ami-0abcdef0123456789"
    assert "aws:ssm/getParameter:getParameter" not in run.invokes


def test_root_volume_maps_the_amis_own_root_device():
    """An AL2023-style AMI (/dev/xvda): the template's encrypted root must name that device, or it
    adds a second volume and leaves the real root at the AMI's size and encryption."""
    config = _p5_config()
    config["aidc:cluster"]["nodePools"][0]["ami"] = {"id": "ami-0abcdef0123456789"}
    run = run_stack(config=config, stack_name="p5", root_devices={"ami-0abcdef0123456789": "/dev/xvda"})
    (root,) = run.of_type(LT)[0].inputs["blockDeviceMappings"]
    assert root["deviceName"] == "/dev/xvda" and root["ebs"]["encrypted"] == "true"
    assert "aws:ec2/getAmi:getAmi" in run.invokes


def test_default_ami_parameter_is_the_dlami():
    assert DEFAULT_AMI_PARAMETER == (
        "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
    )


def test_type_not_offered_in_the_pool_az_fails_before_any_resource():
    with pytest.raises(ConfigError) as info:
        run_stack("p5", unavailable={"us-east-1a": ["p5.48xlarge"]})
    assert str(info.value) == (
        "aidc:cluster.nodePools[0].instanceType: 'p5.48xlarge' is not offered in 'us-east-1a' "
        "(nor in the other cluster AZs); choose another AZ or instance type"
    )


def test_bad_config_in_program_is_a_config_error_without_resources():
    config = _p5_config()
    config["aidc:cluster"]["nodePools"][0]["capacity"]["type"] = "spot"
    config["aidc:cluster"]["nodePools"][0]["capacity"].pop("reservationId")
    with pytest.raises(ConfigError, match=r"^aidc:cluster\.nodePools\[0\]\.capacity"):
        run_stack(config=config, stack_name="p5")


def test_unknown_aidc_key_in_stack_file_is_rejected():
    config = _p5_config()
    config["aidc:clusterr"] = {}
    with pytest.raises(ConfigError, match=r"^aidc:clusterr: is not a known setting; did you mean 'aidc:cluster'\?"):
        run_stack(config=config, stack_name="p5")


@pytest.mark.parametrize("instance_type", ["p4d.24xlarge", "p5en.48xlarge", "g6e.48xlarge", "g5.48xlarge"])
def test_every_efa_type_gets_all_its_efa_interfaces(instance_type):
    config = _p5_config()
    p = config["aidc:cluster"]["nodePools"][0]
    p.update(instanceType=instance_type, capacity={"type": "on-demand"}, efa=True)
    run = run_stack(config=config, stack_name="p5")
    (lt,) = run.of_type(LT)
    efa = [n for n in lt.inputs["networkInterfaces"] if n["interfaceType"] == "efa-only"]
    assert len(efa) == catalog.efa_interfaces_for(instance_type)


def test_an_invoke_the_mocks_do_not_know_is_an_error():
    from infra.offline import UnmockedInvoke, _Mocks

    class Call:
        token, args, provider = "aws:ec2/getVpc:getVpc", {}, ""

    with pytest.raises(UnmockedInvoke, match="do not answer invoke 'aws:ec2/getVpc:getVpc'"):
        _Mocks("us-east-1", ["us-east-1a"], {}).call(Call())
