-- The floor the dashboards are measured against (bench/dashboards.py): one bare scan of the
-- usage rows of [start, end), summing held and busy nanoseconds and microjoules.
SELECT count(*) AS usage_rows,
       sum(gpu_ns)::DECIMAL(38, 0) AS gpu_ns,
       sum(busy_ns)::DECIMAL(38, 0) AS busy_ns,
       sum(energy_uj)::DECIMAL(38, 0) AS energy_uj
FROM usage
WHERE window_start >= $start AND window_start < $end_;
