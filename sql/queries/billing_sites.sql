-- Every site any loaded nodes.csv version names (the sites contracts.toml may name).
SELECT DISTINCT site FROM nodes ORDER BY site;
