"""Ports for the demo's servers: the one asked for, or the next free one."""

from __future__ import annotations

import socket


def free_port(preferred: int, host: str = "127.0.0.1", tries: int = 20) -> int:
    """`preferred` if nothing listens on it, else the first free one of the next `tries`,
    else one the system picks."""
    for port in range(preferred, min(preferred + tries, 65535) + 1):
        if port and _bindable(host, port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the servers themselves bind: a port in TIME_WAIT is free, one listened on isn't.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True
