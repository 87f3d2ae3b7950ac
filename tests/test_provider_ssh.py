"""SSHProvider against real sshd's (``../shared/backends/ssh.sh``): 127.0.0.1:2222 and host ``h2``.

``h2`` is a network namespace with its own address (``SSH_H2_HOST``) that
reaches this machine only as ``SSH_HOST_ADDR_FROM_H2``; it shares the file
system except ``/home``, so the venv's Python and ``/tmp`` paths (run
directories, certificates) are the same there. The backend is started
before the tests (see ``conftest.py``; its ``ssh_hosts`` fixture gives the facts).
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from parsl_lite import python_app
from parsl_lite.config import Config
from parsl_lite.errors import ConfigurationError
from parsl_lite.executors.htex.errors import ManagerLost
from parsl_lite.executors.htex.executor import HighThroughputExecutor
from parsl_lite.providers import JobState, SSHProvider
from parsl_lite.providers.errors import ProviderError, SubmitException
from parsl_lite.providers.ssh import Observation, parse_probe, probe_command
from parsl_lite.providers.ssh_channel import SSHConnection, SSHSettings, SSHTarget, parse_target

from .conftest import wait_for

@pytest.fixture
def hosts(ssh_hosts):
    """``host:port`` of the loopback host and of h2."""
    return (f"{ssh_hosts['SSH_HOST']}:{ssh_hosts['SSH_PORT']}",
            f"{ssh_hosts['SSH_H2_HOST']}:{ssh_hosts['SSH_H2_PORT']}")


@pytest.fixture
def make_provider(ssh_hosts, tmp_path):
    """Build SSHProviders that log in as the backend's root user; cancel their jobs and close them after."""
    made: list[SSHProvider] = []

    def _make(hostnames, **kwargs) -> SSHProvider:
        options = dict(username=ssh_hosts["SSH_USER"], key_filename=ssh_hosts["SSH_KEY"],
                       known_hosts=ssh_hosts["SSH_KNOWN_HOSTS"], remote_script_dir=str(tmp_path / "remote"))
        options.update(kwargs)
        provider = SSHProvider(list(hostnames), **options)
        provider.script_dir = str(tmp_path / "local")
        made.append(provider)
        return provider

    yield _make
    for provider in made:
        provider.cancel(list(provider._jobs))
        provider.close()


@pytest.fixture
def shell(ssh_hosts):
    """Run a command on a host (``"host:port"``) through a connection of the test's own."""
    connections: dict[str, SSHConnection] = {}
    settings = SSHSettings(ssh_hosts["SSH_USER"], ssh_hosts["SSH_KEY"], ssh_hosts["SSH_KNOWN_HOSTS"], False, 30.0)

    def _run(host: str, command: str) -> str:
        if host not in connections:
            connections[host] = SSHConnection(parse_target(host, 22), settings, "test")
        result = connections[host].run(command)
        assert result.exit_code == 0, result
        return result.stdout

    yield _run
    for connection in connections.values():
        connection.close()


def pid_of(job_id: str) -> int:
    return int(re.search(r"-pid(\d+)$", job_id).group(1))


def processes(shell, host: str) -> list[tuple[int, int, str, str]]:
    """``(pid, pgid, stat, args)`` of the host's live (non-zombie) processes.

    The loopback host is this machine, so psutil answers; other hosts run ``ps``.
    """
    if host.startswith("127."):
        found = []
        for proc in psutil.process_iter(["pid", "status", "cmdline"]):
            try:
                if proc.info["status"] != psutil.STATUS_ZOMBIE:
                    found.append((proc.pid, os.getpgid(proc.pid), "", " ".join(proc.info["cmdline"] or ())))
            except (psutil.Error, OSError):
                continue
        return found
    rows = [line.split(None, 3) for line in shell(host, "ps -eo pid=,pgid=,stat=,args=").splitlines()]
    return [(int(r[0]), int(r[1]), r[2], r[3] if len(r) > 3 else "") for r in rows if not r[2].startswith("Z")]


def leftovers(shell, host: str, marker: str = "", pgid: int = 0) -> list:
    return [p for p in processes(shell, host) if (marker and marker in p[3]) or (pgid and p[1] == pgid)]


def assert_nothing_left(shell, hosts, marker: str = "", pgid: int = 0) -> None:
    for host in hosts:
        try:
            wait_for(lambda: not leftovers(shell, host, marker, pgid), 20, f"our processes on {host} to end", 0.2)
        except AssertionError:
            raise AssertionError(f"left running on {host}: {leftovers(shell, host, marker, pgid)}") from None


