#!/usr/bin/env python3
"""mediaedge's callback for shared/peers/srtp/run.sh --extra-cmd.

    callback.py setup N SPEC_OUT   start a fresh mediaedge daemon (pinned to
                                   $MEDIAEDGE_CPUS, default CPU 1), create N
                                   sessions over its control API, write the
                                   srtpload spec (with the daemon's pid)
    callback.py teardown SPEC      stop that daemon
    callback.py mem N              RSS of a fresh daemon with 0 and N idle
                                   sessions, and after media on all of them

Every session re-keys for real: the internal peer (srtpload's sender, from
127.0.0.1:31000) encrypts with its own AES_CM_128_HMAC_SHA1_80 key, the
gateway decrypts it and re-encrypts with its own AES_CM_128_HMAC_SHA1_32 key
toward the cloud peer (srtpload's receiver, 127.0.0.1:31100): the same
transforms as the rtpe-rekey target, four distinct keys per call.

The daemon runs with the gateway's defaults (shared ports, coalesce 700us,
one worker per CPU it is pinned to) unless the environment says otherwise:
MEDIAEDGE_PORT_MODE (dedicated|shared), MEDIAEDGE_WORKERS, MEDIAEDGE_BATCH,
MEDIAEDGE_COALESCE (e.g. 500us, 0s), MEDIAEDGE_STEERING (auto|on|off). Also MEDIAEDGE_BIN (default: built from
this checkout), MEDIAEDGE_CPUS (taskset list), MEDIAEDGE_WORK (work
directory).
Only processes this script started are signalled (checked by pid and
command line).
"""
import base64
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
IP = os.environ.get("IP", "127.0.0.1")
LEG_A = "%s:31000" % IP  # srtpload's sender
LEG_B = "%s:31100" % IP  # srtpload's receiver
WORK = os.environ.get("MEDIAEDGE_WORK") or os.path.join(tempfile.gettempdir(), "mediaedge-perf-%d" % os.getuid())


def log(*a):
    print("mediaedge-callback:", *a, file=sys.stderr, flush=True)


def binary():
    b = os.environ.get("MEDIAEDGE_BIN")
    if b:
        return b
    b = os.path.join(WORK, "mediaedge")
    subprocess.run(["go", "build", "-trimpath", "-o", b, "./cmd/mediaedge"], cwd=REPO, check=True)
    return b


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("mediaedge", timeout=30)
        self.path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(self.path)
        self.sock = s


