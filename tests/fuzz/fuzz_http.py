"""Coverage-guided fuzz target for the HTTP parsers (atheris + libFuzzer);
the invariants are in http_checks.py.  Run it with scripts/fuzz.sh.

The first input byte picks the check, the second a config; any exception
but the checks' own (HTTPError is the parsers' answer) is a finding.
"""
import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
with atheris.instrument_imports():
    import http_checks as checks


def TestOneInput(raw: bytes) -> None:
    if len(raw) < 2:
        return
    mode, config = raw[0] % 3, checks.CONFIGS[raw[1] % len(checks.CONFIGS)]
    fdp = atheris.FuzzedDataProvider(raw[2:])
    if mode == 0:
        # a few bytes of a previous request may come before the head
        data = raw[2:]
        checks.check_head(data, config, min(raw[1] >> 6, len(data)))
    elif mode == 1:
        cuts = [fdp.ConsumeIntInRange(0, 1 << 16) for _ in range(fdp.ConsumeIntInRange(0, 6))]
        checks.check_chunked_split(fdp.ConsumeBytes(len(raw)), cuts, config)
    else:
        body = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300))
        sizes = [fdp.ConsumeIntInRange(1, 64) for _ in range(fdp.ConsumeIntInRange(0, 4))]
        # an extension value is a token: never empty, even once the input runs out
        exts = [b";x=" + (fdp.ConsumeBytes(3).hex().encode() or b"0") if fdp.ConsumeBool() else b""
                for _ in range(fdp.ConsumeIntInRange(0, 3))]
        trailer = b"X-Trailer: " + fdp.ConsumeBytes(8).hex().encode() + b"\r\n" if fdp.ConsumeBool() else b""
        checks.check_chunked_round_trip(body, sizes, exts, trailer, config)


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
