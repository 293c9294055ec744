-- Move staged frames (registered as staged_usage, staged_coverage, staged_gaps; times in
-- Unix ms) into the store.
INSERT INTO usage
SELECT make_timestamptz(window_ms * 1000), job_id, uuid, gpu_i_id, mig_profile, gpu_model,
       hosts, gpu_ns, busy_ns, energy_uj
FROM staged_usage;
INSERT INTO gpu_coverage
SELECT make_timestamptz(window_ms * 1000), uuid, hostname, gpu_model,
       make_timestamptz(first_slot_ms * 1000), make_timestamptz(last_slot_ms * 1000), slots_present
FROM staged_coverage;
INSERT INTO coverage_gaps
SELECT make_timestamptz(window_ms * 1000), uuid,
       make_timestamptz(gap_start_ms * 1000), make_timestamptz(gap_end_ms * 1000)
FROM staged_gaps;
