#!/usr/bin/env python3
"""soci-nbd tests: an HTTP fault-injection proxy in front of a registry.

Listens on 127.0.0.1 (ephemeral port, written to --port-file) and forwards
every request unchanged to --upstream (http:// or https:// with
--upstream-cacert), streaming bodies, keeping the client's Host header (so
the registry's Location headers keep pointing at the proxy).  A second
listener (--redirect-port-file) is the "other host" that blob GETs can be
redirected to, like a registry redirecting to object storage: it accepts
only one-time URLs minted by the main listener and forwards them upstream
with the ORIGINAL request's credentials (like a signed URL), so the client
needs not (and must not) send its Authorization header there.

Faults come from rules, given with --rule JSON (repeatable) and/or in the
--control FILE (JSON: {"rules": [...]}) which is re-read whenever it
changes (replace it atomically: write + rename).  Rules are tried in
order; the first whose match fits the request applies.  A rule:

  {"match": {"method": "GET", "path": "REGEX", "range": true|false},
   "action": ACTION, "times": N, ...parameters}

  match.path is a Python regex searched in the request path (default: any
  blob path "/blobs/sha256:"); match.method defaults to any method;
  match.range true/false restricts to requests with/without a Range
  header.  "times" limits how many requests the rule applies to (default:
  unlimited); counters restart when the control file changes.

  ACTION            parameters
  "pass"            (forward unchanged; useful to shadow later rules)
  "status"          "code" (500), "retry_after" (seconds, header omitted
                    if absent), "body" (text)
  "reset"           "after" (bytes of the response body sent first; -1 =
                    before any response, the default) -> TCP RST
  "delay"           "seconds": sleep, then forward
  "corrupt"         "offset" (in the response body, default: middle),
                    "xor" (default 0x01): flips one byte
  "truncate"        "keep" (body bytes sent, default half): the headers
                    promise the full length, then the connection closes
  "drip"            "rate" (bytes/s, default 4): the body is sent that
                    slowly (a server holding a transfer open)
  "pad"             "bytes" (default 16 MiB): the body goes on with that
                    many zero bytes after the real one (Content-Length
                    says so): a blob longer than its descriptor
  "chaos"           "seed" (0), "p" (0.3): a random fault for each request
                    with probability p, else pass: corrupt (a random
                    byte), truncate, reset (before the response or mid-
                    body), full200, or status 500/502/503/429 (Retry-After
                    0 or none), each with random parameters from one
                    seeded generator; the log names the fault applied
                    and sets "chaos": true
  "full200"         removes the Range header: the upstream answers 200
                    with the whole blob
  "redirect"        "code" (307), "host" (default --redirect-host): answer
                    with a Location on the second listener

Every request on both listeners is logged as one JSON line to --log:
"start" and "time" (when it arrived and when it was answered), listener ("main"/"redirect"), method, path, request headers (the value of
Authorization/Cookie/Proxy-Authorization reduced to "SCHEME sha256:PREFIX"
so tests can compare without secrets in logs), response status, selected
response headers, the action applied and the body bytes sent.

Python 3 standard library only (threading).  Exits after --lifetime s.
"""
import argparse
import hashlib
import http.client
import json
import os
import random
import re
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "expect",
       "transfer-encoding", "upgrade", "proxy-authenticate"}
SECRET_HEADERS = {"authorization", "proxy-authorization", "cookie"}
LOG_RESP_HEADERS = ("Content-Length", "Content-Range", "Content-Type",
                    "Location", "Docker-Content-Digest", "Retry-After",
                    "WWW-Authenticate")
CHUNK = 65536


def redact(value):
    scheme, _, rest = value.partition(" ")
    if not rest:
        scheme, rest = "", scheme
    h = hashlib.sha256(rest.encode()).hexdigest()[:12]
    return ("%s sha256:%s" % (scheme, h)).strip()


