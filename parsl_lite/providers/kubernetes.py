"""Blocks as Kubernetes pods, through the official ``kubernetes`` client.

One pod per block, created from ``image`` in ``namespace``; its single
container runs the block's job script (``worker_init``, then the launcher's
command) with ``/bin/bash -c``::

    submit ─► POST pods  {labels: parsl-lite-run, parsl-lite-label, parsl-lite-block}
    status ─► GET pods?labelSelector=parsl-lite-run=<run>     one LIST for all blocks
              phase + container states ─► JobStatus (pull errors, OOMKilled, deadline)
    cancel ─► DELETE pod (grace period cancel_grace_s)        CANCELLED from then on

Why a bare pod and not a ``batch/v1`` Job: a block is a pilot that the scaling
strategy owns. It decides when a block is replaced (a Job's controller would
restart or re-create failed pods behind its back, hiding the failure from the
strategy and the executor), and cancelling is one DELETE of the object that
runs, with nothing left to garbage-collect. So pods have ``restartPolicy:
Never``: a pod that ends stays ended, with its exit code and reason readable.

Pods that ended by themselves are left in place so that ``kubectl logs`` works;
a pod that cannot start (its image cannot be pulled, a secret is missing) is
reported FAILED and deleted, since kubelet would otherwise retry it forever.
API errors are translated into :class:`~parsl_lite.providers.errors.ProviderError`
naming the API server and the reason; nothing of the client leaks upwards.
"""
from __future__ import annotations

import functools
import itertools
import logging
import os
import re
import sys
import threading
import types
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence, Union

from typeguard import typechecked

from parsl_lite.errors import ConfigurationError, OptionalModuleMissing
from parsl_lite.launchers.base import Launcher
from parsl_lite.launchers.launchers import SingleNodeLauncher
from parsl_lite.providers.base import ExecutionProvider, JobState, JobStatus, walltime_to_seconds
from parsl_lite.providers.errors import ProviderError, SubmitException, UnknownJob

logger = logging.getLogger(__name__)

CONTAINER_NAME = "parsl-worker"
LABEL_RUN = "parsl-lite-run"
LABEL_EXECUTOR = "parsl-lite-label"
LABEL_BLOCK = "parsl-lite-block"

_PHASES = {
    "Pending": JobState.PENDING,
    "Running": JobState.RUNNING,
    "Succeeded": JobState.COMPLETED,
    "Failed": JobState.FAILED,
    "Unknown": JobState.UNKNOWN,
}
# Waiting reasons after which the container will never start without a change on our side.
START_FAILURES = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
                            "CreateContainerConfigError", "CreateContainerError"})
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")
_QUANTITY = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?")
_SUFFIX = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_JOB_NAME = re.compile(r"parsl_lite\.(?P<label>.+)\.block-(?P<block>[^.]+)")  # the executor's job names
_job_numbers = itertools.count()
_RETRIES = 1  # urllib3 retries per call: an unreachable server is reported within a few seconds
_LOG_TAIL_LINES = 20
_CANCELLED = JobStatus(JobState.CANCELLED, "cancelled by parsl_lite (pod deleted)")


@functools.cache
def _kube() -> types.SimpleNamespace:
    """The ``kubernetes`` client's modules, imported on first use.

    Imported here rather than at the top so that importing this module stays
    cheap (config files resolve every provider name) and works without the
    ``kubernetes`` extra.

    Raises:
        OptionalModuleMissing: the ``kubernetes`` package is not installed.
    """
    try:
        import urllib3
        from kubernetes import client, config
        from kubernetes.client.rest import ApiException
    except ImportError as exc:
        raise OptionalModuleMissing(["kubernetes"], "KubernetesProvider needs the official Kubernetes client: "
                                    f"pip install 'parsl_lite[kubernetes]' ({exc})") from exc
    return types.SimpleNamespace(client=client, config=config, ApiException=ApiException, urllib3=urllib3)


@dataclass(slots=True, eq=False)
class _Job:
    """One submitted block. ``final`` is set once, when the pod is known to have ended."""

    pod_name: str
    final: Optional[JobStatus] = None
    cancelling: bool = False  # a DELETE is on its way: a pod found gone meanwhile was cancelled, not lost


