"""Relay stdin/stdout to a TCP server: ``python relay.py HOST PORT``.

QEMU's user-mode network runs this for each guest connection to a ``guestfwd``
address (``guestfwd=tcp:ADDR:PORT-cmd:python relay.py HOST PORT``) with the
connection as stdin, stdout and stderr. (A ``guestfwd`` to a ``tcp:`` chardev would
open a single host connection when QEMU starts and serve only the first guest
connection, which is useless for HTTP clients that connect once per request.)

Standard library only, and run with ``python -I`` from its file path, so it works
without the package being importable. Nothing may be written to stderr: it is the
guest's connection.
"""

from __future__ import annotations

import os
import socket
import sys
import threading

IDLE_TIMEOUT = 60.0


def relay(host: str, port: int, fd_in: int = 0, fd_out: int = 1) -> None:
    sock = socket.create_connection((host, port), timeout=IDLE_TIMEOUT)

    def upstream() -> None:
        # guest -> server; on guest EOF half-close towards the server, keep reading.
        try:
            while True:
                data = os.read(fd_in, 65536)
                if not data:
                    break
                sock.sendall(data)
        except OSError:
            pass
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    threading.Thread(target=upstream, daemon=True).start()
    # server -> guest, until the server closes.
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            view = memoryview(data)
            while view:
                n = os.write(fd_out, view)
                view = view[n:]
    except OSError:
        pass
    sock.close()


def main(argv: list[str]) -> int:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    if len(argv) != 3:
        return 2
    try:
        relay(argv[1], int(argv[2]))
    except OSError:
        return 1
    return 0


if __name__ == "__main__":
    # os._exit: do not wait for the upstream thread blocked on the guest side.
    os._exit(main(sys.argv))