# ------------------------------------------------------------ jobs on both hosts


def test_submit_status_cancel_on_both_hosts(make_provider, hosts, shell, tmp_path):
    provider = make_provider(hosts, max_blocks=2)
    flag = tmp_path / "go"
    job_ids = [provider.submit(f"hostname > {tmp_path}/host-$PARSL_LAUNCHER_RANK-$$; "
                               f"while [ ! -e {flag} ]; do sleep 0.05; done", 1, f"plain-{i}") for i in range(2)]
    assert "127.0.0.1" in job_ids[0] and "10.200.0.2" in job_ids[1]  # round-robin
    statuses = wait_for(lambda: (s := provider.status(job_ids)) and all(x.state == JobState.RUNNING for x in s) and s,
                        what="both jobs running")
    assert all(not s.terminal for s in statuses)
    for host, job_id in zip(hosts, job_ids):  # each job leads its own process group and session
        pid = pid_of(job_id)
        assert shell(host, f"ps -o pgid=,sid= -p {pid}").split() == [str(pid), str(pid)]
    names = wait_for(lambda: len(files := list(tmp_path.glob("host-*"))) == 2 and files, what="hostname files")
    assert {p.read_text().strip() for p in names} == {socket.gethostname(), "h2"}

    assert provider.cancel(job_ids) == [True, True]
    assert [s.state for s in provider.status(job_ids)] == [JobState.CANCELLED] * 2
    for host, job_id in zip(hosts, job_ids):
        assert_nothing_left(shell, [host], provider._token, pid_of(job_id))


def test_exit_codes_are_reported(make_provider, hosts, shell):
    provider = make_provider(hosts[1:], max_blocks=4)
    ok = provider.submit("echo fine; sleep 300 &", 1, "ok")  # leaves a process behind
    failing = provider.submit("echo 'no such input' >&2; exit 7", 1, "failing")
    signalled = provider.submit("kill -9 $$", 1, "signalled")
    final = wait_for(lambda: (s := provider.status([ok, failing, signalled])) and all(x.terminal for x in s) and s,
                     what="the three jobs to end")
    assert (final[0].state, final[0].exit_code) == (JobState.COMPLETED, 0)
    assert "fine" in final[0].stdout_summary
    assert (final[1].state, final[1].exit_code) == (JobState.FAILED, 7)
    assert "exit code 7 on root@10.200.0.2:22" in final[1].message and "no such input" in final[1].message
    assert "no such input" in final[1].stderr_summary
    assert final[2].state == JobState.FAILED and final[2].exit_code == 137 and "SIGKILL" in final[2].message
    assert provider.status([failing]) == [final[1]]  # final: no more probing
    assert provider.cancel([failing]) == [True] and provider.status([failing])[0].state == JobState.FAILED
    assert_nothing_left(shell, hosts[1:], pgid=pid_of(ok))  # what a job leaves behind is stopped when it ends


def test_job_killed_from_outside_is_failed_without_exit_code(make_provider, hosts, shell):
    provider = make_provider(hosts[:1])
    job_id = provider.submit("sleep 300", 1, "victim")
    wait_for(lambda: provider.status([job_id])[0].state == JobState.RUNNING, what="the job to run")
    shell(hosts[0], f"kill -9 -- -{pid_of(job_id)}")
    status = wait_for(lambda: (s := provider.status([job_id])[0]).terminal and s, what="the job to be seen gone")
    assert status.state == JobState.FAILED and status.exit_code is None
    assert "without recording an exit code" in status.message and "root@127.0.0.1:2222" in status.message


def test_walltime_stops_the_job(make_provider, hosts, shell):
    provider = make_provider(hosts[:1], walltime="00:00:01")
    job_id = provider.submit("sleep 300", 1, "long")
    status = wait_for(lambda: (s := provider.status([job_id])[0]).terminal and s, timeout_s=10,
                      what="the walltime to end the job", interval_s=0.2)
    assert status.state == JobState.TIMEOUT
    assert_nothing_left(shell, hosts[:1], pgid=pid_of(job_id))


