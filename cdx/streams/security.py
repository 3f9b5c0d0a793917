"""``kafka.security`` (librdkafka keys) as faust/aiokafka credentials.

Supported: ``security.protocol`` PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL; ``sasl.mechanism``
PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 with ``sasl.username``/``sasl.password``; ``ssl.ca.location``,
``ssl.certificate.location``/``ssl.key.location``/``ssl.key.password`` (client certificate),
``enable.ssl.certificate.verification``. Anything else is refused (``ConfigError``) rather than
silently ignored. The router's librdkafka clients take the keys verbatim.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

from cdx.errors import ConfigError

_KNOWN = {"security.protocol", "sasl.mechanism", "sasl.mechanisms", "sasl.username", "sasl.password",
          "ssl.ca.location", "ssl.certificate.location", "ssl.key.location", "ssl.key.password",
          "enable.ssl.certificate.verification"}
_MECHANISMS = {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}


def faust_credentials(security: Mapping[str, str]) -> Any:
    """``faust.SASLCredentials`` / ``faust.SSLCredentials`` for ``security``, or None (PLAINTEXT)."""
    import faust

    unknown = sorted(set(security) - _KNOWN)
    if unknown:
        raise ConfigError(f"cdx route cannot apply kafka.security keys {unknown} (supported: {sorted(_KNOWN)})")
    protocol = security.get("security.protocol", "PLAINTEXT").upper()
    if protocol not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
        raise ConfigError(f"kafka.security: security.protocol {protocol!r} is not supported by cdx route")
    context = None
    if protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=security.get("ssl.ca.location"))
        if security.get("ssl.certificate.location"):
            context.load_cert_chain(security["ssl.certificate.location"], security.get("ssl.key.location"),
                                    security.get("ssl.key.password"))
        if security.get("enable.ssl.certificate.verification", "true").lower() == "false":
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    if protocol.startswith("SASL"):
        mechanism = (security.get("sasl.mechanism") or security.get("sasl.mechanisms") or "PLAIN").upper()
        if mechanism not in _MECHANISMS:
            raise ConfigError(f"kafka.security: sasl.mechanism {mechanism!r} is not supported by cdx route")
        return faust.SASLCredentials(username=security.get("sasl.username"), password=security.get("sasl.password"),
                                     mechanism=mechanism, ssl_context=context)
    if context is not None:
        return faust.SSLCredentials(context)
    return None
