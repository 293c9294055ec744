-- What an issued document did with one credit of contracts.toml (allowance | paid | expired).
-- EUR as DECIMAL, positive; a credit note's allowance and paid are given back.
INSERT INTO billing_document_credits (number, tenant, credit, role, amount)
VALUES ($number, $tenant, $credit, $role, $amount::DECIMAL(18, 2));
