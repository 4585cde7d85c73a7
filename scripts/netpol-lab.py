"""The policy truth tables with real traffic: the Python half of
scripts/netpol-lab, which brings the lab up (scripts/seed-lab) and runs
`python3 scripts/netpol-lab.py run ...` in it. Three roles, one file:

  server NAME   the pods' process (scripts/oxvs-kubelet starts it in each
                pod): TCP on 80, 81 and 8080 (a connection gets the pod's
                name and is closed) and UDP on 53, 80, 81 and 5353 (a
                datagram is answered with the pod's name): every port the
                xyz and houses models of tests/fixtures/netpol probe, except
                SCTP.
  probe         run inside a pod's network namespace: many probes at once
                from one process (JSON on stdin, JSON on stdout). A TCP
                probe is a connect (SYN-ACK: allowed; RST: refused; nothing
                within the timeout: denied); a UDP probe is a datagram and
                its answer. A probe seen denied is tried again (up to
                `attempts`, each from a new source port) so that one lost
                packet is not a verdict; an allowed probe is final, since a
                packet that a policy drops cannot be answered. Every probe of
                a run has a source port of its own, so none can ride on a
                connection an earlier case left in the switch's conntrack.
  run           the driver: for each sampled case and step, the step's
                manifests (with the fixture's pod addresses pinned, below)
                applied with `oxvs-agent apply -f`, a wait until every
                switch's policy tables equal the compiled ones
                (`oxvs-ctl diff-flows`), the step's TCP and UDP matrices
                probed from every pod to every other pod, and each observed
                verdict compared with the fixture's and with `oxvs-agent
                trace --probes` on the lab's own manifests. Prints one
                `MISMATCH ...` line per disagreement and a summary.

The fixtures give each pod its address in `status.podIP` (the models'
addresses, which ipBlock cases name). The lab's CNI takes a pod's address
from the controller's annotations, so the driver writes the same address
there (`oxvs.io/ip`, `oxvs.io/gateway`, `oxvs.io/mac`) and the matching /24
on each namespace (`oxvs.io/subnet`), as a restarted controller finds them
on objects it allocated before. Nothing else of the manifests changes.
"""

import json
import os
import selectors
import socket
import subprocess
import sys
import threading
import time

TCP_PORTS = (80, 81, 8080)
UDP_PORTS = (53, 80, 81, 5353)


