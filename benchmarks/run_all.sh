#!/usr/bin/env bash
# Every benchmark in one run; each prints its table and writes it to benchmarks/results/, and this
# joins them into benchmarks/results/all.md.
# System tools: bench_rest.py needs wrk and ab, and bench_batching.py's h2load rows (run by
# bench_server.py) need h2load, else they say "not run": apt-get install wrk apache2-utils nghttp2-client
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
py=.venv/bin/python
"$py" benchmarks/bench_cli.py
"$py" benchmarks/bench_codec.py
"$py" benchmarks/bench_loadgen.py
"$py" benchmarks/bench_server.py  # and bench_batching.py's compute-bound table
"$py" benchmarks/bench_flavours.py
"$py" benchmarks/bench_stall.py
"$py" benchmarks/bench_rest_stall.py
"$py" benchmarks/bench_rest.py
"$py" benchmarks/bench_memory.py
"$py" benchmarks/bench_fleet.py
"$py" benchmarks/bench_client_output.py  # the scripts' memory for a large answer and a long log, before/after
"$py" benchmarks/bench_client_install.py  # installs into fresh venvs: needs a pip index (TensorFlow for "before")
{
    echo "# Benchmarks, $(date -u +%Y-%m-%d), $(nproc) CPUs, $(uname -m)"
    for table in cli codec loadgen server flavours stall rest_stall rest memory fleet client_output client_install; do echo; cat "benchmarks/results/$table.md"; done
} > benchmarks/results/all.md
echo "== written benchmarks/results/all.md"
