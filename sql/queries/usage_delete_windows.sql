-- Remove everything metered for the windows [start, end) before they are rewritten.
DELETE FROM usage WHERE window_start >= $start AND window_start < $end_;
DELETE FROM gpu_coverage WHERE window_start >= $start AND window_start < $end_;
DELETE FROM coverage_gaps WHERE window_start >= $start AND window_start < $end_;