class KubernetesProvider(ExecutionProvider):
    """Runs each block as one pod. Parameters follow Parsl's ``KubernetesProvider``.

    Args:
        image: the container image; it must hold the Python and parsl_lite the
            worker command uses (or get them from ``host_path_volumes``).
        namespace: where pods are created.
        nodes_per_block: must be 1: a pod runs on one node.
        init_blocks: blocks started when the executor starts.
        min_blocks: blocks kept even when idle.
        max_blocks: blocks never exceeded.
        max_cpu: the container's CPU limit (cores, or a quantity like ``"500m"``).
        max_mem: the container's memory limit (``"500Mi"``); above it, the pod is OOMKilled.
        init_cpu: the container's CPU request.
        init_mem: the container's memory request.
        extra_requests: more resource requests (``{"nvidia.com/gpu": "1"}``).
        extra_limits: more resource limits.
        parallelism: ratio of task slots to outstanding tasks the strategy aims for.
        worker_init: shell lines run in the pod before the workers start.
        pod_name: prefix of pod names (default: from the job name); a run id
            and a number are appended.
        user_id: ``runAsUser`` of the container.
        group_id: ``runAsGroup`` of the container.
        run_as_non_root: ``runAsNonRoot`` of the container.
        secret: the name of an image pull secret.
        persistent_volumes: ``(claim name, mount path)`` pairs to mount.
        service_account_name: the pods' service account.
        annotations: added to each pod's metadata.
        labels: added to each pod's labels (ours identify the run and block).
        host_path_volumes: ``"host[:container[:ro]]"`` directories of the node
            to mount (see :func:`host_python_mounts`).
        image_pull_policy: ``Always``, ``IfNotPresent`` or ``Never`` (default:
            the cluster's, which is ``IfNotPresent`` for a tagged image).
        node_selector: node labels a pod's node must have.
        walltime: ``HH:MM:SS`` after which Kubernetes stops the pod
            (``activeDeadlineSeconds``); reported as TIMEOUT.
        kubeconfig: the kubeconfig file; default: in-cluster config inside a
            pod, else ``$KUBECONFIG`` or ``~/.kube/config``.
        context: the kubeconfig context (default: its current one).
        launcher: starts the copies of the worker command in the pod.
        request_timeout_s: timeout of each API call.
        status_poll_interval_s: seconds between two status polls (one LIST each).

    Raises:
        OptionalModuleMissing: the ``kubernetes`` package is not installed.
        ConfigurationError: a bad quantity, a request above its limit, ...

    Attributes:
        cancel_grace_s: seconds a deleted pod gets between SIGTERM and SIGKILL.
    """

    cancel_grace_s: int = 2

    @typechecked
    def __init__(self, image: str, namespace: str = "default", nodes_per_block: int = 1, init_blocks: int = 4,
                 min_blocks: int = 0, max_blocks: int = 10, max_cpu: Union[float, int, str] = 2,
                 max_mem: str = "500Mi", init_cpu: Union[float, int, str] = 1, init_mem: str = "250Mi",
                 extra_requests: Optional[dict[str, str]] = None, extra_limits: Optional[dict[str, str]] = None,
                 parallelism: Union[float, int] = 1, worker_init: str = "", pod_name: Optional[str] = None,
                 user_id: Optional[Union[str, int]] = None, group_id: Optional[Union[str, int]] = None,
                 run_as_non_root: bool = False, secret: Optional[str] = None,
                 persistent_volumes: Sequence[Sequence[str]] = (), service_account_name: Optional[str] = None,
                 annotations: Optional[dict[str, str]] = None, labels: Optional[dict[str, str]] = None,
                 host_path_volumes: Sequence[str] = (), image_pull_policy: Optional[str] = None,
                 node_selector: Optional[dict[str, str]] = None, walltime: Optional[str] = None,
                 kubeconfig: Optional[str] = None, context: Optional[str] = None,
                 launcher: Launcher = SingleNodeLauncher(), request_timeout_s: Union[float, int] = 10,
                 status_poll_interval_s: Union[float, int] = 5.0) -> None:
        _kube()  # refuse at once, by name, if the extra is missing
        max_cores = _check_quantity("max_cpu", max_cpu)
        max_bytes = _check_quantity("max_mem", max_mem)
        if _check_quantity("init_cpu", init_cpu) > max_cores:
            raise ConfigurationError("init_cpu", f"the request ({init_cpu}) is above the limit max_cpu ({max_cpu})")
        if _check_quantity("init_mem", init_mem) > max_bytes:
            raise ConfigurationError("init_mem", f"the request ({init_mem}) is above the limit max_mem ({max_mem})")
        if nodes_per_block != 1:
            raise ConfigurationError("nodes_per_block", f"a pod runs on one node: must be 1, got {nodes_per_block}")
        if image_pull_policy is not None and image_pull_policy not in _PULL_POLICIES:
            raise ConfigurationError("image_pull_policy", f"must be one of {_PULL_POLICIES}, got {image_pull_policy!r}")
        if not image.strip():
            raise ConfigurationError("image", "must name a container image")
        if request_timeout_s <= 0:
            raise ConfigurationError("request_timeout_s", f"must be > 0, got {request_timeout_s}")
        if status_poll_interval_s <= 0:
            raise ConfigurationError("status_poll_interval_s", f"must be > 0 seconds, got {status_poll_interval_s}")
        for volume in persistent_volumes:
            if isinstance(volume, str) or len(volume) != 2:
                raise ConfigurationError("persistent_volumes", f"expected (claim name, mount path) pairs, got {volume!r}")
        for name, value in (labels or {}).items():
            _check_label("labels", name, value)
        super().__init__(init_blocks=init_blocks, min_blocks=min_blocks, max_blocks=max_blocks,
                         nodes_per_block=nodes_per_block, parallelism=parallelism, walltime=walltime,
                         worker_init=worker_init, launcher=launcher, cores_per_node=max(1, int(max_cores)),
                         mem_per_node=round(max_bytes / 2**30, 3))
        self.image = image
        self.namespace = namespace
        self.max_cpu, self.max_mem, self.init_cpu, self.init_mem = max_cpu, max_mem, init_cpu, init_mem
        self.extra_requests, self.extra_limits = extra_requests, extra_limits
        self.pod_name = pod_name
        self.user_id, self.group_id, self.run_as_non_root = user_id, group_id, run_as_non_root
        self.secret = secret
        self.persistent_volumes = persistent_volumes
        self.service_account_name = service_account_name
        self.annotations, self.labels = annotations, labels
        self.host_path_volumes = host_path_volumes
        self._host_mounts = [_parse_host_path(spec) for spec in host_path_volumes]
        self.image_pull_policy = image_pull_policy
        self.node_selector = node_selector
        self.kubeconfig, self.context = kubeconfig, context
        self.request_timeout_s = request_timeout_s
        self.status_poll_interval_s = status_poll_interval_s
        self.run_id = uuid.uuid4().hex[:8]  # the label value that finds this provider's pods
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()
        self._core: Any = None  # CoreV1Api, made on first use: loading a config file must not need the cluster
        self._api_url = "<not connected yet>"
        self._config_source = "the kubeconfig"

    @property
    def label(self) -> str:
        return "kubernetes"

    @property
    def status_polling_interval(self) -> float:
        return self.status_poll_interval_s

    # ------------------------------------------------------------ the interface

    def submit(self, command: str, tasks_per_node: int, job_name: str = "parsl_lite.auto") -> str:
        """Create the block's pod; return its name, which is the job id.

        Raises:
            SubmitException: the API server refused the pod or could not be reached.
            LauncherError: ``tasks_per_node`` below 1 or an empty command.
        """
        number = next(_job_numbers)
        pod_name = self._new_pod_name(job_name, number)
        match = _JOB_NAME.fullmatch(job_name)
        executor_label, block = (match["label"], match["block"]) if match else (job_name, str(number))
        labels = {**(self.labels or {}), LABEL_RUN: self.run_id,
                  LABEL_EXECUTOR: _label_value(executor_label), LABEL_BLOCK: _label_value(block)}
        script = self._job_script(command, tasks_per_node, job_name)
        pod = self._pod(pod_name, labels, script)

        def refused(reason: str) -> SubmitException:
            return SubmitException(self.label, f"cannot create pod {pod_name} in namespace {self.namespace}: {reason}",
                                   job_name=job_name)

        with self._translated(refused):
            self._api().create_namespaced_pod(self.namespace, pod, _request_timeout=self.request_timeout_s)
        with self._lock:
            self._jobs[pod_name] = _Job(pod_name)
        logger.debug("created pod %s/%s for %s", self.namespace, pod_name, job_name)
        return pod_name

    def status(self, job_ids: Sequence[str]) -> list[JobStatus]:
        """Each job's status, from one LIST of this provider's pods.

        Raises:
            UnknownJob: an id this provider did not issue.
            ProviderError: the API server could not be asked.
        """
        with self._lock:
            jobs = [self._job(job_id) for job_id in job_ids]
        if all(job.final is not None for job in jobs):
            return [job.final for job in jobs]  # type: ignore[misc]
        with self._translated(lambda reason: ProviderError(self.label, f"cannot list pods in namespace "
                                                                       f"{self.namespace}: {reason}")):
            listed = self._api().list_namespaced_pod(self.namespace, label_selector=f"{LABEL_RUN}={self.run_id}",
                                                     _request_timeout=self.request_timeout_s)
        pods = {pod.metadata.name: pod for pod in listed.items}
        results, ended = [], []
        with self._lock:
            for job in jobs:
                if job.final is not None:  # cancelled (or ended) meanwhile
                    results.append(job.final)
                    continue
                pod = pods.get(job.pod_name)
                if pod is None and job.cancelling:
                    status = _CANCELLED
                elif pod is None:
                    status = JobStatus(JobState.MISSING, f"pod {job.pod_name} no longer exists in namespace "
                                                         f"{self.namespace}: deleted outside parsl_lite")
                else:
                    status = pod_status(pod, self.max_mem)
                if status.terminal:
                    job.final = status
                    if pod is not None:
                        ended.append((job, status))
                results.append(status)
        for job, status in ended:  # API calls, outside the lock
            self._after_end(job, status)
        return results

    def cancel(self, job_ids: Sequence[str]) -> list[bool]:
        """Delete each job's pod (SIGTERM, then SIGKILL after ``cancel_grace_s``).

        Returns once the API server accepted the deletions. A job that had
        already ended keeps its own final status; any other is CANCELLED from
        now on. Unknown ids, and pods the API server would not delete, give False.
        """
        results = []
        for job_id in job_ids:
            with self._lock:
                job = self._jobs.get(job_id)
                if job is not None:
                    job.cancelling = True
            if job is None:
                logger.warning("cannot cancel unknown job %s", job_id)
                results.append(False)
                continue
            try:
                self._delete(job.pod_name)
            except ProviderError as exc:
                logger.error("could not delete pod %s/%s (delete it by hand): %s", self.namespace, job.pod_name, exc)
                with self._lock:
                    job.cancelling = False
                results.append(False)
                continue
            with self._lock:
                if job.final is None:
                    job.final = _CANCELLED
            results.append(True)
        return results

    def close(self) -> None:
        """Release the API client's connections; the executor calls this at shutdown, after cancelling.

        The client is made again if the provider is used afterwards.
        """
        with self._lock:
            core, self._core = self._core, None
        if core is not None:
            core.api_client.close()

    # ------------------------------------------------------------ internals

    def _job(self, job_id: str) -> _Job:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise UnknownJob(self.label, job_id) from None

    def _after_end(self, job: _Job, status: JobStatus) -> None:
        """Log an ended pod's last lines; delete a pod that failed to start (kubelet would retry it forever)."""
        if status.state is JobState.FAILED and status.exit_code is not None:
            tail = self._log_tail(job.pod_name)
            if tail:
                logger.warning("pod %s/%s failed (%s); its last lines:\n%s", self.namespace, job.pod_name,
                               status.message, tail)
        if status.state is JobState.FAILED and status.exit_code is None:
            try:
                self._delete(job.pod_name, grace_s=0)  # nothing runs in it: no grace needed
            except ProviderError as exc:
                logger.warning("could not delete pod %s that failed to start: %s", job.pod_name, exc)

    def _delete(self, pod_name: str, grace_s: Optional[int] = None) -> None:
        grace_s = self.cancel_grace_s if grace_s is None else grace_s
        try:
            with self._translated(lambda reason: ProviderError(self.label, f"cannot delete pod {pod_name}: {reason}")):
                self._api().delete_namespaced_pod(pod_name, self.namespace, grace_period_seconds=grace_s,
                                                  _request_timeout=self.request_timeout_s)
        except ProviderError as exc:
            if getattr(exc.__cause__, "status", None) != 404:  # already gone is what we wanted
                raise

    def _log_tail(self, pod_name: str) -> Optional[str]:
        try:
            return self._api().read_namespaced_pod_log(pod_name, self.namespace, tail_lines=_LOG_TAIL_LINES,
                                                       _request_timeout=self.request_timeout_s) or None
        except Exception:  # only for the log line; the status is already known
            return None

    def _new_pod_name(self, job_name: str, number: int) -> str:
        """A DNS-1123 label: ``<prefix>-<run id>-<number>``, at most 63 characters."""
        suffix = f"-{self.run_id}-{number}"
        base = re.sub(r"[^a-z0-9-]+", "-", (self.pod_name or job_name).lower()).strip("-") or "parsl-lite"
        return base[:63 - len(suffix)].rstrip("-") + suffix

    def _pod(self, pod_name: str, labels: dict[str, str], script: str) -> Any:
        k = _kube().client
        mounts = [k.V1VolumeMount(name=f"host-{i}", mount_path=target, read_only=read_only)
                  for i, (_, target, read_only) in enumerate(self._host_mounts)]
        volumes = [k.V1Volume(name=f"host-{i}", host_path=k.V1HostPathVolumeSource(path=source))
                   for i, (source, _, _) in enumerate(self._host_mounts)]
        for i, (claim, target) in enumerate(self.persistent_volumes):
            mounts.append(k.V1VolumeMount(name=f"pvc-{i}", mount_path=target))
            volumes.append(k.V1Volume(name=f"pvc-{i}", persistent_volume_claim=k.V1PersistentVolumeClaimVolumeSource(
                claim_name=claim)))
        resources = k.V1ResourceRequirements(
            requests={"cpu": str(self.init_cpu), "memory": self.init_mem, **(self.extra_requests or {})},
            limits={"cpu": str(self.max_cpu), "memory": self.max_mem, **(self.extra_limits or {})})
        security = k.V1SecurityContext(
            run_as_user=int(self.user_id) if self.user_id is not None else None,
            run_as_group=int(self.group_id) if self.group_id is not None else None,
            run_as_non_root=self.run_as_non_root or None)
        container = k.V1Container(name=CONTAINER_NAME, image=self.image, image_pull_policy=self.image_pull_policy,
                                  command=["/bin/bash", "-c", script], resources=resources,
                                  security_context=security, volume_mounts=mounts or None)
        spec = k.V1PodSpec(
            containers=[container], restart_policy="Never", volumes=volumes or None,
            service_account_name=self.service_account_name, node_selector=self.node_selector,
            image_pull_secrets=[k.V1LocalObjectReference(name=self.secret)] if self.secret else None,
            active_deadline_seconds=walltime_to_seconds(self.walltime) if self.walltime else None,
            termination_grace_period_seconds=self.cancel_grace_s)
        meta = k.V1ObjectMeta(name=pod_name, labels=labels, annotations=self.annotations or None)
        return k.V1Pod(api_version="v1", kind="Pod", metadata=meta, spec=spec)

    def _api(self) -> Any:
        """The CoreV1Api, made on first use from the kubeconfig or the in-cluster config."""
        with self._lock:
            if self._core is None:
                api_client = self._load_client()
                self._api_url = api_client.configuration.host
                self._core = _kube().client.CoreV1Api(api_client)
            return self._core

    def _load_client(self) -> Any:
        kube = _kube()
        configuration = kube.client.Configuration()
        in_cluster = self.kubeconfig is None and "KUBERNETES_SERVICE_HOST" in os.environ
        source = "the in-cluster config" if in_cluster else \
            f"kubeconfig {self.kubeconfig or os.environ.get('KUBECONFIG') or '~/.kube/config'}"
        self._config_source = source
        try:
            if in_cluster:
                kube.config.load_incluster_config(client_configuration=configuration)
            else:  # into our Configuration, not the client's global one; $KUBECONFIG now, not as at import
                kube.config.load_kube_config(config_file=self.kubeconfig or os.environ.get("KUBECONFIG"),
                                             context=self.context, client_configuration=configuration, persist_config=False)
        except Exception as exc:  # ConfigException, OSError, YAML errors: all mean the same to the user
            raise ProviderError(self.label, f"cannot load {source}: {exc}") from exc
        configuration.retries = _RETRIES
        return kube.client.ApiClient(configuration)

    @contextmanager
    def _translated(self, error: Any) -> Iterator[None]:
        """Re-raise the client's exceptions as ``error(reason)``, naming the API server."""
        kube = _kube()
        try:
            yield
        except ProviderError as exc:  # the client could not be made (kubeconfig): say what we were doing
            raise error(exc.reason) from exc
        except kube.ApiException as exc:
            raise error(f"the API server {self._api_url} answered {_api_reason(exc, self._config_source)}") from exc
        except kube.urllib3.exceptions.HTTPError as exc:
            raise error(f"cannot reach the API server {self._api_url}: {_transport_reason(exc)}") from exc
        except OSError as exc:
            raise error(f"cannot reach the API server {self._api_url}: {exc}") from exc