def api(conn, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
    r = conn.getresponse()
    out = r.read()
    if r.status >= 300:
        raise SystemExit("mediaedge-callback: %s %s: %d %s" % (method, path, r.status, out[:300]))
    return json.loads(out) if out else None


def key(n=30):
    return base64.b64encode(os.urandom(n)).decode()


def start_daemon(tag, max_sessions):
    os.makedirs(WORK, exist_ok=True)
    sock = os.path.join(WORK, "control-%s.sock" % tag)
    cfg = os.path.join(WORK, "mediaedge-%s.yaml" % tag)
    mode = os.environ.get("MEDIAEDGE_PORT_MODE", "")
    # Only what the environment sets overrides the daemon's defaults.
    opt = lambda key, env: ("  %s: %s\n" % (key, os.environ[env])) if os.environ.get(env) else ""
    leg = lambda ports: "{bind: %s, ports: %s%s}" % (IP, ports, (", port_mode: " + mode) if mode else "")
    with open(cfg, "w") as f:
        f.write("""log: {level: warn}
metrics: {listen: ""}
control: {socket: %s}
relay: {enabled: false}
policy: {enabled: false}
gateway:
  enabled: true
  max_sessions: %d
  idle_timeout: 0s
%s%s%s%s  internal: %s
  cloud: %s
""" % (sock, max_sessions, opt("workers", "MEDIAEDGE_WORKERS"), opt("batch", "MEDIAEDGE_BATCH"),
            opt("coalesce", "MEDIAEDGE_COALESCE"), opt("steering", "MEDIAEDGE_STEERING"),
            leg("6000-7999"), leg("8000-9999")))
    cpus = os.environ.get("MEDIAEDGE_CPUS", "1" if (os.cpu_count() or 1) >= 2 else "")
    cmd = (["taskset", "-c", cpus] if cpus else []) + [binary(), "run", "--config", cfg]
    logf = open(os.path.join(WORK, "mediaedge-%s.log" % tag), "ab")
    p = subprocess.Popen(cmd, stdout=logf, stderr=logf, start_new_session=True)
    for _ in range(200):
        if p.poll() is not None:
            raise SystemExit("mediaedge-callback: the daemon exited (%d); see %s" % (p.returncode, logf.name))
        if os.path.exists(sock):
            try:
                c = UnixHTTP(sock)
                api(c, "GET", "/v1/status")
                return p, c
            except (OSError, SystemExit):
                pass
        time.sleep(0.05)
    p.terminate()
    raise SystemExit("mediaedge-callback: the daemon did not answer on %s" % sock)


def create_sessions(conn, n):
    streams = []
    for i in range(n):
        k_int = key()
        s = api(conn, "POST", "/v1/sessions", {
            "internal": {"remote": LEG_A, "rtcp_mux": True, "crypto": "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + k_int},
            "cloud": {"remote": LEG_B, "rtcp_mux": True, "suite": "AES_CM_128_HMAC_SHA1_32",
                      "crypto": "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + key()},
        })
        g_cloud = s["cloud"]["crypto"].split("inline:", 1)[1].split("|")[0]
        streams.append({"name": "mediaedge%d:a2b" % i, "tx_suite": "AES_CM_128_HMAC_SHA1_80", "tx_key": k_int,
                        "rx_suite": "AES_CM_128_HMAC_SHA1_32", "rx_key": g_cloud,
                        "src": LEG_A, "target": s["internal"]["local"], "recv": LEG_B})
    return streams


def ours(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    # The binary is named mediaedge, or is the one MEDIAEDGE_BIN names.
    named = os.environ.get("MEDIAEDGE_BIN", "").encode()
    return bool(argv) and (argv[0].endswith(b"mediaedge") or (named and argv[0] == named)) and b"run" in argv


def stop(pid):
    if not ours(pid):
        return
    os.kill(pid, 15)
    for _ in range(100):
        if not ours(pid):
            return
        time.sleep(0.05)
    log("pid %d did not stop on SIGTERM" % pid)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    return 0


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "setup":
        n, spec = int(sys.argv[2]), sys.argv[3]
        p, conn = start_daemon("trial", max(n, 1) + 10)
        try:
            streams = create_sessions(conn, n)
        except BaseException:
            stop(p.pid)
            raise
        with open(spec + ".tmp", "w") as f:
            json.dump({"peer": "mediaedge", "pid": p.pid, "streams": streams}, f)
        os.replace(spec + ".tmp", spec)
    elif len(sys.argv) >= 3 and sys.argv[1] == "teardown":
        with open(sys.argv[2]) as f:
            pid = json.load(f).get("pid")
        if pid:
            stop(int(pid))
    elif len(sys.argv) >= 3 and sys.argv[1] == "mem":
        n = int(sys.argv[2])
        srtpload = os.environ.get("SRTPLOAD", "")
        p, conn = start_daemon("mem", n + 10)
        try:
            time.sleep(0.5)
            r0 = rss_kib(p.pid)
            streams = create_sessions(conn, n)
            time.sleep(0.5)
            r1 = rss_kib(p.pid)
            r2 = None
            if srtpload:
                spec = os.path.join(WORK, "mem-spec.json")
                with open(spec, "w") as f:
                    json.dump({"pid": p.pid, "streams": streams}, f)
                subprocess.run([srtpload, "-spec", spec, "-rate", "10000", "-n", "5", "-warmup", "0",
                                "-size", "160", "-time-limit", "60s"], capture_output=True, timeout=90)
                time.sleep(0.3)
                r2 = rss_kib(p.pid)
            print(json.dumps({"target": "mediaedge", "calls": n, "rss0_kib": r0, "rss_calls_kib": r1,
                              "rss_after_media_kib": r2, "kib_per_call": (r1 - r0) / n,
                              "kib_per_call_media": None if r2 is None else (r2 - r0) / n,
                              "port_mode": os.environ.get("MEDIAEDGE_PORT_MODE", "default")}))
        finally:
            stop(p.pid)
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
