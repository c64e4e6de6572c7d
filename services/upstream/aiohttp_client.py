"""aiohttp's client error texts, as they end up quoted in evidence and results (aiohttp 3.x).

Not for making requests: only the shapes of `str(exc)` so a person is told "host unreachable"
instead of the exception's own wording.
"""

from __future__ import annotations

import re
from typing import Final

# aiohttp client_exceptions.py, ClientConnectorError.__str__ formats host, port, ssl and
# strerror as `Cannot connect to host H:P ssl:S [E]`; ClientConnectorCertificateError.__str__
# uses the same prefix with `[<CertError class>: <args>]`.
CANNOT_CONNECT: Final = re.compile(
    r"Cannot connect to host (?P<host>\S+?):(?P<port>\d+) ssl:\S+ "
    r"\[(?P<why>[^\[\]]*(?:\[[^\[\]]*\][^\[\]]*)*)\]"
)
CERTIFICATE_ERRORS: Final = ("SSLCertVerificationError", "CertificateError")
# aiohttp client.py, ClientSession._request: `f"Connection timeout to host {req.url}"`.
CONNECTION_TIMEOUT: Final = re.compile(r"Connection timeout to host (?P<url>\S+)")
