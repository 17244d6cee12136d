"""grpcBench.py's sweep (-c 1,2,4: one round per concurrency, a table or one JSON document), --plot,
and --metrics (the server's Prometheus page read before and after each round).

Subprocesses against the real local server. No absolute performance number is asserted: only what the
flags promise (one round per concurrency, in order, counts that add up, ordered percentiles, and the
server's own counts of the requests the bench sent).
"""

import http.server
import json
import re
import socket
import threading

import pytest
from script_helpers import run_script

from testing.server import ServerProcess, free_port

SCRIPT = "grpcBench.py"
METRICS_PATH = "/monitoring/prometheus/metrics"
ROW = re.compile(r"^ +(\d+) +(\d+) +(\d+) +([\d.]+) +([\d.]+|-) +([\d.]+|-) +([\d.]+|-)(?: +(\S+) +(\S+) +(\S+))?$")


def table_rows(out):
    """The sweep table's rows as lists of cells (strings), checked against the header."""
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["concurrency"])
    rows = []
    for line in lines[header + 1:]:
        if line == "errors by code":
            break
        match = ROW.match(line)
        assert match, line
        rows.append([cell for cell in match.groups() if cell is not None])
    return lines[header], rows


def assert_plausible(round_, requests):
    assert round_["requests"] == round_["ok"] == requests and round_["errors"] == {}, round_
    assert round_["ok_rps"] > 0
    latency = round_["latency_ms"]
    assert 0 < latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"], latency


# -- the sweep -----------------------------------------------------------------------------------------

def test_sweep_table(run):
    result = run(SCRIPT, "-n", "60", "-c", "1,2,4", "--warmup", "2")
    assert (result.code, result.err) == (0, ""), result
    assert result.out.startswith("target       Predict Toy (latest version) at localhost:")
    assert "load         closed loop, 60 requests per concurrency, after 2 warmup requests before the first\n" \
        in result.out
    header, rows = table_rows(result.out)
    assert header.split() == ["concurrency", "requests", "errors", "ok", "req/s", "p50", "ms", "p90", "ms",
                              "p99", "ms"]
    assert [row[:3] for row in rows] == [["1", "60", "0"], ["2", "60", "0"], ["4", "60", "0"]]
    for row in rows:
        throughput, p50, p90, p99 = map(float, row[3:])
        assert throughput > 0 and 0 < p50 <= p90 <= p99, row
    assert "errors by code" not in result.out


def test_sweep_json_has_one_round_per_concurrency_in_order(run):
    result = run(SCRIPT, "--format", "json", "-n", "50", "-c", "4,1,2", "--warmup", "3", "-v", "1")
    assert (result.code, result.err) == (0, ""), result
    assert len(result.out.splitlines()) == 1
    sweep = json.loads(result.out)
    assert {k: sweep[k] for k in ("model", "version", "loop", "concurrency", "requests_per_round", "duration",
                                  "warmup", "metrics", "interrupted")} == {
        "model": "Toy", "version": 1, "loop": "closed", "concurrency": [4, 1, 2], "requests_per_round": 50,
        "duration": None, "warmup": 3, "metrics": None, "interrupted": False}
    rounds = sweep["rounds"]
    assert [r["concurrency"] for r in rounds] == [4, 1, 2]
    assert [r["warmup"] for r in rounds] == [3, 0, 0]  # one warmup, before the first round
    for r in rounds:
        assert_plausible(r, 50)
        assert (r["loop"], r["version"], r["interrupted"]) == ("closed", 1, False)
        assert r["throughput_rps"] == pytest.approx(50 / r["elapsed_s"], rel=1e-3)
        assert "server_metrics" not in r  # only with --metrics


def test_sweep_with_duration(run):
    result = run(SCRIPT, "--format", "json", "-d", "0.5", "-c", "1,3", "--warmup", "0")
    assert result.code == 0, result
    rounds = json.loads(result.out)["rounds"]
    assert [r["concurrency"] for r in rounds] == [1, 3]
    for r in rounds:
        assert r["duration"] == 0.5 and r["requests"] == r["ok"] > 0
        assert 0.5 <= r["elapsed_s"] < 5.0


