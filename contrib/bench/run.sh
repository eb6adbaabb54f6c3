#!/bin/sh
# `make bench`: tokend's benchmark suite (GitHub issue 4).  The Makefile has
# built bin/tokend and bin/tokenctl and checked the Debian packages (make
# deps: nginx-light, wrk, gnuplot-nox, postgresql); bench.py starts its own
# PostgreSQL, tokend and nginx, measures, and writes BENCHMARKS.md and
# contrib/bench/plots/*.png.  Settings are environment variables, listed
# at the top of contrib/bench/bench.py (BENCH_QUICK=1 for a smoke run,
# BENCH_ROUNDS=N, ...).  Never part of `make test`.
set -eu
cd "$(dirname "$0")/../.."
# bench.py exits 1 when hit / nginx falls below 0.9: the OAuth benchmarks
# still run, then make bench fails.
rc=0
python3 contrib/bench/bench.py "$@" || rc=$?
# Issue 5's OAuth benchmarks; their section of BENCHMARKS.md is pasted from
# contrib/bench/results/oauth.md.
python3 contrib/bench/oauth_bench.py
exit $rc
