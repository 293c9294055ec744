-- One line of an issued document, as printed. Money in EUR as DECIMAL.
INSERT INTO billing_document_lines (
    number, line_no, gpu_model, mig_profile, site, tier_from_gpu_hours, description,
    gpu_hours, unit_price, list_unit_price, discount_percent, amount, kind, contract, used_gpu_hours
) VALUES (
    $number, $line_no, $gpu_model, $mig_profile, $site, $tier_from_gpu_hours::DECIMAL(38, 6), $description,
    $gpu_hours::DECIMAL(38, 6), $unit_price::DECIMAL(38, 12), $list_unit_price::DECIMAL(38, 12),
    $discount_percent::DECIMAL(9, 4), $amount::DECIMAL(18, 2), $kind, $contract, $used_gpu_hours::DECIMAL(38, 6)
);
