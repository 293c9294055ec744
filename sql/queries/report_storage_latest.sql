-- The storage.csv locations of the latest loaded version.
SELECT location, country
FROM storage_locations
WHERE version = (SELECT max(version) FROM inventory_versions WHERE kind = 'storage')
ORDER BY location;
