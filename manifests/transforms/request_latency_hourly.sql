/* web.request_latency_hourly: one row per service, endpoint, status class and hour, from the
   1-minute aggregates. avg_latency_ms is weighted by requests. dt (yyyy-MM-dd, UTC) is last: it is
   the partition column of the materialized table. */
SELECT
    service,
    endpoint,
    status_class,
    date_trunc('hour', window_start) AS hour_start,
    SUM(requests) AS requests,
    SUM(avg_latency_ms * CAST(requests AS double)) / CAST(SUM(requests) AS double) AS avg_latency_ms,
    MAX(max_latency_ms) AS max_latency_ms,
    dt
FROM {{ ref('web.request_latency_1m') }}
WHERE requests > 0
GROUP BY service, endpoint, status_class, date_trunc('hour', window_start), dt
