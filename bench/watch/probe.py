"""Measuring tools of bench/watch/run, one subcommand each.

  receive PORT_FILE LOG        a webhook receiver on loopback: each POST's
                               arrival time and JSON body, one line each
  alert LOG SINCE EVENT TEXT DEADLINE
                               waits for the first POST after SINCE whose
                               event is EVENT and whose body names TEXT;
                               prints its arrival time and incident kind
  started CONTAINER NAME SINCE DEADLINE
                               waits until container NAME on lab host
                               CONTAINER runs again, started after SINCE;
                               prints the engine's start time
  swarm-started CONTAINER OLD_ID SINCE DEADLINE
                               waits until a task container of hello-swarm
                               other than OLD_ID runs on lab host CONTAINER
                               and is healthy; prints its created, started
                               and healthy-seen times
  usage PID SECONDS CONTROL_DIR
                               CPU seconds and memory of PID and of the ssh
                               masters whose control sockets live under
                               CONTROL_DIR, over SECONDS; prints JSON

Times are Unix seconds. Every wait has its deadline and exits 1 past it.
"""

import datetime
import http.server
import json
import os
import re
import subprocess
import sys
import time


def receive(port_file, log):
    out = open(log, "a", buffering=1)

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            at = time.time()
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = {"unparsed": body.decode("utf-8", "replace")}
            out.write(json.dumps({"at": at, "body": parsed}) + "\n")
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(port_file + ".tmp", port_file)
    server.serve_forever()


def alert(log, since, event, text, deadline):
    since, end = float(since), time.time() + float(deadline)
    while time.time() < end:
        for line in open(log):
            post = json.loads(line)
            body = post["body"]
            # Host names are IPs here: 10.0.0.1 must not match 10.0.0.12.
            named = re.search(re.escape(text) + r"(?![0-9])", json.dumps(body))
            if post["at"] > since and body.get("event") == event and named:
                key = body.get("incident", {}).get("key", {})
                kind = key.get("kind", "?") if isinstance(key, dict) else key
                print(f"{post['at']:.3f} {kind}")
                return 0
        time.sleep(0.1)
    return 1


def engine_time(text):
    """Docker's RFC 3339 time with nanoseconds, as Unix seconds."""
    if text.startswith("0001-"):
        return 0.0
    whole, _, frac = text.rstrip("Z").partition(".")
    t = datetime.datetime.fromisoformat(whole).replace(tzinfo=datetime.timezone.utc)
    return t.timestamp() + float("0." + (frac or "0"))


def inner(container, *args):
    """The output of `docker ARGS` run by the engine inside a lab host."""
    done = subprocess.run(
        ["docker", "exec", container, "docker", *args],
        capture_output=True, text=True, timeout=20,
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def started(container, name, since, deadline):
    since, end = float(since), time.time() + float(deadline)
    while time.time() < end:
        out = inner(container, "inspect", "-f", "{{.State.Running}} {{.State.StartedAt}}", name)
        if out:
            running, at = out.split()
            if running == "true" and engine_time(at) > since:
                print(f"{engine_time(at):.3f}")
                return 0
        time.sleep(0.2)
    return 1


def swarm_started(container, old_id, since, deadline):
    since, end = float(since), time.time() + float(deadline)
    while time.time() < end:
        ids = inner(container, "ps", "-q", "--no-trunc",
                    "--filter", "label=com.docker.swarm.service.name=hello-swarm",
                    "--filter", "status=running").split()
        for cid in ids:
            if old_id and (cid.startswith(old_id) or old_id.startswith(cid)):
                continue
            out = inner(container, "inspect", "-f",
                        "{{.Created}} {{.State.StartedAt}} {{.State.Health.Status}}", cid)
            if out and out.split()[2] == "healthy":
                created, began, _ = out.split()
                print(f"{engine_time(created):.3f} {engine_time(began):.3f} {time.time():.3f}")
                return 0
        time.sleep(0.2)
    return 1


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def masters(control_dir):
    """The ssh processes whose command line names CONTROL_DIR."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if args and os.path.basename(args[0]) == b"ssh" and any(control_dir.encode() in a for a in args):
            found.append(int(entry))
    return found


def usage(pid, seconds, control_dir):
    tick = os.sysconf("SC_CLK_TCK")
    ssh = masters(control_dir)
    start_self = cpu_ticks(pid)
    start_ssh = {p: cpu_ticks(p) for p in ssh}
    rss_max = ssh_rss_max = 0
    end = time.time() + float(seconds)
    while time.time() < end:
        rss_max = max(rss_max, rss_kib(pid))
        ssh_rss_max = max(ssh_rss_max, sum(rss_kib(p) for p in ssh if os.path.exists(f"/proc/{p}")))
        time.sleep(1)
    used_self = (cpu_ticks(pid) - start_self) / tick
    used_ssh = sum(cpu_ticks(p) - t for p, t in start_ssh.items() if os.path.exists(f"/proc/{p}")) / tick
    print(json.dumps({
        "seconds": float(seconds),
        "cpu_s": used_self,
        "rss_max_kib": rss_max,
        "ssh_masters": len(ssh),
        "ssh_cpu_s": used_ssh,
        "ssh_rss_max_kib": ssh_rss_max,
    }))
    return 0


if __name__ == "__main__":
    commands = {
        "receive": receive, "alert": alert, "started": started,
        "swarm-started": swarm_started, "usage": usage,
    }
    sys.exit(commands[sys.argv[1]](*sys.argv[2:]) or 0)
