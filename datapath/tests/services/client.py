# The client of the Service lab (datapath/tests/services):
# MODE HOST PORT [N [SPORT]], printing one line per answer: who answered, or
# what went wrong (ERR:, FROM:, ECHO:, PEER:, BAD:).
import http.client, socket, sys
mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
n = int(sys.argv[4]) if len(sys.argv) > 4 else 1
out = []
def err(e):
    return "ERR:" + type(e).__name__
if mode == "http":  # n connections, one GET each
    for _ in range(n):
        c = http.client.HTTPConnection(host, port, timeout=3)
        try:
            c.request("GET", "/"); body = c.getresponse().read().decode()
            peer = c.sock.getpeername()[0]
            out.append(body if peer == host else "PEER:" + peer)
        except Exception as e:
            out.append(err(e))
        finally:
            c.close()
elif mode == "http-from":  # n GETs, the i-th from source port argv[5] + i
    for i in range(n):
        c = http.client.HTTPConnection(host, port, timeout=3)
        try:
            c.sock = socket.socket(); c.sock.settimeout(3)
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            c.sock.bind(("0.0.0.0", int(sys.argv[5]) + i)); c.sock.connect((host, port))
            c.request("GET", "/"); out.append(c.getresponse().read().decode())
        except Exception as e:
            out.append(err(e))
        finally:
            c.close()
elif mode == "keepalive":  # one connection, n GETs
    c = http.client.HTTPConnection(host, port, timeout=3)
    for _ in range(n):
        try:
            c.request("GET", "/"); out.append(c.getresponse().read().decode())
        except Exception as e:
            out.append(err(e)); break
elif mode == "udp":  # n sockets (n source ports), one datagram each
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
        s.sendto(b"ping%d" % i, (host, port))
        try:
            d, a = s.recvfrom(2048)
            name, _, echo = d.decode().partition(" ")
            if a != (host, port): out.append("FROM:%s:%d" % a)
            elif echo != "ping%d" % i: out.append("ECHO:" + echo)
            else: out.append(name)
        except Exception as e:
            out.append(err(e))
        s.close()
elif mode == "udp-from":  # n datagrams from one socket bound to port argv[5]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
    s.bind(("0.0.0.0", int(sys.argv[5])))
    for i in range(n):
        s.sendto(b"ping%d" % i, (host, port))
        try:
            d, a = s.recvfrom(2048)
            name, _, echo = d.decode().partition(" ")
            ok = a == (host, port) and echo == "ping%d" % i
            out.append(name if ok else "BAD:%s:%d:%s" % (a[0], a[1], d.decode()))
        except Exception as e:
            out.append(err(e))
    s.close()
elif mode == "connect":
    s = socket.socket(); s.settimeout(2)
    try:
        s.connect((host, port)); out.append("ok")
    except socket.timeout:
        out.append("timeout")
    except ConnectionRefusedError:
        out.append("refused")
    except Exception as e:
        out.append(err(e))
elif mode == "read":  # what the server says first
    try:
        s = socket.create_connection((host, port), timeout=3); out.append(s.recv(100).decode())
    except Exception as e:
        out.append(err(e))
print("\n".join(out))
