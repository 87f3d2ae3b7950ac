"""One pooled SSH connection per host, for the SSH provider (paramiko inside, our errors outside).

:class:`SSHConnection` opens its connection on first use and again after it
broke, runs commands with a timeout, writes files by SFTP and keeps remote
port forwards (re-requested after each reconnect). Every paramiko or socket
error leaves this module as :class:`SSHHostError`, which names the user, host
and port and says why, in words a user can act on (STYLE §10).
"""
from __future__ import annotations

import getpass
import io
import logging
import os
import shlex
import socket
import threading
from dataclasses import dataclass
from typing import NamedTuple, Optional

try:
    import paramiko
except ImportError:  # the ``ssh`` extra is not installed: SSHProvider refuses to be built (OptionalModuleMissing)
    paramiko = None  # type: ignore[assignment]

from parsl_lite.providers.errors import ProviderError
from parsl_lite.providers.ssh_tunnel import forward_handler

logger = logging.getLogger(__name__)

_KEEPALIVE_S = 30


class SSHTarget(NamedTuple):
    """Where one host's sshd listens."""

    host: str
    port: int


def parse_target(text: str, default_port: int) -> SSHTarget:
    """``host``, ``host:port`` or ``[v6addr]:port`` into an :class:`SSHTarget`.

    Raises:
        ValueError: an empty host or a port outside 1..65535.
    """
    host, port = text.strip(), default_port
    if host.startswith("["):
        inner, _, rest = host[1:].partition("]")
        host, port_text = inner, rest[1:] if rest.startswith(":") else ""
        port = int(port_text) if port_text else default_port
    elif host.count(":") == 1:
        host, port_text = host.split(":")
        if not port_text.isdigit():
            raise ValueError(f"{text!r}: the port after ':' must be a number")
        port = int(port_text)
    if not host:
        raise ValueError(f"{text!r}: empty host name")
    if not 0 < port < 65536:
        raise ValueError(f"{text!r}: port {port} is outside 1..65535")
    return SSHTarget(host, port)


@dataclass(frozen=True, slots=True)
class SSHSettings:
    """How to log in: the same for every host of a provider."""

    username: Optional[str]
    key_filename: Optional[str]
    known_hosts: Optional[str]
    accept_unknown_hosts: bool
    timeout_s: float


