"""Test support for --fleet: the fleet of real servers the `fleet` fixture starts, and the fake resolver's
environment (the one thing the fleet tests mock)."""

import os


FAKE_DNS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_dns")


class Fleet:
    """Three real servers that disagree, and an address where none listens (a replica that is down).

    full: the toy server (toy_labels.config: Toy 1 and 2, labels, Toy_double, MultiTask);
    health: the same config with the gRPC health service on;
    one: Toy version 1 only, and no other model (a rollout that has not reached it).
    """

    def __init__(self, full, health, one, down_port):
        self.full, self.health, self.one = full, health, one
        self.down = f"127.0.0.1:{down_port}"

    def address(self, server):
        return f"127.0.0.1:{server.port}"

    def target(self, *names):
        """A comma list of 127.0.0.1:PORT for the named members ('full', 'health', 'one', 'down')."""
        return ",".join(self.down if name == "down" else self.address(getattr(self, name)) for name in names)


def fake_dns(table):
    """The environment that makes a script's resolver answer `table` ({name: [ip, ...]}) and nothing else
    differently (tests/fake_dns/sitecustomize.py)."""
    return {"PYTHONPATH": os.pathsep.join(filter(None, [FAKE_DNS_DIR, os.environ.get("PYTHONPATH")])),
            "TFS_TEST_FAKE_DNS": ";".join(f"{name}={','.join(ips)}" for name, ips in table.items())}
