#!/usr/bin/env python3
"""serve_load.py DEFORMER_QA DEFORMER_CACHE MODEL DOCUMENTS_DIR WORKDIR [REQUESTS CONNECTIONS]

deformer-qa serve under load, with a real HTTP client (http.client, one persistent connection per thread):
- REQUESTS (default 2,000) over CONNECTIONS (32): no errors, and every answer equal to `deformer-qa ask`'s for the
  same question (span, document; score within 1e-4);
- p50/p99 latency and throughput, batched against --max-batch 1 (one request per reader call);
- bad requests answered 4xx with a JSON error while the server keeps serving: malformed JSON, missing and wrongly
  typed fields, a 20 MB body, a body that is not UTF-8, an unknown document id, top_k 0; a stalled connection is
  closed after --read-timeout, and a client sending a byte a second does not stop others being served;
- SIGTERM during load: every request that got a response got the right one, the exit status is 0, and a new server
  listens on the same port.
"""
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

qa, cache_tool, model, documents, work = sys.argv[1:6]
total = int(sys.argv[6]) if len(sys.argv) > 6 else 2000
connections = int(sys.argv[7]) if len(sys.argv) > 7 else 32
os.makedirs(work, exist_ok=True)
cache = os.path.join(work, "serve.h5")


def fail(message):
    print("FAIL:", message)
    sys.exit(1)


for stale in (cache, cache + ".bm25"):
    if os.path.exists(stale):
        os.remove(stale)
subprocess.run([cache_tool, "build", "--model", model, "--input", documents, "--out", cache], check=True,
               stdout=subprocess.DEVNULL)

RIVER = open(os.path.join(documents, "river.txt"), encoding="utf-8").read()
REQUESTS = [
    {"question": "Where does the Vell rise?", "docs": ["river.txt"]},
    {"question": "How many squares has a chess board?", "docs": ["chess.txt"], "top_k": 2},
    {"question": "What makes the bread rise?", "docs": ["bread.txt"]},
    {"question": "Where does the Vell rise?", "retrieve": 2},
    {"question": "How many squares has a chess board?"},
    {"question": "Where does the Vell rise?", "context": RIVER, "top_k": 3},
]


def cli_answers(request):
    """What `deformer-qa ask` answers to the same request."""
    args = [qa, "ask", "--model", model, "--question", request["question"], "--top-k", str(request.get("top_k", 1))]
    if "context" in request:
        args += ["--context", request["context"]]
    else:
        args += ["--cache", cache]
        args += sum((["--doc", d] for d in request.get("docs", [])), [])
        if "docs" not in request:
            args += ["--retrieve", str(request.get("retrieve", 20))]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    answers = [json.loads(line) for line in out.splitlines() if line.strip()]
    for a in answers:
        if "context" in request:
            a["doc"] = "context"
    return answers


def same(got, want):
    if len(got) != len(want):
        return False
    for g, w in zip(got, want):
        if any(g.get(key) != w.get(key) for key in ("answer", "doc", "start", "end")):
            return False
        if abs(g["score"] - w["score"]) > 1e-4:
            return False
    return True