class Config:
    """Rules from the command line plus the control file (re-read)."""

    def __init__(self, args):
        self.cli_rules = [json.loads(r) for r in args.rule or []]
        self.control = args.control
        self.lock = threading.Lock()
        self.stamp = None
        self.rules = list(self.cli_rules)
        self.counts = [0] * len(self.rules)

    def _reload(self):
        if not self.control:
            return
        try:
            st = os.stat(self.control)
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp == self.stamp:
            return
        rules = []
        if stamp is not None:
            with open(self.control) as f:
                text = f.read()
            if text.strip():
                rules = json.loads(text).get("rules", [])
        self.stamp = stamp
        self.rules = rules + self.cli_rules
        self.counts = [0] * len(self.rules)

    def pick(self, method, path, has_range):
        with self.lock:
            self._reload()
            for i, r in enumerate(self.rules):
                m = r.get("match", {})
                if m.get("method") and m["method"] != method:
                    continue
                if not re.search(m.get("path", r"/blobs/sha256:"), path):
                    continue
                if "range" in m and bool(m["range"]) != has_range:
                    continue
                if "times" in r and self.counts[i] >= r["times"]:
                    continue
                self.counts[i] += 1
                return dict(r, rule_index=i, count=self.counts[i])
        return None


class Shared:
    def __init__(self, args):
        self.args = args
        self.config = Config(args)
        self.log = open(args.log, "a", buffering=1)
        self.log_lock = threading.Lock()
        self.tickets = {}   # redirect ticket -> (method, path, headers)
        self.tickets_lock = threading.Lock()
        self.redirect_port = None
        self.chaos_lock = threading.Lock()
        self.chaos_rng = None
        self.chaos_seed = None
        u = urllib.parse.urlsplit(args.upstream)
        self.up_scheme = u.scheme
        self.up_host = u.hostname
        self.up_port = u.port or (443 if u.scheme == "https" else 80)
        self.ssl_ctx = None
        if u.scheme == "https":
            self.ssl_ctx = ssl.create_default_context(cafile=args.upstream_cacert)

    def write_log(self, rec):
        rec["time"] = round(time.time(), 3)
        with self.log_lock:
            self.log.write(json.dumps(rec, sort_keys=True) + "\n")

    def connect(self):
        if self.up_scheme == "https":
            return http.client.HTTPSConnection(
                self.up_host, self.up_port, timeout=60, context=self.ssl_ctx)
        return http.client.HTTPConnection(self.up_host, self.up_port, timeout=60)