def test_a_single_concurrency_keeps_the_single_run_report(run):
    result = run(SCRIPT, "--format", "json", "-n", "20", "-c", "3")
    assert result.code == 0, result
    report = json.loads(result.out)
    assert report["concurrency"] == 3 and "rounds" not in report and "server_metrics" not in report
    text = run(SCRIPT, "-n", "20", "-c", "3")
    assert text.code == 0 and "closed loop, concurrency 3, after 10 warmup requests\n" in text.out
    assert "concurrency  " not in text.out and "server  " not in text.out


def test_failed_rounds_are_counted_and_exit_1(run):
    result = run(SCRIPT, "-v", "9", "-n", "7", "-c", "1,2", "--warmup", "0")
    assert (result.code, result.err) == (1, "grpcBench.py: error: 14 of 14 requests failed over 2 rounds, the first "
                                            "with: NOT_FOUND: Servable not found for request: Specific(Toy, 9)\n")
    _, rows = table_rows(result.out)
    assert rows == [["1", "7", "7", "0.0", "-", "-", "-"], ["2", "7", "7", "0.0", "-", "-", "-"]]
    assert result.out.endswith("errors by code\n  concurrency 1: NOT_FOUND 7\n  concurrency 2: NOT_FOUND 7\n")


# -- --plot --------------------------------------------------------------------------------------------

def test_plot_writes_a_png(run, tmp_path):
    path = tmp_path / "knee.png"
    result = run(SCRIPT, "-n", "40", "-c", "1,2,4", "--plot", str(path))
    assert result.code == 0, result
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    single = tmp_path / "one.png"  # one concurrency: one point
    result = run(SCRIPT, "-n", "20", "-c", "2", "--plot", str(single), "--format", "json")
    assert result.code == 0 and json.loads(result.out)["concurrency"] == 2, result
    assert single.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_plot_without_matplotlib_says_how_to_install_it(tmp_path):
    hidden = tmp_path / "site"
    hidden.mkdir()
    (hidden / "matplotlib.py").write_text("raise ImportError(\"No module named 'matplotlib'\")\n")
    path = tmp_path / "knee.png"
    result = run_script(SCRIPT, "-s", "localhost:1", "-c", "1,2", "--plot", str(path),
                        env={"PYTHONPATH": str(hidden)})
    assert (result.code, result.out) == (2, "")
    assert result.err == ("grpcBench.py: error: --plot needs matplotlib, which is not installed "
                          "(pip install matplotlib)\n")
    assert not path.exists()


def test_plot_into_a_missing_directory(tmp_path):
    result = run_script(SCRIPT, "-s", "localhost:1", "-c", "1,2", "--plot", str(tmp_path / "no" / "k.png"))
    assert (result.code, result.out) == (2, "")
    assert result.err == (f"grpcBench.py: error: --plot: cannot write {tmp_path}/no/k.png: the folder {tmp_path}/no "
                          "does not exist\n")


# -- --metrics against the local server ----------------------------------------------------------------

@pytest.fixture(scope="module", params=[False, True], ids=["unbatched", "batching"])
def monitored(request, tmp_path_factory, toy_models):
    """The toy server with its Prometheus page on a free REST port, with and without --enable_batching."""
    config = tmp_path_factory.mktemp("monitoring") / "monitoring.config"
    config.write_text("prometheus_config { enable: true }\n")
    flags = [f"--model_config_file={toy_models}/toy_labels.config", "--allow_version_labels_for_unavailable_models",
             f"--monitoring_config_file={config}"] + (["--enable_batching"] if request.param else [])
    port = free_port()
    server = ServerProcess(*flags)
    server.flags.append(f"--rest_api_port={port}")  # after ServerProcess's own --rest_api_port=0: the last one wins
    with server:
        server.wait_for_log(r"Exporting HTTP/REST API at:localhost:\d+ \.\.\.")
        server.batching = request.param
        server.metrics_url = f"http://localhost:{port}{METRICS_PATH}"
        yield server


