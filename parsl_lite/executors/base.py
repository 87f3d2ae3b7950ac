"""The interface every executor implements, and the only one the kernel knows.

The DataFlowKernel calls :meth:`ParslExecutor.start` once, then
:meth:`~ParslExecutor.submit` per task, and :meth:`~ParslExecutor.shutdown`
once. Executors that get their workers from a provider also answer the scaling
questions (:attr:`outstanding`, :attr:`connected_workers`, :meth:`scale_out`,
:meth:`scale_in`), which the strategy asks.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Optional, Protocol

from parsl_lite.representation import RepresentationMixin


@dataclass(frozen=True)
class ExecutorEvent:
    """What an executor tells the kernel's listeners beside task states (monitoring, progress views).

    Attributes:
        executor: the executor's label.
        what: e.g. ``"task_placed"`` (``detail["endpoint_id"]`` ran task ``task_id``) or
            ``"endpoint_status"`` (``detail``: the endpoint, online or not, workers, queue).
        detail: the facts, JSON-friendly.
        task_id: the kernel's task id, when the event is about one task.
    """
    kind: ClassVar[str] = "executor"
    executor: str
    what: str
    detail: dict = field(default_factory=dict)
    task_id: Optional[int] = None


class ResultSink(Protocol):
    """What an executor settles with a task's outcome, once: a ``Future``, or the kernel's task record.

    An executor that can settle the kernel's records directly offers
    ``submit_to(sink, func, resource_specification, *args, **kwargs)``
    besides :meth:`ParslExecutor.submit` (the htex does).
    """

    def set_result(self, result: Any) -> None: ...

    def set_exception(self, exception: BaseException) -> None: ...


class ParslExecutor(RepresentationMixin, ABC):
    """Runs functions somewhere and hands back ``concurrent.futures.Future`` objects.

    Attributes:
        label: unique name of the executor inside one config; apps are pinned
            to executors by it.
        run_dir: set by the kernel before :meth:`start`; the executor writes
            its logs and files below it.
        needs_serialization: True if tasks leave this process, so arguments
            must be serializable (the kernel checks that before submitting).
    """

    label: str = "executor"
    run_dir: str = "."
    needs_serialization: bool = False
    event_sink: Optional[Callable[[ExecutorEvent], None]] = None  # set by the kernel before start
    routes_to_endpoints: bool = False  # takes parsl_resource_specification={"endpoints": [...]} (FaaS)

    def emit(self, event: ExecutorEvent) -> None:
        """Hand ``event`` to the kernel's listeners (nothing if no kernel listens)."""
        sink = self.event_sink
        if sink is not None:
            sink(event)

    def block_changed(self, block_id: str, job_id: Optional[str], status: str) -> None:
        """The job status poller's word that a block changed state (to listeners: ``block_status``)."""
        self.emit(ExecutorEvent(self.label, "block_status", {"block_id": block_id, "job_id": job_id,
                                                             "status": status}))

    @abstractmethod
    def start(self) -> None:
        """Start whatever the executor needs (threads, processes, connections)."""

    @abstractmethod
    def submit(self, func: Callable, resource_specification: dict, *args: Any, **kwargs: Any) -> Future:
        """Run ``func(*args, **kwargs)`` and return a future of its result.

        Raises:
            SerializationError: an argument cannot be sent (remote executors).
            ExecutorError: the executor is broken or shut down.
        """

    @abstractmethod
    def shutdown(self) -> None:
        """Stop, fail what is still pending, and leave no thread or process behind."""

    # --- what the scaling strategy asks; executors without blocks keep these defaults ---

    @property
    def outstanding(self) -> int:
        """Tasks submitted and not yet finished."""
        return 0

    @property
    def connected_workers(self) -> int:
        """Workers able to run tasks now."""
        return 0

    def scale_out(self, blocks: int) -> list[str]:
        """Ask for ``blocks`` more blocks of workers; return their ids."""
        return []

    def scale_in(self, block_ids: list[str]) -> list[str]:
        """Release the named blocks; return the ids released."""
        return []

    @property
    def provider(self) -> Any:
        """The provider that supplies workers, or None."""
        return None

    def use_default_provider(self, make_provider: Callable[[], Any]) -> None:
        """Called by :class:`~parsl_lite.config.Config` for each executor, with the default provider's factory.

        An executor that runs its workers in blocks and was built without a
        provider takes ``make_provider()``; the others ignore it. The default
        comes from the config layer so that no executor imports a concrete
        provider (shared/DESIGN.md, rule 1).
        """

    def unused_parameters(self) -> list[str]:
        """Parsl parameters this executor accepted with a non-default value and does not use.

        The kernel logs a warning naming them when it starts, so a Parsl
        config that relies on one is not silently ignored.
        """
        return []

    def set_run_dir(self, run_dir: str) -> None:
        """Called by the kernel before :meth:`start`."""
        self.run_dir = os.path.join(run_dir, self.label)
