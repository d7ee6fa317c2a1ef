"""A free TCP port on 127.0.0.1 (a module of its own: `conftest` names more than one module here)."""

import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
