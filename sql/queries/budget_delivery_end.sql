-- Complete a delivery attempt with what came back (or why nothing did).
UPDATE budget_deliveries
SET finished_at = $finished_at, outcome = $outcome, http_status = $http_status, error = $error
WHERE id = $id;
