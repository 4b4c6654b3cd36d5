"""Read Prometheus (prometheus-api-client): the fleet's scaling queries (scaling/fleet.py), or
one value."""

from __future__ import annotations

import math
from collections.abc import Iterable

from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException

from unbusy.scaling.fleet import Rows, SourceError

__all__ = ["PrometheusSource", "SourceError"]


class Unreachable(SourceError):
    """No answer at all: the queries after it would each wait for their own timeout."""


class PrometheusSource:
    def __init__(self, url: str, timeout_seconds: int = 5):
        self.url = url
        self.client = PrometheusConnect(url=url, disable_ssl=True, timeout=timeout_seconds)

    def _query(self, query: str) -> list[dict]:
        try:
            return self.client.custom_query(query)
        except PrometheusApiClientException as error:  # it answered, with an error (a bad query: 400)
            raise SourceError(f"Prometheus at {self.url} refused a query: {error}") from None
        except Exception as error:  # requests' errors: no answer at all
            raise Unreachable(f"Prometheus at {self.url} unreachable: {error}") from None

    def rows(self, query: str) -> Rows:
        """The query's series: labels and value."""
        return [(r["metric"], float(r["value"][1])) for r in self._query(query)]

    def read(self, queries: Iterable[str]) -> dict[str, Rows | SourceError]:
        """Each query's rows, or why it has none; once Prometheus is found unreachable, the rest
        are not tried (each would wait for its own timeout)."""
        answers: dict[str, Rows | SourceError] = {}
        unreachable: Unreachable | None = None
        for query in queries:
            try:
                answers[query] = unreachable or self.rows(query)
            except Unreachable as error:
                answers[query] = unreachable = error
            except SourceError as error:
                answers[query] = error
        return answers

    def value(self, query: str) -> float | None:
        """The query's one value (its series summed); None where it has no series or no number (NaN)."""
        values = [value for _, value in self.rows(query)]
        total = sum(values)
        return None if not values or math.isnan(total) else total