# ---------------------------------------------------------------- pure helpers


def pod_status(pod: Any, max_mem: str = "?") -> JobStatus:
    """A pod's JobStatus, from its phase and its container's state. Pure (no API calls).

    A pod that cannot start (image pull errors, a missing secret) is FAILED
    with the reason even though its phase stays Pending; a container killed
    for memory is FAILED naming ``OOMKilled``; a pod past its
    ``activeDeadlineSeconds`` is TIMEOUT.
    """
    status = pod.status
    phase = getattr(status, "phase", None) or "Unknown"
    state = _PHASES.get(phase, JobState.UNKNOWN)
    container = _container_state(pod)
    waiting = getattr(container, "waiting", None) if container is not None else None
    terminated = getattr(container, "terminated", None) if container is not None else None
    if state is JobState.PENDING:
        if waiting is not None and waiting.reason in START_FAILURES:
            detail = f": {waiting.message}" if waiting.message else ""
            return JobStatus(JobState.FAILED, f"the container cannot start, {waiting.reason}{detail} "
                                              f"(image {_image(pod)})")
        return JobStatus(JobState.PENDING, _pending_reason(pod))
    if state is JobState.FAILED:
        if status.reason == "DeadlineExceeded":
            return JobStatus(JobState.TIMEOUT, f"walltime reached: {status.message or 'DeadlineExceeded'}")
        if terminated is None:
            return JobStatus(JobState.FAILED, f"pod failed: {status.reason or ''} {status.message or ''}".strip())
        code = terminated.exit_code
        if terminated.reason == "OOMKilled":
            return JobStatus(JobState.FAILED, f"the container was OOMKilled: it used more than its memory limit "
                                              f"max_mem={max_mem} (exit code {code})", exit_code=code)
        message = f"the container ended with exit code {code}"
        if terminated.reason and terminated.reason != "Error":
            message += f" ({terminated.reason})"
        if terminated.message:
            message += f": {terminated.message.strip()[-300:]}"
        return JobStatus(JobState.FAILED, message, exit_code=code)
    if state is JobState.COMPLETED:
        return JobStatus(JobState.COMPLETED, exit_code=getattr(terminated, "exit_code", 0))
    if state is JobState.UNKNOWN:
        return JobStatus(JobState.UNKNOWN, f"phase {phase}: {status.reason or 'the node does not answer'}")
    return JobStatus(state)


