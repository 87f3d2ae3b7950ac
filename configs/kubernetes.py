"""The pi workflow's config for Kubernetes pods, as a Python config module.

Load it with ``parsl_lite.load("configs/kubernetes.py")``. Blocks are pods of
an image that holds no Python of its own: this machine's ``/usr``, its Python
prefixes and parsl_lite's source are mounted into each pod read-only
(``host_python_mounts()``), so the node must share this machine's file system,
as the test backend's node does (``../shared/backends/k8s.sh``). The run
directory is mounted read-write, so worker pools find the executor's CurveZMQ
keys there (``encrypted=True``) and write their logs where the executor's are.
For a real cluster, use an image with Python and parsl_lite installed and see
``configs/kubernetes.toml``.

Environment (defaults fit the test backend):
    KUBECONFIG: the cluster's kubeconfig (else ``~/.kube/config`` or in-cluster).
    PLITE_K8S_IMAGE: the pods' image (``localhost/plite-host:1``).
    PLITE_K8S_ADDRESS: the address pods reach this machine at (``10.200.2.1``).
    PLITE_K8S_NAMESPACE: the namespace (``default``).
"""
import os

from parsl_lite.config import Config
from parsl_lite.executors import HighThroughputExecutor
from parsl_lite.providers import KubernetesProvider
from parsl_lite.providers.kubernetes import host_python_mounts

RUN_DIR = os.path.abspath("runinfo")
os.makedirs(RUN_DIR, exist_ok=True)  # a hostPath the node can mount

config = Config(
    executors=[HighThroughputExecutor(
        label="htex_k8s",
        address=os.environ.get("PLITE_K8S_ADDRESS", "10.200.2.1"),
        max_workers_per_node=1,
        heartbeat_period=2,
        heartbeat_threshold=10,
        provider=KubernetesProvider(
            image=os.environ.get("PLITE_K8S_IMAGE", "localhost/plite-host:1"),
            namespace=os.environ.get("PLITE_K8S_NAMESPACE", "default"),
            init_blocks=1, min_blocks=0, max_blocks=2,
            init_cpu=1, max_cpu=1, init_mem="250Mi", max_mem="1Gi",
            host_path_volumes=host_python_mounts() + [f"{RUN_DIR}:{RUN_DIR}"],
        ),
    )],
    run_dir=RUN_DIR,
    strategy="htex_auto_scale",
    max_idletime=30,
)
