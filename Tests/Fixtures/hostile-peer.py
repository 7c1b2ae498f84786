#!/usr/bin/env python3
"""A misbehaving HTTP peer for the hostile-input tests (loopback only, stdlib only).

    hostile-peer.py MODE [--tls CERT KEY]

MODE:
  big     200 with a 100 MB body, streamed
  gzip    200, Content-Encoding: gzip, ~250 KB that inflates to 256 MiB
  echo    400 whose body echoes every request header (the Access-Token among them)
  count   any request: 200 {"code":0}; each connection is appended to ./connections.log
Prints "listening on PORT" once it accepts connections.
"""
import http.server, socketserver, ssl, sys, zlib

mode = sys.argv[1]
tls = sys.argv[2:5] if len(sys.argv) > 2 and sys.argv[2] == "--tls" else None

def gzip_bomb():
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip container
    chunk = bytes(1 << 20)
    out = [compressor.compress(chunk) for _ in range(256)]
    out.append(compressor.flush())
    return b"".join(out)

BOMB = gzip_bomb() if mode == "gzip" else b""

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        if mode == "big":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            piece = b"x" * 65536
            try:
                for _ in range(100 * 16):  # 100 MB
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True
        elif mode == "gzip":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(BOMB)))
            self.end_headers()
            try:
                self.wfile.write(BOMB)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif mode == "echo":
            body = ("upstream error; your request headers were: " + "; ".join(f"{k}: {v}" for k, v in self.headers.items())).encode()
            self.send_response(400)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            body = b'{"code":0,"message":"OK","data":{}}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def get_request(self):
        sock, address = super().get_request()
        if mode == "count":
            with open("connections.log", "a") as log:
                log.write(f"{address}\n")
        return sock, address

server = Server(("127.0.0.1", 0), Handler)
if tls:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls[1], tls[2])
    server.socket = context.wrap_socket(server.socket, server_side=True)
print(f"listening on {server.server_address[1]}", flush=True)
server.serve_forever()
