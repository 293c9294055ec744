-- Record one add-checkpoint request to a witness and what came of it.
INSERT INTO audit_witness_submissions
    (witness, name, checkpoint_id, old_size, status, outcome, witness_size, detail, submitted_at)
VALUES ($witness, $name, $checkpoint_id, $old_size, $status, $outcome, $witness_size, $detail, $at);
