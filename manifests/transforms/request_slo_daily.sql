/* web.request_slo_daily: per service, endpoint and day, the error ratio (5xx share of requests)
   and the worst latency, from the hourly model (the second model of the chain). */
SELECT
    service,
    endpoint,
    SUM(requests) AS requests,
    SUM(CASE WHEN status_class = '5xx' THEN requests ELSE 0 END) AS errors,
    CAST(SUM(CASE WHEN status_class = '5xx' THEN requests ELSE 0 END) AS double)
        / CAST(SUM(requests) AS double) AS error_ratio,
    MAX(max_latency_ms) AS max_latency_ms,
    dt
FROM {{ ref('web.request_latency_hourly') }}
GROUP BY service, endpoint, dt
