-- The latest issue date among every issued document (any month, any series), and the
-- number of the last document issued on it. No row when nothing was issued yet.
SELECT issue_date, number
FROM billing_documents
ORDER BY issue_date DESC, finalized_at DESC, number DESC
LIMIT 1;
