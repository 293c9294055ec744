-- Which tiles are stored, and how wide each is.
SELECT level, idx, width
FROM audit_tiles
ORDER BY level, idx;
