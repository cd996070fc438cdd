"""Addresses and sockets as every echobench part uses them: splitting the address forms that
our programs print, connecting, a free port for servers that cannot bind port 0, and waiting
until a port accepts."""
import socket
import time


def split_addr(addr):
    """'127.0.0.1:P', '[::1]:P', 'HOST:P', 'udp:127.0.0.1:P' -> (host, port) with IPv6
    brackets removed; 'unix:/path' -> ('unix', '/path'). ValueError when there is no port."""
    if addr.startswith("unix:"):
        return "unix", addr[5:]
    if addr.startswith("udp:"):
        addr = addr[4:]
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"no port in address '{addr}'")
    return host.strip("[]"), int(port)


def connect(addr, timeout):
    """A connected TCP (TCP_NODELAY) or unix stream socket to one of split_addr's forms."""
    host, port = split_addr(addr)
    if host == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(port)
        except OSError:
            s.close()
            raise
        return s
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def free_port(host="127.0.0.1"):
    """A port nothing listens on right now (bound, then closed: connecting is refused). Only for
    servers that cannot bind port 0 and report it: the caller must cope with losing a race."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_accepting(addr, proc=None, timeout=10.0):
    """Waits until addr ('HOST:PORT', or a bare port on 127.0.0.1) takes a connection. False if
    proc (a Popen) exits first or time runs out."""
    if isinstance(addr, int):
        addr = f"127.0.0.1:{addr}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with connect(addr, 0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False
