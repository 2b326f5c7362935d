"""Network: no sockets but AF_UNIX, and a network namespace with only lo.

Listeners are started by the test on the host (loopback only, ephemeral
port, or an abstract unix name) and their address goes to the script as
arguments; after the jail has finished the test checks on the host side
that nothing ever arrived.
"""
import errno
import os
import socket

import pytest

from jailsec import run_attack


def _assert_no_connection(listener):
    listener.setblocking(False)
    with pytest.raises(BlockingIOError):
        conn, addr = listener.accept()
        conn.close()
        raise AssertionError("the host listener got a connection from %r" % (addr,))


def test_tcp_to_host_listener_refused_and_listener_untouched(jail):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as lst:
        lst.bind(("127.0.0.1", 0))
        lst.listen(8)
        port = lst.getsockname()[1]
        _, r = run_attack(jail, """
            import socket
            port = int(sys.argv[1])
            def py_connect():
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.settimeout(2)
                s.connect(("127.0.0.1", port))
            report("python_connect", err_of(py_connect))
            report("raw_stream", sysc(41, 2, 1, 0)[1])
            report("raw_dgram", sysc(41, 2, 2, 0)[1])
            report("raw_raw_icmp", sysc(41, 2, 3, 1)[1])
            report("raw_nonblock_cloexec", sysc(41, 2, 1 | 0o4000 | 0o2000000, 0)[1])
            # family with junk in the high half (the kernel reads an int)
            report("raw_high_bits", sysc(41, (1 << 32) | 2, 1, 0)[1])
            report("socketpair_inet", sysc(53, 2, 1, 0, (ctypes.c_int * 2)())[1])
            # an allowed AF_UNIX socket cannot be pointed at an inet address
            u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sin = bytes([2, 0]) + port.to_bytes(2, "big") + bytes([127, 0, 0, 1]) + bytes(8)
            report("unix_to_inet_addr", sysc(42, u.fileno(), sin, len(sin))[1])
            # the host's listening socket is not in this network namespace
            seen = []
            for name in ("tcp", "tcp6"):
                for line in open("/proc/self/net/" + name).read().splitlines()[1:]:
                    seen.append(int(line.split()[1].rsplit(":", 1)[1], 16))
            report("port_visible", port in seen)
        """, script_args=[str(port)])
        _assert_no_connection(lst)
    assert r == {
        "python_connect": errno.EPERM, "raw_stream": errno.EPERM, "raw_dgram": errno.EPERM,
        "raw_raw_icmp": errno.EPERM, "raw_nonblock_cloexec": errno.EPERM,
        "raw_high_bits": errno.EPERM, "socketpair_inet": errno.EPERM,
        "unix_to_inet_addr": errno.EINVAL, "port_visible": False,
    }, r


def test_abstract_unix_socket_of_host_unreachable(jail):
    name = "jailrun-sec-%d-%s" % (os.getpid(), os.urandom(6).hex())
    addr = b"\0" + name.encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as st, \
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as dg, \
            socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sp:
        st.bind(addr)
        st.listen(8)
        dg.bind(addr + b"-dgram")
        sp.bind(addr + b"-seqpacket")
        sp.listen(8)
        _, r = run_attack(jail, """
            import socket
            addr = b"\\0" + sys.argv[1].encode()
            def conn(kind, a):
                s = socket.socket(socket.AF_UNIX, kind)
                s.settimeout(2)
                s.connect(a)
                s.send(b"hello from the jail")
            report("stream", err_of(conn, socket.SOCK_STREAM, addr))
            report("seqpacket", err_of(conn, socket.SOCK_SEQPACKET, addr + b"-seqpacket"))
            d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            report("dgram", err_of(d.sendto, b"hello from the jail", addr + b"-dgram"))
            # the name is free in the jail's namespace: binding it works
            b = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            report("bind_same_name", err_of(b.bind, addr))
            b.close()
            unix = open("/proc/self/net/unix").read()
            report("listed", sys.argv[1] in unix)
        """, script_args=[name])
        _assert_no_connection(st)
        _assert_no_connection(sp)
        dg.setblocking(False)
        with pytest.raises(BlockingIOError):
            dg.recv(100)
    assert r == {"stream": errno.ECONNREFUSED, "seqpacket": errno.ECONNREFUSED,
                 "dgram": errno.ECONNREFUSED, "bind_same_name": 0, "listed": False}, r


