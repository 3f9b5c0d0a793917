"""Run in a subprocess by test_codec_envelope: prints the fingerprints of its test table."""

from __future__ import annotations


def fps() -> str:
    from test_codec_envelope import _schemas

    ts = _schemas()
    return f"{ts.key.fingerprint_hex} {ts.value.fingerprint_hex}"