def test_connection_is_pooled_and_reopened(make_provider, hosts):
    provider = make_provider(hosts[:1], max_blocks=2)
    first = provider.submit("sleep 300", 1, "a")
    connection = provider._connections[0]
    transport = connection.transport()
    second = provider.submit("sleep 300", 1, "b")
    assert connection.transport() is transport  # one connection for both jobs
    transport.close()  # the connection breaks behind the provider's back
    assert [s.state for s in provider.status([first, second])] == [JobState.RUNNING] * 2
    assert connection.transport() is not transport
    assert provider.cancel([first, second]) == [True, True]


def test_unreachable_host_gives_unknown_then_provider_error(make_provider, hosts, ssh_hosts):
    provider = make_provider(hosts, max_blocks=2)
    job_ids = [provider.submit("sleep 300", 1, name) for name in ("on-loopback", "on-h2")]
    connection = provider._connections[0]
    connection.close()
    connection.target = SSHTarget("127.0.0.1", 1)  # as if the host went away
    try:
        lost, fine = provider.status(job_ids)
        assert lost.state == JobState.UNKNOWN and fine.state == JobState.RUNNING
        assert lost.message.startswith("cannot ask root@127.0.0.1:1: cannot connect: Connection refused")
        with pytest.raises(ProviderError, match=r"^provider 'ssh': root@127\.0\.0\.1:1: cannot connect: "
                                                r"Connection refused"):
            provider.status(job_ids[:1])
    finally:
        connection.target = SSHTarget("127.0.0.1", int(ssh_hosts["SSH_PORT"]))
    assert [s.state for s in provider.status(job_ids)] == [JobState.RUNNING] * 2


# ------------------------------------------------------------ bad input


@pytest.mark.parametrize("host, pattern", [
    ("no-such-host.invalid:22", r"root@no-such-host\.invalid:22: cannot connect: cannot resolve the host name"),
    ("127.0.0.1:2223", r"root@127\.0\.0\.1:2223: cannot connect: .*[Cc]onnection refused .*is sshd running"),
    ("10.200.0.99:22", r"root@10\.200\.0\.99:22: cannot connect: (no answer within 2 s|No route to host)"),
])
def test_wrong_host_or_port(make_provider, host, pattern):
    provider = make_provider([host], cmd_timeout=2)
    with pytest.raises(SubmitException, match=pattern) as info:
        provider.submit("true", 1, "never")
    assert "no host could start the job" in str(info.value) and "'never'" in str(info.value)


def test_refused_key(make_provider, hosts, tmp_path):
    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    provider = make_provider(hosts[:1], key_filename=str(key))
    with pytest.raises(SubmitException, match=r"root@127\.0\.0\.1:2222: cannot connect: authentication refused "
                                              r".*did not accept key .*stranger for this user"):
        provider.submit("true", 1, "never")