def test_metrics_beside_each_round(monitored):
    result = run_script(SCRIPT, "--format", "json", "-n", "80", "-c", "1,4", "-v", "1", "--metrics",
                        monitored.metrics_url, server=monitored.target)
    assert (result.code, result.err) == (0, ""), result
    sweep = json.loads(result.out)
    assert sweep["metrics"] == monitored.metrics_url
    for r in sweep["rounds"]:
        assert_plausible(r, 80)
        m = r["server_metrics"]
        # the server counted exactly this round's requests: the warmup was before the first reading
        assert (m["requests"], m["requests_by_status"]) == (80, {"OK": 80}), m
        # each request's time in the server is part of its time at the client
        assert 0 < m["latency_mean_ms"] <= r["latency_ms"]["max"], (m, r["latency_ms"])
        if monitored.batching:
            assert m["batch_size_mean"] >= 1 and 1 <= m["batches"] <= 80, m
        else:
            assert m["batch_size_mean"] is None, m  # no batch ran (TF Serving: no such series)


def test_metrics_in_the_table_and_the_single_report(monitored):
    result = run_script(SCRIPT, "-n", "30", "-c", "1,2", "--metrics", monitored.metrics_url, server=monitored.target)
    assert (result.code, result.err) == (0, ""), result
    assert f"server       {monitored.metrics_url} in each round: mean Predict latency, requests, mean batch size" \
        in result.out
    header, rows = table_rows(result.out)
    assert header.split()[-5:] == ["server", "ms", "server", "req", "batch"]
    assert [row[0] for row in rows] == ["1", "2"]
    for row in rows:
        server_ms, server_requests, batch = row[7:]
        assert float(server_ms) > 0 and server_requests == "30"
        assert (float(batch) >= 1) if monitored.batching else batch == "-", row
    single = run_script(SCRIPT, "-n", "25", "-c", "2", "--metrics", monitored.metrics_url, server=monitored.target)
    assert single.code == 0, single
    line = next(line for line in single.out.splitlines() if line.startswith("server "))
    match = re.fullmatch(r"server       requests 25 \(OK 25\), mean latency ([\d.]+) ms, mean batch size (\S+)", line)
    assert match and float(match.group(1)) > 0, line
    assert (float(match.group(2)) >= 1) if monitored.batching else match.group(2) == "-", line


PARSE = '''
import json, sys
from tfsclient import prometheus
text = sys.stdin.read()
samples = prometheus.parse_metrics(text, wanted=None)
print(json.dumps({name: sorted([sorted(labels.items()), value] for labels, value in series)
                  for name, series in samples.items()}))
'''


def test_the_parser_reads_the_page_as_prometheus_client_does(monitored):
    """The script's small parser against prometheus_client's, on the server's real page after some traffic."""
    parser = pytest.importorskip("prometheus_client.parser")  # the oracle (the server's dependency)
    text_string_to_metric_families = parser.text_string_to_metric_families
    import urllib.request

    assert run_script(SCRIPT, "-n", "20", "-c", "2", server=monitored.target).code == 0
    with urllib.request.urlopen(monitored.metrics_url, timeout=30) as response:
        page = response.read().decode()
    expected = {}
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            expected.setdefault(sample.name, []).append([sorted(sample.labels.items()), sample.value])
    expected = {name: sorted(series) for name, series in expected.items()}
    result = run_script("-c", PARSE, stdin=page)
    assert result.code == 0, result
    assert json.loads(result.out) == json.loads(json.dumps(expected))
    assert ":tensorflow:serving:request_latency_sum" in expected  # what --metrics reads is on the page


TRICKY = r'''# HELP x A "help" line with \\ and {braces} } 1
# TYPE x counter

x{a="q\"uote",b="comma, and } brace",c="back\\slash",d="new\nline",} 3 1700000000000
x { a = "spaced" } +Inf
x NaN
y_total 1.5e+06
'''


