-- Submissions of a checkpoint that did not end in a cosignature, newest first.
SELECT name, witness, status, detail, submitted_at
FROM audit_witness_submissions
WHERE checkpoint_id = $checkpoint_id AND outcome = 'failed'
ORDER BY id DESC;