def chaos_rule(sh, rule):
    """A concrete rule for one request under a "chaos" rule."""
    with sh.chaos_lock:
        seed = rule.get("seed", 0)
        if sh.chaos_rng is None or sh.chaos_seed != seed:
            sh.chaos_rng, sh.chaos_seed = random.Random(seed), seed
        r = sh.chaos_rng
        if r.random() >= float(rule.get("p", 0.3)):
            return None
        kind = r.choice(["corrupt", "truncate", "reset", "reset-mid",
                         "full200", "status"])
        c = {"rule_index": rule["rule_index"], "chaos": True}
        if kind == "corrupt":
            c.update(action="corrupt", offset_frac=r.random(),
                     xor=r.randrange(1, 256))
        elif kind == "truncate":
            c.update(action="truncate", keep_frac=r.random())
        elif kind == "reset":
            c.update(action="reset", after=-1)
        elif kind == "reset-mid":
            c.update(action="reset", after_frac=r.random())
        elif kind == "full200":
            c.update(action="full200")
        else:
            c.update(action="status", code=r.choice([500, 502, 503, 429]))
            if r.random() < 0.5:
                c["retry_after"] = 0
        return c


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "soci-nbd-fault-proxy/1"
    listener = "main"

    def log_message(self, fmt, *a):
        pass

    # -- helpers ----------------------------------------------------------
    def read_request_body(self):
        te = self.headers.get("Transfer-Encoding", "").lower()
        if "chunked" in te:
            parts = []
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(parts)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else None

    def req_headers_for_log(self):
        out = {}
        for k, v in self.headers.items():
            out[k] = redact(v) if k.lower() in SECRET_HEADERS else v
        return out

    def reset_connection(self):
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            self.connection.close()
        except OSError:
            pass
        self.close_connection = True

    def simple(self, code, body=b"", headers=None):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return len(body)

    # -- the proxying -----------------------------------------------------
    def handle_any(self):
        sh = self.server.shared
        rec = {"listener": self.listener, "method": self.command,
               "path": self.path, "client": "%s:%d" % self.client_address,
               "headers": self.req_headers_for_log(),
               "start": round(time.time(), 3)}
        method, path = self.command, self.path
        fwd_headers = [(k, v) for k, v in self.headers.items()
                       if k.lower() not in HOP]
        rule = None

        if self.listener == "redirect":
            ticket = path.lstrip("/").split("?")[0]
            with sh.tickets_lock:
                orig = sh.tickets.get(ticket)
            if orig is None:
                rec.update(status=404, action="unknown-ticket")
                sh.write_log(rec)
                self.read_request_body()
                self.simple(404, b"unknown redirect ticket\n")
                return
            # Forward like a signed URL: the original request's credentials,
            # the client's own Range/Accept headers.
            method, path, orig_headers = orig
            keep = {"range", "accept", "user-agent", "if-range"}
            fwd_headers = ([(k, v) for k, v in orig_headers
                            if k.lower() not in keep] +
                           [(k, v) for k, v in self.headers.items()
                            if k.lower() in keep])
            rec["ticket_path"] = path
        else:
            rule = sh.config.pick(method, path, "Range" in self.headers)
            if rule and rule["action"] == "chaos":
                rule = chaos_rule(sh, rule)

        body = self.read_request_body()
        action = rule["action"] if rule else "pass"
        rec["action"] = action
        if rule:
            rec["rule"] = rule["rule_index"]
            if rule.get("chaos"):
                rec["chaos"] = True

        if action == "status":
            code = int(rule.get("code", 500))
            hdrs = {"Content-Type": "text/plain"}
            if "retry_after" in rule:
                hdrs["Retry-After"] = str(rule["retry_after"])
            n = self.simple(code, rule.get("body", "injected fault\n").encode(), hdrs)
            rec.update(status=code, sent=n, resp_headers=hdrs)
            sh.write_log(rec)
            return
        if action == "reset" and "after_frac" not in rule and \
                int(rule.get("after", -1)) < 0:
            rec.update(status=0)
            sh.write_log(rec)
            self.reset_connection()
            return
        if action == "delay":
            time.sleep(float(rule.get("seconds", 1)))
        if action == "redirect" and method in ("GET", "HEAD"):
            ticket = uuid.uuid4().hex
            with sh.tickets_lock:
                sh.tickets[ticket] = (method, path, fwd_headers)
            host = rule.get("host", sh.args.redirect_host)
            loc = "http://%s:%d/%s" % (host, sh.redirect_port, ticket)
            code = int(rule.get("code", 307))
            n = self.simple(code, b"", {"Location": loc})
            rec.update(status=code, sent=n, resp_headers={"Location": loc})
            sh.write_log(rec)
            return
        if action == "full200":
            fwd_headers = [(k, v) for k, v in fwd_headers
                           if k.lower() not in ("range", "if-range")]

        conn = sh.connect()
        try:
            conn.putrequest(method, path, skip_host=True,
                            skip_accept_encoding=True)
            has_host = False
            for k, v in fwd_headers:
                if k.lower() == "host":
                    has_host = True
                if k.lower() == "content-length":
                    continue
                conn.putheader(k, v)
            if not has_host:
                conn.putheader("Host", "%s:%d" % (sh.up_host, sh.up_port))
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
        except OSError as e:
            conn.close()
            rec.update(status=502, error=str(e))
            sh.write_log(rec)
            self.simple(502, ("upstream: %s\n" % e).encode())
            return

        try:
            self.relay(resp, rule, action, rec)
        finally:
            conn.close()

    def relay(self, resp, rule, action, rec):
        sh = self.server.shared
        status = resp.status
        hdrs = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP]
        length = resp.getheader("Content-Length")
        no_body = self.command == "HEAD" or status in (204, 304) or status < 200
        data = None
        if length is None and not no_body:
            data = resp.read()           # close-delimited or chunked: buffer
            length = str(len(data))
            hdrs = [(k, v) for k, v in hdrs if k.lower() != "content-length"]
            hdrs.append(("Content-Length", length))
        total = int(length) if length is not None else 0
        pad = 0
        if action == "pad" and 200 <= status < 300 and not no_body:
            pad = int(rule.get("bytes", 16 << 20))
            hdrs = [(k, v) for k, v in hdrs if k.lower() != "content-length"]
            hdrs.append(("Content-Length", str(total + pad)))
        rec.update(status=status, resp_headers={
            k: v for k, v in hdrs if k in LOG_RESP_HEADERS})

        # Faults only apply to successful bodies.
        body_fault = action in ("corrupt", "truncate", "reset") and \
            200 <= status < 300 and not no_body and total > 0
        cut = total
        flip = None
        if body_fault and action == "truncate":
            cut = int(rule["keep_frac"] * total) if "keep_frac" in rule \
                else int(rule.get("keep", total // 2))
            cut = max(0, min(cut, total - 1))
        if body_fault and action == "reset":
            cut = int(rule["after_frac"] * total) if "after_frac" in rule \
                else int(rule.get("after", 0))
            cut = max(0, min(cut, total - 1))
        if body_fault and action == "corrupt":
            flip = int(rule["offset_frac"] * total) if "offset_frac" in rule \
                else int(rule.get("offset", total // 2))
            flip = max(0, min(flip, total - 1))
        if not body_fault and action in ("corrupt", "truncate", "reset"):
            rec["action"] = "pass(%s: not applicable)" % action

        self.send_response_only(status)
        for k, v in hdrs:
            self.send_header(k, v)
        self.end_headers()
        sent = 0
        try:
            if not no_body:
                pos = 0
                while pos < total:
                    if data is not None:
                        chunk = data[pos:pos + CHUNK]
                    else:
                        chunk = resp.read(min(CHUNK, total - pos))
                    if not chunk:
                        break
                    if action == "drip" and 200 <= status < 300:
                        rate = max(1, int(rule.get("rate", 4)))
                        for k in range(len(chunk)):
                            self.wfile.write(chunk[k:k + 1])
                            self.wfile.flush()
                            sent += 1
                            time.sleep(1.0 / rate)
                        pos += len(chunk)
                        continue
                    if flip is not None and pos <= flip < pos + len(chunk):
                        b = bytearray(chunk)
                        b[flip - pos] ^= int(rule.get("xor", 1)) or 1
                        chunk = bytes(b)
                    if body_fault and action in ("truncate", "reset") and \
                            pos + len(chunk) > cut:
                        chunk = chunk[:cut - pos]
                        self.wfile.write(chunk)
                        sent += len(chunk)
                        self.wfile.flush()
                        break
                    self.wfile.write(chunk)
                    sent += len(chunk)
                    pos += len(chunk)
                while pad > 0:
                    n = min(CHUNK, pad)
                    self.wfile.write(bytes(n))
                    sent += n
                    pad -= n
            self.wfile.flush()
        except OSError as e:
            rec["error"] = str(e)
            self.close_connection = True
        rec["sent"] = sent
        sh.write_log(rec)
        if body_fault and action == "truncate":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        elif body_fault and action == "reset":
            self.reset_connection()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any


class RedirectHandler(Handler):
    listener = "redirect"


def serve(port, handler, shared):
    srv = ThreadingHTTPServer(("127.0.0.1", port), handler)
    srv.daemon_threads = True
    srv.shared = shared
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    return srv


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--upstream", required=True, help="http(s)://HOST:PORT")
    p.add_argument("--upstream-cacert")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file", required=True)
    p.add_argument("--redirect-port", type=int, default=0)
    p.add_argument("--redirect-port-file")
    p.add_argument("--redirect-host", default="localhost",
                   help="host name put in redirect Locations (default "
                        "localhost: another host than 127.0.0.1)")
    p.add_argument("--control", help="JSON rules file, re-read on change")
    p.add_argument("--rule", action="append", help="a JSON rule")
    p.add_argument("--log", required=True)
    p.add_argument("--lifetime", type=float, default=600)
    args = p.parse_args()

    shared = Shared(args)
    redirect = serve(args.redirect_port, RedirectHandler, shared)
    shared.redirect_port = redirect.server_address[1]
    main_srv = serve(args.port, Handler, shared)
    if args.redirect_port_file:
        write_atomic(args.redirect_port_file, "%d\n" % shared.redirect_port)
    write_atomic(args.port_file, "%d\n" % main_srv.server_address[1])
    try:
        time.sleep(args.lifetime)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
