"""A real multi-node Ray cluster on this machine: ``ray start --head`` plus ``ray start --address`` nodes.

Ray 2.60 notes (verified here): a cluster started with ``ray start`` uses token authentication;
the job CLI only sends the token when ``RAY_AUTH_MODE=token`` is set (otherwise
"Authentication required: Missing authentication token"), so one explicit token goes to every
node and to the CLI. Every port that has a fixed default (GCS, dashboard, its agent, the client
server) is chosen here, outside the worker port range (10002-19999), because two nodes on one
machine would otherwise collide. Each node gets its own ``--temp-dir``, so nothing passes between
nodes through the head's session files, and each node runs ``ray start --block`` in its own
process group: a node is stopped (or removed mid-run) by killing that group, never by
``ray stop``, which would stop every Ray instance on the machine.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).parent / "ray")


def free_port(taken: set[int]) -> int:
    """A free TCP port of 127.0.0.1 outside Ray's worker port range and not in ``taken``."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not 10000 <= port < 20000 and port not in taken:
            taken.add(port)
            return port


@dataclass
class RayNode:
    """One ``ray start --block`` process (and its process group)."""

    name: str
    proc: subprocess.Popen
    temp_dir: str
    log: Path

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop this node's processes (its own process group), SIGKILL after 10 s."""
        try:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            return
        try:  # `ray start --block` often lingers after SIGTERM; raylet children too
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        except ProcessLookupError:
            pass


@dataclass
class LocalCluster:
    """A head and worker nodes started here, and how to reach them.

    Args:
        log_dir: where each node's ``ray start`` output goes.
        env: the environment of the nodes and of the job CLI (auth token, no ``RAY_ADDRESS``).
    """

    log_dir: Path
    env: dict[str, str]
    taken: set[int] = field(default_factory=set)
    nodes: list[RayNode] = field(default_factory=list)
    gcs_port: int = 0
    dashboard_port: int = 0

    @classmethod
    def create(cls, log_dir: Path, extra_env: dict[str, str] | None = None) -> "LocalCluster":
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16), **(extra_env or {}))
        return cls(log_dir, env)

    @property
    def address(self) -> str:
        """The job server's address for ``ray job submit --address``."""
        return f"http://127.0.0.1:{self.dashboard_port}"

    def _start(self, name: str, args: list[str]) -> RayNode:
        temp_dir = tempfile.mkdtemp(prefix=f"r{name[:3]}", dir="/tmp")  # short: unix socket paths
        log = self.log_dir / f"{name}.log"
        with open(log, "w") as f:
            proc = subprocess.Popen([RAY, "start", "--block", "--node-ip-address", "127.0.0.1",
                                     "--dashboard-agent-listen-port", str(free_port(self.taken)),
                                     "--temp-dir", temp_dir, *args],
                                    env=self.env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        node = RayNode(name, proc, temp_dir, log)
        self.nodes.append(node)
        return node

    def start_head(self, num_cpus: float, resources: dict[str, float]) -> RayNode:
        self.gcs_port, self.dashboard_port = free_port(self.taken), free_port(self.taken)
        node = self._start("head", ["--head", "--port", str(self.gcs_port), "--num-cpus", f"{num_cpus:g}",
                                    "--resources", json.dumps(resources), "--dashboard-host", "127.0.0.1",
                                    "--dashboard-port", str(self.dashboard_port),
                                    "--ray-client-server-port", str(free_port(self.taken))])
        self.wait_for(1, node)
        return node

    def add_node(self, name: str, num_cpus: float, resources: dict[str, float]) -> RayNode:
        node = self._start(name, ["--address", f"127.0.0.1:{self.gcs_port}", "--num-cpus", f"{num_cpus:g}",
                                  "--resources", json.dumps(resources)])
        self.wait_for(len([n for n in self.nodes if n.proc.poll() is None]), node)
        return node

    def alive_nodes(self) -> list[dict]:
        """``ray list nodes`` of the cluster, alive ones only."""
        res = subprocess.run([RAY, "list", "nodes", "--address", f"127.0.0.1:{self.gcs_port}", "--format", "json",
                              "--filter", "state=ALIVE"], env=self.env, capture_output=True, text=True, timeout=60)
        if res.returncode != 0:
            return []
        try:
            return json.loads(res.stdout)
        except ValueError:
            return []

    def wait_for(self, alive: int, node: RayNode, timeout: float = 180) -> None:
        """Until the job server answers and ``alive`` nodes are up (``node`` must not exit meanwhile)."""
        deadline = time.time() + timeout
        while True:
            if node.proc.poll() is not None:
                raise RuntimeError(f"ray start ({node.name}) exited with {node.proc.returncode}; see {node.log}")
            if len(self.alive_nodes()) >= alive and subprocess.run(
                    [RAY, "job", "list", "--address", self.address], env=self.env, capture_output=True,
                    timeout=60).returncode == 0:
                return
            if time.time() > deadline:
                raise RuntimeError(f"{alive} nodes were not up after {timeout:g} s; see {self.log_dir}")
            time.sleep(2)

    def submit(self, args: list[str], working_dir: Path, env_vars: dict[str, str],
               timeout: float = 600) -> subprocess.CompletedProcess:
        """``ray job submit --working-dir ... --runtime-env-json ... -- python ARGS`` (waits for the end)."""
        runtime_env = json.dumps({"env_vars": env_vars})
        cmd = [RAY, "job", "submit", "--address", self.address, "--working-dir", str(working_dir),
               "--runtime-env-json", runtime_env, "--", sys.executable, *args]
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)

    def shutdown(self) -> None:
        for node in reversed(self.nodes):
            node.stop()
