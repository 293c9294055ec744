-- The calendar months (YYYY-MM, UTC) holding anything of one tenant: metered usage of its
-- jobs (jobs.csv), its issued documents, its budget alerts. Newest first.
WITH own_jobs AS (
    SELECT job_id FROM jobs WHERE tenant = $tenant
),
months AS (
    SELECT DISTINCT strftime(u.window_start, '%Y-%m') AS month
    FROM usage AS u
    JOIN own_jobs USING (job_id)
    UNION
    SELECT period AS month FROM billing_documents WHERE tenant = $tenant
    UNION
    SELECT month FROM budget_alerts WHERE tenant = $tenant
)
SELECT month
FROM months
ORDER BY month DESC;
