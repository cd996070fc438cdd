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


def sockaddr(addr):
    """(family, address) for socket.connect/bind from one of split_addr's forms (numeric
    hosts; a name resolves through getaddrinfo, first result)."""
    host, port = split_addr(addr)
    if host == "unix":
        return socket.AF_UNIX, port
    family, _, _, _, sa = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    return family, sa


def connect(addr, timeout, nodelay=True, rcvbuf=None, sndbuf=None):
    """A connected stream socket (TCP_NODELAY unless nodelay=False) to one of split_addr's
    forms. rcvbuf/sndbuf are set before connecting (the window scale is fixed by the
    handshake)."""
    family, sa = sockaddr(addr)
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        s.connect(sa)
        if nodelay and family != socket.AF_UNIX:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except BaseException:
        s.close()
        raise
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
