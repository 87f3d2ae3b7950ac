"""Honest parameters: a Parsl parameter we accept and ignore is named in a warning, once per kernel.

The README's list of such parameters is read here too, so it stays the list
the code warns about.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from parsl_lite.config import Config
from parsl_lite.dataflow.kernel import DataFlowKernel
from parsl_lite.executors import HighThroughputExecutor, ThreadPoolExecutor
from parsl_lite.monitoring import MonitoringHub
from parsl_lite.providers import LocalProvider

README = Path(__file__).resolve().parent.parent / "README.md"
KERNEL_LOGGER = "parsl_lite.dataflow.kernel"

# A value other than the default for each accepted-but-unused htex parameter (right types for typeguard).
NON_DEFAULTS = {
    "interchange_launch_cmd": ["my-interchange"],
    "storage_access": [object()],
    "working_dir": "/tmp/elsewhere",
    "cpu_affinity": "block",
    "available_accelerators": 2,
    "address_probe_timeout": 5,
    "manager_selector": object(),
    "poll_period": 1,
    "remote_monitoring_radio": object(),
    "block_error_handler": lambda executor, statuses: None,
}


def unused_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == KERNEL_LOGGER and r.levelno == logging.WARNING and "does not use it" in r.getMessage()]


def test_defaults_are_not_reported():
    assert HighThroughputExecutor().unused_parameters() == []
    assert ThreadPoolExecutor().unused_parameters() == []
    assert Config().unused_parameters() == []
    # Parsl-equivalent spellings of "nothing" are defaults too.
    assert HighThroughputExecutor(available_accelerators=[], block_error_handler=False).unused_parameters() == []


@pytest.mark.parametrize("name", sorted(NON_DEFAULTS))
def test_each_unused_htex_parameter_is_named(name):
    assert HighThroughputExecutor(**{name: NON_DEFAULTS[name]}).unused_parameters() == [name]


def test_thread_pool_working_dir_is_named():
    assert ThreadPoolExecutor(working_dir="/tmp/elsewhere").unused_parameters() == ["working_dir"]


def test_unused_config_parameters_are_named():
    config = Config(usage_tracking=3, project_name="my-project", monitoring=MonitoringHub())
    assert config.unused_parameters() == ["usage_tracking", "project_name"]
    assert MonitoringHub(hub_address="127.0.0.1", hub_port=55055).unused_parameters() == ["hub_address", "hub_port"]


def test_the_kernel_warns_once_per_kernel_naming_each(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger=KERNEL_LOGGER)
    htex = HighThroughputExecutor(label="htex", poll_period=1, cpu_affinity="block", encrypted=False,
                                  provider=LocalProvider(init_blocks=0, min_blocks=0, max_blocks=0))
    threads = ThreadPoolExecutor(label="threads", working_dir=str(tmp_path))
    config = Config(executors=[htex, threads], usage_tracking=1, run_dir=str(tmp_path), strategy="none")
    with DataFlowKernel(config) as dfk:
        first = unused_warnings(caplog)
        assert dfk.submit(lambda: 7, (), executors="threads").result() == 7  # running tasks warns no more
        assert unused_warnings(caplog) == first
    assert sorted(first) == sorted([
        "executor 'htex': parameter 'poll_period' is accepted for Parsl compatibility but parsl_lite does not use it; "
        "its value has no effect",
        "executor 'htex': parameter 'cpu_affinity' is accepted for Parsl compatibility but parsl_lite does not use "
        "it; its value has no effect",
        "Config: parameter 'usage_tracking' is accepted for Parsl compatibility but parsl_lite does not use it; "
        "its value has no effect",
        "executor 'threads': parameter 'working_dir' is accepted for Parsl compatibility but parsl_lite does not "
        "use it; its value has no effect",
    ])


def test_a_kernel_with_defaults_warns_nothing(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger=KERNEL_LOGGER)
    with DataFlowKernel(Config(executors=[ThreadPoolExecutor(label="threads")], run_dir=str(tmp_path))):
        pass
    assert unused_warnings(caplog) == []


def test_the_readme_lists_what_the_code_warns_about():
    text = README.read_text()
    match = re.search(r"Accepted for Parsl compatibility but not used: (.*?)\(`drain_period`", text, re.S)
    assert match, "README: the list under 'The high-throughput executor' is gone"
    named = set(re.findall(r"`(\w+)`", match.group(1)))
    warned = set(NON_DEFAULTS) | set(Config(usage_tracking=1, project_name="p").unused_parameters()) | set(
        MonitoringHub(hub_address=1, hub_port=1, hub_port_range=1).unused_parameters())
    assert named - {"False", "Config", "ThreadPoolExecutor", "MonitoringHub"} == warned | set(
        ThreadPoolExecutor(working_dir="/x").unused_parameters())
    for name in NON_DEFAULTS:  # each really is named when set
        assert name in HighThroughputExecutor(**{name: NON_DEFAULTS[name]}).unused_parameters()
