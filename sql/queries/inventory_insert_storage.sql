-- Rows of a new storage.csv version, staged as staged_storage.
INSERT INTO storage_locations SELECT version, location, country FROM staged_storage;