# --- server -----------------------------------------------------------------
def server(name):
    body = (name + "\n").encode()
    socks = []
    for port in TCP_PORTS:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(256)
        socks.append(s)
    for port in UDP_PORTS:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", port))
        socks.append(s)

    def tcp(s):
        while True:
            c, _ = s.accept()
            try:
                c.sendall(body)
            except OSError:
                pass
            c.close()

    def udp(s):
        while True:
            _, peer = s.recvfrom(2048)
            try:
                s.sendto(body, peer)
            except OSError:
                pass

    for s in socks:
        f = tcp if s.type == socket.SOCK_STREAM else udp
        threading.Thread(target=f, args=(s,), daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


# --- probe ------------------------------------------------------------------
def probe(spec):
    """spec: {"probes": [{"ip", "port", "proto"}], "sport_base", "timeout",
    "attempts"} -> [{"verdict": allow|deny|refused|error: ..., "tries"}]."""
    probes = spec["probes"]
    n = len(probes)
    out = [{"verdict": "deny", "tries": 0} for _ in probes]
    todo = list(range(n))
    for attempt in range(spec["attempts"]):
        if not todo:
            break
        sel = selectors.DefaultSelector()
        socks = {}
        for i in todo:
            p = probes[i]
            out[i]["tries"] += 1
            sport = spec["sport_base"] + attempt * n + i
            tcp = p["proto"] == "tcp"
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
            s.setblocking(False)
            try:
                s.bind(("0.0.0.0", sport))
                if tcp:
                    s.connect_ex((p["ip"], p["port"]))
                    sel.register(s, selectors.EVENT_WRITE, i)
                else:
                    # Connected, so an ICMP error comes back as an error.
                    s.connect((p["ip"], p["port"]))
                    s.send(b"probe")
                    sel.register(s, selectors.EVENT_READ, i)
            except OSError as e:
                out[i]["verdict"] = "error: " + os.strerror(e.errno or 0)
                s.close()
                continue
            socks[i] = s
        deadline = time.monotonic() + spec["timeout"]
        waiting = set(socks)
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for key, _ in sel.select(left):
                i = key.data
                s = socks[i]
                if probes[i]["proto"] == "tcp":
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                else:
                    try:
                        s.recv(2048)
                        err = 0
                    except OSError as e:
                        err = e.errno or -1
                if err == 0:
                    v = "allow"
                elif err == 111:  # ECONNREFUSED
                    v = "refused"
                else:
                    v = "error: " + os.strerror(err)
                out[i]["verdict"] = v
                sel.unregister(s)
                waiting.discard(i)
        for i in waiting:
            out[i]["verdict"] = "deny"
        for s in socks.values():
            s.close()
        sel.close()
        todo = [i for i in todo if out[i]["verdict"] == "deny"]
    return out


# --- the driver ---------------------------------------------------------------
# The sample: cases chosen to cover each kind of rule once or more, kept
# small enough to run in a few minutes (docs/policy.md, "Tests").
SAMPLE = [
    # NetworkPolicy (e2e and Cyclonus, the xyz model)
    "k8s-e2e/default-deny-ingress",  # ingress isolation, no rule
    "k8s-e2e/ingress-podselector-and-namespaceselector",  # namespaceSelector AND podSelector
    "k8s-e2e/ingress-namespaceselector-matchexpressions",  # namespaceSelector, NotIn
    "k8s-e2e/egress-cidr-except",  # egress ipBlock with except
    "cyclonus/peers-ingress-2-pods-by-label-ns-by-label--ipblock-with-except",  # two peers, ipBlock+except
    "k8s-e2e/ingress-named-port",  # named port, ingress
    "cyclonus/ports-egress-2-80-and-udp-serve-81-udp",  # named UDP port and a number, egress
    "cyclonus/ports-ingress-tcp-53-to-80",  # endPort, ingress
    "cyclonus/ports-egress-udp-53-to-84",  # endPort, egress, UDP
    "k8s-e2e/udp-rule-does-not-allow-tcp",  # protocol
    "k8s-e2e/stacked-policies-overlapping-podselectors",  # several policies, union (2 steps)
    "cyclonus/conflict-egress-deny-by-ip-allow-by-pod",  # egress deny-all plus allow by pod
    "k8s-e2e/ingress-and-egress-together",  # both directions in one policy
    "k8s-e2e/ingress-from-updated-pod",  # a pod label changes (2 steps)
    "cyclonus/action-set-namespace-labels",  # namespace labels change (3 steps)
    # AdminNetworkPolicy / BaselineAdminNetworkPolicy (network-policy-api, the houses model)
    "npapi/AdminNetworkPolicyIntegration",  # ANP Deny, Pass to NetworkPolicy, Pass to BANP (6 steps)
    "npapi/BaselineAdminNetworkPolicyGress",  # BANP Allow and Deny, both directions, ports (4 steps)
]


def mac_for(ip):
    return "0a:58:" + ":".join("%02x" % int(b) for b in ip.split("."))


def pinned(docs):
    """The step's objects with the fixture's pod addresses pinned (above)."""
    import ipaddress

    subnets = {}
    for d in docs:
        if d["kind"] == "Pod":
            ip = d["status"]["podIP"]
            net = ipaddress.ip_network(ip + "/24", strict=False)
            gw = str(net.network_address + 1)
            ann = d["metadata"].setdefault("annotations", {})
            ann.update({"oxvs.io/ip": ip + "/24", "oxvs.io/gateway": gw, "oxvs.io/mac": mac_for(ip)})
            subnets.setdefault(d["metadata"]["namespace"], str(net))
    for d in docs:
        if d["kind"] == "Namespace" and d["metadata"]["name"] in subnets:
            ann = d["metadata"].setdefault("annotations", {})
            ann["oxvs.io/subnet"] = subnets[d["metadata"]["name"]]
    return docs


class Driver:
    def __init__(self, a):
        self.a = a
        self.fixtures = a["fixtures"]
        self.bin = a["bin"]
        self.work = a["work"]
        self.cluster = os.path.join(self.work, "cluster")
        self.config = os.path.join(self.work, "cluster.toml")
        self.nodes = int(a["nodes"])
        self.sport = 20000
        self.mismatches = []
        self.n_probes = 0
        self.n_steps = 0
        self.n_cases = 0
        self.timeout = float(a.get("timeout", 1.0))
        self.attempts = int(a.get("attempts", 3))

    def agent(self, *args, stdin=None):
        r = subprocess.run(
            [os.path.join(self.bin, "oxvs-agent"), *args, "--config", self.config, "--manifests", self.cluster],
            input=stdin, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("oxvs-agent %s: %s" % (" ".join(args), r.stderr.strip()))
        return r.stdout

    def ctl(self, node, *args):
        sock = os.path.join(self.work, "n%d" % node, "oxvsd.sock")
        r = subprocess.run([os.path.join(self.bin, "oxvs-ctl"), "--socket", sock, *args],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("oxvs-ctl %s: %s" % (" ".join(args), r.stderr.strip()))
        return r.stdout

    def apply(self, docs):
        import yaml

        path = os.path.join(self.work, "manifests", "case.yaml")
        with open(path, "w") as f:
            yaml.safe_dump_all(docs, f, sort_keys=False)
        self.agent("apply", "-f", path)

    def policy_diff(self):
        """Lines by which some switch's policy tables (50-52, 60-62) differ
        from a compile of the manifests: empty once every node is in step."""
        out = []
        for n in range(1, self.nodes + 1):
            flows = self.agent("compile", "--node", "node%d" % n)
            mine = [l for l in flows.splitlines() if is_policy_line(l)]
            path = os.path.join(self.work, "policy-n%d.flows" % n)
            with open(path, "w") as f:
                f.write("\n".join(mine) + "\n")
            out += ["node%d %s" % (n, l) for l in self.ctl(n, "diff-flows", path).splitlines()
                    if is_policy_line(l)]
        return out

    def wait_in_step(self, seconds=30):
        """Waits until no switch's policy tables differ from the compile:
        (the difference left, the number of lines differing at first)."""
        end = time.monotonic() + seconds
        first = None
        while True:
            d = self.policy_diff()
            if first is None:
                first = len(d)
            if not d or time.monotonic() > end:
                return d, first
            time.sleep(0.05)

    def probe_all(self, ips, pods, probes, attempts):
        """probes: [(from, to, proto, port)] -> {probe: verdict}, one probe
        process per source pod, all at once."""
        by_src = {}
        for p in probes:
            by_src.setdefault(p[0], []).append(p)
        procs = []
        for src, ps in by_src.items():
            ns, name = src.split("/")
            spec = {"probes": [{"ip": ips[t], "port": port, "proto": proto} for (_, t, proto, port) in ps],
                    "sport_base": self.sport, "timeout": self.timeout, "attempts": attempts}
            netns = "%s-%s-%s" % (self.a["lab"], ns, name)
            pr = subprocess.Popen(["ip", "netns", "exec", netns, "python3", __file__, "probe"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                pr.stdin.write(json.dumps(spec))
                pr.stdin.close()
            except BrokenPipeError:
                pass  # no such namespace (yet): the process has failed
            procs.append((pr, ps))
        need = max(len(ps) for ps in by_src.values()) * attempts
        self.sport += need + 10
        if self.sport + need > 60000:
            raise RuntimeError("out of source ports")
        got = {}
        for pr, ps in procs:
            text = pr.stdout.read()
            err = pr.stderr.read()
            pr.wait()
            if pr.returncode != 0:
                # Every probe of a pod whose probe process failed (its
                # namespace is not there yet, say) counts as an error.
                lines = err.strip().splitlines() or ["exit status %d" % pr.returncode]
                for p in ps:
                    got[p] = "error: probe process: " + lines[-1]
                continue
            for p, r in zip(ps, json.loads(text)):
                got[p] = r["verdict"]
        return got

    def trace(self, probes):
        lines = "".join(json.dumps({"from": f, "to": t, "proto": pr, "port": po}) + "\n"
                        for (f, t, pr, po) in probes)
        path = os.path.join(self.work, "probes.jsonl")
        with open(path, "w") as f:
            f.write(lines)
        out = self.agent("trace", "--probes", path)
        answers = [json.loads(l) for l in out.splitlines() if l.strip()]
        if len(answers) != len(probes):
            raise RuntimeError("trace answered %d of %d probes" % (len(answers), len(probes)))
        return {p: a["verdict"] for p, a in zip(probes, answers)}

    def settle(self, docs, pods, ips):
        """A new model: its namespaces and pods with no policy, then every
        pod reaching every other on every probed port (the pods are up,
        their ports on the switches, the underlay's neighbours resolved)."""
        t0 = time.monotonic()
        base = [d for d in docs if d["kind"] in ("Namespace", "Pod")]
        self.apply(base)
        probes = [(f, t, pr, po) for f in pods for t in pods if f != t
                  for pr, po in (("tcp", 80), ("udp", 53), ("udp", 80))]
        left = probes
        while left and time.monotonic() - t0 < 120:
            got = self.probe_all(ips, pods, left, 1)
            left = [p for p in left if got[p] != "allow"]
            if left:
                time.sleep(0.5)
        say("model up: %d pods, %d pairs connected without policy in %.1f s%s" % (
            len(pods), len(pods) * (len(pods) - 1), time.monotonic() - t0,
            "" if not left else "; NOT connected: %s" % ", ".join("%s->%s %s/%d" % p for p in left[:10])))
        if left:
            raise RuntimeError("the pods never all reached each other")

    def run(self, cases):
        import yaml

        t_all = time.monotonic()
        model = None
        for case in cases:
            exp = json.load(open(os.path.join(self.fixtures, case, "expect.json")))
            self.n_cases += 1
            for step in exp["steps"]:
                docs = [d for d in yaml.safe_load_all(open(os.path.join(self.fixtures, case, step["manifests"]))) if d]
                docs = pinned(docs)
                pods = step["pods"]
                ips = {"%s/%s" % (d["metadata"]["namespace"], d["metadata"]["name"]): d["status"]["podIP"]
                       for d in docs if d["kind"] == "Pod"}
                if set(ips) != set(pods):
                    raise RuntimeError("%s: the step's pods are not its manifests' pods" % case)
                if model != sorted(pods):
                    self.settle(docs, pods, ips)
                    model = sorted(pods)
                t0 = time.monotonic()
                self.n_steps += 1
                self.apply(docs)
                diff, first = self.wait_in_step()
                t_sync = time.monotonic() - t0
                label = "%s | %s" % (case, step.get("name", step["manifests"]))
                if diff:
                    self.mismatches.append("%s: the switches' policy tables never matched the compile: %s" % (
                        label, "; ".join(diff[:5])))
                    continue
                want = {}
                for pr in step["probes"]:
                    proto = pr["protocol"].lower()
                    if proto not in ("tcp", "udp"):
                        continue
                    for i, row in enumerate(pr["matrix"]):
                        for j, c in enumerate(row):
                            if i != j or not exp.get("ignore_loopback", True):
                                want[(pods[i], pods[j], proto, pr["port"])] = "allow" if c == "1" else "deny"
                probes = sorted(want)
                traced = self.trace(probes)
                t1 = time.monotonic()
                seen = self.probe_all(ips, pods, probes, self.attempts)
                t_probe = time.monotonic() - t1
                bad = 0
                for p in probes:
                    if seen[p] != want[p] or seen[p] != traced[p]:
                        bad += 1
                        self.mismatches.append("%s | %s/%d %s -> %s: observed %s, fixture %s, trace %s" % (
                            label, p[2], p[3], p[0], p[1], seen[p], want[p], traced[p]))
                self.n_probes += len(probes)
                allowed = sum(1 for p in probes if seen[p] == "allow")
                say("%-64s %3d probes (%3d allowed); rules in step after %.2f s (%d flows differed at first); probed in %.1f s; %d mismatches" % (
                    label[:64], len(probes), allowed, t_sync, first, t_probe, bad))
        took = time.monotonic() - t_all
        for m in self.mismatches:
            print("MISMATCH " + m, flush=True)
        print("netpol-lab: %d cases, %d steps, %d probes with real traffic, %d mismatches, %.0f s" % (
            self.n_cases, self.n_steps, self.n_probes, len(self.mismatches), took), flush=True)
        return not self.mismatches


def is_policy_line(line):
    return any(("table=%d," % t) in line for t in (50, 51, 52, 60, 61, 62))


def say(msg):
    print("    " + msg, flush=True)


def main():
    role = sys.argv[1] if len(sys.argv) > 1 else ""
    if role == "server":
        server(sys.argv[2])
    elif role == "probe":
        json.dump(probe(json.load(sys.stdin)), sys.stdout)
    elif role == "run":
        a = dict(x.split("=", 1) for x in sys.argv[2:])
        cases = [c for c in a.get("cases", "").split(",") if c] or SAMPLE
        ok = Driver(a).run(cases)
        sys.exit(0 if ok else 1)
    else:
        sys.stderr.write("usage: netpol-lab.py server NAME | probe | run KEY=VALUE...\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
