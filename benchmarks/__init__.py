"""netcore's benchmark suite: `python -m benchmarks` (see __main__ for the options).

    __main__.py   the command line
    runner.py     rounds of interleaved runs, warm-up, CPU accounting per run
    scenarios.py  what each scenario sends and which figure answers it
    servers.py    the registry: netcore per interface and backend, every peer
    apps/         the one app per interface that every server serves
    peers/        peers written here: the C floor, Protocol servers, echo servers
    wrk.py        wrk's command line and the parsing of its report
    loadgen/      the built-in load generator (C and Python engines on netcore.iocore)
    idle.py       memory per idle connection
    procs.py      starting, pinning, stopping; a process tree's CPU time and RSS
    machine.py    what the figures were measured on
    stats.py      medians with min-max spread; the latency histogram
    targets.py    the issues' speed goals, checked against a run
    report.py     results.md / results.json; chart.py results.png
    readme.py     regenerates the README's performance section from a results.md
    profile_ir.py callgrind instructions per request (deterministic profiling)

Nothing here is imported by netcore itself.
"""
