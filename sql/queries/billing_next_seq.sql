-- The next number of a gapless series (supplier x series x year), claimed inside the
-- caller's transaction: a rolled-back finalization gives its number back.
INSERT INTO billing_sequences (supplier_vat_id, series, year, last_seq)
VALUES ($supplier_vat_id, $series, $year, 1)
ON CONFLICT (supplier_vat_id, series, year) DO UPDATE SET last_seq = billing_sequences.last_seq + 1
RETURNING last_seq;