def host_python_mounts() -> list[str]:
    """``host_path_volumes`` that give a pod this machine's Python, venv and parsl_lite.

    For an image that is an empty skeleton (like the test backend's
    ``plite-host``): ``/usr``, this interpreter's prefixes and the directory
    parsl_lite is imported from, read-only at the same paths. Only for nodes
    that share this machine's file system.
    """
    import parsl_lite

    package_root = os.path.dirname(os.path.dirname(os.path.abspath(parsl_lite.__file__)))
    dirs = {"/usr", sys.prefix, sys.base_prefix, package_root}
    kept = sorted(d for d in dirs if d == "/usr" or not any(d.startswith(o.rstrip("/") + "/") for o in dirs if o != d))
    return [f"{d}:{d}:ro" for d in kept]


def _container_state(pod: Any) -> Any:
    for container in getattr(pod.status, "container_statuses", None) or ():
        if container.name == CONTAINER_NAME:
            return container.state
    statuses = getattr(pod.status, "container_statuses", None) or ()
    return statuses[0].state if statuses else None


def _image(pod: Any) -> str:
    containers = getattr(pod.spec, "containers", None) or ()
    return containers[0].image if containers else "?"


def _pending_reason(pod: Any) -> Optional[str]:
    for condition in getattr(pod.status, "conditions", None) or ():
        if condition.type == "PodScheduled" and condition.status == "False":
            return f"not scheduled: {condition.reason}: {condition.message}"
    return None


