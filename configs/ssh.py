"""Blocks of worker pools on SSH hosts, as a Python config module (Parsl's way).

Load it with ``parsl_lite.load("configs/ssh.py")`` or run
``cd examples && python pi.py ../configs/ssh.py``. It matches ``configs/ssh.toml``
(read the comments there for what each host needs), for the test backend
(``bash ../shared/backends/ssh.sh up``): this machine's sshd on 127.0.0.1:2222
and host h2 (10.200.0.2), which reaches this machine as 10.200.0.1.

For hosts that cannot reach this machine (NAT, firewall), tunnel the worker
port over SSH instead: ``SSHProvider(..., tunnel=True)`` and no ``address``
on the executor. The pools then connect to 127.0.0.1 on their own host, whose
sshd forwards to the interchange here (the tunnel cannot lead to a host that
is this machine, since the interchange itself holds that port there).
"""
from parsl_lite.config import Config
from parsl_lite.executors import HighThroughputExecutor
from parsl_lite.providers import SSHProvider

provider = SSHProvider(
    hostnames=["127.0.0.1:2222", "10.200.0.2"],   # blocks go to them in turn
    username="root",
    key_filename="/tmp/plite-ssh/id_ed25519",
    known_hosts="/tmp/plite-ssh/known_hosts",
    remote_script_dir=".parsl_lite/jobs",
    init_blocks=2,
    max_blocks=2,
)

config = Config(
    executors=[HighThroughputExecutor(label="htex_ssh", address="10.200.0.1", max_workers_per_node=2,
                                      provider=provider)],
    run_dir="runinfo",
)
