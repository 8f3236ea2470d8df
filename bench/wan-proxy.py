#!/usr/bin/env python3
# soci-nbd benchmarks: a WAN-shaped HTTP proxy (python3 stdlib only).
#
#   wan-proxy.py --listen 127.0.0.1:PORT --upstream 127.0.0.1:RPORT
#                [--latency-ms 20] [--mbit 100] [--log FILE]
#                [--port-file FILE]
#
# Sits between a client and a registry and adds, to every response, a
# fixed latency (one "round trip", slept before the response headers are
# sent) and a bandwidth cap on response bodies: one token bucket (64 KiB
# burst: a virtual link that carries bytes one after the other) shared by
# every connection, so concurrent downloads share the link as they would
# on a real WAN.  Everything else is forwarded unchanged: method, path and
# query, headers (Host, Range, Authorization, ...), request bodies (chunked
# or not), status and response headers.  Only hop-by-hop headers are
# dropped, as any proxy does.  Connections to the client and to the
# upstream are kept alive (HTTP/1.1); one thread per client connection.
#
# Works as a reverse proxy (a client that talks to http://LISTEN/ reaches
# --upstream) and as a forward proxy (a request line with an absolute
# http:// URL, e.g. `curl -x`, goes to that host; only 127.0.0.1/localhost).
#
# --log FILE: one line per request: method, path, Range, status, response
# body bytes, seconds taken, start time (Unix seconds).  --mbit 0 and --latency-ms 0: no shaping.
# --port-file: with --listen 127.0.0.1:0, write the chosen port there.
import argparse, http.client, http.server, os, socket, socketserver, sys, threading, time
from urllib.parse import urlsplit

HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
       "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"}
CHUNK = 16384


class Link:
    """A shared link of `rate` bytes/s (a token bucket): each chunk reserves
    the next free slot of the link and its sender sleeps until the slot
    ends.  Up to `burst` bytes of idle link are credited, so the proxy's
    own per-chunk overhead does not lower the rate."""

    def __init__(self, rate, burst=65536):
        self.rate = rate
        self.credit = burst / rate if rate > 0 else 0
        self.lock = threading.Lock()
        self.free_at = 0.0

    def send(self, n):
        if self.rate <= 0:
            return
        with self.lock:
            now = time.monotonic()
            self.free_at = max(self.free_at, now - self.credit) + n / self.rate
            end = self.free_at
        d = end - time.monotonic()
        if d > 0:
            time.sleep(d)


class Stats:
    def __init__(self, logpath):
        self.lock = threading.Lock()
        self.log = open(logpath, "a", buffering=1) if logpath else None

    def record(self, line):
        if self.log:
            with self.lock:
                self.log.write(line + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "wan-proxy"

    def log_message(self, fmt, *args):  # quiet: --log has the requests
        pass

    def setup(self):
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle
        # + the client's delayed ACK add ~40 ms to every small response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.upconns = {}

    def finish(self):
        super().finish()
        for c in self.upconns.values():
            c.close()

    def upstream(self, hostport, fresh=False):
        c = self.upconns.get(hostport)
        if c is None or fresh:
            if c is not None:
                c.close()
            host, _, port = hostport.rpartition(":")
            c = http.client.HTTPConnection(host, int(port), timeout=120)
            c.connect()
            c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.upconns[hostport] = c
        return c

    def read_body(self):
        te = self.headers.get("Transfer-Encoding", "").lower()
        if "chunked" in te:
            parts = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(parts)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else None

    def proxy(self):
        cfg = self.server.cfg
        t0, w0 = time.monotonic(), time.time()
        target, path = cfg.upstream, self.path
        if path.startswith("http://"):
            u = urlsplit(path)
            if u.hostname not in ("127.0.0.1", "localhost"):
                self.send_error(403, "only loopback upstreams")
                return
            target = "%s:%d" % (u.hostname, u.port or 80)
            path = (u.path or "/") + ("?" + u.query if u.query else "")
        body = self.read_body()
        headers = [(k, v) for k, v in self.headers.items()
                   if k.lower() not in HOP and k.lower() != "content-length"]
        if body is not None:
            headers.append(("Content-Length", str(len(body))))
        for attempt in (0, 1):
            try:
                c = self.upstream(target, fresh=attempt > 0)
                c.putrequest(self.command, path, skip_host=True,
                             skip_accept_encoding=True)
                for k, v in headers:
                    c.putheader(k, v)
                c.endheaders(body)
                r = c.getresponse()
                break
            except (ConnectionError, http.client.HTTPException, OSError):
                if attempt:
                    self.send_error(502, "upstream unreachable")
                    return
        if cfg.latency > 0:   # one round trip, before the response starts
            time.sleep(cfg.latency)
        self.send_response_only(r.status, r.reason)
        length = r.getheader("Content-Length")
        for k, v in r.getheaders():
            if k.lower() not in HOP:
                self.send_header(k, v)
        no_body = self.command == "HEAD" or r.status in (204, 304) or r.status < 200
        chunked = length is None and not no_body
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sent = 0
        if not no_body:
            while True:
                buf = r.read(CHUNK)
                if not buf:
                    break
                self.server.link.send(len(buf))
                if chunked:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(buf), buf))
                else:
                    self.wfile.write(buf)
                sent += len(buf)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        else:
            r.read()
        if r.will_close:
            c.close()
            self.upconns.pop(target, None)
        self.wfile.flush()
        self.server.stats.record("%s %s %s %d %d %.4f %.4f" % (
            self.command, path, self.headers.get("Range", "-").replace(" ", ""),
            r.status, sent, time.monotonic() - t0, w0))

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = proxy
    do_OPTIONS = proxy


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog is 5: a burst of new connections
    # (a plugin staging a dozen libraries at once) overflowed it, and each
    # dropped SYN cost the 1 s TCP retransmit timeout, where a registry
    # (Go's net/http: the kernel's somaxconn) accepts them at once.
    request_queue_size = 1024


def main():
    ap = argparse.ArgumentParser(description="WAN-shaped HTTP proxy")
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--upstream", required=True, help="HOST:PORT (loopback)")
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--mbit", type=float, default=100.0)
    ap.add_argument("--log")
    ap.add_argument("--port-file")
    a = ap.parse_args()
    host, _, port = a.listen.rpartition(":")
    uhost = a.upstream.rpartition(":")[0]
    if host not in ("127.0.0.1", "localhost") or uhost not in ("127.0.0.1", "localhost"):
        sys.exit("wan-proxy: loopback only")
    srv = Server((host, int(port)), Handler)
    srv.cfg = argparse.Namespace(upstream=a.upstream, latency=a.latency_ms / 1000.0)
    srv.link = Link(a.mbit * 1e6 / 8)
    srv.stats = Stats(a.log)
    if a.port_file:
        with open(a.port_file + ".tmp", "w") as f:
            f.write("%d\n" % srv.server_address[1])
        os.rename(a.port_file + ".tmp", a.port_file)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