def _api_reason(exc: Any, source: str) -> str:
    """``401 Unauthorized: <the server's message>`` with a hint for the usual causes."""
    message = ""
    try:
        import json

        message = json.loads(exc.body or "{}").get("message", "")
    except (ValueError, AttributeError):
        message = (exc.body or "")[:300] if isinstance(exc.body, str) else ""
    text = f"{exc.status} {exc.reason}" + (f": {message}" if message else "")
    hints = {401: f"it refused our credentials (check the token or client certificate of {source})",
             403: f"the account of {source} may not do this (RBAC)"}
    return text + (f"; {hints[exc.status]}" if exc.status in hints else "")


def _transport_reason(exc: Any) -> str:
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    if "CERTIFICATE" in text.upper() or "SSL" in type(reason).__name__.upper() or "SSL" in text.upper():
        text += " (TLS failed: the server's certificate, or ours, was refused)"
    return text


def _check_quantity(field: str, value: Union[str, int, float]) -> float:
    """A Kubernetes quantity (``"500m"``, ``"1.5Gi"``, ``2``) as a number; refuses others naming ``field``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value <= 0:
            raise ConfigurationError(field, f"must be > 0, got {value}")
        return float(value)
    match = _QUANTITY.fullmatch(str(value).strip())
    if match is None:
        raise ConfigurationError(field, f"not a Kubernetes quantity: {value!r} (e.g. '500m', '250Mi', '2Gi')")
    number = float(match[1]) * _SUFFIX[match[2]]
    if number <= 0:
        raise ConfigurationError(field, f"must be > 0, got {value!r}")
    return number


def _parse_host_path(spec: str) -> tuple[str, str, bool]:
    """``"host[:container[:ro|rw]]"`` -> (host path, mount path, read only)."""
    parts = spec.split(":")
    if not 1 <= len(parts) <= 3 or not all(parts[:2]) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise ConfigurationError("host_path_volumes", f"expected 'host[:container[:ro|rw]]', got {spec!r}")
    source = parts[0]
    target = parts[1] if len(parts) > 1 else source
    if not (source.startswith("/") and target.startswith("/")):
        raise ConfigurationError("host_path_volumes", f"paths must be absolute, got {spec!r}")
    return source, target, len(parts) == 3 and parts[2] == "ro"


def _label_value(text: str) -> str:
    """``text`` made a valid label value: [A-Za-z0-9._-], at most 63, alphanumeric at both ends."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:63].strip("-._") or "none"


def _check_label(field: str, name: str, value: str) -> None:
    if not re.fullmatch(r"([A-Za-z0-9.-]+/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?", name):
        raise ConfigurationError(field, f"not a valid label name: {name!r}")
    if value and not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?", value):
        raise ConfigurationError(field, f"label {name!r}: not a valid label value: {value!r}")
    if name in (LABEL_RUN, LABEL_EXECUTOR, LABEL_BLOCK):
        raise ConfigurationError(field, f"label {name!r} is set by parsl_lite itself")

