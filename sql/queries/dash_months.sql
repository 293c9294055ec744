-- Every calendar month (YYYY-MM, UTC) the store knows anything about: metered windows,
-- issued documents or audit entries. Newest first.
SELECT month FROM (
    SELECT DISTINCT strftime(window_start, '%Y-%m') AS month FROM collected_windows
    UNION
    SELECT DISTINCT period FROM billing_documents
    UNION
    SELECT DISTINCT month FROM audit_entries
)
ORDER BY month DESC;
