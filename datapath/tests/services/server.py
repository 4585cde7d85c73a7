# The pods' server of the Service lab (datapath/tests/services): `http NAME`
# serves HTTP/1.1 on :80 answering NAME and a UDP echo on :5353 prefixing NAME;
# `peer NAME` answers each TCP connection on :8080 with the caller's address.
import http.server, socketserver, socket, sys, threading
mode, name = sys.argv[1], sys.argv[2]
if mode == "peer":
    # Answers each connection with the address it came from.
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 8080)); s.listen(64); print("ready", flush=True)
    while True:
        c, a = s.accept(); c.sendall(a[0].encode()); c.close()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, fmt, *args):
        print("client", self.client_address[0], flush=True)
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
def echo():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", 5353))
    while True:
        d, a = u.recvfrom(2048); u.sendto(name.encode() + b" " + d, a)
srv = S(("0.0.0.0", 80), H)
threading.Thread(target=echo, daemon=True).start()
print("ready", flush=True)
srv.serve_forever()
