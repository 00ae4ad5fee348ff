# Creates the Swarm service of bench/deploy/peers, run on the swarm manager
# as `python3 - IMAGE PORT PUBLISH_MODE ORDER` (this file on stdin). The
# Docker SDK (Debian's python3-docker on the lab hosts) because the hello
# image is FROM scratch: no shell, so `docker service create --health-cmd`
# (always CMD-SHELL) cannot run there; the SDK takes an exec-form check.
import sys

import docker
from docker.types import EndpointSpec, Healthcheck, ServiceMode, UpdateConfig

SECOND = 1_000_000_000
image, port, publish_mode, order = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
client = docker.from_env()
client.services.create(
    image,
    name="hello-swarm",
    # One task per node, as ballast and Ansible run one container per host.
    mode=ServiceMode("global"),
    # The image's own binary: `/hello exit 0` proves the container runs and
    # can exec, not that /up answers (the image has no HTTP client).
    healthcheck=Healthcheck(
        test=["CMD", "/hello", "exit", "0"],
        interval=SECOND,
        timeout=2 * SECOND,
        retries=3,
    ),
    update_config=UpdateConfig(
        parallelism=1, delay=0, monitor=SECOND, order=order, failure_action="pause"
    ),
    endpoint_spec=EndpointSpec(ports={port: (8080, "tcp", publish_mode)}),
)
