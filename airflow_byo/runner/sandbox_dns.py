"""
DNS for a sandbox on a user-mode network (:mod:`.sandbox_network`): its ``/etc/resolv.conf``, and
whether pasta must forward its queries.

The sandbox reads the host's ``/etc/resolv.conf``. A resolver on another machine just works.
A resolver on the host's loopback (systemd-resolved's ``127.0.0.53``, dnsmasq's ``127.0.0.1``)
is not reachable from the namespace, so :func:`sandbox_resolv_conf` gives the sandbox a copy that
names :data:`DNS_FORWARD_ADDRESS` instead, and pasta (``--dns-forward``) sends UDP port 53 to that
address -- and only that -- to the host's first IPv4 resolver. DNS over TCP is not forwarded:
answers too big for one datagram (512 bytes, ~1200 with ``options edns0``), which the resolver
truncates for a retry over TCP, fail.

Stdlib only at import: the worker imports it next to ``sandbox``.
"""

from __future__ import annotations

import contextlib
import ipaddress

__all__ = ["DNS_FORWARD_ADDRESS", "forwards_dns", "sandbox_resolv_conf"]

#: Where a sandbox sends DNS queries when the host's resolver is on its loopback. Link-local, so it
#: names no real machine, and it is not the cloud metadata address (169.254.169.254).
DNS_FORWARD_ADDRESS = "169.254.1.53"

_HOST_RESOLV_CONF = "/etc/resolv.conf"  # pasta reads this path itself; it cannot be told another


def _forwarded_resolver(resolv_conf: str) -> str | None:
    """The host resolver pasta forwards to, if the sandbox cannot reach it directly, else None.

    pasta forwards to the *first* IPv4 ``nameserver`` of the file, so only that one decides.
    """
    for line in resolv_conf.splitlines():
        fields = line.split()
        if len(fields) < 2 or fields[0] != "nameserver":
            continue
        try:
            address = ipaddress.ip_address(fields[1].split("%")[0])
        except ValueError:
            continue
        if address.version == 4:
            return str(address) if address.is_loopback else None
    return None


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""  # no resolver configured: the sandbox has none either


def forwards_dns() -> bool:
    """Whether pasta must forward DNS to :data:`DNS_FORWARD_ADDRESS` (the host's resolver is on loopback)."""
    return _forwarded_resolver(_read(_HOST_RESOLV_CONF)) is not None


def sandbox_resolv_conf(path: str = _HOST_RESOLV_CONF) -> str | None:
    """
    What the sandbox's ``/etc/resolv.conf`` must say, when the host's own file would not work.

    :param path: the host's resolver configuration (the default is the only one pasta reads).
    :return: ``None`` when the host's file can be bound as it is (its first IPv4 resolver is on
        another machine); else a copy naming :data:`DNS_FORWARD_ADDRESS` first, without the
        loopback resolvers, keeping ``search``/``options`` -- bind it read-only at ``/etc/resolv.conf``.
    """
    text = _read(path)
    if _forwarded_resolver(text) is None:
        return None
    lines = [f"nameserver {DNS_FORWARD_ADDRESS}  # the host's resolver, forwarded by pasta"]
    for line in text.splitlines():
        fields = line.split()
        if fields[:1] == ["nameserver"] and len(fields) > 1:
            with contextlib.suppress(ValueError):
                if ipaddress.ip_address(fields[1].split("%")[0]).is_loopback:
                    continue
        lines.append(line)
    return "\n".join(lines) + "\n"
