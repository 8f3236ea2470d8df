#!/usr/bin/env python3
"""soci-nbd tests: a tiny token server for distribution's "token" auth.

Implements the Docker registry token protocol (GET /token?service=&scope=
with optional Basic credentials) and its OAuth2 form (POST /token with
grant_type=password or refresh_token).  Tokens are RS256 JWTs signed with
the `openssl` command line; the header carries the signing certificate in
"x5c", which the registry verifies against its `rootcertbundle` (the same
certificate), so no libtrust key id is needed.

Short expiry for refresh tests: --expiry N makes the response say
"expires_in": N, and the JWT's "exp" is set so that the registry (which
adds a fixed 60 s leeway, registry/auth/token/token.go) rejects the token
N seconds after issue.  Clients must therefore refresh (or re-authenticate
on 401) to keep working past N seconds.

Python 3 standard library only.  Listens on 127.0.0.1 (port 0 = ephemeral)
and writes the port it got to --port-file once it is ready.  Every request
is logged as one JSON line to --log (credentials never logged: only the
user name and whether the password matched).

    token-server.py --cert C.pem --key K.pem --port-file F --log L \
        --issuer I --service S [--user U:P ...] [--anonymous] [--expiry N]
        [--tls-cert C --tls-key K] [--lifetime SECONDS]
"""
import argparse
import base64
import hashlib
import json
import os
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REGISTRY_LEEWAY = 60  # distribution 2.8 adds this to exp (token.go)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class State:
    def __init__(self, args):
        self.args = args
        self.users = {}
        for u in args.user or []:
            name, _, pw = u.partition(":")
            self.users[name] = pw
        with open(args.cert, "rb") as f:
            pem = f.read().decode()
        der_b64 = "".join(
            line for line in pem.splitlines()
            if line and not line.startswith("-----"))
        self.x5c = [der_b64]
        self.lock = threading.Lock()
        self.log = open(args.log, "a", buffering=1)
        self.refresh_tokens = {}
        self.issued = 0

    def write_log(self, rec):
        rec["time"] = round(time.time(), 3)
        with self.lock:
            self.log.write(json.dumps(rec, sort_keys=True) + "\n")

    def sign(self, claims):
        header = {"typ": "JWT", "alg": "RS256", "x5c": self.x5c}
        signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode())
                         + "." + b64url(json.dumps(claims, separators=(",", ":")).encode()))
        sig = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", self.args.key],
            input=signing_input.encode(), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, check=True).stdout
        return signing_input + "." + b64url(sig)


