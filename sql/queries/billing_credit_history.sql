-- Every credit row of every issued document, with the document's kind and month: what a
-- credit's balance is derived from (billing.credits). Amounts EUR, positive.
SELECT d.number, d.tenant, d.kind, d.period, c.credit, c.role, c.amount
FROM billing_document_credits AS c
JOIN billing_documents AS d USING (number)
ORDER BY d.tenant, d.period, d.series, d.seq, c.credit, c.role;
