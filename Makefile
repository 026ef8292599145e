# Developer and CI entry points for the node configuration (Ansible) and its disposable test hosts.
# Host targets need root and the packages of .ci/hosts-prereqs.sh.
VENV        ?= .venv
PY          := $(VENV)/bin/python
BIN         := $(abspath $(VENV)/bin)
TESTBED_DIR ?= /tmp/aidc-testbed
HOSTS       ?= 2
# veth: each host on its own link (site.yml tests); bridge: hosts reach each other (training).
NETWORK     ?= veth
STANDIN_DIR := $(TESTBED_DIR)-standin-repo
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(abspath ansible/ansible.cfg)

.PHONY: test plan hosts-prereqs standin-repo testbed-up testbed-down converge check-hosts test-hosts \
  test-workload-hosts lint-ansible

test:                       ## the whole suite (root): apt + pip installs, emulators, test hosts, pytest, stop all
	bash .ci/test.sh

plan:                       ## offline plan of a stack (STACK=dev): what pulumi up would create, and its cost
	$(PY) -m infra.plan --stack $(or $(STACK),dev)

hosts-prereqs:              ## install debootstrap, systemd-container, apt-cacher-ng, ... (root)
	.ci/hosts-prereqs.sh

standin-repo:               ## build the stand-in NVIDIA apt repository (pinned versions)
	$(PY) -m tests.integration.standin_repo $(STANDIN_DIR)

testbed-up: standin-repo    ## boot $(HOSTS) disposable Debian 12 hosts; inventory in $(TESTBED_DIR)
	$(PY) -m tests.testbed up --hosts $(HOSTS) --workdir $(TESTBED_DIR) --network $(NETWORK) \
	  --bind-ro=$(STANDIN_DIR):/srv/aidc-standin-repo

testbed-down:               ## stop the hosts and remove overlays, veths, proxy
	$(PY) -m tests.testbed down --workdir $(TESTBED_DIR)

converge:                   ## run site.yml against the test hosts
	mkdir -p $(TESTBED_DIR)/cp
	cd ansible && ANSIBLE_SSH_CONTROL_PATH_DIR=$(TESTBED_DIR)/cp ansible-playbook \
	  -i $(TESTBED_DIR)/inventory.yml site.yml -e @../tests/testbed/container_vars.yml \
	  -e @$(STANDIN_DIR)/standin-vars.yml

check-hosts:                ## testinfra node checks against the test hosts
	ANSIBLE_SSH_CONTROL_PATH_DIR=$(TESTBED_DIR)/cp $(PY) -m pytest tests/hosts \
	  --hosts=ansible://all --ansible-inventory=$(TESTBED_DIR)/inventory.yml \
	  --aidc-extra-vars=tests/testbed/container_vars.yml -rs

test-hosts:                 ## the integration test: 2 hosts, converge twice, checks, interrupted run
	AIDC_REQUIRE_HOSTS=1 $(PY) -m pytest -m hosts tests/integration/test_converge.py -v

test-workload-hosts:        ## 2 hosts train one job via train.yml; serve.yml deploys the server to a host
	AIDC_REQUIRE_HOSTS=1 $(PY) -m pytest -m hosts tests/integration/test_train_two_hosts.py \
	  tests/integration/test_serve_deploy.py -v

lint-ansible:               ## yamllint + ansible-lint (production profile)
	cd ansible && yamllint -s . && ansible-lint
