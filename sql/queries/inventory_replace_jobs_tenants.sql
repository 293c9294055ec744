-- The current jobs.csv and tenants.csv replace the previous ones (staged frames).
DELETE FROM jobs;
DELETE FROM tenants;
INSERT INTO tenants (tenant, legal_name, country, vat_id, email, address, stripe_customer, einvoice, peppol_id)
SELECT tenant, legal_name, country, vat_id, email, address, stripe_customer, einvoice, peppol_id FROM staged_tenants;
INSERT INTO jobs (job_id, tenant, project, data_locations, job_class)
SELECT job_id, tenant, project, data_locations, job_class FROM staged_jobs;
