-- Freeze one issued document (never updated afterwards). Money in EUR as DECIMAL.
INSERT INTO billing_documents (
    number, supplier_vat_id, series, year, seq, kind, type_code, tenant, period,
    issue_date, due_date, references_number, references_date, currency,
    net, vat_treatment, vat_rate, vat, total, rates_sha256,
    json_bytes, json_sha256, pdf_bytes, pdf_sha256, xml_sha256, finalized_at
) VALUES (
    $number, $supplier_vat_id, $series, $year, $seq, $kind, $type_code, $tenant, $period,
    $issue_date, $due_date, $references_number, $references_date, $currency,
    $net::DECIMAL(18, 2), $vat_treatment, $vat_rate::DECIMAL(5, 2), $vat::DECIMAL(18, 2),
    $total::DECIMAL(18, 2), $rates_sha256,
    $json_bytes, $json_sha256, $pdf_bytes, $pdf_sha256, $xml_sha256, $finalized_at
);
