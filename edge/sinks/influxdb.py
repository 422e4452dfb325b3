"""The InfluxDB sink: influxdb-client's v2 write API (InfluxDB 2.x, Cloud, 3.x, VictoriaMetrics).

The only module that imports influxdb_client. Writes are synchronous (one HTTP request per batch,
gzip-compressed), run in a worker thread, with the client's own retries off: the forwarder owns
retrying, so a failure is seen, counted and backed off in one place.

HTTP status -> typed error:
  * 429, and 503 with Retry-After: ThrottledSinkError(retry_after_s);
  * 400, 413, 422 (and other 4xx but 401/403/404): RejectedSinkError: the forwarder splits the
    batch down to the refused point(s) and dead-letters only those;
  * 401/403/404 (bad token, org or bucket), 5xx, connection errors, timeouts: RetryableSinkError.
    Bad credentials are not the data's fault: dropping points would lose data a fixed token can
    still deliver.
The token is never logged or put into an error message (it is a SecretStr until the client gets it).
"""
from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from typing import Any

import urllib3
from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from ..errors import RejectedSinkError, RetryableSinkError, ThrottledSinkError
from .base import Batch
from .config import InfluxDBConfig
from .lineproto import lines

log = logging.getLogger(__name__)

_DEFAULT_RETRY_AFTER_S = 5.0
_REJECT = {400, 413, 422}
_RETRY_4XX = {401, 403, 404, 408}


class InfluxDBSink:
    def __init__(self, cfg: InfluxDBConfig) -> None:
        self.cfg = cfg
        self.name = cfg.sink_name
        self.max_batch = cfg.max_batch
        self._connected = False
        ssl: dict[str, Any] = {"verify_ssl": cfg.verify_tls}
        if cfg.ca_file:
            ssl["ssl_ca_cert"] = cfg.ca_file
        self._client = InfluxDBClient(
            url=cfg.url, token=cfg.token.get_secret_value() or None, org=cfg.org,
            timeout=int(cfg.timeout_s * 1000), enable_gzip=cfg.gzip, debug=False,
            retries=urllib3.Retry(total=0, connect=0, read=0, redirect=0, status=0,
                                  raise_on_status=False), **ssl)
        self._write = self._client.write_api(write_options=SYNCHRONOUS)

    @property
    def connected(self) -> bool:
        return self._connected

    async def send(self, batch: Batch) -> None:
        body = lines(batch, measurement=self.cfg.measurement,
                     rollup_measurement=self.cfg.rollup_measurement, site=self.cfg.site)
        await asyncio.to_thread(self._send, body)

    def _send(self, body: list[str]) -> None:
        try:
            self._write.write(bucket=self.cfg.bucket, org=self.cfg.org, record=body,
                              write_precision=WritePrecision.NS)
        except ApiException as exc:
            self._connected = exc.status is not None and exc.status < 500
            raise _api_error(self.name, exc) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            self._connected = False
            raise RetryableSinkError(f"{self.name}: {self.cfg.url} unreachable: "
                                     f"{type(exc).__name__}: {_short(exc)}") from None
        self._connected = True

    async def close(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        self._write.close()
        self._client.close()


def _api_error(name: str, exc: ApiException) -> Exception:
    status = int(exc.status or 0)
    detail = _short(exc.body or exc.reason or "")
    what = f"{name}: HTTP {status}"
    retry_after = _retry_after(exc.headers)
    if status == 429 or (status == 503 and retry_after is not None):
        return ThrottledSinkError(f"{what} (throttled): {detail}",
                                  retry_after if retry_after is not None else _DEFAULT_RETRY_AFTER_S)
    if status in _REJECT or (400 <= status < 500 and status not in _RETRY_4XX):
        err = RejectedSinkError(f"{what} (rejected): {detail}")
        # Dead letters are counted per reason: the status, never the server's per-point text.
        err.reason = f"HTTP {status}"  # type: ignore[attr-defined]
        return err
    return RetryableSinkError(f"{what}: {detail}")


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _short(x: object, limit: int = 300) -> str:
    text = x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"