def start_server(*extra, port=0):
    proc = subprocess.Popen([qa, "serve", "--model", model, "--cache", cache, "--port", str(port), "--read-timeout", "2",
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if "listening on" not in line:
        fail("server did not start: %s %s" % (line, proc.stderr.read()))
    return proc, int(line.strip().rsplit(":", 1)[1])


def post(conn, path, body, content_type="application/json"):
    conn.request("POST", path, body=body, headers={"Content-Type": content_type})
    response = conn.getresponse()
    return response.status, response.read()


def load(port, count, threads, expected, stop_after=None, proc=None):
    """count requests over `threads` persistent connections; returns latencies, wrong answers, and errors (a
    response other than 200, or, when stop_after is None, any failure)."""
    latencies, wrong, errors, lock = [], [], [], threading.Lock()
    counter = iter(range(count))

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            if stop_after is not None and i == stop_after:
                proc.send_signal(signal.SIGTERM)
            which = i % len(REQUESTS)
            begin = time.perf_counter()
            try:
                status, body = post(conn, "/v1/answer", json.dumps(REQUESTS[which]))
            except (ConnectionError, http.client.HTTPException, socket.timeout, OSError) as e:
                if stop_after is None:
                    with lock:
                        errors.append(repr(e))
                break  # after SIGTERM: the connection was closed before this request was accepted
            seconds = time.perf_counter() - begin
            with lock:
                if status != 200:
                    errors.append((status, body[:200]))
                elif not same(json.loads(body)["answers"], expected[which]):
                    wrong.append((REQUESTS[which]["question"], body[:300]))
                latencies.append(seconds)
        conn.close()

    begin = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return latencies, wrong, errors, time.perf_counter() - begin


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


expected = [cli_answers(r) for r in REQUESTS]
for r, e in zip(REQUESTS, expected):
    if not e:
        fail("deformer-qa ask gave no answer to %s" % r)

# Load, batched (the defaults) and one request per reader call.
rates = {}
for name, extra, count in (("batched", [], total), ("one per call", ["--max-batch", "1"], max(200, total // 4))):
    proc, port = start_server(*extra)
    latencies, wrong, errors, seconds = load(port, count, connections, expected)
    metrics = http.client.HTTPConnection("127.0.0.1", port)
    metrics.request("GET", "/metrics")
    text = metrics.getresponse().read().decode()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    if errors:
        fail("%s: %d errors, e.g. %s" % (name, len(errors), errors[:3]))
    if wrong:
        fail("%s: %d answers differ from deformer-qa ask's, e.g. %s" % (name, len(wrong), wrong[:2]))
    if len(latencies) != count:
        fail("%s: %d of %d answered" % (name, len(latencies), count))
    rates[name] = count / seconds
    batches = [line for line in text.splitlines() if line.startswith("deformer_batch_questions_count")]
    print("%s: %d requests over %d connections in %.2f s: %.1f requests/s, p50 %.1f ms, p99 %.1f ms; %s"
          % (name, count, connections, seconds, rates[name], 1000 * statistics.median(latencies),
             1000 * percentile(latencies, 99), batches[0] if batches else "no batch metrics"))
print("batching: %.2fx the throughput of one request per reader call" % (rates["batched"] / rates["one per call"]))

# Bad requests, each a 4xx with a JSON error, while the server goes on serving.
proc, port = start_server()
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
bad = [
    ("malformed JSON", b'{"question": ', 400, "malformed JSON"),
    ("missing question", b'{"docs": ["river.txt"]}', 400, '\\"question\\" must be a string'),
    ("question not a string", b'{"question": 7}', 400, '\\"question\\" must be a string'),
    ("top_k a string", b'{"question": "Where?", "top_k": "1"}', 400, '\\"top_k\\" must be an integer'),
    ("top_k 0", b'{"question": "Where?", "top_k": 0}', 400, '\\"top_k\\" must be in 1..'),
    ("unknown field", b'{"question": "Where?", "colour": 1}', 400, "unknown field"),
    ("unknown doc id", b'{"question": "Where?", "docs": ["nowhere.txt"]}', 404, "nowhere.txt"),
    ("not UTF-8", '{"question": "Where?", "context": "caf\xe9"}'.encode("latin-1"), 400, "ill-formed UTF-8"),
    ("20 MB body", b'{"question": "' + b"a" * (20 << 20) + b'"}', 413, "too large"),
    ("not an object", b'[1, 2]', 400, "JSON object"),
]
for name, body, status, needle in bad:
    try:
        got, text = post(conn, "/v1/answer", body)
    except (ConnectionError, http.client.HTTPException) as e:  # the server may close after refusing a huge body
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        fail("%s: no response (%r)" % (name, e))
    if got != status or needle.encode() not in text:
        fail("%s: got %d %s, expected %d with %r" % (name, got, text[:200], status, needle))
    json.loads(text)
    if got == 413:
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    print("bad request (%s): %d %s" % (name, got, text[:120].decode(errors="replace")))
got, text = post(conn, "/v1/answer", json.dumps(REQUESTS[0]))
if got != 200 or not same(json.loads(text)["answers"], expected[0]):
    fail("the server stopped serving after the bad requests: %d %s" % (got, text[:200]))
conn.request("GET", "/healthz")
if b'"status":"ok"' not in conn.getresponse().read():
    fail("healthz")

# A stalled connection is closed after the read timeout (2 s); one that sends a byte a second holds one
# connection thread, and others are still answered meanwhile.
stalled = socket.create_connection(("127.0.0.1", port))
stalled.sendall(b"POST /v1/answer HTTP/1.1\r\nHost: x\r\n")
stalled.settimeout(10)
begin = time.perf_counter()
try:
    stalled.recv(1024)  # returns (an error response, or b"" at close) once the server gives up on the request
    closed = True
except socket.timeout:
    closed = False
if not closed or time.perf_counter() - begin > 8:
    fail("a stalled connection was not closed")
print("stalled connection closed after %.1f s" % (time.perf_counter() - begin))
trickle = socket.create_connection(("127.0.0.1", port))
stop_trickle = threading.Event()


def trickler():
    for byte in b"POST /v1/answer HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n":
        if stop_trickle.is_set():
            return
        try:
            trickle.sendall(bytes([byte]))
        except OSError:
            return
        time.sleep(1)


threading.Thread(target=trickler, daemon=True).start()
time.sleep(1.5)
got, text = post(conn, "/v1/answer", json.dumps(REQUESTS[1]))
if got != 200 or not same(json.loads(text)["answers"], expected[1]):
    fail("a trickling client stopped others being served")
stop_trickle.set()
print("served while a client sent a byte a second")
conn.close()
proc.send_signal(signal.SIGTERM)
if proc.wait(timeout=60) != 0:
    fail("exit status after SIGTERM")

# SIGTERM in the middle of a load: what got a response got the right one; exit 0; the port serves again.
proc, port = start_server()
latencies, wrong, errors, _ = load(port, total // 2, connections, expected, stop_after=total // 4, proc=proc)
status = proc.wait(timeout=60)
if errors or wrong:
    fail("under SIGTERM: %d errors %s, %d wrong" % (len(errors), errors[:3], len(wrong)))
if status != 0:
    fail("exit status %d after SIGTERM" % status)
print("SIGTERM during load: %d requests answered, all right; exit 0" % len(latencies))
again, port_again = start_server(port=port)
conn = http.client.HTTPConnection("127.0.0.1", port_again, timeout=30)
conn.request("GET", "/healthz")
if conn.getresponse().status != 200:
    fail("the restarted server")
again.send_signal(signal.SIGTERM)
again.wait(timeout=60)
print("restarted on port %d" % port)
print("serve: ok")