def test_the_parser_on_tricky_lines():
    result = run_script("-c", PARSE, stdin=TRICKY)
    assert result.code == 0, result
    parsed = json.loads(result.out.replace("Infinity", "1e999").replace("NaN", "null"))
    assert parsed["y_total"] == [[[], 1.5e6]]
    assert sorted(parsed["x"], key=str) == sorted([
        [[["a", 'q"uote'], ["b", "comma, and } brace"], ["c", "back\\slash"], ["d", "new\nline"]], 3.0],
        [[["a", "spaced"]], float("inf")],
        [[], None]], key=str)


@pytest.mark.parametrize("line", ['<!DOCTYPE html>', 'x{a="unclosed} 1', 'x{a=1} 2', 'x 1 2 3', '9x 1', 'x',
                                  'x{a="1",a="2"} 3', 'x{a="1" b="2"} 3', 'x one'])
def test_the_parser_refuses_what_is_not_prometheus_text(line):
    result = run_script("-c", PARSE, stdin=f"# TYPE x counter\nok 1\n{line}\n")
    assert result.code == 1 and result.err.splitlines()[-1].startswith(
        "tfsclient.prometheus.MetricsError: not Prometheus text (line 3: "), result


# -- --metrics pages that are not a metrics page -------------------------------------------------------

class Page(http.server.BaseHTTPRequestHandler):
    """Serves each of `answers` in turn (status, body), then the last one again."""

    answers = []

    def do_GET(self):
        status, body = self.answers[0] if len(self.answers) == 1 else self.answers.pop(0)
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def page():
    """A local HTTP server whose answers a test sets: page(answers) -> URL."""
    servers = []

    def serve(answers):
        handler = type("Answers", (Page,), {"answers": list(answers)})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/metrics"
    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def test_metrics_page_unreachable(run):
    url = f"http://127.0.0.1:{free_port()}/metrics"
    result = run(SCRIPT, "-n", "5", "-c", "1,2", "--metrics", url)
    assert (result.code, result.out) == (1, "")
    assert result.err == f"grpcBench.py: error: --metrics {url}: cannot read it (Connection refused)\n"


def test_metrics_at_the_grpc_port(toy_server):
    url = f"http://{toy_server.target}/metrics"
    result = run_script(SCRIPT, "-n", "5", "-c", "1,2", "--metrics", url, server=toy_server.target)
    assert (result.code, result.out) == (1, ""), result
    assert result.err == (f"grpcBench.py: error: --metrics {url}: the answer is not HTTP/1.x (BadStatusLine): "
                          "the page is on the REST port, not the gRPC port\n")


@pytest.mark.parametrize("answers, message", [
    ([(200, b"<!DOCTYPE html>\n<html></html>\n")], "not Prometheus text (line 1: '<!DOCTYPE html>')"),
    ([(200, b"\xff\xfe x 1\n")], "not Prometheus text (not UTF-8)"),
    ([(404, b"no")], "HTTP 404 Not Found (is the server's Prometheus page on, at that path? --monitoring_config_file)"),
    ([(200, b"# padding\n" * (17 << 17))], "the page is larger than 16 MiB"),
])
def test_metrics_page_that_is_not_one(run, page, answers, message):
    url = page(answers)
    result = run(SCRIPT, "-n", "5", "-c", "1,2", "--metrics", url)
    assert (result.code, result.out) == (1, ""), result
    assert result.err == f"grpcBench.py: error: --metrics {url}: {message}\n"


def test_metrics_page_that_never_answers(run):
    with socket.socket() as listener:  # accepts connections (the kernel's backlog) and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/metrics"
        result = run(SCRIPT, "-n", "5", "-c", "1,2", "-t", "1", "--metrics", url)
    assert (result.code, result.out) == (1, ""), result
    assert result.err == f"grpcBench.py: error: --metrics {url}: no whole page within 1s\n"


