-- The frozen UBL XML of one issued document, if it has one (to restore <number>.xml).
SELECT number, ubl_bytes, ubl_sha256
FROM billing_ubl_documents
WHERE number = $number;