def parse_scopes(scopes):
    """["repository:a/b:pull,push", ...] -> access claim list."""
    access = []
    for s in scopes:
        for one in s.split(" "):
            if not one:
                continue
            parts = one.split(":")
            if len(parts) < 3:
                continue
            typ, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1]
            access.append({"type": typ, "name": name,
                           "actions": [a for a in actions.split(",") if a]})
    return access


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "soci-nbd-test-token/1"

    def log_message(self, fmt, *a):  # quiet stderr; we log JSON ourselves
        pass

    def reply(self, code, obj, extra=None):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def basic_user(self):
        """(user, ok) from the Authorization header; (None, None) if none."""
        st = self.server.state
        h = self.headers.get("Authorization")
        if not h:
            return None, None
        scheme, _, cred = h.partition(" ")
        if scheme.lower() != "basic":
            return "?", False
        try:
            user, _, pw = base64.b64decode(cred).decode().partition(":")
        except Exception:
            return "?", False
        return user, (user in st.users and st.users[user] == pw)

    def issue(self, user, service, scopes, offline, rec):
        st = self.server.state
        a = st.args
        now = int(time.time())
        access = parse_scopes(scopes)
        claims = {
            "iss": a.issuer, "sub": user or "", "aud": service,
            "exp": now + a.expiry - REGISTRY_LEEWAY, "nbf": now - 1,
            "iat": now, "jti": str(uuid.uuid4()), "access": access,
        }
        tok = st.sign(claims)
        with st.lock:
            st.issued += 1
            n = st.issued
        resp = {"token": tok, "access_token": tok, "expires_in": a.expiry,
                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                           time.gmtime(now))}
        if offline and user:
            rt = str(uuid.uuid4())
            with st.lock:
                st.refresh_tokens[rt] = user
            resp["refresh_token"] = rt
        rec.update({"status": 200, "issued": n, "sub": user or "",
                    "scope": scopes, "token_sha256":
                    hashlib.sha256(tok.encode()).hexdigest()[:16]})
        st.write_log(rec)
        self.reply(200, resp)

    def do_GET(self):
        st = self.server.state
        u = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(u.query)
        user, good = self.basic_user()
        rec = {"method": "GET", "path": u.path, "user": user,
               "auth": "none" if user is None else ("good" if good else "bad"),
               "service": q.get("service", [""])[0],
               "account": q.get("account", [""])[0],
               "user_agent": self.headers.get("User-Agent", "")}
        if u.path != "/token":
            rec["status"] = 404
            st.write_log(rec)
            return self.reply(404, {"errors": [{"code": "NOT_FOUND"}]})
        if rec["service"] != st.args.service:
            rec["status"] = 400
            st.write_log(rec)
            return self.reply(400, {"details": "unknown service"})
        if user is not None and not good:
            rec["status"] = 401
            st.write_log(rec)
            return self.reply(401, {"details": "invalid credentials"},
                              {"WWW-Authenticate": 'Basic realm="token"'})
        if user is None and not st.args.anonymous:
            rec["status"] = 401
            st.write_log(rec)
            return self.reply(401, {"details": "authentication required"},
                              {"WWW-Authenticate": 'Basic realm="token"'})
        self.issue(user, rec["service"], q.get("scope", []),
                   q.get("offline_token", [""])[0] == "true", rec)

    def do_POST(self):
        st = self.server.state
        u = urllib.parse.urlsplit(self.path)
        n = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(n).decode())
        grant = form.get("grant_type", [""])[0]
        service = form.get("service", [""])[0]
        scopes = form.get("scope", [])
        rec = {"method": "POST", "path": u.path, "grant_type": grant,
               "service": service, "user_agent": self.headers.get("User-Agent", "")}
        if u.path != "/token":
            rec["status"] = 404
            st.write_log(rec)
            return self.reply(404, {"errors": [{"code": "NOT_FOUND"}]})
        if service != st.args.service:
            rec["status"] = 400
            st.write_log(rec)
            return self.reply(400, {"error": "invalid_request"})
        user = None
        if grant == "password":
            user = form.get("username", [""])[0]
            ok = st.users.get(user) == form.get("password", [None])[0]
            rec.update({"user": user, "auth": "good" if ok else "bad"})
        elif grant == "refresh_token":
            rt = form.get("refresh_token", [""])[0]
            with st.lock:
                user = st.refresh_tokens.get(rt)
            ok = user is not None
            rec.update({"user": user, "auth": "refresh" if ok else "bad"})
        else:
            ok = False
            rec["auth"] = "unsupported"
        if not ok:
            rec["status"] = 401
            st.write_log(rec)
            return self.reply(401, {"error": "invalid_grant"})
        self.issue(user, service, scopes,
                   form.get("access_type", [""])[0] == "offline"
                   or grant == "password", rec)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cert", required=True, help="signing certificate (PEM)")
    p.add_argument("--key", required=True, help="signing key (PEM)")
    p.add_argument("--issuer", required=True)
    p.add_argument("--service", required=True)
    p.add_argument("--user", action="append", help="USER:PASSWORD")
    p.add_argument("--anonymous", action="store_true",
                   help="issue tokens without credentials too")
    p.add_argument("--expiry", type=int, default=300,
                   help="token lifetime in seconds (default 300)")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--lifetime", type=float, default=600,
                   help="exit after this many seconds (default 600)")
    args = p.parse_args()

    srv = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    srv.daemon_threads = True
    srv.state = State(args)
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.rename(tmp, args.port_file)
    t = threading.Timer(args.lifetime, srv.shutdown)
    t.daemon = True
    t.start()
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