@pytest.mark.parametrize("trickle", [b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"])
def test_metrics_page_that_trickles_in_is_cut_off_at_the_deadline(run, trickle):
    # A byte every 0.2 s: each read is quick, the page never whole. Before, only each read was timed, and a status
    # line or headers that trickled in held the script far past its limit.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        stop = threading.Event()

        def serve():
            connection, _ = listener.accept()
            with connection:
                for byte in trickle * 50:
                    if stop.wait(0.2):
                        return
                    try:
                        connection.sendall(bytes([byte]))
                    except OSError:
                        return

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/metrics"
        result = run(SCRIPT, "-n", "5", "-c", "1,2", "-t", "1", "--metrics", url)
        stop.set()
        server.join(10)
    assert (result.code, result.out) == (1, ""), result
    assert result.err == f"grpcBench.py: error: --metrics {url}: no whole page within 1s\n"


def test_metrics_page_lost_mid_sweep(run, page):
    """A reading that fails after the first: the rounds go on, their server numbers '-', then exit 1."""
    empty = (200, b"# TYPE :tensorflow:serving:request_count untyped\n")
    url = page([empty, empty, empty, (500, b"gone")])
    result = run(SCRIPT, "-n", "10", "-c", "1,2", "--metrics", url)
    assert result.code == 1, result
    assert result.err == f"grpcBench.py: error: --metrics {url}: HTTP 500 Internal Server Error\n"
    _, rows = table_rows(result.out)
    assert [row[:3] for row in rows] == [["1", "10", "0"], ["2", "10", "0"]]
    assert [row[7:] for row in rows] == [["-", "-", "-"], ["-", "-", "-"]]


# -- flags ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (("-c", "0,4"), "argument -c/--concurrency: every number must be >= 1, not 0 in the list: '0,4'"),
    (("-c", "a"), "argument -c/--concurrency: not a whole number: 'a'"),
    (("-c", "1,a"), "argument -c/--concurrency: not a whole number: 'a' in the list: '1,a'"),
    (("-c", ""), "argument -c/--concurrency: no number given: ''"),
    (("-c", "1,2,1"), "argument -c/--concurrency: 1 is in the list twice: '1,2,1'"),
    (("-c", "1,,2"), "argument -c/--concurrency: an empty item in the list: '1,,2'"),
    (("-c", "1,2,"), "argument -c/--concurrency: an empty item in the list: '1,2,'"),
    (("--metrics", "ftp://host/metrics"), "argument --metrics: the metrics URL must be an http:// or https:// URL: "
                                          "'ftp://host/metrics'"),
    (("--metrics", "localhost:8501"), "argument --metrics: the metrics URL must be an http:// or https:// URL: "
                                      "'localhost:8501'"),
    (("--metrics", ""), "argument --metrics: the metrics URL is empty: ''"),
    (("--metrics", "http://h:99999/"), "argument --metrics: the metrics URL is not a valid URL: 'http://h:99999/'"),
    (("--plot", ""), "argument --plot: the plot file is empty: ''"),
])
def test_bad_flags_exit_2(args, message):
    result = run_script(SCRIPT, "-s", "localhost:1", *args)  # nothing is sent: no server needed
    assert (result.code, result.out) == (2, "")
    assert result.err.splitlines() == ["usage: grpcBench.py [options] (see grpcBench.py --help)",
                                       f"grpcBench.py: error: {message}"]


@pytest.mark.parametrize("args, message", [
    (("-c", "1,2", "--histogram", "h.png"), "--histogram draws the latencies of one run, not of a list of "
                                            "concurrencies (--plot draws the sweep)"),
    (("-r", "10", "--plot", "k.png"), "--plot draws one point per concurrency (-c): not with --rate"),
])
def test_bad_combinations_exit_2_in_one_line(args, message, tmp_path):
    result = run_script(SCRIPT, "-s", "localhost:1", *args)
    assert (result.code, result.out, result.err) == (2, "", f"grpcBench.py: error: {message}\n")


def test_help_shows_the_new_flags():
    result = run_script(SCRIPT, "--help")
    assert result.code == 0
    for text in ("-c C[,C...]", "--plot FILE.png", "--metrics URL"):
        assert text in result.out