def test_unknown_host_key_is_refused_unless_accepted(make_provider, hosts, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    provider = make_provider(hosts[1:], known_hosts=str(empty))
    with pytest.raises(SubmitException) as info:
        provider.submit("true", 1, "never")
    message = str(info.value)
    assert "root@10.200.0.2:22: cannot connect: unknown host key for 10.200.0.2 (ssh-ed25519 SHA256:" in message
    assert f"not found in {empty}" in message and "ssh-keyscan -p 22 10.200.0.2" in message
    assert "accept_unknown_hosts=True" in message
    trusting = make_provider(hosts[1:], known_hosts=str(empty), accept_unknown_hosts=True)
    job_id = trusting.submit("true", 1, "fine")
    wait_for(lambda: trusting.status([job_id])[0].state == JobState.COMPLETED, what="the job to complete")
    assert empty.read_text() == ""  # an accepted key is never written back


def test_a_dead_host_is_skipped_for_the_next(make_provider, hosts):
    provider = make_provider(["127.0.0.1:2223", hosts[1]], max_blocks=2)
    job_id = provider.submit("true", 1, "fine")
    assert "10.200.0.2" in job_id


@pytest.mark.parametrize("kwargs, field", [
    (dict(hostnames="localhost"), "hostnames"),
    (dict(hostnames=[]), "hostnames"),
    (dict(hostnames=["host:notaport"]), "hostnames"),
    (dict(hostnames=["host:70000"]), "hostnames"),
    (dict(hostnames=["host"], port=0), "port"),
    (dict(hostnames=["host"], key_filename="/no/such/key"), "key_filename"),
    (dict(hostnames=["host"], known_hosts="/no/such/known_hosts"), "known_hosts"),
    (dict(hostnames=["host"], cmd_timeout=0), "cmd_timeout"),
    (dict(hostnames=["host"], max_blocks=0, min_blocks=1), "max_blocks"),
    (dict(hostnames=["host"], walltime="ten minutes"), "walltime"),
])
def test_bad_configuration_is_refused(kwargs, field):
    with pytest.raises(ConfigurationError) as info:
        SSHProvider(**kwargs)
    assert info.value.field == field


def test_tunnel_refuses_a_non_loopback_address(make_provider, hosts):
    provider = make_provider(hosts[1:], tunnel=True)
    with pytest.raises(SubmitException, match="leave HighThroughputExecutor\\(address=\\) unset"):
        provider.submit("python -m pool --address 10.200.0.1 --port 54321", 1, "never")


def test_probe_parsing():
    observed = parse_probe("12 run Ss\n13 exit 0\n14 run T\n15 exit 3\n16 gone\n17 exit \nnoise\n")
    assert observed == {12: Observation(alive=True), 13: Observation(alive=False, exit_code=0),
                        14: Observation(alive=True, stopped=True), 15: Observation(alive=False, exit_code=3),
                        16: Observation(alive=False), 17: Observation(alive=False)}


def test_probe_runs_in_bash(tmp_path):
    """The probe's shell text against local processes: running, ended with a code, and vanished."""
    running = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        (tmp_path / "ended.ec").write_text("7\n")
        jobs = [(running.pid, str(tmp_path / "running.ec")), (2**22 + 1, str(tmp_path / "ended.ec")),
                (2**22 + 2, str(tmp_path / "vanished.ec"))]
        out = subprocess.run(["bash", "-c", probe_command(jobs, 0.1)], capture_output=True, text=True, timeout=10)
        assert out.returncode == 0, out.stderr
        assert parse_probe(out.stdout) == {running.pid: Observation(alive=True),
                                           2**22 + 1: Observation(alive=False, exit_code=7),
                                           2**22 + 2: Observation(alive=False)}
    finally:
        running.kill()
        running.wait()


# ------------------------------------------------------------ the high-throughput executor on SSH hosts


@python_app
def pi(n):
    from random import random
    return 4 * sum(random() ** 2 + random() ** 2 < 1 for _ in range(n)) / n


@python_app
def mean(*xs):
    return sum(xs) / len(xs)


@python_app
def host_name(delay_s):
    import socket
    import time
    time.sleep(delay_s)
    return socket.gethostname()


@python_app
def wait_forever(flag):
    import pathlib
    import time
    pathlib.Path(flag).touch()
    time.sleep(300)


def htex_config(provider, run_dir, retries: int = 0, **executor_kwargs) -> Config:
    executor = HighThroughputExecutor(label="htex_ssh", provider=provider, max_workers_per_node=1,
                                      heartbeat_period=1, heartbeat_threshold=4, **executor_kwargs)
    return Config(executors=[executor], run_dir=run_dir, strategy_period=0.5, retries=retries)


def test_pi_on_two_hosts(make_provider, make_dfk, hosts, shell, ssh_hosts, run_dir):
    provider = make_provider(hosts, init_blocks=2, min_blocks=2, max_blocks=2)
    dfk = make_dfk(htex_config(provider, run_dir, address=ssh_hosts["SSH_HOST_ADDR_FROM_H2"]))
    executor = dfk.executors["htex_ssh"]
    wait_for(lambda: executor.connected_workers >= 2, 40, "a pool on each host to connect", 0.1)
    names = [host_name(0.3) for _ in range(6)]
    assert {f.result(timeout=30) for f in names} == {socket.gethostname(), "h2"}
    estimate = mean(*[pi(10**5) for _ in range(8)]).result(timeout=30)
    assert 3.0 < estimate < 3.3
    dfk.cleanup()
    assert_nothing_left(shell, hosts, run_dir)


def test_pi_through_a_tunnel(make_provider, make_dfk, hosts, shell, run_dir):
    provider = make_provider(hosts[1:], tunnel=True)  # h2 connects to its own 127.0.0.1, forwarded to us
    dfk = make_dfk(htex_config(provider, run_dir))
    assert 3.0 < mean(*[pi(10**5) for _ in range(4)]).result(timeout=40) < 3.3
    assert host_name(0).result(timeout=10) == "h2"
    dfk.cleanup()
    assert_nothing_left(shell, hosts[1:], run_dir)


def test_pool_killed_behind_our_back_fails_its_task(make_provider, make_dfk, hosts, shell, run_dir, tmp_path):
    provider = make_provider(hosts[:1])
    provider.status_poll_interval_s = 0.5
    dfk = make_dfk(htex_config(provider, run_dir))
    executor = dfk.executors["htex_ssh"]
    flag = tmp_path / "started"
    future = wait_forever(str(flag))
    wait_for(flag.exists, 40, "the task to start on the pool", 0.1)
    (job_id,) = executor.blocks.values()
    shell(hosts[0], f"kill -9 -- -{pid_of(job_id)}")  # the whole block: wrapper, pool and worker
    with pytest.raises(Exception) as info:
        future.result(timeout=30)
    assert isinstance(info.value, ManagerLost), repr(info.value)
    assert "killed from outside parsl_lite" in str(info.value) or "heartbeat" in str(info.value)
    dfk.cleanup()
    assert_nothing_left(shell, hosts[:1], run_dir)


def test_pool_killed_behind_our_back_is_retried(make_provider, make_dfk, hosts, shell, run_dir, tmp_path):
    provider = make_provider(hosts[:1])
    provider.status_poll_interval_s = 0.5
    dfk = make_dfk(htex_config(provider, run_dir, retries=1))
    executor = dfk.executors["htex_ssh"]
    flag = tmp_path / "started"
    future = survives_second_try(str(flag))
    wait_for(flag.exists, 40, "the task to start on the pool", 0.1)
    (job_id,) = executor.blocks.values()
    shell(hosts[0], f"kill -9 -- -{pid_of(job_id)}")
    assert future.result(timeout=50) == "second try"  # on a new block
    dfk.cleanup()
    assert_nothing_left(shell, hosts[:1], run_dir)


@python_app
def survives_second_try(flag):
    import pathlib
    import time
    path = pathlib.Path(flag)
    if path.exists():
        return "second try"
    path.touch()
    time.sleep(300)


# ------------------------------------------------------------ the shipped configs and example

REPO = Path(__file__).resolve().parents[1]


def test_configs_load(ssh_hosts):
    from parsl_lite.config_loader import load_config

    for name in ("ssh.toml", "ssh.py"):
        (executor,) = load_config(str(REPO / "configs" / name)).executors
        assert executor.address == ssh_hosts["SSH_HOST_ADDR_FROM_H2"]
        assert isinstance(executor.provider, SSHProvider)
        loopback = f"{ssh_hosts['SSH_HOST']}:{ssh_hosts['SSH_PORT']}"
        assert executor.provider.hostnames == [loopback, ssh_hosts["SSH_H2_HOST"]]


def test_pi_example_runs_unchanged_on_the_ssh_config(ssh_hosts, shell, hosts, tmp_path):
    if ssh_hosts["SSH_KEY"] != "/tmp/plite-ssh/id_ed25519":
        pytest.skip("configs/ssh.toml names the backend's default key path; PLITE_SSH_DIR moved it")
    config = tmp_path / "ssh.toml"  # the same config, with job files kept out of root's home
    config.write_text((REPO / "configs" / "ssh.toml").read_text()
                      .replace('".parsl_lite/jobs"', f'"{tmp_path}/remote"'))
    done = subprocess.run([sys.executable, str(REPO / "examples" / "pi.py"), str(config)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.fullmatch(r"pi is about 3\.1\d+\n", done.stdout)
    assert_nothing_left(shell, hosts, str(tmp_path))


def test_ssh_blocks_scale_out_under_load_and_in_when_idle(make_provider, make_dfk, hosts, shell, ssh_hosts,
                                                         run_dir):
    provider = make_provider(hosts, init_blocks=0, min_blocks=0, max_blocks=2)
    provider.status_poll_interval_s = 0.2
    executor = HighThroughputExecutor(label="htex_ssh", provider=provider, max_workers_per_node=1,
                                      heartbeat_period=1, heartbeat_threshold=4,
                                      address=ssh_hosts["SSH_HOST_ADDR_FROM_H2"])
    dfk = make_dfk(Config(executors=[executor], run_dir=run_dir, strategy="htex_auto_scale",
                          strategy_period=0.2, max_idletime=0.5))
    futures = [host_name(1.0) for _ in range(4)]
    wait_for(lambda: len(executor.blocks) == 2, 40, "scale-out to a block on each host", 0.1)
    assert {f.result(timeout=45) for f in futures} <= {socket.gethostname(), "h2"}
    wait_for(lambda: not executor.blocks, 40, "idle blocks to be released", 0.1)
    dfk.cleanup()
    assert_nothing_left(shell, hosts, run_dir)