class SSHHostError(ProviderError):
    """A host could not be reached, refused us, or a command on it failed.

    Args:
        provider: the provider's label.
        where: ``user@host:port``.
        reason: what went wrong and, when known, how to fix it.
    """

    def __init__(self, provider: str, where: str, reason: str) -> None:
        self.where = where
        super().__init__(provider, f"{where}: {reason}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What a remote command gave back."""

    exit_code: int
    stdout: str
    stderr: str


class _UnknownHostKey(Exception):
    """Raised by our host key policy inside paramiko; translated at the boundary."""

    def __init__(self, hostname: str, key: "paramiko.PKey") -> None:
        super().__init__(hostname)
        self.hostname = hostname
        self.key = key


def _host_key_policy(accept_unknown: bool) -> "paramiko.MissingHostKeyPolicy":
    """Refuse unknown host keys (raising :class:`_UnknownHostKey`), or keep them in memory only.

    Accepted keys are never written to a file: the user's known_hosts stays as it is.
    """
    class _Policy(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
            if not accept_unknown:
                raise _UnknownHostKey(hostname, key)
            logger.warning("accepting unknown host key of %s (%s %s) because accept_unknown_hosts=True",
                           hostname, key.get_name(), key.fingerprint)
            client.get_host_keys().add(hostname, key.get_name(), key)

    return _Policy()


class SSHConnection:
    """The connection to one host: opened lazily, re-opened when it broke. Thread-safe.

    Args:
        target: host and port.
        settings: user, key, host key checking, timeout.
        provider: the provider's label, for error messages.
    """

    def __init__(self, target: SSHTarget, settings: SSHSettings, provider: str) -> None:
        self.target = target
        self.settings = settings
        self.provider = provider
        self._client: Optional[paramiko.SSHClient] = None
        self._lock = threading.Lock()  # one (re)connect at a time
        self._forwards: dict[int, tuple[str, int]] = {}  # remote port -> local (address, port)
        self._remote_dirs: dict[str, str] = {}

    @property
    def where(self) -> str:
        """``user@host:port``, for messages."""
        host = f"[{self.target.host}]" if ":" in self.target.host else self.target.host
        return f"{self.settings.username or getpass.getuser()}@{host}:{self.target.port}"

    # ------------------------------------------------------------ connection

    def transport(self) -> paramiko.Transport:
        """The live transport, connecting (and re-requesting forwards) if needed.

        Raises:
            SSHHostError: the host cannot be reached or refused us.
        """
        with self._lock:
            client = self._client
            if client is not None:
                transport = client.get_transport()
                if transport is not None and transport.is_active():
                    return transport
                logger.info("SSH connection to %s was lost; reconnecting", self.where)
                client.close()
                self._client = None
            client = self._connect()
            transport = client.get_transport()
            assert transport is not None
            try:
                for remote_port, (address, port) in self._forwards.items():
                    self._request_forward(transport, remote_port, address, port)
            except SSHHostError:
                client.close()
                raise
            self._client = client
            return transport

    def _connect(self) -> paramiko.SSHClient:
        s = self.settings
        client = paramiko.SSHClient()
        if s.known_hosts:
            client.load_system_host_keys(s.known_hosts)  # "system" keys are never written back
        else:
            client.load_system_host_keys()
        client.set_missing_host_key_policy(_host_key_policy(s.accept_unknown_hosts))
        own_key = s.key_filename is not None
        try:
            client.connect(self.target.host, self.target.port, username=s.username, key_filename=s.key_filename,
                           timeout=s.timeout_s, banner_timeout=s.timeout_s, auth_timeout=s.timeout_s,
                           channel_timeout=s.timeout_s, look_for_keys=not own_key, allow_agent=not own_key)
        except (paramiko.SSHException, _UnknownHostKey, OSError, EOFError) as exc:
            client.close()
            raise SSHHostError(self.provider, self.where, f"cannot connect: {self._reason(exc)}") from exc
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(_KEEPALIVE_S)
        logger.debug("connected to %s", self.where)
        return client

    def _reason(self, exc: BaseException) -> str:
        """A paramiko or socket error in words, with the likely fix."""
        s = self.settings
        if isinstance(exc, _UnknownHostKey):
            source = s.known_hosts or "~/.ssh/known_hosts"
            scan = f"ssh-keyscan -p {self.target.port} {self.target.host}"
            return (f"unknown host key for {exc.hostname} ({exc.key.get_name()} {exc.key.fingerprint}), "
                    f"not found in {source}; check the key and add it (`{scan} >> {source}`), "
                    f"or pass accept_unknown_hosts=True to trust any key")
        if isinstance(exc, paramiko.BadHostKeyException):
            return (f"the host key ({exc.key.get_name()} {exc.key.fingerprint}) differs from the one in "
                    f"{s.known_hosts or '~/.ssh/known_hosts'}: the host was reinstalled or someone is in between; "
                    f"remove the old line only if you know why it changed")
        if isinstance(exc, paramiko.AuthenticationException):
            key = f"key {s.key_filename}" if s.key_filename else "the keys in ~/.ssh and the agent"
            return (f"authentication refused ({exc}); the server did not accept {key} for this user: "
                    f"check username= and key_filename=, and the user's authorized_keys")
        if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
            errors = "; ".join(sorted({e.strerror or str(e) for e in exc.errors.values()}))
            return f"{errors} (is sshd running there, and is the port right?)"
        if isinstance(exc, socket.gaierror):
            return f"cannot resolve the host name ({exc.strerror})"
        if isinstance(exc, TimeoutError):
            return (f"no answer within {s.timeout_s:g} s (cmd_timeout): the host is down, a firewall drops "
                    f"the packets, or the address is wrong")
        if isinstance(exc, paramiko.SSHException) and "banner" in str(exc).lower():
            return f"no SSH server answered on this port ({exc})"
        if isinstance(exc, OSError):
            return exc.strerror or str(exc)
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

    def close(self) -> None:
        """Close the connection and its forwards. Idempotent; the next call reconnects."""
        with self._lock:
            client, self._client = self._client, None
            self._forwards.clear()
        if client is not None:
            client.close()

    # ------------------------------------------------------------ commands and files

    def run(self, command: str, timeout_s: Optional[float] = None) -> CommandResult:
        """Run a shell command; return its exit code and output.

        A command is sent once: if opening its channel fails the connection is
        re-opened and the channel tried again, but a command that started is
        never repeated.

        Raises:
            SSHHostError: no connection, or no answer within ``timeout_s``.
        """
        timeout = timeout_s or self.settings.timeout_s
        channel = self._open_channel(timeout)
        try:
            channel.settimeout(timeout)
            channel.exec_command(command)
            stdout = channel.makefile("rb").read()
            stderr = channel.makefile_stderr("rb").read()
            code = channel.recv_exit_status()
        except TimeoutError as exc:
            raise SSHHostError(self.provider, self.where,
                               f"command did not finish within {timeout:g} s (cmd_timeout): "
                               f"{_short(command)}") from exc
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHHostError(self.provider, self.where,
                               f"command {_short(command)} broke off: {self._reason(exc)}") from exc
        finally:
            channel.close()
        return CommandResult(code, stdout.decode(errors="replace"), stderr.decode(errors="replace"))

    def _open_channel(self, timeout: float) -> paramiko.Channel:
        for attempt in (1, 2):
            transport = self.transport()
            try:
                return transport.open_session(timeout=timeout)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                if attempt == 2:
                    raise SSHHostError(self.provider, self.where,
                                       f"cannot open a session: {self._reason(exc)}") from exc
                transport.close()  # stale: the next transport() reconnects
        raise AssertionError("unreachable")

    def remote_dir(self, path: str) -> str:
        """Create ``path`` (relative to the login directory unless absolute); return it absolute. Cached."""
        known = self._remote_dirs.get(path)
        if known is not None:
            return known
        quoted = _quote_path(path)
        result = self.run(f"mkdir -p -- {quoted} && cd -- {quoted} && pwd -P")
        if result.exit_code != 0 or not result.stdout.strip():
            raise SSHHostError(self.provider, self.where,
                               f"cannot create the script directory {path!r}: {result.stderr.strip() or 'no output'}")
        absolute = result.stdout.strip().splitlines()[-1]
        self._remote_dirs[path] = absolute
        return absolute

    def put_text(self, path: str, text: str, mode: int = 0o750) -> None:
        """Write a file atomically by SFTP (temporary name, then rename).

        Raises:
            SSHHostError: SFTP refused or failed (full disk, permissions, ...).
        """
        directory, name = os.path.split(path)
        tmp = f"{directory}/.tmp-{name}"
        try:
            with self.transport().open_sftp_client() as sftp:
                sftp.putfo(io.BytesIO(text.encode()), tmp)
                sftp.chmod(tmp, mode)
                sftp.posix_rename(tmp, path)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHHostError(self.provider, self.where, f"cannot write {path} by SFTP: {self._reason(exc)}") from exc

    def read_tail(self, path: str, max_bytes: int) -> Optional[bytes]:
        """The last ``max_bytes`` of a remote file, or None if it is missing.

        Raises:
            SSHHostError: the connection failed.
        """
        try:
            with self.transport().open_sftp_client() as sftp:
                try:
                    size = sftp.stat(path).st_size or 0
                except FileNotFoundError:
                    return None
                with sftp.open(path, "rb") as stream:
                    stream.seek(max(0, size - max_bytes))
                    return stream.read(max_bytes)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHHostError(self.provider, self.where, f"cannot read {path} by SFTP: {self._reason(exc)}") from exc

    # ------------------------------------------------------------ tunnels

    def ensure_forward(self, remote_port: int, local_address: str, local_port: int) -> None:
        """Make ``127.0.0.1:remote_port`` on the host lead to ``local_address:local_port`` here.

        Kept for the life of the connection and requested again after a reconnect.

        Raises:
            SSHHostError: the server refused the forward (port taken there,
                ``AllowTcpForwarding no``).
        """
        transport = self.transport()
        with self._lock:
            if self._forwards.get(remote_port) == (local_address, local_port):
                return
            self._request_forward(transport, remote_port, local_address, local_port)
            self._forwards[remote_port] = (local_address, local_port)

    def _request_forward(self, transport: paramiko.Transport, remote_port: int, address: str, port: int) -> None:
        try:
            transport.request_port_forward("127.0.0.1", remote_port, forward_handler(address, port, self.where))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHHostError(self.provider, self.where,
                               f"the server refused to forward its 127.0.0.1:{remote_port} to us ({exc}): the port "
                               f"is taken on that host, or its sshd has AllowTcpForwarding off") from exc
        logger.info("tunnel: %s 127.0.0.1:%d -> %s:%d here", self.where, remote_port, address, port)


def _quote_path(path: str) -> str:
    """Shell-quote a path, keeping a leading ``~/`` meaning the login directory."""
    if path == "~":
        return "."
    if path.startswith("~/"):
        path = path[2:] or "."
    return shlex.quote(path)


def _short(command: str, limit: int = 120) -> str:
    flat = " ".join(command.split())
    return repr(flat if len(flat) <= limit else flat[:limit] + "...")
