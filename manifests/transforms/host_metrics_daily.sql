/* telemetry.host_metrics_daily: one row per host, metric and day, from the 1-minute aggregates.
   avg_value is weighted by samples, so it is the mean over every raw event of the day.
   dt (yyyy-MM-dd, UTC) is last: it is the partition column of the materialized table. */
SELECT
    host,
    metric,
    CAST(dt AS date) AS day,
    SUM(samples) AS samples,
    SUM(avg_value * CAST(samples AS double)) / CAST(SUM(samples) AS double) AS avg_value,
    MAX(max_value) AS max_value,
    dt
FROM {{ ref('telemetry.host_metrics_1m') }}
WHERE samples > 0
GROUP BY host, metric, dt
