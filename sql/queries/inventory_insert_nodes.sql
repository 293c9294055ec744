-- Rows of a new nodes.csv version, staged as staged_nodes.
INSERT INTO nodes SELECT version, hostname, site, country, provider FROM staged_nodes;