FAMILIES = {
    "AF_INET6": 10, "AF_NETLINK": 16, "AF_PACKET": 17, "AF_KEY": 15, "AF_RDS": 21,
    "AF_CAN": 29, "AF_TIPC": 30, "AF_BLUETOOTH": 31, "AF_ALG": 38, "AF_VSOCK": 40,
    "AF_XDP": 44, "AF_MCTP": 45, "AF_INET": 2, "AF_UNSPEC": 0, "AF_AX25": 3,
    "AF_APPLETALK": 5, "AF_X25": 9, "AF_LLC": 26, "AF_SMC": 43,
}


def test_non_unix_socket_families_refused_eperm(jail):
    _, r = run_attack(jail, """
        import socket
        fams = %r
        for name, fam in fams.items():
            for typ, proto in ((1, 0), (2, 0), (3, 0), (5, 0), (3, 0x0300)):
                report("%%s/%%d/%%d" %% (name, typ, proto), sysc(41, fam, typ, proto)[1])
                report("pair %%s/%%d/%%d" %% (name, typ, proto), sysc(53, fam, typ, proto,
                                                               (ctypes.c_int * 2)())[1])
        # Python's own wrappers meet the same wall
        report("py_netlink", err_of(socket.socket, socket.AF_NETLINK, socket.SOCK_RAW, 0))
        report("py_packet", err_of(socket.socket, socket.AF_PACKET, socket.SOCK_RAW, 0x0300))
        report("py_inet6", err_of(socket.socket, socket.AF_INET6, socket.SOCK_STREAM))
        # Control: AF_UNIX works.
        report("unix", sysc(41, 1, 1, 0)[1])
    """ % (FAMILIES,))
    assert r.pop("unix") == 0
    assert len(r) == len(FAMILIES) * 10 + 3, r
    bad = {k: v for k, v in r.items() if v != errno.EPERM}
    assert not bad, bad


def test_only_lo_in_the_network_namespace(jail):
    _, r = run_attack(jail, """
        import array, fcntl, socket, struct
        lines = open("/proc/self/net/dev").read().splitlines()[2:]
        report("dev", [l.split(":")[0].strip() for l in lines])
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        buf = array.array("B", bytes(4096))
        ifc = struct.pack("iL", 4096, buf.buffer_info()[0])
        n, _ = struct.unpack("iL", fcntl.ioctl(s.fileno(), 0x8912, ifc))  # SIOCGIFCONF
        data = buf.tobytes()[:n]
        report("ifconf", [[data[i:i + 16].rstrip(b"\\0").decode(),
                           socket.inet_ntoa(data[i + 20:i + 24])] for i in range(0, n, 40)])
        flags = struct.unpack("16sH22x", fcntl.ioctl(s.fileno(), 0x8913,
                                                    struct.pack("16sH22x", b"lo", 0)))[1]
        report("lo_up", bool(flags & 1))
        def gif(name):
            fcntl.ioctl(s.fileno(), 0x8913, struct.pack("16sH22x", name, 0))
        report("eth0", err_of(gif, b"eth0"))
        route = open("/proc/self/net/route").read().splitlines()[1:]
        report("routes", route)
        report("ipv6_route", [l.split()[-1] for l in open("/proc/self/net/ipv6_route")])
    """)
    assert r["dev"] == ["lo"], r
    assert r["ifconf"] == [["lo", "127.0.0.1"]], r
    assert r["lo_up"] is True, r
    assert r["eth0"] == errno.ENODEV, r
    assert r["routes"] == [], r
    assert set(r["ipv6_route"]) <= {"lo"}, r


def test_lo_cannot_be_reconfigured(jail):
    _, r = run_attack(jail, """
        import fcntl, socket, struct
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        def io(cmd, buf):
            fcntl.ioctl(s.fileno(), cmd, buf)
        report("down", err_of(io, 0x8914, struct.pack("16sH22x", b"lo", 0)))       # SIOCSIFFLAGS
        report("promisc", err_of(io, 0x8914, struct.pack("16sH22x", b"lo", 0x149)))
        report("mtu", err_of(io, 0x8922, struct.pack("16si20x", b"lo", 1000)))       # SIOCSIFMTU
        report("rename", err_of(io, 0x8923, struct.pack("16s16s8x", b"lo", b"eth9")))  # SIOCSIFNAME
        report("netlink", sysc(41, 16, 3, 0)[1])
    """)
    assert r == {"down": errno.EPERM, "promisc": errno.EPERM, "mtu": errno.EPERM,
                 "rename": errno.EPERM, "netlink": errno.EPERM}, r
