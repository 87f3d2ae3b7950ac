"""Finding an address of this machine that workers can reach: Parsl's ``parsl.addresses``.

Use one as ``HighThroughputExecutor(address=...)``; which one is right
depends on the network between this machine and the workers:

- :func:`address_by_interface` (``"eth0"``, ``"ib0"``...): the address of a named interface.
- :func:`address_by_route`: the address of the interface the default route leaves by.
- :func:`address_by_hostname`: what this machine's host name resolves to.
- :func:`address_by_query`: the public address an outside service sees (behind NAT
  that is the router's, often useless to workers). The only one that talks to the
  network; it fails with :class:`AddressNotFound` within ``timeout`` seconds.
- :func:`get_all_addresses` / :func:`get_any_address`: every address the above
  find / the first one found.

Unlike Parsl, :func:`address_by_route` reads the routing table
(``/proc/net/route`` on Linux) instead of opening a socket towards a public
server, and every failure is an :class:`AddressNotFound` (an ``OSError``) that
says what was tried.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import socket
import threading
import urllib.request
from typing import Callable

import psutil
from typeguard import typechecked

from parsl_lite.errors import ParslError

logger = logging.getLogger(__name__)

__all__ = ["AddressNotFound", "address_by_hostname", "address_by_interface", "address_by_query",
           "address_by_route", "get_all_addresses", "get_any_address"]

# What address_by_query asks (Parsl's service); PARSL_LITE_ADDRESS_QUERY_URL points it elsewhere,
# e.g. at a site's own service.
QUERY_URL = "https://api.ipify.org"
_ROUTE_TABLE = "/proc/net/route"


class AddressNotFound(ParslError, OSError):
    """No address could be found the way that was asked; the message says what was tried."""


def address_by_hostname() -> str:
    """The IPv4 address this machine's host name resolves to.

    Useless to workers that cannot resolve the name, or when it resolves to
    a loopback address (as it often does on laptops).

    Raises:
        AddressNotFound: the name does not resolve.
    """
    name = platform.node()
    try:
        return socket.gethostbyname(name)
    except OSError as exc:
        raise AddressNotFound(f"host name {name!r} does not resolve: {exc}") from exc


@typechecked
def address_by_interface(ifname: str) -> str:
    """The IPv4 address of the network interface ``ifname`` (e.g. ``'eth0'``).

    Raises:
        AddressNotFound: no such interface, or it has no IPv4 address; the
            message lists the interfaces there are.
    """
    interfaces = psutil.net_if_addrs()
    if ifname not in interfaces:
        raise AddressNotFound(f"no network interface {ifname!r}; this machine has {sorted(interfaces)}")
    for entry in interfaces[ifname]:
        if entry.family == socket.AF_INET:
            return entry.address
    raise AddressNotFound(f"network interface {ifname!r} has no IPv4 address")


def address_by_route() -> str:
    """The IPv4 address of the interface that the default route leaves by.

    Read from the kernel's routing table; no packet is sent.

    Raises:
        AddressNotFound: no default route (or no routing table to read).
    """
    try:
        with open(_ROUTE_TABLE) as table:
            rows = [line.split() for line in table.readlines()[1:]]
    except OSError as exc:
        raise AddressNotFound(f"cannot read the routing table {_ROUTE_TABLE}: {exc.strerror or exc}") from exc
    # Columns: Iface Destination Gateway Flags ... Metric Mask; the default route has
    # destination and mask 0. Among several, the lowest metric is the one used.
    defaults = [(int(row[6]), row[0]) for row in rows
                if len(row) > 7 and row[1] == "00000000" and row[7] == "00000000" and int(row[3], 16) & 1]
    if not defaults:
        raise AddressNotFound(f"no default route in {_ROUTE_TABLE}")
    return address_by_interface(min(defaults)[1])


@typechecked
def address_by_query(timeout: float = 30) -> str:
    """The public IPv4 address an outside service reports for this machine.

    Args:
        timeout: seconds to wait for the service (connect and answer) before giving up.

    Raises:
        AddressNotFound: no answer within ``timeout``, no network, or an answer that is not an address.
    """
    url = os.environ.get("PARSL_LITE_ADDRESS_QUERY_URL", QUERY_URL)
    answer: list = []
    # On a thread so that the whole query, name lookup included (which urlopen's
    # timeout does not bound), gives up after ``timeout``.
    asker = threading.Thread(target=_ask, args=(url, timeout, answer), name="parsl_lite-address-query", daemon=True)
    asker.start()
    asker.join(timeout)
    if not answer:
        raise AddressNotFound(f"asking {url} for this machine's address: no answer within {timeout:g} s")
    text = answer[0]
    if isinstance(text, BaseException):
        reason = getattr(text, "reason", text)
        raise AddressNotFound(f"asking {url} for this machine's address failed "
                              f"(timeout {timeout:g} s): {reason}") from text
    if text.startswith("{"):  # services that answer JSON: {"ip": "..."}
        try:
            text = str(json.loads(text).get("ip", ""))
        except (ValueError, AttributeError):
            pass
    try:
        socket.inet_aton(text)
    except OSError:
        raise AddressNotFound(f"{url} answered {text[:40]!r}, which is not an IPv4 address") from None
    return text


def _ask(url: str, timeout: float, answer: list) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            answer.append(response.read(100).decode("ascii", "replace").strip())
    except Exception as exc:  # URLError, timeouts, refused connections, a bad URL: the caller reports it
        answer.append(exc)


def _finders() -> list[tuple[str, Callable[[], str]]]:
    """Every way to find an address, cheapest and most local first."""
    found: list[tuple[str, Callable[[], str]]] = [
        (f"interface {name}", lambda name=name: address_by_interface(name)) for name in psutil.net_if_addrs()]
    found += [("host name", address_by_hostname), ("default route", address_by_route),
              ("query", address_by_query)]
    return found


def get_all_addresses() -> set[str]:
    """Every address found by any means (interfaces, host name, route, query); failures are skipped."""
    addresses: set[str] = set()
    for what, finder in _finders():
        try:
            addresses.add(finder())
        except AddressNotFound as exc:
            logger.debug("no address by %s: %s", what, exc)
    return addresses


def get_any_address() -> str:
    """The first address found, trying interfaces, host name, route and query in turn.

    Raises:
        AddressNotFound: none found (the message lists why each way failed).
    """
    failures = []
    for what, finder in _finders():
        try:
            return finder()
        except AddressNotFound as exc:
            failures.append(f"{what}: {exc}")
    raise AddressNotFound("cannot find any address of this machine: " + "; ".join(failures))
