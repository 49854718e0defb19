"""A slow network in front of a real API server: every request arrives ``delay`` late.

A TCP proxy (TLS passes through untouched) that holds each chunk the client
sends for ``delay`` seconds before forwarding it. Tests that need an apply to
take a while (to find its lock held, to kill the worker in the middle of it)
point a kubeconfig at it with ``kubeconfig(path)``: the API server, the
objects and the apply are real, only the wire is slow.

``stop_forwarding()`` makes it a server that hangs: connections are still
accepted (as a frozen API server's kernel accepts them), nothing sent either
way is forwarded until ``start_forwarding()``. ``connections`` counts the
connections clients opened.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import yaml


class SlowProxy:
    def __init__(self, upstream: str, delay: float) -> None:
        url = urlparse(upstream)
        self.upstream = (url.hostname or "127.0.0.1", url.port or 443)
        self.delay = delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closed = threading.Event()
        self.forwarding = threading.Event()
        self.forwarding.set()
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True, name="slowproxy").start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def kubeconfig(self, original: Path, into: Path) -> Path:
        """A copy of ``original`` whose clusters point at this proxy."""
        config = yaml.safe_load(original.read_text())
        for cluster in config.get("clusters") or []:
            cluster["cluster"]["server"] = self.url
        into.write_text(yaml.safe_dump(config))
        return into

    def stop_forwarding(self) -> None:
        self.forwarding.clear()

    def start_forwarding(self) -> None:
        self.forwarding.set()

    def close(self) -> None:
        self.closed.set()
        self.forwarding.set()
        self.listener.close()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            threading.Thread(target=self._pipe, args=(client, server, self.delay),
                             daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, 0.0), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, delay: float) -> None:
        try:
            while not self.closed.is_set():
                data = src.recv(65536)
                if not data:
                    break
                if delay:
                    time.sleep(delay)       # the slow wire itself, not a wait in a test
                self.forwarding.wait()      # a hanging server: held until forwarding again
                if self.closed.is_set():
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
